package extender

import (
	"context"
	"testing"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	fx "github.com/open-local/open-local/extender/fixture"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
)

// stuckWorld: node n1 offers 100Gi; "first" takes 70Gi of it, so "second",
// annotated for n1 too, cannot fit there.
func stuckWorld(t *testing.T) (*Unsticker, *cache.Cache, *fake.Clientset, *record.FakeRecorder, *clocktesting.FakeClock, *corev1.Pod) {
	t.Helper()
	clk := clocktesting.NewFakeClock(fx.Epoch)
	first := fx.Selected(fx.PVC("ns", "first", "lvm", 70*gi, 1), "n1")
	second := fx.Selected(fx.PVC("ns", "second", "lvm", 70*gi, 2), "n1")
	client := fake.NewClientset(first, second)
	rec := record.NewFakeRecorder(10)
	u := NewUnsticker(client, rec, 2*time.Minute, clk)
	c := cache.New(cache.Options{Clock: clk, OnUnplaced: u.Enqueue})
	u.SetCache(c)
	c.UpsertNLS(fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 100 * gi}}, nil, nil))
	c.UpsertStorageClass(fx.LVMClass("lvm", ""))
	c.UpsertPVC(first)
	c.UpsertPVC(second)
	pod := fx.Pod("ns", "late", "second")
	c.UpsertPod(pod)
	c.MarkSynced()
	return u, c, client, rec, clk, pod
}

func (u *Unsticker) drain(t *testing.T, ctx context.Context) {
	t.Helper()
	for u.queue.Len() > 0 {
		require.True(t, u.processNext(ctx))
	}
}

func TestUnstickRemovesTheAnnotationOfAStuckPod(t *testing.T) {
	ctx := context.Background()
	u, c, client, rec, clk, pod := stuckWorld(t)
	defer u.queue.ShutDown()
	u.drain(t, ctx)
	get := func() *corev1.PersistentVolumeClaim {
		p, err := client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "second", metav1.GetOptions{})
		require.NoError(t, err)
		return p
	}
	assert.Equal(t, "n1", get().Annotations[cache.AnnSelectedNode], "the pod is not marked unschedulable yet")

	c.UpsertPod(fx.Unschedulable(pod))
	u.drain(t, ctx)
	assert.Equal(t, "n1", get().Annotations[cache.AnnSelectedNode], "not before the delay")
	clk.Step(2 * time.Minute)
	require.Eventually(t, func() bool { return u.queue.Len() > 0 }, 5*time.Second, time.Millisecond, "the delayed item comes back")
	u.drain(t, ctx)
	_, has := get().Annotations[cache.AnnSelectedNode]
	assert.False(t, has, "annotation removed")
	select {
	case e := <-rec.Events:
		assert.Contains(t, e, "SelectedNodeRemoved")
		assert.Contains(t, e, core.ReasonInsufficientLVM)
	default:
		t.Fatal("no event recorded")
	}
	var patched bool
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			patched = true
		}
	}
	assert.True(t, patched)
}

func TestUnstickLeavesAChangedAnnotationAlone(t *testing.T) {
	ctx := context.Background()
	u, c, client, _, clk, pod := stuckWorld(t)
	defer u.queue.ShutDown()
	c.UpsertPod(fx.Unschedulable(pod))
	clk.Step(3 * time.Minute)
	// Meanwhile kube-scheduler chose n2, which the cache has not seen yet.
	moved := fx.Selected(fx.PVC("ns", "second", "lvm", 70*gi, 2), "n2")
	_, err := client.CoreV1().PersistentVolumeClaims("ns").Update(ctx, moved, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, u.process(ctx, "ns/second"))
	p, err := client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "second", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "n2", p.Annotations[cache.AnnSelectedNode], "the test operation keeps the new choice")
}

func TestUnstickIgnoresPodsThatRun(t *testing.T) {
	ctx := context.Background()
	u, c, client, _, clk, pod := stuckWorld(t)
	defer u.queue.ShutDown()
	c.UpsertPod(fx.Unschedulable(pod))
	other := fx.OnNode(fx.Pod("ns", "running", "second"), "n1")
	c.UpsertPod(other)
	clk.Step(time.Hour)
	require.NoError(t, u.process(ctx, "ns/second"))
	for _, a := range client.Actions() {
		assert.NotEqual(t, "patch", a.GetVerb(), "a pod runs with the PVC: %v", a)
	}
}
