package plugin

import (
	"fmt"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	"k8s.io/apimachinery/pkg/types"
)

// assumption is a pod reserved on a node whose charges the cache may not
// show yet.
type assumption struct {
	node    string
	charges []core.ClaimCharge
}

// nodeLedger is one node's ledger as the plugin judges it: the cache's
// capacity and charges, plus the reservations of other pods not yet in the
// cache. charged lists the claims the cache holds on the node.
type nodeLedger struct {
	ledger  *core.Ledger
	charged map[core.ClaimID]bool
}

// usedPrefix names the charge that stands for what a VG already holds.
// It cannot be a claim ID: those are "namespace/name" or "uid/volume".
const usedPrefix = "used:"

// buildNode builds the ledger of node, leaving out the reservation of pod
// skip. The caller holds p.mu (read or write). A node without
// NodeLocalStorage gets an empty ledger, on which nothing fits.
func (p *Plugin) buildNode(node string, skip types.UID) (*nodeLedger, error) {
	nl := &nodeLedger{ledger: core.NewLedger(), charged: map[core.ClaimID]bool{}}
	v, ok := p.cache.View(node)
	if !ok || len(v.Nodes) == 0 {
		return nl, nil
	}
	nv := v.Nodes[0]
	var caps core.NodeCapacity
	for _, vg := range nv.VolumeGroups {
		caps.VGs = append(caps.VGs, core.VGCapacity{Name: vg.Name, AllocatableBytes: vg.Allocatable})
	}
	for _, d := range nv.Devices {
		caps.Devices = append(caps.Devices, core.DeviceCapacity{Name: d.Name, SizeBytes: d.Size, Media: core.MediaType(d.Media)})
	}
	for _, d := range nv.MountPoints {
		caps.MountPoints = append(caps.MountPoints, core.DeviceCapacity{Name: d.Name, SizeBytes: d.Size, Media: core.MediaType(d.Media)})
	}
	l := nl.ledger
	l.SetNode(node, caps)
	// A VG's usage is one charge of its requested bytes (capped at what it
	// offers: an over-committed VG is simply full). The cache already rounded
	// every LV to its extents.
	for _, vg := range nv.VolumeGroups {
		if used := min(vg.Requested, vg.Allocatable); used > 0 {
			ch := core.ClaimCharge{ID: core.ClaimID(usedPrefix + vg.Name), Kind: core.KindLVM, VG: vg.Name, Bytes: used}
			if err := l.Reserve(node, ch); err != nil {
				return nil, fmt.Errorf("node %s: VG %s: %w", node, vg.Name, err)
			}
		}
	}
	for _, list := range []struct {
		kind core.ResourceKind
		devs []cache.ExclusiveView
	}{{core.KindDevice, nv.Devices}, {core.KindMountPoint, nv.MountPoints}} {
		for _, d := range list.devs {
			if d.Owner == "" {
				continue
			}
			ch := core.ClaimCharge{ID: core.ClaimID(d.Owner), Kind: list.kind, Device: d.Name, Bytes: d.Size}
			if err := l.Reserve(node, ch); err != nil {
				return nil, fmt.Errorf("node %s: %s %s: %w", node, list.kind, d.Name, err)
			}
		}
	}
	for _, c := range nv.Claims {
		nl.charged[core.ClaimID(c.Claim)] = true
	}
	for uid, a := range p.assumed {
		if uid == skip || a.node != node {
			continue
		}
		for _, ch := range a.charges {
			if nl.charged[ch.ID] {
				continue // the cache caught up with this claim
			}
			if _, dup := l.Claim(ch.ID); dup {
				continue
			}
			// A reservation that no longer fits (capacity shrank) cannot be
			// recorded; the node is then judged without it, as the cache
			// would judge a claim whose capacity vanished.
			_ = l.Reserve(node, ch)
		}
	}
	return nl, nil
}

// requestOn is the part of pod's request still to place on a node: volumes
// the cache already charges there are in place.
func (nl *nodeLedger) requestOn(req core.PodRequest) core.PodRequest {
	out := core.PodRequest{Name: req.Name, Volumes: make([]core.VolumeRequest, 0, len(req.Volumes))}
	for _, v := range req.Volumes {
		if !nl.charged[v.Claim] {
			out.Volumes = append(out.Volumes, v)
		}
	}
	return out
}

// settled reports whether the cache shows every claim of a on its node, so
// that the reservation is no longer needed.
func (p *Plugin) settled(a *assumption) bool {
	if len(a.charges) == 0 {
		return true
	}
	v, ok := p.cache.View(a.node)
	if !ok || len(v.Nodes) == 0 {
		return false
	}
	have := map[string]bool{}
	for _, c := range v.Nodes[0].Claims {
		have[c.Claim] = true
	}
	for _, ch := range a.charges {
		if !have[string(ch.ID)] {
			return false
		}
	}
	return true
}
