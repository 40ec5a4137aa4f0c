package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	olinformers "github.com/open-local/open-local/pkg/generated/informers/externalversions"
	listers "github.com/open-local/open-local/pkg/generated/listers/storage/v1alpha1"
)

// Event reasons the controller records.
const (
	EventCreated         = "Created"
	EventUpdated         = "Updated"
	EventDeleted         = "Deleted"
	EventSpecPreserved   = "SpecPreserved"
	EventConfigInvalid   = "ConfigInvalid"
	EventSyncFailed      = "SyncFailed"
	EventSynced          = "Synced"
	EventOrphanRetained  = "OrphanRetained"
	eventComponentSource = "open-local-controller"
)

type keyKind uint8

const (
	keyNode keyKind = iota
	keyStatus
)

// queueKey is a work item: the node whose NodeLocalStorage to reconcile, or
// the init config's status.
type queueKey struct {
	kind keyKind
	name string
}

var statusKey = queueKey{kind: keyStatus}

// nodeOutcome is the last reconcile of a selected node, which the init
// config's status aggregates.
type nodeOutcome struct {
	// configHash is the init config spec the node was reconciled against.
	configHash string
	synced     bool
	reason     string
}

// Controller reconciles NodeLocalStorages against the init config.
type Controller struct {
	opts     Options
	client   versioned.Interface
	nodes    corelisters.NodeLister
	nlses    listers.NodeLocalStorageLister
	nlscs    listers.NodeLocalStorageInitConfigLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[queueKey]
	recorder record.EventRecorder
	metrics  *metrics

	mu       sync.Mutex
	compiled *compiledConfig
	outcomes map[string]nodeOutcome
	// orphans are the retained NodeLocalStorages already announced.
	orphans map[string]types.UID
}

// NewController wires a controller to the informers of the two factories
// (call it before starting them) and to client for writes. recorder receives
// the events; record.NewFakeRecorder serves in tests.
func NewController(opts Options, client versioned.Interface, kubeInformers informers.SharedInformerFactory,
	olInformers olinformers.SharedInformerFactory, recorder record.EventRecorder) (*Controller, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	nodeInf := kubeInformers.Core().V1().Nodes()
	nlsInf := olInformers.Csi().V1alpha1().NodeLocalStorages()
	nlscInf := olInformers.Csi().V1alpha1().NodeLocalStorageInitConfigs()
	c := &Controller{
		opts:     opts,
		client:   client,
		nodes:    nodeInf.Lister(),
		nlses:    nlsInf.Lister(),
		nlscs:    nlscInf.Lister(),
		recorder: recorder,
		outcomes: map[string]nodeOutcome{},
		orphans:  map[string]types.UID{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[queueKey](),
			workqueue.TypedRateLimitingQueueConfig[queueKey]{Name: "open-local-controller"}),
	}
	m, err := newMetrics(opts.MetricsRegisterer, c.countManaged)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	c.metrics = m

	regs := make([]cache.ResourceEventHandlerRegistration, 0, 3)
	reg, err := nodeInf.Informer().AddEventHandlerWithResyncPeriod(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueObject,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			// Heartbeats change nodes all the time; only labels matter here,
			// plus the periodic resync (same resource version).
			if !ok1 || !ok2 || o.ResourceVersion == n.ResourceVersion || !labels.Equals(o.Labels, n.Labels) {
				c.enqueueObject(newObj)
			}
		},
		DeleteFunc: c.enqueueObject,
	}, opts.ResyncPeriod)
	if err != nil {
		return nil, err
	}
	regs = append(regs, reg)

	reg, err = nlsInf.Informer().AddEventHandlerWithResyncPeriod(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueObject,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*v1alpha1.NodeLocalStorage)
			n, ok2 := newObj.(*v1alpha1.NodeLocalStorage)
			// The agent writes the status; only spec and metadata concern us.
			if !ok1 || !ok2 || o.ResourceVersion == n.ResourceVersion || o.Generation != n.Generation ||
				!apiequality.Semantic.DeepEqual(o.Spec, n.Spec) ||
				!labels.Equals(o.Labels, n.Labels) || !labels.Equals(o.Annotations, n.Annotations) ||
				!apiequality.Semantic.DeepEqual(o.Status.Conditions, n.Status.Conditions) {
				c.enqueueObject(newObj)
			}
		},
		// A deleted NodeLocalStorage of a selected node is created again.
		DeleteFunc: c.enqueueObject,
	}, opts.ResyncPeriod)
	if err != nil {
		return nil, err
	}
	regs = append(regs, reg)

	reg, err = nlscInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueConfig,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*v1alpha1.NodeLocalStorageInitConfig)
			n, ok2 := newObj.(*v1alpha1.NodeLocalStorageInitConfig)
			// Our own status writes must not re-trigger every node.
			if !ok1 || !ok2 || o.Generation != n.Generation || !apiequality.Semantic.DeepEqual(o.Spec, n.Spec) {
				c.enqueueConfig(newObj)
			}
		},
		DeleteFunc: c.enqueueConfig,
	})
	if err != nil {
		return nil, err
	}
	regs = append(regs, reg)
	for _, r := range regs {
		c.synced = append(c.synced, r.HasSynced)
	}
	return c, nil
}

// enqueueObject queues the node an event is about: a Node or a
// NodeLocalStorage, which is named after its node.
func (c *Controller) enqueueObject(obj any) {
	name, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		klog.Background().Error(err, "Cannot name the object of an event", "object", fmt.Sprintf("%T", obj))
		return
	}
	c.queue.Add(queueKey{kind: keyNode, name: name})
}

// enqueueConfig queues every node and the status when the init config changes.
func (c *Controller) enqueueConfig(obj any) {
	name, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil || name != c.opts.InitConfigName {
		return
	}
	c.enqueueAllNodes()
}

func (c *Controller) enqueueAllNodes() {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		klog.Background().Error(err, "Cannot list nodes from the cache")
		return
	}
	for _, n := range nodes {
		c.queue.Add(queueKey{kind: keyNode, name: n.Name})
	}
	c.queue.Add(statusKey)
}

// countManaged is the managed-NodeLocalStorage gauge.
func (c *Controller) countManaged() float64 {
	list, err := c.nlses.List(labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByController}))
	if err != nil {
		return 0
	}
	return float64(len(list))
}

// Run waits for the caches, then reconciles with opts.Workers workers until
// ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	defer c.queue.ShutDown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return errors.New("informer caches did not sync")
	}
	logger.Info("Controller started", "initConfig", c.opts.InitConfigName, "nodeSelector", c.opts.NodeSelector.String(),
		"overwriteManualEdits", c.opts.OverwriteManualEdits, "workers", c.opts.Workers)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	logger.Info("Controller stopped")
	return nil
}

// processNext handles one work item; it returns false once the queue is shut down.
func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)

	kind := kindNode
	if key.kind == keyStatus {
		kind = kindStatus
	}
	logger := klog.FromContext(ctx).WithValues("kind", kind)
	if key.kind == keyNode {
		logger = logger.WithValues("node", key.name)
	}
	ctx = klog.NewContext(ctx, logger)

	start := time.Now()
	result, err := c.reconcile(ctx, key)
	c.metrics.reconciles.WithLabelValues(kind, result).Inc()
	c.metrics.duration.WithLabelValues(kind, result).Observe(time.Since(start).Seconds())
	if key.kind == keyNode {
		// Every node outcome may change the init config's status.
		c.queue.AddAfter(statusKey, c.opts.StatusUpdateDelay)
	}
	if err != nil {
		c.metrics.errors.WithLabelValues(kind, errorReason(err)).Inc()
		logger.Error(err, "Reconcile failed, will retry", "retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
		return true
	}
	logger.V(4).Info("Reconciled", "result", result, "duration", time.Since(start))
	c.queue.Forget(key)
	return true
}

// reconcile dispatches one key and turns a panic into a retried error, so a
// bug triggered by one object does not stop the others from being served.
func (c *Controller) reconcile(ctx context.Context, key queueKey) (result string, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.FromContext(ctx).Error(nil, "Reconcile panicked", "panic", r, "stack", string(debug.Stack()))
			result, err = resultError, fmt.Errorf("%w: %v", errPanic, r)
		}
	}()
	if key.kind == keyStatus {
		return c.syncStatus(ctx)
	}
	return c.syncNode(ctx, key.name)
}

var errPanic = errors.New("reconcile panicked")

func errorReason(err error) string {
	switch {
	case errors.Is(err, errPanic):
		return "panic"
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return "conflict"
	case apierrors.IsInvalid(err):
		return "invalid"
	default:
		return "api"
	}
}

// config returns the init config with its selectors compiled, nil when it
// does not exist. The compilation is kept until the object changes.
func (c *Controller) config() (*compiledConfig, error) {
	cfg, err := c.nlscs.Get(c.opts.InitConfigName)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.compiled; cc != nil && cc.config.UID == cfg.UID && cc.config.ResourceVersion == cfg.ResourceVersion {
		return cc, nil
	}
	c.compiled = compileConfig(cfg)
	return c.compiled, nil
}

func (c *Controller) setOutcome(node string, o *nodeOutcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o == nil {
		delete(c.outcomes, node)
		return
	}
	c.outcomes[node] = *o
}
