package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clienttesting "k8s.io/client-go/testing"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
)

const cfgName = DefaultInitConfigName

var global = vgConfig("open-local-pool-[0-9]+", "open-local-pool-0", "/dev/vdb")

func readyCondition(st v1alpha1.NodeLocalStorageInitConfigStatus) *metav1.Condition {
	return meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
}

func TestCreatesOneNodeLocalStoragePerNode(t *testing.T) {
	h := newHarness(t, Options{},
		newNode("node-1", nil), newNode("node-2", nil), newNode("node-3", nil),
		newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))

	for _, n := range []string{"node-1", "node-2", "node-3"} {
		nls := h.waitNLS(n, "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
		assert.Equal(t, n, nls.Spec.NodeName)
		assert.Equal(t, global.ListConfig, nls.Spec.ListConfig)
		assert.Equal(t, global.ResourceToBeInited, nls.Spec.ResourceToBeInited)
		assert.Equal(t, v1alpha1.ManagedByController, nls.Labels[v1alpha1.LabelManagedBy])
		assert.Equal(t, cfgName, nls.Annotations[v1alpha1.AnnotationInitConfig])
		assert.Equal(t, "1", nls.Annotations[v1alpha1.AnnotationInitConfigGeneration])
		assert.Equal(t, hashOf(nls.Spec), nls.Annotations[v1alpha1.AnnotationDerivedSpecHash])
		h.eventually("Created event", func() (bool, string) {
			return len(h.events.find("NodeLocalStorage", n, EventCreated)) == 1, ""
		})
	}
	st := h.waitStatus(cfgName, "all synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.SyncedNodes == 3 && readyCondition(st) != nil && readyCondition(st).Status == metav1.ConditionTrue
	})
	assert.Equal(t, int32(3), st.SelectedNodes)
	assert.Zero(t, st.FailedNodeCount)
	assert.Empty(t, st.FailedNodes)
	assert.Equal(t, int64(1), st.ObservedGeneration)
	valid := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionConfigValid)
	require.NotNil(t, valid)
	assert.Equal(t, metav1.ConditionTrue, valid.Status)
	h.eventually("Synced event", func() (bool, string) {
		return len(h.events.find("NodeLocalStorageInitConfig", cfgName, EventSynced)) > 0, ""
	})

	// Every NodeLocalStorage also says its own config is valid.
	nls := h.waitNLS("node-1", "ConfigValid condition", func(n *v1alpha1.NodeLocalStorage) bool {
		return meta.IsStatusConditionTrue(n.Status.Conditions, v1alpha1.ConditionConfigValid)
	})
	assert.Equal(t, v1alpha1.ReasonValid, meta.FindStatusCondition(nls.Status.Conditions, v1alpha1.ConditionConfigValid).Reason)
	h.waitCounter("open_local_controller_managed_nodelocalstorages", nil, 3)
	h.waitCounter("open_local_controller_reconcile_total", map[string]string{"kind": kindNode, "result": resultCreated}, 3)
}

func TestLastMatchingNodesConfigWinsAndReplaces(t *testing.T) {
	zoneA := vgConfig("zone-a-[0-9]+", "zone-a-0", "/dev/vdc")
	nvme := v1alpha1.StorageConfig{
		// No listConfig: replacing, not merging, leaves it empty.
		ResourceToBeInited: v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: "nvme-0", Devices: []string{"/dev/nvme0n1"}}}},
		SpdkConfig:         v1alpha1.SpdkConfig{DeviceType: "nvme"},
	}
	spec := v1alpha1.NodeLocalStorageInitConfigSpec{
		GlobalConfig: global,
		NodesConfig: []v1alpha1.NodeConfig{
			{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}, StorageConfig: zoneA},
			{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "disk", Operator: metav1.LabelSelectorOpIn, Values: []string{"nvme"}}}}, StorageConfig: nvme},
			// A nil selector matches no node.
			{Selector: nil, StorageConfig: vgConfig("never", "never", "/dev/never")},
		},
	}
	h := newHarness(t, Options{},
		newNode("plain", nil),
		newNode("zone-a", map[string]string{"zone": "a"}),
		newNode("both", map[string]string{"zone": "a", "disk": "nvme"}),
		newInitConfig(cfgName, spec))

	plain := h.waitNLS("plain", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	assert.Equal(t, global.ResourceToBeInited, plain.Spec.ResourceToBeInited)
	za := h.waitNLS("zone-a", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	assert.Equal(t, zoneA.ListConfig, za.Spec.ListConfig)
	assert.Equal(t, zoneA.ResourceToBeInited, za.Spec.ResourceToBeInited)
	both := h.waitNLS("both", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	assert.Equal(t, nvme.ResourceToBeInited, both.Spec.ResourceToBeInited)
	assert.Equal(t, "nvme", both.Spec.SpdkConfig.DeviceType)
	assert.Equal(t, v1alpha1.ListConfig{}, both.Spec.ListConfig, "the matching entry replaces the global config as a whole")

	// Relabelling a node re-derives its spec.
	h.updateNode("zone-a", func(n *corev1.Node) { n.Labels["disk"] = "nvme" })
	h.waitNLS("zone-a", "re-derived from the nvme entry", func(n *v1alpha1.NodeLocalStorage) bool {
		return n.Spec.SpdkConfig.DeviceType == "nvme"
	})
}

func TestNodeAddAndDelete(t *testing.T) {
	orphan := &v1alpha1.NodeLocalStorage{ObjectMeta: metav1.ObjectMeta{Name: "gone-by-hand", UID: "u1"},
		Spec: v1alpha1.NodeLocalStorageSpec{NodeName: "gone-by-hand"}}
	h := newHarness(t, Options{},
		newNode("node-1", nil), orphan,
		newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	h.waitNLS("node-1", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })

	_, err := h.kube.CoreV1().Nodes().Create(context.Background(), newNode("node-2", nil), metav1.CreateOptions{})
	require.NoError(t, err)
	h.waitNLS("node-2", "created on node add", func(*v1alpha1.NodeLocalStorage) bool { return true })
	h.waitStatus(cfgName, "two synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool { return st.SyncedNodes == 2 })

	require.NoError(t, h.kube.CoreV1().Nodes().Delete(context.Background(), "node-1", metav1.DeleteOptions{}))
	h.waitNoNLS("node-1")
	h.eventually("Deleted event", func() (bool, string) {
		return len(h.events.find("NodeLocalStorage", "node-1", EventDeleted)) > 0, ""
	})
	h.waitStatus(cfgName, "one selected", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.SelectedNodes == 1 && st.SyncedNodes == 1
	})

	// A NodeLocalStorage the controller did not create stays, announced once.
	h.eventually("orphan announced", func() (bool, string) {
		return len(h.events.find("NodeLocalStorage", "gone-by-hand", EventOrphanRetained)) == 1, ""
	})
	_, err = h.getNLS("gone-by-hand")
	require.NoError(t, err)
}

func TestDeletedNodeLocalStorageIsRecreated(t *testing.T) {
	h := newHarness(t, Options{}, newNode("node-1", nil),
		newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	first := h.waitNLS("node-1", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	require.NoError(t, h.ol.CsiV1alpha1().NodeLocalStorages().Delete(context.Background(), "node-1", metav1.DeleteOptions{}))
	h.waitNLS("node-1", "created again", func(n *v1alpha1.NodeLocalStorage) bool { return n.UID != first.UID })
}

func TestNodeSelectorLimitsManagedNodes(t *testing.T) {
	sel := labels.SelectorFromSet(labels.Set{"open-local": "enabled"})
	foreign := &v1alpha1.NodeLocalStorage{ObjectMeta: metav1.ObjectMeta{Name: "other", UID: "u-other"},
		Spec: v1alpha1.NodeLocalStorageSpec{NodeName: "other", ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"mine"}}}}}
	h := newHarness(t, Options{NodeSelector: sel},
		newNode("storage", map[string]string{"open-local": "enabled"}),
		newNode("compute", nil),
		newNode("other", nil), foreign,
		newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))

	h.waitNLS("storage", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	h.waitStatus(cfgName, "one selected and synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.SelectedNodes == 1 && st.SyncedNodes == 1
	})
	_, err := h.getNLS("compute")
	assert.True(t, apierrors.IsNotFound(err), "an unselected node gets no NodeLocalStorage")
	other, err := h.getNLS("other")
	require.NoError(t, err)
	assert.Equal(t, foreign.Spec, other.Spec, "an unselected node's NodeLocalStorage is not touched")

	// A node that stops matching loses the NodeLocalStorage the controller created.
	h.updateNode("storage", func(n *corev1.Node) { delete(n.Labels, "open-local") })
	h.waitNoNLS("storage")
	h.eventually("Deleted event on the node", func() (bool, string) {
		return len(h.events.find("Node", "storage", EventDeleted)) > 0, ""
	})

	// And gets one again when it matches again.
	h.updateNode("compute", func(n *corev1.Node) { n.Labels = map[string]string{"open-local": "enabled"} })
	h.waitNLS("compute", "created once selected", func(*v1alpha1.NodeLocalStorage) bool { return true })

	// An unselected node keeps a NodeLocalStorage it did not get from us.
	_, err = h.getNLS("other")
	require.NoError(t, err)
}

func TestManualEditsArePreservedUntilTheConfigChanges(t *testing.T) {
	h := newHarness(t, Options{}, newNode("node-1", nil),
		newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	h.waitNLS("node-1", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })

	manual := v1alpha1.ListFilter{Include: []string{"hand-made"}}
	h.updateNLS("node-1", func(n *v1alpha1.NodeLocalStorage) { n.Spec.ListConfig.VGs = manual })
	h.waitCounter("open_local_controller_reconcile_total", map[string]string{"kind": kindNode, "result": resultPreserved}, 1)
	nls, err := h.getNLS("node-1")
	require.NoError(t, err)
	assert.Equal(t, manual, nls.Spec.ListConfig.VGs, "a manual edit stays while the config is unchanged")

	// A config change that does not concern this node keeps the edit too.
	h.updateNLSC(cfgName, func(c *v1alpha1.NodeLocalStorageInitConfig) {
		c.Spec.NodesConfig = []v1alpha1.NodeConfig{{
			Selector:      &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "elsewhere"}},
			StorageConfig: vgConfig("x", "x", "/dev/x"),
		}}
	})
	h.waitStatus(cfgName, "generation 2 observed", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.ObservedGeneration == 2
	})
	nls, err = h.getNLS("node-1")
	require.NoError(t, err)
	assert.Equal(t, manual, nls.Spec.ListConfig.VGs)

	// A change of what the config gives the node replaces the edit.
	h.updateNLSC(cfgName, func(c *v1alpha1.NodeLocalStorageInitConfig) {
		c.Spec.GlobalConfig.ListConfig.VGs.Include = []string{"pool-[0-9]+"}
	})
	nls = h.waitNLS("node-1", "re-derived", func(n *v1alpha1.NodeLocalStorage) bool {
		return assert.ObjectsAreEqual([]string{"pool-[0-9]+"}, n.Spec.ListConfig.VGs.Include)
	})
	assert.Equal(t, "3", nls.Annotations[v1alpha1.AnnotationInitConfigGeneration])
	h.eventually("Updated event naming the replaced edit", func() (bool, string) {
		for _, e := range h.events.find("NodeLocalStorage", "node-1", EventUpdated) {
			if strings.Contains(e.Message, "manual edits of the spec were replaced") {
				return true, ""
			}
		}
		return false, fmt.Sprint(h.events.find("NodeLocalStorage", "node-1", EventUpdated))
	})
}

func TestOverwriteManualEditsRestoresTheDerivedSpec(t *testing.T) {
	h := newHarness(t, Options{OverwriteManualEdits: true}, newNode("node-1", nil),
		newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	h.waitNLS("node-1", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	h.updateNLS("node-1", func(n *v1alpha1.NodeLocalStorage) { n.Spec.ListConfig.VGs.Include = []string{"hand-made"} })
	h.waitNLS("node-1", "restored", func(n *v1alpha1.NodeLocalStorage) bool {
		return assert.ObjectsAreEqual(global.ListConfig, n.Spec.ListConfig)
	})
	h.waitCounter("open_local_controller_reconcile_total", map[string]string{"kind": kindNode, "result": resultUpdated}, 1)
}

func TestPreexistingNodeLocalStorageIsAdopted(t *testing.T) {
	// Made by an older controller or by hand: no derivation annotations.
	old := &v1alpha1.NodeLocalStorage{ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "u-old"},
		Spec: v1alpha1.NodeLocalStorageSpec{NodeName: "node-1", ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"legacy"}}}}}
	h := newHarness(t, Options{}, newNode("node-1", nil), old,
		newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	nls := h.waitNLS("node-1", "annotated", func(n *v1alpha1.NodeLocalStorage) bool {
		return n.Annotations[v1alpha1.AnnotationDerivedSpecHash] != ""
	})
	assert.Equal(t, old.Spec, nls.Spec, "the spec is kept on first contact")
	assert.Empty(t, nls.Labels[v1alpha1.LabelManagedBy], "adoption does not make it ours to delete")
	assert.NotEmpty(t, h.events.find("NodeLocalStorage", "node-1", EventSpecPreserved))

	h.updateNLSC(cfgName, func(c *v1alpha1.NodeLocalStorageInitConfig) {
		c.Spec.GlobalConfig.ListConfig.VGs.Include = []string{"new-[0-9]+"}
	})
	h.waitNLS("node-1", "config change applied", func(n *v1alpha1.NodeLocalStorage) bool {
		return assert.ObjectsAreEqual([]string{"new-[0-9]+"}, n.Spec.ListConfig.VGs.Include)
	})
}

func TestInitConfigChangeReDerivesEveryNode(t *testing.T) {
	var objs []runtime.Object
	for i := range 5 {
		objs = append(objs, newNode(fmt.Sprintf("node-%d", i), nil))
	}
	objs = append(objs, newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	h := newHarness(t, Options{}, objs...)
	h.waitStatus(cfgName, "5 synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool { return st.SyncedNodes == 5 })

	h.updateNLSC(cfgName, func(c *v1alpha1.NodeLocalStorageInitConfig) {
		c.Spec.GlobalConfig.ResourceToBeInited.VGs[0].Devices = []string{"/dev/vdb", "/dev/vdc"}
	})
	for i := range 5 {
		h.waitNLS(fmt.Sprintf("node-%d", i), "second device", func(n *v1alpha1.NodeLocalStorage) bool {
			return len(n.Spec.ResourceToBeInited.VGs) == 1 && len(n.Spec.ResourceToBeInited.VGs[0].Devices) == 2 &&
				n.Annotations[v1alpha1.AnnotationInitConfigGeneration] == "2"
		})
	}
	st := h.waitStatus(cfgName, "generation 2 synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.ObservedGeneration == 2 && st.SyncedNodes == 5 && meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady)
	})
	assert.Equal(t, int64(2), readyCondition(st).ObservedGeneration)

	// Deleting the config leaves the NodeLocalStorages alone.
	require.NoError(t, h.ol.CsiV1alpha1().NodeLocalStorageInitConfigs().Delete(context.Background(), cfgName, metav1.DeleteOptions{}))
	h.waitCounter("open_local_controller_reconcile_total", map[string]string{"kind": kindNode, "result": resultSkipped}, 5)
	assert.Len(t, h.listNLS(), 5)
}

func TestInvalidSelectorIsReportedAndBlocksDerivation(t *testing.T) {
	bad := v1alpha1.NodeLocalStorageInitConfigSpec{
		GlobalConfig: global,
		NodesConfig: []v1alpha1.NodeConfig{{
			Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "zone", Operator: "Near", Values: []string{"a"}}}},
			StorageConfig: vgConfig("x", "x", "/dev/x"),
		}},
	}
	h := newHarness(t, Options{}, newNode("node-1", nil), newNode("node-2", nil), newInitConfig(cfgName, bad))

	st := h.waitStatus(cfgName, "ConfigValid False", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionConfigValid)
		return c != nil && c.Status == metav1.ConditionFalse && st.FailedNodeCount == 2
	})
	valid := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionConfigValid)
	assert.Equal(t, v1alpha1.ReasonInvalidSelector, valid.Reason)
	assert.Contains(t, valid.Message, "spec.nodesConfig[0].selector")
	assert.Contains(t, valid.Message, "Near")
	ready := readyCondition(st)
	require.NotNil(t, ready)
	assert.Equal(t, metav1.ConditionFalse, ready.Status)
	assert.Equal(t, v1alpha1.ReasonConfigInvalid, ready.Reason)
	require.Len(t, st.FailedNodes, 2)
	assert.Contains(t, st.FailedNodes[0].Reason, "spec.nodesConfig[0].selector")
	assert.Empty(t, h.listNLS(), "nothing is derived from a config whose selectors cannot be evaluated")
	h.eventually("ConfigInvalid event", func() (bool, string) {
		ev := h.events.find("NodeLocalStorageInitConfig", cfgName, EventConfigInvalid)
		return len(ev) == 1 && ev[0].Type == corev1.EventTypeWarning, fmt.Sprint(ev)
	})

	// Fixing the selector applies the config.
	h.updateNLSC(cfgName, func(c *v1alpha1.NodeLocalStorageInitConfig) {
		c.Spec.NodesConfig[0].Selector.MatchExpressions[0].Operator = metav1.LabelSelectorOpIn
	})
	h.waitNLS("node-1", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	h.waitStatus(cfgName, "ready", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) &&
			meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionConfigValid) && st.SyncedNodes == 2
	})
}

func TestInvalidRegexpIsReported(t *testing.T) {
	spec := v1alpha1.NodeLocalStorageInitConfigSpec{
		GlobalConfig: global,
		NodesConfig: []v1alpha1.NodeConfig{{
			Selector:      &metav1.LabelSelector{MatchLabels: map[string]string{"broken": "yes"}},
			StorageConfig: vgConfig("pool-[0-9", "pool", "/dev/vdb"),
		}},
	}
	h := newHarness(t, Options{}, newNode("good", nil), newNode("bad", map[string]string{"broken": "yes"}), newInitConfig(cfgName, spec))

	// The node the bad entry selects is not given it; the other node is served.
	h.waitNLS("good", "created", func(*v1alpha1.NodeLocalStorage) bool { return true })
	st := h.waitStatus(cfgName, "one failed", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.FailedNodeCount == 1 && st.SyncedNodes == 1
	})
	assert.Equal(t, "bad", st.FailedNodes[0].Node)
	assert.Contains(t, st.FailedNodes[0].Reason, `invalid regular expression "pool-[0-9"`)
	valid := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionConfigValid)
	require.NotNil(t, valid)
	assert.Equal(t, v1alpha1.ReasonInvalidRegexp, valid.Reason)
	assert.Contains(t, valid.Message, "spec.nodesConfig[0].listConfig.vgs.include[0]")
	assert.Equal(t, v1alpha1.ReasonSyncFailed, readyCondition(st).Reason)
	_, err := h.getNLS("bad")
	assert.True(t, apierrors.IsNotFound(err))

	// A bad pattern edited into a NodeLocalStorage by hand shows on it.
	h.updateNLS("good", func(n *v1alpha1.NodeLocalStorage) { n.Spec.ListConfig.Devices.Exclude = []string{"/dev/(vda"} })
	nls := h.waitNLS("good", "ConfigValid False", func(n *v1alpha1.NodeLocalStorage) bool {
		c := meta.FindStatusCondition(n.Status.Conditions, v1alpha1.ConditionConfigValid)
		return c != nil && c.Status == metav1.ConditionFalse
	})
	c := meta.FindStatusCondition(nls.Status.Conditions, v1alpha1.ConditionConfigValid)
	assert.Equal(t, v1alpha1.ReasonInvalidRegexp, c.Reason)
	assert.Contains(t, c.Message, `spec.listConfig.devices.exclude[0]: invalid regular expression "/dev/(vda"`)
	h.eventually("ConfigInvalid event on the NodeLocalStorage", func() (bool, string) {
		return len(h.events.find("NodeLocalStorage", "good", EventConfigInvalid)) == 1, ""
	})
}

// failCreates makes the fake apiserver refuse to create the NodeLocalStorage
// of the nodes fail returns true for, while enabled.
func failCreates(h *harness, enabled *atomic.Bool, fail func(name string) bool, err func(name string) error) {
	h.ol.PrependReactor("create", "nodelocalstorages", func(action clienttesting.Action) (bool, runtime.Object, error) {
		name := action.(clienttesting.CreateAction).GetObject().(*v1alpha1.NodeLocalStorage).Name
		if enabled.Load() && fail(name) {
			return true, nil, err(name)
		}
		return false, nil, nil
	})
}

func TestStatusReportsFailedNodesAndRecovers(t *testing.T) {
	var objs []runtime.Object
	for i := range 25 {
		objs = append(objs, newNode(fmt.Sprintf("node-%02d", i), nil))
	}
	objs = append(objs, newNode("ok", nil), newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))

	// The reactor must be in place before the controller starts, so build
	// the harness with the failure switched on from the start.
	var failing atomic.Bool
	failing.Store(true)
	h := newHarnessWith(t, Options{}, func(h *harness) {
		failCreates(h, &failing, func(name string) bool { return strings.HasPrefix(name, "node-") },
			func(string) error { return apierrors.NewServiceUnavailable("etcd is sulking") })
	}, objs...)

	st := h.waitStatus(cfgName, "25 failed", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.FailedNodeCount == 25 && st.SyncedNodes == 1
	})
	assert.Equal(t, int32(26), st.SelectedNodes)
	require.Len(t, st.FailedNodes, v1alpha1.MaxFailedNodes, "the list is bounded, the count is not")
	assert.Equal(t, "node-00", st.FailedNodes[0].Node)
	assert.Contains(t, st.FailedNodes[0].Reason, "etcd is sulking")
	ready := readyCondition(st)
	assert.Equal(t, v1alpha1.ReasonSyncFailed, ready.Reason)
	assert.Contains(t, ready.Message, "25 of 26 selected nodes failed to sync")
	assert.NotEmpty(t, h.events.find("Node", "node-00", EventSyncFailed))
	h.waitCounter("open_local_controller_reconcile_errors_total", map[string]string{"kind": kindNode, "reason": "api"}, 25)

	// Failures are retried with backoff and clear once the apiserver recovers.
	failing.Store(false)
	h.waitStatus(cfgName, "all synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.SyncedNodes == 26 && st.FailedNodeCount == 0 && len(st.FailedNodes) == 0 &&
			meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady)
	})
}

func TestSpecTheAPIServerRejectsIsReportedNotRetried(t *testing.T) {
	var on atomic.Bool
	on.Store(true)
	var attempts atomic.Int32
	h := newHarnessWith(t, Options{}, func(h *harness) {
		failCreates(h, &on, func(string) bool { attempts.Add(1); return true }, func(name string) error {
			return apierrors.NewInvalid(schema.GroupKind{Group: v1alpha1.GroupName, Kind: "NodeLocalStorage"}, name, field.ErrorList{
				field.Invalid(field.NewPath("spec", "resourceToBeInited"), "object", "a device is listed in more than one volume group of resourceToBeInited.vgs"),
			})
		})
	}, newNode("node-1", nil), newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))

	st := h.waitStatus(cfgName, "failed", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool { return st.FailedNodeCount == 1 })
	assert.Contains(t, st.FailedNodes[0].Reason, "a device is listed in more than one volume group")
	h.eventually("ConfigInvalid event on the node", func() (bool, string) {
		return len(h.events.find("Node", "node-1", EventConfigInvalid)) > 0, ""
	})
	h.waitCounter("open_local_controller_reconcile_total", map[string]string{"kind": kindNode, "result": resultInvalid}, 1)
	// Give a retry, were there one, ample time (the test backoff starts at 1ms).
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, h.counter("open_local_controller_reconcile_errors_total", map[string]string{"kind": kindNode}),
		"a rejected spec is not retried: only a change of the config can fix it")
	assert.Equal(t, int32(1), attempts.Load())
}

func TestConvergenceOf100Nodes(t *testing.T) {
	const n = 100
	var objs []runtime.Object
	for i := range n {
		lbls := map[string]string{"rack": fmt.Sprintf("r%d", i%4)}
		if i%10 == 0 {
			lbls["disk"] = "nvme"
		}
		objs = append(objs, newNode(fmt.Sprintf("node-%03d", i), lbls))
	}
	spec := v1alpha1.NodeLocalStorageInitConfigSpec{
		GlobalConfig: global,
		NodesConfig: []v1alpha1.NodeConfig{
			{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "r1"}}, StorageConfig: vgConfig("r1-.*", "r1", "/dev/vdc")},
			{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"disk": "nvme"}}, StorageConfig: vgConfig("nvme-.*", "nvme", "/dev/nvme0n1")},
		},
	}
	objs = append(objs, newInitConfig(cfgName, spec))
	start := time.Now()
	h := newHarness(t, Options{}, objs...)
	h.waitStatus(cfgName, "all synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.SyncedNodes == n && meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady)
	})
	t.Logf("%d nodes converged in %v", n, time.Since(start))

	items := h.listNLS()
	require.Len(t, items, n)
	byVG := map[string]int{}
	for _, nls := range items {
		byVG[nls.Spec.ResourceToBeInited.VGs[0].Name]++
	}
	// rack r1 is every 4th node from 1; nvme every 10th from 0; nodes in
	// both (i ≡ 1 mod 4 and i ≡ 0 mod 10: none) would go to nvme, the last entry.
	assert.Equal(t, map[string]int{"r1": 25, "nvme": 10, "open-local-pool-0": 65}, byVG)

	// A config change converges too.
	start = time.Now()
	h.updateNLSC(cfgName, func(c *v1alpha1.NodeLocalStorageInitConfig) {
		c.Spec.GlobalConfig.ListConfig.VGs.Include = []string{"changed-.*"}
	})
	h.waitStatus(cfgName, "generation 2 synced", func(st v1alpha1.NodeLocalStorageInitConfigStatus) bool {
		return st.ObservedGeneration == 2 && st.SyncedNodes == n
	})
	changed := 0
	for _, nls := range h.listNLS() {
		if assert.ObjectsAreEqual([]string{"changed-.*"}, nls.Spec.ListConfig.VGs.Include) {
			changed++
		}
	}
	assert.Equal(t, 65, changed, "only the nodes on the global config change")
	t.Logf("config change over %d nodes converged in %v", n, time.Since(start))
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	opts := Options{Workers: -1}
	err := opts.complete()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "workers")

	opts = Options{LeaderElection: LeaderElectionOptions{Enabled: true, LeaseDuration: time.Second, RenewDeadline: 2 * time.Second}}
	err = opts.complete()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "lease duration")

	d := DefaultOptions()
	assert.Equal(t, DefaultInitConfigName, d.InitConfigName)
	assert.Equal(t, DefaultWorkers, d.Workers)
	assert.Equal(t, DefaultLeaseNamespace, d.LeaderElection.Namespace)
	assert.Empty(t, d.LeaderElection.Identity, "the identity is made unique at run time")
	assert.True(t, d.NodeSelector.Empty())
}

func TestMetricsRegistrationConflictIsAnError(t *testing.T) {
	h := newHarness(t, Options{})
	_, err := newMetrics(h.reg, func() float64 { return 0 })
	require.Error(t, err, "a second controller on the same registry must be refused")
	var are prometheus.AlreadyRegisteredError
	assert.True(t, errors.As(err, &are))
}
