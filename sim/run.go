package sim

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/nodecap"
	"github.com/open-local/open-local/pkg/volumereq"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// Options tune Run.
type Options struct {
	// Strategy chooses among nodes that fit (0 = core.Binpack).
	Strategy core.Strategy
	// Sample stops the search for a pod once this many nodes fit; 0 is
	// kube-scheduler's adaptive default (every node up to 100 nodes, then a
	// share that falls from 50% to 5% as the cluster grows).
	Sample int
	// Now is the clock elapsed time is measured with (nil = time.Now).
	Now func() time.Time
	// Mode is ModeCore (""), ModeExtender or ModePlugin.
	Mode string
	// BindLag is how many pods the scheduling cycle runs ahead of binding
	// in the extender and plugin modes (0 = DefaultBindLag).
	BindLag int
}

// Result is the simulation's outcome. Its JSON form is the --json output.
type Result struct {
	Placements    []Placement     `json:"placements"`
	Unschedulable []Unschedulable `json:"unschedulable"`
	// Overcommitted is the number of resources (VGs, devices, mount points)
	// whose charges exceed what they offer, recounted from the final ledger.
	Overcommitted int `json:"overcommitted"`
	// Pods is the number of pods with Open-Local volumes (placed or not).
	Pods int `json:"pods"`
	// Nodes is the number of nodes, with or without Open-Local storage.
	Nodes int `json:"nodes"`
	// ElapsedSeconds is the time spent building the ledger and placing pods.
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	// Mode is the code that placed the pods: core, extender or plugin.
	Mode string `json:"mode"`
	// PlacementsPerSecond is len(Placements) / ElapsedSeconds.
	PlacementsPerSecond float64 `json:"placementsPerSecond"`
	// Reschedules counts scheduling attempts after the first, for pods whose
	// chosen node refused them later (extender and plugin modes).
	Reschedules int `json:"reschedules"`
	// OvercommitAttemptsCaught counts placements refused by the reservation
	// because the node could no longer hold them.
	OvercommitAttemptsCaught int `json:"overcommitAttemptsCaught"`
	// OvercommittedBytes is what the final state charges beyond what the
	// resources offer, summed over all of them.
	OvercommittedBytes int64 `json:"overcommittedBytes"`

	// Resources are the per-node figures after placement, in node order.
	Resources []ResourceReport `json:"-"`
	// Overcommits details what Overcommitted counts.
	Overcommits []core.Overcommit `json:"-"`
	// Notes are remarks about the input, for stderr.
	Notes []string `json:"-"`
	// Strategy and Sample are the settings used.
	Strategy core.Strategy `json:"-"`
	Sample   int           `json:"-"`
}

// Placement is where a pod's volumes went.
type Placement struct {
	Pod     string         `json:"pod"`
	Node    string         `json:"node"`
	Volumes []PlacedVolume `json:"volumes"`
}

// PlacedVolume is one volume of a placed pod.
type PlacedVolume struct {
	// Claim is "namespace/pvc" or, for an inline volume, "namespace/pod/volume".
	Claim string `json:"claim"`
	// VG is the volume group of an LVM volume.
	VG string `json:"vg"`
	// Device is the device (or mount point path) of a Device (MountPoint) volume.
	Device string `json:"device"`
	// Bytes is what is charged: the LV size after extent rounding, or the whole device.
	Bytes int64 `json:"bytes"`
}

// Unschedulable is a pod that could not be placed, with why.
type Unschedulable struct {
	Pod    string `json:"pod"`
	Reason string `json:"reason"`
}

// ResourceReport is one row of the per-node table.
type ResourceReport struct {
	Node string
	// Kind is 0 for a node without Open-Local storage.
	Kind             core.ResourceKind
	Name             string
	Media            core.MediaType
	AllocatableBytes int64
	RequestedBytes   int64
	FreeBytes        int64
	// Pods are the placed pods with a volume here, sorted.
	Pods []string
	// ExistingVolumes counts Open-Local LVs the node already had.
	ExistingVolumes int
}

// Reasons kube-scheduler gives for nodes its own filters reject.
const (
	reasonNodeName      = "node(s) didn't match the requested node name"
	reasonAffinity      = "node(s) didn't match Pod's node affinity/selector"
	reasonUnschedulable = "node(s) were unschedulable"
)

// existingPrefix marks claims of LVs a node already had. Namespaces cannot
// contain ':' so these never collide with a PVC's or inline volume's claim.
const existingPrefix = "existing:"

type runner struct {
	set      *Set
	opt      Options
	l        *core.Ledger
	e        *core.Evaluator
	nodes    []*corev1.Node // in ledger order
	tainted  bool           // some node has a taint or is cordoned
	sample   int
	next     int
	notes    []string
	existing map[string]int // node + "\x00" + VG → LVs it already had
	// existingLVs are each node's Open-Local LVs (the modes make PVs of them).
	existingLVs map[string][]nodecap.ExistingVolume

	defaultClass *storagev1.StorageClass
	noted        map[string]bool
	claimPod     map[core.ClaimID]string
	claimLabel   map[core.ClaimID]string // "persistentvolumeclaim ns/x" or "inline volume ns/pod/v"
	largest      largest
}

// largest is the biggest of each kind of resource anywhere in the cluster,
// to say when a request can never fit, whatever else is placed.
type largest struct {
	vg      int64
	vgNamed map[string]int64
	device  map[core.MediaType]int64 // "" = any medium
	mount   map[core.MediaType]int64
}

// Run places the set's pods, in order, on its nodes and reports the outcome.
// Bad pods (unknown StorageClass, invalid parameters, ...) are reported as
// unschedulable and the others are still placed.
func Run(s *Set, opt Options) (*Result, error) {
	if opt.Strategy == 0 {
		opt.Strategy = core.Binpack
	}
	if opt.Strategy != core.Binpack && opt.Strategy != core.Spread {
		return nil, fmt.Errorf("unknown strategy %d", opt.Strategy)
	}
	if opt.Sample < 0 {
		return nil, fmt.Errorf("sample %d: must be at least 0 (0 = kube-scheduler's adaptive default)", opt.Sample)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Mode == "" {
		opt.Mode = ModeCore
	}
	if opt.Mode != ModeCore && opt.Mode != ModeExtender && opt.Mode != ModePlugin {
		return nil, fmt.Errorf("unknown mode %q (accepted: core, extender, plugin)", opt.Mode)
	}
	if opt.BindLag < 0 {
		return nil, fmt.Errorf("bind lag %d: must be at least 0", opt.BindLag)
	}
	if opt.BindLag == 0 {
		opt.BindLag = DefaultBindLag
	}
	r := &runner{
		set: s, opt: opt, l: core.NewLedger(),
		existing: map[string]int{}, existingLVs: map[string][]nodecap.ExistingVolume{}, noted: map[string]bool{}, claimPod: map[core.ClaimID]string{},
		claimLabel: map[core.ClaimID]string{}, notes: s.Notes(),
		largest: largest{vgNamed: map[string]int64{}, device: map[core.MediaType]int64{}, mount: map[core.MediaType]int64{}},
	}
	r.e = core.NewEvaluator(r.l)
	began := opt.Now()

	r.checkClasses()
	r.addNodes()
	r.sample = opt.Sample
	if r.sample == 0 {
		r.sample = core.NumNodesToScore(r.l.NumNodes(), 0)
	}
	res := &Result{Placements: []Placement{}, Unschedulable: []Unschedulable{}, Strategy: opt.Strategy, Sample: r.sample, Mode: opt.Mode}
	switch opt.Mode {
	case ModeExtender:
		if err := r.runExtender(res); err != nil {
			return nil, err
		}
	case ModePlugin:
		if err := r.runPlugin(res); err != nil {
			return nil, err
		}
	default:
		for _, pe := range s.pods {
			r.placePod(pe.pod, res)
		}
	}
	res.Overcommits = r.l.Overcommits()
	res.Overcommitted = len(res.Overcommits)
	for _, o := range res.Overcommits {
		res.OvercommittedBytes += o.ExcessBytes
	}
	res.ElapsedSeconds = opt.Now().Sub(began).Seconds()
	if res.ElapsedSeconds > 0 {
		res.PlacementsPerSecond = float64(len(res.Placements)) / res.ElapsedSeconds
	}
	res.Pods = len(res.Placements) + len(res.Unschedulable)
	res.Nodes = r.l.NumNodes()
	res.Resources = r.report()
	res.Notes = r.notes
	return res, nil
}

func (r *runner) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// checkClasses reports every bad Open-Local StorageClass once, up front, and
// finds the default class.
func (r *runner) checkClasses() {
	for _, sc := range r.set.classes {
		if volumereq.IsDefaultClass(sc) {
			if r.defaultClass == nil {
				r.defaultClass = sc
			} else {
				r.note("StorageClass %s is marked default too; PVCs without a class use %s", sc.Name, r.defaultClass.Name)
			}
		}
		if !volumereq.IsOpenLocalDriver(sc.Provisioner) {
			continue
		}
		if _, err := volumereq.ParseStorageClassParams(sc.Parameters); err != nil {
			r.note("StorageClass %s: %v; pods using it are unschedulable", sc.Name, err)
		}
		if sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
			mode := "Immediate"
			if sc.VolumeBindingMode != nil {
				mode = string(*sc.VolumeBindingMode)
			}
			r.note("StorageClass %s: volumeBindingMode %s: open-local provisions only WaitForFirstConsumer volumes; simulated as WaitForFirstConsumer", sc.Name, mode)
		}
	}
}

type nodeCapacity struct {
	res nodecap.Result
	err error
}

// addNodes fills the ledger. Nodes cloned from one template share one
// computation, and its notes are given once.
func (r *runner) addNodes() {
	cache := map[*nodeLocalStorage]*nodeCapacity{}
	for _, e := range r.set.nodes {
		node := e.node
		switch {
		case node == nil:
			node = implicitNode(e.name)
		case node.Labels[hostnameLabel] == "":
			node = node.DeepCopy()
			if node.Labels == nil {
				node.Labels = map[string]string{}
			}
			node.Labels[hostnameLabel] = node.Name
		}
		if node.Spec.Unschedulable || len(node.Spec.Taints) > 0 {
			r.tainted = true
		}
		r.nodes = append(r.nodes, node)
		if e.nls == nil {
			r.l.SetNode(e.name, core.NodeCapacity{})
			continue
		}
		c, ok := cache[e.nls]
		if !ok {
			c = r.compute(e)
			cache[e.nls] = c
		}
		if c.err != nil {
			r.l.SetNode(e.name, core.NodeCapacity{})
			continue
		}
		r.setCapacity(e.name, c.res)
	}
}

func (r *runner) compute(e *nodeEntry) *nodeCapacity {
	subject := "node " + e.name
	if e.template != "" {
		subject = "nodes generated from " + e.template
	}
	subject += ": NodeLocalStorage " + e.nls.Metadata.Name
	ns, notes := e.nls.storage()
	for _, n := range notes {
		r.note("%s: %s", subject, n)
	}
	res, err := nodecap.Compute(ns, e.nls.listConfig(), e.nls.Metadata.Annotations[core.ReservedAnnotation], nodecap.Options{})
	if err != nil {
		r.note("%s: %v; the node offers no Open-Local storage", subject, err)
		return &nodeCapacity{err: err}
	}
	for _, sk := range res.Skipped {
		r.note("%s: %s %s is not offered: %s", subject, kindWord(sk.Kind), sk.Name, sk.Reason)
	}
	for _, vg := range res.Capacity.VGs {
		if need := existingCharge(res, vg); need > vg.AllocatableBytes {
			r.note("%s: volume group %s: Open-Local's existing volumes take %s, more than the %s it offers", subject, vg.Name, humanBytes(need), humanBytes(vg.AllocatableBytes))
		}
	}
	return &nodeCapacity{res: res}
}

// existingCharge is what the ledger charges for the VG's existing volumes.
func existingCharge(res nodecap.Result, vg core.VGCapacity) int64 {
	var need int64
	for _, ev := range res.Existing {
		if ev.VG == vg.Name {
			need += core.LVSize(ev.SizeBytes, vg.ExtentSizeBytes, 1)
		}
	}
	return need
}

// setCapacity gives the ledger a node and charges the LVs Open-Local already
// has there as committed claims. They are charged against room for all of
// them before the real capacity is set, so that a VG whose existing volumes
// exceed what it offers shows up as over-committed instead of losing claims.
func (r *runner) setCapacity(node string, res nodecap.Result) {
	r.largest.add(res.Capacity)
	r.existingLVs[node] = res.Existing
	if len(res.Existing) == 0 {
		r.l.SetNode(node, res.Capacity)
		return
	}
	roomy := res.Capacity
	roomy.VGs = append([]core.VGCapacity(nil), res.Capacity.VGs...)
	for i := range roomy.VGs {
		roomy.VGs[i].AllocatableBytes = max(roomy.VGs[i].AllocatableBytes, existingCharge(res, roomy.VGs[i]))
	}
	r.l.SetNode(node, roomy)
	for _, ev := range res.Existing {
		id := core.ClaimID(existingPrefix + node + "/" + ev.VG + "/" + ev.Name)
		if err := r.l.Reserve(node, core.ClaimCharge{ID: id, Kind: core.KindLVM, VG: ev.VG, Bytes: ev.SizeBytes}); err != nil {
			r.note("node %s: existing volume %s/%s: %v", node, ev.VG, ev.Name, err)
			continue
		}
		if err := r.l.Commit(id); err != nil {
			r.note("node %s: existing volume %s/%s: %v", node, ev.VG, ev.Name, err)
		}
		r.existing[node+"\x00"+ev.VG]++
	}
	r.l.SetNode(node, res.Capacity)
}

func (m *largest) add(c core.NodeCapacity) {
	for _, vg := range c.VGs {
		m.vg = max(m.vg, vg.AllocatableBytes)
		m.vgNamed[vg.Name] = max(m.vgNamed[vg.Name], vg.AllocatableBytes)
	}
	for _, d := range c.Devices {
		m.device[d.Media] = max(m.device[d.Media], d.SizeBytes)
		m.device[""] = max(m.device[""], d.SizeBytes)
	}
	for _, d := range c.MountPoints {
		m.mount[d.Media] = max(m.mount[d.Media], d.SizeBytes)
		m.mount[""] = max(m.mount[""], d.SizeBytes)
	}
}

// neverFits explains the volumes of req that exceed every resource of their
// kind in the cluster ("" when each could fit on an empty node).
func (r *runner) neverFits(req core.PodRequest) string {
	var out []string
	for _, v := range req.Volumes {
		label := r.claimLabel[v.Claim]
		switch v.Kind {
		case core.VolumeLVM:
			if v.VG != "" {
				size, ok := r.largest.vgNamed[v.VG]
				switch {
				case !ok:
					out = append(out, fmt.Sprintf("%s needs volume group %s, which no node offers", label, v.VG))
				case v.Bytes > size:
					out = append(out, fmt.Sprintf("%s requests %s, more than volume group %s offers on any node (%s)", label, humanBytes(v.Bytes), v.VG, humanBytes(size)))
				}
			} else if v.Bytes > r.largest.vg {
				out = append(out, fmt.Sprintf("%s requests %s, more than any volume group offers (largest: %s)", label, humanBytes(v.Bytes), humanBytes(r.largest.vg)))
			}
		case core.VolumeDevice, core.VolumeMountPoint:
			sizes, word := r.largest.device, "device"
			if v.Kind == core.VolumeMountPoint {
				sizes, word = r.largest.mount, "mount point"
			}
			size, ok := sizes[v.Media]
			article, medium := "a ", ""
			if v.Media != "" {
				article, medium = "an ", string(v.Media)+" " // "an ssd", "an hdd"
			}
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s needs %s%s%s, and no node offers one", label, article, medium, word))
			case v.Bytes > size:
				out = append(out, fmt.Sprintf("%s requests %s, more than any %s%s offers (largest: %s)", label, humanBytes(v.Bytes), medium, word, humanBytes(size)))
			}
		}
	}
	return strings.Join(out, "; ")
}

func kindWord(k core.ResourceKind) string {
	switch k {
	case core.KindLVM:
		return "volume group"
	case core.KindDevice:
		return "device"
	case core.KindMountPoint:
		return "mount point"
	}
	return k.String()
}

func podKey(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

func (r *runner) placePod(pod *corev1.Pod, res *Result) {
	key := podKey(pod)
	req, err := r.podRequest(pod)
	if err != nil {
		res.Unschedulable = append(res.Unschedulable, Unschedulable{Pod: key, Reason: err.Error()})
		return
	}
	if len(req.Volumes) == 0 {
		r.note("skipping Pod %s: it has no Open-Local volume", key)
		return
	}
	var a core.Assignment
	if r.constrained(pod) {
		a, err = r.placeAmong(pod, req)
	} else {
		var pr core.PlaceResult
		pr, err = r.e.Place(req, r.opt.Strategy, core.PlaceOptions{Sample: r.sample, Start: r.next})
		r.next = pr.Next
		a = pr.Assignment
	}
	if err != nil {
		reason := err.Error()
		var ue *core.UnschedulableError
		if errors.As(err, &ue) {
			if hint := r.neverFits(req); hint != "" {
				reason += "; " + hint
			}
		}
		res.Unschedulable = append(res.Unschedulable, Unschedulable{Pod: key, Reason: reason})
		return
	}
	p := Placement{Pod: key, Node: a.Node, Volumes: make([]PlacedVolume, 0, len(req.Volumes))}
	for _, v := range req.Volumes {
		for _, va := range a.Volumes {
			if va.Claim == v.Claim {
				p.Volumes = append(p.Volumes, PlacedVolume{Claim: string(va.Claim), VG: va.VG, Device: va.Device, Bytes: va.Charged})
				if _, ok := r.claimPod[va.Claim]; !ok {
					r.claimPod[va.Claim] = key
				}
				break
			}
		}
	}
	res.Placements = append(res.Placements, p)
}

// constrained reports whether kube-scheduler's own filters may reject some
// node for this pod, so that the candidates must be narrowed first.
func (r *runner) constrained(pod *corev1.Pod) bool {
	if r.tainted || pod.Spec.NodeName != "" || len(pod.Spec.NodeSelector) > 0 {
		return true
	}
	a := pod.Spec.Affinity
	return a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil
}

// admits applies the node filters kube-scheduler runs before storage, in its
// order (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity) so that a
// node is counted under the reason kube-scheduler would give. It returns ""
// or that reason.
func admits(pod *corev1.Pod, aff nodeaffinity.RequiredNodeAffinity, node *corev1.Node) (string, error) {
	logger := klog.Background()
	if node.Spec.Unschedulable {
		cordon := corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}
		if !tolerates(logger, pod.Spec.Tolerations, &cordon) {
			return reasonUnschedulable, nil
		}
	}
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != node.Name {
		return reasonNodeName, nil
	}
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(logger, pod.Spec.Tolerations, t) {
			return fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value), nil
		}
	}
	ok, err := aff.Match(node)
	if err != nil {
		return "", err
	}
	if !ok {
		return reasonAffinity, nil
	}
	return "", nil
}

func tolerates(logger klog.Logger, tolerations []corev1.Toleration, t *corev1.Taint) bool {
	for i := range tolerations {
		if tolerations[i].ToleratesTaint(logger, t, false) {
			return true
		}
	}
	return false
}

// placeAmong is core's Place over the nodes kube-scheduler's other filters
// admit: the same sampling, the same tie-break (first found), starting at the
// rotation point, which it moves past the nodes it examined.
func (r *runner) placeAmong(pod *corev1.Pod, req core.PodRequest) (core.Assignment, error) {
	aff := nodeaffinity.GetRequiredNodeAffinity(pod)
	total := len(r.nodes)
	reasons := map[string]int{}
	found, bestScore := 0, -1
	var best core.Assignment
	examined := 0
	for examined < total {
		node := r.nodes[(r.next+examined)%total]
		examined++
		why, err := admits(pod, aff, node)
		if err != nil {
			return core.Assignment{}, fmt.Errorf("spec.affinity.nodeAffinity: %v", err)
		}
		if why != "" {
			reasons[why]++
			continue
		}
		a, err := r.e.Fit(node.Name, req, r.opt.Strategy)
		if err != nil {
			var u *core.Unfit
			if errors.As(err, &u) {
				reasons[u.Reason]++
			} else {
				reasons[err.Error()]++
			}
			continue
		}
		found++
		if a.Score > bestScore {
			bestScore = a.Score
			best = core.Assignment{Node: a.Node, Score: a.Score, Volumes: append([]core.VolumeAssignment(nil), a.Volumes...)}
		}
		if r.sample > 0 && found >= r.sample {
			break
		}
	}
	if total > 0 {
		r.next = (r.next + examined) % total
	}
	if found == 0 {
		return core.Assignment{}, &core.UnschedulableError{Nodes: total, Reasons: reasons}
	}
	if err := r.l.Reserve(best.Node, best.Charges()...); err != nil {
		return core.Assignment{}, fmt.Errorf("reserving the chosen node %s: %w", best.Node, err)
	}
	return best, nil
}

// podRequest collects a pod's Open-Local volumes. Volumes of other drivers
// are left out; every problem with an Open-Local volume is reported.
func (r *runner) podRequest(pod *corev1.Pod) (core.PodRequest, error) {
	req := core.PodRequest{Name: podKey(pod)}
	var problems []string
	seen := map[core.ClaimID]bool{}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		var (
			vr    core.VolumeRequest
			ours  bool
			err   error
			label string
		)
		switch {
		case v.PersistentVolumeClaim != nil:
			key := pod.Namespace + "/" + v.PersistentVolumeClaim.ClaimName
			label = "persistentvolumeclaim " + key
			pe, ok := r.set.pvcs[key]
			if !ok {
				err = fmt.Errorf("persistentvolumeclaim %s not found", key)
				break
			}
			vr, ours, err = r.fromPVC(pe.pvc)
		case v.Ephemeral != nil:
			t := v.Ephemeral.VolumeClaimTemplate
			if t == nil {
				err = errors.New("ephemeral.volumeClaimTemplate is required")
				break
			}
			// A generic ephemeral volume is a PVC named <pod>-<volume>.
			pvc := &corev1.PersistentVolumeClaim{Spec: *t.Spec.DeepCopy()}
			pvc.Name = pod.Name + "-" + v.Name
			pvc.Namespace = pod.Namespace
			label = "persistentvolumeclaim " + pvc.Namespace + "/" + pvc.Name
			vr, ours, err = r.fromPVC(pvc)
		case v.CSI != nil:
			vr, ours, err = volumereq.FromInlineVolume(pod, v)
			label = "inline volume " + string(vr.Claim)
		default:
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("volume %s: %v", v.Name, err))
			continue
		}
		if !ours || seen[vr.Claim] {
			continue
		}
		seen[vr.Claim] = true
		r.claimLabel[vr.Claim] = label
		req.Volumes = append(req.Volumes, vr)
	}
	if len(problems) > 0 {
		return core.PodRequest{}, errors.New(strings.Join(problems, "; "))
	}
	return req, nil
}

// fromPVC resolves a PVC's class; ours is false for classes of other provisioners.
func (r *runner) fromPVC(pvc *corev1.PersistentVolumeClaim) (core.VolumeRequest, bool, error) {
	key := pvc.Namespace + "/" + pvc.Name
	name, explicit := volumereq.StorageClassName(pvc)
	var sc *storagev1.StorageClass
	switch {
	case !explicit:
		if r.defaultClass == nil {
			return core.VolumeRequest{}, false, fmt.Errorf("persistentvolumeclaim %s names no storageClassName and no StorageClass is marked default", key)
		}
		sc = r.defaultClass
	case name == "":
		// Bound to a pre-created PV of no class: not provisioned by anyone.
		return core.VolumeRequest{}, false, nil
	default:
		i, ok := r.set.classIdx[name]
		if !ok {
			return core.VolumeRequest{}, false, fmt.Errorf("persistentvolumeclaim %s: storageclass %q not found", key, name)
		}
		sc = r.set.classes[i]
	}
	if !volumereq.IsOpenLocalDriver(sc.Provisioner) {
		return core.VolumeRequest{}, false, nil
	}
	vr, err := volumereq.FromPVC(pvc, sc)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "persistentvolumeclaim ") {
			err = fmt.Errorf("persistentvolumeclaim %s: %w", key, err)
		}
		return core.VolumeRequest{}, true, err
	}
	if (pvc.Spec.DataSource != nil || pvc.Spec.DataSourceRef != nil) && !r.noted["datasource:"+key] {
		r.noted["datasource:"+key] = true
		r.note("PersistentVolumeClaim %s: dataSource is not simulated; placed as a new empty volume", key)
	}
	return vr, true, nil
}

// report lists every node's resources with their figures after placement.
func (r *runner) report() []ResourceReport {
	type resKey struct {
		node, name string
		kind       core.ResourceKind
	}
	holders := map[resKey]map[string]bool{}
	for _, id := range r.l.ClaimIDs() {
		pod, ok := r.claimPod[id]
		if !ok {
			continue
		}
		ci, _ := r.l.Claim(id)
		k := resKey{ci.Node, ci.VG, ci.Kind}
		if ci.Kind != core.KindLVM {
			k.name = ci.Device
		}
		if holders[k] == nil {
			holders[k] = map[string]bool{}
		}
		holders[k][pod] = true
	}
	pods := make(map[resKey][]string, len(holders))
	for k, set := range holders {
		list := make([]string, 0, len(set))
		for p := range set {
			list = append(list, p)
		}
		sort.Strings(list)
		pods[k] = list
	}
	var out []ResourceReport
	for _, node := range r.l.NodeNames() {
		u, _ := r.l.Node(node)
		if len(u.VGs)+len(u.Devices)+len(u.MountPoints) == 0 {
			out = append(out, ResourceReport{Node: node})
			continue
		}
		for _, vg := range u.VGs {
			out = append(out, ResourceReport{
				Node: node, Kind: core.KindLVM, Name: vg.Name,
				AllocatableBytes: vg.AllocatableBytes, RequestedBytes: vg.UsedBytes, FreeBytes: vg.FreeBytes(),
				Pods: pods[resKey{node, vg.Name, core.KindLVM}], ExistingVolumes: r.existing[node+"\x00"+vg.Name],
			})
		}
		for _, group := range []struct {
			kind core.ResourceKind
			list []core.ExclusiveUsage
		}{{core.KindDevice, u.Devices}, {core.KindMountPoint, u.MountPoints}} {
			for _, d := range group.list {
				rr := ResourceReport{Node: node, Kind: group.kind, Name: d.Name, Media: d.Media, AllocatableBytes: d.SizeBytes, FreeBytes: d.SizeBytes}
				if d.Owner != "" {
					rr.RequestedBytes, rr.FreeBytes = d.SizeBytes, 0
					rr.Pods = pods[resKey{node, d.Name, group.kind}]
				}
				out = append(out, rr)
			}
		}
	}
	return out
}
