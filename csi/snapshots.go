package csi

import (
	"context"
	"errors"
	"sort"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// CreateSnapshot takes an LVM copy-on-write snapshot in the source's VG. Its
// COW space starts at the class's initial size (capped at the source's size,
// which a COW area never needs to exceed) and the agent extends it by the
// expansion size when it fills past the threshold; both are LV tags.
func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, source := req.GetName(), req.GetSourceVolumeId()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "CreateSnapshot: name is required")
	}
	if source == "" {
		return nil, status.Error(codes.InvalidArgument, "CreateSnapshot: source_volume_id is required")
	}
	params, err := ParseSnapshotParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	id := volumeIDFor(name, "snap-")
	unlock, err := d.locks.tryLock("CreateSnapshot "+id, id, source)
	if err != nil {
		return nil, err
	}
	defer unlock()
	logger := klog.FromContext(ctx).WithValues("snapshot", id, "source", source)
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, hostError(err, "CreateSnapshot: reading the LVM report")
	}
	if vg, lv := findLV(state, id); lv != nil {
		if !lv.IsSnapshot() || lv.Origin != source {
			return nil, status.Errorf(codes.AlreadyExists, "CreateSnapshot: name %q is taken by %s on node %s", name, describeLV(lv), d.cfg.NodeID)
		}
		if err := d.cap.adopt(lvCharge(vg.Name, lv.Name, lv.SizeBytes, 1)); err != nil {
			logger.Info("Capacity: cannot charge existing snapshot", "err", err)
		}
		return &csi.CreateSnapshotResponse{Snapshot: snapshotMessage(vg, lv)}, nil
	}
	src, found, err := d.lookupVolume(ctx, state, source)
	if err != nil {
		return nil, err
	}
	if !found || src.Ephemeral {
		return nil, status.Errorf(codes.NotFound, "CreateSnapshot: source volume %q not found on node %s", source, d.cfg.NodeID)
	}
	if src.Type != TypeLVM || src.ReadOnly {
		return nil, status.Errorf(codes.InvalidArgument, "CreateSnapshot: volume %s is a %s; snapshots are taken of writable LVM volumes", source, describeVolume(src))
	}
	if src.PendingCopy {
		return nil, status.Errorf(codes.Unavailable, "CreateSnapshot: volume %s is still being populated; retry later", source)
	}
	vg, _ := findLV(state, source)
	size := core.LVSize(min(params.InitialBytes, src.SizeBytes), vg.ExtentSizeBytes, 1)
	if _, err := d.placeWithResync(ctx, core.VolumeRequest{Claim: core.ClaimID(id), Kind: core.VolumeLVM, VG: vg.Name, Bytes: size}); err != nil {
		return nil, err
	}
	created := d.now()
	spec := hostexec.SnapshotSpec{VG: vg.Name, Name: id, Origin: source, SizeBytes: size, Tags: []string{
		tagOwner, tagKindSnapshot,
		tagSnapSourcePrefix + source,
		int64Tag(tagThresholdPrefix, int64(params.ThresholdPercent)),
		int64Tag(tagExpandPrefix, params.ExpansionBytes),
		int64Tag(tagCreatedPrefix, created.UnixNano()),
	}}
	if err := d.host.CreateSnapshot(ctx, spec); err != nil {
		d.settleLVClaim(ctx, id)
		return nil, hostError(err, "CreateSnapshot: creating snapshot %s/%s of %s", vg.Name, id, source)
	}
	if err := d.cap.adopt(lvCharge(vg.Name, id, size, 1)); err != nil {
		logger.Info("Capacity: cannot charge the new snapshot", "err", err)
	}
	logger.Info("Created snapshot", "vg", vg.Name, "cowSize", size)
	return &csi.CreateSnapshotResponse{Snapshot: &csi.Snapshot{
		SizeBytes:      src.SizeBytes,
		SnapshotId:     id,
		SourceVolumeId: source,
		CreationTime:   timestamppb.New(created),
		ReadyToUse:     true,
	}}, nil
}

func describeLV(lv *core.LogicalVolume) string {
	if lv.IsSnapshot() {
		return "a snapshot of " + lv.Origin
	}
	return "a volume"
}

func describeVolume(v volume) string {
	if v.ReadOnly {
		return "read-only snapshot restore"
	}
	return string(v.Type) + " volume"
}

// DeleteSnapshot removes a snapshot; it is refused while a read-only restored
// volume uses it. A snapshot that does not exist is deleted already.
func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "DeleteSnapshot: snapshot_id is required")
	}
	if !validID(id) {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	unlock, err := d.locks.tryLock("DeleteSnapshot "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, hostError(err, "DeleteSnapshot: reading the LVM report")
	}
	vg, lv := findLV(state, id)
	if lv == nil {
		d.cap.release(id)
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if !lv.IsSnapshot() {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if users := tagValues(lv.Tags, tagROVolumePrefix); len(users) > 0 {
		sort.Strings(users)
		return nil, status.Errorf(codes.FailedPrecondition, "DeleteSnapshot: snapshot %s is used read-only by volume(s) %v; delete them first", id, users)
	}
	if err := d.host.RemoveLV(ctx, vg.Name, id); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
		d.settleLVClaim(ctx, id)
		return nil, hostError(err, "DeleteSnapshot: removing %s/%s", vg.Name, id)
	}
	d.cap.release(id)
	klog.FromContext(ctx).Info("Removed snapshot", "snapshot", id, "vg", vg.Name)
	return &csi.DeleteSnapshotResponse{}, nil
}

// snapshots lists the node's snapshots, sorted by ID.
func (d *Driver) snapshots(ctx context.Context) ([]*csi.Snapshot, error) {
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return nil, hostError(err, "reading the LVM report")
	}
	var out []*csi.Snapshot
	for i := range state.VGs {
		vg := &state.VGs[i]
		for j := range vg.LVs {
			lv := &vg.LVs[j]
			if lv.IsSnapshot() && isOwned(*lv) {
				out = append(out, snapshotMessage(vg, lv))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SnapshotId < out[j].SnapshotId })
	return out, nil
}

// ListSnapshots pages through the snapshots, optionally of one ID or source.
func (d *Driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "ListSnapshots: max_entries must not be negative")
	}
	all, err := d.snapshots(ctx)
	if err != nil {
		return nil, err
	}
	var list []*csi.Snapshot
	for _, s := range all {
		if req.GetSnapshotId() != "" && s.SnapshotId != req.GetSnapshotId() {
			continue
		}
		if req.GetSourceVolumeId() != "" && s.SourceVolumeId != req.GetSourceVolumeId() {
			continue
		}
		list = append(list, s)
	}
	start, err := pageToken(req.GetStartingToken(), len(list))
	if err != nil {
		return nil, err
	}
	end, next := page(start, int(req.GetMaxEntries()), len(list))
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, s := range list[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s})
	}
	return resp, nil
}

// GetSnapshot returns one snapshot.
func (d *Driver) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "GetSnapshot: snapshot_id is required")
	}
	all, err := d.snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range all {
		if s.SnapshotId == id {
			return &csi.GetSnapshotResponse{Snapshot: s}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "GetSnapshot: snapshot %q not found on node %s", id, d.cfg.NodeID)
}
