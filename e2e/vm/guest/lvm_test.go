//go:build vmguest

package guest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/realhost"
)

const mib = int64(1) << 20

// lvmEnv is what the subtests of TestLVM share: the real host, its context
// and the VG made on the VG disk.
type lvmEnv struct {
	h     *realhost.Host
	ctx   context.Context
	vg    string
	disks Disks
}

// TestLVM drives hostexec/realhost against real LVM and device-mapper: one VG
// on the VG disk, then each subtest makes and removes its own LVs in it, so
// any of them can run alone (OPEN_LOCAL_VM_RUN=TestLVM/cow_snapshot).
// Results are checked through the Host and, where it matters, independently
// (statfs, file contents, io.max, lvs).
func TestLVM(t *testing.T) {
	h, ctx := NewHost(t)
	disks := RequireDisks(t)
	pv := ClaimDisk(t, disks.VG)
	e := &lvmEnv{h: h, ctx: ctx, vg: "olvm", disks: disks}

	require.NoError(t, h.CreateVG(ctx, e.vg, []string{pv}, false), "pvcreate + vgcreate on a blank disk")
	vg := e.findVG(t)
	require.Len(t, vg.PVs, 1)
	require.Equal(t, pv, vg.PVs[0].Name)
	// LVM keeps about 1 MiB of metadata at the start of the PV and rounds down to extents.
	require.InDelta(t, disks.VG.SizeBytes, vg.TotalBytes, float64(8*mib), "VG size close to the disk's")
	require.Equal(t, vg.TotalBytes, vg.FreeBytes, "a new VG is all free")
	require.Equal(t, 4*mib, vg.ExtentSizeBytes, "LVM's default extent size")
	require.ErrorIs(t, h.CreateVG(ctx, e.vg, []string{disks.Extra.Path}, false), hostexec.ErrAlreadyExists)
	require.ErrorIs(t, h.CreatePV(ctx, pv, true), hostexec.ErrInUse, "a PV of a VG is never re-created, even with force")

	t.Run("lvcreate_activation", e.testLVCreateActivation)
	t.Run("ext4_mount_write_statfs", e.testExt4MountWriteStatfs)
	t.Run("format_new_lv", e.testFormatNewLV)
	t.Run("lvextend_resize2fs_online", e.testLVExtendResize2fsOnline)
	t.Run("xfs_growfs_online", e.testXFSGrowOnline)
	t.Run("cow_snapshot", e.testCOWSnapshot)
	t.Run("copy_device", e.testCopyDevice)
	t.Run("bind_mounts", e.testBindMounts)
	t.Run("vgextend_striped", e.testVGExtendStriped)
	t.Run("io_max_throttle", e.testIOMaxThrottle)
}

func (e *lvmEnv) testLVCreateActivation(t *testing.T) {
	dev := e.createLV(t, hostexec.LVSpec{Name: "act", SizeBytes: 64 * mib, Tags: []string{"ol-vm-test"}})
	require.Equal(t, 64*mib, e.deviceSize(t, dev))
	lv := e.findLV(t, "act")
	require.Equal(t, 64*mib, lv.SizeBytes)
	require.True(t, lv.HasTag("ol-vm-test"), "tags %v", lv.Tags)
	require.Equal(t, byte('a'), lv.Attr[4], "a new LV is active (attr %s)", lv.Attr)
	requireDevNumber(t, dev, lv)
	require.ErrorIs(t, e.h.CreateLV(e.ctx, hostexec.LVSpec{VG: e.vg, Name: "act", SizeBytes: mib}), hostexec.ErrAlreadyExists)
	require.ErrorIs(t, e.h.CreateLV(e.ctx, hostexec.LVSpec{VG: e.vg, Name: "huge", SizeBytes: 64 << 30}), hostexec.ErrInsufficientSpace)

	off, on := false, true
	require.NoError(t, e.h.ChangeLV(e.ctx, e.vg, "act", hostexec.LVChange{Activate: &off, AddTags: []string{"second"}, DelTags: []string{"ol-vm-test"}}))
	require.NoFileExists(t, dev, "an inactive LV has no device node")
	lv = e.findLV(t, "act")
	require.Equal(t, byte('-'), lv.Attr[4], "attr %s", lv.Attr)
	require.Equal(t, []string{"second"}, lv.Tags)

	require.NoError(t, e.h.ChangeLV(e.ctx, e.vg, "act", hostexec.LVChange{Activate: &on}))
	require.Equal(t, 64*mib, e.deviceSize(t, dev), "a reactivated LV keeps its size")
	require.Equal(t, byte('a'), e.findLV(t, "act").Attr[4])
}

// testFormatNewLV: the provisioning path's mkfs without a probe formats a
// new LV, and refuses one whose zeroed start was written to since, even when
// the extents held a filesystem of a deleted LV before.
func (e *lvmEnv) testFormatNewLV(t *testing.T) {
	// A deleted LV leaves an xfs behind in the extents the next LV gets.
	dev := e.createLV(t, hostexec.LVSpec{Name: "prev", SizeBytes: 512 * mib})
	require.NoError(t, e.h.Mkfs(e.ctx, dev, "xfs", nil))
	require.NoError(t, e.h.RemoveLV(e.ctx, e.vg, "prev"))

	dev = e.createLV(t, hostexec.LVSpec{Name: "new", SizeBytes: 512 * mib})
	sigs, err := e.h.Signatures(e.ctx, dev)
	require.NoError(t, err)
	require.Empty(t, sigs, "lvcreate wiped the old signature")
	require.NoError(t, e.h.FormatNewLV(e.ctx, e.vg, "new", "ext4", nil))
	sigs, err = e.h.Signatures(e.ctx, dev)
	require.NoError(t, err)
	require.Equal(t, []string{"ext4"}, sigs)

	dev = e.createLV(t, hostexec.LVSpec{Name: "written", SizeBytes: 64 * mib})
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("user data"), 2048)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.ErrorIs(t, e.h.FormatNewLV(e.ctx, e.vg, "written", "ext4", nil), hostexec.ErrInUse, "a written LV is not formatted without a probe")
	require.ErrorIs(t, e.h.FormatNewLV(e.ctx, e.vg, "missing", "ext4", nil), hostexec.ErrNotFound)
}

func (e *lvmEnv) testExt4MountWriteStatfs(t *testing.T) {
	dev := e.createLV(t, hostexec.LVSpec{Name: "fs", SizeBytes: 128 * mib})
	require.NoError(t, e.h.Mkfs(e.ctx, dev, "ext4", nil))
	sigs, err := e.h.Signatures(e.ctx, dev)
	require.NoError(t, err)
	require.Equal(t, []string{"ext4"}, sigs)
	require.ErrorIs(t, e.h.Mkfs(e.ctx, dev, "xfs", nil), hostexec.ErrInUse, "a formatted device is never reformatted")

	dir := e.mount(t, dev, "ext4")
	mounted, err := e.h.IsMountPoint(e.ctx, dir)
	require.NoError(t, err)
	require.True(t, mounted)
	require.ErrorIs(t, e.h.Mount(e.ctx, dev, dir, "ext4", nil), hostexec.ErrInUse, "mounts are never stacked")
	before := e.statFS(t, dir)
	require.Greater(t, before.TotalBytes, 100*mib, "ext4 on 128 MiB offers most of it")
	require.LessOrEqual(t, before.TotalBytes, 128*mib)
	require.Equal(t, rawStatfs(t, dir).total, before.TotalBytes, "StatFS agrees with statfs(2)")

	sum := writeFile(t, filepath.Join(dir, "data"), 8*mib, 1)
	after := e.statFS(t, dir)
	require.GreaterOrEqual(t, after.UsedBytes-before.UsedBytes, 8*mib, "statfs counts the 8 MiB written")
	require.LessOrEqual(t, after.AvailableBytes, before.AvailableBytes-8*mib)
	require.Equal(t, sum, fileSum(t, filepath.Join(dir, "data")))

	require.NoError(t, e.h.Unmount(e.ctx, dir))
	mounted, err = e.h.IsMountPoint(e.ctx, dir)
	require.NoError(t, err)
	require.False(t, mounted)
	require.NoError(t, e.h.Unmount(e.ctx, dir), "unmounting twice is fine")
	Run(t, "e2fsck", "-f", "-n", dev) // exit status 0: the filesystem is clean
}

func (e *lvmEnv) testLVExtendResize2fsOnline(t *testing.T) {
	dev := e.createLV(t, hostexec.LVSpec{Name: "grow", SizeBytes: 64 * mib})
	require.NoError(t, e.h.Mkfs(e.ctx, dev, "ext4", nil))
	dir := e.mount(t, dev, "ext4")
	sum := writeFile(t, filepath.Join(dir, "data"), 4*mib, 2)
	before := e.statFS(t, dir).TotalBytes

	require.NoError(t, e.h.ExtendLV(e.ctx, e.vg, "grow", 256*mib))
	require.Equal(t, 256*mib, e.deviceSize(t, dev))
	require.Equal(t, before, e.statFS(t, dir).TotalBytes, "the filesystem keeps its size until resized")
	require.NoError(t, e.h.ExtendLV(e.ctx, e.vg, "grow", 100*mib), "a smaller size is a no-op")
	require.Equal(t, 256*mib, e.findLV(t, "grow").SizeBytes)

	require.NoError(t, e.h.ResizeFS(e.ctx, dev, dir)) // online: the filesystem stays mounted
	after := e.statFS(t, dir).TotalBytes
	require.Greater(t, after, 3*before, "ext4 grew from %d to %d bytes", before, after)
	require.Equal(t, sum, fileSum(t, filepath.Join(dir, "data")), "data survives the online resize")
}

func (e *lvmEnv) testXFSGrowOnline(t *testing.T) {
	dev := e.createLV(t, hostexec.LVSpec{Name: "xfsgrow", SizeBytes: 320 * mib}) // xfsprogs refuses filesystems under 300 MiB
	require.NoError(t, e.h.Mkfs(e.ctx, dev, "xfs", nil))
	dir := e.mount(t, dev, "xfs")
	sum := writeFile(t, filepath.Join(dir, "data"), 4*mib, 3)
	before := e.statFS(t, dir).TotalBytes
	require.NoError(t, e.h.ExtendLV(e.ctx, e.vg, "xfsgrow", 512*mib))
	require.NoError(t, e.h.ResizeFS(e.ctx, dev, dir))
	after := e.statFS(t, dir).TotalBytes
	require.Greater(t, after, before+150*mib, "xfs grew from %d to %d bytes", before, after)
	require.Equal(t, sum, fileSum(t, filepath.Join(dir, "data")))
}

func (e *lvmEnv) testCOWSnapshot(t *testing.T) {
	dev := e.createLV(t, hostexec.LVSpec{Name: "origin", SizeBytes: 64 * mib})
	require.NoError(t, e.h.Mkfs(e.ctx, dev, "ext4", nil))
	dir := e.mount(t, dev, "ext4")
	path := filepath.Join(dir, "data")
	oldSum := writeFile(t, path, 4*mib, 4)

	// Taken while the origin is mounted: the device-mapper suspend inside
	// lvcreate freezes the filesystem by itself.
	snap := e.createSnapshot(t, hostexec.SnapshotSpec{Name: "origin-snap", Origin: "origin", SizeBytes: 32 * mib, Tags: []string{"snap-of-origin"}})
	s := e.findLV(t, "origin-snap")
	require.True(t, s.IsSnapshot())
	require.Equal(t, "origin", s.Origin)
	require.True(t, s.HasTag("snap-of-origin"))
	require.Equal(t, byte('o'), e.findLV(t, "origin").Attr[0], "the origin's attr marks it")
	usedBefore := s.DataPercent

	newSum := writeFile(t, path, 4*mib, 5) // overwrite the origin after the snapshot
	require.NotEqual(t, oldSum, newSum)
	usedAfter := e.findLV(t, "origin-snap").DataPercent
	require.Greater(t, usedAfter, usedBefore, "copy-on-write fills the snapshot")

	snapDir := e.mount(t, snap, "ext4", "ro")
	require.Equal(t, oldSum, fileSum(t, filepath.Join(snapDir, "data")), "the snapshot keeps the old content")
	require.Equal(t, newSum, fileSum(t, path), "the origin has the new content")
	err := os.WriteFile(filepath.Join(snapDir, "new"), []byte("x"), 0o644)
	require.ErrorIs(t, err, unix.EROFS, "a read-only snapshot mount refuses writes")

	require.ErrorIs(t, e.h.RemoveLV(e.ctx, e.vg, "origin"), hostexec.ErrInUse, "an origin with snapshots is not removed")
	require.NoError(t, e.h.Unmount(e.ctx, snapDir))
	require.NoError(t, e.h.RemoveLV(e.ctx, e.vg, "origin-snap"))
	require.ErrorIs(t, e.h.RemoveLV(e.ctx, e.vg, "origin-snap"), hostexec.ErrNotFound)
	require.Equal(t, newSum, fileSum(t, path), "removing the snapshot leaves the origin alone")
}

func (e *lvmEnv) testCopyDevice(t *testing.T) {
	src := e.createLV(t, hostexec.LVSpec{Name: "copy-src", SizeBytes: 32 * mib})
	dst := e.createLV(t, hostexec.LVSpec{Name: "copy-dst", SizeBytes: 64 * mib})
	data := randomBytes(12*mib, 6)
	writeDevice(t, src, data)
	require.NoError(t, e.h.CopyDevice(e.ctx, src, dst, int64(len(data))))
	equalBytes(t, data, readDevice(t, dst, len(data)), "copied device content")
	require.ErrorIs(t, e.h.CopyDevice(e.ctx, src, dst, 48*mib), hostexec.ErrInvalidArgument, "more bytes than the source has")
	require.ErrorIs(t, e.h.CopyDevice(e.ctx, dst, src, 48*mib), hostexec.ErrInsufficientSpace, "more bytes than the destination holds")
}

func (e *lvmEnv) testBindMounts(t *testing.T) {
	// What NodePublish does: a filesystem volume's directory bound into a
	// pod, and a block volume's device node bound onto a file.
	dev := e.createLV(t, hostexec.LVSpec{Name: "bind", SizeBytes: 64 * mib})
	require.NoError(t, e.h.Mkfs(e.ctx, dev, "ext4", nil))
	staging := e.mount(t, dev, "ext4")
	sum := writeFile(t, filepath.Join(staging, "data"), mib, 9)

	rw := t.TempDir()
	require.NoError(t, e.h.BindMount(e.ctx, staging, rw, false))
	t.Cleanup(func() { _ = e.h.Unmount(e.ctx, rw) })
	require.Equal(t, sum, fileSum(t, filepath.Join(rw, "data")))
	require.NoError(t, os.WriteFile(filepath.Join(rw, "from-pod"), []byte("hello"), 0o644))
	b, err := os.ReadFile(filepath.Join(staging, "from-pod"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(b), "a bind mount shares the filesystem")

	ro := t.TempDir()
	require.NoError(t, e.h.BindMount(e.ctx, staging, ro, true))
	t.Cleanup(func() { _ = e.h.Unmount(e.ctx, ro) })
	require.ErrorIs(t, os.WriteFile(filepath.Join(ro, "x"), []byte("x"), 0o644), unix.EROFS)

	blockDev := e.createLV(t, hostexec.LVSpec{Name: "bind-block", SizeBytes: 8 * mib})
	target := filepath.Join(t.TempDir(), "volume")
	require.NoError(t, e.h.MakeFile(e.ctx, target))
	require.NoError(t, e.h.BindMount(e.ctx, blockDev, target, false))
	t.Cleanup(func() { _ = e.h.Unmount(e.ctx, target) })
	major, minor := DeviceNumber(t, target)
	require.Equal(t, [2]int32{int32(major), int32(minor)}, [2]int32{e.findLV(t, "bind-block").Major, e.findLV(t, "bind-block").Minor},
		"the bound file is the LV's block device")
	f, err := os.Open(target)
	require.NoError(t, err)
	size, err := f.Seek(0, io.SeekEnd)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, 8*mib, size)
	require.NoError(t, e.h.Unmount(e.ctx, target))
	mounted, err := e.h.IsMountPoint(e.ctx, target)
	require.NoError(t, err)
	require.False(t, mounted)
}

func (e *lvmEnv) testVGExtendStriped(t *testing.T) {
	pv := ClaimDisk(t, e.disks.Extra)
	sizeBefore := e.findVG(t).TotalBytes
	require.NoError(t, e.h.ExtendVG(e.ctx, e.vg, []string{pv}))
	t.Cleanup(func() {
		if _, err := Tool("lvm", "vgreduce", e.vg, pv); err != nil {
			t.Errorf("vgreduce: %v", err)
		}
	})
	require.ErrorIs(t, e.h.ExtendVG(e.ctx, e.vg, []string{pv}), hostexec.ErrAlreadyExists)
	vg := e.findVG(t)
	require.Len(t, vg.PVs, 2)
	require.InDelta(t, sizeBefore+e.disks.Extra.SizeBytes, vg.TotalBytes, float64(8*mib))

	dev := e.createLV(t, hostexec.LVSpec{Name: "striped", SizeBytes: 256 * mib, Stripes: 2, StripeSizeBytes: 64 << 10})
	require.Equal(t, 256*mib, e.deviceSize(t, dev))
	lv := e.findLV(t, "striped")
	require.Equal(t, 2, lv.Stripes)
	// Independent check: the device-mapper table is a 2-way stripe over both disks.
	table := Run(t, "dmsetup", "table", e.vg+"-striped")
	require.Contains(t, table, " striped 2 128 ", "dm table %q (2 stripes of 128 sectors)", table)
	require.ErrorIs(t, e.h.CreateLV(e.ctx, hostexec.LVSpec{VG: e.vg, Name: "three", SizeBytes: 64 * mib, Stripes: 3}),
		hostexec.ErrInsufficientSpace, "3 stripes need 3 PVs")
}

// --- shared by the subtests ---

func (e *lvmEnv) createLV(t *testing.T, spec hostexec.LVSpec) string {
	t.Helper()
	spec.VG = e.vg
	require.NoError(t, e.h.CreateLV(e.ctx, spec))
	e.removeAtCleanup(t, spec.Name)
	dev := e.h.LVDevicePath(e.vg, spec.Name)
	_, err := os.Stat(dev)
	require.NoError(t, err, "the LV's device node exists without udev")
	return dev
}

func (e *lvmEnv) createSnapshot(t *testing.T, spec hostexec.SnapshotSpec) string {
	t.Helper()
	spec.VG = e.vg
	require.NoError(t, e.h.CreateSnapshot(e.ctx, spec))
	e.removeAtCleanup(t, spec.Name)
	return e.h.LVDevicePath(e.vg, spec.Name)
}

// removeAtCleanup removes an LV with lvm itself, so cleanup does not depend
// on the code under test (and takes snapshots along).
func (e *lvmEnv) removeAtCleanup(t *testing.T, name string) {
	t.Cleanup(func() {
		if out, err := Tool("lvm", "lvs", "--noheadings", "-o", "lv_name", e.vg+"/"+name); err != nil || strings.TrimSpace(out) == "" {
			return // already removed by the test
		}
		if _, err := Tool("lvm", "lvremove", "-f", "-y", e.vg+"/"+name); err != nil {
			t.Errorf("lvremove: %v", err)
		}
	})
}

// mount mounts dev on a fresh directory through the Host and unmounts it at
// cleanup (unless the test did).
func (e *lvmEnv) mount(t *testing.T, dev, fsType string, opts ...string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, e.h.Mount(e.ctx, dev, dir, fsType, opts))
	t.Cleanup(func() {
		if _, mounted, _ := MountOf(dir); mounted {
			if _, err := Tool("umount", dir); err != nil {
				t.Errorf("umount: %v", err)
			}
		}
	})
	return dir
}

func (e *lvmEnv) findVG(t *testing.T) core.VolumeGroup {
	t.Helper()
	st, err := e.h.LVMReport(e.ctx)
	require.NoError(t, err)
	vg, ok := st.FindVG(e.vg)
	require.True(t, ok, "VG %s in the LVM report", e.vg)
	return *vg
}

func (e *lvmEnv) findLV(t *testing.T, name string) core.LogicalVolume {
	t.Helper()
	vg := e.findVG(t)
	lv, ok := vg.FindLV(name)
	require.True(t, ok, "LV %s/%s in the LVM report", e.vg, name)
	return *lv
}

func (e *lvmEnv) deviceSize(t *testing.T, dev string) int64 {
	t.Helper()
	n, err := e.h.DeviceSize(e.ctx, dev)
	require.NoError(t, err)
	return n
}

func (e *lvmEnv) statFS(t *testing.T, dir string) hostexec.FSStats {
	t.Helper()
	st, err := e.h.StatFS(e.ctx, dir)
	require.NoError(t, err)
	return st
}

// requireDevNumber checks the report's device numbers against the node.
func requireDevNumber(t *testing.T, dev string, lv core.LogicalVolume) {
	t.Helper()
	major, minor := DeviceNumber(t, dev)
	require.Equal(t, int32(major), lv.Major)
	require.Equal(t, int32(minor), lv.Minor)
}

type fsUsage struct{ total, avail, used int64 }

func rawStatfs(t *testing.T, dir string) fsUsage {
	t.Helper()
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &st))
	bs := st.Bsize
	return fsUsage{total: int64(st.Blocks) * bs, avail: int64(st.Bavail) * bs, used: int64(st.Blocks-st.Bfree) * bs}
}

// randomBytes returns size bytes that differ with seed and from one 4 KiB
// block to the next: one random 64 KiB tile, each block stamped with its
// number. Generating every byte at random is slow under emulation.
func randomBytes(size int64, seed uint64) []byte {
	tile := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(seed, ^seed))
	for i := 0; i+8 <= len(tile); i += 8 {
		binary.LittleEndian.PutUint64(tile[i:], r.Uint64())
	}
	data := make([]byte, size)
	for off := 0; off < len(data); {
		off += copy(data[off:], tile)
	}
	for blk := 0; blk*4096+8 <= len(data); blk++ {
		binary.LittleEndian.PutUint64(data[blk*4096:], uint64(blk)^seed<<32)
	}
	return data
}

// writeFile writes size pseudo-random bytes (from seed), fsyncs, and returns
// their SHA-256.
func writeFile(t *testing.T, path string, size int64, seed uint64) [32]byte {
	t.Helper()
	data := randomBytes(size, seed)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	require.NoError(t, err)
	_, err = f.Write(data)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	return sha256.Sum256(data)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

func writeDevice(t *testing.T, dev string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(data, 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

func readDevice(t *testing.T, dev string, n int) []byte {
	t.Helper()
	f, err := os.Open(dev)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	b := make([]byte, n)
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	return b
}

// equalBytes is bytes.Equal with a short failure message instead of a dump.
func equalBytes(t *testing.T, want, got []byte, what string) {
	t.Helper()
	if !bytes.Equal(want, got) {
		i := 0
		for i < len(want) && i < len(got) && want[i] == got[i] {
			i++
		}
		t.Fatalf("%s: contents differ from byte %d (lengths %d and %d)", what, i, len(want), len(got))
	}
}
