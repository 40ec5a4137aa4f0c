package csi

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/lvmreport"
)

// CSI 1.14 reports volume conditions as VolumeHealth (the older
// VolumeCondition fields were removed). The health of an LVM volume comes
// from its lv_attr; a Device or MountPoint volume is unhealthy when its
// device or mount has gone.

type healthEntries []*csi.VolumeHealth_VolumeHealthEntry

func (h *healthEntries) add(s csi.VolumeHealthErrorType, reason, msg string) {
	for _, e := range *h {
		if e.Status == s && e.Reason == reason {
			return
		}
	}
	*h = append(*h, &csi.VolumeHealth_VolumeHealthEntry{Status: s, Reason: reason, Message: msg})
}

// lvHealth maps lv_attr to health entries.
func lvHealth(attr string) healthEntries {
	var h healthEntries
	a, err := lvmreport.ParseLVAttr(attr)
	if err != nil {
		h.add(csi.VolumeHealthErrorType_DEGRADED, "UnreadableLVAttr", err.Error())
		return h
	}
	c := a.Condition()
	switch a.State {
	case 'I', 'S':
		h.add(csi.VolumeHealthErrorType_DATA_LOSS, "SnapshotInvalid", c.Message)
	case 's', 'M':
		h.add(csi.VolumeHealthErrorType_INACCESSIBLE, "Suspended", c.Message)
	case 'd', 'i', 'm', 'c', 'C':
		h.add(csi.VolumeHealthErrorType_DEGRADED, "DeviceMapperState", c.Message)
	}
	switch a.Health {
	case 'p':
		h.add(csi.VolumeHealthErrorType_INACCESSIBLE, "MissingPhysicalVolume", c.Message)
	case 'F':
		h.add(csi.VolumeHealthErrorType_INACCESSIBLE, "Failed", c.Message)
	case 'r', 'm', 'D', 'M', 'E':
		h.add(csi.VolumeHealthErrorType_DEGRADED, "LVHealth", c.Message)
	}
	if len(h) == 0 && !a.IsActive() && !a.StateUnknown() {
		h.add(csi.VolumeHealthErrorType_INACCESSIBLE, "NotActive", c.Message)
	}
	return h
}

// volumeHealth is a volume's health as the host shows it now.
func (d *Driver) volumeHealth(ctx context.Context, v volume) (healthEntries, error) {
	switch v.Type {
	case TypeLVM:
		return lvHealth(v.Attr), nil
	case TypeDevice:
		devs, err := d.host.ListBlockDevices(ctx)
		if err != nil {
			return nil, hostError(err, "listing block devices")
		}
		for _, dev := range devs {
			if dev.Name == v.DevicePath {
				return nil, nil
			}
		}
		var h healthEntries
		h.add(csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceMissing", "device "+v.DevicePath+" is not present on the node")
		return h, nil
	default:
		mounts, err := d.host.ListMounts(ctx)
		if err != nil {
			return nil, hostError(err, "listing mounts")
		}
		for _, m := range mounts {
			if m.Target == v.MountPath {
				return nil, nil
			}
		}
		var h healthEntries
		h.add(csi.VolumeHealthErrorType_INACCESSIBLE, "MountPointMissing", v.MountPath+" is not mounted on the node")
		return h, nil
	}
}

func (d *Driver) controllerVolume(ctx context.Context, method, id string) (volume, error) {
	if id == "" {
		return volume{}, status.Errorf(codes.InvalidArgument, "%s: volume_id is required", method)
	}
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return volume{}, hostError(err, "%s: reading the LVM report", method)
	}
	v, found, err := d.lookupVolume(ctx, state, id)
	if err != nil {
		return volume{}, err
	}
	if !found || v.Ephemeral {
		return volume{}, status.Errorf(codes.NotFound, "%s: volume %q not found on node %s", method, id, d.cfg.NodeID)
	}
	return v, nil
}

// ControllerGetVolumeHealth reports one volume's health.
func (d *Driver) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	v, err := d.controllerVolume(ctx, "ControllerGetVolumeHealth", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	h, err := d.volumeHealth(ctx, v)
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{VolumeId: v.ID, HealthStatuses: h}}, nil
}

// ControllerListVolumeHealth pages through the volumes with a problem.
func (d *Driver) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "ControllerListVolumeHealth: max_entries must not be negative")
	}
	vols, _, err := d.listVolumes(ctx)
	if err != nil {
		return nil, err
	}
	var bad []*csi.VolumeHealth
	for _, v := range vols {
		h, err := d.volumeHealth(ctx, v)
		if err != nil {
			return nil, err
		}
		if len(h) > 0 {
			bad = append(bad, &csi.VolumeHealth{VolumeId: v.ID, HealthStatuses: h})
		}
	}
	start, err := pageToken(req.GetStartingToken(), len(bad))
	if err != nil {
		return nil, err
	}
	end, next := page(start, int(req.GetMaxEntries()), len(bad))
	return &csi.ControllerListVolumeHealthResponse{Entries: bad[start:end], NextToken: next}, nil
}

// NodeGetVolumeHealth reports a volume's health from the node: the LV or
// device, and whether it is still mounted where it was staged or published.
func (d *Driver) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "NodeGetVolumeHealth: volume_id is required")
	}
	v, err := d.nodeVolumeAt(ctx, id, req.GetVolumePublishPath(), req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	h, err := d.volumeHealth(ctx, v)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{req.GetStagingTargetPath(), req.GetVolumePublishPath()} {
		if p == "" || hostexec.ValidatePath(p) != nil {
			continue
		}
		mounted, err := d.host.IsMountPoint(ctx, p)
		if errors.Is(err, hostexec.ErrNotFound) || (err == nil && !mounted) {
			// A staged block volume has no mount of its own.
			if p == req.GetStagingTargetPath() && d.stagedBlock(ctx, id, p) {
				continue
			}
			h.add(csi.VolumeHealthErrorType_INACCESSIBLE, "NotMounted", "volume is not mounted at "+p)
		} else if err != nil {
			return nil, hostError(err, "NodeGetVolumeHealth: checking %s", p)
		}
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{VolumeId: id, HealthStatuses: h}}, nil
}

func (d *Driver) stagedBlock(ctx context.Context, id, staging string) bool {
	var st StageRecord
	found, err := d.rec.read(ctx, d.rec.stagePath(id, staging), &st)
	return err == nil && found && st.Block
}

// NodeGetStorageHealth reports LVM as unreachable when it cannot be queried,
// and a VG as degraded when one of the driver's LVs in it lost a PV.
func (d *Driver) NodeGetStorageHealth(ctx context.Context, _ *csi.NodeGetStorageHealthRequest) (*csi.NodeGetStorageHealthResponse, error) {
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return &csi.NodeGetStorageHealthResponse{BackendHealth: []*csi.NodeGetStorageHealthResponse_StorageBackendHealth{{
			Status: csi.StorageHealthErrorType_STORAGE_UNREACHABLE, Reason: "LVMUnavailable", Message: err.Error(),
		}}}, nil
	}
	var out []*csi.NodeGetStorageHealthResponse_StorageBackendHealth
	for _, vg := range state.VGs {
		if !d.cap.filters.vgs.Match(vg.Name) {
			continue
		}
		if partial := partialLVs(vg); len(partial) > 0 {
			out = append(out, &csi.NodeGetStorageHealthResponse_StorageBackendHealth{
				Status: csi.StorageHealthErrorType_STORAGE_DEGRADED, Reason: "MissingPhysicalVolume",
				Message: "volume group " + vg.Name + " has LVs with a missing physical volume",
			})
		}
	}
	return &csi.NodeGetStorageHealthResponse{BackendHealth: out}, nil
}

func partialLVs(vg core.VolumeGroup) []string {
	var out []string
	for _, lv := range vg.LVs {
		if a, err := lvmreport.ParseLVAttr(lv.Attr); err == nil && a.Health == 'p' {
			out = append(out, lv.Name)
		}
	}
	return out
}
