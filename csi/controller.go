package csi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi/lvtag"
	"github.com/open-local/open-local/hostexec"
)

// createRequest is a validated CreateVolume.
type createRequest struct {
	name            string
	id              string
	params          VolumeParams
	raw             map[string]string
	required, limit int64
	snapshotID      string // content source: snapshot
	sourceVolumeID  string // content source: volume
	source          *csi.VolumeContentSource
}

// CreateVolume creates a volume on this node. It is idempotent: the same
// name with compatible arguments returns the same volume; the same name with
// a different size, type or source is AlreadyExists.
func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	cr, err := d.validateCreate(req)
	if err != nil {
		return nil, err
	}
	unlock, err := d.locks.tryLock("CreateVolume "+cr.id, cr.id, cr.snapshotID, cr.sourceVolumeID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A plain volume may start from the cached LVM report (lvmcache.go): the
	// name is then checked by lvcreate itself, and a name the cache did not
	// know is looked up again in a fresh report. A content source is always
	// resolved from a fresh one.
	var state core.LVMState
	cached := false
	if cr.snapshotID == "" && cr.sourceVolumeID == "" {
		state, cached, err = d.lvm.recent(ctx)
	} else {
		state, err = d.host.LVMReport(ctx)
	}
	for {
		if err != nil {
			return nil, hostError(err, "reading the LVM report")
		}
		var v volume
		switch cr.params.Type {
		case TypeLVM:
			v, err = d.createLVM(ctx, cr, state)
		default:
			v, err = d.createExclusive(ctx, cr, state)
		}
		var stale *staleStateError
		if cached && errors.As(err, &stale) {
			klog.FromContext(ctx).V(2).Info("The cached LVM report was out of date; reading it again", "volume", cr.id)
			d.lvm.invalidate()
			cached = false
			state, err = d.host.LVMReport(ctx)
			continue
		}
		if err != nil {
			return nil, err
		}
		return &csi.CreateVolumeResponse{Volume: d.csiVolume(v, cr.raw, cr.source)}, nil
	}
}

// staleStateError is a host that contradicts the LVM report a call started
// from (lvcreate finds the name taken): with a cached report the call starts
// again from a fresh one; otherwise the host changed under the call, and the
// CO retries.
type staleStateError struct{ err error }

func (e *staleStateError) Error() string { return e.err.Error() }
func (e *staleStateError) Unwrap() error { return e.err }

// GRPCStatus keeps the wrapped status for the CO.
func (e *staleStateError) GRPCStatus() *status.Status {
	if s, ok := status.FromError(e.err); ok {
		return s
	}
	return status.New(codes.Internal, e.err.Error())
}

func (d *Driver) validateCreate(req *csi.CreateVolumeRequest) (createRequest, error) {
	cr := createRequest{name: req.GetName(), raw: req.GetParameters(), source: req.GetVolumeContentSource()}
	if cr.name == "" {
		return cr, status.Error(codes.InvalidArgument, "CreateVolume: name is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return cr, status.Error(codes.InvalidArgument, "CreateVolume: volume_capabilities are required")
	}
	var err error
	if cr.params, err = ParseVolumeParams(req.GetParameters()); err != nil {
		return cr, err
	}
	for _, c := range req.GetVolumeCapabilities() {
		if msg := checkCapability(c, cr.params.Type); msg != "" {
			return cr, status.Error(codes.InvalidArgument, "CreateVolume: "+msg)
		}
		if fs := c.GetMount().GetFsType(); fs != "" && cr.params.FSType != "" && fs != cr.params.FSType {
			return cr, status.Errorf(codes.InvalidArgument, "CreateVolume: the capability's fsType %q differs from parameter %s %q", fs, ParamFSType, cr.params.FSType)
		}
	}
	if len(req.GetMutableParameters()) > 0 {
		return cr, status.Error(codes.InvalidArgument, "CreateVolume: mutable parameters (VolumeAttributesClass) are not supported")
	}
	cr.required, cr.limit = req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if cr.required < 0 || cr.limit < 0 {
		return cr, status.Error(codes.InvalidArgument, "CreateVolume: capacity_range must not be negative")
	}
	if cr.limit > 0 && cr.required > cr.limit {
		return cr, status.Errorf(codes.InvalidArgument, "CreateVolume: required_bytes %d exceeds limit_bytes %d", cr.required, cr.limit)
	}
	if err := d.checkTopology(req.GetAccessibilityRequirements(), cr.params.SelectedNode); err != nil {
		return cr, err
	}
	switch s := cr.source.GetType().(type) {
	case nil:
	case *csi.VolumeContentSource_Snapshot:
		cr.snapshotID = s.Snapshot.GetSnapshotId()
		if cr.snapshotID == "" {
			return cr, status.Error(codes.InvalidArgument, "CreateVolume: the snapshot content source has no snapshot_id")
		}
	case *csi.VolumeContentSource_Volume:
		cr.sourceVolumeID = s.Volume.GetVolumeId()
		if cr.sourceVolumeID == "" {
			return cr, status.Error(codes.InvalidArgument, "CreateVolume: the volume content source has no volume_id")
		}
	default:
		return cr, status.Error(codes.InvalidArgument, "CreateVolume: unsupported volume content source")
	}
	if (cr.snapshotID != "" || cr.sourceVolumeID != "") && cr.params.Type != TypeLVM {
		return cr, status.Errorf(codes.InvalidArgument, "CreateVolume: volume content sources are supported for LVM volumes only, not %s", cr.params.Type)
	}
	if cr.params.ReadOnlyRestore && cr.snapshotID == "" {
		// Without a snapshot source the parameter is meaningless: a plain volume.
		cr.params.ReadOnlyRestore = false
	}
	cr.id = volumeIDFor(cr.name, "csi-")
	return cr, nil
}

// checkTopology refuses a request that must land on another node: the
// provisioner then reschedules.
func (d *Driver) checkTopology(tr *csi.TopologyRequirement, selectedNode string) error {
	if selectedNode != "" && selectedNode != d.cfg.NodeID {
		return status.Errorf(codes.ResourceExhausted, "CreateVolume: the volume is for node %s; this is node %s", selectedNode, d.cfg.NodeID)
	}
	req := tr.GetRequisite()
	if len(req) == 0 {
		return nil
	}
	for _, t := range req {
		if t.GetSegments()[TopologyKey] == d.cfg.NodeID {
			return nil
		}
	}
	return status.Errorf(codes.ResourceExhausted, "CreateVolume: the requisite topology does not include node %s", d.cfg.NodeID)
}

// createLVM creates (or finds) an LV, a clone, a writable restore or a
// read-only restore.
func (d *Driver) createLVM(ctx context.Context, cr createRequest, state core.LVMState) (volume, error) {
	logger := klog.FromContext(ctx).WithValues("volume", cr.id)
	wantSource := ""
	switch {
	case cr.snapshotID != "":
		wantSource = "snapshot:" + sanitizeTag(cr.snapshotID)
	case cr.sourceVolumeID != "":
		wantSource = "volume:" + sanitizeTag(cr.sourceVolumeID)
	}

	// An existing volume of that name: return it if compatible.
	if vg, lv := findLV(state, cr.id); lv != nil {
		if lv.IsSnapshot() || hasTag(lv.Tags, tagKindEphemeral) {
			return volume{}, status.Errorf(codes.AlreadyExists, "CreateVolume: name %q is taken by a snapshot or inline volume on node %s", cr.name, d.cfg.NodeID)
		}
		v := d.volumeFromLV(vg, lv)
		if err := d.compatible(cr, v, len(vg.PVs), wantSource); err != nil {
			return volume{}, err
		}
		if err := d.cap.adopt(lvCharge(vg.Name, lv.Name, lv.SizeBytes, lv.Stripes)); err != nil {
			logger.Info("Capacity: cannot charge existing volume", "err", err)
		}
		if v.PendingCopy {
			src, err := d.resolveSource(ctx, cr, state)
			if err != nil {
				return volume{}, err
			}
			if err := d.finishCopy(ctx, v, src.device, src.bytes); err != nil {
				return volume{}, err
			}
			v.PendingCopy = false
		}
		return v, nil
	}
	if vg, snap := findROSnapshot(state, cr.id); snap != nil {
		v := d.volumeFromROSnapshot(cr.id, vg, snap)
		if !cr.params.ReadOnlyRestore || snap.Name != cr.snapshotID {
			return volume{}, status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q exists as a read-only restore of snapshot %s", cr.name, snap.Name)
		}
		if err := checkRange(cr, v.SizeBytes); err != nil {
			return volume{}, err
		}
		return v, nil
	}
	if _, found, err := d.rec.readVolume(ctx, cr.id); err != nil {
		return volume{}, status.Error(codes.Internal, err.Error())
	} else if found {
		return volume{}, status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q exists and is not an LVM volume", cr.name)
	}

	src, err := d.resolveSource(ctx, cr, state)
	if err != nil {
		return volume{}, err
	}
	if cr.params.ReadOnlyRestore {
		return d.createROSnapshotVolume(ctx, cr, src.vg, src.snapshot, src.bytes)
	}
	copyFrom, copyBytes := src.device, src.bytes

	bytes := cr.required
	if bytes == 0 {
		bytes = DefaultVolumeSize
		if cr.limit > 0 && cr.limit < bytes {
			bytes = cr.limit
		}
	}
	if copyBytes > bytes {
		if cr.limit > 0 && copyBytes > cr.limit {
			return volume{}, status.Errorf(codes.OutOfRange, "CreateVolume: the source holds %s, more than limit_bytes %d", core.FormatSize(copyBytes), cr.limit)
		}
		bytes = copyBytes
	}
	a, err := d.placeWithResync(ctx, core.VolumeRequest{Claim: core.ClaimID(cr.id), Kind: core.VolumeLVM, VG: cr.params.VG, Bytes: bytes, Striped: cr.params.Striped})
	if err != nil {
		return volume{}, err
	}
	size := core.LVSize(bytes, d.cap.extentSize(a.VG), a.Stripes)
	if cr.limit > 0 && size > cr.limit {
		d.cap.release(cr.id)
		return volume{}, status.Errorf(codes.OutOfRange, "CreateVolume: %d bytes round up to %d (whole LVM extents of volume group %s), more than limit_bytes %d", bytes, size, a.VG, cr.limit)
	}
	tags := append([]string{tagOwner, tagKindVolume, lvtag.CreatedTag(d.now())}, provenance(cr.raw).Tags()...)
	if wantSource != "" {
		tags = append(tags, tagSourcePrefix+wantSource, tagPendingCopy)
	}
	spec := hostexec.LVSpec{VG: a.VG, Name: cr.id, SizeBytes: size, Stripes: a.Stripes, Tags: tags}
	if err := d.host.CreateLV(ctx, spec); err != nil {
		d.settleLVClaim(ctx, cr.id)
		if errors.Is(err, hostexec.ErrInsufficientSpace) {
			d.resyncQuietly(ctx)
		}
		herr := hostError(err, "CreateVolume: creating LV %s/%s", a.VG, cr.id)
		if errors.Is(err, hostexec.ErrAlreadyExists) {
			// The report said the name was free.
			return volume{}, &staleStateError{err: status.Error(codes.Aborted, herr.Error()+"; the LVM state changed during the call, retry")}
		}
		return volume{}, herr
	}
	if err := d.cap.adopt(lvCharge(a.VG, cr.id, size, a.Stripes)); err != nil {
		logger.Info("Capacity: cannot charge the new volume", "err", err)
	}
	if wantSource == "" {
		d.fresh.add(cr.id)
	}
	v := volume{ID: cr.id, Type: TypeLVM, VG: a.VG, LV: cr.id, DevicePath: d.host.LVDevicePath(a.VG, cr.id), SizeBytes: size, Stripes: a.Stripes, PendingCopy: wantSource != ""}
	if wantSource != "" {
		v.SourceKind, v.SourceID, _ = strings.Cut(wantSource, ":")
	}
	if wantSource != "" {
		if err := d.finishCopy(ctx, v, copyFrom, copyBytes); err != nil {
			return volume{}, err
		}
		v.PendingCopy = false
	}
	logger.Info("Created LV", "vg", a.VG, "size", size, "stripes", a.Stripes, "source", wantSource)
	return v, nil
}

// provenance is the PersistentVolume and claim external-provisioner names in
// the parameters (--extra-create-metadata). Recorded on the LV, it lets the
// agent tell a volume whose PersistentVolume never came, or is gone, from one
// still in use (docs/agent.md, "Orphan volumes").
func provenance(params map[string]string) lvtag.Provenance {
	return lvtag.Provenance{PVName: params[ParamPVName], PVCNamespace: params[ParamPVCNamespace], PVCName: params[ParamPVCName]}
}

// contentSource is what a restore or clone copies from.
type contentSource struct {
	device string
	bytes  int64
	// vg and snapshot are set for a snapshot source.
	vg       *core.VolumeGroup
	snapshot *core.LogicalVolume
}

// resolveSource finds the snapshot or volume a request names. It runs only
// when data must be copied or referenced: a repeated request for a volume
// that is complete needs no source (it may have been deleted since).
func (d *Driver) resolveSource(ctx context.Context, cr createRequest, state core.LVMState) (contentSource, error) {
	var src contentSource
	switch {
	case cr.snapshotID != "":
		var vg *core.VolumeGroup
		var snap *core.LogicalVolume
		if validID(cr.snapshotID) {
			vg, snap = findLV(state, cr.snapshotID)
		}
		if snap == nil || !snap.IsSnapshot() {
			return src, status.Errorf(codes.NotFound, "CreateVolume: snapshot %q not found on node %s", cr.snapshotID, d.cfg.NodeID)
		}
		origin, ok := vg.FindLV(snap.Origin)
		if !ok {
			return src, status.Errorf(codes.FailedPrecondition, "CreateVolume: snapshot %s has no origin LV", cr.snapshotID)
		}
		src = contentSource{device: d.host.LVDevicePath(vg.Name, snap.Name), bytes: origin.SizeBytes, vg: vg, snapshot: snap}
	case cr.sourceVolumeID != "":
		v, found, err := d.lookupVolume(ctx, state, cr.sourceVolumeID)
		if err != nil {
			return src, err
		}
		if !found || v.Ephemeral {
			return src, status.Errorf(codes.NotFound, "CreateVolume: source volume %q not found on node %s", cr.sourceVolumeID, d.cfg.NodeID)
		}
		if v.Type != TypeLVM {
			return src, status.Errorf(codes.InvalidArgument, "CreateVolume: source volume %s is a %s volume; cloning is supported from LVM volumes", cr.sourceVolumeID, v.Type)
		}
		if v.PendingCopy {
			return src, status.Errorf(codes.Unavailable, "CreateVolume: source volume %s is still being populated; retry later", cr.sourceVolumeID)
		}
		src = contentSource{device: v.DevicePath, bytes: v.SizeBytes}
	}
	return src, nil
}

// finishCopy copies a restore's or clone's data and clears the pending tag.
// A clone of a volume in use is crash-consistent: it holds what the disk
// held, as after a power loss.
func (d *Driver) finishCopy(ctx context.Context, v volume, from string, bytes int64) error {
	if from == "" {
		return status.Errorf(codes.AlreadyExists, "CreateVolume: volume %s was created from a content source that this request does not name", v.ID)
	}
	if err := d.host.CopyDevice(ctx, from, v.DevicePath, bytes); err != nil {
		return hostError(err, "CreateVolume: copying %s onto %s", from, v.DevicePath)
	}
	if err := d.host.ChangeLV(ctx, v.VG, v.LV, hostexec.LVChange{DelTags: []string{tagPendingCopy}}); err != nil {
		return hostError(err, "CreateVolume: marking the copy onto %s complete", v.DevicePath)
	}
	return nil
}

// createROSnapshotVolume makes a volume that is the snapshot itself,
// read-only: it takes no space, and a tag on the snapshot records it.
func (d *Driver) createROSnapshotVolume(ctx context.Context, cr createRequest, vg *core.VolumeGroup, snap *core.LogicalVolume, size int64) (volume, error) {
	if err := checkRange(cr, size); err != nil {
		return volume{}, err
	}
	if err := d.host.ChangeLV(ctx, vg.Name, snap.Name, hostexec.LVChange{AddTags: []string{tagROVolumePrefix + cr.id}}); err != nil {
		return volume{}, hostError(err, "CreateVolume: recording volume %s on snapshot %s", cr.id, snap.Name)
	}
	return d.volumeFromROSnapshot(cr.id, vg, snap), nil
}

// checkRange: an existing (or fixed-size) volume must fit the capacity range.
func checkRange(cr createRequest, size int64) error {
	if size < cr.required || (cr.limit > 0 && size > cr.limit) {
		return status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q has %d bytes, outside the requested range [%d, %d]", cr.name, size, cr.required, cr.limit)
	}
	return nil
}

// compatible decides whether an existing LV answers a repeated CreateVolume.
func (d *Driver) compatible(cr createRequest, v volume, pvCount int, wantSource string) error {
	if cr.params.ReadOnlyRestore {
		return status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q exists as a writable LV", cr.name)
	}
	if cr.params.VG != "" && v.VG != cr.params.VG {
		return status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q exists in volume group %s, not %s", cr.name, v.VG, cr.params.VG)
	}
	if err := checkRange(cr, v.SizeBytes); err != nil {
		return err
	}
	wantStriped := cr.params.Striped && pvCount > 1
	if wantStriped != (v.Stripes > 1) {
		return status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q exists with %d stripe(s), which lvmType does not match", cr.name, v.Stripes)
	}
	have := ""
	if v.SourceKind != "" {
		have = v.SourceKind + ":" + v.SourceID
	}
	if have != wantSource {
		return status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q exists with content source %q, not %q", cr.name, have, wantSource)
	}
	return nil
}

func lvCharge(vg, name string, size int64, stripes int) core.ClaimCharge {
	return core.ClaimCharge{ID: core.ClaimID(name), Kind: core.KindLVM, VG: vg, Bytes: size, Stripes: stripes}
}

// placeWithResync places a volume; when the ledger says there is no room it
// reloads the ledger from the host once and tries again.
func (d *Driver) placeWithResync(ctx context.Context, req core.VolumeRequest) (core.VolumeAssignment, error) {
	a, err := d.cap.place(req)
	if err != nil && isInsufficient(err) {
		if rerr := d.cap.resync(ctx, d.host, d.rec); rerr == nil {
			a, err = d.cap.place(req)
		}
	}
	if err != nil {
		if isInsufficient(err) {
			return a, status.Errorf(codes.ResourceExhausted, "node %s: %v", d.cfg.NodeID, err)
		}
		return a, status.Errorf(codes.Internal, "node %s: placing the volume: %v", d.cfg.NodeID, err)
	}
	return a, nil
}

func (d *Driver) resyncQuietly(ctx context.Context) {
	if err := d.cap.resync(ctx, d.host, d.rec); err != nil {
		klog.FromContext(ctx).Info("Capacity: resync failed", "err", err)
	}
}

// settleLVClaim makes the ledger agree with the host after a failed step:
// the claim stays if the LV exists, and is released otherwise.
func (d *Driver) settleLVClaim(ctx context.Context, id string) {
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		d.cap.release(id)
		return
	}
	if vg, lv := findLV(state, id); lv != nil {
		if err := d.cap.adopt(lvCharge(vg.Name, lv.Name, lv.SizeBytes, lv.Stripes)); err != nil {
			klog.FromContext(ctx).Info("Capacity: cannot charge LV", "lv", id, "err", err)
		}
		return
	}
	d.cap.release(id)
}

// createExclusive hands out a whole device or mount point.
func (d *Driver) createExclusive(ctx context.Context, cr createRequest, state core.LVMState) (volume, error) {
	kind, vkind := core.KindDevice, core.VolumeDevice
	if cr.params.Type == TypeMountPoint {
		kind, vkind = core.KindMountPoint, core.VolumeMountPoint
	}
	if _, lv := findLV(state, cr.id); lv != nil {
		return volume{}, status.Errorf(codes.AlreadyExists, "CreateVolume: name %q is taken by an LV on node %s", cr.name, d.cfg.NodeID)
	}
	if r, found, err := d.rec.readVolume(ctx, cr.id); err != nil {
		return volume{}, status.Error(codes.Internal, err.Error())
	} else if found {
		if r.Type != cr.params.Type || (cr.params.Media != "" && r.Media != cr.params.Media) {
			return volume{}, status.Errorf(codes.AlreadyExists, "CreateVolume: volume %q exists as a %s volume of media %q", cr.name, r.Type, r.Media)
		}
		if err := checkRange(cr, r.SizeBytes); err != nil {
			return volume{}, err
		}
		res := r.Device
		if kind == core.KindMountPoint {
			res = r.MountPath
		}
		if err := d.cap.adopt(core.ClaimCharge{ID: core.ClaimID(r.ID), Kind: kind, Device: res, Bytes: r.RequiredBytes}); err != nil {
			klog.FromContext(ctx).Info("Capacity: cannot charge existing volume", "volume", r.ID, "err", err)
		}
		return volumeFromRecord(r), nil
	}
	a, err := d.placeWithResync(ctx, core.VolumeRequest{Claim: core.ClaimID(cr.id), Kind: vkind, Media: cr.params.Media, Bytes: cr.required})
	if err != nil {
		return volume{}, err
	}
	if cr.limit > 0 && a.Charged > cr.limit {
		d.cap.release(cr.id)
		return volume{}, status.Errorf(codes.OutOfRange, "CreateVolume: the smallest free %s that fits, %s, has %d bytes, more than limit_bytes %d", cr.params.Type, a.Device, a.Charged, cr.limit)
	}
	rec := VolumeRecord{ID: cr.id, Type: cr.params.Type, SizeBytes: a.Charged, RequiredBytes: cr.required}
	usage := d.cap.usage()
	list := usage.Devices
	if kind == core.KindMountPoint {
		list = usage.MountPoints
	}
	for _, e := range list {
		if e.Name == a.Device {
			rec.Media = e.Media
		}
	}
	if kind == core.KindDevice {
		rec.Device = a.Device
		// The ledger's view may be older than the disk: never hand out a
		// device that has gained a signature since.
		sigs, err := d.host.Signatures(ctx, a.Device)
		if err != nil {
			d.cap.release(cr.id)
			return volume{}, hostError(err, "CreateVolume: reading the signatures of %s", a.Device)
		}
		if len(sigs) > 0 {
			d.cap.release(cr.id)
			d.resyncQuietly(ctx)
			return volume{}, status.Errorf(codes.ResourceExhausted, "CreateVolume: device %s is no longer blank (%v); retry", a.Device, sigs)
		}
	} else {
		rec.MountPath = a.Device
		mounts, err := d.host.ListMounts(ctx)
		if err != nil {
			d.cap.release(cr.id)
			return volume{}, hostError(err, "CreateVolume: listing mounts")
		}
		for _, m := range mounts {
			if m.Target == a.Device {
				rec.Device = m.Source
			}
		}
	}
	if err := d.rec.writeVolume(ctx, rec); err != nil {
		if _, found, rerr := d.rec.readVolume(ctx, cr.id); rerr != nil || !found {
			d.cap.release(cr.id)
		} else if cerr := d.cap.commit(cr.id); cerr != nil {
			klog.FromContext(ctx).Info("Capacity: commit failed", "volume", cr.id, "err", cerr)
		}
		return volume{}, status.Errorf(codes.Internal, "CreateVolume: %v", err)
	}
	if err := d.cap.commit(cr.id); err != nil {
		klog.FromContext(ctx).Info("Capacity: commit failed", "volume", cr.id, "err", err)
	}
	klog.FromContext(ctx).Info("Allocated", "volume", cr.id, "type", rec.Type, "resource", a.Device, "size", rec.SizeBytes)
	return volumeFromRecord(rec), nil
}

// csiVolume renders a volume with the context open-local sets: every
// StorageClass parameter, plus where the volume is.
func (d *Driver) csiVolume(v volume, params map[string]string, source *csi.VolumeContentSource) *csi.Volume {
	vc := map[string]string{}
	for k, val := range params {
		vc[k] = val
	}
	vc[ParamVolumeType] = string(v.Type)
	vc[ParamSelectedNode] = d.cfg.NodeID
	switch v.Type {
	case TypeLVM:
		vc[ParamVGName] = v.VG
	case TypeDevice:
		vc[CtxDevice] = v.DevicePath
	case TypeMountPoint:
		vc[CtxMountPoint] = v.MountPath
	}
	switch v.SourceKind {
	case "snapshot":
		vc[CtxSnapshotID] = v.SourceID
	case "volume":
		vc[CtxSourceVolumeID] = v.SourceID
	}
	if v.ReadOnly {
		vc[ParamReadOnly] = "true"
	} else if v.SourceKind == "snapshot" {
		vc[ParamReadOnly] = "false"
	}
	if source == nil {
		switch v.SourceKind {
		case "snapshot":
			source = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.SourceID}}}
		case "volume":
			source = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.SourceID}}}
		}
	}
	return &csi.Volume{
		VolumeId:           v.ID,
		CapacityBytes:      v.SizeBytes,
		VolumeContext:      vc,
		ContentSource:      source,
		AccessibleTopology: []*csi.Topology{d.topology()},
	}
}

// DeleteVolume removes a volume: lvremove (refused while snapshots exist),
// wipefs for a Device, emptying the directory for a MountPoint. Deleting a
// volume that does not exist succeeds.
func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "DeleteVolume: volume_id is required")
	}
	if !validID(id) {
		return &csi.DeleteVolumeResponse{}, nil
	}
	unlock, err := d.locks.tryLock("DeleteVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	d.fresh.forget(id)
	logger := klog.FromContext(ctx).WithValues("volume", id)
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, hostError(err, "DeleteVolume: reading the LVM report")
	}
	if vg, lv := findLV(state, id); lv != nil && !lv.IsSnapshot() && !hasTag(lv.Tags, tagKindEphemeral) {
		if snaps := snapshotsOf(vg, id); len(snaps) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "DeleteVolume: volume %s has snapshots %v; delete them first", id, snaps)
		}
		if err := d.host.RemoveLV(ctx, vg.Name, id); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
			d.settleLVClaim(ctx, id)
			return nil, hostError(err, "DeleteVolume: removing LV %s/%s", vg.Name, id)
		}
		d.cap.release(id)
		logger.Info("Removed LV", "vg", vg.Name)
		return &csi.DeleteVolumeResponse{}, nil
	}
	if vg, snap := findROSnapshot(state, id); snap != nil {
		if err := d.host.ChangeLV(ctx, vg.Name, snap.Name, hostexec.LVChange{DelTags: []string{tagROVolumePrefix + id}}); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
			return nil, hostError(err, "DeleteVolume: releasing snapshot %s", snap.Name)
		}
		logger.Info("Released read-only restore", "snapshot", snap.Name)
		return &csi.DeleteVolumeResponse{}, nil
	}
	r, found, err := d.rec.readVolume(ctx, id)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "DeleteVolume: %v", err)
	}
	if !found {
		// Nothing left on the host: the claim of a deletion that failed
		// after its effect goes too (unless the ID is a snapshot's or an
		// inline volume's, which DeleteVolume does not touch).
		if _, lv := findLV(state, id); lv == nil {
			d.cap.release(id)
		}
		return &csi.DeleteVolumeResponse{}, nil
	}
	switch r.Type {
	case TypeDevice:
		if err := d.host.Wipe(ctx, r.Device); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
			return nil, hostError(err, "DeleteVolume: wiping %s", r.Device)
		}
	case TypeMountPoint:
		if err := d.host.CleanDir(ctx, r.MountPath); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
			return nil, hostError(err, "DeleteVolume: emptying %s", r.MountPath)
		}
	}
	if err := d.rec.remove(ctx, d.rec.volumePath(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "DeleteVolume: %v", err)
	}
	d.cap.release(id)
	logger.Info("Released", "type", r.Type, "device", r.Device, "mountPath", r.MountPath)
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerExpandVolume grows an LV after checking the VG has the room.
func (d *Driver) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if !d.cfg.ControllerExpansion {
		return nil, status.Error(codes.Unimplemented, "ControllerExpandVolume: controller expansion is disabled; the node expands volumes")
	}
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "ControllerExpandVolume: volume_id is required")
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "ControllerExpandVolume: capacity_range is required")
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, status.Errorf(codes.InvalidArgument, "ControllerExpandVolume: invalid capacity_range [%d, %d]", required, limit)
	}
	unlock, err := d.locks.tryLock("ControllerExpandVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, hostError(err, "ControllerExpandVolume: reading the LVM report")
	}
	v, found, err := d.lookupVolume(ctx, state, id)
	if err != nil {
		return nil, err
	}
	if !found || v.Ephemeral {
		return nil, status.Errorf(codes.NotFound, "ControllerExpandVolume: volume %q not found on node %s", id, d.cfg.NodeID)
	}
	size, err := d.expand(ctx, v, state, required, limit)
	if err != nil {
		return nil, err
	}
	nodeExpansion := v.Type != TypeMountPoint && !isBlock(req.GetVolumeCapability())
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: nodeExpansion}, nil
}

// expand grows an LVM volume to hold required bytes (checking the ledger
// first) and returns its size; Device and MountPoint volumes cannot grow.
func (d *Driver) expand(ctx context.Context, v volume, state core.LVMState, required, limit int64) (int64, error) {
	switch {
	case v.ReadOnly:
		return 0, status.Errorf(codes.FailedPrecondition, "volume %s is a read-only snapshot restore and cannot be expanded", v.ID)
	case v.Type != TypeLVM:
		if required > v.SizeBytes {
			return 0, status.Errorf(codes.OutOfRange, "volume %s is a whole %s of %d bytes and cannot grow to %d", v.ID, v.Type, v.SizeBytes, required)
		}
		return v.SizeBytes, nil
	}
	vg, lv := findLV(state, v.ID)
	if lv == nil {
		return 0, status.Errorf(codes.NotFound, "volume %s not found", v.ID)
	}
	size := core.LVSize(required, vg.ExtentSizeBytes, lv.Stripes)
	if limit > 0 && size > limit {
		return 0, status.Errorf(codes.OutOfRange, "%d bytes round up to %d (whole extents), more than limit_bytes %d", required, size, limit)
	}
	if size <= lv.SizeBytes {
		return lv.SizeBytes, nil
	}
	if err := d.cap.adopt(lvCharge(vg.Name, lv.Name, lv.SizeBytes, lv.Stripes)); err != nil {
		klog.FromContext(ctx).Info("Capacity: cannot charge volume before expansion", "volume", v.ID, "err", err)
	}
	if err := d.cap.resize(v.ID, size); err != nil {
		if isInsufficient(err) {
			if rerr := d.cap.resync(ctx, d.host, d.rec); rerr == nil {
				err = d.cap.resize(v.ID, size)
			}
		}
		if err != nil {
			if isInsufficient(err) {
				return 0, status.Errorf(codes.ResourceExhausted, "node %s: cannot grow volume %s to %d bytes: %v", d.cfg.NodeID, v.ID, size, err)
			}
			return 0, status.Errorf(codes.Internal, "growing the claim of volume %s: %v", v.ID, err)
		}
	}
	if err := d.host.ExtendLV(ctx, vg.Name, v.ID, size); err != nil {
		d.settleLVClaim(ctx, v.ID)
		return 0, hostError(err, "extending LV %s/%s to %d bytes", vg.Name, v.ID, size)
	}
	klog.FromContext(ctx).Info("Extended LV", "volume", v.ID, "vg", vg.Name, "from", lv.SizeBytes, "to", size)
	return size, nil
}

// ValidateVolumeCapabilities confirms capabilities a volume supports.
func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "ValidateVolumeCapabilities: volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "ValidateVolumeCapabilities: volume_capabilities are required")
	}
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, hostError(err, "ValidateVolumeCapabilities: reading the LVM report")
	}
	v, found, err := d.lookupVolume(ctx, state, id)
	if err != nil {
		return nil, err
	}
	if !found || v.Ephemeral {
		return nil, status.Errorf(codes.NotFound, "ValidateVolumeCapabilities: volume %q not found on node %s", id, d.cfg.NodeID)
	}
	if len(req.GetParameters()) > 0 {
		if _, err := ParseVolumeParams(req.GetParameters()); err != nil {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
		}
	}
	for _, c := range req.GetVolumeCapabilities() {
		if msg := checkCapability(c, v.Type); msg != "" {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: msg}, nil
		}
		if v.ReadOnly && c.GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: fmt.Sprintf("volume %s is a read-only snapshot restore: only SINGLE_NODE_READER_ONLY is supported", id)}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
		MutableParameters:  req.GetMutableParameters(),
	}}, nil
}

// listVolumes returns every persistent volume on the node, sorted by ID.
func (d *Driver) listVolumes(ctx context.Context) ([]volume, core.LVMState, error) {
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, state, hostError(err, "reading the LVM report")
	}
	var out []volume
	for i := range state.VGs {
		vg := &state.VGs[i]
		for j := range vg.LVs {
			lv := &vg.LVs[j]
			if !isOwned(*lv) {
				continue
			}
			if lv.IsSnapshot() {
				for _, id := range tagValues(lv.Tags, tagROVolumePrefix) {
					out = append(out, d.volumeFromROSnapshot(id, vg, lv))
				}
				continue
			}
			if hasTag(lv.Tags, tagKindEphemeral) {
				continue
			}
			out = append(out, d.volumeFromLV(vg, lv))
		}
	}
	recs, err := d.rec.volumes(ctx)
	if err != nil {
		return nil, state, status.Error(codes.Internal, err.Error())
	}
	for _, r := range recs {
		out = append(out, volumeFromRecord(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, state, nil
}

// ListVolumes pages through the node's volumes.
func (d *Driver) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "ListVolumes: max_entries must not be negative")
	}
	vols, _, err := d.listVolumes(ctx)
	if err != nil {
		return nil, err
	}
	start, err := pageToken(req.GetStartingToken(), len(vols))
	if err != nil {
		return nil, err
	}
	end, next := page(start, int(req.GetMaxEntries()), len(vols))
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, v := range vols[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: d.csiVolume(v, nil, nil)})
	}
	return resp, nil
}

// ControllerGetVolume returns one volume.
func (d *Driver) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "ControllerGetVolume: volume_id is required")
	}
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, hostError(err, "ControllerGetVolume: reading the LVM report")
	}
	v, found, err := d.lookupVolume(ctx, state, id)
	if err != nil {
		return nil, err
	}
	if !found || v.Ephemeral {
		return nil, status.Errorf(codes.NotFound, "ControllerGetVolume: volume %q not found on node %s", id, d.cfg.NodeID)
	}
	return &csi.ControllerGetVolumeResponse{Volume: d.csiVolume(v, nil, nil), Status: &csi.ControllerGetVolumeResponse_VolumeStatus{}}, nil
}

// GetCapacity reports what this node can still provision for the given
// parameters, and the largest single volume (one VG's free space, or the
// largest free device or mount point of the media).
func (d *Driver) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	params, err := ParseVolumeParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	for _, c := range req.GetVolumeCapabilities() {
		if msg := checkCapability(c, params.Type); msg != "" {
			return nil, status.Error(codes.InvalidArgument, "GetCapacity: "+msg)
		}
	}
	if t := req.GetAccessibleTopology(); t != nil {
		if node, ok := t.GetSegments()[TopologyKey]; !ok || node != d.cfg.NodeID {
			return &csi.GetCapacityResponse{AvailableCapacity: 0, MaximumVolumeSize: wrapperspb.Int64(0)}, nil
		}
	}
	d.resyncQuietly(ctx)
	u := d.cap.usage()
	var avail, largest int64
	switch params.Type {
	case TypeLVM:
		for _, vg := range u.VGs {
			if params.VG != "" && vg.Name != params.VG {
				continue
			}
			free := vg.FreeBytes()
			// Whole extents only: what lvcreate can actually hand out.
			free -= free % vg.ExtentSizeBytes
			avail += free
			largest = max(largest, free)
		}
	default:
		list := u.Devices
		if params.Type == TypeMountPoint {
			list = u.MountPoints
		}
		for _, e := range list {
			if e.Owner != "" || (params.Media != "" && e.Media != params.Media) {
				continue
			}
			avail += e.SizeBytes
			largest = max(largest, e.SizeBytes)
		}
	}
	return &csi.GetCapacityResponse{AvailableCapacity: avail, MaximumVolumeSize: wrapperspb.Int64(largest)}, nil
}
