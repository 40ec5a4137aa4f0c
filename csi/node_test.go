package csi

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

func (e *env) mountOf(target string) (hostexec.MountInfo, bool) {
	mounts, err := e.h.ListMounts(e.ctx)
	require.NoError(e.t, err)
	for _, m := range mounts {
		if m.Target == target {
			return m, true
		}
	}
	return hostexec.MountInfo{}, false
}

func TestNodeStageTable(t *testing.T) {
	xfs := mountCap("xfs", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	cases := []struct {
		name    string
		prepare func(e *env, v *csi.Volume)
		req     func(v *csi.Volume) *csi.NodeStageVolumeRequest
		code    codes.Code
		has     string
		check   func(e *env, v *csi.Volume)
	}{
		{name: "formats a blank LV as ext4", req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: rwo, VolumeContext: v.VolumeContext}
		}, check: func(e *env, v *csi.Volume) {
			m, ok := e.mountOf(stagePath(v.VolumeId))
			require.True(t, ok)
			assert.Equal(t, "ext4", m.FSType)
		}},
		{name: "xfs gets nouuid", req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: xfs, VolumeContext: v.VolumeContext}
		}, check: func(e *env, v *csi.Volume) {
			m, _ := e.mountOf(stagePath(v.VolumeId))
			assert.Equal(t, "xfs", m.FSType)
			assert.Contains(t, m.Options, "nouuid")
		}},
		{name: "an existing filesystem is kept", prepare: func(e *env, v *csi.Volume) {
			dev := "/dev/" + testPool + "/" + v.VolumeId
			require.NoError(e.t, e.h.Mkfs(e.ctx, dev, "xfs", nil))
			require.NoError(e.t, e.h.MakeDir(e.ctx, "/tmp/m"))
			require.NoError(e.t, e.h.Mount(e.ctx, dev, "/tmp/m", "xfs", nil))
			require.NoError(e.t, e.h.WriteTestFile("/tmp/m/keep", []byte("data")))
			require.NoError(e.t, e.h.Unmount(e.ctx, "/tmp/m"))
		}, req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: xfs, VolumeContext: v.VolumeContext}
		}, check: func(e *env, v *csi.Volume) {
			data, err := e.h.ReadTestFile(stagePath(v.VolumeId) + "/keep")
			require.NoError(t, err)
			assert.Equal(t, "data", string(data))
		}},
		{name: "a foreign filesystem is refused", prepare: func(e *env, v *csi.Volume) {
			require.NoError(e.t, e.h.Mkfs(e.ctx, "/dev/"+testPool+"/"+v.VolumeId, "ext3", nil))
		}, req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: xfs, VolumeContext: v.VolumeContext}
		}, code: codes.FailedPrecondition, has: "ext3"},
		{name: "staging path taken by another device", prepare: func(e *env, v *csi.Volume) {
			require.NoError(e.t, e.h.Mkfs(e.ctx, "/dev/sdd", "ext4", nil))
			require.NoError(e.t, e.h.Mount(e.ctx, "/dev/sdd", stagePath(v.VolumeId), "ext4", nil))
		}, req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: rwo, VolumeContext: v.VolumeContext}
		}, code: codes.FailedPrecondition, has: "/dev/sdd"},
		{name: "block is only recorded", req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: blockCap(), VolumeContext: v.VolumeContext}
		}, check: func(e *env, v *csi.Volume) {
			_, mounted := e.mountOf(stagePath(v.VolumeId))
			assert.False(t, mounted)
			sigs, _ := e.h.Signatures(e.ctx, "/dev/"+testPool+"/"+v.VolumeId)
			assert.Empty(t, sigs, "a block volume is never formatted")
		}},
		{name: "unknown volume", req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: "local-nope", StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: rwo}
		}, code: codes.NotFound},
		{name: "relative staging path", req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: "rel/path", VolumeCapability: rwo}
		}, code: codes.InvalidArgument, has: "absolute"},
		{name: "no capability", req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId)}
		}, code: codes.InvalidArgument, has: "volume_capability"},
		{name: "bad mount flag", req: func(v *csi.Volume) *csi.NodeStageVolumeRequest {
			c := mountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
			c.GetMount().MountFlags = []string{"rw,exec"}
			return &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), VolumeCapability: c, VolumeContext: v.VolumeContext}
		}, code: codes.InvalidArgument, has: "commas"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			v := e.mustCreate(createReq(volA, core.GiB, nil))
			require.NoError(t, e.h.MakeDir(e.ctx, stagePath(volA)))
			if tc.prepare != nil {
				tc.prepare(e, v)
			}
			req := tc.req(v)
			_, err := e.d.NodeStageVolume(e.ctx, req)
			if tc.code != codes.OK {
				requireCode(t, err, tc.code, tc.has)
				return
			}
			require.NoError(t, err)
			tc.check(e, v)
			_, err = e.d.NodeStageVolume(e.ctx, req)
			require.NoError(t, err, "idempotent")
			_, err = e.d.NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volA, StagingTargetPath: req.StagingTargetPath})
			require.NoError(t, err)
			_, err = e.d.NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volA, StagingTargetPath: req.StagingTargetPath})
			require.NoError(t, err, "idempotent")
			_, mounted := e.mountOf(req.StagingTargetPath)
			assert.False(t, mounted)
		})
	}
}

func TestNodePublish(t *testing.T) {
	e := newEnv(t, nil)
	v := e.mustCreate(createReq(volA, core.GiB, nil))
	tp := targetPath(podA, volA)
	e.mkParent(tp)
	pub := func(c *csi.VolumeCapability, target string, ro bool, vc map[string]string) error {
		_, err := e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA), TargetPath: target, VolumeCapability: c, VolumeContext: vc, Readonly: ro})
		return err
	}
	requireCode(t, pub(rwo, tp, false, v.VolumeContext), codes.FailedPrecondition, "not staged")
	rwop := mountCap("", csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	e.stage(v, rwop)
	require.NoError(t, pub(rwop, tp, false, v.VolumeContext))
	require.NoError(t, pub(rwop, tp, false, v.VolumeContext), "idempotent")
	other := targetPath(podB, volA)
	e.mkParent(other)
	requireCode(t, pub(rwop, other, false, v.VolumeContext), codes.FailedPrecondition, "SINGLE_NODE_SINGLE_WRITER", tp)
	require.NoError(t, e.h.WriteTestFile(tp+"/f", []byte("x")))
	data, err := e.h.ReadTestFile(stagePath(volA) + "/f")
	require.NoError(t, err)
	assert.Equal(t, "x", string(data), "the target shows the staged filesystem")

	// A second, read-only publication (SINGLE_NODE_WRITER allows it).
	ro := targetPath("pod-ro", volA)
	e.mkParent(ro)
	require.NoError(t, pub(rwo, ro, true, v.VolumeContext))
	assert.Error(t, e.h.WriteTestFile(ro+"/g", []byte("x")))
	m, _ := e.mountOf(ro)
	assert.Contains(t, m.Options, "ro")

	// Throttling needs the pod's UID.
	tv := e.mustCreate(createReq(volB, core.GiB, throttleParams))
	e.stage(tv, rwo)
	ttp := targetPath(podA, volB)
	e.mkParent(ttp)
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: volB, StagingTargetPath: stagePath(volB), TargetPath: ttp, VolumeCapability: rwo, VolumeContext: tv.VolumeContext})
	requireCode(t, err, codes.FailedPrecondition, "podInfoOnMount")
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: volB, StagingTargetPath: stagePath(volB), TargetPath: ttp, VolumeCapability: rwo, VolumeContext: withPod(tv.VolumeContext, podA)})
	requireCode(t, err, codes.FailedPrecondition, "no cgroup")
	cg, err := e.h.AddPod(podA)
	require.NoError(t, err)
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: volB, StagingTargetPath: stagePath(volB), TargetPath: ttp, VolumeCapability: rwo, VolumeContext: withPod(tv.VolumeContext, podA)})
	require.NoError(t, err)
	major, minor, err := e.h.DeviceNumber(e.ctx, "/dev/"+testPool+"/"+volB)
	require.NoError(t, err)
	lim, err := e.h.IOLimits(e.ctx, cg)
	require.NoError(t, err)
	assert.Equal(t, map[string]hostexec.IOLimits{fmt.Sprintf("%d:%d", major, minor): {ReadBPS: 10 << 20, WriteBPS: 10 << 20, ReadIOPS: 500, WriteIOPS: 500}}, lim)

	// A restart loses nothing; a pod cgroup recreated (reboot) gets its limits back.
	e.h.RemovePod(podA)
	cg, err = e.h.AddPod(podA)
	require.NoError(t, err)
	e.start()
	lim, err = e.h.IOLimits(e.ctx, cg)
	require.NoError(t, err)
	assert.Len(t, lim, 1, "io.max re-applied at start")

	_, err = e.d.NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volB, TargetPath: ttp})
	require.NoError(t, err)
	lim, err = e.h.IOLimits(e.ctx, cg)
	require.NoError(t, err)
	assert.Empty(t, lim, "io.max removed at unpublish")
	ok, _ := e.h.PathExists(e.ctx, ttp)
	assert.False(t, ok, "the target is removed")
	_, err = e.d.NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volB, TargetPath: ttp})
	require.NoError(t, err, "idempotent")

	// Block: the device file is bind-mounted on a file.
	bv := e.mustCreate(createReq("local-blk", core.GiB, nil))
	e.stage(bv, blockCap())
	btp := e.publish(bv, blockCap(), podA, nil)
	m, ok = e.mountOf(btp)
	require.True(t, ok)
	assert.Equal(t, "/dev/"+testPool+"/local-blk", m.Source)
	_, err = e.d.NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "local-blk", VolumePath: btp})
	require.NoError(t, err)
	st, err := e.d.NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "local-blk", VolumePath: btp})
	require.NoError(t, err)
	require.Len(t, st.Usage, 1)
	assert.Equal(t, core.GiB, st.Usage[0].Total)

	for _, bad := range []*csi.NodePublishVolumeRequest{
		{TargetPath: tp, VolumeCapability: rwo},
		{VolumeId: volA, VolumeCapability: rwo},
		{VolumeId: volA, TargetPath: tp},
		{VolumeId: volA, TargetPath: tp, VolumeCapability: rwo},
		{VolumeId: volA, TargetPath: "x/../y", VolumeCapability: rwo, StagingTargetPath: stagePath(volA)},
	} {
		_, err := e.d.NodePublishVolume(e.ctx, bad)
		requireCode(t, err, codes.InvalidArgument)
	}
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: "local-nope", TargetPath: tp, VolumeCapability: rwo, StagingTargetPath: stagePath(volA)})
	requireCode(t, err, codes.NotFound)
}

func TestVolumeStats(t *testing.T) {
	e := newEnv(t, nil)
	v := e.mustCreate(createReq(volA, core.GiB, nil))
	e.stage(v, rwo)
	tp := e.publish(v, rwo, podA, nil)
	require.NoError(t, e.h.WriteTestFile(tp+"/f", make([]byte, 1<<20)))
	st, err := e.d.NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volA, VolumePath: tp})
	require.NoError(t, err)
	require.Len(t, st.Usage, 2)
	b, in := st.Usage[0], st.Usage[1]
	assert.Equal(t, csi.VolumeUsage_BYTES, b.Unit)
	assert.Equal(t, csi.VolumeUsage_INODES, in.Unit)
	assert.Positive(t, b.Total)
	assert.GreaterOrEqual(t, b.Used, int64(1<<20))
	assert.Equal(t, b.Total, b.Used+b.Available)
	assert.Positive(t, in.Used)
	for _, p := range []string{"some/path", "/nowhere"} {
		_, err = e.d.NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volA, VolumePath: p})
		requireCode(t, err, codes.NotFound)
	}
	_, err = e.d.NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "local-nope", VolumePath: tp})
	requireCode(t, err, codes.NotFound)
}

func TestNodeExpand(t *testing.T) {
	for _, controllerExpansion := range []bool{true, false} {
		t.Run(fmt.Sprintf("controller-expansion=%v", controllerExpansion), func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.ControllerExpansion = controllerExpansion })
			v := e.mustCreate(createReq(volA, core.GiB, nil))
			e.stage(v, rwo)
			tp := e.publish(v, rwo, podA, nil)
			before, err := e.h.StatFS(e.ctx, tp)
			require.NoError(t, err)
			want := int64(3 * core.GiB)
			if controllerExpansion {
				_, err := e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: want}})
				require.NoError(t, err)
			} else {
				_, err := e.d.NodeExpandVolume(e.ctx, &csi.NodeExpandVolumeRequest{VolumeId: volA, VolumePath: tp, CapacityRange: &csi.CapacityRange{RequiredBytes: 500 * core.GiB}})
				requireCode(t, err, codes.ResourceExhausted)
			}
			resp, err := e.d.NodeExpandVolume(e.ctx, &csi.NodeExpandVolumeRequest{VolumeId: volA, VolumePath: tp, CapacityRange: &csi.CapacityRange{RequiredBytes: want}})
			require.NoError(t, err)
			assert.Equal(t, want, resp.CapacityBytes)
			after, err := e.h.StatFS(e.ctx, tp)
			require.NoError(t, err)
			assert.Greater(t, after.TotalBytes, before.TotalBytes, "the filesystem grew online")
			e.checkLedgerMatchesHost()
			caps, err := e.d.ControllerGetCapabilities(e.ctx, &csi.ControllerGetCapabilitiesRequest{})
			require.NoError(t, err)
			has := false
			for _, c := range caps.Capabilities {
				has = has || c.GetRpc().GetType() == csi.ControllerServiceCapability_RPC_EXPAND_VOLUME
			}
			assert.Equal(t, controllerExpansion, has)
		})
	}
}

func TestInlineVolumes(t *testing.T) {
	e := newEnv(t, nil)
	_, _ = e.h.AddPod(podA)
	req := ephemeralReq(podA)
	e.mkParent(req.TargetPath)
	_, err := e.d.NodePublishVolume(e.ctx, req)
	require.NoError(t, err)
	_, err = e.d.NodePublishVolume(e.ctx, req)
	require.NoError(t, err, "idempotent")
	m, ok := e.mountOf(req.TargetPath)
	require.True(t, ok)
	assert.Equal(t, "xfs", m.FSType)
	st, _ := e.h.LVMReport(e.ctx)
	vg, lv := findLV(st, inl)
	require.NotNil(t, lv)
	assert.Equal(t, testPool, vg.Name, "the VG is chosen when the attributes name none")
	assert.Equal(t, 2*core.GiB, lv.SizeBytes)
	assert.Contains(t, lv.Tags, tagKindEphemeral)
	e.checkLedgerMatchesHost()
	_, err = e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: inl})
	require.NoError(t, err)
	st, _ = e.h.LVMReport(e.ctx)
	_, lv = findLV(st, inl)
	require.NotNil(t, lv, "DeleteVolume does not touch inline volumes")
	_, err = e.d.NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: inl, TargetPath: req.TargetPath})
	require.NoError(t, err)
	st, _ = e.h.LVMReport(e.ctx)
	_, lv = findLV(st, inl)
	require.Nil(t, lv, "the LV goes with the pod")
	e.checkLedgerMatchesHost()
	require.Empty(t, e.d.cap.claims())

	for name, vc := range map[string]map[string]string{
		"unknown attribute": {CtxEphemeral: "true", "volumeType": "LVM"},
		"bad size":          {CtxEphemeral: "true", AttrSize: "huge"},
		"bad fsType":        {CtxEphemeral: "true", AttrFSType: "vfat"},
	} {
		_, err := e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: inl, TargetPath: req.TargetPath, VolumeCapability: rwo, VolumeContext: vc})
		requireCode(t, err, codes.InvalidArgument, name[strings.LastIndex(name, " ")+1:])
	}
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: inl, TargetPath: req.TargetPath, VolumeCapability: blockCap(), VolumeContext: map[string]string{CtxEphemeral: "true"}})
	requireCode(t, err, codes.InvalidArgument, "block")
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: inl, TargetPath: req.TargetPath, VolumeCapability: rwo, VolumeContext: map[string]string{CtxEphemeral: "true", ParamVGName: "nope"}})
	requireCode(t, err, codes.ResourceExhausted, "nope")
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: inl, TargetPath: req.TargetPath, VolumeCapability: rwo, VolumeContext: map[string]string{CtxEphemeral: "true", AttrSize: "500Gi"}})
	requireCode(t, err, codes.ResourceExhausted)
	e.checkLedgerMatchesHost()
	require.Empty(t, e.d.cap.claims(), "refused inline volumes leave nothing")
}

func TestRestartRemovesOrphanedInlineVolumes(t *testing.T) {
	e := newEnv(t, nil)
	_, _ = e.h.AddPod(podA)
	req := ephemeralReq(podA)
	e.mkParent(req.TargetPath)
	_, err := e.d.NodePublishVolume(e.ctx, req)
	require.NoError(t, err)
	// A second inline volume whose publication never completed: its LV
	// exists and is mounted, but there is no record (a crash before the end).
	_, err = e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: "csi-orphan", TargetPath: targetPath(podB, "csi-orphan"), VolumeCapability: rwo, VolumeContext: map[string]string{CtxEphemeral: "true"}})
	require.NoError(t, err)
	require.NoError(t, e.h.RemovePath(e.ctx, e.d.rec.publishPath("csi-orphan", targetPath(podB, "csi-orphan"))))
	// A record whose inline LV vanished.
	require.NoError(t, e.d.rec.write(e.ctx, e.d.rec.publishPath("csi-gone", "/var/lib/kubelet/pods/x/mount"), PublishRecord{VolumeID: "csi-gone", TargetPath: "/var/lib/kubelet/pods/x/mount", Ephemeral: &EphemeralRecord{VG: testPool}}))

	e.start()
	st, _ := e.h.LVMReport(e.ctx)
	_, lv := findLV(st, "csi-orphan")
	assert.Nil(t, lv, "the orphan is removed")
	_, mounted := e.mountOf(targetPath(podB, "csi-orphan"))
	assert.False(t, mounted)
	_, lv = findLV(st, inl)
	assert.NotNil(t, lv, "a published inline volume is kept")
	pubs, err := e.d.rec.publications(e.ctx, "")
	require.NoError(t, err)
	require.Len(t, pubs, 1)
	assert.Equal(t, inl, pubs[0].VolumeID)
	e.checkLedgerMatchesHost()
}

func TestOpenLocalVolumesAreRecognised(t *testing.T) {
	// An LV open-local made: its name has open-local's prefix, no tags.
	e := newEnv(t, nil)
	require.NoError(t, e.h.CreateLV(e.ctx, hostexecLV(testPool, "local-0ld")))
	e.start()
	e.checkLedgerMatchesHost()
	vc := map[string]string{"volumeType": "LVM", "vgName": testPool, "storage.kubernetes.io/csiProvisionerIdentity": "x"}
	v := &csi.Volume{VolumeId: "local-0ld", VolumeContext: vc}
	e.stage(v, rwo)
	e.publish(v, rwo, podA, nil)
	list, err := e.d.ListVolumes(e.ctx, &csi.ListVolumesRequest{})
	require.NoError(t, err)
	require.Len(t, list.Entries, 1)

	// An open-local Device PV: its context names the device, there is no record.
	dv := &csi.Volume{VolumeId: "local-dev", VolumeContext: map[string]string{"volumeType": "Device", "Device": "/dev/sdd", "mediaType": "hdd"}}
	e.stage(dv, rwo)
	m, ok := e.mountOf(stagePath("local-dev"))
	require.True(t, ok)
	assert.Equal(t, "/dev/sdd", m.Source)
	tp := e.publish(dv, rwo, podA, nil)
	// Stats, expansion and health carry no volume context: the records of
	// the paths identify the volume.
	st, err := e.d.NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "local-dev", VolumePath: tp})
	require.NoError(t, err)
	assert.Equal(t, int64(50*core.GiB), st.Usage[0].Total)
	_, err = e.d.NodeExpandVolume(e.ctx, &csi.NodeExpandVolumeRequest{VolumeId: "local-dev", VolumePath: tp})
	require.NoError(t, err)
	h, err := e.d.NodeGetVolumeHealth(e.ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: "local-dev", VolumePublishPath: tp})
	require.NoError(t, err)
	assert.Empty(t, h.VolumeHealth.HealthStatuses)
	_, err = e.d.NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "local-dev", VolumePath: "/elsewhere"})
	requireCode(t, err, codes.NotFound)
}

func TestNodeInfoAndModes(t *testing.T) {
	e := newEnv(t, nil)
	info, err := e.d.NodeGetInfo(e.ctx, &csi.NodeGetInfoRequest{})
	require.NoError(t, err)
	assert.Equal(t, testNode, info.NodeId)
	assert.Equal(t, map[string]string{TopologyKey: testNode}, info.AccessibleTopology.Segments)
	// floor(100 GiB - 4 MiB / 1 GiB) = 99 LVs + 2 devices.
	assert.Equal(t, int64(101), info.MaxVolumesPerNode)
	fixed := newEnv(t, func(c *Config) { c.MaxVolumes = 7 })
	info, _ = fixed.d.NodeGetInfo(fixed.ctx, &csi.NodeGetInfoRequest{})
	assert.Equal(t, int64(7), info.MaxVolumesPerNode)

	for _, tc := range []struct {
		mode                 Mode
		controller, nodeSide bool
	}{{ModeAll, true, true}, {ModeController, true, false}, {ModeNode, false, true}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Mode = tc.mode })
			conn := dial(t, e)
			caps, err := csi.NewIdentityClient(conn).GetPluginCapabilities(e.ctx, &csi.GetPluginCapabilitiesRequest{})
			require.NoError(t, err)
			hasController := false
			for _, c := range caps.Capabilities {
				hasController = hasController || c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE
			}
			assert.Equal(t, tc.controller, hasController)
			_, err = csi.NewControllerClient(conn).ListVolumes(e.ctx, &csi.ListVolumesRequest{})
			if tc.controller {
				require.NoError(t, err)
			} else {
				requireCode(t, err, codes.Unimplemented)
			}
			_, err = csi.NewNodeClient(conn).NodeGetInfo(e.ctx, &csi.NodeGetInfoRequest{})
			if tc.nodeSide {
				require.NoError(t, err)
			} else {
				requireCode(t, err, codes.Unimplemented)
			}
		})
	}
}

// dial serves e's driver on a unix socket and connects to it.
func dial(t *testing.T, e *env) *grpc.ClientConn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	ep, err := ParseEndpoint("unix://" + sock)
	require.NoError(t, err)
	l, err := ep.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.d.Serve(ctx, l) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		require.NoError(t, <-done)
	})
	return conn
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, nil)
	e.cfg.Registry = reg
	d, err := NewDriver(e.cfg, e.h)
	require.NoError(t, err)
	require.NoError(t, d.Start(e.ctx))
	e.d = d
	conn := dial(t, e)
	cc := csi.NewControllerClient(conn)
	_, err = cc.CreateVolume(e.ctx, createReq(volA, core.GiB, nil))
	require.NoError(t, err)
	_, err = cc.CreateVolume(e.ctx, createReq("", core.GiB, nil))
	requireCode(t, err, codes.InvalidArgument)
	assert.Equal(t, 1.0, testutil.ToFloat64(d.metrics.total.WithLabelValues("CreateVolume", "OK")))
	assert.Equal(t, 1.0, testutil.ToFloat64(d.metrics.total.WithLabelValues("CreateVolume", "InvalidArgument")))
	n, err := testutil.GatherAndCount(reg, "open_local_csi_rpc_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = NewDriver(e.cfg, e.h)
	require.Error(t, err, "a second driver cannot register the same metrics")
}

func TestProbeBeforeStart(t *testing.T) {
	e := newEnv(t, nil)
	d, err := NewDriver(e.cfg, e.h)
	require.NoError(t, err)
	_, err = d.Probe(e.ctx, &csi.ProbeRequest{})
	requireCode(t, err, codes.Unavailable)
	require.NoError(t, d.Start(e.ctx))
	resp, err := d.Probe(e.ctx, &csi.ProbeRequest{})
	require.NoError(t, err)
	assert.True(t, resp.Ready.GetValue())
	info, _ := d.GetPluginInfo(e.ctx, &csi.GetPluginInfoRequest{})
	assert.Equal(t, DefaultDriverName, info.Name)
}

func TestNewDriverValidation(t *testing.T) {
	e := newEnv(t, nil)
	for name, mod := range map[string]func(*Config){
		"no node":      func(c *Config) { c.NodeID = "" },
		"bad mode":     func(c *Config) { c.Mode = "both" },
		"bad driver":   func(c *Config) { c.DriverName = "a b" },
		"relative dir": func(c *Config) { c.StateDir = "state" },
		"bad regexp":   func(c *Config) { c.VGs = core.Filter{Include: []string{"("}} },
		"negative max": func(c *Config) { c.MaxVolumes = -1 },
		"metrics no gatherer": func(c *Config) {
			c.MetricsAddress = "127.0.0.1:0"
			c.Registry = prometheus.WrapRegistererWithPrefix("x_", prometheus.NewRegistry())
		},
	} {
		cfg := testConfig()
		mod(&cfg)
		_, err := NewDriver(cfg, e.h)
		require.Error(t, err, name)
	}
	_, err := NewDriver(testConfig(), nil)
	require.Error(t, err)
}

func TestHealth(t *testing.T) {
	e := newEnv(t, nil)
	v := e.mustCreate(createReq(volA, core.GiB, nil))
	e.stage(v, rwo)
	tp := e.publish(v, rwo, podA, nil)
	h, err := e.d.ControllerGetVolumeHealth(e.ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: volA})
	require.NoError(t, err)
	assert.Empty(t, h.VolumeHealth.HealthStatuses)
	_, err = e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: snapA, SourceVolumeId: volA, Parameters: map[string]string{SnapParamInitialSize: "8Mi"}})
	require.NoError(t, err)
	rreq := createReq(volB, core.GiB, map[string]string{ParamReadOnly: "true"})
	rreq.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapA}}}
	e.mustCreate(rreq)
	// Overflow the 8 MiB COW space: the snapshot becomes invalid.
	require.NoError(t, e.h.WriteTestFile(tp+"/big", make([]byte, 16<<20)))
	h, err = e.d.ControllerGetVolumeHealth(e.ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: volB})
	require.NoError(t, err)
	require.Len(t, h.VolumeHealth.HealthStatuses, 1)
	assert.Equal(t, csi.VolumeHealthErrorType_DATA_LOSS, h.VolumeHealth.HealthStatuses[0].Status)
	list, err := e.d.ControllerListVolumeHealth(e.ctx, &csi.ControllerListVolumeHealthRequest{})
	require.NoError(t, err)
	require.Len(t, list.Entries, 1)
	assert.Equal(t, volB, list.Entries[0].VolumeId)

	nh, err := e.d.NodeGetVolumeHealth(e.ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: volA, VolumePublishPath: tp, StagingTargetPath: stagePath(volA)})
	require.NoError(t, err)
	assert.Empty(t, nh.VolumeHealth.HealthStatuses)
	require.NoError(t, e.h.Unmount(e.ctx, tp))
	nh, err = e.d.NodeGetVolumeHealth(e.ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: volA, VolumePublishPath: tp})
	require.NoError(t, err)
	require.Len(t, nh.VolumeHealth.HealthStatuses, 1)
	assert.Equal(t, "NotMounted", nh.VolumeHealth.HealthStatuses[0].Reason)

	sh, err := e.d.NodeGetStorageHealth(e.ctx, &csi.NodeGetStorageHealthRequest{})
	require.NoError(t, err)
	assert.Empty(t, sh.BackendHealth)
	e.h.FailNth("LVMReport", 1, nil)
	sh, err = e.d.NodeGetStorageHealth(e.ctx, &csi.NodeGetStorageHealthRequest{})
	require.NoError(t, err)
	require.Len(t, sh.BackendHealth, 1)
	assert.Equal(t, csi.StorageHealthErrorType_STORAGE_UNREACHABLE, sh.BackendHealth[0].Status)
}
