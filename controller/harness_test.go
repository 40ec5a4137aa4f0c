package controller

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/workqueue"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
	olinformers "github.com/open-local/open-local/pkg/generated/informers/externalversions"
)

// event is one event a recorder received.
type event struct {
	Kind, Name, Type, Reason, Message string
}

// eventLog is an EventRecorder that keeps every event; unlike
// record.FakeRecorder it never blocks, whatever the number of events.
type eventLog struct {
	mu     sync.Mutex
	events []event
}

func (l *eventLog) Event(obj runtime.Object, eventtype, reason, message string) {
	kind := fmt.Sprintf("%T", obj)
	name := ""
	if m, ok := obj.(metav1.Object); ok {
		name = m.GetName()
	}
	switch obj.(type) {
	case *corev1.Node:
		kind = "Node"
	case *v1alpha1.NodeLocalStorage:
		kind = "NodeLocalStorage"
	case *v1alpha1.NodeLocalStorageInitConfig:
		kind = "NodeLocalStorageInitConfig"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, event{Kind: kind, Name: name, Type: eventtype, Reason: reason, Message: message})
}

func (l *eventLog) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	l.Event(obj, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

func (l *eventLog) AnnotatedEventf(obj runtime.Object, _ map[string]string, eventtype, reason, messageFmt string, args ...any) {
	l.Eventf(obj, eventtype, reason, messageFmt, args...)
}

// find returns the events of that reason about that object.
func (l *eventLog) find(kind, name, reason string) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event
	for _, e := range l.events {
		if e.Kind == kind && e.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// emulateAPIServer makes the fake clientset behave like the apiserver where
// the controller depends on it: resource versions with optimistic
// concurrency, generation bumps on spec changes, and a status subresource
// that writes only the status (the main resource never writes it).
func emulateAPIServer(cs *olfake.Clientset) {
	var rv atomic.Int64
	rv.Store(1000)
	next := func() string { return strconv.FormatInt(rv.Add(1), 10) }
	tracker := cs.Tracker()
	cs.PrependReactor("create", "*", func(action clienttesting.Action) (bool, runtime.Object, error) {
		ca := action.(clienttesting.CreateAction)
		obj := ca.GetObject().DeepCopyObject()
		m := obj.(metav1.Object)
		m.SetResourceVersion(next())
		m.SetGeneration(1)
		m.SetUID(types.UID("uid-" + m.GetName() + "-" + m.GetResourceVersion()))
		m.SetCreationTimestamp(metav1.Now())
		if err := tracker.Create(ca.GetResource(), obj, ""); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	cs.PrependReactor("update", "*", func(action clienttesting.Action) (bool, runtime.Object, error) {
		ua := action.(clienttesting.UpdateAction)
		in := ua.GetObject().(metav1.Object)
		existing, err := tracker.Get(ua.GetResource(), "", in.GetName())
		if err != nil {
			return true, nil, err
		}
		old := existing.(metav1.Object)
		if in.GetResourceVersion() != "" && in.GetResourceVersion() != old.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(ua.GetResource().GroupResource(), in.GetName(),
				fmt.Errorf("resource version %s is not the latest (%s)", in.GetResourceVersion(), old.GetResourceVersion()))
		}
		var out runtime.Object
		status := ua.GetSubresource() == "status"
		switch n := ua.GetObject().(type) {
		case *v1alpha1.NodeLocalStorage:
			o := existing.(*v1alpha1.NodeLocalStorage)
			out = mergeUpdate(o, n.DeepCopy(), status, func(dst, src *v1alpha1.NodeLocalStorage) { dst.Status = src.Status },
				func(a, b *v1alpha1.NodeLocalStorage) bool { return apiequality.Semantic.DeepEqual(a.Spec, b.Spec) })
		case *v1alpha1.NodeLocalStorageInitConfig:
			o := existing.(*v1alpha1.NodeLocalStorageInitConfig)
			out = mergeUpdate(o, n.DeepCopy(), status, func(dst, src *v1alpha1.NodeLocalStorageInitConfig) { dst.Status = src.Status },
				func(a, b *v1alpha1.NodeLocalStorageInitConfig) bool {
					return apiequality.Semantic.DeepEqual(a.Spec, b.Spec)
				})
		default:
			return false, nil, nil
		}
		out.(metav1.Object).SetResourceVersion(next())
		if err := tracker.Update(ua.GetResource(), out, ""); err != nil {
			return true, nil, err
		}
		return true, out, nil
	})
}

// mergeUpdate applies an update as the apiserver does for a resource with a
// status subresource.
func mergeUpdate[T interface {
	metav1.Object
	runtime.Object
}](old, in T, statusOnly bool, copyStatus func(dst, src T), sameSpec func(a, b T) bool) T {
	if statusOnly {
		out := old.DeepCopyObject().(T)
		copyStatus(out, in)
		return out
	}
	copyStatus(in, old)
	in.SetGeneration(old.GetGeneration())
	if !sameSpec(old, in) {
		in.SetGeneration(old.GetGeneration() + 1)
	}
	in.SetUID(old.GetUID())
	in.SetCreationTimestamp(old.GetCreationTimestamp())
	return in
}

// harness runs a controller against fake clientsets.
type harness struct {
	t      *testing.T
	kube   *k8sfake.Clientset
	ol     *olfake.Clientset
	events *eventLog
	reg    *prometheus.Registry
	ctrl   *Controller
	stop   context.CancelFunc
	done   chan error
}

// newHarness starts a controller over objs (Nodes, NodeLocalStorages and
// init configs); it stops when the test ends.
func newHarness(t *testing.T, opts Options, objs ...runtime.Object) *harness {
	t.Helper()
	return newHarnessWith(t, opts, nil, objs...)
}

// newHarnessWith is newHarness with setup run on the fake clientsets before
// the controller starts (to install reactors).
func newHarnessWith(t *testing.T, opts Options, setup func(*harness), objs ...runtime.Object) *harness {
	t.Helper()
	var kubeObjs, olObjs []runtime.Object
	for i, o := range objs {
		if m, ok := o.(metav1.Object); ok && m.GetResourceVersion() == "" {
			m.SetResourceVersion(strconv.Itoa(i + 1))
		}
		switch o.(type) {
		case *corev1.Node:
			kubeObjs = append(kubeObjs, o)
		default:
			olObjs = append(olObjs, o)
		}
	}
	h := &harness{
		t:      t,
		kube:   k8sfake.NewClientset(kubeObjs...),
		ol:     olfake.NewSimpleClientset(olObjs...),
		events: &eventLog{},
		reg:    prometheus.NewRegistry(),
		done:   make(chan error, 1),
	}
	emulateAPIServer(h.ol)
	bufferWatches(&h.ol.Fake, h.ol.Tracker())
	bufferWatches(&h.kube.Fake, h.kube.Tracker())
	if setup != nil {
		setup(h)
	}
	if opts.StatusUpdateDelay == 0 {
		opts.StatusUpdateDelay = 5 * time.Millisecond
	}
	opts.MetricsRegisterer = h.reg
	kubeInformers := informers.NewSharedInformerFactory(h.kube, 0)
	olInformers := olinformers.NewSharedInformerFactory(h.ol, 0)
	ctrl, err := NewController(opts, h.ol, kubeInformers, olInformers, h.events)
	require.NoError(t, err)
	// Retry fast: the default backoff and its 10/s overall limit would make
	// the recovery tests wait for seconds.
	ctrl.queue.ShutDown()
	ctrl.queue = workqueue.NewTypedRateLimitingQueue(
		workqueue.NewTypedItemExponentialFailureRateLimiter[queueKey](time.Millisecond, 50*time.Millisecond))
	h.ctrl = ctrl
	ctx, cancel := context.WithCancel(t.Context())
	h.stop = cancel
	kubeInformers.Start(ctx.Done())
	olInformers.Start(ctx.Done())
	go func() { h.done <- ctrl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("controller did not stop")
		}
		kubeInformers.Shutdown()
		olInformers.Shutdown()
	})
	return h
}

const waitFor = 10 * time.Second

// eventually waits until cond holds, reporting what was last seen.
func (h *harness) eventually(what string, cond func() (bool, string)) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	last := ""
	for time.Now().Before(deadline) {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

func (h *harness) getNLS(name string) (*v1alpha1.NodeLocalStorage, error) {
	return h.ol.CsiV1alpha1().NodeLocalStorages().Get(context.Background(), name, metav1.GetOptions{})
}

func (h *harness) listNLS() []v1alpha1.NodeLocalStorage {
	h.t.Helper()
	l, err := h.ol.CsiV1alpha1().NodeLocalStorages().List(context.Background(), metav1.ListOptions{})
	require.NoError(h.t, err)
	return l.Items
}

func (h *harness) getNLSC(name string) *v1alpha1.NodeLocalStorageInitConfig {
	h.t.Helper()
	c, err := h.ol.CsiV1alpha1().NodeLocalStorageInitConfigs().Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(h.t, err)
	return c
}

// waitNLS waits until the NodeLocalStorage of node satisfies cond.
func (h *harness) waitNLS(node, what string, cond func(*v1alpha1.NodeLocalStorage) bool) *v1alpha1.NodeLocalStorage {
	h.t.Helper()
	var got *v1alpha1.NodeLocalStorage
	h.eventually(fmt.Sprintf("NodeLocalStorage %s: %s", node, what), func() (bool, string) {
		nls, err := h.getNLS(node)
		if err != nil {
			return false, err.Error()
		}
		got = nls
		return cond(nls), fmt.Sprintf("%+v", nls.Spec)
	})
	return got
}

func (h *harness) waitNoNLS(node string) {
	h.t.Helper()
	h.eventually("NodeLocalStorage "+node+" to be gone", func() (bool, string) {
		_, err := h.getNLS(node)
		return apierrors.IsNotFound(err), fmt.Sprintf("err=%v", err)
	})
}

// waitStatus waits until the init config's status satisfies cond.
func (h *harness) waitStatus(name, what string, cond func(v1alpha1.NodeLocalStorageInitConfigStatus) bool) v1alpha1.NodeLocalStorageInitConfigStatus {
	h.t.Helper()
	var st v1alpha1.NodeLocalStorageInitConfigStatus
	h.eventually("status of "+name+": "+what, func() (bool, string) {
		st = h.getNLSC(name).Status
		return cond(st), fmt.Sprintf("%+v", st)
	})
	return st
}

// updateNLSC changes the spec of the init config like a user would: read,
// modify, write (retried on conflicts with the controller's status writes).
func (h *harness) updateNLSC(name string, mutate func(*v1alpha1.NodeLocalStorageInitConfig)) {
	h.t.Helper()
	h.eventually("init config update", func() (bool, string) {
		c := h.getNLSC(name)
		mutate(c)
		_, err := h.ol.CsiV1alpha1().NodeLocalStorageInitConfigs().Update(context.Background(), c, metav1.UpdateOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

func (h *harness) updateNLS(name string, mutate func(*v1alpha1.NodeLocalStorage)) {
	h.t.Helper()
	h.eventually("NodeLocalStorage update", func() (bool, string) {
		n, err := h.getNLS(name)
		if err != nil {
			return false, err.Error()
		}
		mutate(n)
		_, err = h.ol.CsiV1alpha1().NodeLocalStorages().Update(context.Background(), n, metav1.UpdateOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

func (h *harness) updateNode(name string, mutate func(*corev1.Node)) {
	h.t.Helper()
	n, err := h.kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(h.t, err)
	mutate(n)
	_, err = h.kube.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
	require.NoError(h.t, err)
}

// counter returns the value of a counter of the controller's registry.
func (h *harness) counter(name string, lbls map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(h.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, lbls) {
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue()
				case m.Gauge != nil:
					return m.GetGauge().GetValue()
				case m.Histogram != nil:
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// waitCounter waits until a counter reaches at least min.
func (h *harness) waitCounter(name string, lbls map[string]string, minimum float64) {
	h.t.Helper()
	h.eventually(fmt.Sprintf("%s%v >= %v", name, lbls, minimum), func() (bool, string) {
		v := h.counter(name, lbls)
		return v >= minimum, fmt.Sprint(v)
	})
}

// Fixtures.

func newNode(name string, lbls map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls, UID: types.UID("node-" + name)}}
}

func newInitConfig(name string, spec v1alpha1.NodeLocalStorageInitConfigSpec) *v1alpha1.NodeLocalStorageInitConfig {
	return &v1alpha1.NodeLocalStorageInitConfig{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1, UID: types.UID("nlsc-" + name)},
		Spec:       spec,
	}
}

func vgConfig(include string, vg string, devices ...string) v1alpha1.StorageConfig {
	return v1alpha1.StorageConfig{
		ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{include}}},
		ResourceToBeInited: v1alpha1.ResourceToBeInited{
			VGs: []v1alpha1.VGToBeInited{{Name: vg, Devices: devices}},
		},
	}
}

// bufferWatches protects a fake clientset's watches from overflowing. The
// fake's watchers hold 100 events and panic when full, and a burst of writes
// (100 nodes, each created and its status written) can outrun an informer on
// a busy machine. Each watch gets an unbounded buffer drained by its own
// goroutine, and a write waits while any watcher of its resource has a
// backlog (that goroutine may not have been scheduled yet).
func bufferWatches(f *clienttesting.Fake, tracker clienttesting.ObjectTracker) {
	var mu sync.Mutex
	watches := map[schema.GroupVersionResource][]*bufferedWatch{}
	f.PrependWatchReactor("*", func(action clienttesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := action.(clienttesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := tracker.Watch(action.GetResource(), action.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		bw := newBufferedWatch(w)
		mu.Lock()
		watches[action.GetResource()] = append(watches[action.GetResource()], bw)
		mu.Unlock()
		return true, bw, nil
	})
	backlogged := func(gvr schema.GroupVersionResource) bool {
		mu.Lock()
		defer mu.Unlock()
		live := watches[gvr][:0]
		busy := false
		for _, w := range watches[gvr] {
			select {
			case <-w.stop:
				continue
			default:
			}
			live = append(live, w)
			if len(w.src.ResultChan()) > 50 {
				busy = true
			}
		}
		watches[gvr] = live
		return busy
	}
	f.PrependReactor("*", "*", func(action clienttesting.Action) (bool, runtime.Object, error) {
		switch action.GetVerb() {
		case "create", "update", "delete", "patch":
			for backlogged(action.GetResource()) {
				time.Sleep(100 * time.Microsecond)
			}
		}
		return false, nil, nil // only waits; the next reactor does the work
	})
}

type bufferedWatch struct {
	src  watch.Interface
	out  chan watch.Event
	stop chan struct{}
	once sync.Once
}

func newBufferedWatch(src watch.Interface) *bufferedWatch {
	b := &bufferedWatch{src: src, out: make(chan watch.Event), stop: make(chan struct{})}
	go func() {
		defer close(b.out)
		var pending []watch.Event
		in := src.ResultChan()
		for in != nil || len(pending) > 0 {
			var out chan<- watch.Event
			var next watch.Event
			if len(pending) > 0 {
				out, next = b.out, pending[0]
			}
			select {
			case ev, ok := <-in:
				if !ok {
					in = nil
					continue
				}
				pending = append(pending, ev)
			case out <- next:
				pending = pending[1:]
			case <-b.stop:
				return
			}
		}
	}()
	return b
}

func (b *bufferedWatch) ResultChan() <-chan watch.Event { return b.out }

func (b *bufferedWatch) Stop() {
	b.once.Do(func() {
		b.src.Stop()
		close(b.stop)
	})
}
