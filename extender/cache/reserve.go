package cache

import (
	"errors"
	"fmt"
	"sort"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/volumereq"
)

// Binding is where a claim's volume goes: open-local's reservation answer.
type Binding struct {
	Node string `json:"node"`
	// Disk is the mount point of a MountPoint volume.
	Disk   string `json:"disk"`
	VGName string `json:"vgName"`
	// Device is the device of a Device volume.
	Device                string `json:"device"`
	VolumeType            string `json:"volumeType"`
	PersistentVolumeClaim string `json:"persistentVolumeClaim"`
}

// Reservation errors; the HTTP layer maps them to status codes.
var (
	// ErrNotFound: the PVC is not in the cache.
	ErrNotFound = errors.New("not found")
	// ErrBadRequest: the call itself is wrong (a parameter, the PVC's class).
	ErrBadRequest = errors.New("bad request")
	// ErrInsufficient: the node cannot hold the pod's volumes. The message
	// starts with core's reason ("Insufficient LVM storage", ...), which CSI
	// drivers written for open-local look for.
	ErrInsufficient = errors.New("insufficient storage")
	// ErrConflict: the claim is already promised to another node or resource.
	ErrConflict = errors.New("conflict")
)

// ReserveRequest is the reservation call: CSI CreateVolume asking where the
// volume of PVC Namespace/Name goes on Node.
type ReserveRequest struct {
	Namespace, Name, Node string
	// VolumeType and VGName, when set, must agree with the PVC's class
	// (VGName pins the VG of a class that pins none).
	VolumeType, VGName string
}

// Reserve books the PVC and every other unbound Open-Local PVC of the pod
// that uses it on the node, all or nothing, and answers where the PVC's
// volume goes. Asking again for a claim already booked on that node returns
// the same answer; a claim booked by its selected-node annotation keeps the
// VG or device it was given.
func (c *Cache) Reserve(r ReserveRequest) (Binding, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.flush()
	if r.Node == "" {
		return Binding{}, fmt.Errorf("nodeName is required: %w", ErrBadRequest)
	}
	id := volumereq.ClaimForPVC(r.Namespace, r.Name)
	pvc := c.pvcs[id]
	if pvc == nil {
		return Binding{}, fmt.Errorf("persistentvolumeclaim %s: %w", id, ErrNotFound)
	}
	req, ours, err := c.requestForPVC(pvc)
	switch {
	case !ours:
		return Binding{}, fmt.Errorf("persistentvolumeclaim %s does not use an Open-Local StorageClass: %w", id, ErrBadRequest)
	case err != nil:
		return Binding{}, fmt.Errorf("%v: %w", err, ErrBadRequest)
	}
	if err := checkParams(id, &req, r); err != nil {
		return Binding{}, err
	}
	if pv := c.backingPV(id); pv != nil {
		// Already provisioned (or being expanded): answer with the PV.
		if n := c.nodeOfPV(pv); n != r.Node {
			return Binding{}, fmt.Errorf("persistentvolumeclaim %s is bound to persistentvolume %s on node %s, not %s: %w", id, pv.name, n, r.Node, ErrConflict)
		}
		return bindingOf(id, r.Node, req.Kind, pv.charge.VG, pv.charge.Device), nil
	}
	if res, ok := c.reservations[id]; ok {
		if res.node != r.Node {
			return Binding{}, fmt.Errorf("persistentvolumeclaim %s is reserved on node %s, not %s: %w", id, res.node, r.Node, ErrConflict)
		}
		return c.bindingOfReservation(id, res), nil
	}
	if !c.ledger.HasNode(r.Node) {
		return Binding{}, fmt.Errorf("%w: %w", &core.Unfit{Node: r.Node, Reason: core.ReasonNoStorage, Detail: "node " + r.Node}, ErrInsufficient)
	}

	// The claims to book together: this one and the pod's other unbound ones.
	vols := []core.VolumeRequest{req}
	for _, other := range c.siblings(id, r.Node) {
		if _, held := c.reservations[other]; held || c.backingPV(other) != nil {
			continue
		}
		oreq, ours, err := c.requestForPVC(c.pvcs[other])
		if !ours || err != nil {
			continue // judged when CSI asks for that claim
		}
		vols = append(vols, oreq)
	}
	// A claim booked on another node by a stale annotation moves: CSI read
	// the PVC it is creating, so its node is the current one.
	for _, v := range vols {
		if ci, ok := c.ledger.Claim(v.Claim); ok && ci.Node != r.Node && c.sources[v.Claim] == SourceAnnotation {
			c.ledger.Release(v.Claim)
			delete(c.sources, v.Claim)
			c.markDirty(ci.Node)
		}
	}
	a, err := c.wev.Fit(r.Node, core.PodRequest{Name: string(id), Volumes: vols}, c.opt.Strategy)
	if err != nil {
		var u *core.Unfit
		if errors.As(err, &u) && u.Reason == core.ReasonWrongNode {
			return Binding{}, fmt.Errorf("%w: %w", err, ErrConflict)
		}
		return Binding{}, fmt.Errorf("%w: %w", err, ErrInsufficient)
	}
	if err := c.ledger.Reserve(r.Node, a.Charges()...); err != nil {
		return Binding{}, fmt.Errorf("node %s: %v: %w", r.Node, err, ErrInsufficient)
	}
	var answer Binding
	for _, v := range a.Volumes {
		res := reservation{node: r.Node, restore: v.Kind == core.VolumeSnapshotRestore}
		if !res.restore {
			ch, _ := c.ledger.Claim(v.Claim)
			res.charge = ch.ClaimCharge
		}
		c.reservations[v.Claim] = res
		c.index(r.Node).reserved[v.Claim] = struct{}{}
		if !res.restore {
			c.sources[v.Claim] = SourceReservation
		}
		delete(c.unplaced, v.Claim)
		if v.Claim == id {
			answer = bindingOf(id, r.Node, v.Kind, v.VG, v.Device)
		}
	}
	c.gen++
	return answer, nil
}

// checkParams reconciles the call's volumeType and vgName with the class.
func checkParams(id core.ClaimID, req *core.VolumeRequest, r ReserveRequest) error {
	if r.VolumeType != "" && r.VolumeType != volumeTypeOf(req.Kind) {
		return fmt.Errorf("persistentvolumeclaim %s: volumeType %q does not match its StorageClass (%s): %w", id, r.VolumeType, volumeTypeOf(req.Kind), ErrBadRequest)
	}
	if r.VGName != "" {
		if req.Kind != core.VolumeLVM {
			return fmt.Errorf("persistentvolumeclaim %s: vgName is for LVM volumes, the claim is %s: %w", id, volumeTypeOf(req.Kind), ErrBadRequest)
		}
		if req.VG != "" && req.VG != r.VGName {
			return fmt.Errorf("persistentvolumeclaim %s: vgName %q differs from its StorageClass's %q: %w", id, r.VGName, req.VG, ErrBadRequest)
		}
		req.VG = r.VGName
	}
	return nil
}

// siblings are the other claims of the pods that use claim id and are not
// bound elsewhere, sorted.
func (c *Cache) siblings(id core.ClaimID, node string) []core.ClaimID {
	seen := map[core.ClaimID]bool{id: true}
	var out []core.ClaimID
	for key := range c.podsByPVC[id] {
		p := c.pods[key]
		if p == nil || p.terminal || (p.nodeName != "" && p.nodeName != node) {
			continue
		}
		for _, other := range p.pvcs {
			if !seen[other] && c.pvcs[other] != nil {
				seen[other] = true
				out = append(out, other)
			}
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

func (c *Cache) bindingOfReservation(id core.ClaimID, r reservation) Binding {
	if r.restore {
		return bindingOf(id, r.node, core.VolumeSnapshotRestore, "", "")
	}
	kind := core.VolumeLVM
	switch r.charge.Kind {
	case core.KindDevice:
		kind = core.VolumeDevice
	case core.KindMountPoint:
		kind = core.VolumeMountPoint
	}
	return bindingOf(id, r.node, kind, r.charge.VG, r.charge.Device)
}

func bindingOf(id core.ClaimID, node string, kind core.VolumeKind, vg, device string) Binding {
	b := Binding{Node: node, VolumeType: volumeTypeOf(kind), PersistentVolumeClaim: string(id)}
	switch kind {
	case core.VolumeDevice:
		b.Device = device
	case core.VolumeMountPoint:
		b.Disk = device
	default:
		b.VGName = vg
	}
	return b
}

// volumeTypeOf is open-local's volumeType of a volume kind; a snapshot
// restore is an LVM volume.
func volumeTypeOf(k core.VolumeKind) string {
	switch k {
	case core.VolumeDevice:
		return string(volumereq.VolumeTypeDevice)
	case core.VolumeMountPoint:
		return string(volumereq.VolumeTypeMountPoint)
	}
	return string(volumereq.VolumeTypeLVM)
}
