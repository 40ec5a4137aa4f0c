package core

import (
	"fmt"
	"sort"
	"strings"
)

// VolumeKind is what a pod's volume asks for.
type VolumeKind uint8

const (
	// VolumeLVM is an LV in a pinned or automatically chosen VG.
	VolumeLVM VolumeKind = iota + 1
	// VolumeDevice is a whole device of a media type.
	VolumeDevice
	// VolumeMountPoint is a whole mount point of a media type.
	VolumeMountPoint
	// VolumeSnapshotRestore mounts an existing read-only snapshot: it takes no
	// capacity but must land on the node holding the snapshot.
	VolumeSnapshotRestore
)

func (k VolumeKind) String() string {
	switch k {
	case VolumeLVM:
		return "LVM"
	case VolumeDevice:
		return "Device"
	case VolumeMountPoint:
		return "MountPoint"
	case VolumeSnapshotRestore:
		return "SnapshotRestore"
	}
	return fmt.Sprintf("VolumeKind(%d)", uint8(k))
}

// VolumeRequest is one volume of a pod.
type VolumeRequest struct {
	Claim ClaimID
	Kind  VolumeKind
	// VG pins the volume group (LVM); "" lets placement choose.
	VG string
	// Media is required for Device and MountPoint volumes.
	Media MediaType
	Bytes int64
	// Striped asks for an LV striped over every PV of its VG.
	Striped bool
	// Node, when set, is the only node the volume can use: a snapshot restore
	// or clone must stay with its source.
	Node string
}

// PodRequest is the set of volumes one pod needs on the same node.
type PodRequest struct {
	Name    string
	Volumes []VolumeRequest
}

// Strategy chooses among feasible nodes.
type Strategy uint8

const (
	// Binpack fills nodes (and VGs) that are already used.
	Binpack Strategy = iota + 1
	// Spread prefers the emptiest nodes.
	Spread
)

// ParseStrategy accepts "binpack" and "spread".
func ParseStrategy(s string) (Strategy, error) {
	switch strings.ToLower(s) {
	case "binpack":
		return Binpack, nil
	case "spread":
		return Spread, nil
	}
	return 0, &InvalidValueError{Field: "strategy", Value: s, Accepted: []string{"binpack", "spread"}}
}

func (s Strategy) String() string {
	if s == Spread {
		return "spread"
	}
	return "binpack"
}

// MaxScore is the best score a node gets (the scheduling framework's scale).
const MaxScore = 100

// VolumeAssignment is where one volume goes on a node.
type VolumeAssignment struct {
	Claim ClaimID
	Kind  VolumeKind
	VG    string
	// Device is the device path or mount path of a Device/MountPoint volume.
	Device string
	// Bytes is the requested size; Charged what the ledger takes for it.
	Bytes   int64
	Charged int64
	Stripes int
	// Existing is set when the claim is already charged on this node.
	Existing bool
}

// Assignment is a feasible placement of a pod on a node with its score.
type Assignment struct {
	Node    string
	Volumes []VolumeAssignment
	Score   int
}

// Charges returns the ledger charges that reserve the assignment (volumes
// already charged and snapshot restores need none).
func (a Assignment) Charges() []ClaimCharge {
	out := make([]ClaimCharge, 0, len(a.Volumes))
	for _, v := range a.Volumes {
		if v.Existing || v.Kind == VolumeSnapshotRestore {
			continue
		}
		c := ClaimCharge{ID: v.Claim, Bytes: v.Bytes, Stripes: v.Stripes}
		switch v.Kind {
		case VolumeLVM:
			c.Kind, c.VG = KindLVM, v.VG
		case VolumeDevice:
			c.Kind, c.Device = KindDevice, v.Device
		case VolumeMountPoint:
			c.Kind, c.Device = KindMountPoint, v.Device
		}
		out = append(out, c)
	}
	return out
}

// Unfit says why a pod cannot go on a node. Reason is a short, stable phrase
// (so that kube-scheduler can group nodes by it); Detail has the numbers.
type Unfit struct {
	Node   string
	Reason string
	Detail string
}

func (u *Unfit) Error() string {
	if u.Detail == "" {
		return u.Reason
	}
	return u.Reason + ": " + u.Detail
}

// Stable reasons.
const (
	ReasonNoStorage       = "node has no Open-Local storage"
	ReasonInsufficientLVM = "Insufficient LVM storage"
	ReasonNoSuchVG        = "volume group not found on node"
	ReasonInsufficientDev = "Insufficient Device storage"
	ReasonInsufficientMP  = "Insufficient MountPoint storage"
	ReasonWrongNode       = "volume is bound to another node"
	ReasonInvalidRequest  = "invalid volume request"
)

// fitScratch holds per-evaluation working state, reused to avoid allocation.
type fitScratch struct {
	vgUsed  []int64 // extra bytes this pod puts on each VG of the node
	taken   []bool  // devices taken by this pod
	takenMP []bool
	order   []int
	out     []VolumeAssignment
}

// Evaluator evaluates pods against a ledger without allocating on the hot
// path. It is bound to one ledger and, like it, not safe for concurrent use.
type Evaluator struct {
	l  *Ledger
	sc fitScratch
}

// NewEvaluator returns an evaluator over l.
func NewEvaluator(l *Ledger) *Evaluator { return &Evaluator{l: l} }

// Fit decides whether pod fits on node and, if so, where each volume goes and
// the node's score under strategy. The returned Assignment's Volumes slice is
// freshly allocated and owned by the caller.
func (l *Ledger) Fit(node string, pod PodRequest, s Strategy) (Assignment, error) {
	e := Evaluator{l: l}
	a, err := e.fit(node, pod, s)
	if err != nil {
		return Assignment{}, err
	}
	a.Volumes = append([]VolumeAssignment(nil), a.Volumes...)
	return a, nil
}

// Fit is Ledger.Fit reusing the evaluator's buffers: the returned Volumes
// slice is only valid until the next call.
func (e *Evaluator) Fit(node string, pod PodRequest, s Strategy) (Assignment, error) {
	return e.fit(node, pod, s)
}

func (e *Evaluator) fit(node string, pod PodRequest, s Strategy) (Assignment, error) {
	i, ok := e.l.index[node]
	if !ok {
		return Assignment{}, &Unfit{Node: node, Reason: ReasonNoStorage}
	}
	return e.fitIndex(i, pod, s)
}

func (e *Evaluator) fitIndex(ni int, pod PodRequest, s Strategy) (Assignment, error) {
	l := e.l
	n := l.nodes[ni]
	sc := &e.sc
	sc.vgUsed = resetInt64(sc.vgUsed, len(n.vgs))
	sc.taken = resetBool(sc.taken, len(n.devs))
	sc.takenMP = resetBool(sc.takenMP, len(n.mps))
	sc.out = sc.out[:0]

	// Pass 1: volumes already charged, restores, and node pins.
	for vi := range pod.Volumes {
		v := &pod.Volumes[vi]
		if v.Node != "" && v.Node != n.name {
			return Assignment{}, &Unfit{Node: n.name, Reason: ReasonWrongNode, Detail: fmt.Sprintf("%s must stay on node %s", v.Claim, v.Node)}
		}
		if ci, ok := l.claims[v.Claim]; ok && v.Claim != "" {
			if ci.Node != n.name {
				return Assignment{}, &Unfit{Node: n.name, Reason: ReasonWrongNode, Detail: fmt.Sprintf("%s is on node %s", v.Claim, ci.Node)}
			}
			// Already charged here: account for it as it is.
			sc.out = append(sc.out, VolumeAssignment{Claim: v.Claim, Kind: v.Kind, VG: ci.VG, Device: ci.Device, Bytes: ci.Bytes, Charged: ci.Charged, Stripes: ci.Stripes, Existing: true})
			continue
		}
		if v.Bytes < 0 {
			return Assignment{}, &Unfit{Node: n.name, Reason: ReasonInvalidRequest, Detail: fmt.Sprintf("%s: negative size", v.Claim)}
		}
		if v.Kind == VolumeSnapshotRestore {
			sc.out = append(sc.out, VolumeAssignment{Claim: v.Claim, Kind: v.Kind, VG: v.VG, Bytes: v.Bytes})
		}
	}

	// Pass 2: pinned LVM volumes.
	for vi := range pod.Volumes {
		v := &pod.Volumes[vi]
		if v.Kind != VolumeLVM || v.VG == "" || e.isExisting(v.Claim) {
			continue
		}
		k := -1
		for j := range n.vgs {
			if n.vgs[j].Name == v.VG {
				k = j
				break
			}
		}
		if k < 0 {
			return Assignment{}, &Unfit{Node: n.name, Reason: ReasonNoSuchVG, Detail: fmt.Sprintf("%s needs volume group %s", v.Claim, v.VG)}
		}
		vg := &n.vgs[k]
		stripes := stripesFor(v, vg)
		c := LVSize(v.Bytes, vg.ExtentSizeBytes, stripes)
		if vg.used+sc.vgUsed[k]+c > vg.AllocatableBytes {
			return Assignment{}, &Unfit{Node: n.name, Reason: ReasonInsufficientLVM, Detail: fmt.Sprintf("volume group %s: requested %s, free %s", vg.Name, FormatSize(c), FormatSize(max(0, vg.AllocatableBytes-vg.used-sc.vgUsed[k])))}
		}
		sc.vgUsed[k] += c
		sc.out = append(sc.out, VolumeAssignment{Claim: v.Claim, Kind: VolumeLVM, VG: vg.Name, Bytes: v.Bytes, Charged: c, Stripes: stripes})
	}

	// Pass 3: unpinned LVM volumes, largest first, each to the VG the
	// strategy prefers (binpack: least free that fits; spread: most free).
	sc.order = sc.order[:0]
	for vi := range pod.Volumes {
		v := &pod.Volumes[vi]
		if v.Kind == VolumeLVM && v.VG == "" && !e.isExisting(v.Claim) {
			sc.order = append(sc.order, vi)
		}
	}
	if len(sc.order) > 0 {
		if len(n.vgs) == 0 {
			return Assignment{}, &Unfit{Node: n.name, Reason: ReasonInsufficientLVM, Detail: "no volume group"}
		}
		sortByBytesDesc(sc.order, pod.Volumes)
		if !e.assignLVM(n, pod, s, 0) {
			return Assignment{}, &Unfit{Node: n.name, Reason: ReasonInsufficientLVM, Detail: e.lvmShortfall(n, pod)}
		}
	}

	// Pass 4: devices and mount points by media: requests ascending, each the
	// smallest free resource that holds it (optimal for this matching).
	for _, kind := range [2]VolumeKind{VolumeDevice, VolumeMountPoint} {
		sc.order = sc.order[:0]
		for vi := range pod.Volumes {
			v := &pod.Volumes[vi]
			if v.Kind == kind && !e.isExisting(v.Claim) {
				sc.order = append(sc.order, vi)
			}
		}
		if len(sc.order) == 0 {
			continue
		}
		sortByBytesAsc(sc.order, pod.Volumes)
		list, taken, reason := n.devs, sc.taken, ReasonInsufficientDev
		if kind == VolumeMountPoint {
			list, taken, reason = n.mps, sc.takenMP, ReasonInsufficientMP
		}
		for _, vi := range sc.order {
			v := &pod.Volumes[vi]
			best := -1
			for j := range list {
				d := &list[j]
				if d.owner != "" || taken[j] || d.SizeBytes < v.Bytes || (v.Media != "" && d.Media != v.Media) {
					continue
				}
				if best < 0 || d.SizeBytes < list[best].SizeBytes {
					best = j
				}
			}
			if best < 0 {
				return Assignment{}, &Unfit{Node: n.name, Reason: reason, Detail: fmt.Sprintf("no free %s %s of at least %s for %s", mediaName(v.Media), strings.ToLower(kind.String()), FormatSize(v.Bytes), v.Claim)}
			}
			taken[best] = true
			sc.out = append(sc.out, VolumeAssignment{Claim: v.Claim, Kind: kind, Device: list[best].Name, Bytes: v.Bytes, Charged: list[best].SizeBytes})
		}
	}

	a := Assignment{Node: n.name, Volumes: sc.out}
	a.Score = e.score(n, s)
	return a, nil
}

func mediaName(m MediaType) string {
	if m == "" {
		return "any-media"
	}
	return string(m)
}

func (e *Evaluator) isExisting(id ClaimID) bool {
	if id == "" {
		return false
	}
	_, ok := e.l.claims[id]
	return ok
}

func stripesFor(v *VolumeRequest, vg *vgState) int {
	if v.Striped && vg.PVCount > 1 {
		return vg.PVCount
	}
	return 1
}

// assignLVM places sc.order[k:] greedily by strategy, backtracking over the
// other VGs when the greedy choice leaves a later volume without room. Pods have
// few volumes and nodes few VGs, so the search stays tiny; greedy succeeds at
// the first try in the common case.
func (e *Evaluator) assignLVM(n *nodeState, pod PodRequest, s Strategy, k int) bool {
	sc := &e.sc
	if k == len(sc.order) {
		return true
	}
	v := &pod.Volumes[sc.order[k]]
	// Candidate VGs in preference order, without allocating: try the preferred
	// one, then the rest by index. Preference: binpack least free, spread most free.
	tried := uint64(0)
	for attempt := 0; attempt < len(n.vgs) && attempt < 64; attempt++ {
		best := -1
		var bestFree int64
		for j := range n.vgs {
			if tried&(1<<uint(j)) != 0 || j >= 64 {
				continue
			}
			vg := &n.vgs[j]
			c := LVSize(v.Bytes, vg.ExtentSizeBytes, stripesFor(v, vg))
			free := vg.AllocatableBytes - vg.used - sc.vgUsed[j]
			if c > free {
				continue
			}
			if best < 0 || (s == Spread && free > bestFree) || (s != Spread && free < bestFree) {
				best, bestFree = j, free
			}
		}
		if best < 0 {
			return false
		}
		tried |= 1 << uint(best)
		vg := &n.vgs[best]
		stripes := stripesFor(v, vg)
		c := LVSize(v.Bytes, vg.ExtentSizeBytes, stripes)
		sc.vgUsed[best] += c
		mark := len(sc.out)
		sc.out = append(sc.out, VolumeAssignment{Claim: v.Claim, Kind: VolumeLVM, VG: vg.Name, Bytes: v.Bytes, Charged: c, Stripes: stripes})
		if e.assignLVM(n, pod, s, k+1) {
			return true
		}
		sc.out = sc.out[:mark]
		sc.vgUsed[best] -= c
	}
	return false
}

// lvmShortfall explains an LVM failure with the figures of the roomiest VG.
func (e *Evaluator) lvmShortfall(n *nodeState, pod PodRequest) string {
	var need int64
	for _, vi := range e.sc.order {
		need += pod.Volumes[vi].Bytes
	}
	best, bestFree := "", int64(-1)
	for j := range n.vgs {
		free := n.vgs[j].AllocatableBytes - n.vgs[j].used - e.sc.vgUsed[j]
		if free > bestFree {
			best, bestFree = n.vgs[j].Name, free
		}
	}
	return fmt.Sprintf("requested %s in total, largest free volume group %s has %s", FormatSize(need), best, FormatSize(max(0, bestFree)))
}

// score rates the node after this pod (sc holds the pod's additions).
// LVM: the fraction of each VG the pod uses that is requested after the pod
// (binpack) or left free (spread) — the VG's whole usage, not only this pod's
// request. Devices and mount points: how snugly the request fits the chosen
// resource (small waste scores high) under both strategies, as open-local does.
// The result is the average over the pod's volumes, on 0..MaxScore.
func (e *Evaluator) score(n *nodeState, s Strategy) int {
	sc := &e.sc
	var sum float64
	var count int
	for j := range n.vgs {
		vg := &n.vgs[j]
		// Only VGs this pod uses count; existing claims make no difference to
		// the choice so they are included via the VG's usage.
		if sc.vgUsed[j] == 0 {
			continue
		}
		ratio := 1.0
		if vg.AllocatableBytes > 0 {
			ratio = float64(vg.used+sc.vgUsed[j]) / float64(vg.AllocatableBytes)
		}
		if ratio > 1 {
			ratio = 1
		}
		if s == Spread {
			ratio = 1 - ratio
		}
		sum += ratio
		count++
	}
	for _, v := range sc.out {
		if v.Existing || (v.Kind != VolumeDevice && v.Kind != VolumeMountPoint) || v.Charged <= 0 {
			continue
		}
		sum += float64(v.Bytes) / float64(v.Charged)
		count++
	}
	if count == 0 {
		// Nothing new to place: every node that fits is as good as another.
		return MaxScore
	}
	return int(sum / float64(count) * MaxScore)
}

func resetInt64(b []int64, n int) []int64 {
	if cap(b) < n {
		return make([]int64, n)
	}
	b = b[:n]
	for i := range b {
		b[i] = 0
	}
	return b
}

func resetBool(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	b = b[:n]
	for i := range b {
		b[i] = false
	}
	return b
}

// insertion sorts: pods have a handful of volumes, and sort.Slice would allocate.
func sortByBytesDesc(idx []int, vols []VolumeRequest) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && vols[idx[j]].Bytes > vols[idx[j-1]].Bytes; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
}

func sortByBytesAsc(idx []int, vols []VolumeRequest) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && vols[idx[j]].Bytes < vols[idx[j-1]].Bytes; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
}

// NodeResult is the verdict for one node.
type NodeResult struct {
	Node  string
	Fits  bool
	Score int
	// Reason is set when the pod does not fit.
	Reason *Unfit
}

// FilterAndScore evaluates pod on every named node (unknown nodes do not fit),
// in the order given: what a scheduler extender's filter and prioritize need.
// Results are appended to out (pass nil or a reused slice).
func (e *Evaluator) FilterAndScore(nodes []string, pod PodRequest, s Strategy, out []NodeResult) []NodeResult {
	for _, name := range nodes {
		a, err := e.fit(name, pod, s)
		if err != nil {
			u, _ := err.(*Unfit)
			out = append(out, NodeResult{Node: name, Reason: u})
			continue
		}
		out = append(out, NodeResult{Node: name, Fits: true, Score: a.Score})
	}
	return out
}

// PlaceOptions tune Place.
type PlaceOptions struct {
	// Sample stops the search once this many feasible nodes were found (0 =
	// all nodes), as kube-scheduler's percentageOfNodesToScore does.
	Sample int
	// Start is the node index the search begins at; Place returns the next
	// start so successive pods rotate through the cluster like kube-scheduler.
	Start int
}

// PlaceResult is Place's outcome.
type PlaceResult struct {
	Assignment Assignment
	// Next is the start for the following pod.
	Next int
	// Evaluated is how many nodes were examined.
	Evaluated int
	// Reasons counts, for an unschedulable pod, the nodes per reason.
	Reasons map[string]int
}

// Place chooses the best node for pod among the ledger's nodes and reserves
// its volumes there. Ties go to the node found first. An unschedulable pod
// returns an error summarising the reasons (like kube-scheduler's "0/N nodes
// are available: ...") and reserves nothing.
func (e *Evaluator) Place(pod PodRequest, s Strategy, opt PlaceOptions) (PlaceResult, error) {
	l := e.l
	total := len(l.nodes)
	res := PlaceResult{Next: opt.Start}
	if total == 0 {
		return res, fmt.Errorf("0/0 nodes are available")
	}
	start := opt.Start % total
	if start < 0 {
		start = 0
	}
	bestIdx, bestScore, found := -1, -1, 0
	var bestVols []VolumeAssignment
	var reasons map[string]int
	i := 0
	for ; i < total; i++ {
		ni := (start + i) % total
		a, err := e.fitIndex(ni, pod, s)
		if err != nil {
			if reasons == nil {
				reasons = map[string]int{}
			}
			if u, ok := err.(*Unfit); ok {
				reasons[u.Reason]++
			} else {
				reasons[err.Error()]++
			}
			continue
		}
		found++
		if a.Score > bestScore {
			bestIdx, bestScore = ni, a.Score
			bestVols = append(bestVols[:0], a.Volumes...)
		}
		if opt.Sample > 0 && found >= opt.Sample {
			i++
			break
		}
	}
	res.Evaluated = i
	res.Next = (start + i) % total
	if bestIdx < 0 {
		res.Reasons = reasons
		return res, &UnschedulableError{Nodes: total, Reasons: reasons}
	}
	a := Assignment{Node: l.nodes[bestIdx].name, Volumes: append([]VolumeAssignment(nil), bestVols...), Score: bestScore}
	if err := l.Reserve(a.Node, a.Charges()...); err != nil {
		// Fit and Reserve share the ledger, so this is a bug, not a user error.
		return res, fmt.Errorf("reserving the chosen node %s: %w", a.Node, err)
	}
	res.Assignment = a
	return res, nil
}

// UnschedulableError says why no node fits a pod.
type UnschedulableError struct {
	Nodes   int
	Reasons map[string]int
}

func (u *UnschedulableError) Error() string {
	keys := make([]string, 0, len(u.Reasons))
	for k := range u.Reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "0/%d nodes are available", u.Nodes)
	for i, k := range keys {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", u.Reasons[k], k)
	}
	return b.String()
}
