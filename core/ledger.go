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

type vgState struct {
	VGCapacity
	used int64
}

type exclusiveState struct {
	DeviceCapacity
	owner ClaimID // "" when free
}

type nodeState struct {
	name   string
	vgs    []vgState
	devs   []exclusiveState
	mps    []exclusiveState
	claims int
}

func (n *nodeState) vg(name string) *vgState {
	for i := range n.vgs {
		if n.vgs[i].Name == name {
			return &n.vgs[i]
		}
	}
	return nil
}

func (n *nodeState) exclusive(kind ResourceKind, name string) *exclusiveState {
	list := n.devs
	if kind == KindMountPoint {
		list = n.mps
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// Ledger is the capacity ledger of a set of nodes: reserve, commit and release
// charges keyed by claim. It never lets a reservation exceed what is
// allocatable; capacity that shrinks below what is already charged is reported
// by Overcommit, never hidden. A Ledger is not safe for concurrent use: its
// owner serialises access (one lock, or one goroutine).
type Ledger struct {
	nodes  []*nodeState
	index  map[string]int
	claims map[ClaimID]*ClaimInfo
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{index: map[string]int{}, claims: map[ClaimID]*ClaimInfo{}}
}

// SetNode adds a node or replaces its capacity. Claims on the node stay charged;
// a claim on a VG or device that disappeared counts as over-committed.
func (l *Ledger) SetNode(name string, c NodeCapacity) {
	n := &nodeState{name: name}
	if i, ok := l.index[name]; ok {
		n = l.nodes[i]
	} else {
		l.index[name] = len(l.nodes)
		l.nodes = append(l.nodes, n)
	}
	n.vgs = n.vgs[:0]
	for _, vg := range c.VGs {
		if vg.ExtentSizeBytes <= 0 {
			vg.ExtentSizeBytes = DefaultExtentSize
		}
		if vg.PVCount < 1 {
			vg.PVCount = 1
		}
		n.vgs = append(n.vgs, vgState{VGCapacity: vg})
	}
	n.devs = n.devs[:0]
	for _, d := range c.Devices {
		n.devs = append(n.devs, exclusiveState{DeviceCapacity: d})
	}
	n.mps = n.mps[:0]
	for _, d := range c.MountPoints {
		n.mps = append(n.mps, exclusiveState{DeviceCapacity: d})
	}
	// Re-apply the node's claims to the new capacity.
	for _, ci := range l.claims {
		if ci.Node == name {
			l.apply(n, ci, +1)
		}
	}
}

// RemoveNode forgets a node and every claim on it; it returns those claims, sorted.
func (l *Ledger) RemoveNode(name string) []ClaimID {
	i, ok := l.index[name]
	if !ok {
		return nil
	}
	var dropped []ClaimID
	for id, ci := range l.claims {
		if ci.Node == name {
			dropped = append(dropped, id)
			delete(l.claims, id)
		}
	}
	sort.Slice(dropped, func(a, b int) bool { return dropped[a] < dropped[b] })
	last := len(l.nodes) - 1
	l.nodes[i] = l.nodes[last]
	l.index[l.nodes[i].name] = i
	l.nodes = l.nodes[:last]
	delete(l.index, name)
	return dropped
}

// HasNode reports whether the ledger knows the node.
func (l *Ledger) HasNode(name string) bool { _, ok := l.index[name]; return ok }

// NodeNames returns the known nodes in the ledger's internal order.
func (l *Ledger) NodeNames() []string {
	out := make([]string, len(l.nodes))
	for i, n := range l.nodes {
		out[i] = n.name
	}
	return out
}

// NumNodes is the number of known nodes.
func (l *Ledger) NumNodes() int { return len(l.nodes) }

// Claim returns what the ledger holds for id.
func (l *Ledger) Claim(id ClaimID) (ClaimInfo, bool) {
	ci, ok := l.claims[id]
	if !ok {
		return ClaimInfo{}, false
	}
	return *ci, true
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

// charged computes what a charge takes from node n, or an error saying why it cannot.
func (l *Ledger) charged(n *nodeState, c ClaimCharge) (int64, error) {
	switch c.Kind {
	case KindLVM:
		vg := n.vg(c.VG)
		if vg == nil {
			return 0, fmt.Errorf("node %s: volume group %q: %w", n.name, c.VG, ErrUnknownVG)
		}
		return LVSize(c.Bytes, vg.ExtentSizeBytes, c.Stripes), nil
	case KindDevice, KindMountPoint:
		d := n.exclusive(c.Kind, c.Device)
		if d == nil {
			return 0, fmt.Errorf("node %s: %s %q: %w", n.name, c.Kind, c.Device, ErrUnknownDevice)
		}
		if d.SizeBytes < c.Bytes {
			return 0, fmt.Errorf("node %s: %s %s has %s, requested %s: %w", n.name, c.Kind, c.Device, FormatSize(d.SizeBytes), FormatSize(c.Bytes), ErrInsufficientCapacity)
		}
		return d.SizeBytes, nil
	}
	return 0, fmt.Errorf("claim %s: unknown resource kind %d: %w", c.ID, c.Kind, ErrInvalid)
}

// apply adds (sign +1) or removes (-1) a claim's charge on n. Missing
// resources are skipped: such a claim shows up in Overcommit.
func (l *Ledger) apply(n *nodeState, ci *ClaimInfo, sign int64) {
	n.claims += int(sign)
	switch ci.Kind {
	case KindLVM:
		if vg := n.vg(ci.VG); vg != nil {
			vg.used += sign * ci.Charged
		}
	case KindDevice, KindMountPoint:
		if d := n.exclusive(ci.Kind, ci.Device); d != nil {
			if sign > 0 {
				d.owner = ci.ID
			} else if d.owner == ci.ID {
				d.owner = ""
			}
		}
	}
}

func sameCharge(a ClaimInfo, node string, c ClaimCharge) bool {
	return a.Node == node && a.Kind == c.Kind && a.VG == c.VG && a.Device == c.Device && a.Bytes == c.Bytes && a.Stripes == c.Stripes
}

// Reserve charges every claim on node, all or nothing. A claim that already
// holds exactly this charge is left as it is (idempotent); a claim holding a
// different charge is ErrConflict. The error names the first claim that does not fit.
func (l *Ledger) Reserve(node string, charges ...ClaimCharge) error {
	i, ok := l.index[node]
	if !ok {
		return fmt.Errorf("node %q: %w", node, ErrUnknownNode)
	}
	n := l.nodes[i]
	// Check everything first against a running tally, then apply.
	var pendingVG [8]struct {
		name string
		add  int64
	}
	extraVG := pendingVG[:0]
	var pendingDev [8]string
	takenDev := pendingDev[:0]
	fresh := make([]ClaimInfo, 0, len(charges))
	for _, c := range charges {
		if c.ID == "" {
			return fmt.Errorf("a claim needs an ID: %w", ErrInvalid)
		}
		if c.Bytes < 0 {
			return fmt.Errorf("claim %s: negative size: %w", c.ID, ErrInvalid)
		}
		if old, ok := l.claims[c.ID]; ok {
			if sameCharge(*old, node, c) {
				continue
			}
			return fmt.Errorf("claim %s holds %s on node %s: %w", c.ID, describeCharge(old.ClaimCharge), old.Node, ErrConflict)
		}
		for _, f := range fresh {
			if f.ID == c.ID {
				return fmt.Errorf("claim %s appears twice in one reservation: %w", c.ID, ErrConflict)
			}
		}
		amount, err := l.charged(n, c)
		if err != nil {
			return err
		}
		switch c.Kind {
		case KindLVM:
			vg := n.vg(c.VG)
			var add int64
			found := false
			for k := range extraVG {
				if extraVG[k].name == c.VG {
					extraVG[k].add += amount
					add = extraVG[k].add
					found = true
				}
			}
			if !found {
				extraVG = append(extraVG, struct {
					name string
					add  int64
				}{c.VG, amount})
				add = amount
			}
			if vg.used+add > vg.AllocatableBytes {
				free := vg.AllocatableBytes - vg.used - (add - amount)
				if free < 0 {
					free = 0
				}
				return fmt.Errorf("node %s: volume group %s: requested %s, free %s: %w", node, c.VG, FormatSize(amount), FormatSize(free), ErrInsufficientCapacity)
			}
		default:
			d := n.exclusive(c.Kind, c.Device)
			key := c.Kind.String() + "\x00" + c.Device
			for _, t := range takenDev {
				if t == key {
					return fmt.Errorf("node %s: %s %s requested twice: %w", node, c.Kind, c.Device, ErrInsufficientCapacity)
				}
			}
			if d.owner != "" {
				return fmt.Errorf("node %s: %s %s is already allocated to %s: %w", node, c.Kind, c.Device, d.owner, ErrInsufficientCapacity)
			}
			takenDev = append(takenDev, key)
		}
		fresh = append(fresh, ClaimInfo{ClaimCharge: c, Node: node, Charged: amount, State: Reserved})
	}
	for k := range fresh {
		ci := fresh[k]
		l.claims[ci.ID] = &ci
		l.apply(n, &ci, +1)
	}
	return nil
}

func describeCharge(c ClaimCharge) string {
	if c.Kind == KindLVM {
		return fmt.Sprintf("%s of volume group %s", FormatSize(c.Bytes), c.VG)
	}
	return fmt.Sprintf("%s %s", c.Kind, c.Device)
}

// Commit marks a reserved claim as backed by a real volume. Committing a
// committed claim is a no-op.
func (l *Ledger) Commit(id ClaimID) error {
	ci, ok := l.claims[id]
	if !ok {
		return fmt.Errorf("claim %s is not reserved: %w", id, ErrInvalid)
	}
	ci.State = Committed
	return nil
}

// Release frees a claim's charge. It reports whether the claim existed, so
// releasing twice is harmless.
func (l *Ledger) Release(id ClaimID) bool {
	ci, ok := l.claims[id]
	if !ok {
		return false
	}
	if i, ok := l.index[ci.Node]; ok {
		l.apply(l.nodes[i], ci, -1)
	}
	delete(l.claims, id)
	return true
}

// Resize changes the requested bytes of an LVM claim (volume expansion),
// checking the VG's free space first. Shrinking is allowed; a device or mount
// point claim can only be resized within its resource.
func (l *Ledger) Resize(id ClaimID, bytes int64) error {
	ci, ok := l.claims[id]
	if !ok {
		return fmt.Errorf("claim %s is not reserved: %w", id, ErrInvalid)
	}
	if bytes < 0 {
		return fmt.Errorf("claim %s: negative size: %w", id, ErrInvalid)
	}
	i, ok := l.index[ci.Node]
	if !ok {
		return fmt.Errorf("node %q: %w", ci.Node, ErrUnknownNode)
	}
	n := l.nodes[i]
	next := ci.ClaimCharge
	next.Bytes = bytes
	amount, err := l.charged(n, next)
	if err != nil {
		return err
	}
	if ci.Kind == KindLVM {
		vg := n.vg(ci.VG)
		if delta := amount - ci.Charged; delta > 0 && vg.used+delta > vg.AllocatableBytes {
			return fmt.Errorf("node %s: volume group %s: growing by %s, free %s: %w", ci.Node, ci.VG, FormatSize(delta), FormatSize(max(0, vg.AllocatableBytes-vg.used)), ErrInsufficientCapacity)
		}
		vg.used += amount - ci.Charged
	}
	ci.Bytes = bytes
	ci.Charged = amount
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
	n := l.nodes[i]
	u := NodeUsage{Name: n.name, Claims: n.claims}
	for _, vg := range n.vgs {
		u.VGs = append(u.VGs, VGUsage{VGCapacity: vg.VGCapacity, UsedBytes: vg.used})
	}
	for _, d := range n.devs {
		u.Devices = append(u.Devices, ExclusiveUsage{DeviceCapacity: d.DeviceCapacity, Owner: d.owner})
	}
	for _, d := range n.mps {
		u.MountPoints = append(u.MountPoints, ExclusiveUsage{DeviceCapacity: d.DeviceCapacity, Owner: d.owner})
	}
	return u, true
}

// Overcommit is one resource whose charges exceed what it offers.
type Overcommit struct {
	Node     string
	Kind     ResourceKind
	Resource string
	// ExcessBytes is charged minus allocatable (for a missing resource, all that is charged).
	ExcessBytes int64
	Claims      []ClaimID
}

// Overcommits recounts every charge from the claims (not from the cached
// totals) and returns the resources that hold more than they offer, sorted.
// It is the independent check the simulator and the property tests use.
func (l *Ledger) Overcommits() []Overcommit {
	type key struct {
		node, res string
		kind      ResourceKind
	}
	sum := map[key]int64{}
	who := map[key][]ClaimID{}
	for id, ci := range l.claims {
		res := ci.VG
		if ci.Kind != KindLVM {
			res = ci.Device
		}
		k := key{ci.Node, res, ci.Kind}
		sum[k] += ci.Charged
		who[k] = append(who[k], id)
	}
	var out []Overcommit
	for k, charged := range sum {
		var limit int64 = -1
		count := int64(len(who[k]))
		if i, ok := l.index[k.node]; ok {
			n := l.nodes[i]
			switch k.kind {
			case KindLVM:
				if vg := n.vg(k.res); vg != nil {
					limit = vg.AllocatableBytes
				}
			default:
				if d := n.exclusive(k.kind, k.res); d != nil {
					limit = d.SizeBytes
					if count > 1 { // an exclusive resource held twice is over-committed by the extra holders
						charged = d.SizeBytes * count
					}
				}
			}
		}
		excess := charged
		if limit >= 0 {
			excess = charged - limit
		}
		if excess > 0 {
			ids := who[k]
			sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
			out = append(out, Overcommit{Node: k.node, Kind: k.kind, Resource: k.res, ExcessBytes: excess, Claims: ids})
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Node != out[b].Node {
			return out[a].Node < out[b].Node
		}
		return out[a].Resource < out[b].Resource
	})
	return out
}
