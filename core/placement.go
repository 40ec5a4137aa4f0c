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
	// Media selects the medium of a Device or MountPoint volume; "" accepts
	// any medium (StorageClasses normally set it).
	Media MediaType
	Bytes int64
	// Striped asks for an LV striped over every PV of its VG.
	Striped bool
	// Node, when set, is the only node the volume can use: a snapshot restore
	// or clone must stay with its source. A VolumeSnapshotRestore needs it.
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
	return appendCharges(make([]ClaimCharge, 0, len(a.Volumes)), a.Volumes)
}

func appendCharges(out []ClaimCharge, vols []VolumeAssignment) []ClaimCharge {
	for _, v := range vols {
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

// reasonCode indexes the stable reasons so that Place counts them without a map.
type reasonCode uint8

const (
	codeNone reasonCode = iota
	codeNoStorage
	codeInsufficientLVM
	codeNoSuchVG
	codeInsufficientDev
	codeInsufficientMP
	codeWrongNode
	codeInvalid
	numReasonCodes
)

var reasonText = [numReasonCodes]string{
	codeNoStorage:       ReasonNoStorage,
	codeInsufficientLVM: ReasonInsufficientLVM,
	codeNoSuchVG:        ReasonNoSuchVG,
	codeInsufficientDev: ReasonInsufficientDev,
	codeInsufficientMP:  ReasonInsufficientMP,
	codeWrongNode:       ReasonWrongNode,
	codeInvalid:         ReasonInvalidRequest,
}

// failure is why a pod does not fit a node, as plain values: Place only
// counts the reason, and the message with its figures is written only when a
// caller asks for it (Fit, FilterAndScore).
type failure struct {
	code reasonCode
	vol  int   // the volume concerned, -1 for the pod's unpinned LVM volumes as a whole
	vg   int   // the VG concerned, -1 for none
	need int64 // bytes that did not fit
	free int64 // bytes that were free
}

// podPlan is what Place works out once per pod, not once per node: the
// validity of the request, the node its volumes are bound to, the claims
// already charged, interned names and the order volumes are placed in.
type podPlan struct {
	invalid string // why the request is invalid; "" when it is valid
	// pin is -1 when any node may do, the node index every volume is bound
	// to, or -2 when the bindings disagree or name a node the ledger lacks.
	pin    int
	vols   []volPlan // per volume, in request order
	pinned []int     // pinned LVM volumes, in request order
	auto   []int     // unpinned LVM volumes, largest first
	devs   []int     // Device volumes, smallest first
	mps    []int     // MountPoint volumes, smallest first
	anyDev bool      // a Device volume accepts any medium
	anyMP  bool
	// fail is the last failure of fitNode, for unfit's message.
	fail failure
}

// volPlan is one volume as the hot path reads it.
type volPlan struct {
	bytes int64 // the request
	// c4M is the charge on a linear LV with 4 MiB extents, the common case,
	// so the hot path divides only for other geometries.
	c4M      int64
	existing *claimRec // its charge, nil when not charged yet
	vgID     int32     // the interned pinned VG, -1 when unknown
	mediaID  int32     // the interned medium, -1 unknown, anyMedia for ""
	striped  bool
	// fastGeo is the highest VG geometry on which c4M is the charge:
	// geoStriped4M for a linear volume, geoLinear4M for a striped one.
	fastGeo uint8
}

const anyMedia = -2

// choice is where one volume goes on the node being evaluated: plain
// numbers, so that evaluating a node writes no pointers.
type choice struct {
	at      int32 // VG or device position in the node's span, -1 for none
	stripes int32
	charged int64
}

// fitScratch holds per-node working state, reused to avoid allocation.
type fitScratch struct {
	vgUsed []int64  // extra bytes this pod puts on each VG of the node
	choice []choice // per volume
	taken  []bool   // devices or mount points taken by this pod
	budget int      // LVM search steps left on this node
	// exhausted is set when the search ran out of budget on this node.
	exhausted bool
	match     []int // exact matching: device -> position in the volume order, -1 when free
	visited   []bool
	byBytes   []int // device positions, smallest first
}

// Evaluator evaluates pods against a ledger without allocating on the hot
// path. It is bound to one ledger and, like it, not safe for concurrent use.
type Evaluator struct {
	l       *Ledger
	plan    podPlan
	sc      fitScratch
	best    []choice
	out     []VolumeAssignment
	charges []ClaimCharge
	// brief, when set, holds one shared detail-free Unfit per reason code.
	brief *[numReasonCodes]Unfit
}

// NewEvaluator returns an evaluator over l.
func NewEvaluator(l *Ledger) *Evaluator { return &Evaluator{l: l} }

// SetBriefReasons makes FilterAndScore report a failing node by its stable
// Reason alone: no Detail and no Node in the *Unfit, which is shared between
// nodes and calls and must not be modified. A scheduler extender sends only
// the reason, and formatting a detail per failing node is most of its cost on
// large clusters.
func (e *Evaluator) SetBriefReasons(on bool) {
	if !on {
		e.brief = nil
		return
	}
	if e.brief == nil {
		var b [numReasonCodes]Unfit
		for i := range b {
			b[i].Reason = reasonText[i]
		}
		e.brief = &b
	}
}

// Fit decides whether pod fits on node and, if so, where each volume goes and
// the node's score under strategy. The returned Assignment's Volumes slice is
// freshly allocated and owned by the caller. A failure is an *Unfit.
func (l *Ledger) Fit(node string, pod PodRequest, s Strategy) (Assignment, error) {
	e := Evaluator{l: l}
	a, err := e.Fit(node, pod, s)
	if err != nil {
		return Assignment{}, err
	}
	a.Volumes = append([]VolumeAssignment(nil), a.Volumes...)
	return a, nil
}

// Fit is Ledger.Fit reusing the evaluator's buffers: the returned Volumes
// slice is only valid until the next call.
func (e *Evaluator) Fit(node string, pod PodRequest, s Strategy) (Assignment, error) {
	ni, ok := e.l.index[node]
	if !ok {
		return Assignment{}, &Unfit{Node: node, Reason: ReasonNoStorage}
	}
	e.prepare(pod)
	score, code := e.fitNode(ni, pod, s)
	if code != codeNone {
		return Assignment{}, e.unfit(ni, pod)
	}
	e.out = e.materialize(e.out[:0], ni, pod, e.sc.choice)
	return Assignment{Node: e.l.nodes[ni].name, Volumes: e.out, Score: score}, nil
}

// volumeKindOf is the volume kind a ledger charge stands for.
func volumeKindOf(k ResourceKind) VolumeKind {
	switch k {
	case KindDevice:
		return VolumeDevice
	case KindMountPoint:
		return VolumeMountPoint
	}
	return VolumeLVM
}

// prepare fills e.plan for pod.
func (e *Evaluator) prepare(pod PodRequest) {
	l, p := e.l, &e.plan
	nv := len(pod.Volumes)
	p.invalid = ""
	p.pin = -1
	p.vols = resize(p.vols, nv)
	p.pinned, p.auto, p.devs, p.mps = p.pinned[:0], p.auto[:0], p.devs[:0], p.mps[:0]
	p.anyDev, p.anyMP = false, false
	e.sc.choice = resize(e.sc.choice, nv)
	pinName := ""
	for vi := range pod.Volumes {
		v := &pod.Volumes[vi]
		vp := &p.vols[vi]
		*vp = volPlan{bytes: v.Bytes, c4M: LVSize(v.Bytes, DefaultExtentSize, 1), vgID: -1, mediaID: -1, striped: v.Striped, fastGeo: geoStriped4M}
		if v.Striped {
			vp.fastGeo = geoLinear4M
		}
		e.sc.choice[vi] = choice{at: -1}
		if p.invalid == "" {
			p.invalid = invalidVolume(pod.Volumes, vi)
		}
		if r, ok := l.claims[v.Claim]; ok && v.Claim != "" {
			vp.existing = r
			pinName, p.pin = mergePin(pinName, p.pin, r.Node)
			if v.Node != "" {
				pinName, p.pin = mergePin(pinName, p.pin, v.Node)
			}
			continue
		}
		if v.Node != "" {
			pinName, p.pin = mergePin(pinName, p.pin, v.Node)
		}
		switch v.Kind {
		case VolumeLVM:
			if v.VG != "" {
				vp.vgID = l.lookupVGID(v.VG)
				p.pinned = append(p.pinned, vi)
			} else {
				p.auto = append(p.auto, vi)
			}
		case VolumeDevice, VolumeMountPoint:
			if v.Media == "" {
				vp.mediaID = anyMedia
			} else {
				vp.mediaID = l.lookupMediaID(v.Media)
			}
			if v.Kind == VolumeDevice {
				p.devs = append(p.devs, vi)
				p.anyDev = p.anyDev || v.Media == ""
			} else {
				p.mps = append(p.mps, vi)
				p.anyMP = p.anyMP || v.Media == ""
			}
		}
	}
	if pinName != "" && p.pin == -1 {
		if i, ok := l.index[pinName]; ok {
			p.pin = i
		} else {
			p.pin = -2
		}
	}
	sortByBytes(p.auto, pod.Volumes, true)
	sortByBytes(p.devs, pod.Volumes, false)
	sortByBytes(p.mps, pod.Volumes, false)
}

// mergePin folds one node binding into the pod's: pin stays -1 while every
// binding names the same node, and becomes -2 when two disagree.
func mergePin(name string, pin int, node string) (string, int) {
	if pin == -2 {
		return name, pin
	}
	if name == "" || name == node {
		return node, pin
	}
	return name, -2
}

// invalidVolume says what is wrong with volume vi of vols, or "".
func invalidVolume(vols []VolumeRequest, vi int) string {
	v := &vols[vi]
	if v.Claim == "" {
		return fmt.Sprintf("volume %d has no claim ID", vi)
	}
	for k := 0; k < vi; k++ {
		if vols[k].Claim == v.Claim {
			return fmt.Sprintf("claim %s appears twice", v.Claim)
		}
	}
	if v.Kind < VolumeLVM || v.Kind > VolumeSnapshotRestore {
		return fmt.Sprintf("claim %s: unknown volume kind %d", v.Claim, v.Kind)
	}
	if v.Bytes < 0 {
		return fmt.Sprintf("claim %s: negative size", v.Claim)
	}
	if v.Kind == VolumeSnapshotRestore && v.Node == "" {
		return fmt.Sprintf("claim %s: a snapshot restore needs the node of its snapshot", v.Claim)
	}
	return ""
}

// searchBudget bounds the backtracking over VGs for one pod on one node. A
// pod with a handful of unpinned LVM volumes on a node with a handful of VGs
// needs far fewer steps (4 volumes over 3 VGs: at most 121); a pathological
// request on a node with dozens of VGs is judged not to fit rather than
// stalling the scheduler. Running out never over-commits.
const searchBudget = 4096

// charge is what the volume takes from a VG, and with how many stripes:
// LVSize, without a division in the common geometry (small enough to inline).
func (v *volPlan) charge(vg *vgHot) (int64, int32) {
	if vg.geo <= v.fastGeo {
		return v.c4M, 1
	}
	return v.chargeSlow(vg)
}

func (v *volPlan) chargeSlow(vg *vgHot) (int64, int32) {
	if v.striped && vg.pvs > 1 {
		return LVSize(v.bytes, vg.extent, int(vg.pvs)), vg.pvs
	}
	return LVSize(v.bytes, vg.extent, 1), 1
}

// fitNode evaluates the prepared pod on node ni. It returns the score and
// codeNone, with sc.choice saying where each volume goes; or the reason it
// does not fit, with the figures in plan.fail. It formats nothing and
// allocates only when a scratch buffer must grow.
func (e *Evaluator) fitNode(ni int, pod PodRequest, s Strategy) (int, reasonCode) {
	p, sc, l := &e.plan, &e.sc, e.l
	if p.invalid != "" {
		return 0, e.failed(codeInvalid, -1, -1, 0, 0)
	}
	if p.pin != -1 && p.pin != ni {
		return 0, e.failed(codeWrongNode, -1, -1, 0, 0)
	}
	n := &l.nodes[ni]
	vgs := l.nodeVGs(n)
	sc.vgUsed = resetInt64(sc.vgUsed, len(vgs))

	// Pinned LVM volumes go where they are told.
	for _, vi := range p.pinned {
		vp := &p.vols[vi]
		j := -1
		for k := range vgs {
			if vgs[k].id == vp.vgID {
				j = k
				break
			}
		}
		if j < 0 {
			return 0, e.failed(codeNoSuchVG, vi, -1, 0, 0)
		}
		c, stripes := vp.charge(&vgs[j])
		if free := vgs[j].free() - sc.vgUsed[j]; c > free {
			return 0, e.failed(codeInsufficientLVM, vi, j, c, free)
		}
		sc.vgUsed[j] += c
		sc.choice[vi] = choice{at: int32(j), stripes: stripes, charged: c}
	}

	// Unpinned LVM volumes, largest first, each to the VG the strategy
	// prefers (binpack: least free that fits; spread: most free), with
	// backtracking when a greedy choice leaves a later volume without room.
	switch {
	case len(p.auto) == 1:
		// The common case needs no search: the preferred VG that fits.
		vi := p.auto[0]
		vp := &p.vols[vi]
		best := -1
		var bestKey, bestCharge int64
		var bestStripes int32
		for j := range vgs {
			c, stripes := vp.charge(&vgs[j])
			free := vgs[j].free() - sc.vgUsed[j]
			if c > free {
				continue
			}
			key := free // binpack: least free first
			if s == Spread {
				key = -free
			}
			if best < 0 || key < bestKey {
				best, bestKey, bestCharge, bestStripes = j, key, c, stripes
			}
		}
		if best < 0 {
			return 0, e.failed(codeInsufficientLVM, -1, -1, 0, 0)
		}
		sc.vgUsed[best] += bestCharge
		sc.choice[vi] = choice{at: int32(best), stripes: bestStripes, charged: bestCharge}
	case len(p.auto) > 1:
		sc.budget, sc.exhausted = searchBudget, false
		if len(vgs) == 0 || !e.assignLVM(vgs, s, 0) {
			return 0, e.failed(codeInsufficientLVM, -1, -1, 0, 0)
		}
	}

	// Devices and mount points: each the smallest free one that holds it.
	var exScore float64
	var exCount int
	if len(p.devs) > 0 {
		hot, _ := l.nodeEx(n, KindDevice)
		vi, sum := e.assignExclusive(hot, p.devs, p.anyDev)
		if vi >= 0 {
			return 0, e.failed(codeInsufficientDev, vi, -1, 0, 0)
		}
		exScore, exCount = exScore+sum, exCount+len(p.devs)
	}
	if len(p.mps) > 0 {
		hot, _ := l.nodeEx(n, KindMountPoint)
		vi, sum := e.assignExclusive(hot, p.mps, p.anyMP)
		if vi >= 0 {
			return 0, e.failed(codeInsufficientMP, vi, -1, 0, 0)
		}
		exScore, exCount = exScore+sum, exCount+len(p.mps)
	}
	return e.score(vgs, s, exScore, exCount), codeNone
}

func (e *Evaluator) failed(code reasonCode, vol, vg int, need, free int64) reasonCode {
	e.plan.fail = failure{code: code, vol: vol, vg: vg, need: need, free: free}
	return code
}

// maxSearchVGs is how many VGs of a node the unpinned-LVM search considers
// (a bit set tracks them); real nodes have one to a few.
const maxSearchVGs = 64

// assignLVM places plan.auto[k:] and reports whether it could. The first
// choice for each volume is the strategy's; the others follow in the same
// preference order. Two VGs with the same free space, extent size and PV
// count are interchangeable for what follows, so only the first of them is
// tried.
func (e *Evaluator) assignLVM(vgs []vgHot, s Strategy, k int) bool {
	p, sc := &e.plan, &e.sc
	if k == len(p.auto) {
		return true
	}
	if sc.budget <= 0 {
		sc.exhausted = true
		return false
	}
	sc.budget--
	vi := p.auto[k]
	vp := &p.vols[vi]
	nvg := min(len(vgs), maxSearchVGs)
	var tried uint64
	for {
		best := -1
		var bestFree, bestCharge int64
		var bestStripes int32
		for j := 0; j < nvg; j++ {
			if tried&(1<<uint(j)) != 0 {
				continue
			}
			c, stripes := vp.charge(&vgs[j])
			free := vgs[j].free() - sc.vgUsed[j]
			if c > free {
				tried |= 1 << uint(j) // never fits at this level
				continue
			}
			if best < 0 || (s == Spread && free > bestFree) || (s != Spread && free < bestFree) {
				best, bestFree, bestCharge, bestStripes = j, free, c, stripes
			}
		}
		if best < 0 {
			return false
		}
		tried |= 1 << uint(best)
		if k+1 == len(p.auto) {
			// The last volume: the preferred VG that fits is the answer.
			sc.vgUsed[best] += bestCharge
			sc.choice[vi] = choice{at: int32(best), stripes: bestStripes, charged: bestCharge}
			return true
		}
		if e.sameAsTried(vgs, best, tried, bestFree) {
			continue
		}
		sc.vgUsed[best] += bestCharge
		sc.choice[vi] = choice{at: int32(best), stripes: bestStripes, charged: bestCharge}
		if e.assignLVM(vgs, s, k+1) {
			return true
		}
		sc.vgUsed[best] -= bestCharge
		if sc.budget <= 0 {
			return false
		}
	}
}

// sameAsTried reports whether an already tried VG (one that fitted, and
// whose subtree failed) is interchangeable with VG j: same free space, extent
// size and PV count, so j's subtree fails too. VGs that did not fit at all
// are marked tried as well; their free space is below the request, so they
// never compare equal to j's.
func (e *Evaluator) sameAsTried(vgs []vgHot, j int, tried uint64, free int64) bool {
	for i := 0; i < len(vgs) && i < maxSearchVGs; i++ {
		if i == j || tried&(1<<uint(i)) == 0 {
			continue
		}
		if vgs[i].free()-e.sc.vgUsed[i] == free && vgs[i].extent == vgs[j].extent && vgs[i].pvs == vgs[j].pvs {
			return true
		}
	}
	return false
}

// assignExclusive gives each volume of order (smallest request first) a free
// device of list. It returns -1 and the sum of the volumes' fit ratios
// (request / device size) on success, or the volume that found none.
//
// Taking, for each request in ascending order, the smallest free device that
// holds it is optimal when every request names its medium (requests of one
// medium compete only among themselves, and for those the exchange argument
// holds). A request that accepts any medium breaks that, so when such a
// request is present and the greedy pass fails, an exact bipartite matching
// decides.
func (e *Evaluator) assignExclusive(list []exHot, order []int, anyMedia bool) (int, float64) {
	sc, p := &e.sc, &e.plan
	sc.taken = resetBool(sc.taken, len(list))
	failed := -1
	for _, vi := range order {
		best := -1
		for j := range list {
			if sc.taken[j] || !holds(&list[j], p.vols[vi].bytes, p.vols[vi].mediaID) {
				continue
			}
			if best < 0 || list[j].size < list[best].size {
				best = j
			}
		}
		if best < 0 {
			failed = vi
			break
		}
		sc.taken[best] = true
		sc.choice[vi] = choice{at: int32(best), charged: list[best].size}
	}
	if failed >= 0 && anyMedia {
		failed = e.matchExclusive(list, order)
	}
	if failed >= 0 {
		return failed, 0
	}
	var sum float64
	for _, vi := range order {
		if c := sc.choice[vi].charged; c > 0 {
			sum += float64(p.vols[vi].bytes) / float64(c)
		}
	}
	return -1, sum
}

func holds(d *exHot, bytes int64, media int32) bool {
	return !d.busy && d.size >= bytes && (media == anyMedia || d.media == media)
}

// matchExclusive finds a maximum matching of volumes to devices by augmenting
// paths (Kuhn), trying devices smallest first. It returns -1 when every
// volume got a device, else the first volume left without one.
func (e *Evaluator) matchExclusive(list []exHot, order []int) int {
	sc := &e.sc
	sc.match = resize(sc.match, len(list))
	sc.byBytes = resize(sc.byBytes, len(list))
	for j := range list {
		sc.match[j] = -1
		sc.byBytes[j] = j
	}
	for i := 1; i < len(sc.byBytes); i++ {
		for j := i; j > 0 && list[sc.byBytes[j]].size < list[sc.byBytes[j-1]].size; j-- {
			sc.byBytes[j], sc.byBytes[j-1] = sc.byBytes[j-1], sc.byBytes[j]
		}
	}
	for u := range order {
		sc.visited = resetBool(sc.visited, len(list))
		if !e.augment(list, order, u) {
			return order[u]
		}
	}
	for j, u := range sc.match {
		if u >= 0 {
			sc.choice[order[u]] = choice{at: int32(j), charged: list[j].size}
		}
	}
	return -1
}

func (e *Evaluator) augment(list []exHot, order []int, u int) bool {
	sc := &e.sc
	vi := order[u]
	for _, j := range sc.byBytes {
		if sc.visited[j] || !holds(&list[j], e.plan.vols[vi].bytes, e.plan.vols[vi].mediaID) {
			continue
		}
		sc.visited[j] = true
		if sc.match[j] < 0 || e.augment(list, order, sc.match[j]) {
			sc.match[j] = u
			return true
		}
	}
	return false
}

// score rates the node after this pod (sc holds the pod's additions).
// LVM: the fraction of each VG the pod uses that is requested after the pod
// (binpack) or left free (spread) — the VG's whole usage, not only this pod's
// request. Devices and mount points: how snugly the request fits the chosen
// resource (small waste scores high) under both strategies, as open-local
// does; exScore is the sum of those ratios over exCount volumes. The result
// is the average over the pod's new charges, on 0..MaxScore, rounded.
func (e *Evaluator) score(vgs []vgHot, s Strategy, exScore float64, exCount int) int {
	sum, count := exScore, exCount
	for j := range vgs {
		// Only VGs this pod adds to count; the claims already there weigh in
		// through the VG's usage.
		add := e.sc.vgUsed[j]
		if add == 0 {
			continue
		}
		ratio := 1.0
		if vgs[j].alloc > 0 {
			// A branch, not min(): the builtin's NaN handling costs more here.
			if r := float64(vgs[j].used+add) * vgs[j].inv; r < 1 {
				ratio = r
			}
		}
		if s == Spread {
			ratio = 1 - ratio
		}
		sum += ratio
		count++
	}
	if count == 0 {
		// Nothing new to place: every node that fits is as good as another.
		return MaxScore
	}
	// Rounded to the nearest integer: the ratios come out of floating point
	// arithmetic, and 4.999999 is meant as 5.
	if count < len(scorePerCount) {
		return int(sum*scorePerCount[count] + 0.5)
	}
	return int(sum/float64(count)*MaxScore + 0.5)
}

// scorePerCount[n] is MaxScore/n, so that averaging needs no division for
// pods with up to a few volumes.
var scorePerCount = [...]float64{0, MaxScore, MaxScore / 2.0, MaxScore / 3.0, MaxScore / 4.0, MaxScore / 5.0, MaxScore / 6.0, MaxScore / 7.0, MaxScore / 8.0}

// materialize appends the assignment that choices describe on node ni.
func (e *Evaluator) materialize(dst []VolumeAssignment, ni int, pod PodRequest, choices []choice) []VolumeAssignment {
	l := e.l
	n := &l.nodes[ni]
	vgNames := l.nodeVGNames(n)
	_, devs := l.nodeEx(n, KindDevice)
	_, mps := l.nodeEx(n, KindMountPoint)
	for vi := range pod.Volumes {
		v := &pod.Volumes[vi]
		c := choices[vi]
		if r := e.plan.vols[vi].existing; r != nil {
			dst = append(dst, VolumeAssignment{Claim: v.Claim, Kind: volumeKindOf(r.Kind), VG: r.VG, Device: r.Device, Bytes: r.Bytes, Charged: r.Charged, Stripes: r.Stripes, Existing: true})
			continue
		}
		a := VolumeAssignment{Claim: v.Claim, Kind: v.Kind, Bytes: v.Bytes, Charged: c.charged, Stripes: int(c.stripes)}
		switch v.Kind {
		case VolumeLVM:
			a.VG = vgNames[c.at]
		case VolumeDevice:
			a.Device = devs[c.at].name
		case VolumeMountPoint:
			a.Device = mps[c.at].name
		case VolumeSnapshotRestore:
			a.VG = v.VG
		}
		dst = append(dst, a)
	}
	return dst
}

// unfit writes the message for the failure fitNode just returned (its
// scratch state is still there).
func (e *Evaluator) unfit(ni int, pod PodRequest) *Unfit {
	l, f := e.l, e.plan.fail
	n := &l.nodes[ni]
	u := &Unfit{Node: n.name, Reason: reasonText[f.code]}
	var v *VolumeRequest
	if f.vol >= 0 {
		v = &pod.Volumes[f.vol]
	}
	switch f.code {
	case codeInvalid:
		u.Detail = e.plan.invalid
	case codeWrongNode:
		u.Detail = e.wrongNodeDetail(n.name, pod)
	case codeNoSuchVG:
		u.Detail = fmt.Sprintf("%s needs volume group %s", v.Claim, v.VG)
	case codeInsufficientLVM:
		switch {
		case f.vg >= 0:
			u.Detail = fmt.Sprintf("volume group %s: %s requests %s, free %s", l.nodeVGNames(n)[f.vg], v.Claim, FormatSize(f.need), FormatSize(max(0, f.free)))
		case n.vg.n == 0:
			u.Detail = "no volume group"
		default:
			u.Detail = e.lvmShortfall(n, pod)
		}
	case codeInsufficientDev, codeInsufficientMP:
		kind := "device"
		if f.code == codeInsufficientMP {
			kind = "mount point"
		}
		u.Detail = fmt.Sprintf("no free %s %s of at least %s for %s", mediaName(v.Media), kind, FormatSize(v.Bytes), v.Claim)
	}
	return u
}

func (e *Evaluator) wrongNodeDetail(node string, pod PodRequest) string {
	for vi := range pod.Volumes {
		v := &pod.Volumes[vi]
		if r := e.plan.vols[vi].existing; r != nil && r.Node != node {
			return fmt.Sprintf("%s is on node %s", v.Claim, r.Node)
		}
		if v.Node != "" && v.Node != node {
			return fmt.Sprintf("%s must stay on node %s", v.Claim, v.Node)
		}
	}
	return "the pod's volumes are bound to different nodes"
}

// lvmShortfall explains an LVM failure with the figures of the roomiest VG.
func (e *Evaluator) lvmShortfall(n *nodeState, pod PodRequest) string {
	var need int64
	for _, vi := range e.plan.auto {
		need = satAdd(need, pod.Volumes[vi].Bytes)
	}
	vgs, names := e.l.nodeVGs(n), e.l.nodeVGNames(n)
	best, bestFree := "", int64(-1)
	for j := range vgs {
		if free := vgs[j].free() - e.sc.vgUsed[j]; free > bestFree {
			best, bestFree = names[j], free
		}
	}
	msg := fmt.Sprintf("requested %s in total, largest free volume group %s has %s", FormatSize(need), best, FormatSize(max(0, bestFree)))
	if len(e.plan.auto) > 1 && e.sc.exhausted {
		msg += " (search limit reached)"
	}
	return msg
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}

func mediaName(m MediaType) string {
	if m == "" {
		return "any-media"
	}
	return string(m)
}

func resetInt64(b []int64, n int) []int64 {
	if cap(b) < n {
		return make([]int64, n)
	}
	b = b[:n]
	clear(b)
	return b
}

func resetBool(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	b = b[:n]
	clear(b)
	return b
}

// resize returns b with length n, reusing its array when it is big enough
// (the elements are then stale: callers overwrite them).
func resize[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// sortByBytes orders volume indices by size (insertion sort: pods have a
// handful of volumes, and sort.Slice would allocate). Equal sizes keep request order.
func sortByBytes(idx []int, vols []VolumeRequest, desc bool) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0; j-- {
			a, b := vols[idx[j]].Bytes, vols[idx[j-1]].Bytes
			if (desc && a <= b) || (!desc && a >= b) {
				break
			}
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
	e.prepare(pod)
	for _, name := range nodes {
		ni, ok := e.l.index[name]
		if !ok {
			out = append(out, NodeResult{Node: name, Reason: &Unfit{Node: name, Reason: ReasonNoStorage}})
			continue
		}
		score, code := e.fitNode(ni, pod, s)
		if code != codeNone {
			if e.brief != nil {
				out = append(out, NodeResult{Node: name, Reason: &e.brief[code]})
				continue
			}
			out = append(out, NodeResult{Node: name, Reason: e.unfit(ni, pod)})
			continue
		}
		out = append(out, NodeResult{Node: name, Fits: true, Score: score})
	}
	return out
}

// NumNodesToScore is how many feasible nodes kube-scheduler looks for before
// it stops searching (its percentageOfNodesToScore): all of a cluster below
// 100 nodes; otherwise percentage% of the nodes, at least 100. A percentage
// of 0 (or less) is the adaptive default, 50% minus one point per 125 nodes,
// at least 5%; 100 or more means every node.
func NumNodesToScore(total int, percentage int) int {
	const minNodes, minPercent = 100, 5
	if total < minNodes || percentage >= 100 {
		return max(0, total)
	}
	if percentage <= 0 {
		percentage = max(minPercent, 50-total/125)
	}
	return max(minNodes, total*percentage/100)
}

// PlaceOptions tune Place.
type PlaceOptions struct {
	// Sample stops the search once this many feasible nodes were found (0 =
	// all nodes), as kube-scheduler's percentageOfNodesToScore does (see
	// NumNodesToScore).
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
	// Evaluated is how many nodes were examined. A pod bound to one node
	// (a snapshot restore, a claim already charged) examines only that node.
	Evaluated int
	// Reasons counts, for an unschedulable pod, the nodes per reason.
	Reasons map[string]int
}

// Place chooses the best node for pod among the ledger's nodes and reserves
// its volumes there. Ties go to the node found first. An unschedulable pod
// returns an *UnschedulableError summarising the reasons (like kube-scheduler's
// "0/N nodes are available: ...") and reserves nothing.
func (e *Evaluator) Place(pod PodRequest, s Strategy, opt PlaceOptions) (PlaceResult, error) {
	l := e.l
	total := len(l.nodes)
	res := PlaceResult{Next: opt.Start}
	if total == 0 {
		return res, &UnschedulableError{Nodes: 0}
	}
	start := ((opt.Start % total) + total) % total
	res.Next = start
	e.prepare(pod)
	p := &e.plan
	var counts [numReasonCodes]int
	bestIdx, bestScore := -1, -1
	switch {
	case p.invalid != "":
		counts[codeInvalid] = total
	case p.pin == -2:
		counts[codeWrongNode] = total
	case p.pin >= 0:
		// Every other node would fail as bound elsewhere: look at this one only.
		res.Evaluated = 1
		counts[codeWrongNode] = total - 1
		if score, code := e.fitNode(p.pin, pod, s); code != codeNone {
			counts[code]++
		} else {
			bestIdx, bestScore = p.pin, score
			e.best = append(e.best[:0], e.sc.choice...)
		}
	default:
		found, i := 0, 0
		for ; i < total; i++ {
			ni := start + i
			if ni >= total {
				ni -= total
			}
			score, code := e.fitNode(ni, pod, s)
			if code != codeNone {
				counts[code]++
				continue
			}
			found++
			if score > bestScore {
				bestIdx, bestScore = ni, score
				e.best = append(e.best[:0], e.sc.choice...)
			}
			if opt.Sample > 0 && found >= opt.Sample {
				i++
				break
			}
		}
		res.Evaluated = i
		res.Next = (start + i) % total
	}
	if bestIdx < 0 {
		u := &UnschedulableError{Nodes: total, Reasons: map[string]int{}, Detail: p.invalid}
		for c, k := range counts {
			if k > 0 {
				u.Reasons[reasonText[c]] = k
			}
		}
		res.Reasons = u.Reasons
		return res, u
	}
	vols := e.materialize(make([]VolumeAssignment, 0, len(pod.Volumes)), bestIdx, pod, e.best)
	e.charges = appendCharges(e.charges[:0], vols)
	if err := l.reserve(bestIdx, e.charges); err != nil {
		// Fit and Reserve share the ledger, so this is a bug, not a user error.
		return res, fmt.Errorf("reserving the chosen node %s: %w", l.nodes[bestIdx].name, err)
	}
	res.Assignment = Assignment{Node: l.nodes[bestIdx].name, Volumes: vols, Score: bestScore}
	return res, nil
}

// UnschedulableError says why no node fits a pod.
type UnschedulableError struct {
	Nodes   int
	Reasons map[string]int
	// Detail says what is wrong with an invalid request ("" otherwise).
	Detail string
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
	if u.Detail != "" {
		fmt.Fprintf(&b, " (%s)", u.Detail)
	}
	return b.String()
}
