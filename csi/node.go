package csi

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/hostexec"
)

// NodeStageVolume formats a blank device and mounts it at the staging path.
// A device that already holds a filesystem of the requested type is mounted
// as it is; any other signature is refused, never overwritten. Block volumes
// are not mounted: staging only records them.
func (d *Driver) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, staging, capability := req.GetVolumeId(), req.GetStagingTargetPath(), req.GetVolumeCapability()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "NodeStageVolume: volume_id is required")
	case staging == "":
		return nil, status.Error(codes.InvalidArgument, "NodeStageVolume: staging_target_path is required")
	case capability == nil:
		return nil, status.Error(codes.InvalidArgument, "NodeStageVolume: volume_capability is required")
	}
	if IsEphemeral(req.GetVolumeContext()) {
		return nil, status.Error(codes.InvalidArgument, "NodeStageVolume: inline volumes are not staged")
	}
	if err := hostexec.ValidatePath(staging); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodeStageVolume: staging_target_path: %v", err)
	}
	vc, err := ParseVolumeContext(req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	unlock, err := d.locks.tryLock("NodeStageVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v, err := d.provisioningVolume(ctx, id, vc)
	if err != nil {
		return nil, err
	}
	if msg := checkCapability(capability, v.Type); msg != "" {
		return nil, status.Error(codes.InvalidArgument, "NodeStageVolume: "+msg)
	}
	if v.Ephemeral {
		return nil, status.Errorf(codes.InvalidArgument, "NodeStageVolume: volume %s is an inline volume", id)
	}
	// Whatever this call does with the volume, it is no longer new after it.
	fresh := d.fresh.take(id) && v.Type == TypeLVM && !v.ReadOnly && v.LV == id
	readOnly := v.ReadOnly || capability.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	rec := StageRecord{Version: recordVersion, VolumeID: id, Type: v.Type, StagingPath: staging, Block: isBlock(capability), Device: v.DevicePath, ReadOnly: readOnly}
	if !rec.Block {
		if v.Type == TypeMountPoint {
			rec.Device = v.MountPath
			err = d.stageBind(ctx, v, staging, readOnly)
		} else {
			rec.FSType = fsTypeFor(capability, vc.FSType)
			err = d.stageFilesystem(ctx, v, staging, rec.FSType, capability.GetMount().GetMountFlags(), readOnly, fresh)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := d.rec.write(ctx, d.rec.stagePath(id, staging), rec); err != nil {
		return nil, status.Errorf(codes.Internal, "NodeStageVolume: %v", err)
	}
	klog.FromContext(ctx).Info("Staged", "volume", id, "stagingPath", staging, "block", rec.Block, "fsType", rec.FSType)
	return &csi.NodeStageVolumeResponse{}, nil
}

func fsTypeFor(c *csi.VolumeCapability, fromContext string) string {
	if fs := c.GetMount().GetFsType(); fs != "" {
		return fs
	}
	if fromContext != "" {
		return fromContext
	}
	return DefaultFSType
}

// mountOptions are the options of a filesystem mount: the capability's mount
// flags, nouuid for xfs (a restored or cloned xfs has its source's UUID, as
// open-local handles it) and, for a snapshot mounted read-only, no journal
// replay (the snapshot must stay as it was taken).
func mountOptions(fsType string, flags []string, readOnly, snapshot bool) []string {
	opts := append([]string(nil), flags...)
	add := func(o string) {
		for _, x := range opts {
			if x == o {
				return
			}
		}
		opts = append(opts, o)
	}
	if fsType == "xfs" {
		add("nouuid")
	}
	if readOnly {
		add("ro")
	}
	if snapshot {
		if fsType == "xfs" {
			add("norecovery")
		} else {
			add("noload")
		}
	}
	return opts
}

// ensureDir reports whether path is a mount point, creating the directory
// when it does not exist (mkdir -p: the CO owns its parents).
func (d *Driver) ensureDir(ctx context.Context, p string, file bool) (mounted bool, err error) {
	mounted, err = d.host.IsMountPoint(ctx, p)
	if errors.Is(err, hostexec.ErrNotFound) {
		if file {
			if err := d.host.MakeDir(ctx, filepath.Dir(p)); err != nil {
				return false, hostError(err, "creating %s", filepath.Dir(p))
			}
			err = d.host.MakeFile(ctx, p)
		} else {
			err = d.host.MakeDir(ctx, p)
		}
		if err != nil {
			return false, hostError(err, "creating %s", p)
		}
		return false, nil
	}
	if err != nil {
		return false, hostError(err, "checking %s", p)
	}
	return mounted, nil
}

// mountedSource returns what is mounted at target ("" if nothing).
func (d *Driver) mountedSource(ctx context.Context, target string) (string, error) {
	mounts, err := d.host.ListMounts(ctx)
	if err != nil {
		return "", hostError(err, "listing mounts")
	}
	src := ""
	for _, m := range mounts {
		if m.Target == target {
			src = m.Source // the last mount on a path is the visible one
		}
	}
	return src, nil
}

func (d *Driver) stageFilesystem(ctx context.Context, v volume, staging, fsType string, flags []string, readOnly, fresh bool) error {
	mounted, err := d.ensureDir(ctx, staging, false)
	if err != nil {
		return err
	}
	if mounted {
		src, err := d.mountedSource(ctx, staging)
		if err != nil {
			return err
		}
		if !v.sameSource(src) {
			return status.Errorf(codes.FailedPrecondition, "NodeStageVolume: %s is already mounted from %s, not from volume %s (%s)", staging, src, v.ID, v.DevicePath)
		}
		return nil
	}
	if err := d.formatIfBlank(ctx, "NodeStageVolume", v, fsType, fresh); err != nil {
		return err
	}
	if err := d.host.Mount(ctx, v.DevicePath, staging, fsType, mountOptions(fsType, flags, readOnly, v.ReadOnly)); err != nil {
		return hostError(err, "NodeStageVolume: mounting %s on %s", v.DevicePath, staging)
	}
	return nil
}

// formatIfBlank formats a blank device and accepts one that already holds a
// filesystem of the requested type; any other signature is refused. A new
// LV (fresh) is formatted without a probe, unless the host sees it was
// written to (hostexec.Host.FormatNewLV). Otherwise Mkfs, which refuses a
// device with a signature itself, goes first: only when it finds something
// is the device probed to tell an existing filesystem of the right type (a
// restage, a restore) from anything else. op names the RPC in messages.
func (d *Driver) formatIfBlank(ctx context.Context, op string, v volume, fsType string, fresh bool) error {
	logger := klog.FromContext(ctx)
	if fresh && !v.ReadOnly {
		err := d.host.FormatNewLV(ctx, v.VG, v.LV, fsType, nil)
		if err == nil {
			logger.Info("Formatted", "volume", v.ID, "device", v.DevicePath, "fsType", fsType, "new", true)
			return nil
		}
		if !errors.Is(err, hostexec.ErrInUse) {
			return hostError(err, "%s: formatting new volume %s as %s", op, v.DevicePath, fsType)
		}
		logger.Info("A new volume was written to before its first use; probing it", "volume", v.ID, "device", v.DevicePath)
	}
	if !v.ReadOnly {
		err := d.host.Mkfs(ctx, v.DevicePath, fsType, nil)
		if err == nil {
			logger.Info("Formatted", "volume", v.ID, "device", v.DevicePath, "fsType", fsType)
			return nil
		}
		if !errors.Is(err, hostexec.ErrInUse) {
			return hostError(err, "%s: formatting %s as %s", op, v.DevicePath, fsType)
		}
	}
	sigs, err := d.host.Signatures(ctx, v.DevicePath)
	if err != nil {
		return hostError(err, "%s: reading the signatures of %s", op, v.DevicePath)
	}
	switch {
	case len(sigs) == 0 && v.ReadOnly:
		return status.Errorf(codes.FailedPrecondition, "%s: read-only volume %s (%s) holds no filesystem", op, v.ID, v.DevicePath)
	case len(sigs) == 0:
		// Mkfs said in use, yet nothing is on the device: it is busy (held
		// open by another mount or a device-mapper table).
		return status.Errorf(codes.FailedPrecondition, "%s: %s holds no filesystem but cannot be formatted now (in use); refusing to touch it", op, v.DevicePath)
	case !contains(sigs, fsType):
		return status.Errorf(codes.FailedPrecondition, "%s: volume %s (%s) holds %v, not a %s filesystem; refusing to format it", op, v.ID, v.DevicePath, sigs, fsType)
	}
	return nil
}

func (d *Driver) stageBind(ctx context.Context, v volume, staging string, readOnly bool) error {
	mounted, err := d.ensureDir(ctx, staging, false)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if err := d.host.BindMount(ctx, v.MountPath, staging, readOnly); err != nil {
		return hostError(err, "NodeStageVolume: bind-mounting %s on %s", v.MountPath, staging)
	}
	return nil
}

// NodeUnstageVolume unmounts the staging path. It is idempotent.
func (d *Driver) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	if known, err := checkVolumeAndPath("NodeUnstageVolume", id, "staging_target_path", staging); err != nil {
		return nil, err
	} else if !known {
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	unlock, err := d.locks.tryLock("NodeUnstageVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := d.unmount(ctx, staging); err != nil {
		return nil, err
	}
	if err := d.rec.remove(ctx, d.rec.stagePath(id, staging)); err != nil {
		return nil, status.Errorf(codes.Internal, "NodeUnstageVolume: %v", err)
	}
	klog.FromContext(ctx).Info("Unstaged", "volume", id, "stagingPath", staging)
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// unmount unmounts target if something is mounted there.
func (d *Driver) unmount(ctx context.Context, target string) error {
	mounted, err := d.host.IsMountPoint(ctx, target)
	if errors.Is(err, hostexec.ErrNotFound) {
		return nil
	}
	if err != nil {
		return hostError(err, "checking %s", target)
	}
	if mounted {
		if err := d.host.Unmount(ctx, target); err != nil {
			return hostError(err, "unmounting %s", target)
		}
	}
	return nil
}

// NodePublishVolume bind-mounts the staged filesystem (or, for a block
// volume, the device file) onto the target, read-only when asked, and
// applies io.max limits for the pod.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target, capability := req.GetVolumeId(), req.GetTargetPath(), req.GetVolumeCapability()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: volume_id is required")
	case target == "":
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: target_path is required")
	case capability == nil:
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: volume_capability is required")
	}
	if err := hostexec.ValidatePath(target); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume: target_path: %v", err)
	}
	if IsEphemeral(req.GetVolumeContext()) {
		return d.publishEphemeral(ctx, req)
	}
	staging := req.GetStagingTargetPath()
	if staging == "" {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: staging_target_path is required (the driver stages volumes)")
	}
	vc, err := ParseVolumeContext(req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	unlock, err := d.locks.tryLock("NodePublishVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	d.fresh.forget(id) // published (block volumes: written to) before any stage
	v, err := d.provisioningVolume(ctx, id, vc)
	if err != nil {
		return nil, err
	}
	if msg := checkCapability(capability, v.Type); msg != "" {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: "+msg)
	}
	mode := capability.GetAccessMode().GetMode()
	readOnly := req.GetReadonly() || v.ReadOnly || mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	rec := PublishRecord{Version: recordVersion, VolumeID: id, Type: v.Type, TargetPath: target, Block: isBlock(capability), ReadOnly: readOnly, Device: v.DevicePath,
		SingleWriter: mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER}
	if v.Type == TypeMountPoint {
		rec.Device = v.MountPath
	}
	if rec.SingleWriter {
		pubs, err := d.rec.publications(ctx, id)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
		}
		for _, p := range pubs {
			if p.TargetPath != target {
				return nil, status.Errorf(codes.FailedPrecondition, "NodePublishVolume: volume %s is SINGLE_NODE_SINGLE_WRITER and already published at %s", id, p.TargetPath)
			}
		}
	}
	if rec.Block {
		mounted, err := d.ensureDir(ctx, target, true)
		if err != nil {
			return nil, err
		}
		if !mounted {
			if err := d.host.BindMount(ctx, v.DevicePath, target, readOnly); err != nil {
				return nil, hostError(err, "NodePublishVolume: bind-mounting %s on %s", v.DevicePath, target)
			}
		}
	} else {
		staged, err := d.host.IsMountPoint(ctx, staging)
		if err != nil && !errors.Is(err, hostexec.ErrNotFound) {
			return nil, hostError(err, "NodePublishVolume: checking %s", staging)
		}
		if !staged {
			return nil, status.Errorf(codes.FailedPrecondition, "NodePublishVolume: volume %s is not staged at %s", id, staging)
		}
		mounted, err := d.ensureDir(ctx, target, false)
		if err != nil {
			return nil, err
		}
		if !mounted {
			if err := d.host.BindMount(ctx, staging, target, readOnly); err != nil {
				return nil, hostError(err, "NodePublishVolume: bind-mounting %s on %s", staging, target)
			}
		}
	}
	if v.Type != TypeMountPoint {
		if rec.Throttle, err = d.applyThrottle(ctx, id, v.DevicePath, vc.BPS, vc.IOPS, vc.PodUID); err != nil {
			return nil, err
		}
	}
	if err := d.rec.write(ctx, d.rec.publishPath(id, target), rec); err != nil {
		return nil, status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
	}
	klog.FromContext(ctx).Info("Published", "volume", id, "targetPath", target, "readOnly", readOnly, "block", rec.Block, "throttled", rec.Throttle != nil)
	return &csi.NodePublishVolumeResponse{}, nil
}

// applyThrottle writes cgroup v2 io.max for the volume's device in the pod's
// cgroup; nil when the volume has no limits. When the write itself fails the
// record is returned with the error, for a rollback to clear.
func (d *Driver) applyThrottle(ctx context.Context, id, device string, bps, iops int64, podUID string) (*ThrottleRecord, error) {
	if bps == 0 && iops == 0 {
		return nil, nil
	}
	if podUID == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s has %s/%s limits, but the volume context has no pod UID: the CSIDriver object needs podInfoOnMount: true", id, ParamBPS, ParamIOPS)
	}
	if err := hostexec.ValidatePodUID(podUID); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "volume context %s: %v", CtxPodUID, err)
	}
	cg, err := d.host.PodCgroupDir(ctx, podUID)
	if errors.Is(err, hostexec.ErrNotFound) {
		return nil, status.Errorf(codes.FailedPrecondition, "no cgroup found for pod %s: cannot apply the io limits of volume %s", podUID, id)
	}
	if err != nil {
		return nil, hostError(err, "finding the cgroup of pod %s", podUID)
	}
	major, minor, err := d.host.DeviceNumber(ctx, device)
	if err != nil {
		return nil, hostError(err, "reading the device number of %s", device)
	}
	limits := hostexec.IOLimits{ReadBPS: bps, WriteBPS: bps, ReadIOPS: iops, WriteIOPS: iops}
	rec := &ThrottleRecord{PodUID: podUID, CgroupDir: cg, Device: device, Major: major, Minor: minor, Limits: limits}
	if err := d.host.SetIOLimits(ctx, cg, major, minor, limits); err != nil {
		// The write may have happened: the record lets a rollback clear it.
		return rec, hostError(err, "writing io.max for %d:%d in %s", major, minor, cg)
	}
	return rec, nil
}

// clearThrottle removes a publication's io.max entry; a cgroup that is gone
// (the pod ended) has nothing left to clear.
func (d *Driver) clearThrottle(ctx context.Context, t *ThrottleRecord) error {
	if t == nil {
		return nil
	}
	err := d.host.SetIOLimits(ctx, t.CgroupDir, t.Major, t.Minor, hostexec.IOLimits{})
	if err != nil && !errors.Is(err, hostexec.ErrNotFound) {
		return hostError(err, "clearing io.max for %d:%d in %s", t.Major, t.Minor, t.CgroupDir)
	}
	return nil
}

// NodeUnpublishVolume unmounts and removes the target, clears io limits and
// removes an inline volume's LV. It is idempotent.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if known, err := checkVolumeAndPath("NodeUnpublishVolume", id, "target_path", target); err != nil {
		return nil, err
	} else if !known {
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	unlock, err := d.locks.tryLock("NodeUnpublishVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var rec PublishRecord
	found, err := d.rec.read(ctx, d.rec.publishPath(id, target), &rec)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: %v", err)
	}
	if err := d.unmount(ctx, target); err != nil {
		return nil, err
	}
	if err := d.host.RemovePath(ctx, target); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
		return nil, hostError(err, "NodeUnpublishVolume: removing %s", target)
	}
	if found {
		if err := d.clearThrottle(ctx, rec.Throttle); err != nil {
			return nil, err
		}
	}
	ephemeralVG := ""
	if found && rec.Ephemeral != nil {
		ephemeralVG = rec.Ephemeral.VG
	} else if !found {
		// No record (the state directory was lost, or publishing never
		// completed): an inline volume is still known by its LV tag.
		state, err := d.host.LVMReport(ctx)
		if err != nil {
			return nil, hostError(err, "NodeUnpublishVolume: reading the LVM report")
		}
		if vg, lv := findLV(state, id); lv != nil && hasTag(lv.Tags, tagKindEphemeral) {
			ephemeralVG = vg.Name
		}
	}
	if ephemeralVG != "" {
		if err := d.removeEphemeral(ctx, ephemeralVG, id); err != nil {
			return nil, err
		}
	}
	if found {
		if err := d.rec.remove(ctx, d.rec.publishPath(id, target)); err != nil {
			return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: %v", err)
		}
	}
	klog.FromContext(ctx).Info("Unpublished", "volume", id, "targetPath", target, "inline", ephemeralVG != "")
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (d *Driver) removeEphemeral(ctx context.Context, vg, id string) error {
	if err := d.host.RemoveLV(ctx, vg, id); err != nil && !errors.Is(err, hostexec.ErrNotFound) {
		d.settleLVClaim(ctx, id)
		return hostError(err, "removing inline volume %s/%s", vg, id)
	}
	d.cap.release(id)
	return nil
}

// NodeGetInfo reports the node, its topology and how many volumes it takes.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             d.cfg.NodeID,
		MaxVolumesPerNode:  d.maxVolumes(),
		AccessibleTopology: d.topology(),
	}, nil
}

// maxVolumes is the configured limit, or one derived from capacity: as many
// typical (1 GiB) LVs as the VGs hold plus every device and mount point,
// capped at 1024 (never 0, which would mean unlimited).
func (d *Driver) maxVolumes() int64 {
	if d.cfg.MaxVolumes > 0 {
		return d.cfg.MaxVolumes
	}
	u := d.cap.usage()
	var n int64
	for _, vg := range u.VGs {
		n += vg.AllocatableBytes / typicalMinVolume
	}
	n += int64(len(u.Devices) + len(u.MountPoints))
	return max(1, min(maxVolumesCeiling, n))
}

// NodeExpandVolume grows the filesystem online (block volumes need nothing).
// Without controller expansion it grows the LV first, after the capacity check.
func (d *Driver) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	id, p := req.GetVolumeId(), req.GetVolumePath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "NodeExpandVolume: volume_id is required")
	case p == "":
		return nil, status.Error(codes.InvalidArgument, "NodeExpandVolume: volume_path is required")
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, status.Errorf(codes.InvalidArgument, "NodeExpandVolume: invalid capacity_range [%d, %d]", required, limit)
	}
	unlock, err := d.locks.tryLock("NodeExpandVolume "+id, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v, err := d.nodeVolumeAt(ctx, id, p, req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	if v.Ephemeral {
		return nil, status.Errorf(codes.InvalidArgument, "NodeExpandVolume: volume %s is an inline volume", id)
	}
	if !filepath.IsAbs(p) {
		return nil, status.Errorf(codes.NotFound, "NodeExpandVolume: volume path %q does not exist", p)
	}
	if err := hostexec.ValidatePath(p); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "NodeExpandVolume: volume_path: %v", err)
	}
	if ok, err := d.host.PathExists(ctx, p); err != nil {
		return nil, hostError(err, "NodeExpandVolume: checking %s", p)
	} else if !ok {
		return nil, status.Errorf(codes.NotFound, "NodeExpandVolume: volume path %s does not exist", p)
	}
	block, err := d.isBlockPath(ctx, id, p, req.GetStagingTargetPath(), req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	size := v.SizeBytes
	if !d.cfg.ControllerExpansion && v.Type == TypeLVM && required > 0 {
		state, err := d.host.LVMReport(ctx)
		if err != nil {
			return nil, hostError(err, "NodeExpandVolume: reading the LVM report")
		}
		if size, err = d.expand(ctx, v, state, required, limit); err != nil {
			return nil, err
		}
	} else if v.ReadOnly && required > v.SizeBytes {
		return nil, status.Errorf(codes.FailedPrecondition, "NodeExpandVolume: volume %s is a read-only snapshot restore and cannot be expanded", id)
	}
	if !block && v.Type != TypeMountPoint && !v.ReadOnly {
		if err := d.host.ResizeFS(ctx, v.DevicePath, p); err != nil {
			return nil, hostError(err, "NodeExpandVolume: growing the filesystem on %s at %s", v.DevicePath, p)
		}
		klog.FromContext(ctx).Info("Grew filesystem", "volume", id, "path", p, "size", size)
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

// isBlockPath decides whether a published or staged path is a block volume:
// from the capability when the CO sends it, else from the records.
func (d *Driver) isBlockPath(ctx context.Context, id, p, staging string, c *csi.VolumeCapability) (bool, error) {
	if c != nil {
		return isBlock(c), nil
	}
	var pub PublishRecord
	if found, err := d.rec.read(ctx, d.rec.publishPath(id, p), &pub); err != nil {
		return false, status.Error(codes.Internal, err.Error())
	} else if found {
		return pub.Block, nil
	}
	for _, s := range []string{p, staging} {
		if s == "" {
			continue
		}
		var st StageRecord
		if found, err := d.rec.read(ctx, d.rec.stagePath(id, s), &st); err != nil {
			return false, status.Error(codes.Internal, err.Error())
		} else if found {
			return st.Block, nil
		}
	}
	return false, nil
}

// NodeGetVolumeStats reports bytes and inodes of a mounted volume, or the
// size of a block volume.
func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id, p := req.GetVolumeId(), req.GetVolumePath()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "NodeGetVolumeStats: volume_id is required")
	case p == "":
		return nil, status.Error(codes.InvalidArgument, "NodeGetVolumeStats: volume_path is required")
	}
	v, err := d.nodeVolumeAt(ctx, id, p, req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(p) || hostexec.ValidatePath(p) != nil {
		return nil, status.Errorf(codes.NotFound, "NodeGetVolumeStats: volume %s is not at %q (not a clean absolute path)", id, p)
	}
	if ok, err := d.host.PathExists(ctx, p); err != nil {
		return nil, hostError(err, "NodeGetVolumeStats: checking %s", p)
	} else if !ok {
		return nil, status.Errorf(codes.NotFound, "NodeGetVolumeStats: volume path %s does not exist", p)
	}
	block, err := d.isBlockPath(ctx, id, p, req.GetStagingTargetPath(), nil)
	if err != nil {
		return nil, err
	}
	if block {
		size, err := d.host.DeviceSize(ctx, v.DevicePath)
		if err != nil {
			return nil, hostError(err, "NodeGetVolumeStats: sizing %s", v.DevicePath)
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}}}, nil
	}
	st, err := d.host.StatFS(ctx, p)
	if err != nil {
		return nil, hostError(err, "NodeGetVolumeStats: statfs %s", p)
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: st.TotalBytes, Available: st.AvailableBytes, Used: st.UsedBytes},
		{Unit: csi.VolumeUsage_INODES, Total: st.TotalInodes, Available: st.FreeInodes, Used: st.UsedInodes},
	}}, nil
}

// checkVolumeAndPath validates the volume ID and path of an unstage or
// unpublish request. known is false for an ID this driver never issues: such a
// volume cannot be staged or published here, so the idempotent answer is success.
func checkVolumeAndPath(rpc, id, pathField, path string) (known bool, err error) {
	switch {
	case id == "":
		return false, status.Errorf(codes.InvalidArgument, "%s: volume_id is required", rpc)
	case path == "":
		return false, status.Errorf(codes.InvalidArgument, "%s: %s is required", rpc, pathField)
	}
	if err := hostexec.ValidatePath(path); err != nil {
		return false, status.Errorf(codes.InvalidArgument, "%s: %s: %v", rpc, pathField, err)
	}
	return validID(id), nil
}
