package cache

import (
	"time"

	"github.com/open-local/open-local/core"
)

// StuckVerdict says what to do about a claim that waits for capacity.
type StuckVerdict struct {
	// Node is the selected node the claim's annotation names.
	Node string
	// Reason is why the claim does not fit there.
	Reason string
	// Unstick: remove the annotation now.
	Unstick bool
	// Wait, when positive, is how long to wait before asking again.
	Wait time.Duration
}

// Stuck decides about claim id: a PVC whose selected-node annotation names a
// node that cannot hold it is unstuck (its annotation removed, so that
// kube-scheduler chooses again) once it has waited delay and every pod using
// it is still unbound, at least one of them marked unschedulable. While
// provisioning may still be under way (no pod is marked unschedulable yet)
// nothing happens: kube-scheduler's volume binding is waiting for it.
func (c *Cache) Stuck(id core.ClaimID, delay time.Duration) StuckVerdict {
	c.mu.RLock()
	defer c.mu.RUnlock()
	u, ok := c.unplaced[id]
	if !ok {
		return StuckVerdict{}
	}
	v := StuckVerdict{Node: u.node, Reason: u.reason}
	pvc := c.pvcs[id]
	if pvc == nil || pvc.Annotations[AnnSelectedNode] != u.node || c.backingPV(id) != nil {
		return StuckVerdict{}
	}
	if _, reserved := c.reservations[id]; reserved {
		return StuckVerdict{}
	}
	unschedulable := false
	for key := range c.podsByPVC[id] {
		p := c.pods[key]
		if p == nil || p.terminal {
			continue
		}
		if p.nodeName != "" {
			return StuckVerdict{} // a pod runs with it: nothing to reschedule
		}
		unschedulable = unschedulable || p.unschedulable
	}
	if !unschedulable {
		return StuckVerdict{}
	}
	if waited := c.opt.Clock.Since(u.since); waited < delay {
		v.Wait = delay - waited
		return v
	}
	v.Unstick = true
	return v
}
