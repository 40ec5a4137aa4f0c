//go:build vmguest

package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupRoot is where the guest's /init mounts the cgroup v2 hierarchy, with
// the io controller enabled for its children.
const CgroupRoot = "/sys/fs/cgroup"

// NewCgroup creates the cgroup v2 group CgroupRoot/rel (parents included,
// each with the io controller enabled for its children, as a kubelet's
// kubepods tree has) and removes it at cleanup.
func NewCgroup(t testing.TB, rel string) string {
	t.Helper()
	dir := filepath.Join(CgroupRoot, rel)
	parts := strings.Split(filepath.Clean(rel), string(filepath.Separator))
	cur := CgroupRoot
	var created []string
	for i, p := range parts {
		cur = filepath.Join(cur, p)
		if err := os.Mkdir(cur, 0o755); err == nil {
			created = append(created, cur)
		} else if !errors.Is(err, os.ErrExist) {
			t.Fatalf("creating cgroup %s: %v", cur, err)
		}
		if i < len(parts)-1 {
			if err := os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte("+io"), 0o644); err != nil {
				t.Fatalf("enabling the io controller in %s: %v", cur, err)
			}
		}
	}
	t.Cleanup(func() {
		for i := len(created) - 1; i >= 0; i-- {
			if err := removeCgroup(created[i]); err != nil {
				t.Errorf("removing cgroup %s: %v", created[i], err)
			}
		}
	})
	return dir
}

// removeCgroup removes an empty cgroup; the kernel may need a moment after its
// last process exited.
func removeCgroup(dir string) error {
	var err error
	for range 50 {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// RunInCgroup runs a tool whose process starts inside the cgroup directory
// (clone3 with CLONE_INTO_CGROUP: no window where it runs elsewhere). It
// returns the wall time from start to exit and the combined output.
func RunInCgroup(t testing.TB, cgroupDir, name string, args ...string) (time.Duration, string) {
	t.Helper()
	fd, err := unix.Open(cgroupDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening cgroup %s: %v", cgroupDir, err)
	}
	defer func() { _ = unix.Close(fd) }()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("%s in %s: %v: %s", commandLine(name, args), cgroupDir, err, strings.TrimSpace(out.String()))
	}
	t.Logf("$ %s  [cgroup %s] (%.2fs)", commandLine(name, args), cgroupDir, elapsed.Seconds())
	return elapsed, out.String()
}

// DeviceNumber returns major and minor of a block device node.
func DeviceNumber(t testing.TB, device string) (major, minor uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		t.Fatalf("stat %s: %v", device, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Fatalf("%s is not a block device (mode %o)", device, st.Mode)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev)
}

// IOStat reads io.stat of a cgroup: per "major:minor", the counters
// (rbytes, wbytes, rios, wios, ...).
func IOStat(t testing.TB, cgroupDir string) map[string]map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cgroupDir, "io.stat"))
	if err != nil {
		t.Fatalf("reading io.stat: %v", err)
	}
	stats := map[string]map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		counters := map[string]int64{}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			var n int64
			if _, err := fmt.Sscan(v, &n); err == nil {
				counters[k] = n
			}
		}
		stats[f[0]] = counters
	}
	return stats
}
