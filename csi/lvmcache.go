package csi

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// DefaultLVMCacheTTL is how long the provisioning path trusts the last LVM
// report.
const DefaultLVMCacheTTL = 30 * time.Second

// lvmCache is the Host the driver works through. It keeps the last LVM
// report and keeps it true for the changes the driver itself makes, so that
// the provisioning path (CreateVolume, NodeStageVolume, NodePublishVolume)
// need not run an LVM report per call: on a node, an LVM command is the
// slowest step of provisioning, and the bare lvcreate+mkfs+mount sequence
// runs only one.
//
// Every other caller still gets a fresh report, and each fresh report
// refreshes the cache. Changes made through this Host patch the cached state
// (CreateLV, RemoveLV, ChangeLV tags, ExtendLV) or drop it (the rest, and any
// failed change). Changes made behind the driver's back are seen at the next
// fresh report, at the latest after the TTL; the callers of recent() check
// what they rely on (the device exists, the name is free) and fall back to a
// fresh report when the host disagrees.
type lvmCache struct {
	hostexec.Host
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	// gen counts changes made through this Host; a report that began before
	// a change is not stored, as it may not show it.
	gen   uint64
	state *core.LVMState
	at    time.Time
}

func newLVMCache(h hostexec.Host, ttl time.Duration) *lvmCache {
	return &lvmCache{Host: h, ttl: ttl, now: time.Now}
}

// LVMReport runs a fresh report and keeps it.
func (c *lvmCache) LVMReport(ctx context.Context) (core.LVMState, error) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	st, err := c.Host.LVMReport(ctx)
	if err != nil {
		return st, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		cp := cloneLVMState(st)
		c.state, c.at = &cp, c.now()
	}
	return st, nil
}

// recent returns the cached report while it is younger than the TTL, and a
// fresh one otherwise. cached says which.
func (c *lvmCache) recent(ctx context.Context) (st core.LVMState, cached bool, err error) {
	c.mu.Lock()
	if c.state != nil && c.ttl > 0 && c.now().Sub(c.at) < c.ttl {
		st = cloneLVMState(*c.state)
		c.mu.Unlock()
		return st, true, nil
	}
	c.mu.Unlock()
	st, err = c.LVMReport(ctx)
	return st, false, err
}

// invalidate forgets the cached report.
func (c *lvmCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.state = nil
}

// changed records a change: patch applies it to the cached state and
// reports whether it could; when it cannot (or the change failed), the
// cached state is dropped.
func (c *lvmCache) changed(err error, patch func(*core.LVMState) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.state == nil {
		return
	}
	if err != nil || patch == nil || !patch(c.state) {
		c.state = nil
	}
}

func (c *lvmCache) CreateLV(ctx context.Context, spec hostexec.LVSpec) error {
	err := c.Host.CreateLV(ctx, spec)
	c.changed(err, func(st *core.LVMState) bool {
		vg, ok := st.FindVG(spec.VG)
		if !ok {
			return false
		}
		if _, exists := vg.FindLV(spec.Name); exists {
			return false
		}
		stripes := max(spec.Stripes, 1)
		size := core.LVSize(spec.SizeBytes, vg.ExtentSizeBytes, stripes)
		vg.LVs = append(vg.LVs, core.LogicalVolume{Name: spec.Name, VG: spec.VG, SizeBytes: size,
			Tags: slices.Clone(spec.Tags), Stripes: stripes, Major: -1, Minor: -1})
		vg.FreeBytes -= size
		return true
	})
	return err
}

func (c *lvmCache) RemoveLV(ctx context.Context, vg, name string) error {
	err := c.Host.RemoveLV(ctx, vg, name)
	c.changed(err, func(st *core.LVMState) bool {
		v, ok := st.FindVG(vg)
		if !ok {
			return false
		}
		i := slices.IndexFunc(v.LVs, func(lv core.LogicalVolume) bool { return lv.Name == name })
		if i < 0 || v.LVs[i].IsSnapshot() {
			// A snapshot's COW space is not its size: let a report say.
			return false
		}
		for _, lv := range v.LVs {
			if lv.Origin == name {
				return false
			}
		}
		v.FreeBytes += v.LVs[i].SizeBytes
		v.LVs = slices.Delete(v.LVs, i, i+1)
		return true
	})
	return err
}

func (c *lvmCache) ChangeLV(ctx context.Context, vg, name string, change hostexec.LVChange) error {
	err := c.Host.ChangeLV(ctx, vg, name, change)
	c.changed(err, func(st *core.LVMState) bool {
		if change.Activate != nil {
			return false
		}
		v, ok := st.FindVG(vg)
		if !ok {
			return false
		}
		lv, ok := v.FindLV(name)
		if !ok {
			return false
		}
		lv.Tags = slices.DeleteFunc(slices.Clone(lv.Tags), func(t string) bool { return slices.Contains(change.DelTags, t) })
		for _, t := range change.AddTags {
			if !slices.Contains(lv.Tags, t) {
				lv.Tags = append(lv.Tags, t)
			}
		}
		return true
	})
	return err
}

func (c *lvmCache) ExtendLV(ctx context.Context, vg, name string, sizeBytes int64) error {
	err := c.Host.ExtendLV(ctx, vg, name, sizeBytes)
	c.changed(err, nil)
	return err
}

func (c *lvmCache) CreateSnapshot(ctx context.Context, spec hostexec.SnapshotSpec) error {
	err := c.Host.CreateSnapshot(ctx, spec)
	c.changed(err, nil)
	return err
}

func (c *lvmCache) CreatePV(ctx context.Context, device string, force bool) error {
	err := c.Host.CreatePV(ctx, device, force)
	c.changed(err, nil)
	return err
}

func (c *lvmCache) CreateVG(ctx context.Context, name string, devices []string, force bool) error {
	err := c.Host.CreateVG(ctx, name, devices, force)
	c.changed(err, nil)
	return err
}

func (c *lvmCache) ExtendVG(ctx context.Context, name string, devices []string) error {
	err := c.Host.ExtendVG(ctx, name, devices)
	c.changed(err, nil)
	return err
}

func (c *lvmCache) Wipe(ctx context.Context, device string) error {
	err := c.Host.Wipe(ctx, device)
	c.changed(err, nil)
	return err
}

// cloneLVMState copies the slices a caller could change.
func cloneLVMState(st core.LVMState) core.LVMState {
	out := st
	out.VGs = make([]core.VolumeGroup, len(st.VGs))
	for i, vg := range st.VGs {
		vg.PVs = slices.Clone(vg.PVs)
		vg.LVs = slices.Clone(vg.LVs)
		for j := range vg.LVs {
			vg.LVs[j].Tags = slices.Clone(vg.LVs[j].Tags)
		}
		out.VGs[i] = vg
	}
	out.OrphanPVs = slices.Clone(st.OrphanPVs)
	return out
}
