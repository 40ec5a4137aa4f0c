//go:build vmguest

package guest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// TestExclusiveDevice uses the Device disk the way a Device volume does,
// through hostexec/realhost: discovered as a blank disk, used raw or with a
// filesystem, and blank again afterwards.
func TestExclusiveDevice(t *testing.T) {
	h, ctx := NewHost(t)
	disks := RequireDisks(t)
	disk := disks.Device
	dev := ClaimDisk(t, disk)

	t.Run("discovery", func(t *testing.T) {
		devs, err := h.ListBlockDevices(ctx)
		require.NoError(t, err)
		byName := map[string]core.BlockDevice{}
		for _, d := range devs {
			byName[d.Name] = d
		}
		for _, want := range []Disk{disks.VG, disks.Device, disks.Extra} {
			got, ok := byName[want.Path]
			require.True(t, ok, "ListBlockDevices reports %s (%s); got %v", want.Path, want.Serial, devs)
			require.Equal(t, want.SizeBytes, got.SizeBytes, "size of %s", want.Path)
			require.Empty(t, got.Parent, "%s is a whole disk", want.Path)
			major, minor := DeviceNumber(t, want.Path)
			require.Equal(t, [2]uint32{major, minor}, [2]uint32{got.Major, got.Minor}, "device numbers of %s", want.Path)
		}
		require.Empty(t, byName[dev].Signatures, "the Device disk starts blank")
		require.False(t, byName[dev].ReadOnly)
	})

	t.Run("raw_block_direct_io", func(t *testing.T) {
		size, err := h.DeviceSize(ctx, dev)
		require.NoError(t, err)
		require.Equal(t, disk.SizeBytes, size)
		f, err := os.OpenFile(dev, os.O_RDWR|unix.O_DIRECT, 0)
		require.NoError(t, err)
		defer func() { _ = f.Close() }()
		// O_DIRECT needs buffers aligned to the logical block size; an
		// anonymous mapping is page-aligned.
		const chunk = 1 << 20
		buf := alignedBuffer(t, chunk)
		back := alignedBuffer(t, chunk)
		for i, off := range []int64{0, disk.SizeBytes / 2, disk.SizeBytes - chunk} {
			copy(buf, randomBytes(chunk, uint64(10+i)))
			n, err := f.WriteAt(buf, off)
			require.NoError(t, err)
			require.Equal(t, chunk, n)
			n, err = f.ReadAt(back, off)
			require.NoError(t, err)
			require.Equal(t, chunk, n)
			equalBytes(t, buf, back, "read-back at offset "+strconv.FormatInt(off, 10))
		}
		// Raw data is no signature: the device still counts as blank.
		require.NoError(t, f.Close())
		require.NoError(t, h.Wipe(ctx, dev))
		sigs, err := h.Signatures(ctx, dev)
		require.NoError(t, err)
		require.Empty(t, sigs)
	})

	t.Run("filesystem_whole_device", func(t *testing.T) {
		require.NoError(t, h.Mkfs(ctx, dev, "ext4", nil))
		sigs, err := h.Signatures(ctx, dev)
		require.NoError(t, err)
		require.Equal(t, []string{"ext4"}, sigs)

		dir := t.TempDir()
		require.NoError(t, h.Mount(ctx, dev, dir, "ext4", nil))
		t.Cleanup(func() { _ = h.Unmount(ctx, dir) })
		st, err := h.StatFS(ctx, dir)
		require.NoError(t, err)
		require.Greater(t, st.TotalBytes, disk.SizeBytes*9/10, "ext4 spans the whole device")
		require.ErrorIs(t, h.Wipe(ctx, dev), hostexec.ErrInUse, "a mounted device is never wiped")

		sum := writeFile(t, filepath.Join(dir, "data"), 4*mib, 8)
		require.NoError(t, h.Unmount(ctx, dir))
		require.NoError(t, h.Mount(ctx, dev, dir, "ext4", []string{"ro"}))
		require.Equal(t, sum, fileSum(t, filepath.Join(dir, "data")), "data survives a remount")
		require.NoError(t, h.Unmount(ctx, dir))

		require.NoError(t, h.Wipe(ctx, dev))
		sigs, err = h.Signatures(ctx, dev)
		require.NoError(t, err)
		require.Empty(t, sigs, "Wipe leaves the device blank")
		require.Empty(t, Signatures(t, dev), "wipefs agrees")
	})
}

func alignedBuffer(t *testing.T, size int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(b) })
	return b
}
