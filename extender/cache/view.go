package cache

import (
	"sort"
	"time"

	"github.com/open-local/open-local/core"
)

// View is the cache as GET /cache shows it. Every list is sorted, so that
// the same objects give the same JSON whatever order they arrived in.
type View struct {
	Synced   bool       `json:"synced"`
	Strategy string     `json:"strategy"`
	Nodes    []NodeView `json:"nodes"`
	// Overcommits are resources holding more than they offer (capacity that
	// shrank under existing volumes).
	Overcommits []OvercommitView `json:"overcommits,omitempty"`
}

// OvercommitView is a resource whose charges exceed what it offers.
type OvercommitView struct {
	Node        string   `json:"node"`
	Kind        string   `json:"kind"`
	Resource    string   `json:"resource"`
	ExcessBytes int64    `json:"excessBytes"`
	Claims      []string `json:"claims"`
}

// NodeView is one node.
type NodeView struct {
	Name string `json:"name"`
	// Error is why the node offers nothing (an invalid listConfig or reservation).
	Error        string          `json:"error,omitempty"`
	VolumeGroups []VGView        `json:"volumeGroups"`
	Devices      []ExclusiveView `json:"devices"`
	MountPoints  []ExclusiveView `json:"mountPoints"`
	Claims       []ClaimView     `json:"claims"`
	// Unplaced are claims annotated for the node that do not fit there.
	Unplaced []UnplacedView `json:"unplaced,omitempty"`
	// Skipped are resources the listConfig selects that are not allocatable.
	Skipped []string `json:"skipped,omitempty"`
	// Conflicts are charges that could not be recorded at all.
	Conflicts []string `json:"conflicts,omitempty"`
}

// VGView is a volume group's figures in bytes.
type VGView struct {
	Name        string `json:"name"`
	Allocatable int64  `json:"allocatable"`
	Requested   int64  `json:"requested"`
	Free        int64  `json:"free"`
}

// ExclusiveView is a whole device or mount point.
type ExclusiveView struct {
	Name  string `json:"name"`
	Media string `json:"mediaType,omitempty"`
	Size  int64  `json:"size"`
	Owner string `json:"owner,omitempty"`
}

// ClaimView is one charge.
type ClaimView struct {
	Claim   string `json:"claim"`
	Kind    string `json:"kind"`
	VG      string `json:"vgName,omitempty"`
	Device  string `json:"device,omitempty"`
	Bytes   int64  `json:"bytes"`
	Charged int64  `json:"charged"`
	State   string `json:"state"`
	Source  Source `json:"source"`
}

// UnplacedView is a claim waiting for capacity on its selected node.
type UnplacedView struct {
	Claim  string    `json:"claim"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// View returns the whole cache, or one node when node is not "" (ok is
// false when that node is unknown).
func (c *Cache) View(node string) (View, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v := View{Synced: c.Synced(), Strategy: c.opt.Strategy.String()}
	names := sortedKeys(c.nls)
	if node != "" {
		if _, ok := c.nls[node]; !ok {
			return v, false
		}
		names = []string{node}
	}
	v.Nodes = make([]NodeView, 0, len(names))
	for _, n := range names {
		v.Nodes = append(v.Nodes, c.nodeView(n))
	}
	for _, oc := range c.ledger.Overcommits() {
		if node == "" || oc.Node == node {
			ov := OvercommitView{Node: oc.Node, Kind: oc.Kind.String(), Resource: oc.Resource, ExcessBytes: oc.ExcessBytes}
			for _, id := range oc.Claims {
				ov.Claims = append(ov.Claims, string(id))
			}
			v.Overcommits = append(v.Overcommits, ov)
		}
	}
	return v, true
}

func (c *Cache) nodeView(n string) NodeView {
	nv := NodeView{Name: n, VolumeGroups: []VGView{}, Devices: []ExclusiveView{}, MountPoints: []ExclusiveView{}, Claims: []ClaimView{}}
	rec := c.nls[n]
	if rec.err != nil {
		nv.Error = rec.err.Error()
	}
	for _, s := range rec.skipped {
		nv.Skipped = append(nv.Skipped, s.Kind.String()+" "+s.Name+": "+s.Reason)
	}
	nv.Conflicts = append(nv.Conflicts, c.conflicts[n]...)
	sort.Strings(nv.Conflicts)
	u, ok := c.ledger.Node(n)
	if !ok {
		return nv
	}
	for _, vg := range u.VGs {
		nv.VolumeGroups = append(nv.VolumeGroups, VGView{Name: vg.Name, Allocatable: vg.AllocatableBytes, Requested: vg.UsedBytes, Free: vg.FreeBytes()})
	}
	sort.Slice(nv.VolumeGroups, func(a, b int) bool { return nv.VolumeGroups[a].Name < nv.VolumeGroups[b].Name })
	nv.Devices = exclusiveViews(u.Devices)
	nv.MountPoints = exclusiveViews(u.MountPoints)
	for _, id := range c.ledger.ClaimsOnNode(n) {
		ci, _ := c.ledger.Claim(id)
		state := "Reserved"
		if ci.State == core.Committed {
			state = "Committed"
		}
		nv.Claims = append(nv.Claims, ClaimView{
			Claim: string(id), Kind: ci.Kind.String(), VG: ci.VG, Device: ci.Device,
			Bytes: ci.Bytes, Charged: ci.Charged, State: state, Source: c.sources[id],
		})
	}
	for _, id := range sortedKeys(c.unplaced) {
		if p := c.unplaced[id]; p.node == n {
			nv.Unplaced = append(nv.Unplaced, UnplacedView{Claim: string(id), Reason: p.reason, Since: p.since.UTC()})
		}
	}
	return nv
}

func exclusiveViews(list []core.ExclusiveUsage) []ExclusiveView {
	out := make([]ExclusiveView, 0, len(list))
	for _, d := range list {
		out = append(out, ExclusiveView{Name: d.Name, Media: string(d.Media), Size: d.SizeBytes, Owner: string(d.Owner)})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// NodeStats are one node's figures for metrics.
type NodeStats struct {
	Name        string
	VGs         []core.VGUsage
	Devices     []core.ExclusiveUsage
	MountPoints []core.ExclusiveUsage
	Claims      int
	Unplaced    int
}

// VisitNodes calls fn for each node under the read lock, in name order. fn
// must not call back into the cache.
func (c *Cache) VisitNodes(fn func(NodeStats)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	unplaced := map[string]int{}
	for _, u := range c.unplaced {
		unplaced[u.node]++
	}
	for _, n := range sortedKeys(c.nls) {
		u, ok := c.ledger.Node(n)
		if !ok {
			continue
		}
		fn(NodeStats{Name: n, VGs: u.VGs, Devices: u.Devices, MountPoints: u.MountPoints, Claims: u.Claims, Unplaced: unplaced[n]})
	}
}

// Totals are cluster-wide counts for metrics.
type Totals struct {
	Nodes, Claims, Reservations, Unplaced, Overcommits, Conflicts int
}

// Totals counts what the cache holds.
func (c *Cache) Totals() Totals {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t := Totals{Nodes: c.ledger.NumNodes(), Claims: c.ledger.NumClaims(), Reservations: len(c.reservations), Unplaced: len(c.unplaced), Overcommits: len(c.ledger.Overcommits())}
	for _, list := range c.conflicts {
		t.Conflicts += len(list)
	}
	return t
}

// Observed reports what the cache last saw of a pod and of a PVC: the
// pod's node ("" unbound or unknown) and the PVC's selected-node
// annotation. A caller that wrote both can wait on it until the informers
// have caught up with its writes.
func (c *Cache) Observed(namespace, pod string, pvc core.ClaimID) (podNode, pvcNode string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if p := c.pods[namespace+"/"+pod]; p != nil {
		podNode = p.nodeName
	}
	if claim := c.pvcs[pvc]; claim != nil {
		pvcNode = claim.Annotations[AnnSelectedNode]
	}
	return podNode, pvcNode
}
