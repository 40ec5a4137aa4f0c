package realhost_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec/hostexectest"
	"github.com/open-local/open-local/hostexec/realhost"
	"github.com/open-local/open-local/hostexec/realhost/looptest"
)

// Small sparse loop devices keep CopyDevice cheap; the xfs scenario grows
// its device past mkfs.xfs's minimum first.
const contractDeviceSize = 64 * core.MiB

// TestContract runs the host contract on real LVM over loop devices, with an
// lvm.conf that sees only those devices.
func TestContract(t *testing.T) {
	looptest.Require(t)
	caps := realCapabilities()
	hostexectest.Run(t, func(t *testing.T) hostexectest.Env {
		loops := looptest.New(t, 3, contractDeviceSize)
		dir := t.TempDir()
		cgroupRoot := t.TempDir()
		h, err := realhost.New(realhost.Config{
			ExtraLVMArgs:       loops.LVMArgs(),
			Env:                loops.Env(),
			IncludeLoopDevices: true,
			NoActivation:       !loops.HasDeviceMapper,
			CgroupRoot:         cgroupRoot,
		})
		require.NoError(t, err)
		// Registered after the loop devices' cleanup, so it runs first: a
		// failed scenario must not leave a mount pinning a loop device.
		t.Cleanup(func() { unmountBelow(t, dir) })
		return hostexectest.Env{
			Host:       h,
			Devices:    loops.Devices,
			DeviceSize: contractDeviceSize,
			ExtentSize: core.DefaultExtentSize,
			Dir:        dir,
			Caps:       caps,
			AddPod: func(t *testing.T, uid string) string {
				// A systemd-driver layout in a scratch cgroup root; io.max
				// there is a plain file, so HasCgroupIO stays false.
				p := filepath.Join(cgroupRoot, "kubepods.slice", "kubepods-besteffort.slice",
					"kubepods-besteffort-pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
				require.NoError(t, os.MkdirAll(p, 0o755))
				return p
			},
			GrowDevice: func(t *testing.T, device string, newSize int64) {
				loops.Grow(t, device, newSize)
			},
		}
	})
}

func realCapabilities() hostexectest.Capabilities {
	caps := hostexectest.Capabilities{
		HasDeviceMapper: looptest.HasDeviceMapper(),
		CanMount:        true,
		Reasons: map[string]string{
			hostexectest.CapDeviceMapper: "the kernel has no device-mapper, so LVs cannot be activated; covered by the VM tier",
			hostexectest.CapCgroupIO:     "the suite uses a scratch cgroup root; io.max semantics need a cgroup v2 io controller (VM tier)",
			hostexectest.CapResize:       "no filesystem here can be grown online",
		},
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		caps.CanMount = false
		caps.Reasons[hostexectest.CapMount] = "mkfs.ext4 is not installed (e2fsprogs)"
	}
	// Online ext4 growth needs CAP_SYS_RESOURCE (EXT4_IOC_RESIZE_FS);
	// xfs_growfs needs CAP_SYS_ADMIN and xfsprogs.
	if hasCapability(unix.CAP_SYS_RESOURCE) {
		caps.ResizableFS = append(caps.ResizableFS, "ext4")
	}
	_, errMkfs := exec.LookPath("mkfs.xfs")
	_, errGrow := exec.LookPath("xfs_growfs")
	if errMkfs == nil && errGrow == nil && kernelHasFS("xfs") && hasCapability(unix.CAP_SYS_ADMIN) {
		caps.ResizableFS = append(caps.ResizableFS, "xfs")
	}
	return caps
}

// hasCapability reads the effective capability set of this process.
func hasCapability(c int) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<uint(c)) != 0
		}
	}
	return false
}

func kernelHasFS(name string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := bytes.Fields(line); len(f) > 0 && string(f[len(f)-1]) == name {
			return true
		}
	}
	return false
}

// unmountBelow unmounts everything mounted under dir, deepest first.
func unmountBelow(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	var targets []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			targets = append(targets, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(targets)))
	for _, p := range targets {
		if err := unix.Unmount(p, 0); err != nil {
			t.Logf("cleanup: unmount %s: %v", p, err)
		}
	}
}
