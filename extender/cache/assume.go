package cache

import (
	"fmt"

	"github.com/open-local/open-local/core"
)

// SourceAssumed marks a claim booked by the scheduling-framework plugin's
// Reserve: the pod is assumed on the node, its binding not written yet.
const SourceAssumed Source = "assumed"

// FitNode judges req on one node against the ledger as it is now,
// assumptions included, and returns the node's score. It takes the read
// lock only: the framework calls it for many nodes in parallel.
func (c *Cache) FitNode(node string, req core.PodRequest) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.evals.Get().(*core.Evaluator)
	defer c.evals.Put(e)
	a, err := e.Fit(node, req, c.opt.Strategy)
	return a.Score, err
}

// Assume places req on node for owner (the pod's UID) and books every volume of it as a
// reservation, all or nothing, under the write lock: two pods assumed one
// after the other can never be given the same bytes. A booking lasts until
// Unassume (the plugin's Unreserve), until the claim's PVC is deleted or
// annotated for another node, or — for inline volumes, which have no PVC —
// until the bound pod's own charge takes its place.
func (c *Cache) Assume(node, owner string, req core.PodRequest) (core.Assignment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.flush()
	if !c.ledger.HasNode(node) {
		return core.Assignment{}, &core.Unfit{Node: node, Reason: core.ReasonNoStorage, Detail: "node " + node}
	}
	for _, v := range req.Volumes {
		if r, ok := c.reservations[v.Claim]; ok && r.node != node {
			return core.Assignment{}, fmt.Errorf("claim %s is reserved on node %s, not %s: %w", v.Claim, r.node, node, ErrConflict)
		}
	}
	a, err := c.wev.Fit(node, req, c.opt.Strategy)
	if err != nil {
		return core.Assignment{}, err
	}
	a.Volumes = append([]core.VolumeAssignment(nil), a.Volumes...) // the evaluator reuses its buffers
	if err := c.ledger.Reserve(node, a.Charges()...); err != nil {
		return core.Assignment{}, fmt.Errorf("node %s: %w", node, err)
	}
	for _, v := range a.Volumes {
		if v.Existing {
			continue // charged already, by its PV or an earlier booking
		}
		res := reservation{node: node, assumed: true, owner: owner, restore: v.Kind == core.VolumeSnapshotRestore}
		if !res.restore {
			ch, _ := c.ledger.Claim(v.Claim)
			res.charge = ch.ClaimCharge
			c.sources[v.Claim] = SourceAssumed
		}
		c.reservations[v.Claim] = res
		c.index(node).reserved[v.Claim] = struct{}{}
		delete(c.unplaced, v.Claim)
	}
	c.gen++
	return a, nil
}

// Unassume drops the bookings Assume made on node for owner among these
// claims; a claim booked any other way, or for another pod sharing the
// PVC, is left alone. It is idempotent.
func (c *Cache) Unassume(node, owner string, ids []core.ClaimID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.flush()
	for _, id := range ids {
		if r, ok := c.reservations[id]; ok && r.assumed && r.node == node && r.owner == owner {
			c.dropReservation(id)
		}
	}
}

// NumAssumed is how many claims are booked by Assume whose binding the
// cache has not seen yet: no PV, no selected-node annotation for the node,
// no bound pod charging the inline volume.
func (c *Cache) NumAssumed() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for id, r := range c.reservations {
		if !r.assumed || c.backingPV(id) != nil {
			continue
		}
		if pvc := c.pvcs[id]; pvc != nil && pvc.Annotations[AnnSelectedNode] == r.node {
			continue
		}
		n++
	}
	return n
}
