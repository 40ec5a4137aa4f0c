package simhost

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// pvExtents is how many extents LVM carves from a device: everything after
// the first MiB, in whole extents.
func pvExtents(size, extent int64) int64 {
	if size <= peStart {
		return 0
	}
	return (size - peStart) / extent
}

func (vg *volumeGroup) freeExtents() int64 {
	var n int64
	for _, pv := range vg.pvs {
		n += pv.free
	}
	return n
}

func (vg *volumeGroup) pv(dev string) *physVol {
	for _, pv := range vg.pvs {
		if pv.dev == dev {
			return pv
		}
	}
	return nil
}

func (vg *volumeGroup) hasSnapshots(lv string) []string {
	var out []string
	for _, name := range sortedKeys(vg.lvs) {
		if vg.lvs[name].origin == lv {
			out = append(out, name)
		}
	}
	return out
}

// allocLinear picks extents for a linear allocation the way LVM's normal
// policy does in the simple cases: first the PV the LV already ends on
// (cling), then the first PV (in VG order) with room for the rest, else the
// PV with the most free extents, repeatedly.
func allocLinear(vg *volumeGroup, need int64, cling string) []allocation {
	free := map[string]int64{}
	for _, pv := range vg.pvs {
		free[pv.dev] = pv.free
	}
	var out []allocation
	take := func(dev string, n int64) {
		free[dev] -= n
		need -= n
		if len(out) > 0 && out[len(out)-1].pv == dev {
			out[len(out)-1].extents += n
			return
		}
		out = append(out, allocation{pv: dev, extents: n})
	}
	if cling != "" && free[cling] > 0 {
		take(cling, min(free[cling], need))
	}
	for need > 0 {
		fit := ""
		for _, pv := range vg.pvs {
			if free[pv.dev] >= need {
				fit = pv.dev
				break
			}
		}
		if fit != "" {
			take(fit, need)
			break
		}
		largest := ""
		for _, pv := range vg.pvs {
			if free[pv.dev] > 0 && (largest == "" || free[pv.dev] > free[largest]) {
				largest = pv.dev
			}
		}
		if largest == "" {
			return nil
		}
		take(largest, free[largest])
	}
	return out
}

// allocStriped gives each of stripes distinct PVs perStripe extents. Only
// PVs with room for a whole stripe qualify; PVs the LV already uses come
// first, then the ones with the most free extents.
func allocStriped(vg *volumeGroup, stripes int, perStripe int64, used map[string]bool) []allocation {
	var eligible []*physVol
	for _, pv := range vg.pvs {
		if pv.free >= perStripe {
			eligible = append(eligible, pv)
		}
	}
	if len(eligible) < stripes {
		return nil
	}
	sort.SliceStable(eligible, func(i, j int) bool {
		a, b := eligible[i], eligible[j]
		if used[a.dev] != used[b.dev] {
			return used[a.dev]
		}
		return a.free > b.free
	})
	out := make([]allocation, 0, stripes)
	for _, pv := range eligible[:stripes] {
		out = append(out, allocation{pv: pv.dev, extents: perStripe})
	}
	return out
}

func (vg *volumeGroup) apply(allocs []allocation, sign int64) {
	for _, a := range allocs {
		vg.pv(a.pv).free -= sign * a.extents
	}
}

// allocate finds extents for an LV of stripes stripes growing by need
// extents, or says why it cannot.
func (vg *volumeGroup) allocate(lvName string, need int64, stripes int, lv *logicalVolume) ([]allocation, error) {
	if stripes > len(vg.pvs) {
		return nil, fmt.Errorf("LV %s/%s: %d stripes need as many PVs, VG %s has %d: %w",
			vg.name, lvName, stripes, vg.name, len(vg.pvs), hostexec.ErrInsufficientSpace)
	}
	if free := vg.freeExtents(); need > free {
		return nil, fmt.Errorf("volume group %q has insufficient free space (%d extents): %d required: %w",
			vg.name, free, need, hostexec.ErrInsufficientSpace)
	}
	var allocs []allocation
	if stripes == 1 {
		cling := ""
		if lv != nil && len(lv.alloc) > 0 {
			cling = lv.alloc[len(lv.alloc)-1].pv
		}
		allocs = allocLinear(vg, need, cling)
	} else {
		used := map[string]bool{}
		if lv != nil {
			for _, a := range lv.alloc {
				used[a.pv] = true
			}
		}
		allocs = allocStriped(vg, stripes, need/int64(stripes), used)
	}
	if allocs == nil {
		return nil, fmt.Errorf("insufficient suitable allocatable extents for logical volume %s/%s (%d extents over %d stripes): %w",
			vg.name, lvName, need, stripes, hostexec.ErrInsufficientSpace)
	}
	return allocs, nil
}

func (h *Host) lookupVG(name string) (*volumeGroup, error) {
	vg, ok := h.vgs[name]
	if !ok {
		return nil, fmt.Errorf("VG %s: %w", name, hostexec.ErrNotFound)
	}
	return vg, nil
}

func (h *Host) lookupLV(vgName, name string) (*volumeGroup, *logicalVolume, error) {
	vg, err := h.lookupVG(vgName)
	if err != nil {
		return nil, nil, err
	}
	lv, ok := vg.lvs[name]
	if !ok {
		return vg, nil, fmt.Errorf("LV %s/%s: %w", vgName, name, hostexec.ErrNotFound)
	}
	return vg, lv, nil
}

// LVMReport returns every VG with its PVs and LVs, sorted by name.
func (h *Host) LVMReport(ctx context.Context) (st core.LVMState, err error) {
	finish, err := h.enter(ctx, "LVMReport")
	if err != nil {
		return core.LVMState{}, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.report(), nil
}

func (h *Host) report() core.LVMState {
	var st core.LVMState
	for _, name := range sortedKeys(h.vgs) {
		vg := h.vgs[name]
		out := core.VolumeGroup{Name: name, ExtentSizeBytes: vg.extentSize}
		for _, pv := range vg.pvs {
			out.TotalBytes += pv.extents * vg.extentSize
			out.FreeBytes += pv.free * vg.extentSize
			out.PVs = append(out.PVs, core.PhysicalVolume{Name: pv.dev, VG: name,
				SizeBytes: pv.extents * vg.extentSize, FreeBytes: pv.free * vg.extentSize})
		}
		sort.Slice(out.PVs, func(i, j int) bool { return out.PVs[i].Name < out.PVs[j].Name })
		for _, lvName := range sortedKeys(vg.lvs) {
			out.LVs = append(out.LVs, h.describeLV(vg, vg.lvs[lvName]))
		}
		st.VGs = append(st.VGs, out)
	}
	for _, name := range sortedKeys(h.devs) {
		d := h.devs[name]
		if d.pv && d.vg == "" {
			st.OrphanPVs = append(st.OrphanPVs, core.PhysicalVolume{Name: name, SizeBytes: d.size, FreeBytes: d.size})
		}
	}
	return st
}

func (h *Host) describeLV(vg *volumeGroup, lv *logicalVolume) core.LogicalVolume {
	path := "/dev/" + vg.name + "/" + lv.name
	size := lv.extents * vg.extentSize
	out := core.LogicalVolume{Name: lv.name, VG: vg.name, SizeBytes: size, Origin: lv.origin,
		Stripes: lv.stripes, Major: -1, Minor: -1}
	if len(lv.tags) > 0 {
		out.Tags = sortedKeys(lv.tags)
	}
	isOrigin := len(vg.hasSnapshots(lv.name)) > 0
	attr := []byte("-wi-------")
	switch {
	case lv.origin != "":
		attr[0], attr[6] = 's', 's'
		if lv.invalid {
			out.DataPercent = 100
		} else {
			out.DataPercent = math.Round(float64(lv.cowUsed)*10000/float64(size)) / 100
		}
	case isOrigin:
		attr[0], attr[6] = 'o', 's'
	}
	if lv.active {
		attr[4] = 'a'
		if lv.invalid {
			attr[4] = 'I'
		}
		out.Major, out.Minor = dmMajor, int32(lv.minor)
		if h.holder(path) != "" {
			attr[5] = 'o'
		}
	}
	out.Attr = string(attr)
	return out
}

// checkNewPV mirrors the real host: a PV of a VG is ErrInUse, an orphan PV
// needs nothing, a device with signatures needs force.
func (h *Host) checkNewPV(device string, force bool) (*device, error) {
	d, ok := h.devs[device]
	if !ok {
		return nil, fmt.Errorf("device %s: %w", device, hostexec.ErrNotFound)
	}
	if d.pv {
		if d.vg != "" {
			return nil, fmt.Errorf("device %s is a physical volume of VG %s: %w", device, d.vg, hostexec.ErrInUse)
		}
		return d, nil
	}
	if t := h.holder(device); t != "" {
		return nil, fmt.Errorf("device %s is mounted on %s: %w", device, t, hostexec.ErrInUse)
	}
	b, _ := h.block(device)
	if sigs := b.signatures(); len(sigs) > 0 && !force {
		return nil, fmt.Errorf("device %s holds signatures %v; it is used by something else (wipe it or use force): %w", device, sigs, hostexec.ErrInUse)
	}
	if d.readOnly {
		return nil, fmt.Errorf("create PV on %s: device is read-only", device)
	}
	if len(d.partitions) > 0 {
		return nil, fmt.Errorf("device %s has partitions %v: %w", device, d.partitions, hostexec.ErrInUse)
	}
	if pvExtents(d.size, h.extentSize) < 1 {
		return nil, fmt.Errorf("device %s of %d bytes is too small for a physical volume: %w", device, d.size, hostexec.ErrInsufficientSpace)
	}
	return d, nil
}

func (h *Host) makePV(d *device) {
	if !d.pv {
		d.data = content{}
		d.pv = true
	}
}

// CreatePV initialises device as a PV.
func (h *Host) CreatePV(ctx context.Context, device string, force bool) (err error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "CreatePV", device)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.checkNewPV(device, force)
	if err != nil {
		return err
	}
	h.makePV(d)
	return nil
}

// CreateVG creates a VG over devices; every device is checked first.
func (h *Host) CreateVG(ctx context.Context, name string, devices []string, force bool) (err error) {
	if err := hostexec.ValidateVGName(name); err != nil {
		return err
	}
	if err := hostexec.ValidateDeviceList(devices); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "CreateVG", append([]string{name}, devices...)...)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.createVG(name, devices, force)
}

func (h *Host) createVG(name string, devices []string, force bool) error {
	if err := hostexec.ValidateVGName(name); err != nil {
		return err
	}
	if err := hostexec.ValidateDeviceList(devices); err != nil {
		return err
	}
	if _, ok := h.vgs[name]; ok {
		return fmt.Errorf("VG %s: %w", name, hostexec.ErrAlreadyExists)
	}
	ds := make([]*device, 0, len(devices))
	for _, dev := range devices {
		d, err := h.checkNewPV(dev, force)
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	vg := &volumeGroup{name: name, extentSize: h.extentSize, lvs: map[string]*logicalVolume{}}
	for _, d := range ds {
		h.makePV(d)
		d.vg = name
		n := pvExtents(d.size, vg.extentSize)
		vg.pvs = append(vg.pvs, &physVol{dev: d.name, extents: n, free: n})
	}
	h.vgs[name] = vg
	return nil
}

// ExtendVG adds devices to a VG.
func (h *Host) ExtendVG(ctx context.Context, name string, devices []string) (err error) {
	if err := hostexec.ValidateVGName(name); err != nil {
		return err
	}
	if err := hostexec.ValidateDeviceList(devices); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "ExtendVG", append([]string{name}, devices...)...)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	vg, err := h.lookupVG(name)
	if err != nil {
		return err
	}
	for _, dev := range devices {
		if d, ok := h.devs[dev]; ok && d.vg == name {
			return fmt.Errorf("device %s is already in VG %s: %w", dev, name, hostexec.ErrAlreadyExists)
		}
	}
	ds := make([]*device, 0, len(devices))
	for _, dev := range devices {
		d, err := h.checkNewPV(dev, false)
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	for _, d := range ds {
		h.makePV(d)
		d.vg = name
		n := pvExtents(d.size, vg.extentSize)
		vg.pvs = append(vg.pvs, &physVol{dev: d.name, extents: n, free: n})
	}
	return nil
}

func tagSet(tags []string) map[string]bool {
	m := map[string]bool{}
	for _, t := range tags {
		m[t] = true
	}
	return m
}

// CreateLV creates a linear or striped LV, active and blank.
func (h *Host) CreateLV(ctx context.Context, spec hostexec.LVSpec) (err error) {
	if err := hostexec.ValidateLVSpec(spec); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "CreateLV", spec.VG+"/"+spec.Name, strconv.FormatInt(spec.SizeBytes, 10))
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	vg, err := h.lookupVG(spec.VG)
	if err != nil {
		return err
	}
	if _, ok := vg.lvs[spec.Name]; ok {
		return fmt.Errorf("LV %s/%s: %w", spec.VG, spec.Name, hostexec.ErrAlreadyExists)
	}
	stripes := max(spec.Stripes, 1)
	extents := core.LVSize(spec.SizeBytes, vg.extentSize, stripes) / vg.extentSize
	allocs, err := vg.allocate(spec.Name, extents, stripes, nil)
	if err != nil {
		return err
	}
	vg.apply(allocs, 1)
	h.nextDMMinor++
	vg.lvs[spec.Name] = &logicalVolume{name: spec.Name, extents: extents, stripes: stripes, alloc: allocs,
		tags: tagSet(spec.Tags), active: true, minor: h.nextDMMinor}
	return nil
}

// CreateSnapshot creates a COW snapshot holding a copy of the origin's
// content as it is now.
func (h *Host) CreateSnapshot(ctx context.Context, spec hostexec.SnapshotSpec) (err error) {
	if err := hostexec.ValidateSnapshotSpec(spec); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "CreateSnapshot", spec.VG+"/"+spec.Name, spec.Origin, strconv.FormatInt(spec.SizeBytes, 10))
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	vg, origin, err := h.lookupLV(spec.VG, spec.Origin)
	if err != nil {
		return fmt.Errorf("snapshot origin: %w", err)
	}
	if origin.origin != "" {
		return hostexec.Invalid("snapshot origin", spec.VG+"/"+spec.Origin, "is itself a snapshot; LVM does not snapshot snapshots")
	}
	if _, ok := vg.lvs[spec.Name]; ok {
		return fmt.Errorf("LV %s/%s: %w", spec.VG, spec.Name, hostexec.ErrAlreadyExists)
	}
	extents := core.LVSize(spec.SizeBytes, vg.extentSize, 1) / vg.extentSize
	allocs, err := vg.allocate(spec.Name, extents, 1, nil)
	if err != nil {
		return err
	}
	vg.apply(allocs, 1)
	h.nextDMMinor++
	vg.lvs[spec.Name] = &logicalVolume{name: spec.Name, extents: extents, stripes: 1, alloc: allocs,
		tags: tagSet(spec.Tags), origin: spec.Origin, active: origin.active, minor: h.nextDMMinor,
		data: origin.data.clone("/dev/" + spec.VG + "/" + spec.Name)}
	return nil
}

// ExtendLV grows an LV to sizeBytes rounded to extents and stripes.
func (h *Host) ExtendLV(ctx context.Context, vgName, name string, sizeBytes int64) (err error) {
	if err := hostexec.ValidateLVName(vgName, name); err != nil {
		return err
	}
	if sizeBytes < 0 {
		return hostexec.Invalid("LV size", strconv.FormatInt(sizeBytes, 10), "must not be negative")
	}
	finish, err := h.enter(ctx, "ExtendLV", vgName+"/"+name, strconv.FormatInt(sizeBytes, 10))
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	vg, lv, err := h.lookupLV(vgName, name)
	if err != nil {
		return err
	}
	target := core.LVSize(sizeBytes, vg.extentSize, lv.stripes) / vg.extentSize
	if target <= lv.extents {
		return nil
	}
	allocs, err := vg.allocate(name, target-lv.extents, lv.stripes, lv)
	if err != nil {
		return err
	}
	vg.apply(allocs, 1)
	lv.alloc = append(lv.alloc, allocs...)
	lv.extents = target
	return nil
}

// RemoveLV removes an LV; an origin with snapshots or an open LV is ErrInUse.
func (h *Host) RemoveLV(ctx context.Context, vgName, name string) (err error) {
	if err := hostexec.ValidateLVName(vgName, name); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "RemoveLV", vgName+"/"+name)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	vg, lv, err := h.lookupLV(vgName, name)
	if err != nil {
		return err
	}
	if snaps := vg.hasSnapshots(name); len(snaps) > 0 {
		return fmt.Errorf("LV %s/%s has snapshots %v; remove them first: %w", vgName, name, snaps, hostexec.ErrInUse)
	}
	if t := h.holder("/dev/" + vgName + "/" + name); t != "" {
		return fmt.Errorf("logical volume %s/%s contains a filesystem in use (mounted on %s): %w", vgName, name, t, hostexec.ErrInUse)
	}
	vg.apply(lv.alloc, -1)
	delete(vg.lvs, name)
	return nil
}

// ChangeLV adds and removes tags and (de)activates. A snapshot shares its
// origin's activation.
func (h *Host) ChangeLV(ctx context.Context, vgName, name string, change hostexec.LVChange) (err error) {
	if err := hostexec.ValidateLVName(vgName, name); err != nil {
		return err
	}
	if err := hostexec.ValidateTags(change.AddTags); err != nil {
		return err
	}
	if err := hostexec.ValidateTags(change.DelTags); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "ChangeLV", vgName+"/"+name)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	vg, lv, err := h.lookupLV(vgName, name)
	if err != nil {
		return err
	}
	for _, t := range change.AddTags {
		lv.tags[t] = true
	}
	for _, t := range change.DelTags {
		delete(lv.tags, t)
	}
	if change.Activate == nil {
		return nil
	}
	originName := name
	if lv.origin != "" {
		originName = lv.origin
	}
	group := append([]string{originName}, vg.hasSnapshots(originName)...)
	if !*change.Activate {
		for _, n := range group {
			if t := h.holder("/dev/" + vgName + "/" + n); t != "" {
				return fmt.Errorf("logical volume %s/%s in use (mounted on %s): not deactivating: %w", vgName, n, t, hostexec.ErrInUse)
			}
		}
	}
	for _, n := range group {
		l := vg.lvs[n]
		if *change.Activate && !l.active {
			h.nextDMMinor++
			l.minor = h.nextDMMinor
		}
		l.active = *change.Activate
	}
	return nil
}

// LVDevicePath is /dev/<vg>/<lv>.
func (h *Host) LVDevicePath(vg, name string) string {
	return "/dev/" + vg + "/" + name
}
