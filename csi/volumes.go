package csi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// volume is a volume as the host shows it, whatever its type.
type volume struct {
	ID   string
	Type VolumeType
	// VG and LV back an LVM volume: LV is the ID, or the snapshot itself for
	// a read-only restore.
	VG, LV string
	// DevicePath is the block device (LV path or whole device).
	DevicePath string
	// MountPath is a MountPoint volume's directory.
	MountPath string
	SizeBytes int64
	Stripes   int
	Media     core.MediaType
	// ReadOnly marks a read-only snapshot restore.
	ReadOnly   bool
	SnapshotID string
	// SourceKind/SourceID are the content source ("snapshot" or "volume").
	SourceKind, SourceID string
	Attr                 string
	Ephemeral            bool
	PendingCopy          bool
	// FromContext is set when only the volume context described the volume
	// (a volume open-local made, without a record).
	FromContext bool
	Record      *VolumeRecord
}

// findLV returns an owned LV of that name in any VG.
func findLV(state core.LVMState, name string) (*core.VolumeGroup, *core.LogicalVolume) {
	for i := range state.VGs {
		vg := &state.VGs[i]
		if lv, ok := vg.FindLV(name); ok && isOwned(*lv) {
			return vg, lv
		}
	}
	return nil, nil
}

// findROSnapshot returns the snapshot a read-only restored volume uses.
func findROSnapshot(state core.LVMState, volumeID string) (*core.VolumeGroup, *core.LogicalVolume) {
	tag := tagROVolumePrefix + volumeID
	for i := range state.VGs {
		vg := &state.VGs[i]
		for j := range vg.LVs {
			lv := &vg.LVs[j]
			if lv.IsSnapshot() && isOwned(*lv) && hasTag(lv.Tags, tag) {
				return vg, lv
			}
		}
	}
	return nil, nil
}

// snapshotsOf lists the owned snapshots of an LV.
func snapshotsOf(vg *core.VolumeGroup, origin string) []string {
	var out []string
	for _, lv := range vg.LVs {
		if lv.Origin == origin && isOwned(lv) {
			out = append(out, lv.Name)
		}
	}
	sort.Strings(out)
	return out
}

func (d *Driver) volumeFromLV(vg *core.VolumeGroup, lv *core.LogicalVolume) volume {
	v := volume{
		ID: lv.Name, Type: TypeLVM, VG: vg.Name, LV: lv.Name,
		DevicePath: d.host.LVDevicePath(vg.Name, lv.Name), SizeBytes: lv.SizeBytes,
		Stripes: lv.Stripes, Attr: lv.Attr,
		Ephemeral:   hasTag(lv.Tags, tagKindEphemeral),
		PendingCopy: hasTag(lv.Tags, tagPendingCopy),
	}
	if src, ok := tagValue(lv.Tags, tagSourcePrefix); ok {
		if kind, id, ok := strings.Cut(src, ":"); ok {
			v.SourceKind, v.SourceID = kind, id
		}
	}
	return v
}

func (d *Driver) volumeFromROSnapshot(id string, vg *core.VolumeGroup, snap *core.LogicalVolume) volume {
	size := snap.SizeBytes
	if o, ok := vg.FindLV(snap.Origin); ok {
		size = o.SizeBytes
	}
	return volume{
		ID: id, Type: TypeLVM, VG: vg.Name, LV: snap.Name,
		DevicePath: d.host.LVDevicePath(vg.Name, snap.Name), SizeBytes: size,
		Stripes: 1, Attr: snap.Attr, ReadOnly: true, SnapshotID: snap.Name,
		SourceKind: "snapshot", SourceID: snap.Name,
	}
}

func volumeFromRecord(r VolumeRecord) volume {
	v := volume{ID: r.ID, Type: r.Type, SizeBytes: r.SizeBytes, Media: r.Media, Record: &r}
	switch r.Type {
	case TypeDevice:
		v.DevicePath = r.Device
	case TypeMountPoint:
		v.MountPath, v.DevicePath = r.MountPath, r.Device
	}
	return v
}

// lookupVolume finds a volume among the LVs of state and the records. The
// LV is looked at first: LVM volumes are the common case and need no file read.
func (d *Driver) lookupVolume(ctx context.Context, state core.LVMState, id string) (volume, bool, error) {
	if !validID(id) {
		return volume{}, false, nil
	}
	if vg, lv := findLV(state, id); lv != nil && !lv.IsSnapshot() {
		return d.volumeFromLV(vg, lv), true, nil
	}
	if vg, snap := findROSnapshot(state, id); snap != nil {
		return d.volumeFromROSnapshot(id, vg, snap), true, nil
	}
	r, found, err := d.rec.readVolume(ctx, id)
	if err != nil {
		return volume{}, false, status.Error(codes.Internal, err.Error())
	}
	if found {
		return volumeFromRecord(r), true, nil
	}
	return volume{}, false, nil
}

// nodeVolume finds the volume a node RPC is about. The volume context, when
// present, says where to look, and lets volumes open-local made (no record,
// no owner tag) be staged: their context names the device or mount point.
func (d *Driver) nodeVolume(ctx context.Context, id string, vc VolumeContext) (volume, error) {
	if !validID(id) {
		return volume{}, status.Errorf(codes.NotFound, "volume %q not found: not a volume ID of this driver", id)
	}
	if vc.TypeKnown && vc.Type != TypeLVM {
		r, found, err := d.rec.readVolume(ctx, id)
		if err != nil {
			return volume{}, status.Error(codes.Internal, err.Error())
		}
		if found {
			return volumeFromRecord(r), nil
		}
		switch {
		case vc.Type == TypeDevice && vc.Device != "":
			if err := hostexec.ValidateDevicePath(vc.Device); err != nil {
				return volume{}, status.Errorf(codes.InvalidArgument, "volume context %s: %v", CtxDevice, err)
			}
			return volume{ID: id, Type: TypeDevice, DevicePath: vc.Device, FromContext: true}, nil
		case vc.Type == TypeMountPoint && vc.MountPoint != "":
			if err := hostexec.ValidatePath(vc.MountPoint); err != nil {
				return volume{}, status.Errorf(codes.InvalidArgument, "volume context %s: %v", CtxMountPoint, err)
			}
			return volume{ID: id, Type: TypeMountPoint, MountPath: vc.MountPoint, FromContext: true}, nil
		}
		return volume{}, status.Errorf(codes.NotFound, "%s volume %q not found on node %s", vc.Type, id, d.cfg.NodeID)
	}
	state, err := d.host.LVMReport(ctx)
	if err != nil {
		return volume{}, hostError(err, "reading the LVM report")
	}
	return d.nodeVolumeIn(ctx, id, vc, state)
}

// nodeVolumeIn is nodeVolume's LVM and record lookup in a report just read.
func (d *Driver) nodeVolumeIn(ctx context.Context, id string, vc VolumeContext, state core.LVMState) (volume, error) {
	v, found, err := d.lookupVolume(ctx, state, id)
	if err != nil {
		return volume{}, err
	}
	if found {
		return v, nil
	}
	// open-local's read-only restores use the snapshot LV named in the context.
	if vc.ReadOnly && vc.SnapshotID != "" {
		if vg, snap := findLVAny(state, vc.VG, vc.SnapshotID); snap != nil && snap.IsSnapshot() {
			v := d.volumeFromROSnapshot(id, vg, snap)
			v.FromContext = true
			return v, nil
		}
	}
	return volume{}, status.Errorf(codes.NotFound, "volume %q not found on node %s", id, d.cfg.NodeID)
}

// provisioningVolume is nodeVolume for NodeStageVolume and
// NodePublishVolume: an LVM volume may be found in the cached LVM report
// (lvmcache.go), as these calls follow CreateVolume within seconds. The cache
// is trusted only for what the host confirms cheaply, that the volume's
// device exists; anything else (not in the cache, no device, a restore still
// copying, a read-only restore) takes nodeVolume's fresh report.
func (d *Driver) provisioningVolume(ctx context.Context, id string, vc VolumeContext) (volume, error) {
	if !validID(id) || (vc.TypeKnown && vc.Type != TypeLVM) || vc.ReadOnly {
		return d.nodeVolume(ctx, id, vc)
	}
	state, cached, err := d.lvm.recent(ctx)
	if err != nil {
		return volume{}, hostError(err, "reading the LVM report")
	}
	if !cached {
		return d.nodeVolumeIn(ctx, id, vc, state)
	}
	vg, lv := findLV(state, id)
	if lv == nil || lv.IsSnapshot() {
		return d.nodeVolume(ctx, id, vc)
	}
	v := d.volumeFromLV(vg, lv)
	if v.PendingCopy {
		return d.nodeVolume(ctx, id, vc)
	}
	if _, _, err := d.host.DeviceNumber(ctx, v.DevicePath); err != nil {
		klog.FromContext(ctx).V(2).Info("The cached LVM report names a device the host does not show; reading it again", "volume", id, "device", v.DevicePath, "err", err)
		d.lvm.invalidate()
		return d.nodeVolume(ctx, id, vc)
	}
	return v, nil
}

// nodeVolumeAt is nodeVolume for RPCs without a volume context (stats,
// expansion, health): a volume the host does not know by its ID alone (an
// open-local Device or MountPoint PV) is found through the stage or publish
// record of one of the paths the CO names.
func (d *Driver) nodeVolumeAt(ctx context.Context, id string, paths ...string) (volume, error) {
	v, err := d.nodeVolume(ctx, id, VolumeContext{})
	if status.Code(err) != codes.NotFound || !validID(id) {
		return v, err
	}
	for _, p := range paths {
		if p == "" || hostexec.ValidatePath(p) != nil {
			continue
		}
		var pub PublishRecord
		if found, rerr := d.rec.read(ctx, d.rec.publishPath(id, p), &pub); rerr == nil && found && pub.Type != "" && pub.Type != TypeLVM {
			return recordedVolume(id, pub.Type, pub.Device), nil
		}
		var st StageRecord
		if found, rerr := d.rec.read(ctx, d.rec.stagePath(id, p), &st); rerr == nil && found && st.Type != "" && st.Type != TypeLVM {
			return recordedVolume(id, st.Type, st.Device), nil
		}
	}
	return v, err
}

func recordedVolume(id string, t VolumeType, device string) volume {
	v := volume{ID: id, Type: t, FromContext: true}
	if t == TypeMountPoint {
		v.MountPath = device
	} else {
		v.DevicePath = device
	}
	return v
}

// findLVAny finds an LV by name, owned or not, in vg ("" = any VG).
func findLVAny(state core.LVMState, vgName, name string) (*core.VolumeGroup, *core.LogicalVolume) {
	for i := range state.VGs {
		vg := &state.VGs[i]
		if vgName != "" && vg.Name != vgName {
			continue
		}
		if lv, ok := vg.FindLV(name); ok {
			return vg, lv
		}
	}
	return nil, nil
}

// mapperPath is the /dev/mapper name of an LV: the kernel's mount table shows
// LVs under it, with dashes in VG and LV names doubled.
func mapperPath(vg, lv string) string {
	return "/dev/mapper/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

// sameSource reports whether a mount source is the volume's device.
func (v volume) sameSource(source string) bool {
	if source == v.DevicePath {
		return true
	}
	return v.VG != "" && source == mapperPath(v.VG, v.LV)
}

// hostError turns a Host error into a gRPC status. Errors a CO can act on
// keep their code; anything else is Internal with the tool's message.
func hostError(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...) + ": " + err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, hostexec.ErrInsufficientSpace):
		return status.Error(codes.ResourceExhausted, msg)
	case errors.Is(err, hostexec.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, hostexec.ErrInUse), errors.Is(err, hostexec.ErrUnsupported):
		return status.Error(codes.FailedPrecondition, msg)
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	return status.Error(codes.Internal, msg)
}

// createdTime reads a snapshot's creation time from its tag.
func createdTime(tags []string) *timestamppb.Timestamp {
	if v, ok := tagValue(tags, tagCreatedPrefix); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return timestamppb.New(time.Unix(0, n))
		}
	}
	// A snapshot made by open-local has no tag; any fixed, non-zero time
	// keeps repeated answers equal.
	return timestamppb.New(time.Unix(1, 0))
}

// snapshotMessage renders an owned snapshot LV.
func snapshotMessage(vg *core.VolumeGroup, lv *core.LogicalVolume) *csi.Snapshot {
	size := lv.SizeBytes
	if o, ok := vg.FindLV(lv.Origin); ok {
		size = o.SizeBytes
	}
	source := lv.Origin
	if s, ok := tagValue(lv.Tags, tagSnapSourcePrefix); ok && s != "" {
		source = s
	}
	return &csi.Snapshot{
		SizeBytes:      size,
		SnapshotId:     lv.Name,
		SourceVolumeId: source,
		CreationTime:   createdTime(lv.Tags),
		ReadyToUse:     true,
	}
}

// pageToken parses a list token: the index of the first entry to return.
func pageToken(token string, n int) (int, error) {
	if token == "" {
		return 0, nil
	}
	i, err := strconv.Atoi(token)
	if err != nil || i < 0 || i > n {
		return 0, status.Errorf(codes.Aborted, "starting_token %q is not a token this driver returned (or the list shrank below it); list again from the start", token)
	}
	return i, nil
}

// page cuts [start, start+max) and returns the next token ("" at the end).
func page(start, max, n int) (end int, next string) {
	end = n
	if max > 0 && start+max < n {
		end = start + max
		next = strconv.Itoa(end)
	}
	return end, next
}
