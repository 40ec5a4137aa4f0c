package csi

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// publishEphemeral serves a CSI inline volume: the LV is created, formatted
// and mounted on the target at publish and removed at unpublish. The LV is
// tagged ol.kind=ephemeral, and the publish record is written only once the
// volume is ready: on restart an inline LV without a record was never handed
// to a pod and is removed (see recover). A publication that fails is rolled
// back at once, so nothing waits for a restart to be cleaned.
func (d *Driver) publishEphemeral(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target, capability := req.GetVolumeId(), req.GetTargetPath(), req.GetVolumeCapability()
	if isBlock(capability) {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: inline volumes are filesystems, not block devices")
	}
	if msg := checkCapability(capability, TypeLVM); msg != "" {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: "+msg)
	}
	if !validID(id) {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume: inline volume ID %q cannot name an LV", id)
	}
	ec, err := ParseEphemeral(req.GetVolumeContext(), capability.GetMount().GetFsType())
	if err != nil {
		return nil, err
	}
	unlock, err := d.locks.tryLock("NodePublishVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	logger := klog.FromContext(ctx).WithValues("volume", id, "targetPath", target)

	var prev PublishRecord
	hadRecord, err := d.rec.read(ctx, d.rec.publishPath(id, target), &prev)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
	}
	if hadRecord {
		if mounted, err := d.host.IsMountPoint(ctx, target); err == nil && mounted {
			return &csi.NodePublishVolumeResponse{}, nil
		}
	}
	// The cached report may miss an LV made behind the driver's back; then
	// lvcreate refuses the name, the cache is dropped and the kubelet's retry
	// reads a fresh report.
	state, _, err := d.lvm.recent(ctx)
	if err != nil {
		return nil, hostError(err, "NodePublishVolume: reading the LVM report")
	}
	vgName, created := "", false
	if vg, lv := findLV(state, id); lv != nil {
		if !hasTag(lv.Tags, tagKindEphemeral) {
			return nil, status.Errorf(codes.FailedPrecondition, "NodePublishVolume: %s names a persistent volume, not an inline one", id)
		}
		vgName = vg.Name
		if err := d.cap.adopt(lvCharge(vg.Name, lv.Name, lv.SizeBytes, lv.Stripes)); err != nil {
			logger.Info("Capacity: cannot charge existing inline volume", "err", err)
		}
	} else {
		a, err := d.placeWithResync(ctx, core.VolumeRequest{Claim: core.ClaimID(id), Kind: core.VolumeLVM, VG: ec.VG, Bytes: ec.EphemeralSize})
		if err != nil {
			return nil, err
		}
		size := core.LVSize(ec.EphemeralSize, d.cap.extentSize(a.VG), a.Stripes)
		tags := []string{tagOwner, tagKindEphemeral}
		if ec.PodUID != "" && hostexec.ValidatePodUID(ec.PodUID) == nil {
			tags = append(tags, tagPodPrefix+ec.PodUID)
		}
		if err := d.host.CreateLV(ctx, hostexec.LVSpec{VG: a.VG, Name: id, SizeBytes: size, Stripes: a.Stripes, Tags: tags}); err != nil {
			d.settleLVClaim(ctx, id)
			d.rollbackEphemeral(ctx, id, target, hadRecord, nil)
			return nil, hostError(err, "NodePublishVolume: creating inline volume %s/%s", a.VG, id)
		}
		if err := d.cap.adopt(lvCharge(a.VG, id, size, a.Stripes)); err != nil {
			logger.Info("Capacity: cannot charge the new inline volume", "err", err)
		}
		vgName, created = a.VG, true
		logger.Info("Created inline volume", "vg", a.VG, "size", size)
	}
	dev := d.host.LVDevicePath(vgName, id)
	fsType := ec.FSType
	if fsType == "" {
		fsType = DefaultFSType
	}
	rec := PublishRecord{Version: recordVersion, VolumeID: id, Type: TypeLVM, TargetPath: target, ReadOnly: req.GetReadonly(), Device: dev,
		Ephemeral: &EphemeralRecord{VG: vgName, PodUID: ec.PodUID, SizeBytes: ec.EphemeralSize, FSType: fsType}}
	if err := d.mountEphemeral(ctx, id, vgName, target, fsType, capability.GetMount().GetMountFlags(), req.GetReadonly(), created); err != nil {
		d.rollbackEphemeral(ctx, id, target, hadRecord, nil)
		return nil, err
	}
	if rec.Throttle, err = d.applyThrottle(ctx, id, dev, ec.BPS, ec.IOPS, ec.PodUID); err != nil {
		d.rollbackEphemeral(ctx, id, target, hadRecord, rec.Throttle)
		return nil, err
	}
	if err := d.rec.write(ctx, d.rec.publishPath(id, target), rec); err != nil {
		d.rollbackEphemeral(ctx, id, target, hadRecord, rec.Throttle)
		return nil, status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
	}
	logger.Info("Published inline volume", "device", dev, "throttled", rec.Throttle != nil)
	return &csi.NodePublishVolumeResponse{}, nil
}

// mountEphemeral formats the inline volume (without a probe when this call
// created it) and mounts it on target.
func (d *Driver) mountEphemeral(ctx context.Context, id, vgName, target, fsType string, flags []string, readOnly, created bool) error {
	dev := d.host.LVDevicePath(vgName, id)
	v := volume{ID: id, Type: TypeLVM, VG: vgName, LV: id, DevicePath: dev, Ephemeral: true}
	if err := d.formatIfBlank(ctx, "NodePublishVolume", v, fsType, created); err != nil {
		return err
	}
	mounted, err := d.ensureDir(ctx, target, false)
	if err != nil {
		return err
	}
	if !mounted {
		if err := d.host.Mount(ctx, dev, target, fsType, mountOptions(fsType, flags, readOnly, false)); err != nil {
			return hostError(err, "NodePublishVolume: mounting %s on %s", dev, target)
		}
	}
	return nil
}

// rollbackEphemeral undoes a failed inline publication: clear io limits,
// unmount, remove the LV, release its claim. An inline volume that was published before (its
// record exists, the node restarted) keeps its data: only a first
// publication is undone.
func (d *Driver) rollbackEphemeral(ctx context.Context, id, target string, hadRecord bool, throttle *ThrottleRecord) {
	if hadRecord {
		return
	}
	logger := klog.FromContext(ctx).WithValues("volume", id)
	if err := d.clearThrottle(ctx, throttle); err != nil {
		logger.Info("Rollback: clearing io limits failed", "err", err)
	}
	if err := d.unmount(ctx, target); err != nil {
		logger.Info("Rollback: unmount failed", "target", target, "err", err)
		return
	}
	if err := d.host.RemovePath(ctx, target); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
		logger.Info("Rollback: removing the target failed", "target", target, "err", err)
	}
	// A record write that failed after its effect left a record behind.
	if err := d.rec.remove(ctx, d.rec.publishPath(id, target)); err != nil {
		logger.Info("Rollback: removing the publish record failed", "err", err)
	}
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		logger.Info("Rollback: reading the LVM report failed", "err", err)
		return
	}
	vg, lv := findLV(state, id)
	if lv == nil {
		d.cap.release(id)
		return
	}
	if err := d.removeEphemeral(ctx, vg.Name, id); err != nil {
		logger.Info("Rollback: removing the inline volume failed; it is removed at the next unpublish or restart", "err", err)
	}
}
