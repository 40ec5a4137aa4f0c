package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender"
	"github.com/open-local/open-local/extender/cache"
	"github.com/open-local/open-local/extender/plugin/fwkfake"
	localfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
	"github.com/open-local/open-local/pkg/nodecap"
	"github.com/open-local/open-local/pkg/volumereq"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// Modes of Run: which code judges the pods.
const (
	// ModeCore places pods with core's evaluator directly, one at a time.
	ModeCore = "core"
	// ModeExtender drives the HTTP extender as kube-scheduler and CSI would.
	ModeExtender = "extender"
	// ModePlugin drives the scheduler framework plugin.
	ModePlugin = "plugin"
)

// DefaultBindLag is how many pods the scheduling cycle runs ahead of binding.
const DefaultBindLag = 16

// maxAttempts bounds how often one pod is scheduled before it is given up.
const maxAttempts = 50

const selectedNodeAnnotation = "volume.kubernetes.io/selected-node"

// cluster is a fake API server holding the simulated objects, and the
// storage cache its informers feed.
type cluster struct {
	kube  *kubefake.Clientset
	bound int // bindings written (see bindPod)
	cache *cache.Cache
	stop  context.CancelFunc
	names []string // node names, in ledger order
	// pods are the set's pods as the API server holds them (with UIDs).
	pods []*corev1.Pod
}

// startCluster loads the simulated objects into fake clientsets and starts
// the cache's informers over them.
func (r *runner) startCluster() (*cluster, error) {
	var kubeObjs, localObjs []runtime.Object
	cl := &cluster{}
	for i, e := range r.set.nodes {
		kubeObjs = append(kubeObjs, r.nodes[i].DeepCopy())
		cl.names = append(cl.names, r.nodes[i].Name)
		if e.nls != nil {
			localObjs = append(localObjs, typedNLS(e.name, e.nls))
		}
		for _, ev := range r.existingLVs[e.name] {
			kubeObjs = append(kubeObjs, existingPV(r.nodes[i], ev))
		}
	}
	for _, sc := range r.set.classes {
		kubeObjs = append(kubeObjs, sc.DeepCopy())
	}
	keys := make([]string, 0, len(r.set.pvcs))
	for k := range r.set.pvcs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pvc := r.set.pvcs[k].pvc.DeepCopy()
		withUID(&pvc.ObjectMeta, "pvc")
		kubeObjs = append(kubeObjs, pvc)
	}
	for _, pe := range r.set.pods {
		pod := pe.pod.DeepCopy()
		// The API server gives every object a UID; the plugin and the cache
		// tell pods apart by it.
		withUID(&pod.ObjectMeta, "pod")
		cl.pods = append(cl.pods, pod)
		kubeObjs = append(kubeObjs, pod)
		kubeObjs = append(kubeObjs, ephemeralPVCs(pod)...)
	}
	// The simple fake clientset: NewClientset's field management rebuilds a
	// REST mapper on every write (milliseconds each), which would make the
	// simulated API server, not Open-Local, the thing being measured. The
	// simulator never uses server-side apply.
	cl.kube = kubefake.NewSimpleClientset(kubeObjs...)
	local := localfake.NewSimpleClientset(localObjs...)
	cl.cache = cache.New(cache.Options{Strategy: r.opt.Strategy})
	// The cache's progress messages are about a real cluster; here they
	// would only clutter the simulator's output.
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logr.Discard()))
	cl.stop = cancel
	if err := cl.cache.Run(ctx, cache.Clients{Kube: cl.kube, Local: local}); err != nil {
		cancel()
		return nil, fmt.Errorf("starting the storage cache: %w", err)
	}
	return cl, nil
}

// existingPV is the PV of an Open-Local LV the node already has: the cache
// charges existing volumes through their PVs.
func existingPV(node *corev1.Node, ev nodecap.ExistingVolume) *corev1.PersistentVolume {
	host := node.Labels[hostnameLabel]
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ev.Name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(ev.SizeBytes, resource.BinarySI)},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: volumereq.DriverName, VolumeHandle: ev.Name,
				VolumeAttributes: map[string]string{"volumeType": string(volumereq.VolumeTypeLVM), "vgName": ev.VG},
			}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: hostnameLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{host}}},
			}}}},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
	}
}

func withUID(m *metav1.ObjectMeta, kind string) {
	if m.UID == "" {
		m.UID = types.UID("sim-" + kind + "-" + m.Namespace + "-" + m.Name)
	}
}

// ephemeralPVCs are the PVCs the ephemeral volume controller creates for a
// pod's generic ephemeral volumes.
func ephemeralPVCs(pod *corev1.Pod) []runtime.Object {
	var out []runtime.Object
	for _, v := range pod.Spec.Volumes {
		if v.Ephemeral == nil || v.Ephemeral.VolumeClaimTemplate == nil {
			continue
		}
		pvc := &corev1.PersistentVolumeClaim{Spec: *v.Ephemeral.VolumeClaimTemplate.Spec.DeepCopy()}
		pvc.Name, pvc.Namespace = pod.Name+"-"+v.Name, pod.Namespace
		withUID(&pvc.ObjectMeta, "pvc")
		out = append(out, pvc)
	}
	return out
}

// typedNLS converts the simulator's NodeLocalStorage into the CRD's type.
func typedNLS(node string, n *nodeLocalStorage) *v1alpha1.NodeLocalStorage {
	out := &v1alpha1.NodeLocalStorage{ObjectMeta: metav1.ObjectMeta{Name: node, Annotations: n.Metadata.Annotations}}
	out.Spec.NodeName = node
	lc := &n.Spec.ListConfig
	out.Spec.ListConfig.VGs = v1alpha1.ListFilter{Include: lc.VGs.Include, Exclude: lc.VGs.Exclude}
	out.Spec.ListConfig.Devices = v1alpha1.ListFilter{Include: lc.Devices.Include, Exclude: lc.Devices.Exclude}
	out.Spec.ListConfig.MountPoints = v1alpha1.ListFilter{Include: lc.MountPoints.Include, Exclude: lc.MountPoints.Exclude}
	info := &n.Status.NodeStorageInfo
	to := &out.Status.NodeStorageInfo
	for _, d := range info.DeviceInfo {
		to.DeviceInfos = append(to.DeviceInfos, v1alpha1.DeviceInfo{Name: d.Name, MediaType: v1alpha1.MediaType(strings.ToLower(d.MediaType)), Total: uint64(d.Total), ReadOnly: d.ReadOnly})
	}
	for _, vg := range info.VolumeGroups {
		tv := v1alpha1.VolumeGroup{Name: vg.Name, PhysicalVolumes: vg.PhysicalVolumes, Total: uint64(vg.Total)}
		var used int64
		for _, lv := range vg.LogicalVolumes {
			tv.LogicalVolumes = append(tv.LogicalVolumes, v1alpha1.LogicalVolume{Name: lv.Name, VGName: vg.Name, Total: uint64(lv.Total)})
			used += int64(lv.Total)
		}
		if vg.Available != nil {
			tv.Available = uint64(*vg.Available)
		} else {
			tv.Available = uint64(max(0, int64(vg.Total)-used))
		}
		tv.Allocatable = uint64(vg.Total)
		to.VolumeGroups = append(to.VolumeGroups, tv)
	}
	for _, mp := range info.MountPoints {
		to.MountPoints = append(to.MountPoints, v1alpha1.MountPoint{Name: mp.Name, Total: uint64(mp.Total), Available: uint64(mp.Available), FsType: mp.FSType, ReadOnly: mp.ReadOnly, Device: mp.Device})
	}
	return out
}

// candidates are the nodes kube-scheduler's own filters admit for pod, with
// the reasons of the others.
func (r *runner) candidates(pod *corev1.Pod) ([]string, map[string]int, error) {
	aff := nodeaffinity.GetRequiredNodeAffinity(pod)
	reasons := map[string]int{}
	var out []string
	for _, n := range r.nodes {
		why, err := admits(pod, aff, n)
		if err != nil {
			return nil, nil, fmt.Errorf("spec.affinity.nodeAffinity: %v", err)
		}
		if why != "" {
			reasons[why]++
			continue
		}
		out = append(out, n.Name)
	}
	return out, reasons, nil
}

// pick is the best-scored node; ties go to the first from the rotation
// point, which moves on so that equal nodes take turns.
func (r *runner) pick(nodes []string, score func(string) int64) string {
	best, bestScore := "", int64(-1)
	for i := range nodes {
		n := nodes[(r.next+i)%len(nodes)]
		if s := score(n); s > bestScore {
			best, bestScore = n, s
		}
	}
	r.next = (r.next + 1) % max(1, len(r.nodes))
	return best
}

// queued is a pod waiting for a scheduling attempt.
type queued struct {
	pod      *corev1.Pod
	req      core.PodRequest
	attempts int
}

// scheduled is a pod whose scheduling cycle chose node, waiting for binding.
type scheduled struct {
	q    queued
	node string
	// state is the plugin's CycleState (plugin mode).
	state *fwkfake.CycleState
}

// modeLoop is the simulated kube-scheduler: a scheduling queue, the
// scheduling cycle (schedule) and a binding cycle (bind) lagging lag pods
// behind it. bind returns false when the pod must be scheduled again.
type modeLoop struct {
	r        *runner
	pods     []*corev1.Pod
	res      *Result
	lag      int
	queue    []queued
	inFlight []scheduled
	schedule func(q queued) (scheduled, string) // "" reason = scheduled
	bind     func(s scheduled) (placed bool, reason string)
}

func (m *modeLoop) run() {
	for _, pod := range m.pods {
		key := podKey(pod)
		req, err := m.r.podRequest(pod)
		if err != nil {
			m.res.Unschedulable = append(m.res.Unschedulable, Unschedulable{Pod: key, Reason: err.Error()})
			continue
		}
		if len(req.Volumes) == 0 {
			m.r.note("skipping Pod %s: it has no Open-Local volume", key)
			continue
		}
		m.queue = append(m.queue, queued{pod: pod, req: req})
	}
	for len(m.queue) > 0 || len(m.inFlight) > 0 {
		if len(m.queue) == 0 || len(m.inFlight) > m.lag {
			s := m.inFlight[0]
			m.inFlight = m.inFlight[1:]
			placed, reason := m.bind(s)
			if !placed {
				s.q.attempts++
				if s.q.attempts >= maxAttempts {
					m.res.Unschedulable = append(m.res.Unschedulable, Unschedulable{Pod: podKey(s.q.pod), Reason: fmt.Sprintf("gave up after %d attempts: %s", s.q.attempts, reason)})
					continue
				}
				m.res.Reschedules++
				m.queue = append(m.queue, s.q)
			}
			continue
		}
		q := m.queue[0]
		m.queue = m.queue[1:]
		s, reason := m.schedule(q)
		if reason != "" {
			m.res.Unschedulable = append(m.res.Unschedulable, Unschedulable{Pod: podKey(q.pod), Reason: reason})
			continue
		}
		m.inFlight = append(m.inFlight, s)
	}
}

// unschedulable words a failure as kube-scheduler does, with core mode's
// hint when a volume can never fit.
func (r *runner) unschedulable(req core.PodRequest, reasons map[string]int) string {
	msg := (&core.UnschedulableError{Nodes: len(r.nodes), Reasons: reasons}).Error()
	if hint := r.neverFits(req); hint != "" {
		msg += "; " + hint
	}
	return msg
}

// record charges the simulator's own ledger with a placed pod, so that the
// final state is recounted independently of the code that placed it.
func (r *runner) record(res *Result, pod *corev1.Pod, node string, charges []core.ClaimCharge) {
	key := podKey(pod)
	p := Placement{Pod: key, Node: node, Volumes: make([]PlacedVolume, 0, len(charges))}
	for _, ch := range charges {
		if err := r.l.Reserve(node, ch); err != nil {
			r.note("Pod %s: charging %s on node %s: %v", key, ch.ID, node, err)
			res.OvercommittedBytes += ch.Bytes
			continue
		}
		ci, _ := r.l.Claim(ch.ID)
		p.Volumes = append(p.Volumes, PlacedVolume{Claim: string(ch.ID), VG: ch.VG, Device: ch.Device, Bytes: ci.Charged})
		if _, ok := r.claimPod[ch.ID]; !ok {
			r.claimPod[ch.ID] = key
		}
	}
	res.Placements = append(res.Placements, p)
}

// setSelectedNode writes (node != "") or removes the volume binder's
// selected-node annotation on the pod's PVCs.
func (cl *cluster) setSelectedNode(q queued, node string) error {
	ctx := context.Background()
	names := pvcNames(q.pod)
	for _, v := range q.req.Volumes {
		nn, ok := names[v.Claim]
		if !ok {
			continue
		}
		ns, name := nn[0], nn[1]
		pvc, err := cl.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pvc = pvc.DeepCopy()
		if node == "" {
			delete(pvc.Annotations, selectedNodeAnnotation)
		} else {
			if pvc.Annotations == nil {
				pvc.Annotations = map[string]string{}
			}
			pvc.Annotations[selectedNodeAnnotation] = node
		}
		if _, err := cl.kube.CoreV1().PersistentVolumeClaims(ns).Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// bindPod sets the pod's node, as the binding subresource does. Every
// few bindings it waits until the cache's informers have seen this one:
// the in-memory API server's watch channels are bounded (a fake watcher
// panics when one fills), while a real API server makes a slow informer
// wait instead.
func (cl *cluster) bindPod(pod *corev1.Pod, node string) error {
	ctx := context.Background()
	p, err := cl.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	p = p.DeepCopy()
	p.Spec.NodeName = node
	p.Status.Phase = corev1.PodRunning
	if _, err = cl.kube.CoreV1().Pods(pod.Namespace).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		return err
	}
	cl.bound++
	if cl.bound%catchUpEvery == 0 {
		cl.awaitObserved(pod, node)
	}
	return nil
}

// catchUpEvery bounds the events in flight per watch well below the fake
// watcher's 100: a binding writes the pod once and each PVC at most twice.
const catchUpEvery = 8

// awaitObserved waits (a few seconds at most) until the cache shows pod on
// node and its PVCs annotated for node.
func (cl *cluster) awaitObserved(pod *corev1.Pod, node string) {
	var last core.ClaimID
	for id := range pvcNames(pod) {
		last = id
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		podNode, pvcNode := cl.cache.Observed(pod.Namespace, pod.Name, last)
		if podNode == node && (last == "" || pvcNode == node) {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// pvcNames maps the claims of the pod's PVCs (named or generic ephemeral)
// to their namespace and name; inline CSI volumes have none.
func pvcNames(pod *corev1.Pod) map[core.ClaimID][2]string {
	out := map[core.ClaimID][2]string{}
	for _, v := range pod.Spec.Volumes {
		name := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			name = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			name = pod.Name + "-" + v.Name
		default:
			continue
		}
		out[volumereq.ClaimForPVC(pod.Namespace, name)] = [2]string{pod.Namespace, name}
	}
	return out
}

// awaitSelectedNode waits (a few seconds at most) until the cache shows
// every PVC of the pod annotated for node ("" = not annotated). The
// simulator calls it on both sides of removing a refused node's
// annotation, as kube-scheduler's backoff gives the informers time: first
// until the cache has seen the annotation arrive, then until it has seen it
// go. Waiting only for "gone" is not enough: before the arrival is seen the
// PVC also shows none, and the claim would then be booked on the refused
// node just after the pod was scheduled again.
func (cl *cluster) awaitSelectedNode(pod *corev1.Pod, node string) {
	deadline := time.Now().Add(5 * time.Second)
	for id := range pvcNames(pod) {
		for time.Now().Before(deadline) {
			if _, pvcNode := cl.cache.Observed(pod.Namespace, pod.Name, id); pvcNode == node {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// runExtender places the pods through the extender's HTTP handlers.
func (r *runner) runExtender(res *Result) error {
	cl, err := r.startCluster()
	if err != nil {
		return err
	}
	defer cl.stop()
	h := extender.NewServer(cl.cache, extender.NewMetrics(cl.cache), extender.Config{}).Handler()
	call := func(method, target string, body any, out any) (int, error) {
		var buf bytes.Buffer
		if body != nil {
			if err := json.NewEncoder(&buf).Encode(body); err != nil {
				return 0, err
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, &buf))
		if rec.Code == http.StatusOK && out != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				return rec.Code, fmt.Errorf("%s: decoding the answer: %w", target, err)
			}
		}
		if rec.Code != http.StatusOK {
			var eb struct{ Error string }
			_ = json.Unmarshal(rec.Body.Bytes(), &eb)
			return rec.Code, errors.New(eb.Error)
		}
		return rec.Code, nil
	}
	m := &modeLoop{r: r, pods: cl.pods, res: res, lag: r.opt.BindLag}
	m.schedule = func(q queued) (scheduled, string) {
		nodes, reasons, err := r.candidates(q.pod)
		if err != nil {
			return scheduled{}, err.Error()
		}
		if len(nodes) == 0 {
			return scheduled{}, r.unschedulable(q.req, reasons)
		}
		args := extenderv1.ExtenderArgs{Pod: q.pod, NodeNames: &nodes}
		var fr extenderv1.ExtenderFilterResult
		if _, err := call(http.MethodPost, "/scheduler/predicates", args, &fr); err != nil {
			return scheduled{}, "extender filter: " + err.Error()
		}
		if fr.Error != "" {
			return scheduled{}, fr.Error
		}
		for _, why := range fr.FailedNodes {
			reasons[why]++
		}
		for _, why := range fr.FailedAndUnresolvableNodes {
			reasons[why]++
		}
		if fr.NodeNames == nil || len(*fr.NodeNames) == 0 {
			return scheduled{}, r.unschedulable(q.req, reasons)
		}
		passed := *fr.NodeNames
		args.NodeNames = &passed
		var pl extenderv1.HostPriorityList
		if _, err := call(http.MethodPost, "/scheduler/priorities", args, &pl); err != nil {
			return scheduled{}, "extender prioritize: " + err.Error()
		}
		scores := make(map[string]int64, len(pl))
		for _, hp := range pl {
			scores[hp.Host] = hp.Score
		}
		return scheduled{q: q, node: r.pick(passed, func(n string) int64 { return scores[n] })}, ""
	}
	m.bind = func(s scheduled) (bool, string) {
		// The volume binder's PreBind: the selected-node annotation.
		if err := cl.setSelectedNode(s.q, s.node); err != nil {
			return false, err.Error()
		}
		// External-provisioner's CreateVolume asks the extender where each
		// volume goes; a node that cannot hold them refuses here.
		var charges []core.ClaimCharge
		names := pvcNames(s.q.pod)
		for _, v := range s.q.req.Volumes {
			nn, ok := names[v.Claim]
			ns, name := nn[0], nn[1]
			if !ok {
				charges = append(charges, chargeOf(v, v.VG, ""))
				continue
			}
			target := fmt.Sprintf("/apis/scheduling/%s/persistentvolumeclaims/%s?nodeName=%s", url.PathEscape(ns), url.PathEscape(name), url.QueryEscape(s.node))
			var b cache.Binding
			code, err := call(http.MethodPost, target, nil, &b)
			if err != nil {
				if code == http.StatusConflict {
					res.OvercommitAttemptsCaught++
				}
				// The provisioner gives up on the node: the annotation goes
				// and the pod is scheduled again.
				cl.awaitSelectedNode(s.q.pod, s.node)
				if uerr := cl.setSelectedNode(s.q, ""); uerr != nil {
					return false, uerr.Error()
				}
				cl.awaitSelectedNode(s.q.pod, "")
				return false, fmt.Sprintf("reservation of %s on node %s: %v", v.Claim, s.node, err)
			}
			dev := b.Device
			if b.Disk != "" {
				dev = b.Disk
			}
			charges = append(charges, chargeOf(v, b.VGName, dev))
		}
		if err := cl.bindPod(s.q.pod, s.node); err != nil {
			return false, err.Error()
		}
		r.record(res, s.q.pod, s.node, charges)
		return true, ""
	}
	m.run()
	return nil
}

// chargeOf is what a volume placed on vg or device takes.
func chargeOf(v core.VolumeRequest, vg, device string) core.ClaimCharge {
	ch := core.ClaimCharge{ID: v.Claim, Bytes: v.Bytes}
	switch v.Kind {
	case core.VolumeDevice:
		ch.Kind, ch.Device = core.KindDevice, device
	case core.VolumeMountPoint:
		ch.Kind, ch.Device = core.KindMountPoint, device
	default:
		ch.Kind, ch.VG = core.KindLVM, vg
	}
	return ch
}
