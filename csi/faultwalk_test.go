package csi

import (
	"strconv"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
)

// walkScenario is one RPC with the state it starts from.
type walkScenario struct {
	name string
	cfg  func(*Config)
	// prepare brings a fresh node to the starting state (no faults) and
	// returns the call under test, which must succeed without faults and
	// make no host call but the RPC's.
	prepare func(e *env) func() error
}

const (
	volA  = "local-0000aaaa-0000-4000-8000-000000000001"
	volB  = "local-0000bbbb-0000-4000-8000-000000000002"
	snapA = "snap-0000cccc-0000-4000-8000-000000000003"
	inl   = "csi-00000000000000000000000000000000000000000000000000000000000000dd"
)

var (
	throttleParams = map[string]string{"bps": "10Mi", "iops": "500"}
	deviceParams   = map[string]string{"volumeType": "Device", "mediaType": "ssd"}
	mpParams       = map[string]string{"volumeType": "MountPoint", "mediaType": "hdd"}
)

func (e *env) createSnapshot(name, source string) {
	e.t.Helper()
	_, err := e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: source})
	require.NoError(e.t, err)
}

func ephemeralReq(pod string) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{VolumeId: inl, TargetPath: targetPath(pod, inl), VolumeCapability: mountCap("xfs", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER),
		VolumeContext: map[string]string{CtxEphemeral: "true", CtxPodUID: pod, AttrSize: "2Gi", ParamBPS: "1Mi"}}
}

func withPod(vc map[string]string, pod string) map[string]string {
	out := map[string]string{CtxPodUID: pod}
	for k, v := range vc {
		out[k] = v
	}
	return out
}

func walkScenarios() []walkScenario {
	gib := core.GiB
	snapSource := func(id string) *csi.VolumeContentSource {
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
	}
	// published creates, stages and publishes volA for podA.
	published := func(e *env, params map[string]string) *csi.Volume {
		_, _ = e.h.AddPod(podA)
		v := e.mustCreate(createReq(volA, gib, params))
		e.stage(v, rwo)
		e.publish(v, rwo, podA, map[string]string{CtxPodUID: podA})
		return v
	}
	return []walkScenario{
		{name: "CreateVolume LVM", prepare: func(e *env) func() error {
			return func() error { _, err := e.d.CreateVolume(e.ctx, createReq(volA, gib+1, nil)); return err }
		}},
		{name: "CreateVolume Device", prepare: func(e *env) func() error {
			return func() error { _, err := e.d.CreateVolume(e.ctx, createReq(volA, 10*gib, deviceParams)); return err }
		}},
		{name: "CreateVolume MountPoint", prepare: func(e *env) func() error {
			e.addMountPoint("mp1")
			return func() error { _, err := e.d.CreateVolume(e.ctx, createReq(volA, gib, mpParams)); return err }
		}},
		{name: "CreateVolume clone", prepare: func(e *env) func() error {
			e.stage(e.mustCreate(createReq(volA, 2*gib, nil)), rwo)
			req := createReq(volB, gib, nil)
			req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volA}}}
			return func() error { _, err := e.d.CreateVolume(e.ctx, req); return err }
		}},
		{name: "CreateVolume writable restore", prepare: func(e *env) func() error {
			e.stage(e.mustCreate(createReq(volA, 2*gib, nil)), rwo)
			e.createSnapshot(snapA, volA)
			req := createReq(volB, 2*gib, nil)
			req.VolumeContentSource = snapSource(snapA)
			return func() error { _, err := e.d.CreateVolume(e.ctx, req); return err }
		}},
		{name: "CreateVolume read-only restore", prepare: func(e *env) func() error {
			e.mustCreate(createReq(volA, 2*gib, nil))
			e.createSnapshot(snapA, volA)
			req := createReq(volB, 2*gib, map[string]string{ParamReadOnly: "true"})
			req.VolumeContentSource = snapSource(snapA)
			return func() error { _, err := e.d.CreateVolume(e.ctx, req); return err }
		}},
		{name: "DeleteVolume LVM", prepare: func(e *env) func() error {
			e.mustCreate(createReq(volA, gib, nil))
			return func() error { _, err := e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volA}); return err }
		}},
		{name: "DeleteVolume Device", prepare: func(e *env) func() error {
			sp := e.stage(e.mustCreate(createReq(volA, gib, deviceParams)), rwo)
			_, err := e.d.NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volA, StagingTargetPath: sp})
			require.NoError(e.t, err)
			return func() error { _, err := e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volA}); return err }
		}},
		{name: "DeleteVolume MountPoint", prepare: func(e *env) func() error {
			e.addMountPoint("mp1")
			e.mustCreate(createReq(volA, gib, mpParams))
			return func() error { _, err := e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volA}); return err }
		}},
		{name: "DeleteVolume read-only restore", prepare: func(e *env) func() error {
			e.mustCreate(createReq(volA, 2*gib, nil))
			e.createSnapshot(snapA, volA)
			req := createReq(volB, 2*gib, map[string]string{ParamReadOnly: "true"})
			req.VolumeContentSource = snapSource(snapA)
			e.mustCreate(req)
			return func() error { _, err := e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: volB}); return err }
		}},
		{name: "CreateSnapshot", prepare: func(e *env) func() error {
			e.mustCreate(createReq(volA, 8*gib, nil))
			req := &csi.CreateSnapshotRequest{Name: snapA, SourceVolumeId: volA, Parameters: map[string]string{SnapParamInitialSize: "1Gi"}}
			return func() error { _, err := e.d.CreateSnapshot(e.ctx, req); return err }
		}},
		{name: "DeleteSnapshot", prepare: func(e *env) func() error {
			e.mustCreate(createReq(volA, gib, nil))
			e.createSnapshot(snapA, volA)
			return func() error {
				_, err := e.d.DeleteSnapshot(e.ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapA})
				return err
			}
		}},
		{name: "NodeStageVolume filesystem", prepare: func(e *env) func() error {
			v := e.mustCreate(createReq(volA, gib, nil))
			require.NoError(e.t, e.h.MakeDir(e.ctx, stagePath(volA)))
			req := &csi.NodeStageVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA), VolumeCapability: mountCap("xfs", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER), VolumeContext: v.VolumeContext}
			return func() error { _, err := e.d.NodeStageVolume(e.ctx, req); return err }
		}},
		{name: "NodeStageVolume Device", prepare: func(e *env) func() error {
			v := e.mustCreate(createReq(volA, gib, deviceParams))
			require.NoError(e.t, e.h.MakeDir(e.ctx, stagePath(volA)))
			req := &csi.NodeStageVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA), VolumeCapability: rwo, VolumeContext: v.VolumeContext}
			return func() error { _, err := e.d.NodeStageVolume(e.ctx, req); return err }
		}},
		{name: "NodeStageVolume block", prepare: func(e *env) func() error {
			v := e.mustCreate(createReq(volA, gib, nil))
			require.NoError(e.t, e.h.MakeDir(e.ctx, stagePath(volA)))
			req := &csi.NodeStageVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA), VolumeCapability: blockCap(), VolumeContext: v.VolumeContext}
			return func() error { _, err := e.d.NodeStageVolume(e.ctx, req); return err }
		}},
		{name: "NodePublishVolume filesystem read-only", prepare: func(e *env) func() error {
			v := e.mustCreate(createReq(volA, gib, nil))
			e.stage(v, rwo)
			e.mkParent(targetPath(podA, volA))
			req := &csi.NodePublishVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA), TargetPath: targetPath(podA, volA), VolumeCapability: rwo, VolumeContext: v.VolumeContext, Readonly: true}
			return func() error { _, err := e.d.NodePublishVolume(e.ctx, req); return err }
		}},
		{name: "NodePublishVolume block", prepare: func(e *env) func() error {
			v := e.mustCreate(createReq(volA, gib, nil))
			e.stage(v, blockCap())
			e.mkParent(targetPath(podA, volA))
			req := &csi.NodePublishVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA), TargetPath: targetPath(podA, volA), VolumeCapability: blockCap(), VolumeContext: v.VolumeContext}
			return func() error { _, err := e.d.NodePublishVolume(e.ctx, req); return err }
		}},
		{name: "NodePublishVolume throttled", prepare: func(e *env) func() error {
			_, _ = e.h.AddPod(podA)
			v := e.mustCreate(createReq(volA, gib, throttleParams))
			e.stage(v, rwo)
			e.mkParent(targetPath(podA, volA))
			req := &csi.NodePublishVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA), TargetPath: targetPath(podA, volA), VolumeCapability: rwo, VolumeContext: withPod(v.VolumeContext, podA)}
			return func() error { _, err := e.d.NodePublishVolume(e.ctx, req); return err }
		}},
		{name: "NodePublishVolume inline throttled", prepare: func(e *env) func() error {
			_, _ = e.h.AddPod(podA)
			e.mkParent(targetPath(podA, inl))
			req := ephemeralReq(podA)
			return func() error { _, err := e.d.NodePublishVolume(e.ctx, req); return err }
		}},
		{name: "NodeUnpublishVolume throttled", prepare: func(e *env) func() error {
			published(e, throttleParams)
			req := &csi.NodeUnpublishVolumeRequest{VolumeId: volA, TargetPath: targetPath(podA, volA)}
			return func() error { _, err := e.d.NodeUnpublishVolume(e.ctx, req); return err }
		}},
		{name: "NodeUnpublishVolume inline", prepare: func(e *env) func() error {
			_, _ = e.h.AddPod(podA)
			e.mkParent(targetPath(podA, inl))
			_, err := e.d.NodePublishVolume(e.ctx, ephemeralReq(podA))
			require.NoError(e.t, err)
			req := &csi.NodeUnpublishVolumeRequest{VolumeId: inl, TargetPath: targetPath(podA, inl)}
			return func() error { _, err := e.d.NodeUnpublishVolume(e.ctx, req); return err }
		}},
		{name: "NodeUnstageVolume", prepare: func(e *env) func() error {
			e.stage(e.mustCreate(createReq(volA, gib, nil)), rwo)
			req := &csi.NodeUnstageVolumeRequest{VolumeId: volA, StagingTargetPath: stagePath(volA)}
			return func() error { _, err := e.d.NodeUnstageVolume(e.ctx, req); return err }
		}},
		{name: "ControllerExpandVolume", prepare: func(e *env) func() error {
			e.mustCreate(createReq(volA, gib, nil))
			req := &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: 3*gib + 1}, VolumeCapability: rwo}
			return func() error { _, err := e.d.ControllerExpandVolume(e.ctx, req); return err }
		}},
		{name: "NodeExpandVolume after controller expansion", prepare: func(e *env) func() error {
			published(e, nil)
			_, err := e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volA, CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * gib}})
			require.NoError(e.t, err)
			req := &csi.NodeExpandVolumeRequest{VolumeId: volA, VolumePath: targetPath(podA, volA), StagingTargetPath: stagePath(volA), CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * gib}}
			return func() error { _, err := e.d.NodeExpandVolume(e.ctx, req); return err }
		}},
		{name: "NodeExpandVolume node-only expansion", cfg: func(c *Config) { c.ControllerExpansion = false }, prepare: func(e *env) func() error {
			published(e, nil)
			req := &csi.NodeExpandVolumeRequest{VolumeId: volA, VolumePath: targetPath(podA, volA), CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * gib}, VolumeCapability: rwo}
			return func() error { _, err := e.d.NodeExpandVolume(e.ctx, req); return err }
		}},
	}
}

// TestFaultWalk records the host calls of each RPC, then for every call and
// for both kinds of failure (the call fails before its effect; the call
// takes effect and then reports a failure) injects the fault there, runs the
// RPC, clears the fault and retries until it succeeds — once with the same
// driver, once with a driver restarted in between (a crash). The node must
// then be exactly as after a run without faults: the same LVs with the same
// tags, mounts, files and records, io limits, device signatures, and a
// ledger that charges exactly the live volumes.
func TestFaultWalk(t *testing.T) {
	points, failedFirst := 0, 0
	for _, sc := range walkScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			fresh := func() (*env, func() error) {
				e := newEnv(t, sc.cfg)
				return e, sc.prepare(e)
			}
			e, rpc := fresh()
			e.h.ResetCalls()
			require.NoError(t, rpc())
			calls := e.h.Calls()
			require.NotEmpty(t, calls)
			want := e.snapshot()
			e.checkLedgerMatchesHost()

			seen := map[string]int{}
			for i, call := range calls {
				op := strings.Fields(call)[0]
				seen[op]++
				n := seen[op]
				for _, kind := range []string{"fail", "fail-after-effect"} {
					for _, restart := range []bool{false, true} {
						points++
						e, rpc := fresh()
						if kind == "fail" {
							e.h.FailNth(op, n, nil)
						} else {
							e.h.FailAfterEffect(op, n)
						}
						err := rpc()
						if err != nil {
							// A fault after the effect of a call that failed anyway
							// (a lookup answering "not found") changes nothing.
							failedFirst++
						}
						e.h.ClearFaults()
						if restart {
							e.start()
						}
						for attempt := 0; err != nil && attempt < 5; attempt++ {
							err = rpc()
						}
						where := func() string {
							return call + " (" + kind + ", call " + strconv.Itoa(i) + ", restart " + strconv.FormatBool(restart) + ")"
						}
						require.NoError(t, err, "no convergence after a fault at %s", where())
						got := e.snapshot()
						require.Equal(t, want, got, "state differs after a fault at %s", where())
						e.checkLedgerMatchesHost()
					}
				}
			}
		})
	}
	t.Logf("fault walk: %d injection points, %d of them made the first attempt fail", points, failedFirst)
}
