package csi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"sort"
	"sync"

	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// capacity is this node's ledger: every LV, device and mount point the driver
// hands out is a claim keyed by its volume (or snapshot) ID. CreateVolume
// reserves before it creates and commits after; a failure or a deletion
// releases. The ledger is rebuilt from the host at start and resynchronised
// from it when GetCapacity runs (the provisioner polls it) or before a
// request is refused for lack of space, so a VG that grew, an LV removed by
// hand or a snapshot the agent extended are seen without a restart.
type capacity struct {
	node     string
	strategy core.Strategy
	filters  capacityFilters

	mu sync.Mutex
	l  *core.Ledger
	// gen counts ledger changes; touched[id] is the gen of a claim's last
	// change. A resync reads the host without the lock, so a claim changed
	// after the read began keeps its ledger state, not the host's stale one.
	gen     uint64
	touched map[core.ClaimID]uint64
	// loaded is the gen at which the last applied host read began. A read
	// that began earlier finishes too late to be applied: the later one
	// already dropped the touched entries the earlier one would need.
	loaded uint64
}

// capacityFilters say which host resources the driver may allocate.
type capacityFilters struct {
	vgs, devices *core.CompiledFilter
	mountRoot    string
	reservations map[string]core.Reservation
}

// hostStorage is one read of what the host has.
type hostStorage struct {
	lvm     core.LVMState
	devices []core.BlockDevice
	mounts  []hostexec.MountInfo
	// mountStats are the statfs figures of candidate mount points.
	mountStats map[string]hostexec.FSStats
	records    []VolumeRecord
}

func newCapacity(node string, s core.Strategy, f capacityFilters) *capacity {
	c := &capacity{node: node, strategy: s, filters: f, l: core.NewLedger(), touched: map[core.ClaimID]uint64{}}
	c.l.SetNode(node, core.NodeCapacity{})
	return c
}

// isOwned reports whether an LV is the driver's: it carries the owner tag, or
// its name has one of open-local's prefixes (volumes open-local made).
func isOwned(lv core.LogicalVolume) bool {
	return hasTag(lv.Tags, tagOwner) || core.IsOwnedLV(lv.Name, core.DefaultOwnedLVPrefixes)
}

// readHostStorage reads LVM, devices, mounts and the volume records.
func readHostStorage(ctx context.Context, h hostexec.Host, rec *records, mountRoot string) (hostStorage, error) {
	var hs hostStorage
	var err error
	if hs.lvm, err = h.LVMReport(ctx); err != nil {
		return hs, fmt.Errorf("reading the LVM report: %w", err)
	}
	if hs.devices, err = h.ListBlockDevices(ctx); err != nil {
		return hs, fmt.Errorf("listing block devices: %w", err)
	}
	if hs.mounts, err = h.ListMounts(ctx); err != nil {
		return hs, fmt.Errorf("listing mounts: %w", err)
	}
	if hs.records, err = rec.volumes(ctx); err != nil {
		return hs, err
	}
	hs.mountStats = map[string]hostexec.FSStats{}
	for _, m := range hs.mounts {
		if !isMountPointCandidate(m, mountRoot) {
			continue
		}
		st, err := h.StatFS(ctx, m.Target)
		if err != nil {
			klog.FromContext(ctx).Info("Skipping mount point: statfs failed", "path", m.Target, "err", err)
			continue
		}
		hs.mountStats[m.Target] = st
	}
	return hs, nil
}

// isMountPointCandidate: a direct child of the mount root holding a
// filesystem Open-Local accepts, mounted read-write (as open-local does).
func isMountPointCandidate(m hostexec.MountInfo, root string) bool {
	if root == "" || path.Dir(m.Target) != root || hostexec.ValidateFSType(m.FSType) != nil {
		return false
	}
	for _, o := range m.Options {
		if o == "ro" {
			return false
		}
	}
	return true
}

// build turns a host read into the node's capacity and the claims the host
// proves (existing owned LVs, recorded devices and mount points).
func (f capacityFilters) build(hs hostStorage) (core.NodeCapacity, []core.ClaimCharge) {
	var nc core.NodeCapacity
	var claims []core.ClaimCharge
	for _, vg := range hs.lvm.VGs {
		if !f.vgs.Match(vg.Name) {
			continue
		}
		// Allocatable = size - foreign LVs - reservation. Owned LVs are claims.
		foreign := vg
		foreign.LVs = nil
		for _, lv := range vg.LVs {
			if isOwned(lv) {
				claims = append(claims, core.ClaimCharge{ID: core.ClaimID(lv.Name), Kind: core.KindLVM, VG: vg.Name, Bytes: lv.SizeBytes, Stripes: lv.Stripes})
			} else {
				foreign.LVs = append(foreign.LVs, lv)
			}
		}
		nc.VGs = append(nc.VGs, core.VGCapacity{
			Name:             vg.Name,
			AllocatableBytes: core.Allocatable(foreign, nil, f.reservations[vg.Name]),
			ExtentSizeBytes:  vg.ExtentSizeBytes,
			PVCount:          len(vg.PVs),
		})
	}
	recordedDev := map[string]bool{}
	recordedMP := map[string]bool{}
	for _, r := range hs.records {
		switch r.Type {
		case TypeDevice:
			recordedDev[r.Device] = true
			claims = append(claims, core.ClaimCharge{ID: core.ClaimID(r.ID), Kind: core.KindDevice, Device: r.Device, Bytes: r.RequiredBytes})
		case TypeMountPoint:
			recordedMP[r.MountPath] = true
			claims = append(claims, core.ClaimCharge{ID: core.ClaimID(r.ID), Kind: core.KindMountPoint, Device: r.MountPath, Bytes: r.RequiredBytes})
		}
	}
	pvs := map[string]bool{}
	for _, vg := range hs.lvm.VGs {
		for _, pv := range vg.PVs {
			pvs[pv.Name] = true
		}
	}
	for _, pv := range hs.lvm.OrphanPVs {
		pvs[pv.Name] = true
	}
	mounted := map[string]bool{}
	for _, m := range hs.mounts {
		mounted[m.Source] = true
	}
	media := map[string]core.MediaType{}
	for _, d := range hs.devices {
		media[d.Name] = d.Media
	}
	for _, d := range hs.devices {
		// A device in use (signatures, partitions, a PV, mounted, read-only)
		// is never handed out, unless it is a Device volume already: then it
		// carries the volume's filesystem and may be mounted.
		eligible := f.devices.Match(d.Name) && !d.ReadOnly && len(d.Partitions) == 0 &&
			len(d.Signatures) == 0 && !pvs[d.Name] && !mounted[d.Name]
		if eligible || recordedDev[d.Name] {
			nc.Devices = append(nc.Devices, core.DeviceCapacity{Name: d.Name, SizeBytes: d.SizeBytes, Media: d.Media})
		}
	}
	for _, m := range hs.mounts {
		st, ok := hs.mountStats[m.Target]
		if !ok && !recordedMP[m.Target] {
			continue
		}
		m2 := media[m.Source]
		if m2 == "" {
			// The mount source may be a partition or LV; fall back to the disk's media.
			for _, d := range hs.devices {
				for _, p := range d.Partitions {
					if p == m.Source {
						m2 = d.Media
					}
				}
			}
		}
		nc.MountPoints = append(nc.MountPoints, core.DeviceCapacity{Name: m.Target, SizeBytes: st.TotalBytes, Media: m2})
	}
	sort.Slice(nc.MountPoints, func(i, j int) bool { return nc.MountPoints[i].Name < nc.MountPoints[j].Name })
	return nc, claims
}

// unbounded is the capacity used while claims are loaded, so that every LV
// the host proves is charged even if the VG's allocatable is smaller (the
// ledger then reports it in Overcommits instead of silently dropping it).
// Devices and mount points keep their sizes: an exclusive claim charges the
// whole resource, whatever its size.
func unbounded(nc core.NodeCapacity) core.NodeCapacity {
	u := nc
	u.VGs = nil
	for _, vg := range nc.VGs {
		vg.AllocatableBytes = math.MaxInt64 / 4
		u.VGs = append(u.VGs, vg)
	}
	return u
}

// load replaces the ledger with one built from a host read. since is the gen
// at which the read began: claims changed after it keep their ledger state.
func (c *capacity) load(ctx context.Context, hs hostStorage, since uint64) {
	nc, hostClaims := c.filters.build(hs)
	l := core.NewLedger()
	l.SetNode(c.node, unbounded(nc))
	charge := func(ch core.ClaimCharge, committed bool) {
		if err := l.Reserve(c.node, ch); err != nil {
			klog.FromContext(ctx).Info("Capacity: cannot charge claim", "claim", ch.ID, "err", err)
			return
		}
		if committed {
			_ = l.Commit(ch.ID)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if since < c.loaded {
		klog.FromContext(ctx).V(4).Info("Capacity: a newer host read was applied first; dropping this one", "readAt", since, "applied", c.loaded)
		return
	}
	c.loaded = since
	for _, ch := range hostClaims {
		if c.touched[ch.ID] > since {
			continue
		}
		charge(ch, true)
	}
	if c.l != nil {
		for _, id := range c.l.ClaimIDs() {
			ci, _ := c.l.Claim(id)
			if c.touched[id] > since || ci.State == core.Reserved {
				if _, exists := l.Claim(id); exists {
					l.Release(id)
				}
				charge(ci.ClaimCharge, ci.State == core.Committed)
			}
		}
	}
	l.SetNode(c.node, nc)
	c.l = l
	for id, g := range c.touched {
		if g <= since {
			delete(c.touched, id)
		}
	}
	if oc := l.Overcommits(); len(oc) > 0 {
		klog.FromContext(ctx).Info("Capacity: resources hold more than they offer", "overcommits", oc)
	}
}

// resync reads the host and reloads the ledger.
func (c *capacity) resync(ctx context.Context, h hostexec.Host, rec *records) error {
	c.mu.Lock()
	since := c.gen
	c.mu.Unlock()
	hs, err := readHostStorage(ctx, h, rec, c.filters.mountRoot)
	if err != nil {
		return err
	}
	c.load(ctx, hs, since)
	return nil
}

func (c *capacity) bump(id core.ClaimID) {
	c.gen++
	c.touched[id] = c.gen
}

// place chooses where a new volume goes and reserves it (a claim that is
// already charged is returned as it is: a retry lands where the first try did).
func (c *capacity) place(req core.VolumeRequest) (core.VolumeAssignment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.l.Fit(c.node, core.PodRequest{Name: string(req.Claim), Volumes: []core.VolumeRequest{req}}, c.strategy)
	if err != nil {
		return core.VolumeAssignment{}, err
	}
	if err := c.l.Reserve(c.node, a.Charges()...); err != nil {
		return core.VolumeAssignment{}, err
	}
	c.bump(req.Claim)
	return a.Volumes[0], nil
}

// adopt charges a volume that exists on the host (idempotent); a claim with a
// different charge is replaced, as the host is the truth.
func (c *capacity) adopt(ch core.ClaimCharge) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ci, ok := c.l.Claim(ch.ID); ok && (ci.Kind != ch.Kind || ci.VG != ch.VG || ci.Device != ch.Device || ci.Bytes != ch.Bytes || ci.Stripes != ch.Stripes) {
		c.l.Release(ch.ID)
	}
	if err := c.l.Reserve(c.node, ch); err != nil {
		return err
	}
	c.bump(ch.ID)
	return c.l.Commit(ch.ID)
}

func (c *capacity) commit(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bump(core.ClaimID(id))
	return c.l.Commit(core.ClaimID(id))
}

func (c *capacity) release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.l.Release(core.ClaimID(id)) {
		c.bump(core.ClaimID(id))
	}
}

// resize changes an LVM claim's size after checking the VG's free space.
func (c *capacity) resize(id string, bytes int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.l.Resize(core.ClaimID(id), bytes); err != nil {
		return err
	}
	c.bump(core.ClaimID(id))
	return nil
}

// usage returns the node's figures.
func (c *capacity) usage() core.NodeUsage {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, _ := c.l.Node(c.node)
	return u
}

// claims returns every claim, sorted (tests compare it with the host).
func (c *capacity) claims() []core.ClaimInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []core.ClaimInfo
	for _, id := range c.l.ClaimIDs() {
		ci, _ := c.l.Claim(id)
		out = append(out, ci)
	}
	return out
}

func (c *capacity) extentSize(vg string) int64 {
	for _, v := range c.usage().VGs {
		if v.Name == vg {
			return v.ExtentSizeBytes
		}
	}
	return core.DefaultExtentSize
}

// isInsufficient reports a capacity shortage from the ledger or the host.
func isInsufficient(err error) bool {
	var u *core.Unfit
	if errors.As(err, &u) {
		switch u.Reason {
		case core.ReasonInsufficientLVM, core.ReasonInsufficientDev, core.ReasonInsufficientMP, core.ReasonNoSuchVG, core.ReasonNoStorage:
			return true
		}
	}
	return errors.Is(err, core.ErrInsufficientCapacity) || errors.Is(err, hostexec.ErrInsufficientSpace) || errors.Is(err, core.ErrUnknownVG)
}
