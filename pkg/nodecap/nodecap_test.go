package nodecap

import (
	"testing"

	"github.com/open-local/open-local/core"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

const gi = core.GiB

var everything = core.ListConfig{
	VGs:         core.Filter{Include: []string{".*"}},
	MountPoints: core.Filter{Include: []string{".*"}},
	Devices:     core.Filter{Include: []string{".*"}},
}

func TestVolumeGroupAllocatable(t *testing.T) {
	ns := core.NodeStorage{VGs: []core.VolumeGroup{
		{
			Name: "pool-0", TotalBytes: 200 * gi, FreeBytes: 150 * gi,
			PVs: []core.PhysicalVolume{{Name: "/dev/vdb"}, {Name: "/dev/vdc"}},
			LVs: []core.LogicalVolume{
				{Name: "local-abc", SizeBytes: 30 * gi},
				{Name: "snap-1", SizeBytes: 4 * gi},
				{Name: "backup", SizeBytes: 16 * gi},
			},
		},
		{Name: "pool-1", TotalBytes: 100 * gi, FreeBytes: 100 * gi},
		{Name: "system", TotalBytes: 50 * gi, FreeBytes: 50 * gi},
	}}
	lc := core.ListConfig{VGs: core.Filter{Include: []string{"pool-[0-9]+"}}}
	res, err := Compute(ns, lc, `{"pool-1":"10%"}`, Options{})
	require.NoError(t, err)
	assert.Equal(t, []string{"pool-0", "pool-1"}, res.Filtered.VGs)
	assert.Equal(t, []core.VGCapacity{
		{Name: "pool-0", AllocatableBytes: 184 * gi, PVCount: 2}, // 200 minus the foreign 16
		{Name: "pool-1", AllocatableBytes: 90 * gi, PVCount: 0},
	}, res.Capacity.VGs)
	assert.Equal(t, []ExistingVolume{{VG: "pool-0", Name: "local-abc", SizeBytes: 30 * gi}, {VG: "pool-0", Name: "snap-1", SizeBytes: 4 * gi}}, res.Existing)

	res, err = Compute(ns, lc, `{"pool-0":"100Gi"}`, Options{OwnedLVPrefixes: []string{"local"}})
	require.NoError(t, err)
	assert.Equal(t, 200*gi-4*gi-16*gi-100*gi, res.Capacity.VGs[0].AllocatableBytes, "own prefixes: snap-1 counts as foreign")
	assert.Len(t, res.Existing, 1)
}

func TestVolumeGroupNeverOffersMoreThanIsFree(t *testing.T) {
	// The report lists no LV but the VG is half full: something is there that
	// the report missed, and allocatable must not promise it.
	ns := core.NodeStorage{VGs: []core.VolumeGroup{{Name: "pool", TotalBytes: 100 * gi, FreeBytes: 40 * gi,
		LVs: []core.LogicalVolume{{Name: "local-a", SizeBytes: 10 * gi}}}}}
	res, err := Compute(ns, everything, "", Options{})
	require.NoError(t, err)
	assert.Equal(t, 50*gi, res.Capacity.VGs[0].AllocatableBytes, "free 40 plus our own 10")
}

func TestInvalidConfigOffersNothing(t *testing.T) {
	ns := core.NodeStorage{VGs: []core.VolumeGroup{{Name: "pool", TotalBytes: gi, FreeBytes: gi}}}
	_, err := Compute(ns, core.ListConfig{VGs: core.Filter{Include: []string{"pool-(", "ok"}}}, "", Options{})
	var pe *core.PatternError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "listConfig.vgs.include[0]", pe.Field)
	assert.Equal(t, "pool-(", pe.Pattern)

	_, err = Compute(ns, everything, `{"pool": "lots"}`, Options{})
	require.ErrorIs(t, err, core.ErrInvalid)
	assert.Contains(t, err.Error(), `volume group "pool"`)
	_, err = Compute(ns, everything, `not json`, Options{})
	assert.ErrorContains(t, err, core.ReservedAnnotation)
}

func TestDevicesInUseAreNotOffered(t *testing.T) {
	ns := core.NodeStorage{
		Devices: []core.BlockDevice{
			{Name: "/dev/vda", SizeBytes: 40 * gi, Media: core.MediaSSD},
			{Name: "/dev/vda1", SizeBytes: 40 * gi, Media: core.MediaSSD},
			{Name: "/dev/vdb", SizeBytes: 100 * gi, Media: core.MediaSSD},
			{Name: "/dev/vdc", SizeBytes: 100 * gi, Media: core.MediaHDD},
			{Name: "/dev/vdd", SizeBytes: 100 * gi, Media: core.MediaHDD, ReadOnly: true},
			{Name: "/dev/vde", SizeBytes: 100 * gi, Media: core.MediaHDD},
			{Name: "/dev/vdf", SizeBytes: 100 * gi, Signatures: []string{"ext4"}},
			{Name: "/dev/vdg", SizeBytes: 500 * gi, Media: core.MediaHDD},
			{Name: "/dev/nvme0n1", SizeBytes: 900 * gi, Media: core.MediaSSD},
			{Name: "/dev/nvme0n1p1", SizeBytes: 300 * gi, Media: core.MediaSSD},
			{Name: "/dev/nvme0n1p2", SizeBytes: 600 * gi, Media: core.MediaSSD},
			{Name: "/dev/vdh", SizeBytes: gi},
			{Name: "/dev/vdh1", SizeBytes: gi},
			{Name: "/dev/vdi", SizeBytes: gi, Signatures: []string{"gpt", "PMBR"}},
			{Name: "/dev/vdi1", SizeBytes: gi},
			{Name: "/dev/vdj", SizeBytes: gi, Signatures: []string{"dos", "ext4"}},
			{Name: "/dev/vdj1", SizeBytes: gi},
		},
		VGs:         []core.VolumeGroup{{Name: "pool", PVs: []core.PhysicalVolume{{Name: "/dev/vdb"}, {Name: "/dev/nvme0n1p1"}, {Name: "/dev/vdh"}}}},
		MountPoints: []core.MountPoint{{Path: "/mnt/open-local/disk-0", Device: "/dev/vde", FSType: "ext4", TotalBytes: 100 * gi}, {Path: "/", Device: "/dev/vda1", FSType: "ext4"}},
	}
	LinkPartitions(ns.Devices)
	res, err := Compute(ns, everything, "", Options{})
	require.NoError(t, err)
	assert.Equal(t, []core.DeviceCapacity{
		{Name: "/dev/nvme0n1p2", SizeBytes: 600 * gi, Media: core.MediaSSD},
		{Name: "/dev/vdc", SizeBytes: 100 * gi, Media: core.MediaHDD},
		{Name: "/dev/vdg", SizeBytes: 500 * gi, Media: core.MediaHDD},
		// A blank partition of a disk with a partition table, as the CSI driver hands it out.
		{Name: "/dev/vdi1", SizeBytes: gi},
	}, res.Capacity.Devices)
	assert.Equal(t, []core.DeviceCapacity{{Name: "/dev/vdf", SizeBytes: 100 * gi}}, res.Formatted,
		"only a device whose one fault is its signatures may be offered to a volume that holds it")
	why := map[string]string{}
	for _, s := range res.Skipped {
		if s.Kind == core.KindDevice {
			why[s.Name] = s.Reason
		}
	}
	assert.Equal(t, map[string]string{
		"/dev/nvme0n1":   "partition /dev/nvme0n1p1 is in use (physical volume of volume group pool)",
		"/dev/nvme0n1p1": "physical volume of volume group pool",
		"/dev/vda":       "partition /dev/vda1 is in use (mounted at /)",
		"/dev/vda1":      "mounted at /",
		"/dev/vdb":       "physical volume of volume group pool",
		"/dev/vdd":       "read-only",
		"/dev/vde":       "mounted at /mnt/open-local/disk-0",
		"/dev/vdf":       "carries ext4",
		"/dev/vdh":       "physical volume of volume group pool",
		"/dev/vdh1":      "its disk /dev/vdh is in use (physical volume of volume group pool)",
		"/dev/vdi":       "has partitions /dev/vdi1",
		"/dev/vdj":       "has partitions /dev/vdj1",
		"/dev/vdj1":      "its disk /dev/vdj carries ext4",
	}, why)
}

func TestMountPoints(t *testing.T) {
	ns := core.NodeStorage{
		Devices: []core.BlockDevice{{Name: "/dev/vdb", Media: core.MediaHDD}},
		MountPoints: []core.MountPoint{
			{Path: "/mnt/open-local/disk-1", Device: "/dev/vdb", FSType: "xfs", TotalBytes: 200 * gi},
			{Path: "/mnt/open-local/disk-0", Device: "/dev/unknown", FSType: "ext4", TotalBytes: 100 * gi},
			{Path: "/mnt/open-local/disk-2", FSType: "ext4", ReadOnly: true},
			{Path: "/mnt/open-local/disk-3", FSType: "tmpfs"},
			{Path: "/var", FSType: "ext4"},
		},
	}
	lc := core.ListConfig{MountPoints: core.Filter{Include: []string{"/mnt/open-local/disk-[0-9]+"}}}
	res, err := Compute(ns, lc, "", Options{})
	require.NoError(t, err)
	assert.Equal(t, []core.DeviceCapacity{
		{Name: "/mnt/open-local/disk-0", SizeBytes: 100 * gi},
		{Name: "/mnt/open-local/disk-1", SizeBytes: 200 * gi, Media: core.MediaHDD},
	}, res.Capacity.MountPoints)
	assert.Equal(t, []Skipped{
		{Kind: core.KindMountPoint, Name: "/mnt/open-local/disk-2", Reason: "mounted read-only"},
		{Kind: core.KindMountPoint, Name: "/mnt/open-local/disk-3", Reason: `filesystem "tmpfs" is not one of ext3, ext4, xfs`},
	}, res.Skipped)
	assert.Empty(t, res.Capacity.Devices, "devices are not listed")
}

func TestDuplicatesAreOfferedOnce(t *testing.T) {
	ns := core.NodeStorage{
		Devices:     []core.BlockDevice{{Name: "/dev/vdb", SizeBytes: gi}, {Name: "/dev/vdb", SizeBytes: 2 * gi}},
		VGs:         []core.VolumeGroup{{Name: "p", TotalBytes: gi, FreeBytes: gi}, {Name: "p", TotalBytes: 9 * gi, FreeBytes: 9 * gi}},
		MountPoints: []core.MountPoint{{Path: "/m", FSType: "ext4", TotalBytes: gi}, {Path: "/m", FSType: "ext4", TotalBytes: 3 * gi}},
	}
	res, err := Compute(ns, everything, "", Options{})
	require.NoError(t, err)
	assert.Equal(t, core.NodeCapacity{
		VGs:         []core.VGCapacity{{Name: "p", AllocatableBytes: gi}},
		Devices:     []core.DeviceCapacity{{Name: "/dev/vdb", SizeBytes: gi}},
		MountPoints: []core.DeviceCapacity{{Name: "/m", SizeBytes: gi}},
	}, res.Capacity)
	assert.Len(t, res.Skipped, 3)
}

func TestLinkPartitions(t *testing.T) {
	devs := []core.BlockDevice{
		{Name: "/dev/vdb"}, {Name: "/dev/vdb1"}, {Name: "/dev/vdb2"},
		{Name: "/dev/nvme0n1"}, {Name: "/dev/nvme0n1p1"},
		{Name: "/dev/sdc3"}, {Name: "/dev/loop0"}, {Name: "/dev/md127"},
	}
	LinkPartitions(devs)
	LinkPartitions(devs) // idempotent
	assert.Equal(t, []string{"/dev/vdb1", "/dev/vdb2"}, devs[0].Partitions)
	assert.Equal(t, "/dev/vdb", devs[1].Parent)
	assert.Equal(t, []string{"/dev/nvme0n1p1"}, devs[3].Partitions)
	assert.Equal(t, "/dev/nvme0n1", devs[4].Parent)
	assert.Empty(t, devs[3].Parent, "nvme0n1 is a disk, not partition 1 of nvme0n")
	for _, i := range []int{5, 6, 7} {
		assert.Empty(t, devs[i].Parent, devs[i].Name)
	}
}

// Property: the result does not depend on the order the node reports things in.
func TestComputeIgnoresReportOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 6).Draw(t, "n")
		var ns core.NodeStorage
		for i := 0; i < n; i++ {
			name := string(rune('b' + i))
			ns.Devices = append(ns.Devices, core.BlockDevice{Name: "/dev/vd" + name, SizeBytes: int64(i+1) * gi, Media: core.MediaSSD, ReadOnly: rapid.Bool().Draw(t, "ro")})
			if rapid.Bool().Draw(t, "vg") {
				ns.VGs = append(ns.VGs, core.VolumeGroup{Name: "vg-" + name, TotalBytes: 10 * gi, FreeBytes: 10 * gi,
					PVs: []core.PhysicalVolume{{Name: "/dev/vd" + name}},
					LVs: []core.LogicalVolume{{Name: "local-" + name, SizeBytes: gi}}})
			}
		}
		first, err := Compute(ns, everything, "", Options{})
		if err != nil {
			t.Fatal(err)
		}
		perm := rapid.Permutation(ns.Devices).Draw(t, "devs")
		vgs := rapid.Permutation(ns.VGs).Draw(t, "vgs")
		second, err := Compute(core.NodeStorage{Devices: perm, VGs: vgs}, everything, "", Options{})
		if err != nil {
			t.Fatal(err)
		}
		assert.Equal(t, first.Capacity, second.Capacity)
		assert.Equal(t, first.Existing, second.Existing)
		assert.ElementsMatch(t, first.Skipped, second.Skipped)
	})
}
