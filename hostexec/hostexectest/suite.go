// Package hostexectest is the contract every hostexec.Host implementation
// passes: the same scenarios run against the simulator and against real LVM
// over loop devices, so the two cannot drift apart. Scenarios a host cannot
// run (no device-mapper, no cgroup io controller) are skipped with the
// reason the host gives.
package hostexectest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/lvmreport"
)

// Capability names, used as keys of Capabilities.Reasons.
const (
	CapDeviceMapper = "HasDeviceMapper"
	CapMount        = "CanMount"
	CapCgroupIO     = "HasCgroupIO"
	CapResize       = "ResizableFS"
	CapPods         = "AddPod"
)

// Capabilities says what the host under test can do.
type Capabilities struct {
	// HasDeviceMapper: LVs are active block devices that hold data
	// (formatting, mounting and snapshot contents).
	HasDeviceMapper bool
	// CanMount: blank devices can be formatted and mounted, and directories
	// bind-mounted.
	CanMount bool
	// HasCgroupIO: pod cgroup directories take io.max writes.
	HasCgroupIO bool
	// ResizableFS are the filesystems the host grows online.
	ResizableFS []string
	// Reasons explains each missing capability (keys: the Cap* names); skip
	// messages quote it.
	Reasons map[string]string
}

// Env is one fresh host for one scenario.
type Env struct {
	Host hostexec.Host
	// Devices are at least three blank devices of DeviceSize bytes each.
	Devices    []string
	DeviceSize int64
	// ExtentSize is the extent size new VGs get.
	ExtentSize int64
	// Dir is an existing, empty directory for files and mount points.
	Dir  string
	Caps Capabilities
	// AddPod gives a pod a cgroup and returns its directory; nil skips the
	// cgroup scenarios.
	AddPod func(t *testing.T, uid string) string
	// GrowDevice enlarges one of Devices; nil skips the resize scenarios.
	GrowDevice func(t *testing.T, device string, newSize int64)
}

// Run runs every scenario, each on a fresh Env from newEnv.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	scenarios := []struct {
		name string
		fn   func(t *testing.T, e Env)
	}{
		{"Validation", testValidation},
		{"PVAndVG", testPVAndVG},
		{"ExtendVG", testExtendVG},
		{"LinearLV", testLinearLV},
		{"StripedLV", testStripedLV},
		{"ExtendLV", testExtendLV},
		{"Tags", testTags},
		{"Snapshots", testSnapshots},
		{"RemoveLV", testRemoveLV},
		{"ReportConsistency", testReportConsistency},
		{"Cancelled", testCancelled},
		{"Files", testFiles},
		{"BlockDevices", testBlockDevices},
		{"Filesystems", testFilesystems},
		{"ResizeFS", testResizeFS},
		{"CopyDevice", testCopyDevice},
		{"LVData", testLVData},
		{"PodCgroup", testPodCgroup},
		{"IOLimits", testIOLimits},
	}
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t)
			require.GreaterOrEqual(t, len(e.Devices), 3, "the suite needs three blank devices")
			s.fn(t, e)
		})
	}
}

func need(t *testing.T, e Env, ok bool, capName string) {
	t.Helper()
	if !ok {
		reason := e.Caps.Reasons[capName]
		if reason == "" {
			reason = "the host under test lacks it"
		}
		t.Skipf("needs %s: %s", capName, reason)
	}
}

const vgName = "ol-contract-vg"

var ctx = context.Background()

// pvBytes is the usable size LVM gives a PV on one of the devices.
func (e Env) pvBytes() int64 {
	return (e.DeviceSize - core.MiB) / e.ExtentSize * e.ExtentSize
}

func report(t *testing.T, e Env) core.LVMState {
	t.Helper()
	st, err := e.Host.LVMReport(ctx)
	require.NoError(t, err)
	return st
}

func vg(t *testing.T, e Env, name string) core.VolumeGroup {
	t.Helper()
	st := report(t, e)
	v, ok := st.FindVG(name)
	require.True(t, ok, "VG %s in report %+v", name, st)
	return *v
}

func lv(t *testing.T, e Env, vgn, name string) core.LogicalVolume {
	t.Helper()
	v := vg(t, e, vgn)
	l, ok := v.FindLV(name)
	require.True(t, ok, "LV %s/%s in report", vgn, name)
	return *l
}

func pvFree(v core.VolumeGroup, dev string) int64 {
	for _, pv := range v.PVs {
		if pv.Name == dev {
			return pv.FreeBytes
		}
	}
	return -1
}

func mkVG(t *testing.T, e Env, devs ...string) {
	t.Helper()
	require.NoError(t, e.Host.CreateVG(ctx, vgName, devs, false))
}

func isErr(t *testing.T, err, target error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	assert.True(t, errors.Is(err, target), "want %v, got %v %v", target, err, fmt.Sprint(msgAndArgs...))
}

func testValidation(t *testing.T, e Env) {
	h := e.Host
	d := e.Devices[0]
	checks := map[string]error{
		"CreatePV relative":      h.CreatePV(ctx, "sdb", false),
		"CreatePV outside /dev":  h.CreatePV(ctx, "/tmp/x", false),
		"CreateVG bad name":      h.CreateVG(ctx, "-vg", []string{d}, false),
		"CreateVG no devices":    h.CreateVG(ctx, vgName, nil, false),
		"CreateVG dup devices":   h.CreateVG(ctx, vgName, []string{d, d}, false),
		"ExtendVG bad name":      h.ExtendVG(ctx, "a/b", []string{d}),
		"CreateLV reserved name": h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "snapshot1", SizeBytes: 1}),
		"CreateLV negative":      h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "lv", SizeBytes: -1}),
		"CreateLV bad stripe":    h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "lv", SizeBytes: 1, Stripes: 2, StripeSizeBytes: 3000}),
		"CreateLV bad tag":       h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "lv", SizeBytes: 1, Tags: []string{"a,b"}}),
		"CreateSnapshot self":    h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "s", Origin: "s", SizeBytes: 1}),
		"ExtendLV negative":      h.ExtendLV(ctx, vgName, "lv", -5),
		"RemoveLV dotdot":        h.RemoveLV(ctx, vgName, ".."),
		"ChangeLV bad tag":       h.ChangeLV(ctx, vgName, "lv", hostexec.LVChange{AddTags: []string{"-x"}}),
		"Mkfs ntfs":              h.Mkfs(ctx, d, "ntfs", nil),
		"Mkfs bad device":        h.Mkfs(ctx, "/dev/../etc/passwd", "ext4", nil),
		"Mount comma option":     h.Mount(ctx, d, e.Dir, "ext4", []string{"ro,exec"}),
		"Mount relative target":  h.Mount(ctx, d, "mnt", "ext4", nil),
		"BindMount relative":     h.BindMount(ctx, "src", e.Dir, false),
		"MakeDir relative":       h.MakeDir(ctx, "a/b"),
		"MakeDir unclean":        h.MakeDir(ctx, e.Dir+"/a/../b"),
		"RemovePath root":        h.RemovePath(ctx, "/"),
		"CleanDir root":          h.CleanDir(ctx, "/"),
		"Wipe relative":          h.Wipe(ctx, "loop0"),
		"CopyDevice zero":        h.CopyDevice(ctx, d, e.Devices[1], 0),
		"CopyDevice self":        h.CopyDevice(ctx, d, d, 512),
	}
	for name, err := range checks {
		isErr(t, err, hostexec.ErrInvalidArgument, name)
	}
	_, err := h.PodCgroupDir(ctx, "../../etc")
	isErr(t, err, hostexec.ErrInvalidArgument, "PodCgroupDir")
	_, err = h.Signatures(ctx, "/etc/passwd")
	isErr(t, err, hostexec.ErrInvalidArgument, "Signatures")
	_, err = h.StatFS(ctx, "relative")
	isErr(t, err, hostexec.ErrInvalidArgument, "StatFS")
	_, err = h.ReadFile(ctx, "")
	isErr(t, err, hostexec.ErrInvalidArgument, "ReadFile")
	// Nothing was created by the refused calls.
	st := report(t, e)
	assert.Empty(t, st.VGs)
	assert.Empty(t, st.OrphanPVs)
}

func testPVAndVG(t *testing.T, e Env) {
	h := e.Host
	d0, d1, d2 := e.Devices[0], e.Devices[1], e.Devices[2]
	require.NoError(t, h.CreatePV(ctx, d0, false))
	st := report(t, e)
	require.Len(t, st.OrphanPVs, 1)
	assert.Equal(t, core.PhysicalVolume{Name: d0, SizeBytes: e.DeviceSize, FreeBytes: e.DeviceSize}, st.OrphanPVs[0])
	require.NoError(t, h.CreatePV(ctx, d0, false), "an orphan PV is left as it is")
	sigs, err := h.Signatures(ctx, d0)
	require.NoError(t, err)
	assert.Contains(t, sigs, "LVM2_member")

	isErr(t, h.CreatePV(ctx, "/dev/ol-contract-missing", false), hostexec.ErrNotFound)
	isErr(t, h.CreateVG(ctx, vgName, []string{d0, "/dev/ol-contract-missing"}, false), hostexec.ErrNotFound)
	assert.Empty(t, report(t, e).VGs, "a refused CreateVG creates nothing")

	mkVG(t, e, d0, d1)
	v := vg(t, e, vgName)
	assert.Equal(t, e.ExtentSize, v.ExtentSizeBytes)
	assert.Equal(t, 2*e.pvBytes(), v.TotalBytes)
	assert.Equal(t, v.TotalBytes, v.FreeBytes)
	assert.Equal(t, []core.PhysicalVolume{
		{Name: d0, VG: vgName, SizeBytes: e.pvBytes(), FreeBytes: e.pvBytes()},
		{Name: d1, VG: vgName, SizeBytes: e.pvBytes(), FreeBytes: e.pvBytes()},
	}, sortedPVs(v.PVs))
	assert.Empty(t, v.LVs)
	assert.Empty(t, report(t, e).OrphanPVs)

	isErr(t, h.CreateVG(ctx, vgName, []string{d2}, false), hostexec.ErrAlreadyExists)
	isErr(t, h.CreateVG(ctx, "ol-contract-other", []string{d1}, false), hostexec.ErrInUse)
	isErr(t, h.CreateVG(ctx, "ol-contract-other", []string{d2, d1}, true), hostexec.ErrInUse, "force never takes a PV from its VG")
	isErr(t, h.CreatePV(ctx, d1, false), hostexec.ErrInUse)
	isErr(t, h.CreatePV(ctx, d1, true), hostexec.ErrInUse)
	isErr(t, h.Wipe(ctx, d0), hostexec.ErrInUse)
	st = report(t, e)
	assert.Len(t, st.VGs, 1)
	assert.Empty(t, st.OrphanPVs, "the refused CreateVG did not touch %s", d2)
}

func sortedPVs(pvs []core.PhysicalVolume) []core.PhysicalVolume {
	out := append([]core.PhysicalVolume(nil), pvs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func testExtendVG(t *testing.T, e Env) {
	h := e.Host
	d0, d1, d2 := e.Devices[0], e.Devices[1], e.Devices[2]
	mkVG(t, e, d0)
	assert.Equal(t, e.pvBytes(), vg(t, e, vgName).TotalBytes)
	require.NoError(t, h.ExtendVG(ctx, vgName, []string{d1}))
	v := vg(t, e, vgName)
	assert.Equal(t, 2*e.pvBytes(), v.TotalBytes)
	assert.Equal(t, 2*e.pvBytes(), v.FreeBytes)
	assert.Len(t, v.PVs, 2)
	isErr(t, h.ExtendVG(ctx, vgName, []string{d1}), hostexec.ErrAlreadyExists)
	isErr(t, h.ExtendVG(ctx, "ol-contract-missing", []string{d2}), hostexec.ErrNotFound)
	isErr(t, h.ExtendVG(ctx, vgName, []string{"/dev/ol-contract-missing"}), hostexec.ErrNotFound)
	require.NoError(t, h.CreateVG(ctx, "ol-contract-other", []string{d2}, false))
	isErr(t, h.ExtendVG(ctx, vgName, []string{d2}), hostexec.ErrInUse)
	assert.Len(t, vg(t, e, vgName).PVs, 2)
}

func testLinearLV(t *testing.T, e Env) {
	h := e.Host
	d0, d1 := e.Devices[0], e.Devices[1]
	mkVG(t, e, d0, d1)
	total := vg(t, e, vgName).TotalBytes
	used := int64(0)
	for i, req := range []int64{1, 5 * core.MiB, 4 * core.MiB, 0, 4*core.MiB + 1} {
		name := fmt.Sprintf("lv%d", i)
		require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: name, SizeBytes: req, Tags: []string{"b", "a"}}))
		got := lv(t, e, vgName, name)
		want := core.LVSize(req, e.ExtentSize, 1)
		assert.Equal(t, want, got.SizeBytes, "request %d", req)
		assert.Equal(t, 1, got.Stripes)
		assert.Equal(t, []string{"a", "b"}, got.Tags)
		assert.Equal(t, "", got.Origin)
		assert.Equal(t, vgName, got.VG)
		a, err := lvmreport.ParseLVAttr(got.Attr)
		require.NoError(t, err)
		assert.Equal(t, byte('-'), a.VolumeType)
		used += want
	}
	v := vg(t, e, vgName)
	assert.Equal(t, total-used, v.FreeBytes)
	assert.Equal(t, e.pvBytes()-used, pvFree(v, d0), "small LVs on a fresh VG go to the first PV")
	assert.Equal(t, e.pvBytes(), pvFree(v, d1))
	assert.Equal(t, "/dev/"+vgName+"/lv0", h.LVDevicePath(vgName, "lv0"))

	isErr(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "lv0", SizeBytes: 1}), hostexec.ErrAlreadyExists)
	isErr(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "ol-contract-missing", Name: "lv", SizeBytes: 1}), hostexec.ErrNotFound)
	isErr(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "big", SizeBytes: v.FreeBytes + 1}), hostexec.ErrInsufficientSpace)
	assert.Equal(t, v.FreeBytes, vg(t, e, vgName).FreeBytes, "a refused CreateLV takes nothing")
	// Exactly the free space fits, spanning both PVs.
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "rest", SizeBytes: v.FreeBytes}))
	v = vg(t, e, vgName)
	assert.Zero(t, v.FreeBytes)
	assert.Zero(t, pvFree(v, d0))
	assert.Zero(t, pvFree(v, d1))
	isErr(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "one", SizeBytes: 1}), hostexec.ErrInsufficientSpace)
}

func testStripedLV(t *testing.T, e Env) {
	h := e.Host
	d0, d1 := e.Devices[0], e.Devices[1]
	mkVG(t, e, d0, d1)
	req := 10 * core.MiB
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "st", SizeBytes: req, Stripes: 2}))
	got := lv(t, e, vgName, "st")
	want := core.LVSize(req, e.ExtentSize, 2)
	assert.Equal(t, want, got.SizeBytes)
	assert.Equal(t, 2, got.Stripes)
	v := vg(t, e, vgName)
	assert.Equal(t, e.pvBytes()-want/2, pvFree(v, d0))
	assert.Equal(t, e.pvBytes()-want/2, pvFree(v, d1))

	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "st64k", SizeBytes: 1, Stripes: 2, StripeSizeBytes: 64 * core.KiB}))
	assert.Equal(t, 2*e.ExtentSize, lv(t, e, vgName, "st64k").SizeBytes)

	isErr(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "st3", SizeBytes: 1, Stripes: 3}), hostexec.ErrInsufficientSpace)

	// Extending keeps the stripes and rounds to a whole stripe.
	require.NoError(t, h.ExtendLV(ctx, vgName, "st", want+1))
	assert.Equal(t, core.LVSize(want+1, e.ExtentSize, 2), lv(t, e, vgName, "st").SizeBytes)
	assert.Equal(t, 2, lv(t, e, vgName, "st").Stripes)

	// Fill the first PV: the VG still has free space, but not on two PVs.
	v = vg(t, e, vgName)
	require.Equal(t, pvFree(v, d0), pvFree(v, d1))
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "fill", SizeBytes: pvFree(v, d0)}))
	v = vg(t, e, vgName)
	require.Zero(t, pvFree(v, d0), "a linear LV that fits the first PV goes there")
	require.Greater(t, v.FreeBytes, 2*e.ExtentSize)
	isErr(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "st2", SizeBytes: 2 * e.ExtentSize, Stripes: 2}), hostexec.ErrInsufficientSpace)
	isErr(t, h.ExtendLV(ctx, vgName, "st", lv(t, e, vgName, "st").SizeBytes+1), hostexec.ErrInsufficientSpace)
	assert.Equal(t, v.FreeBytes, vg(t, e, vgName).FreeBytes)
}

func testExtendLV(t *testing.T, e Env) {
	h := e.Host
	mkVG(t, e, e.Devices[0], e.Devices[1])
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "lv", SizeBytes: 8 * core.MiB}))
	target := 12*core.MiB + 1
	require.NoError(t, h.ExtendLV(ctx, vgName, "lv", target))
	size := core.LVSize(target, e.ExtentSize, 1)
	assert.Equal(t, size, lv(t, e, vgName, "lv").SizeBytes)
	require.NoError(t, h.ExtendLV(ctx, vgName, "lv", size), "same size is a no-op")
	require.NoError(t, h.ExtendLV(ctx, vgName, "lv", core.MiB), "a smaller size is a no-op")
	assert.Equal(t, size, lv(t, e, vgName, "lv").SizeBytes)
	isErr(t, h.ExtendLV(ctx, vgName, "missing", core.GiB), hostexec.ErrNotFound)
	isErr(t, h.ExtendLV(ctx, "ol-contract-missing", "lv", core.GiB), hostexec.ErrNotFound)
	v := vg(t, e, vgName)
	isErr(t, h.ExtendLV(ctx, vgName, "lv", size+v.FreeBytes+1), hostexec.ErrInsufficientSpace)
	assert.Equal(t, size, lv(t, e, vgName, "lv").SizeBytes)
	// Growing into the whole VG spans both PVs.
	require.NoError(t, h.ExtendLV(ctx, vgName, "lv", size+v.FreeBytes))
	assert.Zero(t, vg(t, e, vgName).FreeBytes)
}

func testTags(t *testing.T, e Env) {
	h := e.Host
	mkVG(t, e, e.Devices[0])
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "lv", SizeBytes: 1, Tags: []string{"csi.aliyun.com/pvc=ns.name", "b"}}))
	assert.Equal(t, []string{"b", "csi.aliyun.com/pvc=ns.name"}, lv(t, e, vgName, "lv").Tags)
	require.NoError(t, h.ChangeLV(ctx, vgName, "lv", hostexec.LVChange{AddTags: []string{"c"}, DelTags: []string{"b", "absent"}}))
	assert.Equal(t, []string{"c", "csi.aliyun.com/pvc=ns.name"}, lv(t, e, vgName, "lv").Tags)
	require.NoError(t, h.ChangeLV(ctx, vgName, "lv", hostexec.LVChange{DelTags: []string{"c", "csi.aliyun.com/pvc=ns.name"}}))
	assert.Empty(t, lv(t, e, vgName, "lv").Tags)
	isErr(t, h.ChangeLV(ctx, vgName, "missing", hostexec.LVChange{AddTags: []string{"x"}}), hostexec.ErrNotFound)
	isErr(t, h.ChangeLV(ctx, vgName, "lv", hostexec.LVChange{AddTags: []string{"a b"}}), hostexec.ErrInvalidArgument)
	on := true
	require.NoError(t, h.ChangeLV(ctx, vgName, "lv", hostexec.LVChange{Activate: &on}))
	lv(t, e, vgName, "lv")
}

func testSnapshots(t *testing.T, e Env) {
	h := e.Host
	mkVG(t, e, e.Devices[0], e.Devices[1])
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "origin", SizeBytes: 16 * core.MiB}))
	before := vg(t, e, vgName).FreeBytes
	require.NoError(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "snap", Origin: "origin", SizeBytes: 5 * core.MiB, Tags: []string{"ro"}}))
	snap := lv(t, e, vgName, "snap")
	assert.True(t, snap.IsSnapshot())
	assert.Equal(t, "origin", snap.Origin)
	assert.Equal(t, core.LVSize(5*core.MiB, e.ExtentSize, 1), snap.SizeBytes)
	assert.Equal(t, []string{"ro"}, snap.Tags)
	sa, err := lvmreport.ParseLVAttr(snap.Attr)
	require.NoError(t, err)
	assert.True(t, sa.IsSnapshot())
	oa, err := lvmreport.ParseLVAttr(lv(t, e, vgName, "origin").Attr)
	require.NoError(t, err)
	assert.True(t, oa.IsOrigin())
	assert.Equal(t, before-snap.SizeBytes, vg(t, e, vgName).FreeBytes)

	isErr(t, h.RemoveLV(ctx, vgName, "origin"), hostexec.ErrInUse)
	lv(t, e, vgName, "origin")
	lv(t, e, vgName, "snap")
	isErr(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "snap", Origin: "origin", SizeBytes: 1}), hostexec.ErrAlreadyExists)
	isErr(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "s2", Origin: "missing", SizeBytes: 1}), hostexec.ErrNotFound)
	isErr(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: "ol-contract-missing", Name: "s2", Origin: "origin", SizeBytes: 1}), hostexec.ErrNotFound)
	isErr(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "s2", Origin: "snap", SizeBytes: 1}), hostexec.ErrInvalidArgument)
	free := vg(t, e, vgName).FreeBytes
	isErr(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "s2", Origin: "origin", SizeBytes: free + 1}), hostexec.ErrInsufficientSpace)
	after := vg(t, e, vgName)
	_, found := after.FindLV("s2")
	assert.False(t, found, "a refused snapshot leaves nothing behind")

	// A second snapshot of the same origin, and growing a snapshot's COW.
	require.NoError(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "snap2", Origin: "origin", SizeBytes: 0}))
	assert.Equal(t, e.ExtentSize, lv(t, e, vgName, "snap2").SizeBytes)
	require.NoError(t, h.ExtendLV(ctx, vgName, "snap", 12*core.MiB))
	assert.Equal(t, 12*core.MiB, lv(t, e, vgName, "snap").SizeBytes)

	require.NoError(t, h.RemoveLV(ctx, vgName, "snap"))
	isErr(t, h.RemoveLV(ctx, vgName, "origin"), hostexec.ErrInUse, "snap2 still exists")
	require.NoError(t, h.RemoveLV(ctx, vgName, "snap2"))
	require.NoError(t, h.RemoveLV(ctx, vgName, "origin"))
	v := vg(t, e, vgName)
	assert.Equal(t, v.TotalBytes, v.FreeBytes)
	assert.Empty(t, v.LVs)
}

func testRemoveLV(t *testing.T, e Env) {
	h := e.Host
	d0, d1 := e.Devices[0], e.Devices[1]
	mkVG(t, e, d0, d1)
	isErr(t, h.RemoveLV(ctx, vgName, "missing"), hostexec.ErrNotFound)
	isErr(t, h.RemoveLV(ctx, "ol-contract-missing", "lv"), hostexec.ErrNotFound)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "keep", SizeBytes: 8 * core.MiB}))
	before := vg(t, e, vgName)
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "st", SizeBytes: 8 * core.MiB, Stripes: 2}))
	require.NoError(t, h.RemoveLV(ctx, vgName, "st"))
	after := vg(t, e, vgName)
	assert.Equal(t, before.FreeBytes, after.FreeBytes)
	assert.Equal(t, sortedPVs(before.PVs), sortedPVs(after.PVs), "per-PV free space comes back")
	isErr(t, h.RemoveLV(ctx, vgName, "st"), hostexec.ErrNotFound)
	assert.Len(t, after.LVs, 1)
}

func testReportConsistency(t *testing.T, e Env) {
	h := e.Host
	mkVG(t, e, e.Devices[0], e.Devices[1])
	require.NoError(t, h.CreatePV(ctx, e.Devices[2], false))
	for _, s := range []hostexec.LVSpec{
		{VG: vgName, Name: "c", SizeBytes: 30 * core.MiB},
		{VG: vgName, Name: "a", SizeBytes: 20 * core.MiB, Stripes: 2},
		{VG: vgName, Name: "b", SizeBytes: 3 * core.MiB},
	} {
		require.NoError(t, h.CreateLV(ctx, s))
	}
	require.NoError(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "a-snap", Origin: "c", SizeBytes: 4 * core.MiB}))
	st := report(t, e)
	require.Len(t, st.VGs, 1)
	assert.Equal(t, []core.PhysicalVolume{{Name: e.Devices[2], SizeBytes: e.DeviceSize, FreeBytes: e.DeviceSize}}, st.OrphanPVs)
	v := st.VGs[0]
	var pvTotal, pvFreeSum, lvSum int64
	for _, pv := range v.PVs {
		pvTotal += pv.SizeBytes
		pvFreeSum += pv.FreeBytes
		assert.Equal(t, vgName, pv.VG)
		assert.LessOrEqual(t, pv.FreeBytes, pv.SizeBytes)
	}
	var names []string
	for _, l := range v.LVs {
		lvSum += l.SizeBytes
		names = append(names, l.Name)
		assert.Equal(t, vgName, l.VG)
		assert.GreaterOrEqual(t, l.Stripes, 1)
		assert.Zero(t, l.SizeBytes%e.ExtentSize)
		_, err := lvmreport.ParseLVAttr(l.Attr)
		assert.NoError(t, err, l.Attr)
	}
	assert.Equal(t, []string{"a", "a-snap", "b", "c"}, names, "LVs sorted by name")
	assert.Equal(t, v.TotalBytes, pvTotal)
	assert.Equal(t, v.FreeBytes, pvFreeSum)
	assert.Equal(t, v.TotalBytes-v.FreeBytes, lvSum)
}

func testCancelled(t *testing.T, e Env) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Host.LVMReport(c)
	isErr(t, err, context.Canceled)
	isErr(t, e.Host.CreateVG(c, vgName, []string{e.Devices[0]}, false), context.Canceled)
	isErr(t, e.Host.MakeDir(c, e.Dir+"/x"), context.Canceled)
	assert.Empty(t, report(t, e).VGs)
	ok, err := e.Host.PathExists(ctx, e.Dir+"/x")
	require.NoError(t, err)
	assert.False(t, ok)
}

func testFiles(t *testing.T, e Env) {
	h := e.Host
	dir := e.Dir + "/files"
	require.NoError(t, h.MakeDir(ctx, dir+"/a/b"))
	require.NoError(t, h.MakeDir(ctx, dir+"/a/b"), "MakeDir is idempotent")
	ok, err := h.PathExists(ctx, dir+"/a/b")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = h.PathExists(ctx, dir+"/nope")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, h.MakeFile(ctx, dir+"/a/f"))
	require.NoError(t, h.MakeFile(ctx, dir+"/a/f"), "MakeFile keeps an existing file")
	require.NoError(t, h.MakeFile(ctx, dir+"/new/parents/f"))
	isErr(t, h.MakeDir(ctx, dir+"/a/f/sub"), hostexec.ErrAlreadyExists)
	isErr(t, h.MakeFile(ctx, dir+"/a/b"), hostexec.ErrAlreadyExists)

	rec := dir + "/rec.json"
	require.NoError(t, h.WriteFileAtomic(ctx, rec, []byte(`{"v":1}`)))
	b, err := h.ReadFile(ctx, rec)
	require.NoError(t, err)
	assert.Equal(t, `{"v":1}`, string(b))
	require.NoError(t, h.WriteFileAtomic(ctx, rec, []byte(`{"v":2}`)))
	b, err = h.ReadFile(ctx, rec)
	require.NoError(t, err)
	assert.Equal(t, `{"v":2}`, string(b))
	empty, err := h.ReadFile(ctx, dir+"/a/f")
	require.NoError(t, err)
	assert.Empty(t, empty)
	names, err := h.ListDir(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "new", "rec.json"}, names, "no temporary files are left")

	_, err = h.ReadFile(ctx, dir+"/missing")
	isErr(t, err, hostexec.ErrNotFound)
	_, err = h.ReadFile(ctx, dir+"/a")
	isErr(t, err, hostexec.ErrInvalidArgument)
	_, err = h.ListDir(ctx, dir+"/missing")
	isErr(t, err, hostexec.ErrNotFound)
	_, err = h.ListDir(ctx, rec)
	isErr(t, err, hostexec.ErrInvalidArgument)
	isErr(t, h.WriteFileAtomic(ctx, dir+"/missing/x", nil), hostexec.ErrNotFound)
	isErr(t, h.WriteFileAtomic(ctx, dir+"/a", nil), hostexec.ErrInvalidArgument)

	isErr(t, h.RemovePath(ctx, dir+"/a"), hostexec.ErrInUse, "a non-empty directory stays")
	require.NoError(t, h.RemovePath(ctx, dir+"/a/f"))
	require.NoError(t, h.RemovePath(ctx, dir+"/a/b"))
	require.NoError(t, h.RemovePath(ctx, dir+"/a/b"), "removing a missing path is fine")
	names, err = h.ListDir(ctx, dir+"/a")
	require.NoError(t, err)
	assert.Empty(t, names)

	require.NoError(t, h.CleanDir(ctx, dir))
	names, err = h.ListDir(ctx, dir)
	require.NoError(t, err)
	assert.Empty(t, names)
	ok, _ = h.PathExists(ctx, dir)
	assert.True(t, ok, "CleanDir keeps the directory")
	isErr(t, h.CleanDir(ctx, dir+"/missing"), hostexec.ErrNotFound)
	require.NoError(t, h.WriteFileAtomic(ctx, rec, nil))
	isErr(t, h.CleanDir(ctx, rec), hostexec.ErrInvalidArgument)
}

func testBlockDevices(t *testing.T, e Env) {
	h := e.Host
	devs, err := h.ListBlockDevices(ctx)
	require.NoError(t, err)
	byName := map[string]core.BlockDevice{}
	for _, d := range devs {
		byName[d.Name] = d
	}
	for _, name := range e.Devices {
		d, ok := byName[name]
		require.True(t, ok, "%s listed in %v", name, devs)
		assert.Equal(t, e.DeviceSize, d.SizeBytes)
		assert.Empty(t, d.Signatures)
		assert.Empty(t, d.Parent)
		assert.Contains(t, []core.MediaType{core.MediaSSD, core.MediaHDD}, d.Media)
		size, err := h.DeviceSize(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, e.DeviceSize, size)
		major, minor, err := h.DeviceNumber(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, [2]uint32{d.Major, d.Minor}, [2]uint32{major, minor})
		sigs, err := h.Signatures(ctx, name)
		require.NoError(t, err)
		assert.Empty(t, sigs)
	}
	_, err = h.DeviceSize(ctx, "/dev/ol-contract-missing")
	isErr(t, err, hostexec.ErrNotFound)
	_, _, err = h.DeviceNumber(ctx, "/dev/ol-contract-missing")
	isErr(t, err, hostexec.ErrNotFound)
	_, err = h.Signatures(ctx, "/dev/ol-contract-missing")
	isErr(t, err, hostexec.ErrNotFound)
	isErr(t, h.Wipe(ctx, "/dev/ol-contract-missing"), hostexec.ErrNotFound)
	require.NoError(t, h.Wipe(ctx, e.Devices[0]), "wiping a blank device is fine")
	require.NoError(t, h.CreatePV(ctx, e.Devices[0], false))
	require.NoError(t, h.Wipe(ctx, e.Devices[0]), "an orphan PV may be wiped")
	assert.Empty(t, report(t, e).OrphanPVs)
}

func mkdir(t *testing.T, e Env, p string) string {
	t.Helper()
	require.NoError(t, e.Host.MakeDir(ctx, p))
	return p
}

func unmountAll(t *testing.T, e Env, targets ...string) {
	t.Helper()
	for _, p := range targets {
		require.NoError(t, e.Host.Unmount(ctx, p), p)
	}
}

func mounted(t *testing.T, e Env, p string) bool {
	t.Helper()
	ok, err := e.Host.IsMountPoint(ctx, p)
	require.NoError(t, err)
	return ok
}

func testFilesystems(t *testing.T, e Env) {
	need(t, e, e.Caps.CanMount, CapMount)
	h := e.Host
	d0, d1 := e.Devices[0], e.Devices[1]
	require.NoError(t, h.Mkfs(ctx, d0, "ext4", nil))
	sigs, err := h.Signatures(ctx, d0)
	require.NoError(t, err)
	assert.Equal(t, []string{"ext4"}, sigs)
	isErr(t, h.Mkfs(ctx, d0, "xfs", nil), hostexec.ErrInUse, "a formatted device is never formatted again")
	isErr(t, h.Mkfs(ctx, "/dev/ol-contract-missing", "ext4", nil), hostexec.ErrNotFound)

	mnt := mkdir(t, e, e.Dir+"/mnt")
	isErr(t, h.Mount(ctx, d0, e.Dir+"/missing", "ext4", nil), hostexec.ErrNotFound)
	require.Error(t, h.Mount(ctx, d1, mnt, "ext4", nil), "a blank device does not mount")
	assert.False(t, mounted(t, e, mnt))
	require.NoError(t, h.Mount(ctx, d0, mnt, "ext4", nil))
	t.Cleanup(func() { _ = h.Unmount(ctx, mnt) })
	assert.True(t, mounted(t, e, mnt))
	assert.False(t, mounted(t, e, e.Dir))
	_, err = h.IsMountPoint(ctx, e.Dir+"/missing")
	isErr(t, err, hostexec.ErrNotFound)
	isErr(t, h.Mount(ctx, d0, mnt, "ext4", nil), hostexec.ErrInUse, "mounts are not stacked")
	mounts, err := h.ListMounts(ctx)
	require.NoError(t, err)
	found := false
	for _, m := range mounts {
		if m.Target == mnt {
			found = true
			assert.Equal(t, "ext4", m.FSType)
		}
	}
	assert.True(t, found, "%s in %v", mnt, mounts)

	st, err := h.StatFS(ctx, mnt)
	require.NoError(t, err)
	assert.Greater(t, st.TotalBytes, int64(0))
	assert.LessOrEqual(t, st.TotalBytes, e.DeviceSize)
	assert.LessOrEqual(t, st.AvailableBytes, st.TotalBytes)
	assert.Greater(t, st.TotalInodes, int64(0))
	_, err = h.StatFS(ctx, mnt+"/missing")
	isErr(t, err, hostexec.ErrNotFound)

	require.NoError(t, h.WriteFileAtomic(ctx, mnt+"/marker", []byte("hello")))
	isErr(t, h.Wipe(ctx, d0), hostexec.ErrInUse, "a mounted device is not wiped")
	isErr(t, h.CreatePV(ctx, d0, true), hostexec.ErrInUse)
	isErr(t, h.CleanDir(ctx, e.Dir), hostexec.ErrInUse, "CleanDir does not reach through mounts")

	// Bind mounts: read-write shares the files, read-only refuses writes.
	bind := mkdir(t, e, e.Dir+"/bind")
	robind := mkdir(t, e, e.Dir+"/robind")
	require.NoError(t, h.BindMount(ctx, mnt, bind, false))
	t.Cleanup(func() { _ = h.Unmount(ctx, bind) })
	require.NoError(t, h.BindMount(ctx, mnt, robind, true))
	t.Cleanup(func() { _ = h.Unmount(ctx, robind) })
	b, err := h.ReadFile(ctx, bind+"/marker")
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	require.NoError(t, h.WriteFileAtomic(ctx, bind+"/via-bind", []byte("x")))
	b, err = h.ReadFile(ctx, mnt+"/via-bind")
	require.NoError(t, err)
	assert.Equal(t, "x", string(b))
	assert.Error(t, h.WriteFileAtomic(ctx, robind+"/nope", []byte("x")), "read-only bind refuses writes")
	b, err = h.ReadFile(ctx, robind+"/marker")
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	isErr(t, h.BindMount(ctx, mnt, bind, false), hostexec.ErrInUse)
	isErr(t, h.BindMount(ctx, e.Dir+"/missing", e.Dir+"/bind", false), hostexec.ErrNotFound)

	// A device node bind-mounted on a file (block volumes).
	blk := e.Dir + "/blockfile"
	require.NoError(t, h.MakeFile(ctx, blk))
	isErr(t, h.BindMount(ctx, d1, bind, false), hostexec.ErrInvalidArgument, "a device goes on a file, not a directory")
	require.NoError(t, h.BindMount(ctx, d1, blk, false))
	t.Cleanup(func() { _ = h.Unmount(ctx, blk) })
	assert.True(t, mounted(t, e, blk))

	unmountAll(t, e, blk, robind, bind, mnt)
	assert.False(t, mounted(t, e, mnt))
	_, err = h.ReadFile(ctx, mnt+"/marker")
	isErr(t, err, hostexec.ErrNotFound, "the file lives in the unmounted filesystem")
	require.NoError(t, h.Unmount(ctx, mnt), "unmounting twice is fine")
	require.NoError(t, h.Unmount(ctx, e.Dir+"/missing"), "unmounting a missing path is fine")

	// The data persists across mounts; read-only mounts refuse writes.
	require.NoError(t, h.Mount(ctx, d0, mnt, "ext4", []string{"ro"}))
	b, err = h.ReadFile(ctx, mnt+"/marker")
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	assert.Error(t, h.WriteFileAtomic(ctx, mnt+"/nope", nil))
	unmountAll(t, e, mnt)

	require.NoError(t, h.Wipe(ctx, d0))
	sigs, err = h.Signatures(ctx, d0)
	require.NoError(t, err)
	assert.Empty(t, sigs)
	require.Error(t, h.Mount(ctx, d0, mnt, "ext4", nil), "a wiped device does not mount")
}

// xfsMinDevice is above mkfs.xfs's 300 MB minimum.
const xfsMinDevice = 320 * core.MiB

func testResizeFS(t *testing.T, e Env) {
	need(t, e, e.Caps.CanMount, CapMount)
	need(t, e, e.GrowDevice != nil && len(e.Caps.ResizableFS) > 0, CapResize)
	h := e.Host
	for i, fsType := range e.Caps.ResizableFS {
		if i >= len(e.Devices) {
			break
		}
		d := e.Devices[i]
		t.Run(fsType, func(t *testing.T) {
			size := e.DeviceSize
			if fsType == "xfs" && size < xfsMinDevice {
				require.Error(t, h.Mkfs(ctx, d, "xfs", nil), "mkfs.xfs refuses devices below 300 MB")
				size = xfsMinDevice
				e.GrowDevice(t, d, size)
			}
			require.NoError(t, h.Mkfs(ctx, d, fsType, nil))
			mnt := mkdir(t, e, fmt.Sprintf("%s/resize-%s", e.Dir, fsType))
			require.NoError(t, h.Mount(ctx, d, mnt, fsType, nil))
			t.Cleanup(func() { _ = h.Unmount(ctx, mnt) })
			before, err := h.StatFS(ctx, mnt)
			require.NoError(t, err)
			isErr(t, h.ResizeFS(ctx, d, e.Dir), hostexec.ErrInvalidArgument, "the device is not mounted there")
			require.NoError(t, h.ResizeFS(ctx, d, mnt), "nothing to grow is fine")
			e.GrowDevice(t, d, 2*size)
			got, err := h.DeviceSize(ctx, d)
			require.NoError(t, err)
			assert.Equal(t, 2*size, got)
			require.NoError(t, h.ResizeFS(ctx, d, mnt))
			after, err := h.StatFS(ctx, mnt)
			require.NoError(t, err)
			assert.Greater(t, after.TotalBytes, before.TotalBytes+size/2)
			assert.LessOrEqual(t, after.TotalBytes, 2*size)
			unmountAll(t, e, mnt)
		})
	}
}

func testCopyDevice(t *testing.T, e Env) {
	need(t, e, e.Caps.CanMount, CapMount)
	h := e.Host
	d0, d1, d2 := e.Devices[0], e.Devices[1], e.Devices[2]
	require.NoError(t, h.Mkfs(ctx, d0, "ext4", nil))
	mnt := mkdir(t, e, e.Dir+"/src")
	require.NoError(t, h.Mount(ctx, d0, mnt, "ext4", nil))
	t.Cleanup(func() { _ = h.Unmount(ctx, mnt) })
	require.NoError(t, h.WriteFileAtomic(ctx, mnt+"/marker", []byte("copied")))
	isErr(t, h.CopyDevice(ctx, d1, d0, e.DeviceSize), hostexec.ErrInUse, "a mounted destination is refused")
	unmountAll(t, e, mnt)

	isErr(t, h.CopyDevice(ctx, d0, d1, e.DeviceSize+1), hostexec.ErrInvalidArgument)
	isErr(t, h.CopyDevice(ctx, "/dev/ol-contract-missing", d1, 512), hostexec.ErrNotFound)
	isErr(t, h.CopyDevice(ctx, d0, "/dev/ol-contract-missing", 512), hostexec.ErrNotFound)
	require.NoError(t, h.CreatePV(ctx, d2, false))
	isErr(t, h.CopyDevice(ctx, d0, d2, e.DeviceSize), hostexec.ErrInUse, "a PV is not overwritten")

	require.NoError(t, h.CopyDevice(ctx, d0, d1, e.DeviceSize))
	sigs, err := h.Signatures(ctx, d1)
	require.NoError(t, err)
	assert.Equal(t, []string{"ext4"}, sigs)
	dst := mkdir(t, e, e.Dir+"/dst")
	require.NoError(t, h.Mount(ctx, d1, dst, "ext4", nil))
	t.Cleanup(func() { _ = h.Unmount(ctx, dst) })
	b, err := h.ReadFile(ctx, dst+"/marker")
	require.NoError(t, err)
	assert.Equal(t, "copied", string(b))
	unmountAll(t, e, dst)
}

func testLVData(t *testing.T, e Env) {
	need(t, e, e.Caps.HasDeviceMapper, CapDeviceMapper)
	need(t, e, e.Caps.CanMount, CapMount)
	h := e.Host
	mkVG(t, e, e.Devices[0], e.Devices[1])
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "data", SizeBytes: 32 * core.MiB}))
	dev := h.LVDevicePath(vgName, "data")
	sigs, err := h.Signatures(ctx, dev)
	require.NoError(t, err)
	assert.Empty(t, sigs, "a new LV is blank")
	size, err := h.DeviceSize(ctx, dev)
	require.NoError(t, err)
	assert.Equal(t, 32*core.MiB, size)
	major, _, err := h.DeviceNumber(ctx, dev)
	require.NoError(t, err)
	assert.NotZero(t, major)

	require.NoError(t, h.Mkfs(ctx, dev, "ext4", nil))
	mnt := mkdir(t, e, e.Dir+"/lv")
	require.NoError(t, h.Mount(ctx, dev, mnt, "ext4", nil))
	t.Cleanup(func() { _ = h.Unmount(ctx, mnt) })
	require.NoError(t, h.WriteFileAtomic(ctx, mnt+"/marker", []byte("v1")))
	l := lv(t, e, vgName, "data")
	a, err := lvmreport.ParseLVAttr(l.Attr)
	require.NoError(t, err)
	assert.True(t, a.IsActive())
	assert.True(t, a.IsOpen(), "a mounted LV is open")
	assert.Positive(t, l.Major)
	isErr(t, h.RemoveLV(ctx, vgName, "data"), hostexec.ErrInUse, "a mounted LV is not removed")
	off := false
	isErr(t, h.ChangeLV(ctx, vgName, "data", hostexec.LVChange{Activate: &off}), hostexec.ErrInUse)

	require.NoError(t, h.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: vgName, Name: "snap", Origin: "data", SizeBytes: 16 * core.MiB}))
	require.NoError(t, h.WriteFileAtomic(ctx, mnt+"/marker", []byte("v2")))
	snapMnt := mkdir(t, e, e.Dir+"/snap")
	require.NoError(t, h.Mount(ctx, h.LVDevicePath(vgName, "snap"), snapMnt, "ext4", []string{"ro"}))
	t.Cleanup(func() { _ = h.Unmount(ctx, snapMnt) })
	b, err := h.ReadFile(ctx, snapMnt+"/marker")
	require.NoError(t, err)
	assert.Equal(t, "v1", string(b), "the snapshot keeps the content of its creation time")
	unmountAll(t, e, snapMnt, mnt)

	// A writable copy of the snapshot (restore): a new LV, CopyDevice, mount.
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "restored", SizeBytes: 32 * core.MiB}))
	require.NoError(t, h.CopyDevice(ctx, h.LVDevicePath(vgName, "snap"), h.LVDevicePath(vgName, "restored"), 32*core.MiB))
	rmnt := mkdir(t, e, e.Dir+"/restored")
	require.NoError(t, h.Mount(ctx, h.LVDevicePath(vgName, "restored"), rmnt, "ext4", nil))
	t.Cleanup(func() { _ = h.Unmount(ctx, rmnt) })
	b, err = h.ReadFile(ctx, rmnt+"/marker")
	require.NoError(t, err)
	assert.Equal(t, "v1", string(b))
	unmountAll(t, e, rmnt)

	require.NoError(t, h.ChangeLV(ctx, vgName, "restored", hostexec.LVChange{Activate: &off}))
	_, err = h.DeviceSize(ctx, h.LVDevicePath(vgName, "restored"))
	isErr(t, err, hostexec.ErrNotFound, "an inactive LV has no device node")
	la, err := lvmreport.ParseLVAttr(lv(t, e, vgName, "restored").Attr)
	require.NoError(t, err)
	assert.False(t, la.IsActive())

	// FormatNewLV: the provisioning path's mkfs of an LV it just created.
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: vgName, Name: "new", SizeBytes: 32 * core.MiB}))
	require.NoError(t, h.FormatNewLV(ctx, vgName, "new", "ext4", nil))
	sigs, err = h.Signatures(ctx, h.LVDevicePath(vgName, "new"))
	require.NoError(t, err)
	assert.Equal(t, []string{"ext4"}, sigs)
	isErr(t, h.FormatNewLV(ctx, vgName, "missing", "ext4", nil), hostexec.ErrNotFound)
	isErr(t, h.FormatNewLV(ctx, vgName, "../x", "ext4", nil), hostexec.ErrInvalidArgument)
}

func testPodCgroup(t *testing.T, e Env) {
	need(t, e, e.AddPod != nil, CapPods)
	h := e.Host
	uid := "0f4c2c1a-8d2e-4b8e-9b7a-1c2d3e4f5a6b"
	dir := e.AddPod(t, uid)
	got, err := h.PodCgroupDir(ctx, uid)
	require.NoError(t, err)
	assert.Equal(t, dir, got)
	got, err = h.PodCgroupDir(ctx, "0f4c2c1a_8d2e_4b8e_9b7a_1c2d3e4f5a6b")
	require.NoError(t, err, "the systemd spelling of a UID names the same pod")
	assert.Equal(t, dir, got)
	_, err = h.PodCgroupDir(ctx, "11111111-2222-3333-4444-555555555555")
	isErr(t, err, hostexec.ErrNotFound)
}

func testIOLimits(t *testing.T, e Env) {
	need(t, e, e.AddPod != nil, CapPods)
	need(t, e, e.Caps.HasCgroupIO, CapCgroupIO)
	h := e.Host
	dir := e.AddPod(t, "7d9b3f7e-1c3a-4a8e-b7f1-0a2b3c4d5e6f")
	ma0, mi0, err := h.DeviceNumber(ctx, e.Devices[0])
	require.NoError(t, err)
	ma1, mi1, err := h.DeviceNumber(ctx, e.Devices[1])
	require.NoError(t, err)
	l0 := hostexec.IOLimits{ReadBPS: core.MiB, WriteIOPS: 100}
	l1 := hostexec.IOLimits{WriteBPS: 2 * core.MiB}
	require.NoError(t, h.SetIOLimits(ctx, dir, ma0, mi0, l0))
	require.NoError(t, h.SetIOLimits(ctx, dir, ma1, mi1, l1))
	limits, err := h.IOLimits(ctx, dir)
	require.NoError(t, err)
	k0, k1 := fmt.Sprintf("%d:%d", ma0, mi0), fmt.Sprintf("%d:%d", ma1, mi1)
	assert.Equal(t, map[string]hostexec.IOLimits{k0: l0, k1: l1}, limits)
	require.NoError(t, h.SetIOLimits(ctx, dir, ma0, mi0, hostexec.IOLimits{}))
	limits, err = h.IOLimits(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, map[string]hostexec.IOLimits{k1: l1}, limits)
	isErr(t, h.SetIOLimits(ctx, dir, ma0, mi0, hostexec.IOLimits{ReadBPS: -1}), hostexec.ErrInvalidArgument)
	isErr(t, h.SetIOLimits(ctx, "/etc", ma0, mi0, l0), hostexec.ErrInvalidArgument)
}
