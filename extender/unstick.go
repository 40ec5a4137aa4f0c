package extender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// DefaultStuckPodDelay is how long a claim waits for capacity on its
// selected node, with its pod unschedulable, before the annotation goes.
const DefaultStuckPodDelay = 5 * time.Minute

// Unsticker removes the selected-node annotation of a PVC whose node cannot
// hold it any more (capacity shrank, another volume won the race) once its
// pod has been unschedulable for the delay: kube-scheduler's volume binding
// keeps such a pod on the annotated node forever otherwise. It is driven by
// the cache's events through a delaying workqueue, not by a periodic sweep.
type Unsticker struct {
	cache    *cache.Cache
	client   kubernetes.Interface
	recorder record.EventRecorder
	delay    time.Duration
	queue    workqueue.TypedRateLimitingInterface[core.ClaimID]
}

// NewUnsticker returns an unsticker; wire Enqueue as the cache's OnUnplaced.
func NewUnsticker(client kubernetes.Interface, recorder record.EventRecorder, delay time.Duration, clk clock.WithTicker) *Unsticker {
	if delay <= 0 {
		delay = DefaultStuckPodDelay
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Unsticker{
		client:   client,
		recorder: recorder,
		delay:    delay,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[core.ClaimID](time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[core.ClaimID]{Name: "open-local-unstick", Clock: clk},
		),
	}
}

// SetCache gives the unsticker the cache it asks (the cache is built with
// Enqueue as its callback, hence the two steps).
func (u *Unsticker) SetCache(c *cache.Cache) { u.cache = c }

// Enqueue asks for claim id to be looked at. It never blocks.
func (u *Unsticker) Enqueue(id core.ClaimID) { u.queue.Add(id) }

// Run works the queue until ctx ends.
func (u *Unsticker) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		u.queue.ShutDown()
	}()
	for u.processNext(ctx) {
	}
}

func (u *Unsticker) processNext(ctx context.Context) bool {
	id, quit := u.queue.Get()
	if quit {
		return false
	}
	defer u.queue.Done(id)
	if err := u.process(ctx, id); err != nil {
		klog.FromContext(ctx).Error(err, "Unstick: will retry", "claim", id)
		u.queue.AddRateLimited(id)
		return true
	}
	u.queue.Forget(id)
	return true
}

// process looks at one claim once.
func (u *Unsticker) process(ctx context.Context, id core.ClaimID) error {
	v := u.cache.Stuck(id, u.delay)
	if v.Wait > 0 {
		u.queue.AddAfter(id, v.Wait)
		return nil
	}
	if !v.Unstick {
		return nil
	}
	ns, name, ok := strings.Cut(string(id), "/")
	if !ok {
		return nil
	}
	// Remove the annotation only if it still names that node: a patch that
	// races with kube-scheduler choosing again must not undo its choice.
	path := "/metadata/annotations/" + strings.ReplaceAll(strings.ReplaceAll(cache.AnnSelectedNode, "~", "~0"), "/", "~1")
	patch, _ := json.Marshal([]map[string]string{
		{"op": "test", "path": path, "value": v.Node},
		{"op": "remove", "path": path},
	})
	pvc, err := u.client.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "open-local-scheduler"})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsInvalid(err), apierrors.IsConflict(err), isUnprocessable(err):
		return nil // deleted, or the annotation changed meanwhile (the test operation failed)
	case err != nil:
		// Whatever the error says, what matters is whether the annotation
		// still names the node.
		cur, gerr := u.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(gerr) || (gerr == nil && cur.Annotations[cache.AnnSelectedNode] != v.Node) {
			return nil
		}
		return fmt.Errorf("removing %s from persistentvolumeclaim %s: %w", cache.AnnSelectedNode, id, err)
	}
	klog.FromContext(ctx).Info("Unstick: removed the selected node of a claim that no longer fits there", "pvc", klog.KRef(ns, name), "node", v.Node, "reason", v.Reason)
	if u.recorder != nil {
		u.recorder.Eventf(pvc, corev1.EventTypeWarning, "SelectedNodeRemoved",
			"Node %s cannot hold this volume any more (%s); removed annotation %s so that kube-scheduler chooses another node", v.Node, v.Reason, cache.AnnSelectedNode)
	}
	return nil
}

func isUnprocessable(err error) bool {
	var se apierrors.APIStatus
	return errors.As(err, &se) && se.Status().Code == http.StatusUnprocessableEntity
}
