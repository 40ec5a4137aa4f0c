package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	olinformers "github.com/open-local/open-local/pkg/generated/informers/externalversions"
	listers "github.com/open-local/open-local/pkg/generated/listers/storage/v1alpha1"
)

// EventSource is the component name on the agent's events.
const EventSource = "open-local-agent"

// Work items. The queue coalesces repeats: a burst of NLS updates costs one pass.
const (
	itemInit    = "init"
	itemSync    = "sync"
	itemOrphans = "orphans"
)

// scheme knows the Kubernetes types and Open-Local's, so that events can
// refer to a NodeLocalStorage.
func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// agent is one node's agent. Fields below "worker state" are touched only
// by the worker goroutine.
type agent struct {
	opts     Options
	host     hostexec.Host
	client   versioned.Interface
	lister   listers.NodeLocalStorageLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	metrics  *metrics
	disc     *discovery.Discoverer
	owned    []string
	// orphans is nil when --orphan-gc=off.
	orphans *orphanCollector

	// lastPass is when the last discovery pass or initialisation attempt
	// ended (UnixNano), for the Lease.
	lastPass atomic.Int64

	// worker state
	initDone      int64 // generation whose resources are initialised; -1 none
	initAttempted int64 // generation of the last attempt; -1 none
	initProblems  []initres.Problem
	// written is the object the last status update returned, and
	// superseded the resourceVersions the agent's own updates replaced:
	// while the cache shows one of those, it lags behind written.
	written    *v1alpha1.NodeLocalStorage
	superseded map[string]bool
	// warned holds the last message of each warning kind, so that a
	// standing problem gives one event, not one per pass.
	warned map[string]string
	// lastProblems are the last pass's non-fatal problems, joined.
	lastProblems string
}

// Run runs the agent of opts.NodeName until ctx ends, then returns nil. It
// returns an error only when it cannot start (invalid options, metrics
// already registered, the NodeLocalStorage informer cannot sync).
func Run(ctx context.Context, opts Options, host hostexec.Host, kubeClient kubernetes.Interface, olClient versioned.Interface) error {
	deviceRE, err := opts.complete()
	if err != nil {
		return fmt.Errorf("agent options: %w", err)
	}
	disc, err := discovery.New(host, discovery.Options{MountRoot: opts.MountRoot, DeviceFilter: deviceRE})
	if err != nil {
		return fmt.Errorf("agent options: %w", err)
	}
	if host == nil || kubeClient == nil || olClient == nil {
		return fmt.Errorf("agent: a host, a Kubernetes client and an Open-Local client are required")
	}
	m := newMetrics()
	if err := m.register(opts.Registerer); err != nil {
		return fmt.Errorf("agent metrics: %w", err)
	}
	logger := klog.FromContext(ctx).WithName("agent").WithValues("node", opts.NodeName)
	ctx = klog.NewContext(ctx, logger)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(4)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kubeClient.CoreV1().Events("")})
	defer broadcaster.Shutdown()

	// Only this node's object: the field selector keeps the watch to one
	// NodeLocalStorage however large the cluster.
	factory := olinformers.NewSharedInformerFactoryWithOptions(olClient, 0,
		olinformers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", opts.NodeName).String()
		}))
	informer := factory.Csi().V1alpha1().NodeLocalStorages()

	a := &agent{
		opts:   opts,
		host:   host,
		client: olClient,
		lister: informer.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.InitBackoff, opts.InitBackoffMax),
			workqueue.TypedRateLimitingQueueConfig[string]{}),
		recorder:      broadcaster.NewRecorder(scheme(), corev1.EventSource{Component: EventSource, Host: opts.NodeName}),
		metrics:       m,
		disc:          disc,
		owned:         opts.ownedPrefixes(),
		initDone:      -1,
		initAttempted: -1,
		warned:        map[string]string{},
		superseded:    map[string]bool{},
	}
	if a.opts.OrphanGC != OrphanGCOff {
		a.orphans = newOrphanCollector(a.opts, host, kubeClient, m, a.emitOnNLS)
	}
	a.lastPass.Store(time.Now().UnixNano())
	if _, err := informer.Informer().AddEventHandler(a.handlers()); err != nil {
		return fmt.Errorf("watch NodeLocalStorage %s: %w", opts.NodeName, err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer a.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.Informer().HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("NodeLocalStorage informer did not sync")
	}
	logger.Info("Agent started", "mountRoot", opts.MountRoot, "interval", opts.Interval, "leaseInterval", opts.LeaseInterval,
		"forceCreateVG", opts.ForceCreateVG, "ownedLVPrefixes", a.owned,
		"orphanGC", a.opts.OrphanGC, "orphanInterval", a.opts.OrphanInterval, "orphanGrace", a.opts.OrphanGrace)

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); a.worker(ctx) }()
	go func() { defer wg.Done(); a.ticker(ctx, a.opts.Interval, itemSync) }()
	go func() { defer wg.Done(); a.leaseLoop(ctx, newLeaseKeeper(kubeClient, &a.opts)) }()
	a.queue.Add(itemInit)
	a.queue.Add(itemSync)
	if a.orphans != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.ticker(ctx, a.opts.OrphanInterval, itemOrphans) }()
		a.queue.Add(itemOrphans)
	}
	<-ctx.Done()
	a.queue.ShutDown()
	wg.Wait()
	logger.Info("Agent stopped")
	return nil
}

func (a *agent) handlers() cache.ResourceEventHandler {
	mine := func(obj any) (*v1alpha1.NodeLocalStorage, bool) {
		nls, ok := obj.(*v1alpha1.NodeLocalStorage)
		return nls, ok && nls.Name == a.opts.NodeName
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if _, ok := mine(obj); ok {
				a.queue.Add(itemInit)
				a.queue.Add(itemSync)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := mine(oldObj)
			n, ok2 := mine(newObj)
			if !ok1 || !ok2 {
				return
			}
			if o.Generation != n.Generation {
				a.queue.Add(itemInit)
			}
			// The agent's own status writes come back here too: only spec,
			// annotation or label changes need a new pass.
			if o.Generation != n.Generation || !equalStringMaps(o.Annotations, n.Annotations) || !equalStringMaps(o.Labels, n.Labels) {
				a.queue.Add(itemSync)
			}
		},
	}
}

// ticker queues item every interval.
func (a *agent) ticker(ctx context.Context, interval time.Duration, item string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.queue.Add(item)
		}
	}
}

func (a *agent) worker(ctx context.Context) {
	for {
		item, shutdown := a.queue.Get()
		if shutdown {
			return
		}
		switch {
		case ctx.Err() != nil:
			// Stopping: drain the queue without touching the host.
		case item == itemInit:
			a.syncInit(ctx)
		case item == itemSync:
			a.syncStatus(ctx)
		case item == itemOrphans:
			a.syncOrphans(ctx)
		}
		a.queue.Done(item)
	}
}

// current returns this node's NodeLocalStorage: the cached one, or the one
// the last status update returned while the cache has not caught up.
func (a *agent) current() (*v1alpha1.NodeLocalStorage, error) {
	nls, err := a.lister.Get(a.opts.NodeName)
	if err != nil {
		return nil, err
	}
	if a.written != nil && nls.ResourceVersion != "" && a.superseded[nls.ResourceVersion] {
		return a.written, nil
	}
	// Caught up, or someone else wrote since: the cache is the truth.
	a.forgetWritten()
	return nls, nil
}

func (a *agent) forgetWritten() {
	a.written = nil
	clear(a.superseded)
}

// discover makes one pass, timing and counting it.
func (a *agent) discover(ctx context.Context) (discovery.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.HostTimeout)
	defer cancel()
	start := time.Now()
	snap, err := a.disc.Discover(ctx)
	a.metrics.discoveryDuration.Observe(time.Since(start).Seconds())
	a.lastPass.Store(time.Now().UnixNano())
	if err != nil {
		a.metrics.commandError(discovery.Op(err))
		return snap, err
	}
	msgs := make([]string, len(snap.Problems))
	for i, p := range snap.Problems {
		a.metrics.commandError(discovery.Op(p))
		msgs[i] = p.Error()
	}
	// A standing problem (a mount point that cannot be measured) is logged
	// when it appears or changes, not at every pass.
	if joined := strings.Join(msgs, "; "); joined != a.lastProblems {
		a.lastProblems = joined
		if joined != "" {
			klog.FromContext(ctx).Info("Discovery left resources out", "problems", msgs)
		}
	}
	return snap, nil
}

// syncInit initialises spec.resourceToBeInited once per generation; a
// failed attempt is retried with exponential backoff.
func (a *agent) syncInit(ctx context.Context) {
	logger := klog.FromContext(ctx)
	nls, err := a.current()
	if err != nil {
		// Missing: the add handler queues an attempt once it exists.
		return
	}
	if nls.Generation == a.initDone {
		a.queue.Forget(itemInit)
		return
	}
	if nls.Generation != a.initAttempted {
		// A new spec starts a fresh backoff.
		a.queue.Forget(itemInit)
		a.initAttempted = nls.Generation
	}
	snap, err := a.discover(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		a.initProblems = []initres.Problem{{Resource: "node", Op: discovery.Op(err), Message: "discovery failed: " + err.Error()}}
		a.queue.AddRateLimited(itemInit)
		a.queue.Add(itemSync)
		return
	}
	spec := nls.Spec.ResourceToBeInited
	if len(spec.VGs) == 0 && len(spec.MountPoints) == 0 {
		a.finishInit(nls.Generation)
		return
	}
	initCtx, cancel := context.WithTimeout(ctx, a.opts.HostTimeout)
	res := initres.Apply(initCtx, a.host, snap, spec, initres.Options{Force: a.opts.ForceCreateVG, MountRoot: a.opts.MountRoot})
	cancel()
	// Initialising is host work that ended too: it counts for the Lease.
	a.lastPass.Store(time.Now().UnixNano())
	if ctx.Err() != nil {
		return // stopping: the next start tries again
	}
	for _, e := range res.Events {
		a.recorder.Event(nls, e.Type, e.Reason, e.Message)
	}
	for _, p := range res.Problems {
		a.metrics.commandError(p.Op)
	}
	if len(res.Problems) > 0 {
		a.initProblems = res.Problems
		delay := a.queue.NumRequeues(itemInit)
		logger.Info("Cannot initialise resourceToBeInited yet; retrying with backoff", "generation", nls.Generation, "attempt", delay+1, "err", res.Err())
		a.queue.AddRateLimited(itemInit)
	} else {
		logger.Info("resourceToBeInited initialised", "generation", nls.Generation, "changed", res.Changed)
		a.finishInit(nls.Generation)
	}
	// Report what changed (or why not) right away, not at the next tick.
	a.queue.Add(itemSync)
}

func (a *agent) finishInit(generation int64) {
	a.initDone = generation
	a.initProblems = nil
	a.queue.Forget(itemInit)
}

// syncStatus makes a discovery pass and writes the status if it changed.
func (a *agent) syncStatus(ctx context.Context) {
	logger := klog.FromContext(ctx)
	snap, discErr := a.discover(ctx)
	if ctx.Err() != nil {
		return // stopping: a cancelled pass is no news
	}
	nls, err := a.current()
	if apierrors.IsNotFound(err) {
		if discErr == nil {
			a.metrics.storage.update(snap, discovery.StatusOptions{OwnedLVPrefixes: a.owned})
		}
		a.createNLS(ctx)
		return
	}
	if err != nil {
		logger.Error(err, "Cannot read the NodeLocalStorage")
		return
	}
	in := statusInput{discoveryErr: discErr, owned: a.owned,
		initProblems: a.initProblems, initPending: a.initDone != nls.Generation && len(a.initProblems) == 0}
	if discErr == nil {
		in.snap = &snap
	} else {
		logger.Error(discErr, "Discovery failed")
	}
	res := computeStatus(nls, in, metav1.Now())
	if discErr == nil {
		a.metrics.storage.update(snap, res.statusOptions)
	}
	a.warnOnce(nls, "listConfig", EventConfigInvalid, res.configProblem)
	a.warnOnce(nls, "reservation", EventReservationInvalid, res.reservationProblem)
	discMsg := ""
	if discErr != nil {
		discMsg = discErr.Error()
	}
	a.warnOnce(nls, "discovery", EventDiscoveryFailed, discMsg)
	if !res.changed {
		return
	}
	updated := nls.DeepCopy()
	updated.Status = res.status
	out, err := a.client.CsiV1alpha1().NodeLocalStorages().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err):
		// Someone else wrote it; the informer brings the new object and
		// the next pass computes from it.
		a.metrics.statusWrites.WithLabelValues("conflict").Inc()
		a.forgetWritten()
		a.queue.AddRateLimited(itemSync)
		logger.V(2).Info("NodeLocalStorage changed while writing its status; retrying", "err", err)
		return
	case err != nil:
		a.metrics.statusWrites.WithLabelValues("error").Inc()
		a.forgetWritten()
		logger.Error(err, "Cannot update the NodeLocalStorage status")
		return
	}
	a.metrics.statusWrites.WithLabelValues("ok").Inc()
	a.queue.Forget(itemSync)
	a.superseded[nls.ResourceVersion] = true
	a.written = out
	logger.V(2).Info("Status updated", "state", res.status.NodeStorageInfo.State.Type, "volumeGroups", len(res.status.NodeStorageInfo.VolumeGroups))
}

// syncOrphans makes an orphan pass. It runs only while the node's
// NodeLocalStorage exists: that the API server knows this node is the
// agent's evidence that it talks to the cluster the node's volumes belong to
// (a kubeconfig for another cluster would show every volume unclaimed).
func (a *agent) syncOrphans(ctx context.Context) {
	logger := klog.FromContext(ctx)
	if _, err := a.current(); err != nil {
		logger.V(2).Info("No NodeLocalStorage for this node yet; orphan pass skipped", "err", err)
		return
	}
	res, err := a.orphans.pass(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		logger.Error(err, "Orphan pass cut short; every volume it had not cleared is kept")
		return
	}
	logger.V(2).Info("Orphan pass done", "mode", a.opts.OrphanGC, "orphans", len(res.orphans), "removed", len(res.removed))
}

// emitOnNLS records an event on the node's NodeLocalStorage, if it exists.
func (a *agent) emitOnNLS(eventType, reason, message string) {
	nls, err := a.current()
	if err != nil {
		return
	}
	a.recorder.Event(nls, eventType, reason, message)
}

// warnOnce emits a Warning event when a problem appears or its message
// changes, and forgets it when it is gone.
func (a *agent) warnOnce(nls *v1alpha1.NodeLocalStorage, kind, reason, message string) {
	if message == "" {
		delete(a.warned, kind)
		return
	}
	if a.warned[kind] == message {
		return
	}
	a.warned[kind] = message
	a.recorder.Event(nls, corev1.EventTypeWarning, reason, message)
}

// createNLS creates the node's NodeLocalStorage with an empty spec when
// asked to; otherwise the agent waits for the controller to create it.
func (a *agent) createNLS(ctx context.Context) {
	logger := klog.FromContext(ctx)
	if !a.opts.CreateNLS {
		logger.V(2).Info("No NodeLocalStorage for this node yet; waiting for the controller to create it")
		return
	}
	nls := &v1alpha1.NodeLocalStorage{ObjectMeta: metav1.ObjectMeta{Name: a.opts.NodeName},
		Spec: v1alpha1.NodeLocalStorageSpec{NodeName: a.opts.NodeName}}
	_, err := a.client.CsiV1alpha1().NodeLocalStorages().Create(ctx, nls, metav1.CreateOptions{})
	switch {
	case err == nil:
		logger.Info("Created the NodeLocalStorage of this node")
	case apierrors.IsAlreadyExists(err):
	default:
		logger.Error(err, "Cannot create the NodeLocalStorage of this node")
	}
}

// leaseLoop renews the Lease every LeaseInterval while discovery passes keep
// finishing.
func (a *agent) leaseLoop(ctx context.Context, k *leaseKeeper) {
	logger := klog.FromContext(ctx)
	renew := func() {
		now := time.Now()
		// A pass ends within HostTimeout (its commands are killed then), so
		// a longer silence means a command the kernel will not let go of
		// (a process stuck on a dead disk): let the Lease expire.
		if since := now.Sub(time.Unix(0, a.lastPass.Load())); since > a.opts.Interval+a.opts.HostTimeout {
			a.metrics.leaseRenewals.WithLabelValues("skipped").Inc()
			logger.Info("Not renewing the Lease: no discovery pass finished recently", "since", since.Round(time.Second))
			return
		}
		if err := k.renew(ctx, now); err != nil {
			if ctx.Err() == nil {
				a.metrics.leaseRenewals.WithLabelValues("error").Inc()
				logger.Error(err, "Cannot renew the Lease")
			}
			return
		}
		a.metrics.leaseRenewals.WithLabelValues("ok").Inc()
	}
	renew()
	t := time.NewTicker(a.opts.LeaseInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			renew()
		}
	}
}

func equalStringMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
