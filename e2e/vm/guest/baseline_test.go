//go:build vmguest

package guest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGuestEnvironment checks that the VM offers what the other tests and
// Open-Local itself rely on; a failure here points at the image or the
// kernel, not at Open-Local.
func TestGuestEnvironment(t *testing.T) {
	t.Run("root", func(t *testing.T) {
		require.Equal(t, 0, os.Geteuid(), "the suite runs as root")
	})

	t.Run("cgroup2_io_controller", func(t *testing.T) {
		m, ok, err := MountOf(CgroupRoot)
		require.NoError(t, err)
		require.True(t, ok, "nothing mounted on %s", CgroupRoot)
		require.Equal(t, "cgroup2", m.FSType)
		for _, f := range []string{"cgroup.controllers", "cgroup.subtree_control"} {
			b, err := os.ReadFile(CgroupRoot + "/" + f)
			require.NoError(t, err)
			require.Contains(t, strings.Fields(string(b)), "io", "%s/%s", CgroupRoot, f)
		}
	})

	t.Run("device_mapper", func(t *testing.T) {
		_, err := os.Stat("/dev/mapper/control")
		require.NoError(t, err, "device-mapper control node")
		targets := Run(t, "dmsetup", "targets")
		for _, want := range []string{"linear", "striped", "snapshot", "snapshot-origin"} {
			require.Regexp(t, `(?m)^`+want+`\s`, targets, "device-mapper target %q", want)
		}
		require.Contains(t, Run(t, "lvm", "version"), "Driver version:", "lvm sees the kernel driver")
	})

	t.Run("filesystems", func(t *testing.T) {
		b, err := os.ReadFile("/proc/filesystems")
		require.NoError(t, err)
		for _, fs := range []string{"ext4", "xfs", "tmpfs"} {
			require.Regexp(t, `(?m)\s`+fs+`$`, string(b), "kernel filesystem %s", fs)
		}
	})

	t.Run("tools", func(t *testing.T) {
		for _, tool := range []string{"lvm", "pvcreate", "vgcreate", "lvcreate", "lvextend", "dmsetup", "fsadm",
			"mkfs.ext4", "resize2fs", "e2fsck", "mkfs.xfs", "xfs_growfs", "wipefs", "blkid", "blockdev",
			"mount", "umount", "findmnt", "dd"} {
			_, err := exec.LookPath(tool)
			require.NoError(t, err, "tool %s", tool)
		}
	})

	t.Run("disks", func(t *testing.T) {
		ds := RequireDisks(t)
		for _, d := range []Disk{ds.VG, ds.Device, ds.Extra, ds.Sanity} {
			st, err := os.Stat(d.Path)
			require.NoError(t, err, "device node of %s", d.Serial)
			require.NotZero(t, st.Mode()&os.ModeDevice, "%s is a device", d.Path)
			require.GreaterOrEqual(t, d.SizeBytes, int64(512<<20), "disk %s (%s) is large enough for the tests", d.Path, d.Serial)
			require.Empty(t, Signatures(t, d.Path), "disk %s starts blank", d.Path)
		}
	})
}
