package system

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/volumereq"
)

// extenderNodes is the size of the scenario clusters.
const extenderNodes = 4

// TestExtenderMode runs the scenarios on kube-scheduler with the
// Open-Local extender, on one system shared by all of them (each scenario
// in its own namespace, cleaned up after it). It runs in parallel with
// TestPluginMode (mostly it waits for the orphan grace period), after the
// timing measurement, which runs alone.
func TestExtenderMode(t *testing.T) {
	t.Parallel()
	s := startSystem(t, modeExtender, extenderNodes)
	// Planted first: the agent's grace period runs while the other
	// scenarios do.
	orphan := s.plantOrphan(t)
	ignore := map[string]bool{}
	if orphan != nil {
		ignore[orphan.id] = true
	}
	// One claim per pod in extender mode: see testBatch.
	t.Run("StatefulSetBatch", func(t *testing.T) { s.scenario(t); s.testBatch(t, ignore, map[string]string{"data": "30Gi"}) })
	t.Run("UnfitStaysPending", func(t *testing.T) { s.scenario(t); s.testUnfit(t, ignore) })
	t.Run("ExpansionThroughResizer", func(t *testing.T) { s.scenario(t); s.testExpansion(t, ignore) })
	t.Run("SnapshotAndRestore", func(t *testing.T) { s.scenario(t); s.testSnapshot(t, ignore) })
	t.Run("PVCDeletedBeforePV", func(t *testing.T) { s.scenario(t); s.testDeletedBeforePV(t, ignore) })
	t.Run("RestartMidBurst", func(t *testing.T) { s.scenario(t); s.testRestartMidBurst(t, ignore) })
	t.Run("NodeDeletion", func(t *testing.T) { s.scenario(t); s.testNodeDeletion(t, ignore) })
	// Last: it waits out the agent's minimum grace period.
	t.Run("OrphanCollected", func(t *testing.T) { s.scenario(t); s.testOrphanCollected(t, orphan, ignore) })
}

// TestPluginMode runs the batch scenario on open-local-scheduler (the
// framework plugin) instead of kube-scheduler and the extender. The
// extender still runs, unused by scheduling, as an independent observer:
// its cache (built from the same API objects) must show no over-commit.
func TestPluginMode(t *testing.T) {
	t.Parallel()
	s := startSystem(t, modePlugin, extenderNodes)
	t.Run("StatefulSetBatch", func(t *testing.T) {
		s.scenario(t)
		s.testBatch(t, nil, map[string]string{"data": "15Gi", "logs": "15Gi"})
	})
}

// testBatch: 12 pods on 4 nodes of one 100Gi VG, with claims of the given
// sizes summing to 30Gi: exactly three pods fit per node, so every
// placement must be right.
//
// Extender mode gets one claim per pod. kube-scheduler writes a claim's
// selected-node annotation in its asynchronous binding cycle, so a burst can
// put two pods on a node with room for one before the extender sees the
// first annotation. With one claim the loser's provisioning is refused and
// the claim goes back to the scheduler, which places it elsewhere. With two
// claims, each pod can get one claim provisioned and the other refused, and
// the bound volumes then pin both pods to the full node: the known limit of
// extender mode (docs/scheduling.md), which plugin mode removes by booking
// in the scheduling cycle — and plugin mode runs this batch with two claims.
func (s *system) testBatch(t *testing.T, ignore map[string]bool, sizes map[string]string) {
	ctx := context.Background()
	ns := s.newNamespace(t, "batch")
	const pods = 12
	start := time.Now()
	names := s.createStatefulSetLike(t, ns, "web", pods, sizes, nil)
	placed := s.waitScheduled(t, ns, names, 4*time.Minute)
	t.Logf("%d pods with %d WaitForFirstConsumer claims scheduled and provisioned in %v (%s mode)",
		pods, len(sizes)*pods, time.Since(start).Round(time.Millisecond), s.mode)

	perNode := map[string]int64{}
	for pod, node := range placed {
		n := s.nodeByName(node)
		require.NotNil(t, n, "pod %s on unknown node %s", pod, node)
		vols, err := nodeVolumes(ctx, n)
		require.NoError(t, err)
		for tmpl, size := range sizes {
			pv, err := s.boundPV(ctx, ns, tmpl+"-"+pod)
			require.NoError(t, err)
			assert.Equal(t, node, pvNode(pv), "PV %s of pod %s: node affinity", pv.Name, pod)
			got, ok := vols[pv.Spec.CSI.VolumeHandle]
			assert.True(t, ok, "LV %s of pod %s not listed by %s's driver", pv.Spec.CSI.VolumeHandle, pod, node)
			want := resource.MustParse(size)
			assert.GreaterOrEqual(t, got, want.Value())
			perNode[node] += got
		}
	}
	for node, bytes := range perNode {
		assert.LessOrEqual(t, bytes, int64(vgSize), "volumes on %s exceed its VG", node)
	}
	s.requireConsistent(t, ignore)
}

// testUnfit: a claim larger than any VG keeps its pod Pending, with a
// FailedScheduling event that gives the extender's reason.
func (s *system) testUnfit(t *testing.T, ignore map[string]bool) {
	ctx := context.Background()
	ns := s.newNamespace(t, "unfit")
	_, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newPVC(ns, "huge", "150Gi", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = s.kube.CoreV1().Pods(ns).Create(ctx, s.newPod(ns, "huge", []string{"huge"}, nil), metav1.CreateOptions{})
	require.NoError(t, err)
	var msg string
	waitFor(t, "a FailedScheduling event naming the storage reason", time.Minute, func(ctx context.Context) (bool, error) {
		for _, e := range s.podEvents(ctx, ns, "huge", "FailedScheduling") {
			msg = e.Message
			if strings.Contains(e.Message, core.ReasonInsufficientLVM) {
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("FailedScheduling: %s", msg)
	assert.Contains(t, msg, fmt.Sprintf("0/%d nodes are available", len(s.liveNodes())))
	// Still Pending a while later: no node, no selected node, no PV.
	time.Sleep(3 * time.Second)
	pod, err := s.kube.CoreV1().Pods(ns).Get(ctx, "huge", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Empty(t, pod.Spec.NodeName)
	assert.Equal(t, corev1.PodPending, pod.Status.Phase)
	pvc, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "huge", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, pvc.Annotations, selectedNodeAnnotation)
	assert.Equal(t, corev1.ClaimPending, pvc.Status.Phase)
	s.requireConsistent(t, ignore)
}

// kubeletPaths are where kubelet would stage and publish a volume.
func kubeletPaths(pv string, pod types.UID) (staging, target string) {
	return "/var/lib/kubelet/plugins/kubernetes.io/csi/" + driverName + "/" + pv + "/globalmount",
		"/var/lib/kubelet/pods/" + string(pod) + "/volumes/kubernetes.io~csi/" + pv + "/mount"
}

var ext4Mount = &csipb.VolumeCapability{
	AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{FsType: "ext4"}},
	AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// testExpansion: the PVC grows through external-resizer (node expansion
// only, so it only updates the PV and asks for the node step); the test
// then does kubelet's part on the volume's node — stage, publish,
// NodeExpandVolume — and the LV, the filesystem, the agent's report and the
// extender's charge all show the new size. The volume is on another node
// than the one the resizer talks to.
func (s *system) testExpansion(t *testing.T, ignore map[string]bool) {
	ctx := context.Background()
	ns := s.newNamespace(t, "expand")
	target := s.nodes[len(s.nodes)-2]
	require.NotEqual(t, s.nodes[0].name, target.name)
	_, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newPVC(ns, "grow", "10Gi", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = s.kube.CoreV1().Pods(ns).Create(ctx, s.newPod(ns, "grow", []string{"grow"}, map[string]string{topologyKey: target.name}), metav1.CreateOptions{})
	require.NoError(t, err)
	s.waitScheduled(t, ns, []string{"grow"}, 2*time.Minute)
	pod, err := s.kube.CoreV1().Pods(ns).Get(ctx, "grow", metav1.GetOptions{})
	require.NoError(t, err)
	pv, err := s.boundPV(ctx, ns, "grow")
	require.NoError(t, err)
	id := pv.Spec.CSI.VolumeHandle

	// kubelet: stage and publish for the pod.
	staging, tpath := kubeletPaths(pv.Name, pod.UID)
	podCtx := map[string]string{
		"csi.storage.k8s.io/pod.name": pod.Name, "csi.storage.k8s.io/pod.namespace": ns,
		"csi.storage.k8s.io/pod.uid": string(pod.UID), "csi.storage.k8s.io/serviceAccount.name": "default",
	}
	pubCtx := map[string]string{}
	for k, v := range pv.Spec.CSI.VolumeAttributes {
		pubCtx[k] = v
	}
	for k, v := range podCtx {
		pubCtx[k] = v
	}
	_, err = target.node.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: ext4Mount, VolumeContext: pv.Spec.CSI.VolumeAttributes})
	require.NoError(t, err)
	_, err = target.node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: tpath, VolumeCapability: ext4Mount, VolumeContext: pubCtx})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = target.node.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: tpath})
		_, _ = target.node.NodeUnstageVolume(context.Background(), &csipb.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	})

	start := time.Now()
	patch := []byte(`{"spec":{"resources":{"requests":{"storage":"15Gi"}}}}`)
	_, err = s.kube.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "grow", types.MergePatchType, patch, metav1.PatchOptions{})
	require.NoError(t, err)
	want := resource.MustParse("15Gi")
	waitFor(t, "the resizer to grow the PV and ask for node expansion", time.Minute, func(ctx context.Context) (bool, error) {
		pv, err := s.kube.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pvc, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "grow", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		size := pv.Spec.Capacity[corev1.ResourceStorage]
		return size.Cmp(want) == 0 && hasCondition(pvc, corev1.PersistentVolumeClaimFileSystemResizePending), nil
	})
	t.Logf("resizer: PV at 15Gi, FileSystemResizePending after %v", time.Since(start).Round(time.Millisecond))

	// kubelet: NodeExpandVolume on the volume's node, then the PVC status.
	r, err := target.node.NodeExpandVolume(ctx, &csipb.NodeExpandVolumeRequest{
		VolumeId: id, VolumePath: tpath, StagingTargetPath: staging, VolumeCapability: ext4Mount,
		CapacityRange: &csipb.CapacityRange{RequiredBytes: want.Value()},
	})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, r.GetCapacityBytes(), want.Value())
	pvc, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "grow", metav1.GetOptions{})
	require.NoError(t, err)
	pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
	var conds []corev1.PersistentVolumeClaimCondition
	for _, c := range pvc.Status.Conditions {
		if c.Type != corev1.PersistentVolumeClaimFileSystemResizePending && c.Type != corev1.PersistentVolumeClaimResizing {
			conds = append(conds, c)
		}
	}
	pvc.Status.Conditions = conds
	delete(pvc.Status.AllocatedResourceStatuses, corev1.ResourceStorage)
	_, err = s.kube.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
	require.NoError(t, err)

	vols, err := nodeVolumes(ctx, target)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, vols[id], want.Value(), "the LV after expansion")
	stats, err := target.node.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: tpath, StagingTargetPath: staging})
	require.NoError(t, err)
	var fsTotal int64
	for _, u := range stats.GetUsage() {
		if u.GetUnit() == csipb.VolumeUsage_BYTES {
			fsTotal = u.GetTotal()
		}
	}
	assert.Greater(t, fsTotal, int64(10<<30), "the filesystem grew past the old size")
	t.Logf("expansion 10Gi → 15Gi done in %v (LV %d bytes, filesystem %d bytes)", time.Since(start).Round(time.Millisecond), vols[id], fsTotal)
	claim := string(volumereq.ClaimForPVC(ns, "grow"))
	waitFor(t, "the extender charging the grown size", 30*time.Second, func(ctx context.Context) (bool, error) {
		v, err := s.cacheView(ctx)
		if err != nil {
			return false, nil
		}
		for _, nv := range v.Nodes {
			for _, c := range nv.Claims {
				if c.Claim == claim {
					return nv.Name == target.name && c.Bytes >= want.Value(), nil
				}
			}
		}
		return false, nil
	})
	s.requireConsistent(t, ignore)
}

func hasCondition(pvc *corev1.PersistentVolumeClaim, typ corev1.PersistentVolumeClaimConditionType) bool {
	for _, c := range pvc.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// testSnapshot: a VolumeSnapshot becomes ReadyToUse through the
// snapshot-controller (distributed) and the source node's csi-snapshotter;
// the snapshot LV is on the source node only, and a PVC restored from it is
// provisioned on that node.
func (s *system) testSnapshot(t *testing.T, ignore map[string]bool) {
	ctx := context.Background()
	ns := s.newNamespace(t, "snap")
	_, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newPVC(ns, "source", "5Gi", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = s.kube.CoreV1().Pods(ns).Create(ctx, s.newPod(ns, "writer", []string{"source"}, nil), metav1.CreateOptions{})
	require.NoError(t, err)
	node := s.waitScheduled(t, ns, []string{"writer"}, 2*time.Minute)["writer"]
	src, err := s.boundPV(ctx, ns, "source")
	require.NoError(t, err)

	start := time.Now()
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": "snap", "namespace": ns},
		"spec": map[string]any{
			"volumeSnapshotClassName": snapshotClass,
			"source":                  map[string]any{"persistentVolumeClaimName": "source"},
		},
	}}
	_, err = s.dyn.Resource(snapshotGVR).Namespace(ns).Create(ctx, vs, metav1.CreateOptions{})
	require.NoError(t, err)
	var contentName string
	waitFor(t, "the VolumeSnapshot ReadyToUse", 2*time.Minute, func(ctx context.Context) (bool, error) {
		got, err := s.dyn.Resource(snapshotGVR).Namespace(ns).Get(ctx, "snap", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ready, _, _ := unstructured.NestedBool(got.Object, "status", "readyToUse")
		contentName, _, _ = unstructured.NestedString(got.Object, "status", "boundVolumeSnapshotContentName")
		return ready && contentName != "", nil
	})
	t.Logf("VolumeSnapshot ready in %v", time.Since(start).Round(time.Millisecond))
	content, err := s.dyn.Resource(snapshotContentGVR).Get(ctx, contentName, metav1.GetOptions{})
	require.NoError(t, err)
	handle, _, _ := unstructured.NestedString(content.Object, "status", "snapshotHandle")
	require.NotEmpty(t, handle)
	for _, n := range s.liveNodes() {
		snaps, err := nodeSnapshots(ctx, n)
		require.NoError(t, err)
		source, ok := snaps[handle]
		if n.name == node {
			assert.True(t, ok, "snapshot %s not on the source node %s", handle, node)
			assert.Equal(t, src.Spec.CSI.VolumeHandle, source)
		} else {
			assert.False(t, ok, "snapshot %s also on %s", handle, n.name)
		}
	}

	group := "snapshot.storage.k8s.io"
	_, err = s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx,
		newPVC(ns, "restored", "5Gi", &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "snap"}), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = s.kube.CoreV1().Pods(ns).Create(ctx, s.newPod(ns, "reader", []string{"restored"}, nil), metav1.CreateOptions{})
	require.NoError(t, err)
	restoredOn := s.waitScheduled(t, ns, []string{"reader"}, 2*time.Minute)["reader"]
	assert.Equal(t, node, restoredOn, "the restore's pod is placed on the snapshot's node")
	restored, err := s.boundPV(ctx, ns, "restored")
	require.NoError(t, err)
	assert.Equal(t, node, pvNode(restored))
	vols, err := nodeVolumes(ctx, s.nodeByName(node))
	require.NoError(t, err)
	assert.Contains(t, vols, restored.Spec.CSI.VolumeHandle)
	s.requireConsistent(t, ignore)
}

// testDeletedBeforePV: claims deleted (with their pods) the moment the
// scheduler selects a node, while the node's provisioner may be in
// CreateVolume, leave no PV and no LV behind.
func (s *system) testDeletedBeforePV(t *testing.T, ignore map[string]bool) {
	ctx := context.Background()
	ns := s.newNamespace(t, "early")
	const n = 4
	var beforePV int
	for i := range n {
		name := fmt.Sprintf("early-%d", i)
		_, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newPVC(ns, name, "3Gi", nil), metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = s.kube.CoreV1().Pods(ns).Create(ctx, s.newPod(ns, name, []string{name}, nil), metav1.CreateOptions{})
		require.NoError(t, err)
		var volumeName string
		waitFor(t, name+"'s selected node", time.Minute, func(ctx context.Context) (bool, error) {
			pvc, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			volumeName = pvc.Spec.VolumeName
			return pvc.Annotations[selectedNodeAnnotation] != "", nil
		})
		if volumeName == "" {
			beforePV++
		}
		require.NoError(t, s.forceDeletePods(ctx, ns, name))
		require.NoError(t, s.kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{}))
	}
	t.Logf("%d of %d claims deleted before their PV was bound", beforePV, n)
	waitFor(t, "no PV of the deleted claims", 2*time.Minute, func(ctx context.Context) (bool, error) {
		pvs, err := s.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, pv := range pvs.Items {
			if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns {
				return false, nil
			}
		}
		return true, nil
	})
	// No PV: then no LV either (consistent lists every LV without a PV).
	s.requireConsistent(t, ignore)
}

// plantedOrphan is an LV made the way external-provisioner makes one
// (CreateVolume with --extra-create-metadata), for a claim whose PV was
// never created: what a provisioner that crashed after CreateVolume, while
// the claim was deleted, leaves behind.
type plantedOrphan struct {
	node    *simNode
	id      string
	planted time.Time
}

func (s *system) plantOrphan(t *testing.T) *plantedOrphan {
	t.Helper()
	if !s.simnodeFlags["orphan-gc"] {
		return nil
	}
	n := s.nodes[1]
	name := "local-" + uuid.NewString()
	r, err := n.ctrl.CreateVolume(context.Background(), &csipb.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csipb.CapacityRange{RequiredBytes: 1 << 30},
		VolumeCapabilities: []*csipb.VolumeCapability{ext4Mount},
		Parameters: map[string]string{
			"volumeType":                       "LVM",
			"csi.storage.k8s.io/fstype":        "ext4",
			"csi.storage.k8s.io/pvc/name":      "never-bound",
			"csi.storage.k8s.io/pvc/namespace": "early",
			"csi.storage.k8s.io/pv/name":       name,
			selectedNodeAnnotation:             n.name,
		},
		AccessibilityRequirements: &csipb.TopologyRequirement{
			Requisite: []*csipb.Topology{{Segments: map[string]string{topologyKey: n.name}}},
			Preferred: []*csipb.Topology{{Segments: map[string]string{topologyKey: n.name}}},
		},
	})
	require.NoError(t, err)
	t.Logf("planted orphan LV %s on %s (no PV, claim early/never-bound)", r.GetVolume().GetVolumeId(), n.name)
	return &plantedOrphan{node: n, id: r.GetVolume().GetVolumeId(), planted: time.Now()}
}

// testOrphanCollected: the agent removes the planted orphan once it is
// older than the grace period, and counts it.
func (s *system) testOrphanCollected(t *testing.T, o *plantedOrphan, ignore map[string]bool) {
	if o == nil {
		skipOrFail(t, "open-local simnode has no --orphan-gc flag: the agent's orphan collection is not in this tree")
	}
	deadline := time.Until(o.planted.Add(orphanGrace)) + 90*time.Second
	t.Logf("waiting up to %v for the agent on %s to remove %s (grace %v)", deadline.Round(time.Second), o.node.name, o.id, orphanGrace)
	waitFor(t, "the orphan LV removed by the agent", deadline, func(ctx context.Context) (bool, error) {
		vols, err := nodeVolumes(ctx, o.node)
		if err != nil {
			return false, err
		}
		_, still := vols[o.id]
		return !still, nil
	})
	t.Logf("orphan removed %v after it was planted", time.Since(o.planted).Round(time.Second))
	waitFor(t, "open_local_agent_orphan_volumes_removed_total counting it", 30*time.Second, func(ctx context.Context) (bool, error) {
		// The node's simnode never restarts: its counter started at 0.
		v, err := metricValue(ctx, o.node.metrics, "open_local_agent_orphan_volumes_removed_total")
		return err == nil && v >= 1, nil
	})
	delete(ignore, o.id)
	s.requireConsistent(t, ignore)
}

// testRestartMidBurst: the extender, then the controller, is restarted
// while 20 pods are being scheduled; every pod still lands, nothing is
// over-committed or provisioned twice, and the NodeLocalStorages are the
// same objects as before.
func (s *system) testRestartMidBurst(t *testing.T, ignore map[string]bool) {
	ctx := context.Background()
	ns := s.newNamespace(t, "burst")
	nlsBefore := s.nlsUIDs(t)
	const pods = 20
	var created atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- parallel(pods, 4, func(i int) error {
			name := fmt.Sprintf("burst-%d", i)
			if _, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newPVC(ns, name, "5Gi", nil), metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := s.kube.CoreV1().Pods(ns).Create(ctx, s.newPod(ns, name, []string{name}, nil), metav1.CreateOptions{})
			created.Add(1)
			return err
		})
	}()
	scheduled := func() int {
		list, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return -1
		}
		n := 0
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				n++
			}
		}
		return n
	}
	waitFor(t, "the burst under way", time.Minute, func(context.Context) (bool, error) { return scheduled() >= 2, nil })
	t.Logf("restarting the extender: %d pods created, %d scheduled", created.Load(), scheduled())
	s.restart(t, s.extender)
	waitFor(t, "the restarted extender ready", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := httpGet(ctx, s.extenderURL+"/readyz")
		return err == nil, nil
	})
	t.Logf("restarting the controller: %d pods created, %d scheduled", created.Load(), scheduled())
	s.restart(t, s.controller)
	require.NoError(t, <-done)
	names := make([]string, pods)
	for i := range names {
		names[i] = fmt.Sprintf("burst-%d", i)
	}
	s.waitScheduled(t, ns, names, 4*time.Minute)
	for _, name := range names {
		_, err := s.boundPV(ctx, ns, name)
		require.NoError(t, err)
	}
	s.requireConsistent(t, ignore)
	assert.Equal(t, nlsBefore, s.nlsUIDs(t), "NodeLocalStorages (name → UID) after the restarts")
}

func (s *system) nlsUIDs(t testing.TB) map[string]types.UID {
	t.Helper()
	list, err := s.ol.CsiV1alpha1().NodeLocalStorages().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string]types.UID{}
	for _, n := range list.Items {
		out[n.Name] = n.UID
	}
	return out
}

// testNodeDeletion: a node holding volumes goes away (its processes stop,
// its Node object is deleted): the controller deletes its NodeLocalStorage,
// the extender's cache forgets it, and scheduling carries on elsewhere.
func (s *system) testNodeDeletion(t *testing.T, ignore map[string]bool) {
	ctx := context.Background()
	ns := s.newNamespace(t, "nodedel")
	victim := s.nodes[len(s.nodes)-1]
	names := s.createStatefulSetLike(t, ns, "pinned", 2, map[string]string{"data": "5Gi"}, map[string]string{topologyKey: victim.name})
	s.waitScheduled(t, ns, names, 2*time.Minute)
	for _, p := range names {
		pv, err := s.boundPV(ctx, ns, "data-"+p)
		require.NoError(t, err)
		require.Equal(t, victim.name, pvNode(pv))
	}
	managedBefore, err := metricValue(ctx, s.metricsAddr(s.controller), "open_local_controller_managed_nodelocalstorages")
	require.NoError(t, err)

	for _, p := range victim.procs {
		p.proc.Stop()
	}
	victim.gone = true
	start := time.Now()
	require.NoError(t, s.kube.CoreV1().Nodes().Delete(ctx, victim.name, metav1.DeleteOptions{}))
	waitFor(t, "the controller deleting "+victim.name+"'s NodeLocalStorage", time.Minute, func(ctx context.Context) (bool, error) {
		_, err := s.ol.CsiV1alpha1().NodeLocalStorages().Get(ctx, victim.name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	t.Logf("NodeLocalStorage of the deleted node gone after %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, "the extender forgetting "+victim.name, 30*time.Second, func(ctx context.Context) (bool, error) {
		v, err := s.cacheView(ctx)
		if err != nil {
			return false, nil
		}
		for _, nv := range v.Nodes {
			if nv.Name == victim.name {
				return false, nil
			}
		}
		_, err = httpGet(ctx, s.extenderURL+"/cache?nodeName="+victim.name)
		return err != nil, nil
	})
	waitFor(t, "the controller's managed count dropping", 30*time.Second, func(ctx context.Context) (bool, error) {
		v, err := metricValue(ctx, s.metricsAddr(s.controller), "open_local_controller_managed_nodelocalstorages")
		return err == nil && v == managedBefore-1, nil
	})

	// The rest of the cluster still schedules.
	more := s.createStatefulSetLike(t, ns, "after", 3, map[string]string{"data": "5Gi"}, nil)
	for pod, node := range s.waitScheduled(t, ns, more, 2*time.Minute) {
		assert.NotEqual(t, victim.name, node, "pod %s", pod)
	}
	s.requireConsistent(t, ignore)
}

// metricsAddr is the --metrics-address a component was started with.
func (s *system) metricsAddr(c *component) string {
	for _, a := range c.args {
		if v, ok := strings.CutPrefix(a, "--metrics-address="); ok {
			return v
		}
	}
	return ""
}
