package simhost_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/lvmreport"
	"github.com/open-local/open-local/hostexec/simhost"
)

var ctx = context.Background()

func TestDefault(t *testing.T) {
	h := simhost.MustNew(simhost.Default())
	st, err := h.LVMReport(ctx)
	require.NoError(t, err)
	require.Len(t, st.VGs, 1)
	vg := st.VGs[0]
	assert.Equal(t, "open-local-pool-0", vg.Name)
	// LVM keeps the first MiB of the PV for its label and metadata.
	assert.Equal(t, 100*core.GiB-4*core.MiB, vg.TotalBytes)
	assert.Equal(t, vg.TotalBytes, vg.FreeBytes)
	assert.Equal(t, core.DefaultExtentSize, vg.ExtentSizeBytes)

	devs, err := h.ListBlockDevices(ctx)
	require.NoError(t, err)
	require.Len(t, devs, 3)
	assert.Equal(t, core.BlockDevice{Name: "/dev/sdb", SizeBytes: 100 * core.GiB, Media: core.MediaSSD, Signatures: []string{"LVM2_member"}, Major: 8, Minor: 0}, devs[0])
	assert.Equal(t, core.BlockDevice{Name: "/dev/sdc", SizeBytes: 50 * core.GiB, Media: core.MediaSSD, Major: 8, Minor: 16}, devs[1])
	assert.Equal(t, core.BlockDevice{Name: "/dev/sdd", SizeBytes: 50 * core.GiB, Media: core.MediaHDD, Major: 8, Minor: 32}, devs[2])
}

func TestLoadConfig(t *testing.T) {
	yml := `
extentSize: 8Mi
devices:
- {name: /dev/vdb, size: 10Gi, media: ssd}
- {name: /dev/vdc, size: 20Gi, signatures: [gpt]}
- {name: /dev/vdc1, size: 5Gi, parent: /dev/vdc}
- {name: /dev/vdd, size: 1Gi, readOnly: true}
vgs:
- {name: pool, devices: [/dev/vdb]}
`
	cfg, err := simhost.LoadConfig([]byte(yml))
	require.NoError(t, err)
	h, err := simhost.New(cfg)
	require.NoError(t, err)
	st, err := h.LVMReport(ctx)
	require.NoError(t, err)
	assert.Equal(t, 8*core.MiB, st.VGs[0].ExtentSizeBytes)
	assert.Equal(t, (10*core.GiB-core.MiB)/(8*core.MiB)*8*core.MiB, st.VGs[0].TotalBytes)

	devs, err := h.ListBlockDevices(ctx)
	require.NoError(t, err)
	names := []string{}
	for _, d := range devs {
		names = append(names, d.Name)
	}
	assert.Equal(t, []string{"/dev/vdb", "/dev/vdc", "/dev/vdc1", "/dev/vdd"}, names)
	assert.Equal(t, []string{"/dev/vdc1"}, devs[1].Partitions)
	assert.Equal(t, []string{"gpt"}, devs[1].Signatures)
	assert.Equal(t, "/dev/vdc", devs[2].Parent)
	assert.Equal(t, core.MediaHDD, devs[2].Media, "a partition has its disk's medium")
	assert.True(t, devs[3].ReadOnly)

	// The same config as JSON.
	cfg2, err := simhost.LoadConfig([]byte(`{"devices":[{"name":"/dev/vdb","size":"1Gi"}]}`))
	require.NoError(t, err)
	assert.Equal(t, "1Gi", cfg2.Devices[0].Size)

	isErr := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		assert.True(t, errors.Is(err, hostexec.ErrInvalidArgument) || errors.Is(err, core.ErrInvalid), err.Error())
	}
	_, err = simhost.LoadConfig([]byte(`devices: [{name: /dev/x, size: 1Gi, color: red}]`))
	require.Error(t, err, "unknown fields are errors")
	for name, c := range map[string]simhost.Config{
		"bad size":      {Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "lots"}}},
		"zero size":     {Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "0"}}},
		"odd size":      {Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "1001"}}},
		"bad name":      {Devices: []simhost.DeviceConfig{{Name: "sdb", Size: "1Gi"}}},
		"dup":           {Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "1Gi"}, {Name: "/dev/x", Size: "1Gi"}}},
		"bad media":     {Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "1Gi", Media: "nvme"}}},
		"no parent":     {Devices: []simhost.DeviceConfig{{Name: "/dev/x1", Size: "1Gi", Parent: "/dev/x"}}},
		"big partition": {Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "1Gi"}, {Name: "/dev/x1", Size: "2Gi", Parent: "/dev/x"}}},
		"bad extent":    {ExtentSize: "3Mi", Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "1Gi"}}},
	} {
		_, err := simhost.New(c)
		t.Run(name, func(t *testing.T) { isErr(t, err) })
	}
	_, err = simhost.New(simhost.Config{Devices: []simhost.DeviceConfig{{Name: "/dev/x", Size: "1Gi", Signatures: []string{"ntfs"}}},
		VGs: []simhost.VGConfig{{Name: "vg", Devices: []string{"/dev/x"}}}})
	assert.ErrorIs(t, err, hostexec.ErrInUse, "a configured VG needs blank devices")
}

func newHost(t *testing.T) *simhost.Host {
	t.Helper()
	h, err := simhost.New(simhost.Config{Devices: []simhost.DeviceConfig{
		{Name: "/dev/sdb", Size: "1Gi", Media: "ssd"},
		{Name: "/dev/sdc", Size: "1Gi", Media: "ssd"},
		{Name: "/dev/sdd", Size: "1Gi", Signatures: []string{"ntfs"}},
		{Name: "/dev/sde", Size: "2Gi"},
		{Name: "/dev/sde1", Size: "1Gi", Parent: "/dev/sde"},
	}, VGs: []simhost.VGConfig{{Name: "vg", Devices: []string{"/dev/sdb", "/dev/sdc"}}}})
	require.NoError(t, err)
	return h
}

func TestSignaturesAndForce(t *testing.T) {
	h := newHost(t)
	assert.ErrorIs(t, h.CreatePV(ctx, "/dev/sdd", false), hostexec.ErrInUse)
	assert.ErrorIs(t, h.Mkfs(ctx, "/dev/sdd", "ext4", nil), hostexec.ErrInUse)
	assert.ErrorIs(t, h.CreatePV(ctx, "/dev/sde", true), hostexec.ErrInUse, "a partitioned disk is never a PV")
	require.NoError(t, h.CreatePV(ctx, "/dev/sdd", true))
	sigs, err := h.Signatures(ctx, "/dev/sdd")
	require.NoError(t, err)
	assert.Equal(t, []string{"LVM2_member"}, sigs, "force wiped the ntfs signature")
	require.NoError(t, h.CreatePV(ctx, "/dev/sde1", false), "a partition can be a PV")
}

func TestFailNthAndCalls(t *testing.T) {
	h := newHost(t)
	boom := errors.New("disk on fire")
	h.FailNth("CreateLV", 2, boom)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "a", SizeBytes: 1}))
	err := h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "b", SizeBytes: 1})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "CreateLV")
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "b", SizeBytes: 1}), "only the nth call fails")
	st, _ := h.LVMReport(ctx)
	assert.Len(t, st.VGs[0].LVs, 2)
	assert.Equal(t, []string{"CreateLV vg/a 1", "CreateLV vg/b 1", "CreateLV vg/b 1", "LVMReport"}, h.Calls())
	assert.Equal(t, 3, h.CallCount("CreateLV"))
	h.ResetCalls()
	assert.Empty(t, h.Calls())

	h.FailNth("RemoveLV", 1, nil)
	require.ErrorIs(t, h.RemoveLV(ctx, "vg", "a"), simhost.ErrInjected)
	st, _ = h.LVMReport(ctx)
	assert.Len(t, st.VGs[0].LVs, 2, "a failed call has no effect")

	h.FailAfterEffect("RemoveLV", 1)
	require.ErrorIs(t, h.RemoveLV(ctx, "vg", "a"), simhost.ErrInjected)
	st, _ = h.LVMReport(ctx)
	assert.Len(t, st.VGs[0].LVs, 1, "the effect happened before the error")
	require.ErrorIs(t, h.RemoveLV(ctx, "vg", "a"), hostexec.ErrNotFound, "the retry sees the effect")

	h.FailNth("MakeDir", 1, nil)
	h.ClearFaults()
	require.NoError(t, h.MakeDir(ctx, "/x"))
}

func TestDelayHonoursContext(t *testing.T) {
	h := newHost(t)
	h.Delay("LVMReport", time.Hour)
	c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.LVMReport(c)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)
	// Other operations are not held up by a delayed one.
	require.NoError(t, h.MakeDir(ctx, "/y"))
	h.Delay("LVMReport", 0)
	_, err = h.LVMReport(ctx)
	require.NoError(t, err)
}

func TestConcurrentUse(t *testing.T) {
	h := newHost(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: fmt.Sprintf("lv%d", i), SizeBytes: 40 * core.MiB})
			_, _ = h.LVMReport(ctx)
		}(i)
	}
	wg.Wait()
	close(errs)
	ok, full := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, hostexec.ErrInsufficientSpace):
			full++
		default:
			t.Fatal(err)
		}
	}
	// Two 1 GiB PVs hold 2*255 extents; each LV takes 10.
	assert.Equal(t, 40, ok+full)
	assert.Equal(t, 40, ok)
	st, _ := h.LVMReport(ctx)
	assert.Equal(t, st.VGs[0].TotalBytes-40*40*core.MiB, st.VGs[0].FreeBytes)
}

func TestSnapshotCOWAccounting(t *testing.T) {
	h := newHost(t)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "data", SizeBytes: 64 * core.MiB}))
	dev := h.LVDevicePath("vg", "data")
	require.NoError(t, h.Mkfs(ctx, dev, "ext4", nil))
	require.NoError(t, h.MakeDir(ctx, "/mnt/data"))
	require.NoError(t, h.Mount(ctx, dev, "/mnt/data", "ext4", nil))
	require.NoError(t, h.WriteTestFile("/mnt/data/a", []byte("before")))
	require.NoError(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: "vg", Name: "snap", Origin: "data", SizeBytes: 4 * core.MiB}))

	snapLV := func() core.LogicalVolume {
		st, _ := h.LVMReport(ctx)
		l, _ := st.VGs[0].FindLV("snap")
		return *l
	}
	assert.Zero(t, snapLV().DataPercent)
	require.NoError(t, h.WriteTestFile("/mnt/data/b", make([]byte, core.MiB)))
	assert.InDelta(t, 25.0, snapLV().DataPercent, 0.01, "1 MiB copied into a 4 MiB COW")
	a, err := lvmreport.ParseLVAttr(snapLV().Attr)
	require.NoError(t, err)
	assert.False(t, a.Condition().Abnormal)

	require.NoError(t, h.WriteTestFile("/mnt/data/c", make([]byte, 4*core.MiB)))
	s := snapLV()
	assert.Equal(t, 100.0, s.DataPercent)
	a, err = lvmreport.ParseLVAttr(s.Attr)
	require.NoError(t, err)
	assert.True(t, a.IsInvalidSnapshot())
	assert.True(t, a.Condition().Abnormal)

	// The snapshot still shows what the origin held when it was taken.
	require.NoError(t, h.MakeDir(ctx, "/mnt/snap"))
	require.NoError(t, h.Mount(ctx, h.LVDevicePath("vg", "snap"), "/mnt/snap", "ext4", []string{"ro"}))
	b, err := h.ReadTestFile("/mnt/snap/a")
	require.NoError(t, err)
	assert.Equal(t, "before", string(b))
	_, err = h.ReadTestFile("/mnt/snap/b")
	assert.ErrorIs(t, err, hostexec.ErrNotFound)
	assert.Error(t, h.WriteTestFile("/mnt/snap/x", nil), "read-only mount")
}

func TestXFSDuplicateUUIDNeedsNouuid(t *testing.T) {
	h := newHost(t)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "x", SizeBytes: 320 * core.MiB}))
	dev := h.LVDevicePath("vg", "x")
	require.NoError(t, h.Mkfs(ctx, dev, "xfs", nil))
	require.NoError(t, h.MakeDir(ctx, "/m/x"))
	require.NoError(t, h.MakeDir(ctx, "/m/s"))
	require.NoError(t, h.Mount(ctx, dev, "/m/x", "xfs", nil))
	require.NoError(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: "vg", Name: "xs", Origin: "x", SizeBytes: 32 * core.MiB}))
	err := h.Mount(ctx, h.LVDevicePath("vg", "xs"), "/m/s", "xfs", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nouuid")
	require.NoError(t, h.Mount(ctx, h.LVDevicePath("vg", "xs"), "/m/s", "xfs", []string{"nouuid", "ro"}))
}

func TestTruncatedCopyDoesNotMount(t *testing.T) {
	h := newHost(t)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "src", SizeBytes: 64 * core.MiB}))
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "dst", SizeBytes: 64 * core.MiB}))
	require.NoError(t, h.Mkfs(ctx, h.LVDevicePath("vg", "src"), "ext4", nil))
	require.NoError(t, h.CopyDevice(ctx, h.LVDevicePath("vg", "src"), h.LVDevicePath("vg", "dst"), 32*core.MiB))
	require.NoError(t, h.MakeDir(ctx, "/m"))
	err := h.Mount(ctx, h.LVDevicePath("vg", "dst"), "/m", "ext4", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "truncated")
}

func TestFilesystemFillsUp(t *testing.T) {
	h := newHost(t)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "small", SizeBytes: 8 * core.MiB}))
	dev := h.LVDevicePath("vg", "small")
	require.NoError(t, h.Mkfs(ctx, dev, "ext4", nil))
	require.NoError(t, h.MakeDir(ctx, "/m"))
	require.NoError(t, h.Mount(ctx, dev, "/m", "ext4", nil))
	require.NoError(t, h.WriteFileAtomic(ctx, "/m/a", make([]byte, 6*core.MiB)))
	assert.ErrorIs(t, h.WriteFileAtomic(ctx, "/m/b", make([]byte, 3*core.MiB)), hostexec.ErrInsufficientSpace)
	st, err := h.StatFS(ctx, "/m")
	require.NoError(t, err)
	assert.Equal(t, 8*core.MiB, st.TotalBytes)
	assert.Equal(t, 6*core.MiB, st.UsedBytes)
	assert.Equal(t, 2*core.MiB, st.AvailableBytes)
	assert.Equal(t, int64(2), st.UsedInodes, "the root directory and one file")

	// Growing the LV and the filesystem makes room.
	require.NoError(t, h.ExtendLV(ctx, "vg", "small", 16*core.MiB))
	require.NoError(t, h.ResizeFS(ctx, dev, "/m"))
	require.NoError(t, h.WriteFileAtomic(ctx, "/m/b", make([]byte, 3*core.MiB)))
}

func TestActivation(t *testing.T) {
	h := newHost(t)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: "lv", SizeBytes: 8 * core.MiB}))
	require.NoError(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: "vg", Name: "s", Origin: "lv", SizeBytes: 4 * core.MiB}))
	off, on := false, true
	require.NoError(t, h.ChangeLV(ctx, "vg", "s", hostexec.LVChange{Activate: &off}))
	for _, name := range []string{"lv", "s"} {
		_, err := h.DeviceSize(ctx, h.LVDevicePath("vg", name))
		assert.ErrorIs(t, err, hostexec.ErrNotFound, "deactivating a snapshot deactivates its origin: %s", name)
		ok, err := h.PathExists(ctx, h.LVDevicePath("vg", name))
		require.NoError(t, err)
		assert.False(t, ok)
	}
	st, _ := h.LVMReport(ctx)
	l, _ := st.VGs[0].FindLV("lv")
	assert.Equal(t, int32(-1), l.Major)
	assert.Equal(t, "owi-----s-"[:4], l.Attr[:4])
	require.NoError(t, h.ChangeLV(ctx, "vg", "lv", hostexec.LVChange{Activate: &on}))
	size, err := h.DeviceSize(ctx, h.LVDevicePath("vg", "s"))
	require.NoError(t, err)
	assert.Equal(t, 8*core.MiB, size, "a snapshot's device has its origin's size")
}

func TestCgroupsAndIOLimits(t *testing.T) {
	h := newHost(t)
	uid := "6b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	dir, err := h.AddPodQoS(uid, simhost.QoSGuaranteed)
	require.NoError(t, err)
	assert.Equal(t, simhost.CgroupRoot+"/kubepods.slice/kubepods-pod6b1f2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice", dir)
	_, err = h.AddPodQoS(uid, "gold")
	assert.ErrorIs(t, err, hostexec.ErrInvalidArgument)
	require.NoError(t, h.SetIOLimits(ctx, dir, 8, 0, hostexec.IOLimits{ReadIOPS: 10}))
	assert.ErrorIs(t, h.SetIOLimits(ctx, dir, 9, 9, hostexec.IOLimits{ReadIOPS: 10}), hostexec.ErrNotFound, "no such device")
	assert.ErrorIs(t, h.SetIOLimits(ctx, simhost.CgroupRoot+"/other", 8, 0, hostexec.IOLimits{ReadIOPS: 10}), hostexec.ErrNotFound)
	h.RemovePod(uid)
	_, err = h.PodCgroupDir(ctx, uid)
	assert.ErrorIs(t, err, hostexec.ErrNotFound)

	noIO := simhost.MustNew(simhost.Config{NoCgroupIO: true, Devices: []simhost.DeviceConfig{{Name: "/dev/sdb", Size: "1Gi"}}})
	dir, err = noIO.AddPod(uid)
	require.NoError(t, err)
	assert.ErrorIs(t, noIO.SetIOLimits(ctx, dir, 8, 0, hostexec.IOLimits{ReadIOPS: 1}), hostexec.ErrUnsupported)
	_, err = noIO.IOLimits(ctx, dir)
	assert.ErrorIs(t, err, hostexec.ErrUnsupported)
}

func TestHotPlugAndGrow(t *testing.T) {
	h := newHost(t)
	require.NoError(t, h.AddDevice(simhost.DeviceConfig{Name: "/dev/sdf", Size: "4Gi", Media: "ssd"}))
	assert.ErrorIs(t, h.AddDevice(simhost.DeviceConfig{Name: "/dev/sdf", Size: "4Gi"}), hostexec.ErrAlreadyExists)
	require.NoError(t, h.ExtendVG(ctx, "vg", []string{"/dev/sdf"}))
	require.NoError(t, h.GrowDevice("/dev/sdf", 8*core.GiB))
	size, err := h.DeviceSize(ctx, "/dev/sdf")
	require.NoError(t, err)
	assert.Equal(t, 8*core.GiB, size)
	assert.ErrorIs(t, h.GrowDevice("/dev/sdf", core.GiB), hostexec.ErrInvalidArgument, "devices do not shrink")
	assert.ErrorIs(t, h.GrowDevice("/dev/none", core.GiB), hostexec.ErrNotFound)
}

func TestMountsInsideMounts(t *testing.T) {
	h := newHost(t)
	for _, n := range []string{"outer", "inner"} {
		require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "vg", Name: n, SizeBytes: 8 * core.MiB}))
		require.NoError(t, h.Mkfs(ctx, h.LVDevicePath("vg", n), "ext4", nil))
	}
	require.NoError(t, h.MakeDir(ctx, "/o"))
	require.NoError(t, h.Mount(ctx, h.LVDevicePath("vg", "outer"), "/o", "ext4", nil))
	require.NoError(t, h.MakeDir(ctx, "/o/i"))
	require.NoError(t, h.Mount(ctx, h.LVDevicePath("vg", "inner"), "/o/i", "ext4", nil))
	require.NoError(t, h.WriteFileAtomic(ctx, "/o/i/f", []byte("inner")))
	assert.ErrorIs(t, h.Unmount(ctx, "/o"), hostexec.ErrInUse)
	assert.ErrorIs(t, h.RemovePath(ctx, "/o/i"), hostexec.ErrInUse)
	require.NoError(t, h.Unmount(ctx, "/o/i"))
	names, err := h.ListDir(ctx, "/o/i")
	require.NoError(t, err)
	assert.Empty(t, names, "the inner file lives in the inner filesystem")
	require.NoError(t, h.Unmount(ctx, "/o"))
	ok, err := h.PathExists(ctx, "/o/i")
	require.NoError(t, err)
	assert.False(t, ok, "the directory lives in the outer filesystem")
}
