package agent

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/hostexec"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
)

const testNode = "node-1"

var nlsGVR = v1alpha1.SchemeGroupVersion.WithResource("nodelocalstorages")

// fakeAPI makes the fake clientset behave like an apiserver for
// NodeLocalStorages: resourceVersions, conflicts on stale writes, a status
// subresource that changes only the status, and generation bumps on spec
// changes. It counts status updates.
type fakeAPI struct {
	cs           *olfake.Clientset
	rv           atomic.Int64
	statusWrites atomic.Int64
	mu           sync.Mutex
	failStatus   int // fail this many status updates with a server error
}

func newFakeAPI(objs ...runtime.Object) *fakeAPI {
	f := &fakeAPI{cs: olfake.NewSimpleClientset()}
	tracker := f.cs.Tracker()
	for _, o := range objs {
		n := o.(*v1alpha1.NodeLocalStorage).DeepCopy()
		n.ResourceVersion = f.nextRV()
		if n.Generation == 0 {
			n.Generation = 1
		}
		if err := tracker.Add(n); err != nil {
			panic(err)
		}
	}
	f.cs.PrependReactor("create", "nodelocalstorages", func(action clienttesting.Action) (bool, runtime.Object, error) {
		n := action.(clienttesting.CreateAction).GetObject().(*v1alpha1.NodeLocalStorage).DeepCopy()
		n.ResourceVersion = f.nextRV()
		n.Generation = 1
		n.Status = v1alpha1.NodeLocalStorageStatus{}
		if err := tracker.Create(nlsGVR, n, ""); err != nil {
			return true, nil, err
		}
		return true, n, nil
	})
	f.cs.PrependReactor("update", "nodelocalstorages", func(action clienttesting.Action) (bool, runtime.Object, error) {
		ua := action.(clienttesting.UpdateAction)
		in := ua.GetObject().(*v1alpha1.NodeLocalStorage)
		status := ua.GetSubresource() == "status"
		if status {
			f.statusWrites.Add(1)
			f.mu.Lock()
			fail := f.failStatus > 0
			if fail {
				f.failStatus--
			}
			f.mu.Unlock()
			if fail {
				return true, nil, apierrors.NewInternalError(fmt.Errorf("injected"))
			}
		}
		cur, err := tracker.Get(nlsGVR, "", in.Name)
		if err != nil {
			return true, nil, err
		}
		old := cur.(*v1alpha1.NodeLocalStorage)
		if in.ResourceVersion != old.ResourceVersion {
			return true, nil, apierrors.NewConflict(v1alpha1.Resource("nodelocalstorages"), in.Name, fmt.Errorf("resourceVersion %q is stale (now %q)", in.ResourceVersion, old.ResourceVersion))
		}
		out := old.DeepCopy()
		if status {
			out.Status = *in.Status.DeepCopy()
		} else {
			out.Labels, out.Annotations = in.Labels, in.Annotations
			if !apiequality.Semantic.DeepEqual(in.Spec, old.Spec) {
				out.Spec = *in.Spec.DeepCopy()
				out.Generation++
			}
		}
		out.ResourceVersion = f.nextRV()
		if err := tracker.Update(nlsGVR, out, ""); err != nil {
			return true, nil, err
		}
		return true, out.DeepCopy(), nil
	})
	return f
}

func (f *fakeAPI) nextRV() string { return strconv.FormatInt(f.rv.Add(1), 10) }

func (f *fakeAPI) get(t *testing.T) *v1alpha1.NodeLocalStorage {
	t.Helper()
	n, err := f.cs.CsiV1alpha1().NodeLocalStorages().Get(context.Background(), testNode, metav1.GetOptions{})
	require.NoError(t, err)
	return n
}

// update changes the object as a user would, retrying on conflicts.
func (f *fakeAPI) update(t *testing.T, mutate func(*v1alpha1.NodeLocalStorage)) {
	t.Helper()
	for i := 0; i < 50; i++ {
		n := f.get(t)
		mutate(n)
		_, err := f.cs.CsiV1alpha1().NodeLocalStorages().Update(context.Background(), n, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		require.True(t, apierrors.IsConflict(err), "update: %v", err)
	}
	t.Fatal("update kept conflicting")
}

func newNLS(spec v1alpha1.NodeLocalStorageSpec) *v1alpha1.NodeLocalStorage {
	spec.NodeName = testNode
	return &v1alpha1.NodeLocalStorage{ObjectMeta: metav1.ObjectMeta{Name: testNode}, Spec: spec}
}

// allListed lists every VG, mount point and device.
func allListed() v1alpha1.ListConfig {
	all := v1alpha1.ListFilter{Include: []string{".*"}}
	return v1alpha1.ListConfig{VGs: all, MountPoints: all, Devices: all}
}

type harness struct {
	t     *testing.T
	api   *fakeAPI
	kube  *kubefake.Clientset
	reg   *prometheus.Registry
	opts  Options
	stop  context.CancelFunc
	done  chan error
	start time.Time
}

// fastOptions are options with intervals short enough for tests.
func fastOptions() Options {
	return Options{
		NodeName:       testNode,
		Interval:       20 * time.Millisecond,
		LeaseInterval:  30 * time.Millisecond,
		InitBackoff:    10 * time.Millisecond,
		InitBackoffMax: 200 * time.Millisecond,
		HostTimeout:    5 * time.Second,
	}
}

// run starts an agent on host; it is stopped (and must return nil) when
// the test ends.
func run(t *testing.T, host hostexec.Host, opts Options, api *fakeAPI, kubeObjs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, api: api, kube: kubefake.NewClientset(kubeObjs...), reg: prometheus.NewRegistry(), done: make(chan error, 1), start: time.Now()}
	if opts.Registerer == nil {
		opts.Registerer = h.reg
	}
	h.opts = opts
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- Run(ctx, opts, host, h.kube, api.cs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return h
}

// eventually polls cond for up to 10 s.
func (h *harness) eventually(what string, cond func() (bool, string)) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

// waitStatus waits until the stored object satisfies cond.
func (h *harness) waitStatus(what string, cond func(*v1alpha1.NodeLocalStorage) bool) *v1alpha1.NodeLocalStorage {
	h.t.Helper()
	var got *v1alpha1.NodeLocalStorage
	h.eventually(what, func() (bool, string) {
		n, err := h.api.cs.CsiV1alpha1().NodeLocalStorages().Get(context.Background(), testNode, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got = n
		return cond(n), fmt.Sprintf("status %+v", n.Status)
	})
	return got
}

// events lists the agent's events on the NodeLocalStorage with a reason.
func (h *harness) events(reason string) []corev1.Event {
	list, err := h.kube.CoreV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
	require.NoError(h.t, err)
	var out []corev1.Event
	for _, e := range list.Items {
		if e.Reason == reason && e.InvolvedObject.Name == testNode && e.InvolvedObject.Kind == "NodeLocalStorage" {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for an event with reason whose message contains text.
func (h *harness) waitEvent(reason, eventType, text string) corev1.Event {
	h.t.Helper()
	var got corev1.Event
	h.eventually("event "+reason+" containing "+text, func() (bool, string) {
		evs := h.events(reason)
		for _, e := range evs {
			if e.Type == eventType && strings.Contains(e.Message, text) {
				got = e
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events with reason %s: %v", len(evs), reason, evs)
	})
	return got
}

func condition(n *v1alpha1.NodeLocalStorage, typ string) *metav1.Condition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func conditionIs(n *v1alpha1.NodeLocalStorage, typ string, status metav1.ConditionStatus) bool {
	c := condition(n, typ)
	return c != nil && c.Status == status
}

func vgInStatus(n *v1alpha1.NodeLocalStorage, name string) *v1alpha1.VolumeGroup {
	for i := range n.Status.NodeStorageInfo.VolumeGroups {
		if n.Status.NodeStorageInfo.VolumeGroups[i].Name == name {
			return &n.Status.NodeStorageInfo.VolumeGroups[i]
		}
	}
	return nil
}
