package core

import (
	"fmt"
	"sort"
)

// ResourceKind is what a claim consumes.
type ResourceKind uint8

const (
	// KindLVM consumes bytes of a volume group.
	KindLVM ResourceKind = iota + 1
	// KindDevice consumes a whole block device, exclusively.
	KindDevice
	// KindMountPoint consumes a whole mount point, exclusively.
	KindMountPoint
)

func (k ResourceKind) String() string {
	switch k {
	case KindLVM:
		return "LVM"
	case KindDevice:
		return "Device"
	case KindMountPoint:
		return "MountPoint"
	}
	return fmt.Sprintf("ResourceKind(%d)", uint8(k))
}

func (k ResourceKind) valid() bool { return k >= KindLVM && k <= KindMountPoint }

// ClaimID names one volume's charge: "ns/pvc" for a PVC, "pod-uid/volume" for
// an inline volume, a CSI volume ID inside the driver. It is the unit of idempotency.
type ClaimID string

// ClaimState tells a tentative reservation from a charge backed by a real LV or device.
type ClaimState uint8

const (
	Reserved ClaimState = iota + 1
	Committed
)

// ClaimCharge asks the ledger to charge one claim on a node.
type ClaimCharge struct {
	ID   ClaimID
	Kind ResourceKind
	// VG is the volume group (KindLVM).
	VG string
	// Device is the device path (KindDevice) or mount path (KindMountPoint).
	Device string
	// Bytes is the requested size. For KindLVM the ledger charges it rounded
	// up as LVM would (LVSize); for a device or mount point it charges the
	// whole resource, which must be at least Bytes.
	Bytes int64
	// Stripes > 1 asks for a striped LV (rounding to whole stripes).
	Stripes int
}

// normalized drops the fields the kind does not use, so that two requests
// for the same charge compare equal however the caller filled them.
func (c ClaimCharge) normalized() ClaimCharge {
	if c.Kind == KindLVM {
		c.Device = ""
		c.Stripes = max(1, c.Stripes)
	} else {
		c.VG = ""
		c.Stripes = 0
	}
	return c
}

// ClaimInfo is what the ledger holds for a claim.
type ClaimInfo struct {
	ClaimCharge
	Node string
	// Charged is the bytes taken from the resource.
	Charged int64
	State   ClaimState
}

// VGCapacity is one allocatable VG of a node.
type VGCapacity struct {
	Name             string
	AllocatableBytes int64
	ExtentSizeBytes  int64 // 0 means DefaultExtentSize
	PVCount          int
}

// DeviceCapacity is one allocatable whole device or mount point of a node.
type DeviceCapacity struct {
	Name      string
	SizeBytes int64
	Media     MediaType
}

// NodeCapacity is what a node offers Open-Local (its filtered storage).
type NodeCapacity struct {
	VGs         []VGCapacity
	Devices     []DeviceCapacity
	MountPoints []DeviceCapacity
}

// The ledger keeps what placement reads for every node in flat pools, one
// entry per VG and per device or mount point, each node owning a span of
// them: walking nodes in order then reads memory in order, instead of
// following a pointer per node into scattered slices. Names and owners,
// which placement does not read, live in parallel "cold" pools.

// span is a node's range in a pool.
type span struct{ off, n int32 }

func (s span) end() int32 { return s.off + s.n }

// vgHot is a VG's figures.
type vgHot struct {
	alloc  int64   // allocatable bytes
	used   int64   // charged bytes
	extent int64   // extent size in bytes
	inv    float64 // 1/alloc (0 when alloc is 0): scoring multiplies instead of dividing
	id     int32   // interned name
	pvs    int32   // PV count
	// geo sorts the geometry for the charge's fast path: geoLinear4M (4 MiB
	// extents, one PV), geoStriped4M (4 MiB extents, several PVs), geoOther.
	geo uint8
}

const (
	geoLinear4M uint8 = iota
	geoStriped4M
	geoOther
)

// free is what the VG still offers; negative when a shrink left it over-committed.
func (v *vgHot) free() int64 { return v.alloc - v.used }

// exHot is a device's or mount point's figures.
type exHot struct {
	size  int64
	media int32 // interned MediaType
	busy  bool  // held by a claim
}

type exCold struct {
	name  string
	media MediaType
	owner ClaimID // "" when free
}

type nodeState struct {
	name        string
	vg, dev, mp span
	// claims are the claims charged on the node; claimRec.slot is the position.
	claims []*claimRec
}

// claimRec is a ledger entry; records live in slabs to spare an allocation per claim.
type claimRec struct {
	ClaimInfo
	slot int
}

// Ledger is the capacity ledger of a set of nodes: reserve, commit and release
// charges keyed by claim. It never lets a reservation exceed what is
// allocatable; capacity that shrinks below what is already charged is reported
// by Overcommits, never hidden, and an over-committed VG takes no further
// growth. A Ledger is not safe for concurrent use: its owner serialises access
// (one lock, or one goroutine).
type Ledger struct {
	nodes  []nodeState
	index  map[string]int
	claims map[ClaimID]*claimRec

	vgIDs    map[string]int32
	mediaIDs map[MediaType]int32

	vgs     []vgHot
	vgNames []string
	ex      []exHot
	exCold  []exCold
	// pool entries no node uses any more (compacted when they dominate)
	deadVGs, deadEx int

	slab []claimRec  // records not yet handed out
	free []*claimRec // released records, reused first

	// scratch for Reserve
	pend   []pendingCharge
	vgAdd  []int64
	takenD []bool
	takenM []bool
}

type pendingCharge struct {
	c      ClaimCharge
	amount int64
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{index: map[string]int{}, claims: map[ClaimID]*claimRec{}, vgIDs: map[string]int32{}, mediaIDs: map[MediaType]int32{}}
}

const slabSize = 256

func (l *Ledger) newRec() *claimRec {
	if k := len(l.free); k > 0 {
		r := l.free[k-1]
		l.free = l.free[:k-1]
		return r
	}
	if len(l.slab) == 0 {
		l.slab = make([]claimRec, slabSize)
	}
	r := &l.slab[0]
	l.slab = l.slab[1:]
	return r
}

func (l *Ledger) freeRec(r *claimRec) {
	*r = claimRec{}
	l.free = append(l.free, r)
}

func intern[K comparable](m map[K]int32, k K) int32 {
	id, ok := m[k]
	if !ok {
		id = int32(len(m))
		m[k] = id
	}
	return id
}

// lookupVGID returns the interned id of a VG name, or -1 when no node ever had it.
func (l *Ledger) lookupVGID(name string) int32 {
	if id, ok := l.vgIDs[name]; ok {
		return id
	}
	return -1
}

// lookupMediaID returns the interned id of a medium, or -1 when no device ever had it.
func (l *Ledger) lookupMediaID(m MediaType) int32 {
	if id, ok := l.mediaIDs[m]; ok {
		return id
	}
	return -1
}

// Pool accessors: a node's entries as slices (no copy).

func (l *Ledger) nodeVGs(n *nodeState) []vgHot { return l.vgs[n.vg.off:n.vg.end():n.vg.end()] }

func (l *Ledger) nodeVGNames(n *nodeState) []string {
	return l.vgNames[n.vg.off:n.vg.end():n.vg.end()]
}

func (n *nodeState) exSpan(kind ResourceKind) span {
	if kind == KindMountPoint {
		return n.mp
	}
	return n.dev
}

func (l *Ledger) nodeEx(n *nodeState, kind ResourceKind) ([]exHot, []exCold) {
	sp := n.exSpan(kind)
	return l.ex[sp.off:sp.end():sp.end()], l.exCold[sp.off:sp.end():sp.end()]
}

// vgIndex is the position of a VG in the node's span, or -1.
func (l *Ledger) vgIndex(n *nodeState, name string) int {
	for i, v := range l.nodeVGNames(n) {
		if v == name {
			return i
		}
	}
	return -1
}

// exIndex is the position of a device or mount point in the node's span, or -1.
func (l *Ledger) exIndex(n *nodeState, kind ResourceKind, name string) int {
	_, cold := l.nodeEx(n, kind)
	for i := range cold {
		if cold[i].name == name {
			return i
		}
	}
	return -1
}

// SetNode adds a node or replaces its capacity. Claims on the node stay
// charged; a claim on a VG or device that disappeared, or that no longer fits
// a shrunk one, counts as over-committed. Names are unique within a kind: a
// repeated VG, device or mount point name keeps its first entry. Negative
// sizes count as zero.
func (l *Ledger) SetNode(name string, c NodeCapacity) {
	i, ok := l.index[name]
	if !ok {
		i = len(l.nodes)
		l.index[name] = i
		l.nodes = append(l.nodes, nodeState{name: name})
	}
	n := &l.nodes[i]
	n.vg = l.setVGs(n.vg, c.VGs)
	n.dev = l.setEx(n.dev, c.Devices)
	n.mp = l.setEx(n.mp, c.MountPoints)
	// Re-apply the node's claims to the new capacity.
	for _, r := range n.claims {
		l.apply(n, &r.ClaimInfo, +1)
	}
	l.maybeCompact()
}

// setVGs writes a node's VGs in place when their number is unchanged, else
// at the end of the pool. Usage starts from zero: the caller re-applies claims.
func (l *Ledger) setVGs(old span, vgs []VGCapacity) span {
	uniq := 0
	for k, vg := range vgs {
		if !repeatsVG(vgs[:k], vg.Name) {
			uniq++
		}
	}
	sp := old
	if int(old.n) != uniq {
		l.deadVGs += int(old.n)
		sp = span{off: int32(len(l.vgs)), n: int32(uniq)}
		l.vgs = append(l.vgs, make([]vgHot, uniq)...)
		l.vgNames = append(l.vgNames, make([]string, uniq)...)
	}
	at := sp.off
	for k, vg := range vgs {
		if repeatsVG(vgs[:k], vg.Name) {
			continue
		}
		ext := vg.ExtentSizeBytes
		if ext <= 0 {
			ext = DefaultExtentSize
		}
		h := vgHot{alloc: max(0, vg.AllocatableBytes), extent: ext, id: intern(l.vgIDs, vg.Name), pvs: int32(min(max(1, vg.PVCount), 1<<30))}
		if h.alloc > 0 {
			h.inv = 1 / float64(h.alloc)
		}
		switch {
		case ext != DefaultExtentSize:
			h.geo = geoOther
		case h.pvs > 1:
			h.geo = geoStriped4M
		}
		l.vgs[at] = h
		l.vgNames[at] = vg.Name
		at++
	}
	return sp
}

func repeatsVG(before []VGCapacity, name string) bool {
	for _, b := range before {
		if b.Name == name {
			return true
		}
	}
	return false
}

func repeatsEx(before []DeviceCapacity, name string) bool {
	for _, b := range before {
		if b.Name == name {
			return true
		}
	}
	return false
}

// setEx is setVGs for devices and mount points.
func (l *Ledger) setEx(old span, devs []DeviceCapacity) span {
	uniq := 0
	for k, d := range devs {
		if !repeatsEx(devs[:k], d.Name) {
			uniq++
		}
	}
	sp := old
	if int(old.n) != uniq {
		l.deadEx += int(old.n)
		sp = span{off: int32(len(l.ex)), n: int32(uniq)}
		l.ex = append(l.ex, make([]exHot, uniq)...)
		l.exCold = append(l.exCold, make([]exCold, uniq)...)
	}
	at := sp.off
	for k, d := range devs {
		if repeatsEx(devs[:k], d.Name) {
			continue
		}
		l.ex[at] = exHot{size: max(0, d.SizeBytes), media: intern(l.mediaIDs, d.Media)}
		l.exCold[at] = exCold{name: d.Name, media: d.Media}
		at++
	}
	return sp
}

// maybeCompact rebuilds the pools in node order once dead entries outnumber
// live ones, so that capacity changes neither leak memory nor scatter nodes.
func (l *Ledger) maybeCompact() {
	const floor = 1024
	if l.deadVGs > floor && l.deadVGs > len(l.vgs)/2 {
		vgs := make([]vgHot, 0, len(l.vgs)-l.deadVGs)
		names := make([]string, 0, cap(vgs))
		for i := range l.nodes {
			n := &l.nodes[i]
			off := int32(len(vgs))
			vgs = append(vgs, l.nodeVGs(n)...)
			names = append(names, l.nodeVGNames(n)...)
			n.vg.off = off
		}
		l.vgs, l.vgNames, l.deadVGs = vgs, names, 0
	}
	if l.deadEx > floor && l.deadEx > len(l.ex)/2 {
		ex := make([]exHot, 0, len(l.ex)-l.deadEx)
		cold := make([]exCold, 0, cap(ex))
		for i := range l.nodes {
			n := &l.nodes[i]
			for _, sp := range []*span{&n.dev, &n.mp} {
				off := int32(len(ex))
				ex = append(ex, l.ex[sp.off:sp.end()]...)
				cold = append(cold, l.exCold[sp.off:sp.end()]...)
				sp.off = off
			}
		}
		l.ex, l.exCold, l.deadEx = ex, cold, 0
	}
}

// RemoveNode forgets a node and every claim on it; it returns those claims, sorted.
func (l *Ledger) RemoveNode(name string) []ClaimID {
	i, ok := l.index[name]
	if !ok {
		return nil
	}
	n := &l.nodes[i]
	var dropped []ClaimID
	for _, r := range n.claims {
		dropped = append(dropped, r.ID)
		delete(l.claims, r.ID)
		l.freeRec(r)
	}
	sort.Slice(dropped, func(a, b int) bool { return dropped[a] < dropped[b] })
	l.deadVGs += int(n.vg.n)
	l.deadEx += int(n.dev.n + n.mp.n)
	last := len(l.nodes) - 1
	l.nodes[i] = l.nodes[last]
	l.nodes[last] = nodeState{}
	l.index[l.nodes[i].name] = i
	l.nodes = l.nodes[:last]
	delete(l.index, name)
	l.maybeCompact()
	return dropped
}

// HasNode reports whether the ledger knows the node.
func (l *Ledger) HasNode(name string) bool { _, ok := l.index[name]; return ok }

// NodeNames returns the known nodes in the ledger's internal order.
func (l *Ledger) NodeNames() []string {
	out := make([]string, len(l.nodes))
	for i := range l.nodes {
		out[i] = l.nodes[i].name
	}
	return out
}

// NumNodes is the number of known nodes.
func (l *Ledger) NumNodes() int { return len(l.nodes) }

// Claim returns what the ledger holds for id.
func (l *Ledger) Claim(id ClaimID) (ClaimInfo, bool) {
	r, ok := l.claims[id]
	if !ok {
		return ClaimInfo{}, false
	}
	return r.ClaimInfo, true
}

// NumClaims is the number of charged claims.
func (l *Ledger) NumClaims() int { return len(l.claims) }

// ClaimIDs returns every claim, sorted.
func (l *Ledger) ClaimIDs() []ClaimID {
	out := make([]ClaimID, 0, len(l.claims))
	for id := range l.claims {
		out = append(out, id)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// ClaimsOnNode returns the claims charged on a node, sorted (nil for an unknown node).
func (l *Ledger) ClaimsOnNode(name string) []ClaimID {
	i, ok := l.index[name]
	if !ok {
		return nil
	}
	out := make([]ClaimID, 0, len(l.nodes[i].claims))
	for _, r := range l.nodes[i].claims {
		out = append(out, r.ID)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// Clone returns an independent deep copy: what a caller uses to try a
// sequence of reservations without touching the original.
func (l *Ledger) Clone() *Ledger {
	c := &Ledger{
		nodes:    make([]nodeState, len(l.nodes)),
		index:    make(map[string]int, len(l.index)),
		claims:   make(map[ClaimID]*claimRec, len(l.claims)),
		vgIDs:    make(map[string]int32, len(l.vgIDs)),
		mediaIDs: make(map[MediaType]int32, len(l.mediaIDs)),
		vgs:      append([]vgHot(nil), l.vgs...),
		vgNames:  append([]string(nil), l.vgNames...),
		ex:       append([]exHot(nil), l.ex...),
		exCold:   append([]exCold(nil), l.exCold...),
		deadVGs:  l.deadVGs,
		deadEx:   l.deadEx,
	}
	for k, v := range l.index {
		c.index[k] = v
	}
	for k, v := range l.vgIDs {
		c.vgIDs[k] = v
	}
	for k, v := range l.mediaIDs {
		c.mediaIDs[k] = v
	}
	recs := make([]claimRec, len(l.claims))
	k := 0
	for i := range l.nodes {
		src := &l.nodes[i]
		dst := &c.nodes[i]
		*dst = *src
		dst.claims = make([]*claimRec, len(src.claims))
		for j, r := range src.claims {
			recs[k] = *r
			dst.claims[j] = &recs[k]
			c.claims[r.ID] = &recs[k]
			k++
		}
	}
	return c
}

// charged computes what a charge takes from node n, or an error saying why it cannot.
func (l *Ledger) charged(n *nodeState, c ClaimCharge) (int64, error) {
	switch c.Kind {
	case KindLVM:
		j := l.vgIndex(n, c.VG)
		if j < 0 {
			return 0, fmt.Errorf("node %s: volume group %q: %w", n.name, c.VG, ErrUnknownVG)
		}
		return LVSize(c.Bytes, l.nodeVGs(n)[j].extent, c.Stripes), nil
	case KindDevice, KindMountPoint:
		j := l.exIndex(n, c.Kind, c.Device)
		if j < 0 {
			return 0, fmt.Errorf("node %s: %s %q: %w", n.name, c.Kind, c.Device, ErrUnknownDevice)
		}
		hot, _ := l.nodeEx(n, c.Kind)
		if size := hot[j].size; size < c.Bytes {
			return 0, fmt.Errorf("node %s: %s %s has %s, requested %s: %w", n.name, c.Kind, c.Device, FormatSize(size), FormatSize(c.Bytes), ErrInsufficientCapacity)
		}
		return hot[j].size, nil
	}
	return 0, fmt.Errorf("claim %s: unknown resource kind %d: %w", c.ID, c.Kind, ErrInvalid)
}

// apply adds (sign +1) or removes (-1) a claim's charge on n's cached
// totals. Missing resources are skipped: such a claim shows up in Overcommits.
func (l *Ledger) apply(n *nodeState, ci *ClaimInfo, sign int64) {
	switch ci.Kind {
	case KindLVM:
		if j := l.vgIndex(n, ci.VG); j >= 0 {
			l.nodeVGs(n)[j].used += sign * ci.Charged
		}
	case KindDevice, KindMountPoint:
		if j := l.exIndex(n, ci.Kind, ci.Device); j >= 0 {
			hot, cold := l.nodeEx(n, ci.Kind)
			if sign > 0 {
				hot[j].busy, cold[j].owner = true, ci.ID
			} else if cold[j].owner == ci.ID {
				hot[j].busy, cold[j].owner = false, ""
			}
		}
	}
}

func sameCharge(a ClaimInfo, node string, c ClaimCharge) bool {
	return a.Node == node && a.ClaimCharge == c
}

// Reserve charges every claim on node, all or nothing. A claim that already
// holds exactly this charge is left as it is (idempotent), and so is a charge
// repeated within the call; a claim holding a different charge is ErrConflict.
// The error names the first claim that does not fit.
func (l *Ledger) Reserve(node string, charges ...ClaimCharge) error {
	i, ok := l.index[node]
	if !ok {
		return fmt.Errorf("node %q: %w", node, ErrUnknownNode)
	}
	return l.reserve(i, charges)
}

func (l *Ledger) reserve(ni int, charges []ClaimCharge) error {
	n := &l.nodes[ni]
	pend, err := l.checkReserve(n, charges)
	l.pend = pend[:0] // keep the buffer for the next call
	if err != nil {
		return err
	}
	for k := range pend {
		r := l.newRec()
		r.ClaimInfo = ClaimInfo{ClaimCharge: pend[k].c, Node: n.name, Charged: pend[k].amount, State: Reserved}
		r.slot = len(n.claims)
		n.claims = append(n.claims, r)
		l.claims[r.ID] = r
		l.apply(n, &r.ClaimInfo, +1)
	}
	return nil
}

// checkReserve decides every charge against a running tally of what the call
// itself adds, and returns the charges to apply.
func (l *Ledger) checkReserve(n *nodeState, charges []ClaimCharge) ([]pendingCharge, error) {
	vgs := l.nodeVGs(n)
	devs, devCold := l.nodeEx(n, KindDevice)
	mps, mpCold := l.nodeEx(n, KindMountPoint)
	l.vgAdd = resetInt64(l.vgAdd, len(vgs))
	l.takenD = resetBool(l.takenD, len(devs))
	l.takenM = resetBool(l.takenM, len(mps))
	pend := l.pend[:0]
	for _, c := range charges {
		if c.ID == "" {
			return pend, fmt.Errorf("node %s: a claim needs an ID: %w", n.name, ErrInvalid)
		}
		if c.Bytes < 0 {
			return pend, fmt.Errorf("claim %s: negative size: %w", c.ID, ErrInvalid)
		}
		if !c.Kind.valid() {
			return pend, fmt.Errorf("claim %s: unknown resource kind %d: %w", c.ID, c.Kind, ErrInvalid)
		}
		c = c.normalized()
		if old, ok := l.claims[c.ID]; ok {
			if sameCharge(old.ClaimInfo, n.name, c) {
				continue
			}
			return pend, fmt.Errorf("claim %s holds %s on node %s: %w", c.ID, describeCharge(old.ClaimCharge), old.Node, ErrConflict)
		}
		repeated := false
		for k := range pend {
			if pend[k].c.ID == c.ID {
				if pend[k].c != c {
					return pend, fmt.Errorf("claim %s appears twice in one reservation with different charges: %w", c.ID, ErrConflict)
				}
				repeated = true
				break
			}
		}
		if repeated {
			continue
		}
		amount, err := l.charged(n, c)
		if err != nil {
			return pend, err
		}
		if c.Kind == KindLVM {
			j := l.vgIndex(n, c.VG)
			// Compare against what is free instead of adding to what is used,
			// so that a request near MaxInt64 cannot overflow into "fits".
			if free := vgs[j].free() - l.vgAdd[j]; amount > free {
				return pend, fmt.Errorf("node %s: volume group %s: claim %s requests %s, free %s: %w", n.name, c.VG, c.ID, FormatSize(amount), FormatSize(max(0, free)), ErrInsufficientCapacity)
			}
			l.vgAdd[j] += amount
		} else {
			j := l.exIndex(n, c.Kind, c.Device)
			taken, cold := l.takenD, devCold
			if c.Kind == KindMountPoint {
				taken, cold = l.takenM, mpCold
			}
			if taken[j] {
				return pend, fmt.Errorf("node %s: %s %s requested twice: %w", n.name, c.Kind, c.Device, ErrInsufficientCapacity)
			}
			if owner := cold[j].owner; owner != "" {
				return pend, fmt.Errorf("node %s: %s %s is already allocated to %s: %w", n.name, c.Kind, c.Device, owner, ErrInsufficientCapacity)
			}
			taken[j] = true
		}
		pend = append(pend, pendingCharge{c: c, amount: amount})
	}
	return pend, nil
}

func describeCharge(c ClaimCharge) string {
	if c.Kind == KindLVM {
		return fmt.Sprintf("%s of volume group %s", FormatSize(c.Bytes), c.VG)
	}
	return fmt.Sprintf("%s %s", c.Kind, c.Device)
}

// Commit marks a reserved claim as backed by a real volume. Committing a
// committed claim is a no-op; an unknown claim is ErrUnknownClaim.
func (l *Ledger) Commit(id ClaimID) error {
	r, ok := l.claims[id]
	if !ok {
		return fmt.Errorf("claim %s: %w", id, ErrUnknownClaim)
	}
	r.State = Committed
	return nil
}

// Release frees a claim's charge. It reports whether the claim existed, so
// releasing twice is harmless.
func (l *Ledger) Release(id ClaimID) bool {
	r, ok := l.claims[id]
	if !ok {
		return false
	}
	n := &l.nodes[l.index[r.Node]] // a node's claims go with it, so the node exists
	l.apply(n, &r.ClaimInfo, -1)
	last := len(n.claims) - 1
	moved := n.claims[last]
	n.claims[r.slot] = moved
	moved.slot = r.slot
	n.claims[last] = nil
	n.claims = n.claims[:last]
	delete(l.claims, id)
	l.freeRec(r)
	return true
}

// Resize changes the requested bytes of a claim (volume expansion). An LVM
// claim may grow only into the VG's free space (never on an over-committed
// VG) and may always shrink; a device or mount point claim can only be
// resized within its resource, which it keeps charging whole.
func (l *Ledger) Resize(id ClaimID, bytes int64) error {
	r, ok := l.claims[id]
	if !ok {
		return fmt.Errorf("claim %s: %w", id, ErrUnknownClaim)
	}
	if bytes < 0 {
		return fmt.Errorf("claim %s: negative size: %w", id, ErrInvalid)
	}
	n := &l.nodes[l.index[r.Node]]
	next := r.ClaimCharge
	next.Bytes = bytes
	amount, err := l.charged(n, next)
	if err != nil {
		return err
	}
	if r.Kind == KindLVM {
		vg := &l.nodeVGs(n)[l.vgIndex(n, r.VG)]
		if delta := amount - r.Charged; delta > 0 && delta > vg.free() {
			return fmt.Errorf("node %s: volume group %s: claim %s grows by %s, free %s: %w", r.Node, r.VG, id, FormatSize(delta), FormatSize(max(0, vg.free())), ErrInsufficientCapacity)
		}
		vg.used += amount - r.Charged
	}
	r.Bytes = bytes
	r.Charged = amount
	return nil
}

// VGUsage is a VG's figures in the ledger.
type VGUsage struct {
	VGCapacity
	UsedBytes int64
}

// FreeBytes is allocatable minus used, never negative.
func (u VGUsage) FreeBytes() int64 { return max(0, u.AllocatableBytes-u.UsedBytes) }

// ExclusiveUsage is a device's or mount point's figures in the ledger.
type ExclusiveUsage struct {
	DeviceCapacity
	Owner ClaimID
}

// NodeUsage is a node's figures in the ledger.
type NodeUsage struct {
	Name        string
	VGs         []VGUsage
	Devices     []ExclusiveUsage
	MountPoints []ExclusiveUsage
	Claims      int
}

// Node returns a copy of a node's figures.
func (l *Ledger) Node(name string) (NodeUsage, bool) {
	i, ok := l.index[name]
	if !ok {
		return NodeUsage{}, false
	}
	n := &l.nodes[i]
	u := NodeUsage{Name: n.name, Claims: len(n.claims)}
	names := l.nodeVGNames(n)
	for j, vg := range l.nodeVGs(n) {
		u.VGs = append(u.VGs, VGUsage{VGCapacity: VGCapacity{Name: names[j], AllocatableBytes: vg.alloc, ExtentSizeBytes: vg.extent, PVCount: int(vg.pvs)}, UsedBytes: vg.used})
	}
	exUsage := func(kind ResourceKind) []ExclusiveUsage {
		var out []ExclusiveUsage
		hot, cold := l.nodeEx(n, kind)
		for j := range hot {
			out = append(out, ExclusiveUsage{DeviceCapacity: DeviceCapacity{Name: cold[j].name, SizeBytes: hot[j].size, Media: cold[j].media}, Owner: cold[j].owner})
		}
		return out
	}
	u.Devices = exUsage(KindDevice)
	u.MountPoints = exUsage(KindMountPoint)
	return u, true
}

// Overcommit is one resource whose charges exceed what it offers.
type Overcommit struct {
	Node     string
	Kind     ResourceKind
	Resource string
	// ExcessBytes is charged minus allocatable (for a missing resource, all
	// that is charged; for a device held by several claims, its size per
	// extra holder).
	ExcessBytes int64
	Claims      []ClaimID
}

// Overcommits recounts every charge from the claims (not from the cached
// totals) and returns the resources that hold more than they offer, sorted by
// node, kind and resource. A claim whose resource disappeared counts too. It
// is the independent check the simulator and the property tests use.
func (l *Ledger) Overcommits() []Overcommit {
	type key struct {
		node, res string
		kind      ResourceKind
	}
	sum := map[key]int64{}
	who := map[key][]ClaimID{}
	for id, r := range l.claims {
		res := r.VG
		if r.Kind != KindLVM {
			res = r.Device
		}
		k := key{r.Node, res, r.Kind}
		sum[k] += r.Charged
		who[k] = append(who[k], id)
	}
	var out []Overcommit
	for k, charged := range sum {
		var limit int64 = -1
		count := int64(len(who[k]))
		if i, ok := l.index[k.node]; ok {
			n := &l.nodes[i]
			switch k.kind {
			case KindLVM:
				if j := l.vgIndex(n, k.res); j >= 0 {
					limit = l.nodeVGs(n)[j].alloc
				}
			default:
				if j := l.exIndex(n, k.kind, k.res); j >= 0 {
					hot, _ := l.nodeEx(n, k.kind)
					limit = hot[j].size
					if count > 1 { // an exclusive resource held twice is over-committed by the extra holders
						charged = limit * count
					}
				}
			}
		}
		excess := charged
		if limit >= 0 {
			excess = charged - limit
		}
		if excess > 0 || limit < 0 { // a missing resource is over-committed by all it holds
			ids := who[k]
			sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
			out = append(out, Overcommit{Node: k.node, Kind: k.kind, Resource: k.res, ExcessBytes: excess, Claims: ids})
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Node != out[b].Node {
			return out[a].Node < out[b].Node
		}
		if out[a].Kind != out[b].Kind {
			return out[a].Kind < out[b].Kind
		}
		return out[a].Resource < out[b].Resource
	})
	return out
}
