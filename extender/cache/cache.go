// Package cache is the scheduler extender's view of the cluster's local
// storage: a core.Ledger fed by informers (NodeLocalStorage, Node, PV, PVC,
// StorageClass, Pod, VolumeSnapshot and VolumeSnapshotContent) plus the
// reservations CSI CreateVolume asks for.
//
// What a node's ledger holds is a function of the objects, recomputed for a
// node whenever one of its objects changes, so that the order events arrive
// in does not matter and a restarted extender rebuilds the same state:
//
//   - committed: every Open-Local PV (node from its kubernetes.io/hostname
//     affinity, VG or device from its attributes), every CSI inline volume of
//     a pod bound to the node and not terminated, and every Open-Local LV the
//     agent reports that none of those explains (a snapshot, a volume whose
//     PV is gone but whose LV is not yet) — what is on the disk is charged
//     even when it exceeds what the node offers, and shows in Overcommits;
//   - reserved by the reservation call: the claims CSI CreateVolume is
//     creating, with the VG or device the call returned, where they still
//     fit (a promise that no longer fits waits instead of over-committing);
//   - reserved by the selected-node annotation: claims kube-scheduler put on
//     the node, placed in a fixed order (oldest PVC first) where they fit. A
//     claim that no longer fits is "unplaced": it waits, and the unstick
//     controller removes its annotation once its pod is unschedulable for long
//     enough.
//
// A claim (a PVC "namespace/name") is charged once, by the first of these
// sources that applies, and released when its PVC and PV are deleted.
package cache

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// Options configure a Cache.
type Options struct {
	// Strategy orders feasible nodes and VGs (default core.Binpack).
	Strategy core.Strategy
	// OwnedLVPrefixes mark Open-Local's LVs (nil = core.DefaultOwnedLVPrefixes).
	OwnedLVPrefixes []string
	// Clock dates unplaced claims (default the real clock).
	Clock clock.PassiveClock
	// OnUnplaced is told about a claim that waits for capacity on its
	// selected node, and again when a pod using it turns unschedulable. It runs
	// under the cache lock and must not block (a workqueue Add).
	OnUnplaced func(core.ClaimID)
}

// Source tells how a claim came to be charged.
type Source string

const (
	SourcePV          Source = "pv"
	SourceInline      Source = "inline"
	SourceLV          Source = "lv"
	SourceReservation Source = "reservation"
	SourceAnnotation  Source = "annotation"
)

// Cache is safe for concurrent use: events and reservations take the write
// lock, filter and prioritize the read lock.
type Cache struct {
	mu     sync.RWMutex
	opt    Options
	ledger *core.Ledger
	wev    *core.Evaluator // used under the write lock
	evals  sync.Pool       // *core.Evaluator, used under the read lock
	gen    uint64          // bumped on every change that can alter a decision
	synced atomic.Bool
	memo   memo

	nls        map[string]*nlsRecord
	nodeHost   map[string]string // node name -> its kubernetes.io/hostname label
	hostToNode map[string]string
	pvs        map[string]*pvRecord
	foreignPVs map[string]struct{} // PVs of other drivers, by name
	pvByClaim  map[core.ClaimID][]string
	pvByHandle map[string]string
	pvByHost   map[string]map[string]struct{} // hostname -> PV names
	pvNode     map[string]string              // PV name -> the node it is indexed on
	lvNodes    map[string]map[string]struct{} // Open-Local LV name -> nodes reporting it
	pvcs       map[core.ClaimID]*corev1.PersistentVolumeClaim
	scs        map[string]*storagev1.StorageClass
	pods       map[string]*podRecord
	podsByPVC  map[core.ClaimID]map[string]struct{}
	snapshots  map[string]snapshotRecord
	contents   map[string]contentRecord
	// snapshotAPI is false when the cluster has no snapshot.storage.k8s.io/v1.
	snapshotAPI bool

	reservations map[core.ClaimID]reservation
	unplaced     map[core.ClaimID]unplacedRecord
	sources      map[core.ClaimID]Source
	conflicts    map[string][]string // node -> charges that could not be recorded
	byNode       map[string]*nodeIndex
	dirty        map[string]struct{}
}

// reservation is what the reservation call promised CSI for a claim.
type reservation struct {
	node   string
	charge core.ClaimCharge
	// restore: a read-only snapshot restore, which takes nothing.
	restore bool
	// assumed: booked by the framework plugin (Assume), not by CSI's
	// reservation call; owner is the pod it was booked for.
	assumed bool
	owner   string
}

type unplacedRecord struct {
	node   string
	reason string
	since  time.Time
}

// nodeIndex lists the objects that put charges on one node.
type nodeIndex struct {
	pvs       map[string]struct{}
	pods      map[string]struct{}
	annotated map[core.ClaimID]struct{}
	reserved  map[core.ClaimID]struct{}
}

func (x *nodeIndex) empty() bool {
	return len(x.pvs) == 0 && len(x.pods) == 0 && len(x.annotated) == 0 && len(x.reserved) == 0
}

// New returns an empty cache; feed it with Run (informers) or the Upsert and
// Delete methods.
func New(opt Options) *Cache {
	if opt.Strategy == 0 {
		opt.Strategy = core.Binpack
	}
	if opt.Clock == nil {
		opt.Clock = clock.RealClock{}
	}
	l := core.NewLedger()
	c := &Cache{
		opt:          opt,
		ledger:       l,
		wev:          core.NewEvaluator(l),
		nls:          map[string]*nlsRecord{},
		nodeHost:     map[string]string{},
		hostToNode:   map[string]string{},
		pvs:          map[string]*pvRecord{},
		foreignPVs:   map[string]struct{}{},
		pvByClaim:    map[core.ClaimID][]string{},
		pvByHandle:   map[string]string{},
		pvByHost:     map[string]map[string]struct{}{},
		pvNode:       map[string]string{},
		lvNodes:      map[string]map[string]struct{}{},
		pvcs:         map[core.ClaimID]*corev1.PersistentVolumeClaim{},
		scs:          map[string]*storagev1.StorageClass{},
		pods:         map[string]*podRecord{},
		podsByPVC:    map[core.ClaimID]map[string]struct{}{},
		snapshots:    map[string]snapshotRecord{},
		contents:     map[string]contentRecord{},
		snapshotAPI:  true,
		reservations: map[core.ClaimID]reservation{},
		unplaced:     map[core.ClaimID]unplacedRecord{},
		sources:      map[core.ClaimID]Source{},
		conflicts:    map[string][]string{},
		byNode:       map[string]*nodeIndex{},
		dirty:        map[string]struct{}{},
	}
	c.evals.New = func() any {
		// The extender answers with reasons only; details are for logs and /cache.
		e := core.NewEvaluator(l)
		e.SetBriefReasons(true)
		return e
	}
	return c
}

// Strategy is the cache's placement strategy.
func (c *Cache) Strategy() core.Strategy { return c.opt.Strategy }

// Synced reports whether every informer delivered its initial list.
func (c *Cache) Synced() bool { return c.synced.Load() }

// MarkSynced declares the cache complete (Run does it after the informers'
// initial lists; tests that feed objects by hand call it).
func (c *Cache) MarkSynced() { c.synced.Store(true) }

// SetSnapshotAPI says whether the cluster serves snapshot.storage.k8s.io/v1.
func (c *Cache) SetSnapshotAPI(present bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapshotAPI = present
	c.gen++
}

func (c *Cache) index(node string) *nodeIndex {
	x := c.byNode[node]
	if x == nil {
		x = &nodeIndex{pvs: map[string]struct{}{}, pods: map[string]struct{}{}, annotated: map[core.ClaimID]struct{}{}, reserved: map[core.ClaimID]struct{}{}}
		c.byNode[node] = x
	}
	return x
}

// unindex drops a node's index once nothing refers to it.
func (c *Cache) unindex(node string) {
	if x := c.byNode[node]; x != nil && x.empty() {
		delete(c.byNode, node)
	}
}

func (c *Cache) markDirty(nodes ...string) {
	for _, n := range nodes {
		if n != "" {
			c.dirty[n] = struct{}{}
		}
	}
}

// nodeOfPV resolves a PV's hostname to a node name.
func (c *Cache) nodeOfPV(r *pvRecord) string {
	if n, ok := c.hostToNode[r.hostname]; ok {
		return n
	}
	return r.hostname
}

// backingPV is the PV bound to the PVC id (claimRef with its UID), if any.
func (c *Cache) backingPV(id core.ClaimID) *pvRecord {
	pvc := c.pvcs[id]
	if pvc == nil {
		return nil
	}
	for _, name := range c.pvByClaim[id] {
		r := c.pvs[name]
		if r.claimUID == "" || r.claimUID == pvc.UID {
			return r
		}
	}
	return nil
}

// pvClaimID is the claim a PV's charge is booked under: its PVC's while the
// PVC exists, "pv:<name>" once the PVC is gone (a Retain PV still holds its LV)
// or when a new PVC of the same name is not the one it was bound to.
func (c *Cache) pvClaimID(r *pvRecord) core.ClaimID {
	if r.claim != "" {
		if b := c.backingPV(r.claim); b == r {
			return r.claim
		}
	}
	return core.ClaimID("pv:" + r.name)
}

// touchClaim marks every node that holds or may hold claim id.
func (c *Cache) touchClaim(id core.ClaimID) {
	if ci, ok := c.ledger.Claim(id); ok {
		c.markDirty(ci.Node)
	}
	if pvc := c.pvcs[id]; pvc != nil {
		c.markDirty(pvc.Annotations[AnnSelectedNode])
	}
	if r, ok := c.reservations[id]; ok {
		c.markDirty(r.node)
	}
	for _, name := range c.pvByClaim[id] {
		c.markDirty(c.nodeOfPV(c.pvs[name]))
	}
}

// flush recomputes every dirty node. A claim found charged on a node that
// no longer derives it is released there and that node recomputed as well.
func (c *Cache) flush() {
	if len(c.dirty) == 0 {
		return
	}
	c.gen++
	for guard := 0; len(c.dirty) > 0; guard++ {
		nodes := make([]string, 0, len(c.dirty))
		for n := range c.dirty {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		clear(c.dirty)
		for _, n := range nodes {
			c.rebuild(n)
		}
		if guard > 2*len(c.byNode)+len(c.nls)+8 {
			klog.ErrorS(nil, "Cache: node rebuilds did not settle", "pending", len(c.dirty))
			clear(c.dirty)
		}
	}
}

// rebuild recomputes node n's charges from the objects.
func (c *Cache) rebuild(n string) {
	for _, id := range c.ledger.ClaimsOnNode(n) {
		c.ledger.Release(id)
		delete(c.sources, id)
	}
	delete(c.conflicts, n)
	since := map[core.ClaimID]time.Time{}
	for id, u := range c.unplaced {
		if u.node == n {
			since[id] = u.since
			delete(c.unplaced, id)
		}
	}
	rec := c.nls[n]
	if rec == nil {
		c.ledger.RemoveNode(n)
		return
	}
	x := c.byNode[n]
	if x == nil {
		x = &nodeIndex{}
	}
	held := map[string]bool{}
	for name := range x.pvs {
		if r := c.pvs[name]; r.invalid == "" && r.charge.Kind == core.KindDevice {
			held[r.charge.Device] = true
		}
	}
	rec = rec.holding(held)
	c.ledger.SetNode(n, rec.capacity)
	known := map[string]bool{}

	// What is on the disk first: PVs, inline volumes of running pods, LVs.
	for _, name := range sortedKeys(x.pvs) {
		r := c.pvs[name]
		known[r.handle] = true
		if r.invalid != "" || r.noCharge {
			continue
		}
		ch := r.charge
		ch.ID = c.pvClaimID(r)
		ch.Stripes = c.stripes(rec, ch.VG, r.striped)
		c.charge(n, rec, ch, SourcePV)
	}
	for _, key := range sortedKeys(x.pods) {
		p := c.pods[key]
		if p == nil || p.terminal || p.nodeName != n {
			continue
		}
		for i, v := range p.inline {
			known[p.inlineLVs[i]] = true
			ch := core.ClaimCharge{ID: v.Claim, Kind: core.KindLVM, VG: v.VG, Bytes: v.Bytes, Stripes: c.stripes(rec, v.VG, v.Striped)}
			c.charge(n, rec, ch, SourceInline)
		}
	}
	for _, lv := range rec.existing {
		if known[lv.Name] {
			continue
		}
		ch := core.ClaimCharge{ID: core.ClaimID("lv:" + n + "/" + lv.VG + "/" + lv.Name), Kind: core.KindLVM, VG: lv.VG, Bytes: lv.SizeBytes}
		c.charge(n, rec, ch, SourceLV)
	}

	// What CSI is creating, where the reservation call said. A promise is
	// not a volume: one that no longer fits (capacity shrank, or a volume
	// CSI made elsewhere took the room) waits like an unplaced claim rather
	// than over-commit the node.
	for _, id := range sortedKeys(x.reserved) {
		r := c.reservations[id]
		if r.restore || c.backingPV(id) != nil {
			continue
		}
		if r.assumed {
			if ci, ok := c.ledger.Claim(id); ok && ci.Node == n {
				// The bound pod's inline volume now charges the claim
				// itself: the assumption has done its job.
				delete(c.reservations, id)
				delete(x.reserved, id)
				continue
			}
		}
		c.freeElsewhere(n, id)
		if err := c.ledger.Reserve(n, r.charge); err != nil {
			c.unplaced[id] = unplacedRecord{node: n, reason: "reservation no longer fits: " + err.Error(), since: sinceOr(since, id, c.opt.Clock.Now())}
			continue
		}
		c.sources[id] = SourceReservation
		if r.assumed {
			c.sources[id] = SourceAssumed
		}
	}

	// What kube-scheduler chose, oldest PVC first, where it still fits.
	for _, id := range c.annotatedInOrder(x) {
		if _, ok := c.reservations[id]; ok || c.backingPV(id) != nil {
			continue
		}
		pvc := c.pvcs[id]
		req, ours, err := c.requestForPVC(pvc)
		if !ours {
			continue
		}
		c.freeElsewhere(n, id)
		reason := ""
		if err != nil {
			reason = err.Error()
		} else if a, ferr := c.wev.Fit(n, core.PodRequest{Volumes: []core.VolumeRequest{req}}, c.opt.Strategy); ferr != nil {
			reason = ferr.Error()
		} else if charges := a.Charges(); len(charges) > 0 {
			if err := c.ledger.Reserve(n, charges...); err != nil {
				reason = err.Error()
			} else {
				c.sources[charges[0].ID] = SourceAnnotation
			}
		}
		if reason != "" {
			_, seen := since[id]
			c.unplaced[id] = unplacedRecord{node: n, reason: reason, since: sinceOr(since, id, c.opt.Clock.Now())}
			if !seen && c.opt.OnUnplaced != nil {
				c.opt.OnUnplaced(id)
			}
		}
	}
}

func sinceOr(since map[core.ClaimID]time.Time, id core.ClaimID, now time.Time) time.Time {
	if t, ok := since[id]; ok {
		return t
	}
	return now
}

// annotatedInOrder lists the claims annotated for a node, oldest PVC first.
func (c *Cache) annotatedInOrder(x *nodeIndex) []core.ClaimID {
	ids := make([]core.ClaimID, 0, len(x.annotated))
	for id := range x.annotated {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool {
		ta, tb := c.pvcs[ids[a]].CreationTimestamp, c.pvcs[ids[b]].CreationTimestamp
		if !ta.Equal(&tb) {
			return ta.Before(&tb)
		}
		return ids[a] < ids[b]
	})
	return ids
}

// stripes is the stripe count of a striped LV in vg: one per PV.
func (c *Cache) stripes(rec *nlsRecord, vg string, striped bool) int {
	if !striped {
		return 1
	}
	for _, v := range rec.capacity.VGs {
		if v.Name == vg {
			return max(1, v.PVCount)
		}
	}
	return 1
}

// freeElsewhere releases claim id if the ledger holds it on another node,
// whose derivation is then stale: that node is recomputed too.
func (c *Cache) freeElsewhere(n string, id core.ClaimID) {
	if ci, ok := c.ledger.Claim(id); ok && ci.Node != n {
		c.ledger.Release(id)
		delete(c.sources, id)
		c.markDirty(ci.Node)
	}
}

// charge books ch, which exists on the disk, on node n: even where it
// exceeds what the node offers, so that the ledger reports it in
// Overcommits instead of the cache hiding it.
func (c *Cache) charge(n string, rec *nlsRecord, ch core.ClaimCharge, src Source) {
	c.freeElsewhere(n, ch.ID)
	err := c.ledger.Reserve(n, ch)
	if err != nil && (errors.Is(err, core.ErrInsufficientCapacity) || errors.Is(err, core.ErrUnknownVG) || errors.Is(err, core.ErrUnknownDevice)) {
		err = c.chargeBeyond(n, rec, ch)
	}
	if err != nil {
		c.conflicts[n] = append(c.conflicts[n], string(ch.ID)+": "+err.Error())
		return
	}
	c.sources[ch.ID] = src
	_ = c.ledger.Commit(ch.ID) // the claim was just reserved
}

// chargeBeyond books a charge the node's capacity does not hold: the ledger
// accepts reservations only within capacity, so the node briefly offers just
// enough more, takes the charge and goes back to its real capacity, which
// leaves the excess visible in Overcommits. A device already held by another
// claim cannot be booked twice; that stays an error.
func (c *Cache) chargeBeyond(n string, rec *nlsRecord, ch core.ClaimCharge) error {
	room := core.NodeCapacity{
		VGs:         append([]core.VGCapacity(nil), rec.capacity.VGs...),
		Devices:     append([]core.DeviceCapacity(nil), rec.capacity.Devices...),
		MountPoints: append([]core.DeviceCapacity(nil), rec.capacity.MountPoints...),
	}
	u, _ := c.ledger.Node(n)
	switch ch.Kind {
	case core.KindLVM:
		var used int64
		for _, v := range u.VGs {
			if v.Name == ch.VG {
				used = v.UsedBytes
			}
		}
		found := false
		for i := range room.VGs {
			if room.VGs[i].Name == ch.VG {
				need := core.LVSize(ch.Bytes, room.VGs[i].ExtentSizeBytes, ch.Stripes)
				room.VGs[i].AllocatableBytes = satAdd(used, need)
				room.VGs[i].PVCount = max(room.VGs[i].PVCount, ch.Stripes)
				found = true
			}
		}
		if !found {
			room.VGs = append(room.VGs, core.VGCapacity{Name: ch.VG, AllocatableBytes: satAdd(used, core.LVSize(ch.Bytes, 0, ch.Stripes)), PVCount: max(1, ch.Stripes)})
		}
	case core.KindDevice, core.KindMountPoint:
		list := &room.Devices
		if ch.Kind == core.KindMountPoint {
			list = &room.MountPoints
		}
		found := false
		for i := range *list {
			if (*list)[i].Name == ch.Device {
				(*list)[i].SizeBytes = max((*list)[i].SizeBytes, ch.Bytes)
				found = true
			}
		}
		if !found {
			*list = append(*list, core.DeviceCapacity{Name: ch.Device, SizeBytes: ch.Bytes})
		}
	}
	c.ledger.SetNode(n, room)
	err := c.ledger.Reserve(n, ch)
	c.ledger.SetNode(n, rec.capacity)
	return err
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// Overcommits is the ledger's independent recount of resources holding more
// than they offer.
func (c *Cache) Overcommits() []core.Overcommit {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ledger.Overcommits()
}

// NumClaims is how many claims the ledger holds.
func (c *Cache) NumClaims() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ledger.NumClaims()
}

// Claim returns what the ledger holds for a claim and how it came there.
func (c *Cache) Claim(id core.ClaimID) (core.ClaimInfo, Source, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ci, ok := c.ledger.Claim(id)
	return ci, c.sources[id], ok
}

// Unplaced returns why a claim annotated for a node does not fit there.
func (c *Cache) Unplaced(id core.ClaimID) (node, reason string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	u, ok := c.unplaced[id]
	return u.node, u.reason, ok
}

// setNLS records (or, for nil, forgets) what a node offers.
func (c *Cache) setNLS(name string, nls *v1alpha1.NodeLocalStorage) {
	if old := c.nls[name]; old != nil {
		for _, lv := range old.existing {
			if set := c.lvNodes[lv.Name]; set != nil {
				delete(set, name)
				if len(set) == 0 {
					delete(c.lvNodes, lv.Name)
				}
			}
		}
	}
	if nls == nil {
		delete(c.nls, name)
	} else {
		rec := parseNLS(nls, c.opt.OwnedLVPrefixes)
		c.nls[name] = rec
		for _, lv := range rec.existing {
			set := c.lvNodes[lv.Name]
			if set == nil {
				set = map[string]struct{}{}
				c.lvNodes[lv.Name] = set
			}
			set[name] = struct{}{}
		}
	}
	c.markDirty(name)
}
