package core

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"pgregory.net/rapid"
)

// Property tests run with pgregory.net/rapid. CI runs them with 1,000 cases
// each:
//
//	go test ./core -rapid.checks=1000
//
// (rapid's default is 100; -rapid.steps sets the mean length of a sequence).

// refModel is the ledger written as plainly as possible: maps, no caches,
// every figure recomputed from the claims. The ledger must agree with it after
// every operation.
type refModel struct {
	nodes  map[string]*refNode
	claims map[ClaimID]ClaimInfo
}

type refNode struct {
	vgs map[string]VGCapacity
	exs map[ResourceKind]map[string]DeviceCapacity
}

func newRefModel() *refModel {
	return &refModel{nodes: map[string]*refNode{}, claims: map[ClaimID]ClaimInfo{}}
}

// refRound is LVM's rounding, written independently of LVSize.
func refRound(bytes, extent int64, stripes int) int64 {
	if extent <= 0 {
		extent = 4 << 20
	}
	if stripes < 1 {
		stripes = 1
	}
	unit := extent * int64(stripes)
	n := (bytes + unit - 1) / unit
	if n < 1 {
		n = 1
	}
	return n * unit
}

func (m *refModel) setNode(name string, c NodeCapacity) {
	n := &refNode{vgs: map[string]VGCapacity{}, exs: map[ResourceKind]map[string]DeviceCapacity{KindDevice: {}, KindMountPoint: {}}}
	for _, vg := range c.VGs {
		if _, dup := n.vgs[vg.Name]; dup {
			continue
		}
		if vg.ExtentSizeBytes <= 0 {
			vg.ExtentSizeBytes = 4 << 20
		}
		if vg.PVCount < 1 {
			vg.PVCount = 1
		}
		if vg.AllocatableBytes < 0 {
			vg.AllocatableBytes = 0
		}
		n.vgs[vg.Name] = vg
	}
	for kind, list := range map[ResourceKind][]DeviceCapacity{KindDevice: c.Devices, KindMountPoint: c.MountPoints} {
		for _, d := range list {
			if _, dup := n.exs[kind][d.Name]; dup {
				continue
			}
			if d.SizeBytes < 0 {
				d.SizeBytes = 0
			}
			n.exs[kind][d.Name] = d
		}
	}
	m.nodes[name] = n
}

func (m *refModel) removeNode(name string) []ClaimID {
	if _, ok := m.nodes[name]; !ok {
		return nil
	}
	var out []ClaimID
	for id, c := range m.claims {
		if c.Node == name {
			out = append(out, id)
			delete(m.claims, id)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	delete(m.nodes, name)
	return out
}

func (m *refModel) used(node, vg string) int64 {
	var u int64
	for _, c := range m.claims {
		if c.Node == node && c.Kind == KindLVM && c.VG == vg {
			u += c.Charged
		}
	}
	return u
}

func (m *refModel) holder(node string, kind ResourceKind, dev string) (ClaimID, bool) {
	for id, c := range m.claims {
		if c.Node == node && c.Kind == kind && c.Device == dev {
			return id, true
		}
	}
	return "", false
}

func refNormalize(c ClaimCharge) ClaimCharge {
	if c.Kind == KindLVM {
		c.Device = ""
		if c.Stripes < 1 {
			c.Stripes = 1
		}
	} else {
		c.VG, c.Stripes = "", 0
	}
	return c
}

// reserve returns the sentinel the ledger must report (nil for success).
func (m *refModel) reserve(node string, charges []ClaimCharge) error {
	n, ok := m.nodes[node]
	if !ok {
		return ErrUnknownNode
	}
	add := map[string]int64{}
	taken := map[string]bool{}
	var pend []ClaimInfo
next:
	for _, c := range charges {
		if c.ID == "" || c.Bytes < 0 || c.Kind < KindLVM || c.Kind > KindMountPoint {
			return ErrInvalid
		}
		c = refNormalize(c)
		if old, ok := m.claims[c.ID]; ok {
			if old.Node == node && old.ClaimCharge == c {
				continue
			}
			return ErrConflict
		}
		for _, p := range pend {
			if p.ID == c.ID {
				if p.ClaimCharge == c {
					continue next
				}
				return ErrConflict
			}
		}
		var amount int64
		if c.Kind == KindLVM {
			vg, ok := n.vgs[c.VG]
			if !ok {
				return ErrUnknownVG
			}
			amount = refRound(c.Bytes, vg.ExtentSizeBytes, c.Stripes)
			if amount > vg.AllocatableBytes-m.used(node, c.VG)-add[c.VG] {
				return ErrInsufficientCapacity
			}
			add[c.VG] += amount
		} else {
			d, ok := n.exs[c.Kind][c.Device]
			if !ok {
				return ErrUnknownDevice
			}
			if d.SizeBytes < c.Bytes {
				return ErrInsufficientCapacity
			}
			amount = d.SizeBytes
			key := c.Kind.String() + c.Device
			if _, held := m.holder(node, c.Kind, c.Device); held || taken[key] {
				return ErrInsufficientCapacity
			}
			taken[key] = true
		}
		pend = append(pend, ClaimInfo{ClaimCharge: c, Node: node, Charged: amount, State: Reserved})
	}
	for _, p := range pend {
		m.claims[p.ID] = p
	}
	return nil
}

func (m *refModel) commit(id ClaimID) error {
	c, ok := m.claims[id]
	if !ok {
		return ErrUnknownClaim
	}
	c.State = Committed
	m.claims[id] = c
	return nil
}

func (m *refModel) release(id ClaimID) bool {
	_, ok := m.claims[id]
	delete(m.claims, id)
	return ok
}

func (m *refModel) resize(id ClaimID, bytes int64) error {
	c, ok := m.claims[id]
	if !ok {
		return ErrUnknownClaim
	}
	if bytes < 0 {
		return ErrInvalid
	}
	n := m.nodes[c.Node]
	if c.Kind == KindLVM {
		vg, ok := n.vgs[c.VG]
		if !ok {
			return ErrUnknownVG
		}
		amount := refRound(bytes, vg.ExtentSizeBytes, c.Stripes)
		if delta := amount - c.Charged; delta > 0 && delta > vg.AllocatableBytes-m.used(c.Node, c.VG) {
			return ErrInsufficientCapacity
		}
		c.Charged = amount
	} else {
		d, ok := n.exs[c.Kind][c.Device]
		if !ok {
			return ErrUnknownDevice
		}
		if d.SizeBytes < bytes {
			return ErrInsufficientCapacity
		}
		c.Charged = d.SizeBytes
	}
	c.Bytes = bytes
	m.claims[id] = c
	return nil
}

// overcommits is what Overcommits must report, recomputed from the model.
func (m *refModel) overcommits() []Overcommit {
	type key struct {
		node, res string
		kind      ResourceKind
	}
	groups := map[key][]ClaimInfo{}
	for _, c := range m.claims {
		res := c.VG
		if c.Kind != KindLVM {
			res = c.Device
		}
		k := key{c.Node, res, c.Kind}
		groups[k] = append(groups[k], c)
	}
	var out []Overcommit
	for k, cs := range groups {
		var charged int64
		ids := make([]ClaimID, 0, len(cs))
		for _, c := range cs {
			charged += c.Charged
			ids = append(ids, c.ID)
		}
		sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
		n := m.nodes[k.node]
		present, limit := false, int64(0)
		if k.kind == KindLVM {
			if vg, ok := n.vgs[k.res]; ok {
				present, limit = true, vg.AllocatableBytes
			}
		} else if d, ok := n.exs[k.kind][k.res]; ok {
			present, limit = true, d.SizeBytes
			if len(cs) > 1 {
				charged = d.SizeBytes * int64(len(cs))
			}
		}
		switch {
		case !present:
			out = append(out, Overcommit{Node: k.node, Kind: k.kind, Resource: k.res, ExcessBytes: charged, Claims: ids})
		case charged > limit:
			out = append(out, Overcommit{Node: k.node, Kind: k.kind, Resource: k.res, ExcessBytes: charged - limit, Claims: ids})
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

// Generators over small name pools, so that operations collide often.
var (
	genNodeName = rapid.SampledFrom([]string{"n0", "n1", "n2"})
	genVGName   = rapid.SampledFrom([]string{"v0", "v1", "v2"})
	genDevName  = rapid.SampledFrom([]string{"/dev/d0", "/dev/d1", "/dev/d2"})
	genMPName   = rapid.SampledFrom([]string{"/mnt/m0", "/mnt/m1"})
	genClaimID  = rapid.SampledFrom([]ClaimID{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", ""})
	genMedia    = rapid.SampledFrom([]MediaType{MediaSSD, MediaHDD, ""})
)

// genBytes draws sizes around extent boundaries, including a few invalid ones.
func genBytes(t *rapid.T, label string) int64 {
	switch rapid.IntRange(0, 9).Draw(t, label+"-shape") {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return rapid.Int64Range(1, 3).Draw(t, label)
	default:
		return rapid.Int64Range(0, 48).Draw(t, label)*MiB + rapid.SampledFrom([]int64{0, 0, 1, -1, MiB / 2}).Draw(t, label+"-off")
	}
}

func genCapacity(t *rapid.T) NodeCapacity {
	var c NodeCapacity
	for i, n := 0, rapid.IntRange(0, 4).Draw(t, "vgs"); i < n; i++ {
		c.VGs = append(c.VGs, VGCapacity{
			Name:             genVGName.Draw(t, "vg"),
			AllocatableBytes: rapid.Int64Range(-1, 64).Draw(t, "alloc") * MiB,
			ExtentSizeBytes:  rapid.SampledFrom([]int64{0, MiB, 4 * MiB, 8 * MiB}).Draw(t, "extent"),
			PVCount:          rapid.IntRange(0, 3).Draw(t, "pvs"),
		})
	}
	for i, n := 0, rapid.IntRange(0, 3).Draw(t, "devs"); i < n; i++ {
		c.Devices = append(c.Devices, DeviceCapacity{Name: genDevName.Draw(t, "dev"), SizeBytes: rapid.Int64Range(-1, 40).Draw(t, "devsize") * MiB, Media: genMedia.Draw(t, "media")})
	}
	for i, n := 0, rapid.IntRange(0, 2).Draw(t, "mps"); i < n; i++ {
		c.MountPoints = append(c.MountPoints, DeviceCapacity{Name: genMPName.Draw(t, "mp"), SizeBytes: rapid.Int64Range(0, 40).Draw(t, "mpsize") * MiB})
	}
	return c
}

func genCharge(t *rapid.T) ClaimCharge {
	c := ClaimCharge{ID: genClaimID.Draw(t, "id"), Bytes: genBytes(t, "bytes")}
	switch rapid.IntRange(0, 9).Draw(t, "kind") {
	case 0, 1, 2, 3, 4, 5:
		c.Kind, c.VG, c.Stripes = KindLVM, genVGName.Draw(t, "vg"), rapid.IntRange(0, 3).Draw(t, "stripes")
	case 6, 7:
		c.Kind, c.Device = KindDevice, genDevName.Draw(t, "dev")
	case 8:
		c.Kind, c.Device = KindMountPoint, genMPName.Draw(t, "mp")
	default:
		c.Kind = ResourceKind(rapid.IntRange(0, 5).Draw(t, "rawkind"))
		c.VG, c.Device = genVGName.Draw(t, "vg"), genDevName.Draw(t, "dev")
	}
	return c
}

// sameSentinel reports whether got is the sentinel want (both nil included).
func sameSentinel(got, want error) bool {
	if want == nil || got == nil {
		return got == nil && want == nil
	}
	if !errors.Is(got, want) {
		return false
	}
	// ErrUnknownClaim is also ErrInvalid; the other way round must not hold.
	return want != ErrInvalid || !errors.Is(got, ErrUnknownClaim)
}

func overcommitKey(o Overcommit) string { return fmt.Sprintf("%s/%s/%s", o.Node, o.Kind, o.Resource) }

// checkAgainstModel compares every figure the ledger exposes with the model.
func checkAgainstModel(t *rapid.T, l *Ledger, m *refModel) {
	ids := make([]ClaimID, 0, len(m.claims))
	for id := range m.claims {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	if got := l.ClaimIDs(); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("claims %v, model %v", got, ids)
	}
	for _, id := range ids {
		got, ok := l.Claim(id)
		if !ok || got != m.claims[id] {
			t.Fatalf("claim %s: ledger %+v, model %+v", id, got, m.claims[id])
		}
	}
	if l.NumNodes() != len(m.nodes) {
		t.Fatalf("%d nodes, model %d", l.NumNodes(), len(m.nodes))
	}
	for name, n := range m.nodes {
		u, ok := l.Node(name)
		if !ok {
			t.Fatalf("node %s missing", name)
		}
		if len(u.VGs) != len(n.vgs) {
			t.Fatalf("node %s: %d VGs, model %d", name, len(u.VGs), len(n.vgs))
		}
		for _, vg := range u.VGs {
			want := n.vgs[vg.Name]
			if vg.VGCapacity != want || vg.UsedBytes != m.used(name, vg.Name) {
				t.Fatalf("node %s VG %s: ledger %+v, model %+v used %d", name, vg.Name, vg, want, m.used(name, vg.Name))
			}
		}
		for kind, list := range map[ResourceKind][]ExclusiveUsage{KindDevice: u.Devices, KindMountPoint: u.MountPoints} {
			if len(list) != len(n.exs[kind]) {
				t.Fatalf("node %s: %d %s, model %d", name, len(list), kind, len(n.exs[kind]))
			}
			for _, d := range list {
				holder, _ := m.holder(name, kind, d.Name)
				if d.DeviceCapacity != n.exs[kind][d.Name] || d.Owner != holder {
					t.Fatalf("node %s %s %s: ledger %+v, model %+v held by %q", name, kind, d.Name, d, n.exs[kind][d.Name], holder)
				}
			}
		}
		if u.Claims != len(l.ClaimsOnNode(name)) {
			t.Fatalf("node %s counts %d claims, lists %d", name, u.Claims, len(l.ClaimsOnNode(name)))
		}
	}
	if got, want := l.Overcommits(), m.overcommits(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("overcommits\n ledger %+v\n model  %+v", got, want)
	}
}

// TestLedgerMatchesModel: under any sequence of reserve, commit, release,
// resize, capacity change and node removal the ledger agrees with the model
// step by step; only a capacity change may create or grow an over-commit,
// which Overcommits then reports exactly, and no operation adds to the usage
// of an over-committed VG.
func TestLedgerMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l, m := NewLedger(), newRefModel()
		for i, n := 0, rapid.IntRange(1, 3).Draw(t, "initial"); i < n; i++ {
			name, c := genNodeName.Draw(t, "node"), genCapacity(t)
			l.SetNode(name, c)
			m.setNode(name, c)
		}
		var before []Overcommit
		capacityChanged := false
		t.Repeat(map[string]func(*rapid.T){
			"reserve": func(t *rapid.T) {
				node := genNodeName.Draw(t, "node")
				charges := rapid.SliceOfN(rapid.Custom(genCharge), 0, 4).Draw(t, "charges")
				want := m.reserve(node, charges)
				if got := l.Reserve(node, charges...); !sameSentinel(got, want) {
					t.Fatalf("Reserve(%s, %+v) = %v, model %v", node, charges, got, want)
				}
			},
			"commit": func(t *rapid.T) {
				id := genClaimID.Draw(t, "id")
				if got, want := l.Commit(id), m.commit(id); !sameSentinel(got, want) {
					t.Fatalf("Commit(%s) = %v, model %v", id, got, want)
				}
			},
			"release": func(t *rapid.T) {
				id := genClaimID.Draw(t, "id")
				if got, want := l.Release(id), m.release(id); got != want {
					t.Fatalf("Release(%s) = %v, model %v", id, got, want)
				}
			},
			"resize": func(t *rapid.T) {
				id, bytes := genClaimID.Draw(t, "id"), genBytes(t, "bytes")
				if got, want := l.Resize(id, bytes), m.resize(id, bytes); !sameSentinel(got, want) {
					t.Fatalf("Resize(%s, %d) = %v, model %v", id, bytes, got, want)
				}
			},
			"setNode": func(t *rapid.T) {
				name, c := genNodeName.Draw(t, "node"), genCapacity(t)
				l.SetNode(name, c)
				m.setNode(name, c)
				capacityChanged = true
			},
			"removeNode": func(t *rapid.T) {
				name := genNodeName.Draw(t, "node")
				if got, want := l.RemoveNode(name), m.removeNode(name); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("RemoveNode(%s) = %v, model %v", name, got, want)
				}
			},
			"clone": func(t *rapid.T) {
				// Carry on with a copy; the original must not change with it.
				orig := l
				snapshot := fmt.Sprint(orig.ClaimIDs(), orig.Overcommits())
				l = l.Clone()
				_ = l.Reserve("n0", ClaimCharge{ID: "probe", Kind: KindLVM, VG: "v0"})
				l.Release("probe")
				if fmt.Sprint(orig.ClaimIDs(), orig.Overcommits()) != snapshot {
					t.Fatalf("changing a clone changed the original")
				}
			},
			"": func(t *rapid.T) {
				checkAgainstModel(t, l, m)
				after := l.Overcommits()
				if !capacityChanged {
					prev := map[string]int64{}
					for _, o := range before {
						prev[overcommitKey(o)] = o.ExcessBytes
					}
					for _, o := range after {
						if excess, ok := prev[overcommitKey(o)]; !ok || o.ExcessBytes > excess {
							t.Fatalf("an operation other than a capacity change over-committed %s: %+v (before: %+v)", overcommitKey(o), o, before)
						}
					}
				}
				before, capacityChanged = after, false
			},
		})
	})
}
