package csi

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec/simhost"
)

func TestCreateVolumeTable(t *testing.T) {
	gib, mib := core.GiB, core.MiB
	topo := func(node string) *csi.TopologyRequirement {
		return &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{TopologyKey: node}}}}
	}
	cases := []struct {
		name     string
		req      *csi.CreateVolumeRequest
		code     codes.Code // OK when the call must succeed
		has      string
		wantSize int64
		wantCtx  map[string]string
	}{
		{name: "rounds up to whole extents", req: createReq("local-1", gib+1, nil), wantSize: gib + 4*mib,
			wantCtx: map[string]string{"volumeType": "LVM", "vgName": testPool, ParamSelectedNode: testNode}},
		{name: "exact extents", req: createReq("local-2", 4*mib, nil), wantSize: 4 * mib},
		{name: "no capacity gets 1Gi", req: &csi.CreateVolumeRequest{Name: "local-3", VolumeCapabilities: []*csi.VolumeCapability{rwo}}, wantSize: gib},
		{name: "no capacity, small limit", req: &csi.CreateVolumeRequest{Name: "local-4", VolumeCapabilities: []*csi.VolumeCapability{rwo}, CapacityRange: &csi.CapacityRange{LimitBytes: 8 * mib}}, wantSize: 8 * mib},
		{name: "pinned VG", req: createReq("local-5", gib, map[string]string{"vgName": testPool, "csi.storage.k8s.io/pvc/name": "data"}), wantSize: gib,
			wantCtx: map[string]string{"vgName": testPool, "csi.storage.k8s.io/pvc/name": "data"}},
		{name: "own topology", req: func() *csi.CreateVolumeRequest {
			r := createReq("local-6", gib, nil)
			r.AccessibilityRequirements = topo(testNode)
			return r
		}(), wantSize: gib},
		{name: "device takes the smallest fitting disk", req: createReq("local-7", gib, deviceParams), wantSize: 50 * gib,
			wantCtx: map[string]string{"volumeType": "Device", "Device": "/dev/sdc", "mediaType": "ssd"}},
		{name: "hdd device", req: createReq("local-8", gib, map[string]string{"volumeType": "Device", "mediaType": "hdd"}), wantSize: 50 * gib,
			wantCtx: map[string]string{"Device": "/dev/sdd"}},

		{name: "no name", req: createReq("", gib, nil), code: codes.InvalidArgument, has: "name"},
		{name: "no capabilities", req: &csi.CreateVolumeRequest{Name: "x"}, code: codes.InvalidArgument, has: "volume_capabilities"},
		{name: "bad parameter", req: createReq("x", gib, map[string]string{"volumeType": "lvm"}), code: codes.InvalidArgument, has: "volumeType"},
		{name: "multi-node access", req: &csi.CreateVolumeRequest{Name: "x", VolumeCapabilities: []*csi.VolumeCapability{mountCap("", csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)}}, code: codes.InvalidArgument, has: "MULTI_NODE_READER_ONLY"},
		{name: "fs type conflict", req: func() *csi.CreateVolumeRequest {
			r := createReq("x", gib, map[string]string{ParamFSType: "ext4"})
			r.VolumeCapabilities = []*csi.VolumeCapability{mountCap("xfs", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}
			return r
		}(), code: codes.InvalidArgument, has: "differs"},
		{name: "block MountPoint", req: func() *csi.CreateVolumeRequest {
			r := createReq("x", gib, mpParams)
			r.VolumeCapabilities = []*csi.VolumeCapability{blockCap()}
			return r
		}(), code: codes.InvalidArgument, has: "block"},
		{name: "required above limit", req: &csi.CreateVolumeRequest{Name: "x", VolumeCapabilities: []*csi.VolumeCapability{rwo}, CapacityRange: &csi.CapacityRange{RequiredBytes: 2, LimitBytes: 1}}, code: codes.InvalidArgument, has: "exceeds"},
		{name: "limit below the rounded size", req: &csi.CreateVolumeRequest{Name: "x", VolumeCapabilities: []*csi.VolumeCapability{rwo}, CapacityRange: &csi.CapacityRange{RequiredBytes: gib + 1, LimitBytes: gib + mib}}, code: codes.OutOfRange, has: "whole LVM extents"},
		{name: "device above limit", req: &csi.CreateVolumeRequest{Name: "x", VolumeCapabilities: []*csi.VolumeCapability{rwo}, Parameters: deviceParams, CapacityRange: &csi.CapacityRange{RequiredBytes: gib, LimitBytes: 2 * gib}}, code: codes.OutOfRange, has: "limit_bytes"},
		{name: "too big for the VG", req: createReq("x", 200*gib, nil), code: codes.ResourceExhausted, has: "Insufficient LVM storage"},
		{name: "unknown VG", req: createReq("x", gib, map[string]string{"vgName": "other"}), code: codes.ResourceExhausted, has: "volume group not found"},
		{name: "device too big", req: createReq("x", 60*gib, deviceParams), code: codes.ResourceExhausted, has: "Insufficient Device storage"},
		{name: "other node's topology", req: func() *csi.CreateVolumeRequest {
			r := createReq("x", gib, nil)
			r.AccessibilityRequirements = topo("node-2")
			return r
		}(), code: codes.ResourceExhausted, has: "node-1"},
		{name: "other selected node", req: createReq("x", gib, map[string]string{ParamSelectedNode: "node-2"}), code: codes.ResourceExhausted, has: "node-2"},
		{name: "missing snapshot", req: func() *csi.CreateVolumeRequest {
			r := createReq("x", gib, nil)
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snap-nope"}}}
			return r
		}(), code: codes.NotFound, has: "snap-nope"},
		{name: "missing source volume", req: func() *csi.CreateVolumeRequest {
			r := createReq("x", gib, nil)
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "local-nope"}}}
			return r
		}(), code: codes.NotFound, has: "local-nope"},
		{name: "source for a device", req: func() *csi.CreateVolumeRequest {
			r := createReq("x", gib, deviceParams)
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "local-1"}}}
			return r
		}(), code: codes.InvalidArgument, has: "LVM volumes only"},
		{name: "mutable parameters", req: func() *csi.CreateVolumeRequest {
			r := createReq("x", gib, nil)
			r.MutableParameters = map[string]string{"iops": "1"}
			return r
		}(), code: codes.InvalidArgument, has: "VolumeAttributesClass"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			resp, err := e.d.CreateVolume(e.ctx, tc.req)
			if tc.code != codes.OK {
				requireCode(t, err, tc.code, tc.has)
				e.checkLedgerMatchesHost()
				require.Empty(t, e.d.cap.claims(), "a refused request leaves no reservation")
				return
			}
			require.NoError(t, err)
			v := resp.Volume
			assert.Equal(t, tc.wantSize, v.CapacityBytes)
			assert.Equal(t, []*csi.Topology{{Segments: map[string]string{TopologyKey: testNode}}}, v.AccessibleTopology)
			for k, want := range tc.wantCtx {
				assert.Equal(t, want, v.VolumeContext[k], k)
			}
			e.checkLedgerMatchesHost()
			// Idempotent: the same request answers the same volume.
			again, err := e.d.CreateVolume(e.ctx, tc.req)
			require.NoError(t, err)
			assert.Equal(t, v.String(), again.Volume.String())
			e.checkLedgerMatchesHost()
		})
	}
}

func TestCreateVolumeIdempotencyConflicts(t *testing.T) {
	e := newEnv(t, nil)
	e.mustCreate(createReq(volA, core.GiB, nil))
	for name, req := range map[string]*csi.CreateVolumeRequest{
		"bigger":      createReq(volA, 2*core.GiB, nil),
		"other VG":    createReq(volA, core.GiB, map[string]string{"vgName": "elsewhere"}),
		"device":      createReq(volA, core.GiB, deviceParams),
		"smaller cap": {Name: volA, VolumeCapabilities: []*csi.VolumeCapability{rwo}, CapacityRange: &csi.CapacityRange{LimitBytes: core.MiB * 8}},
		"with source": func() *csi.CreateVolumeRequest {
			r := createReq(volA, core.GiB, nil)
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volB}}}
			return r
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			if name == "with source" {
				e.mustCreate(createReq(volB, core.GiB, nil))
			}
			_, err := e.d.CreateVolume(e.ctx, req)
			requireCode(t, err, codes.AlreadyExists)
		})
	}
	// A snapshot's name cannot be reused for a volume, nor the reverse.
	e.createSnapshot(snapA, volA)
	_, err := e.d.CreateVolume(e.ctx, createReq(snapA, core.GiB, nil))
	requireCode(t, err, codes.AlreadyExists, "snapshot")
	_, err = e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: volB, SourceVolumeId: volA})
	requireCode(t, err, codes.AlreadyExists, "a volume")
	e.checkLedgerMatchesHost()
}

func TestLongNamesMapToStableIDs(t *testing.T) {
	e := newEnv(t, nil)
	name := strings.Repeat("n", 128)
	v := e.mustCreate(createReq(name, core.GiB, nil))
	assert.Equal(t, volumeIDFor(name, "csi-"), v.VolumeId)
	again := e.mustCreate(createReq(name, core.GiB, nil))
	assert.Equal(t, v.VolumeId, again.VolumeId)
	resp, err := e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: v.VolumeId})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(resp.Snapshot.SnapshotId, "snap-"))
}

func TestStripedVolumes(t *testing.T) {
	cfg := simhost.Config{ExtentSize: "4Mi", Devices: []simhost.DeviceConfig{{Name: "/dev/sdb", Size: "10Gi"}, {Name: "/dev/sdc", Size: "10Gi"}},
		VGs: []simhost.VGConfig{{Name: testPool, Devices: []string{"/dev/sdb", "/dev/sdc"}}}}
	e := newEnvWith(t, cfg, nil)
	v := e.mustCreate(createReq(volA, core.GiB+1, map[string]string{"lvmType": "striping"}))
	// Two stripes: whole extents per stripe, 1 GiB + 8 MiB.
	assert.Equal(t, core.GiB+8*core.MiB, v.CapacityBytes)
	st, err := e.h.LVMReport(e.ctx)
	require.NoError(t, err)
	_, lv := findLV(st, volA)
	require.NotNil(t, lv)
	assert.Equal(t, 2, lv.Stripes)
	_, err = e.d.CreateVolume(e.ctx, createReq(volA, core.GiB+1, nil))
	requireCode(t, err, codes.AlreadyExists, "stripe")
	e.checkLedgerMatchesHost()
}

func newEnvWith(t tb, sc simhost.Config, mod func(*Config)) *env {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	e := &env{t: t, h: simhost.MustNew(sc), cfg: cfg, ctx: context.Background()}
	e.start()
	return e
}

func TestCapacityAndReservations(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Reservations = map[string]core.Reservation{testPool: {Percent: 10, IsPercent: true}}
	})
	vgTotal := 100*core.GiB - 4*core.MiB // the PV loses its first MiB to metadata, rounded to an extent
	capFor := func(params map[string]string, topo *csi.Topology) (int64, int64) {
		resp, err := e.d.GetCapacity(e.ctx, &csi.GetCapacityRequest{Parameters: params, AccessibleTopology: topo})
		require.NoError(t, err)
		return resp.AvailableCapacity, resp.MaximumVolumeSize.GetValue()
	}
	st, err := e.h.LVMReport(e.ctx)
	require.NoError(t, err)
	require.Equal(t, vgTotal, st.VGs[0].TotalBytes)
	alloc := vgTotal - vgTotal/10
	alloc -= alloc % (4 * core.MiB)
	avail, largest := capFor(nil, nil)
	assert.Equal(t, alloc, avail)
	assert.Equal(t, alloc, largest)
	e.mustCreate(createReq(volA, 10*core.GiB, nil))
	avail, _ = capFor(nil, &csi.Topology{Segments: map[string]string{TopologyKey: testNode}})
	assert.Equal(t, alloc-10*core.GiB, avail)
	avail, largest = capFor(nil, &csi.Topology{Segments: map[string]string{TopologyKey: "node-2"}})
	assert.Zero(t, avail)
	assert.Zero(t, largest)
	avail, largest = capFor(deviceParams, nil)
	assert.Equal(t, 50*core.GiB, avail)
	assert.Equal(t, 50*core.GiB, largest)
	avail, _ = capFor(map[string]string{"volumeType": "Device"}, nil)
	assert.Equal(t, 100*core.GiB, avail)
	e.mustCreate(createReq(volB, core.GiB, deviceParams))
	avail, largest = capFor(deviceParams, nil)
	assert.Zero(t, avail)
	assert.Zero(t, largest)
	_, err = e.d.GetCapacity(e.ctx, &csi.GetCapacityRequest{Parameters: map[string]string{"volumeType": "Quota"}})
	requireCode(t, err, codes.InvalidArgument)

	// The VG grows behind the driver's back (a disk added to it): GetCapacity
	// and CreateVolume see it at once, without a restart.
	require.NoError(t, e.h.AddDevice(simhost.DeviceConfig{Name: "/dev/sde", Size: "100Gi", Media: "ssd"}))
	require.NoError(t, e.h.ExtendVG(e.ctx, testPool, []string{"/dev/sde"}))
	e.mustCreate(createReq("local-big", 150*core.GiB, nil))
	e.checkLedgerMatchesHost()
}

func TestDeviceEligibility(t *testing.T) {
	cfg := simhost.Default()
	cfg.Devices = append(cfg.Devices,
		simhost.DeviceConfig{Name: "/dev/sde", Size: "10Gi", Media: "ssd", Signatures: []string{"ntfs"}},
		simhost.DeviceConfig{Name: "/dev/sdf", Size: "10Gi", Media: "ssd", ReadOnly: true},
		simhost.DeviceConfig{Name: "/dev/sdg", Size: "20Gi", Media: "ssd"},
		simhost.DeviceConfig{Name: "/dev/sdg1", Size: "10Gi", Parent: "/dev/sdg"},
	)
	e := newEnvWith(t, cfg, nil)
	var got []string
	for _, d := range e.d.cap.usage().Devices {
		got = append(got, d.Name)
	}
	// sdb is a PV, sde has a signature, sdf is read-only, sdg is partitioned.
	assert.Equal(t, []string{"/dev/sdc", "/dev/sdd", "/dev/sdg1"}, got)

	// A device that gains a signature after the ledger was loaded is not handed out.
	require.NoError(t, e.h.Mkfs(e.ctx, "/dev/sdg1", "ext4", nil))
	_, err := e.d.CreateVolume(e.ctx, createReq(volA, 5*core.GiB, map[string]string{"volumeType": "Device"}))
	requireCode(t, err, codes.ResourceExhausted, "no longer blank")
	v := e.mustCreate(createReq(volA, 5*core.GiB, map[string]string{"volumeType": "Device"}))
	assert.Equal(t, "/dev/sdc", v.VolumeContext[CtxDevice])
	e.checkLedgerMatchesHost()

	// Filters narrow what is allocatable.
	e2 := newEnvWith(t, cfg, func(c *Config) { c.Devices = core.Filter{Include: []string{"/dev/sdd"}} })
	require.Len(t, e2.d.cap.usage().Devices, 1)
}

func TestDeleteVolume(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{})
	requireCode(t, err, codes.InvalidArgument)
	for _, id := range []string{"local-nope", "../../etc", "a b"} {
		_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		require.NoError(t, err, id)
	}
	e.mustCreate(createReq(volA, core.GiB, nil))
	e.createSnapshot(snapA, volA)
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volA})
	requireCode(t, err, codes.FailedPrecondition, snapA)
	// DeleteVolume never removes a snapshot, nor DeleteSnapshot a volume.
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: snapA})
	require.NoError(t, err)
	_, err = e.d.DeleteSnapshot(e.ctx, &csi.DeleteSnapshotRequest{SnapshotId: volA})
	require.NoError(t, err)
	st, _ := e.h.LVMReport(e.ctx)
	require.Len(t, st.VGs[0].LVs, 2)
	_, err = e.d.DeleteSnapshot(e.ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapA})
	require.NoError(t, err)
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volA})
	require.NoError(t, err)
	e.checkLedgerMatchesHost()
	require.Empty(t, e.d.cap.claims())

	// A foreign LV is never touched, whatever its name.
	require.NoError(t, e.h.CreateLV(e.ctx, hostexecLV(testPool, "root")))
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: "root"})
	require.NoError(t, err)
	st, _ = e.h.LVMReport(e.ctx)
	require.Len(t, st.VGs[0].LVs, 1)

	// A Device volume is wiped on deletion.
	v := e.mustCreate(createReq(volB, core.GiB, deviceParams))
	sp := e.stage(v, rwo)
	_, err = e.d.NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volB, StagingTargetPath: sp})
	require.NoError(t, err)
	sigs, _ := e.h.Signatures(e.ctx, "/dev/sdc")
	require.Equal(t, []string{"ext4"}, sigs)
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volB})
	require.NoError(t, err)
	sigs, _ = e.h.Signatures(e.ctx, "/dev/sdc")
	require.Empty(t, sigs)
	e.checkLedgerMatchesHost()
}

func TestMountPointVolumes(t *testing.T) {
	e := newEnv(t, nil)
	mp := e.addMountPoint("mp1")
	v := e.mustCreate(createReq(volA, core.GiB, mpParams))
	require.Equal(t, mp, v.VolumeContext[CtxMountPoint])
	sp := e.stage(v, rwo)
	tp := e.publish(v, rwo, podA, nil)
	require.NoError(t, e.h.WriteTestFile(tp+"/data", []byte("x")))
	data, err := e.h.ReadTestFile(mp + "/data")
	require.NoError(t, err)
	require.Equal(t, "x", string(data))
	_, err = e.d.NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volA, TargetPath: tp})
	require.NoError(t, err)
	_, err = e.d.NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volA, StagingTargetPath: sp})
	require.NoError(t, err)
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volA})
	require.NoError(t, err)
	names, err := e.h.ListDir(e.ctx, mp)
	require.NoError(t, err)
	require.Empty(t, names, "a released mount point is emptied")
	ok, _ := e.h.PathExists(e.ctx, mp)
	require.True(t, ok, "and kept")
	_, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: 1}})
	requireCode(t, err, codes.NotFound)
}

func TestControllerExpand(t *testing.T) {
	e := newEnv(t, nil)
	e.mustCreate(createReq(volA, core.GiB, nil))
	expand := func(req int64, c *csi.VolumeCapability) (*csi.ControllerExpandVolumeResponse, error) {
		return e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: req}, VolumeCapability: c})
	}
	resp, err := expand(2*core.GiB+1, rwo)
	require.NoError(t, err)
	assert.Equal(t, 2*core.GiB+4*core.MiB, resp.CapacityBytes)
	assert.True(t, resp.NodeExpansionRequired)
	resp, err = expand(core.GiB, blockCap())
	require.NoError(t, err, "shrinking is a no-op")
	assert.Equal(t, 2*core.GiB+4*core.MiB, resp.CapacityBytes)
	assert.False(t, resp.NodeExpansionRequired, "a block volume needs nothing on the node")
	_, err = expand(500*core.GiB, nil)
	requireCode(t, err, codes.ResourceExhausted, "cannot grow")
	_, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA})
	requireCode(t, err, codes.InvalidArgument, "capacity_range")
	_, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * core.GiB, LimitBytes: 3*core.GiB - 1}})
	requireCode(t, err, codes.InvalidArgument, "capacity_range")
	_, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: 3*core.GiB + 1, LimitBytes: 3*core.GiB + core.MiB}})
	requireCode(t, err, codes.OutOfRange, "whole extents")
	_, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: "local-nope", CapacityRange: &csi.CapacityRange{RequiredBytes: 1}})
	requireCode(t, err, codes.NotFound)
	e.checkLedgerMatchesHost()

	e.mustCreate(createReq(volB, core.GiB, deviceParams))
	resp, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volB, CapacityRange: &csi.CapacityRange{RequiredBytes: 50 * core.GiB}})
	require.NoError(t, err)
	assert.Equal(t, 50*core.GiB, resp.CapacityBytes)
	_, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volB, CapacityRange: &csi.CapacityRange{RequiredBytes: 51 * core.GiB}})
	requireCode(t, err, codes.OutOfRange, "whole Device")

	off := newEnv(t, func(c *Config) { c.ControllerExpansion = false })
	_, err = off.d.ControllerExpandVolume(off.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: 1}})
	requireCode(t, err, codes.Unimplemented)
}

func TestSnapshotsAndRestores(t *testing.T) {
	e := newEnv(t, nil)
	src := e.mustCreate(createReq(volA, 2*core.GiB, nil))
	e.stage(src, rwo)
	tp := e.publish(src, rwo, podA, nil)
	require.NoError(t, e.h.WriteTestFile(tp+"/hello", []byte("before")))

	resp, err := e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: snapA, SourceVolumeId: volA})
	require.NoError(t, err)
	s := resp.Snapshot
	assert.Equal(t, 2*core.GiB, s.SizeBytes, "a snapshot restores to its source's size")
	assert.True(t, s.ReadyToUse)
	assert.Equal(t, testClock.UnixNano(), s.CreationTime.AsTime().UnixNano())
	st, _ := e.h.LVMReport(e.ctx)
	_, lv := findLV(st, snapA)
	require.NotNil(t, lv)
	assert.Equal(t, 2*core.GiB, lv.SizeBytes, "the 4Gi initial COW size is capped at the source's size")
	assert.Contains(t, lv.Tags, "ol.snapshot-expansion-threshold=50")
	assert.Contains(t, lv.Tags, "ol.snapshot-expansion-size=1073741824")
	again, err := e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: snapA, SourceVolumeId: volA})
	require.NoError(t, err)
	assert.Equal(t, s.String(), again.Snapshot.String())
	_, err = e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: snapA, SourceVolumeId: volB})
	requireCode(t, err, codes.AlreadyExists)
	_, err = e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: "snap-x", SourceVolumeId: "local-nope"})
	requireCode(t, err, codes.NotFound)
	_, err = e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: "snap-x", SourceVolumeId: volA, Parameters: map[string]string{SnapParamReadOnly: "false"}})
	requireCode(t, err, codes.InvalidArgument, "copy-on-write")

	// The origin changes after the snapshot.
	require.NoError(t, e.h.WriteTestFile(tp+"/hello", []byte("after")))

	// Writable restore: a new LV holding the snapshot's data.
	wreq := createReq(volB, core.GiB, nil)
	wreq.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapA}}}
	w := e.mustCreate(wreq)
	assert.Equal(t, 2*core.GiB, w.CapacityBytes, "at least the source's size")
	assert.Equal(t, "false", w.VolumeContext[ParamReadOnly])
	assert.Equal(t, snapA, w.VolumeContext[CtxSnapshotID])
	require.NotNil(t, w.ContentSource.GetSnapshot())
	e.stage(w, rwo)
	wtp := e.publish(w, rwo, podB, nil)
	data, err := e.h.ReadTestFile(wtp + "/hello")
	require.NoError(t, err)
	assert.Equal(t, "before", string(data))

	// Read-only restore: the snapshot itself, published read-only.
	rreq := createReq("local-ro", 2*core.GiB, map[string]string{ParamReadOnly: "true"})
	rreq.VolumeContentSource = wreq.VolumeContentSource
	r := e.mustCreate(rreq)
	assert.Equal(t, "true", r.VolumeContext[ParamReadOnly])
	rsp := e.stage(r, mountCap("", csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY))
	mounts, _ := e.h.ListMounts(e.ctx)
	found := false
	for _, m := range mounts {
		if m.Target == rsp {
			found = true
			assert.Contains(t, m.Options, "ro")
			assert.Contains(t, m.Options, "noload")
		}
	}
	require.True(t, found)
	rtp := e.publish(r, rwo, podB, nil)
	data, err = e.h.ReadTestFile(rtp + "/hello")
	require.NoError(t, err)
	assert.Equal(t, "before", string(data))
	assert.Error(t, e.h.WriteTestFile(rtp+"/new", []byte("x")), "a read-only restore is published read-only even when the CO asks for read-write")
	_, err = e.d.DeleteSnapshot(e.ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapA})
	requireCode(t, err, codes.FailedPrecondition, "local-ro")
	_, err = e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: "local-ro", CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * core.GiB}})
	requireCode(t, err, codes.FailedPrecondition, "read-only")
	vr, err := e.d.ValidateVolumeCapabilities(e.ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "local-ro", VolumeCapabilities: []*csi.VolumeCapability{rwo}})
	require.NoError(t, err)
	assert.Nil(t, vr.Confirmed)
	assert.Contains(t, vr.Message, "read-only")

	// Clone: a copy of the live source.
	creq := createReq("local-clone", core.GiB, nil)
	creq.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volA}}}
	c := e.mustCreate(creq)
	assert.Equal(t, volA, c.VolumeContext[CtxSourceVolumeID])
	e.stage(c, rwo)
	ctp := e.publish(c, rwo, podB, nil)
	data, err = e.h.ReadTestFile(ctp + "/hello")
	require.NoError(t, err)
	assert.Equal(t, "after", string(data))

	list, err := e.d.ListSnapshots(e.ctx, &csi.ListSnapshotsRequest{SourceVolumeId: volA})
	require.NoError(t, err)
	require.Len(t, list.Entries, 1)
	g, err := e.d.GetSnapshot(e.ctx, &csi.GetSnapshotRequest{SnapshotId: snapA})
	require.NoError(t, err)
	assert.Equal(t, s.String(), g.Snapshot.String())
	e.checkLedgerMatchesHost()
}

func TestListVolumesPages(t *testing.T) {
	e := newEnv(t, nil)
	ids := []string{"local-a", "local-b", "local-c", "local-d", "local-e"}
	for _, id := range ids[:4] {
		e.mustCreate(createReq(id, core.GiB, nil))
	}
	e.mustCreate(createReq("local-e", core.GiB, deviceParams))
	_, _ = e.h.AddPod(podA)
	e.mkParent(targetPath(podA, inl))
	_, err := e.d.NodePublishVolume(e.ctx, ephemeralReq(podA))
	require.NoError(t, err)
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		resp, err := e.d.ListVolumes(e.ctx, &csi.ListVolumesRequest{MaxEntries: 2, StartingToken: token})
		require.NoError(t, err)
		require.LessOrEqual(t, len(resp.Entries), 2)
		for _, en := range resp.Entries {
			got = append(got, en.Volume.VolumeId)
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	assert.Equal(t, ids, got, "every persistent volume once, inline volumes not listed")
	_, err = e.d.ListVolumes(e.ctx, &csi.ListVolumesRequest{StartingToken: "99"})
	requireCode(t, err, codes.Aborted)
}

func TestConcurrentCallsOnAVolumeAreAborted(t *testing.T) {
	e := newEnv(t, nil)
	e.h.Delay("CreateLV", 200*time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	var first error
	go func() {
		defer wg.Done()
		_, first = e.d.CreateVolume(e.ctx, createReq(volA, core.GiB, nil))
	}()
	require.Eventually(t, func() bool { return e.d.locks.isHeld(volA) }, time.Second, time.Millisecond)
	_, err := e.d.CreateVolume(e.ctx, createReq(volA, core.GiB, nil))
	requireCode(t, err, codes.Aborted, "pending")
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volA})
	requireCode(t, err, codes.Aborted)
	// Another volume is not held up.
	e.h.Delay("CreateLV", 0)
	e.mustCreate(createReq(volB, core.GiB, nil))
	wg.Wait()
	require.NoError(t, first)
	e.checkLedgerMatchesHost()
}

func TestParallelCreatesNeverOvercommit(t *testing.T) {
	e := newEnv(t, nil)
	e.h.Delay("CreateLV", 2*time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = e.d.CreateVolume(e.ctx, createReq("local-p"+string(rune('a'+i)), 10*core.GiB, nil))
		}(i)
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			requireCode(t, err, codes.ResourceExhausted)
		}
	}
	assert.Equal(t, 9, ok, "100 GiB minus metadata holds nine 10 GiB volumes")
	e.checkLedgerMatchesHost()
}

func TestRepeatedRestoreAfterItsSourceWasDeleted(t *testing.T) {
	e := newEnv(t, nil)
	e.mustCreate(createReq(volA, core.GiB, nil))
	e.createSnapshot(snapA, volA)
	req := createReq(volB, core.GiB, nil)
	req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapA}}}
	first := e.mustCreate(req)
	_, err := e.d.DeleteSnapshot(e.ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapA})
	require.NoError(t, err)
	// The provisioner lost the first answer and asks again: the volume
	// exists and is complete, so the missing snapshot does not matter.
	again := e.mustCreate(req)
	assert.Equal(t, first.String(), again.String())
	// A new volume from the deleted snapshot is NotFound.
	req.Name = "local-new"
	_, err = e.d.CreateVolume(e.ctx, req)
	requireCode(t, err, codes.NotFound, snapA)
	e.checkLedgerMatchesHost()
}
