package discovery_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
)

var ctx = context.Background()

// node is a host with an NVMe disk and its partitions, a VG over two disks
// with an Open-Local LV and a foreign one, a blank disk and a disk with a
// foreign signature, and filesystems mounted under and outside the root.
func node(t *testing.T) *simhost.Host {
	t.Helper()
	h := simhost.MustNew(simhost.Config{
		Devices: []simhost.DeviceConfig{
			{Name: "/dev/sdb", Size: "100Gi", Media: "ssd"},
			{Name: "/dev/sdc", Size: "50Gi", Media: "ssd"},
			{Name: "/dev/sdd", Size: "20Gi", Media: "hdd"},
			{Name: "/dev/sde", Size: "10Gi", Media: "hdd", Signatures: []string{"ntfs"}},
			{Name: "/dev/nvme0n1", Size: "40Gi", Media: "ssd", Signatures: []string{"gpt"}},
			{Name: "/dev/nvme0n1p1", Size: "10Gi", Parent: "/dev/nvme0n1"},
			{Name: "/dev/nvme0n1p2", Size: "10Gi", Parent: "/dev/nvme0n1"},
			{Name: "/dev/vdr", Size: "5Gi", ReadOnly: true},
		},
		VGs: []simhost.VGConfig{{Name: "pool", Devices: []string{"/dev/sdc", "/dev/sdb"}}},
	})
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "pool", Name: "local-pv-1", SizeBytes: 10 * core.GiB}))
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "pool", Name: "foreign", SizeBytes: 20 * core.GiB}))
	mount := func(dev, fs, target string, opts []string) {
		require.NoError(t, h.Mkfs(ctx, dev, fs, nil))
		require.NoError(t, h.MakeDir(ctx, target))
		require.NoError(t, h.Mount(ctx, dev, target, fs, opts))
	}
	mount("/dev/nvme0n1p1", "ext4", "/mnt/open-local/disk1", nil)
	mount("/dev/nvme0n1p2", "xfs", "/mnt/open-local/disk2", []string{"ro"})
	mount("/dev/sdd", "ext4", "/var/lib/other", nil)
	return h
}

func TestDiscover(t *testing.T) {
	h := node(t)
	d, err := discovery.New(h, discovery.Options{})
	require.NoError(t, err)
	assert.Equal(t, discovery.DefaultMountRoot, d.MountRoot())
	h.ResetCalls()
	snap, err := d.Discover(ctx)
	require.NoError(t, err)
	assert.Empty(t, snap.Problems)
	assert.Equal(t, 1, h.CallCount("LVMReport"), "one LVM report per pass")
	assert.Equal(t, 1, h.CallCount("ListBlockDevices"))
	assert.Equal(t, 1, h.CallCount("ListMounts"))
	assert.Equal(t, 2, h.CallCount("StatFS"), "one statfs per mount point under the root")

	var names []string
	for _, dev := range snap.Storage.Devices {
		names = append(names, dev.Name)
	}
	assert.Equal(t, []string{"/dev/nvme0n1", "/dev/nvme0n1p1", "/dev/nvme0n1p2", "/dev/sdb", "/dev/sdc", "/dev/sdd", "/dev/sde", "/dev/vdr"}, names,
		"NVMe disks and partitions are reported, sorted by name")
	nvme := snap.Storage.Devices[0]
	assert.Equal(t, []string{"/dev/nvme0n1p1", "/dev/nvme0n1p2"}, nvme.Partitions)
	assert.Equal(t, []string{"gpt"}, nvme.Signatures)
	assert.Equal(t, "/dev/nvme0n1", snap.Storage.Devices[1].Parent)
	assert.Equal(t, []string{"ext4"}, snap.Storage.Devices[1].Signatures, "in-use signatures are kept")
	assert.Equal(t, []string{"ntfs"}, snap.Storage.Devices[6].Signatures)
	assert.True(t, snap.Storage.Devices[7].ReadOnly)
	assert.Equal(t, core.MediaHDD, snap.Storage.Devices[5].Media)

	require.Len(t, snap.Storage.VGs, 1)
	vg := snap.Storage.VGs[0]
	assert.Equal(t, "pool", vg.Name)
	assert.Equal(t, []string{"/dev/sdb", "/dev/sdc"}, pvNames(vg))
	assert.Equal(t, []string{"foreign", "local-pv-1"}, lvNames(vg))

	require.Len(t, snap.Storage.MountPoints, 2, "only direct children of the root")
	mp1, mp2 := snap.Storage.MountPoints[0], snap.Storage.MountPoints[1]
	assert.Equal(t, "/mnt/open-local/disk1", mp1.Path)
	assert.Equal(t, "/dev/nvme0n1p1", mp1.Device)
	assert.Equal(t, "ext4", mp1.FSType)
	assert.Equal(t, 10*core.GiB, mp1.TotalBytes)
	assert.Positive(t, mp1.AvailableBytes)
	assert.False(t, mp1.ReadOnly)
	assert.True(t, discovery.Schedulable(mp1))
	assert.Equal(t, "xfs", mp2.FSType)
	assert.True(t, mp2.ReadOnly)
	assert.False(t, discovery.Schedulable(mp2), "a read-only mount point is not schedulable")
	assert.Len(t, snap.Mounts, 3, "the whole mount table is kept for initialisation")
}

func TestSchedulable(t *testing.T) {
	for fs, want := range map[string]bool{"ext4": true, "ext3": true, "xfs": true, "btrfs": false, "tmpfs": false, "": false} {
		assert.Equal(t, want, discovery.Schedulable(core.MountPoint{FSType: fs}), fs)
	}
	assert.False(t, discovery.Schedulable(core.MountPoint{FSType: "ext4", ReadOnly: true}))
}

func TestMountsUnder(t *testing.T) {
	mounts := []hostexec.MountInfo{
		{Source: "/dev/a", Target: "/mnt/open-local"},
		{Source: "/dev/b", Target: "/mnt/open-local/b/"},
		{Source: "/dev/c", Target: "/mnt/open-local/b/c"},
		{Source: "/dev/d", Target: "/mnt/open-local-other/d"},
		{Source: "/dev/e", Target: "/mnt/open-local/a"},
		{Source: "/dev/f", Target: "/mnt/open-local/b"},
	}
	got := discovery.MountsUnder(mounts, "/mnt/open-local/")
	require.Len(t, got, 2)
	assert.Equal(t, hostexec.MountInfo{Source: "/dev/e", Target: "/mnt/open-local/a"}, got[0])
	assert.Equal(t, hostexec.MountInfo{Source: "/dev/f", Target: "/mnt/open-local/b"}, got[1], "the last of stacked mounts is the visible one")
}

func TestDeviceFilter(t *testing.T) {
	h := node(t)
	d, err := discovery.New(h, discovery.Options{DeviceFilter: regexp.MustCompile(`(s|v|xv)d[a-z]+`)})
	require.NoError(t, err)
	snap, err := d.Discover(ctx)
	require.NoError(t, err)
	for _, dev := range snap.Storage.Devices {
		assert.NotContains(t, dev.Name, "nvme", "the filter matches whole names")
	}
	assert.Len(t, snap.Storage.Devices, 5)
	assert.Len(t, snap.Storage.VGs, 1, "VGs are reported whatever the device filter")

	// Whole-name matching does not depend on the order of alternatives.
	d, err = discovery.New(h, discovery.Options{DeviceFilter: regexp.MustCompile(`sd|sdb|nvme0n1`)})
	require.NoError(t, err)
	snap, err = d.Discover(ctx)
	require.NoError(t, err)
	var names []string
	for _, dev := range snap.Storage.Devices {
		names = append(names, dev.Name)
	}
	assert.Equal(t, []string{"/dev/nvme0n1", "/dev/sdb"}, names)
}

func TestNewRejectsBadRoot(t *testing.T) {
	for _, root := range []string{"relative", "/a/../b", "/a//b"} {
		_, err := discovery.New(simhost.MustNew(simhost.Default()), discovery.Options{MountRoot: root})
		assert.ErrorIs(t, err, hostexec.ErrInvalidArgument, root)
	}
}

func TestDiscoverFailures(t *testing.T) {
	for _, op := range []string{"ListBlockDevices", "LVMReport", "ListMounts"} {
		t.Run(op, func(t *testing.T) {
			h := node(t)
			d, err := discovery.New(h, discovery.Options{})
			require.NoError(t, err)
			h.FailNth(op, 1, nil)
			_, err = d.Discover(ctx)
			require.Error(t, err)
			assert.Equal(t, op, discovery.Op(err))
			assert.ErrorIs(t, err, simhost.ErrInjected)
			_, err = d.Discover(ctx)
			assert.NoError(t, err, "the next pass works again")
		})
	}
	t.Run("StatFS", func(t *testing.T) {
		h := node(t)
		d, err := discovery.New(h, discovery.Options{})
		require.NoError(t, err)
		h.FailNth("StatFS", 1, nil)
		snap, err := d.Discover(ctx)
		require.NoError(t, err, "one mount point that cannot be measured does not fail the pass")
		require.Len(t, snap.Problems, 1)
		assert.Equal(t, discovery.OpStatFS, discovery.Op(snap.Problems[0]))
		assert.Contains(t, snap.Problems[0].Error(), "/mnt/open-local/disk1")
		require.Len(t, snap.Storage.MountPoints, 1)
		assert.Equal(t, "/mnt/open-local/disk2", snap.Storage.MountPoints[0].Path)
	})
	assert.Equal(t, "", discovery.Op(errors.New("plain")))
}

// reversedHost reports everything in reverse order.
type reversedHost struct{ hostexec.Host }

func (r reversedHost) ListBlockDevices(ctx context.Context) ([]core.BlockDevice, error) {
	devs, err := r.Host.ListBlockDevices(ctx)
	slices.Reverse(devs)
	for i := range devs {
		slices.Reverse(devs[i].Partitions)
	}
	return devs, err
}

func (r reversedHost) LVMReport(ctx context.Context) (core.LVMState, error) {
	st, err := r.Host.LVMReport(ctx)
	slices.Reverse(st.VGs)
	for i := range st.VGs {
		slices.Reverse(st.VGs[i].PVs)
		slices.Reverse(st.VGs[i].LVs)
	}
	return st, err
}

func (r reversedHost) ListMounts(ctx context.Context) ([]hostexec.MountInfo, error) {
	m, err := r.Host.ListMounts(ctx)
	slices.Reverse(m)
	return m, err
}

func TestDeterministicOrder(t *testing.T) {
	h := node(t)
	require.NoError(t, h.CreateVG(ctx, "another", []string{"/dev/sde"}, true))
	so := discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes}
	d1, err := discovery.New(h, discovery.Options{})
	require.NoError(t, err)
	d2, err := discovery.New(reversedHost{h}, discovery.Options{})
	require.NoError(t, err)
	s1, err := d1.Discover(ctx)
	require.NoError(t, err)
	s2, err := d2.Discover(ctx)
	require.NoError(t, err)
	assert.Equal(t, discovery.NodeStorageInfo(s1, so), discovery.NodeStorageInfo(s2, so), "the host's order does not show in the status")
	lc, err := core.CompileListConfig(core.ListConfig{VGs: core.Filter{Include: []string{".*"}}, Devices: core.Filter{Include: []string{".*"}}})
	require.NoError(t, err)
	assert.Equal(t, discovery.Filtered(s1, lc), discovery.Filtered(s2, lc))
}

func pvNames(vg core.VolumeGroup) []string {
	var out []string
	for _, pv := range vg.PVs {
		out = append(out, pv.Name)
	}
	return out
}

func lvNames(vg core.VolumeGroup) []string {
	var out []string
	for _, lv := range vg.LVs {
		out = append(out, lv.Name)
	}
	return out
}

func TestNodeStorageInfo(t *testing.T) {
	h := node(t)
	d, err := discovery.New(h, discovery.Options{})
	require.NoError(t, err)
	snap, err := d.Discover(ctx)
	require.NoError(t, err)
	vgTotal := snap.Storage.VGs[0].TotalBytes

	info := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes})
	assert.Equal(t, v1alpha1.StorageRunning, info.Phase)
	assert.Equal(t, v1alpha1.StorageState{Type: v1alpha1.StorageReady, Status: "True", Reason: discovery.StateReasonDiscovered,
		Message: "8 devices, 1 volume groups, 2 mount points"}, info.State)
	require.Len(t, info.DeviceInfos, 8)
	assert.Equal(t, v1alpha1.DeviceInfo{Name: "/dev/nvme0n1", MediaType: v1alpha1.MediaTypeSSD, Total: uint64(40 * core.GiB), Condition: v1alpha1.StorageReady, Signatures: []string{"gpt"}}, info.DeviceInfos[0], "signatures are reported: the scheduler must not count a disk carrying one as blank")
	assert.True(t, info.DeviceInfos[7].ReadOnly)

	require.Len(t, info.VolumeGroups, 1)
	vg := info.VolumeGroups[0]
	assert.Equal(t, "pool", vg.Name)
	assert.Equal(t, []string{"/dev/sdb", "/dev/sdc"}, vg.PhysicalVolumes)
	assert.Equal(t, uint64(vgTotal), vg.Total)
	assert.Equal(t, uint64(vgTotal-30*core.GiB), vg.Available)
	assert.Equal(t, uint64(vgTotal-20*core.GiB), vg.Allocatable, "the foreign LV is subtracted, Open-Local's own is not")
	assert.Equal(t, v1alpha1.StorageReady, vg.Condition)
	assert.Equal(t, []v1alpha1.LogicalVolume{
		{Name: "foreign", VGName: "pool", Total: uint64(20 * core.GiB), Condition: v1alpha1.StorageReady},
		{Name: "local-pv-1", VGName: "pool", Total: uint64(10 * core.GiB), Condition: v1alpha1.StorageReady},
	}, vg.LogicalVolumes)

	require.Len(t, info.MountPoints, 2)
	mp := info.MountPoints[0]
	assert.Equal(t, "/mnt/open-local/disk1", mp.Name)
	assert.Equal(t, "/dev/nvme0n1p1", mp.Device)
	assert.Equal(t, "ext4", mp.FsType)
	assert.Equal(t, []string{"rw"}, mp.Options)
	assert.False(t, mp.IsBind)
	assert.Equal(t, v1alpha1.StorageReady, mp.Condition)
	assert.True(t, info.MountPoints[1].ReadOnly)

	// Reservations: absolute and percentage.
	abs := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes,
		Reservations: map[string]core.Reservation{"pool": {Bytes: 10 * core.GiB}}})
	assert.Equal(t, uint64(vgTotal-30*core.GiB), abs.VolumeGroups[0].Allocatable)
	res, err := core.ParseReservations(`{"pool":"50%"}`)
	require.NoError(t, err)
	pct := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes, Reservations: res})
	assert.Equal(t, uint64(vgTotal-20*core.GiB-vgTotal/2), pct.VolumeGroups[0].Allocatable, "a percentage reservation takes effect")
	held := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes, HoldBackAll: true})
	assert.Zero(t, held.VolumeGroups[0].Allocatable)

	// Prefixes decide what is Open-Local's.
	other := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: []string{"foreign"}})
	assert.Equal(t, uint64(vgTotal-10*core.GiB), other.VolumeGroups[0].Allocatable)
}

func TestConditions(t *testing.T) {
	pv := func(name string) core.PhysicalVolume {
		return core.PhysicalVolume{Name: name, VG: "vg", SizeBytes: core.GiB}
	}
	lv := func(name, attr string) core.LogicalVolume {
		return core.LogicalVolume{Name: name, VG: "vg", SizeBytes: core.GiB, Attr: attr}
	}
	snap := func(vgs ...core.VolumeGroup) discovery.Snapshot {
		return discovery.Snapshot{Storage: core.NodeStorage{VGs: vgs}}
	}
	healthy := core.VolumeGroup{Name: "vg", TotalBytes: 2 * core.GiB, FreeBytes: core.GiB, PVs: []core.PhysicalVolume{pv("/dev/a")},
		LVs: []core.LogicalVolume{lv("local-1", "-wi-ao----")}}
	info := discovery.NodeStorageInfo(snap(healthy), discovery.StatusOptions{})
	assert.Equal(t, v1alpha1.StorageReady, info.VolumeGroups[0].Condition)
	assert.Equal(t, v1alpha1.StorageReady, info.State.Type)

	full := healthy
	full.FreeBytes = 0
	info = discovery.NodeStorageInfo(snap(full), discovery.StatusOptions{})
	assert.Equal(t, v1alpha1.StorageFull, info.VolumeGroups[0].Condition)
	assert.Equal(t, v1alpha1.StorageFull, info.State.Type, "nothing is free anywhere")
	assert.Equal(t, discovery.StateReasonNoSpaceLeft, info.State.Reason)
	withFreeMount := snap(full)
	withFreeMount.Storage.MountPoints = []core.MountPoint{{Path: "/mnt/open-local/a", FSType: "ext4", TotalBytes: 10, AvailableBytes: 5}}
	info = discovery.NodeStorageInfo(withFreeMount, discovery.StatusOptions{})
	assert.Equal(t, v1alpha1.StorageReady, info.State.Type, "a mount point still has space")
	assert.Equal(t, v1alpha1.StorageReady, info.MountPoints[0].Condition)
	withFreeMount.Storage.MountPoints[0].AvailableBytes = 0
	info = discovery.NodeStorageInfo(withFreeMount, discovery.StatusOptions{})
	assert.Equal(t, v1alpha1.StorageFull, info.MountPoints[0].Condition)

	partial := healthy
	partial.PVs = []core.PhysicalVolume{pv("/dev/a"), pv(discovery.MissingPVName)}
	partial.LVs = []core.LogicalVolume{lv("local-1", "-wi-a---p-"), lv("ro", "-ri-a-----"), lv("snap-1", "swi-I-s---"), lv("bad", "garbage")}
	info = discovery.NodeStorageInfo(snap(partial), discovery.StatusOptions{})
	vg := info.VolumeGroups[0]
	assert.Equal(t, v1alpha1.StorageFault, vg.Condition)
	assert.Equal(t, v1alpha1.StorageFault, info.State.Type)
	assert.Equal(t, discovery.StateReasonFault, info.State.Reason)
	assert.Contains(t, info.State.Message, "volume group vg: a physical volume is missing")
	assert.Contains(t, info.State.Message, "logical volume vg/local-1: LV is partial")
	assert.Equal(t, v1alpha1.StorageFault, vg.LogicalVolumes[0].Condition, "partial LV")
	assert.Equal(t, v1alpha1.StorageReady, vg.LogicalVolumes[1].Condition)
	assert.True(t, vg.LogicalVolumes[1].ReadOnly)
	assert.Equal(t, v1alpha1.StorageFault, vg.LogicalVolumes[2].Condition, "an overflowed snapshot is faulty")
	assert.Equal(t, v1alpha1.StorageReady, vg.LogicalVolumes[3].Condition, "an unreadable attribute is not a fault")
	assert.Equal(t, []string{"logical volume vg/local-1: LV is partial: one or more of its physical volumes is missing",
		"volume group vg: a physical volume is missing"}, discovery.VGFaults(partial))

	failed := healthy
	failed.LVs = []core.LogicalVolume{lv("x", "-wi-a---F-")}
	assert.Len(t, discovery.VGFaults(failed), 1)
	h := discovery.LVHealth(lv("s", "swi-I-s---"))
	assert.Equal(t, v1alpha1.StorageFault, h.Condition)
	assert.Contains(t, h.Message, "overflowed")
}

func TestFiltered(t *testing.T) {
	h := node(t)
	require.NoError(t, h.CreateVG(ctx, "other", []string{"/dev/sde"}, true))
	d, err := discovery.New(h, discovery.Options{})
	require.NoError(t, err)
	snap, err := d.Discover(ctx)
	require.NoError(t, err)
	lc, err := core.CompileListConfig(core.ListConfig{
		VGs:         core.Filter{Include: []string{"pool", "oth.*"}, Exclude: []string{"other"}},
		MountPoints: core.Filter{Include: []string{"/mnt/open-local/.*"}},
		Devices:     core.Filter{Include: []string{"/dev/sd[a-z]", "/dev/nvme.*"}, Exclude: []string{"/dev/sdb"}},
	})
	require.NoError(t, err)
	f := discovery.Filtered(snap, lc)
	assert.Equal(t, []string{"pool"}, f.VolumeGroups)
	assert.Equal(t, []string{"/mnt/open-local/disk1"}, f.MountPoints, "the read-only xfs mount point is not offered")
	assert.Equal(t, []string{"/dev/nvme0n1", "/dev/nvme0n1p1", "/dev/nvme0n1p2", "/dev/sdc", "/dev/sdd", "/dev/sde"}, f.Devices)
	none, err := core.CompileListConfig(core.ListConfig{})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.FilteredStorageInfo{}, discovery.Filtered(snap, none), "only listed resources are offered")
}
