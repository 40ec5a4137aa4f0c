package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	"github.com/open-local/open-local/pkg/volumereq"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// Name is the plugin's name in a KubeSchedulerConfiguration.
const Name = "Open-Local"

// AllocatedAnnotation is written on each Open-Local PVC in PreBind: where
// the plugin placed its volume, as JSON {"vgName","device","volumeType"}.
const AllocatedAnnotation = "csi.aliyun.com/allocated"

// stateKey is where PreFilter leaves the pod's request and Reserve its
// assignment.
const stateKey fwk.StateKey = Name

// Allocation is the value of AllocatedAnnotation.
type Allocation struct {
	VGName     string `json:"vgName,omitempty"`
	Device     string `json:"device,omitempty"`
	VolumeType string `json:"volumeType"`
}

// Plugin implements PreFilter, Filter, Score, Reserve/Unreserve and PreBind.
// Reserve books the pod's volumes in the cache under its write lock
// (cache.Assume), so every later Filter sees them and two pods are never
// given the same bytes; Filter and Score read the cache under its read lock.
type Plugin struct {
	cache    *cache.Cache
	strategy core.Strategy
	client   kubernetes.Interface
}

var (
	_ fwk.PreFilterPlugin = (*Plugin)(nil)
	_ fwk.FilterPlugin    = (*Plugin)(nil)
	_ fwk.ScorePlugin     = (*Plugin)(nil)
	_ fwk.ReservePlugin   = (*Plugin)(nil)
	_ fwk.PreBindPlugin   = (*Plugin)(nil)
)

// New is the plugin factory kube-scheduler calls (its signature is the
// framework runtime's PluginFactory). It starts the cache's informers and
// returns once they are synced; they stop with ctx.
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	cfg, err := ParseArgs(obj)
	if err != nil {
		return nil, err
	}
	rc := h.KubeConfig()
	if cfg.KubeConfig != "" {
		if rc, err = clientcmd.BuildConfigFromFlags("", cfg.KubeConfig); err != nil {
			return nil, fmt.Errorf("plugin %s: kubeconfig %s: %w", Name, cfg.KubeConfig, err)
		}
	}
	if rc == nil {
		return nil, fmt.Errorf("plugin %s: no kubeconfig: set args.kubeconfig or run inside kube-scheduler", Name)
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "open-local-scheduler-plugin"
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", Name, err)
	}
	local, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", Name, err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", Name, err)
	}
	c := cache.New(cache.Options{Strategy: cfg.Strategy})
	if err := c.Run(ctx, cache.Clients{Kube: kube, Local: local, Dynamic: dyn}); err != nil {
		return nil, fmt.Errorf("plugin %s: starting informers: %w", Name, err)
	}
	klog.FromContext(ctx).Info("Open-Local plugin ready", "strategy", cfg.Strategy.String())
	return NewWithCache(c, cfg.Strategy, kube), nil
}

// NewWithCache builds the plugin on a cache the caller feeds; client writes
// the PreBind annotations.
func NewWithCache(c *cache.Cache, s core.Strategy, client kubernetes.Interface) *Plugin {
	return &Plugin{cache: c, strategy: s, client: client}
}

// Name is the plugin's name.
func (p *Plugin) Name() string { return Name }

// cycleState is what the plugin keeps in CycleState for one pod.
type cycleState struct {
	req core.PodRequest
	// pvcs are the pod's Open-Local PVC claims (PreBind annotates them).
	pvcs map[core.ClaimID]bool
	// assignment is set by Reserve, on node.
	assignment *core.Assignment
	node       string
	// scores are Filter's findings, by node, for Score: nothing is booked
	// between the two within one scheduling cycle.
	mu     sync.Mutex
	scores map[string]int64
}

func (s *cycleState) storeScore(node string, score int64) {
	s.mu.Lock()
	if s.scores == nil {
		s.scores = map[string]int64{}
	}
	s.scores[node] = score
	s.mu.Unlock()
}

func (s *cycleState) score(node string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.scores[node]
	return v, ok
}

// Clone shares the request (nothing after PreFilter changes it) and starts
// without Filter's findings: a clone judges nodes afresh (preemption).
func (s *cycleState) Clone() fwk.StateData {
	return &cycleState{req: s.req, pvcs: s.pvcs, assignment: s.assignment, node: s.node}
}

func readState(cs fwk.CycleState) (*cycleState, error) {
	d, err := cs.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: no PreFilter state: %w", Name, err)
	}
	s, ok := d.(*cycleState)
	if !ok {
		return nil, fmt.Errorf("plugin %s: PreFilter state has type %T", Name, d)
	}
	return s, nil
}

// PreFilter collects the pod's Open-Local volumes once per cycle. A pod
// without any is skipped by every later extension point.
func (p *Plugin) PreFilter(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	r := p.cache.Request(pod)
	if !r.Ours {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if r.Err != nil {
		// Usually transient (a PVC or StorageClass not created yet): retry
		// when objects change.
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, r.Err.Error())
	}
	st := &cycleState{req: r.PodRequest, pvcs: map[core.ClaimID]bool{}}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		switch {
		case v.PersistentVolumeClaim != nil:
			st.pvcs[volumereq.ClaimForPVC(pod.Namespace, v.PersistentVolumeClaim.ClaimName)] = true
		case v.Ephemeral != nil:
			st.pvcs[volumereq.ClaimForPVC(pod.Namespace, pod.Name+"-"+v.Name)] = true
		}
	}
	cs.Write(stateKey, st)
	klog.FromContext(ctx).V(5).Info("Open-Local volumes", "pod", klog.KObj(pod), "volumes", len(r.Volumes))
	return nil, nil
}

// PreFilterExtensions: the plugin's decision does not depend on other pods
// in the NodeInfo, so preemption needs no incremental updates.
func (p *Plugin) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// statusOf turns a placement error into a framework status: a node that
// cannot hold the volumes is Unschedulable with core's reason.
func statusOf(err error) *fwk.Status {
	var u *core.Unfit
	if errors.As(err, &u) {
		return fwk.NewStatus(fwk.Unschedulable, u.Error())
	}
	return fwk.AsStatus(err)
}

// Filter checks that the node can hold the pod's volumes now.
func (p *Plugin) Filter(_ context.Context, cs fwk.CycleState, pod *corev1.Pod, ni fwk.NodeInfo) *fwk.Status {
	st, err := readState(cs)
	if err != nil {
		return fwk.AsStatus(err)
	}
	node := ni.Node()
	if node == nil {
		return fwk.NewStatus(fwk.Error, "node not found")
	}
	score, err := p.cache.FitNode(node.Name, st.req)
	if err != nil {
		return statusOf(err)
	}
	st.storeScore(node.Name, int64(score))
	return nil
}

// Score is core's score of the pod's placement on the node (0..100 under
// the strategy), already on the framework's scale.
func (p *Plugin) Score(_ context.Context, cs fwk.CycleState, pod *corev1.Pod, ni fwk.NodeInfo) (int64, *fwk.Status) {
	st, err := readState(cs)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	node := ni.Node()
	if node == nil {
		return 0, fwk.NewStatus(fwk.Error, "node not found")
	}
	if v, ok := st.score(node.Name); ok {
		return v, nil
	}
	score, err := p.cache.FitNode(node.Name, st.req)
	if err != nil {
		// The node passed Filter but changed since: rank it last.
		return 0, nil
	}
	return int64(score), nil
}

// ScoreExtensions: scores are already 0..MaxNodeScore.
func (p *Plugin) ScoreExtensions() fwk.ScoreExtensions { return nil }

// Reserve places the pod on the node and books its volumes in the cache,
// so that every later Filter sees them.
func (p *Plugin) Reserve(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, nodeName string) *fwk.Status {
	st, err := readState(cs)
	if err != nil {
		return fwk.AsStatus(err)
	}
	a, err := p.cache.Assume(nodeName, string(pod.UID), st.req)
	if err != nil {
		return statusOf(err)
	}
	st.assignment, st.node = &a, nodeName
	klog.FromContext(ctx).V(4).Info("Reserved Open-Local volumes", "pod", klog.KObj(pod), "node", nodeName, "volumes", len(a.Volumes))
	return nil
}

// Unreserve gives the pod's bookings back (idempotent).
func (p *Plugin) Unreserve(_ context.Context, cs fwk.CycleState, pod *corev1.Pod, nodeName string) {
	st, err := readState(cs)
	if err != nil || st.assignment == nil {
		return
	}
	ids := make([]core.ClaimID, 0, len(st.assignment.Volumes))
	for _, v := range st.assignment.Volumes {
		// Existing claims too: an earlier attempt for this pod may have
		// booked them (Unassume only drops this pod's own bookings).
		ids = append(ids, v.Claim)
	}
	node := st.node
	if node == "" {
		node = nodeName
	}
	p.cache.Unassume(node, string(pod.UID), ids)
	st.assignment, st.node = nil, ""
}

// Reservations is how many claims the plugin booked that no PV, annotation
// or bound pod charges yet (for metrics and tests).
func (p *Plugin) Reservations() int { return p.cache.NumAssumed() }

// PreBindPreFlight: only pods that Reserve placed need PreBind.
func (p *Plugin) PreBindPreFlight(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, _ string) (*fwk.PreBindPreFlightResult, *fwk.Status) {
	st, err := readState(cs)
	if err != nil || st.assignment == nil || len(st.pvcs) == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	return &fwk.PreBindPreFlightResult{AllowParallel: true}, nil
}

// PreBind records on each Open-Local PVC the VG or device chosen for it.
// (The volume binder writes the selected-node annotation itself.)
func (p *Plugin) PreBind(ctx context.Context, cs fwk.CycleState, pod *corev1.Pod, _ string) *fwk.Status {
	st, err := readState(cs)
	if err != nil {
		return fwk.AsStatus(err)
	}
	if st.assignment == nil {
		return nil
	}
	for _, v := range st.assignment.Volumes {
		if !st.pvcs[v.Claim] || v.Kind == core.VolumeSnapshotRestore {
			continue
		}
		if _, src, ok := p.cache.Claim(v.Claim); v.Existing && ok && src == cache.SourcePV {
			continue // provisioned already: its PV says where it is
		}
		if err := p.annotate(ctx, pod.Namespace, v); err != nil {
			return fwk.AsStatus(err)
		}
	}
	return nil
}

// AllocationOf is the annotation value for one placed volume.
func AllocationOf(v core.VolumeAssignment) Allocation {
	switch v.Kind {
	case core.VolumeDevice:
		return Allocation{Device: v.Device, VolumeType: string(volumereq.VolumeTypeDevice)}
	case core.VolumeMountPoint:
		return Allocation{Device: v.Device, VolumeType: string(volumereq.VolumeTypeMountPoint)}
	}
	return Allocation{VGName: v.VG, VolumeType: string(volumereq.VolumeTypeLVM)}
}

func (p *Plugin) annotate(ctx context.Context, namespace string, v core.VolumeAssignment) error {
	name := string(v.Claim)[len(volumereq.ClaimForPVC(namespace, "")):]
	val, err := json.Marshal(AllocationOf(v))
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AllocatedAnnotation: string(val)}}})
	if err != nil {
		return err
	}
	if _, err := p.client.CoreV1().PersistentVolumeClaims(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotating persistentvolumeclaim %s: %w", v.Claim, err)
	}
	return nil
}
