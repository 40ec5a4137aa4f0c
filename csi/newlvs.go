package csi

import "sync"

// newLVs are the LVs this driver process created for volumes without a
// content source that no node call has used yet. The first NodeStageVolume
// of such a volume formats it without probing it first
// (hostexec.Host.FormatNewLV): nothing on it belongs to anyone. The set is
// memory only, so after a restart every volume is probed as before; it
// holds at most the volumes created and not yet staged or deleted.
type newLVs struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func (n *newLVs) add(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]struct{}{}
	}
	n.m[id] = struct{}{}
}

// take reports whether id is a new LV and forgets it: only its first use may
// skip the probe.
func (n *newLVs) take(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.m[id]
	delete(n.m, id)
	return ok
}

func (n *newLVs) forget(id string) { n.take(id) }
