package csi

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/open-local/open-local/hostexec"
)

// countCalls counts the simulated host's calls by operation name.
func countCalls(calls []string) map[string]int {
	n := map[string]int{}
	for _, c := range calls {
		op, _, _ := strings.Cut(c, " ")
		n[op]++
	}
	return n
}

// TestProvisioningHostCalls pins what CreateVolume + NodeStageVolume +
// NodePublishVolume of a new ext4 LVM volume ask of the host: one lvcreate,
// one mkfs without a signature probe (the LV is new), one mount and one
// bind, and no LVM report (the cached one serves). On a real node each tool
// run is a process start; the bare lvcreate; mkfs; mount sequence is three.
func TestProvisioningHostCalls(t *testing.T) {
	e := newEnv(t, nil)
	params := map[string]string{ParamVolumeType: "LVM", ParamVGName: testPool, ParamFSType: "ext4"}
	e.h.ResetCalls()
	v := e.mustCreate(createReq("pvc-calls", 1<<30, params))
	create := countCalls(e.h.Calls())
	assert.Equal(t, map[string]int{"CreateLV": 1, "ReadFile": 1}, create, "CreateVolume: %q", e.h.Calls())

	e.h.ResetCalls()
	e.stage(v, mountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER))
	stage := countCalls(e.h.Calls())
	assert.Zero(t, stage["LVMReport"], "NodeStageVolume runs no LVM report: %q", e.h.Calls())
	assert.Zero(t, stage["Signatures"], "a new LV is not probed: %q", e.h.Calls())
	assert.Zero(t, stage["Mkfs"], "%q", e.h.Calls())
	assert.Equal(t, 1, stage["FormatNewLV"], "%q", e.h.Calls())
	assert.Equal(t, 1, stage["Mount"])

	e.h.ResetCalls()
	e.publish(v, mountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER), podA, nil)
	publish := countCalls(e.h.Calls())
	assert.Zero(t, publish["LVMReport"], "NodePublishVolume runs no LVM report: %q", e.h.Calls())
	assert.Equal(t, 1, publish["BindMount"])
}

// TestCachedReportFallsBack: when the host contradicts the cached LVM
// report, the driver reads a fresh one and answers from it.
func TestCachedReportFallsBack(t *testing.T) {
	params := map[string]string{ParamVolumeType: "LVM", ParamVGName: testPool}

	t.Run("LV removed behind the driver's back", func(t *testing.T) {
		e := newEnv(t, nil)
		v := e.mustCreate(createReq("pvc-gone", 1<<30, params))
		require.NoError(t, e.h.RemoveLV(e.ctx, testPool, v.VolumeId)) // not through the driver
		sp := stagePath(v.VolumeId)
		require.NoError(t, e.h.MakeDir(e.ctx, sp))
		_, err := e.d.NodeStageVolume(e.ctx, &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: sp, VolumeCapability: rwo, VolumeContext: v.VolumeContext})
		assert.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	})

	t.Run("name taken behind the driver's back", func(t *testing.T) {
		e := newEnv(t, nil)
		// Load the cache, then create an owned LV of the volume's name directly.
		_, err := e.d.GetCapacity(e.ctx, &csi.GetCapacityRequest{})
		require.NoError(t, err)
		id := volumeIDFor("pvc-raced", "csi-")
		require.NoError(t, e.h.CreateLV(e.ctx, hostexec.LVSpec{VG: testPool, Name: id, SizeBytes: 1 << 30, Tags: []string{tagOwner, tagKindVolume}}))
		e.h.ResetCalls()
		v := e.mustCreate(createReq("pvc-raced", 1<<30, params))
		assert.Equal(t, id, v.VolumeId, "the existing compatible LV is the answer")
		assert.Equal(t, 1, countCalls(e.h.Calls())["CreateLV"], "one lvcreate, refused; then the fresh report finds the LV: %q", e.h.Calls())
		lvs := 0
		st, err := e.h.LVMReport(e.ctx)
		require.NoError(t, err)
		for _, vg := range st.VGs {
			for _, lv := range vg.LVs {
				if lv.Name == id {
					lvs++
				}
			}
		}
		assert.Equal(t, 1, lvs)
	})

	t.Run("cache off", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.LVMCacheTTL = -1 })
		v := e.mustCreate(createReq("pvc-nocache", 1<<30, params))
		e.h.ResetCalls()
		e.stage(v, rwo)
		assert.Equal(t, 1, countCalls(e.h.Calls())["LVMReport"], "with the cache off every call reads a report: %q", e.h.Calls())
	})
}

// TestOnlyNewLVsSkipTheProbe: a volume is formatted without a probe only on
// its first stage after this process created it. A restage, a volume staged
// after a restart and a restored volume are probed, and an existing
// filesystem is mounted, never formatted again.
func TestOnlyNewLVsSkipTheProbe(t *testing.T) {
	e := newEnv(t, nil)
	params := map[string]string{ParamVolumeType: "LVM", ParamVGName: testPool, ParamFSType: "ext4"}
	c := mountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	v := e.mustCreate(createReq("pvc-restage", 1<<30, params))
	sp := e.stage(v, c)
	_, err := e.d.NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: sp})
	require.NoError(t, err)

	e.h.ResetCalls()
	e.stage(v, c)
	n := countCalls(e.h.Calls())
	assert.Zero(t, n["FormatNewLV"], "a restage never formats: %q", e.h.Calls())
	assert.Equal(t, 1, n["Signatures"], "the restage probes and finds ext4: %q", e.h.Calls())
	assert.Equal(t, 1, n["Mount"])

	w := e.mustCreate(createReq("pvc-after-restart", 1<<30, params))
	e.start() // a new driver process on the same host
	e.h.ResetCalls()
	e.stage(w, c)
	n = countCalls(e.h.Calls())
	assert.Zero(t, n["FormatNewLV"], "after a restart the driver does not know the LV is new: %q", e.h.Calls())
	assert.Equal(t, 1, n["Mkfs"], "%q", e.h.Calls())

	x := e.mustCreate(createReq("pvc-published-first", 1<<30, map[string]string{ParamVolumeType: "LVM", ParamVGName: testPool}))
	e.publish(x, blockCap(), podA, nil)
	tp := targetPath(podA, x.VolumeId)
	_, err = e.d.NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: x.VolumeId, TargetPath: tp})
	require.NoError(t, err)
	e.h.ResetCalls()
	e.stage(x, c)
	n = countCalls(e.h.Calls())
	assert.Zero(t, n["FormatNewLV"], "a volume published before its stage is not new any more: %q", e.h.Calls())
}
