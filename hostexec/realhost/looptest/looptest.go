// Package looptest gives tests real block devices: sparse files attached as
// loop devices, with an LVM configuration that sees only them, so that the
// host's own volume groups are never read or touched. Everything is undone
// in t.Cleanup, also when the test fails.
package looptest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Strict reports whether missing prerequisites fail tests instead of
// skipping them: in CI (CI=true) or with OPEN_LOCAL_REQUIRE_LVM=1.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("OPEN_LOCAL_REQUIRE_LVM") == "1"
}

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf(format+" (failing instead of skipping: CI=true or OPEN_LOCAL_REQUIRE_LVM=1)", args...)
	}
	t.Skipf(format, args...)
}

// Require skips the test (or fails it, see Strict) unless it runs as root on
// a kernel with loop devices and lvm2 is installed.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to attach loop devices and run LVM")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		skipOrFail(t, "needs loop device support: /dev/loop-control: %v", err)
	}
	for _, tool := range []string{"lvm", "losetup", "wipefs", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s (install lvm2 and util-linux): %v", tool, err)
		}
	}
}

// HasDeviceMapper reports whether the kernel offers device-mapper, without
// which LVs cannot be activated. The kernel lists its misc device; the
// /dev/mapper/control node alone proves nothing (libdevmapper creates it).
func HasDeviceMapper() bool {
	b, err := os.ReadFile("/proc/misc")
	return err == nil && bytes.Contains(b, []byte("device-mapper"))
}

// Loops is a set of loop devices and the LVM configuration that sees them.
type Loops struct {
	// Devices are the loop device paths, e.g. /dev/loop3.
	Devices []string
	// LVMSystemDir holds the lvm.conf accepting only Devices; point lvm at
	// it with Env.
	LVMSystemDir    string
	HasDeviceMapper bool
	files           map[string]string // device -> backing file
}

// Env are the environment entries (KEY=VALUE) that make lvm use the
// isolated configuration.
func (l *Loops) Env() []string {
	return []string{"LVM_SYSTEM_DIR=" + l.LVMSystemDir}
}

// LVMArgs are the global lvm options this kernel needs: --driverloaded n
// when there is no device-mapper.
func (l *Loops) LVMArgs() []string {
	if l.HasDeviceMapper {
		return nil
	}
	return []string{"--driverloaded", "n"}
}

func run(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// New attaches n sparse loop devices of size bytes each and writes an
// lvm.conf for them. Require is called first.
func New(t testing.TB, n int, size int64) *Loops {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	l := &Loops{LVMSystemDir: filepath.Join(dir, "lvm"), HasDeviceMapper: HasDeviceMapper(), files: map[string]string{}}
	// Cleanup runs even when attaching fails half-way.
	t.Cleanup(func() { l.cleanup(t) })
	for i := 0; i < n; i++ {
		file := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		f, err := os.Create(file)
		if err != nil {
			t.Fatalf("create backing file: %v", err)
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			t.Fatalf("size backing file: %v", err)
		}
		f.Close()
		dev, err := attach(file)
		if err != nil {
			t.Fatalf("attach loop device: %v", err)
		}
		l.Devices = append(l.Devices, dev)
		l.files[dev] = file
	}
	if err := os.MkdirAll(l.LVMSystemDir, 0o755); err != nil {
		t.Fatalf("LVM config dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(l.LVMSystemDir, "lvm.conf"), []byte(lvmConf(l.Devices)), 0o644); err != nil {
		t.Fatalf("write lvm.conf: %v", err)
	}
	return l
}

// attach retries: two tests attaching at once may race for the same free
// loop device.
func attach(file string) (string, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		out, err := run(nil, "losetup", "--find", "--show", file)
		if err == nil {
			return strings.TrimSpace(out), nil
		}
		lastErr = err
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return "", lastErr
}

// lvmConf accepts exactly the given devices and keeps LVM away from udev,
// the devices file, hints and metadata backups, which are shared with the
// host.
func lvmConf(devices []string) string {
	var accept []string
	for _, d := range devices {
		accept = append(accept, fmt.Sprintf(`"a|^%s$|"`, d))
	}
	filter := "[ " + strings.Join(append(accept, `"r|.*|"`), ", ") + " ]"
	return fmt.Sprintf(`devices {
	filter = %[1]s
	global_filter = %[1]s
	use_devicesfile = 0
	obtain_device_list_from_udev = 0
	hints = "none"
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
backup {
	backup = 0
	archive = 0
}
`, filter)
}

// Grow makes a loop device larger (its backing file, then losetup -c).
func (l *Loops) Grow(t testing.TB, device string, newSize int64) {
	t.Helper()
	file, ok := l.files[device]
	if !ok {
		t.Fatalf("grow %s: not a device of this test", device)
	}
	if err := os.Truncate(file, newSize); err != nil {
		t.Fatalf("grow %s: %v", device, err)
	}
	if _, err := run(nil, "losetup", "-c", device); err != nil {
		t.Fatalf("grow %s: %v", device, err)
	}
}

// cleanup removes every VG on the devices (the isolated configuration sees
// nothing else), wipes and detaches them.
func (l *Loops) cleanup(t testing.TB) {
	if len(l.Devices) > 0 {
		env := l.Env()
		lvmArgs := l.LVMArgs()
		if _, err := os.Stat(filepath.Join(l.LVMSystemDir, "lvm.conf")); err == nil {
			out, err := run(env, "lvm", append(append([]string{"vgs"}, lvmArgs...), "--noheadings", "-o", "vg_name")...)
			if err != nil {
				t.Logf("cleanup: list VGs: %v", err)
			}
			for _, vg := range strings.Fields(out) {
				if _, err := run(env, "lvm", append(append([]string{"vgremove"}, lvmArgs...), "-ff", "-y", vg)...); err != nil {
					t.Logf("cleanup: %v", err)
				}
			}
		}
		for _, d := range l.Devices {
			if _, err := run(nil, "wipefs", "-a", "-q", d); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	}
	for _, d := range l.Devices {
		if _, err := run(nil, "losetup", "-d", d); err != nil {
			t.Errorf("cleanup: detach %s: %v", d, err)
		}
	}
}
