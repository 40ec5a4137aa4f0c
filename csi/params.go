package csi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// Every key the driver reads from StorageClass parameters, VolumeSnapshotClass
// parameters, volume contexts and inline-volume attributes. The names are
// open-local's, so existing StorageClasses and PVs keep working.
const (
	ParamVolumeType = "volumeType"
	ParamVGName     = "vgName"
	ParamMediaType  = "mediaType"
	ParamLVMType    = "lvmType"
	ParamFSType     = "csi.storage.k8s.io/fstype"
	ParamBPS        = "bps"
	ParamIOPS       = "iops"
	// ParamSPDK is open-local's SPDK switch; only "false" is accepted.
	ParamSPDK = "spdk"
	// ParamReadOnly, on a StorageClass, asks for a volume restored from a
	// snapshot to use the snapshot itself, read-only, instead of a copy.
	ParamReadOnly = "csi.aliyun.com/readonly"

	// Added by external-provisioner --extra-create-metadata.
	ParamPVCName      = "csi.storage.k8s.io/pvc/name"
	ParamPVCNamespace = "csi.storage.k8s.io/pvc/namespace"
	ParamPVName       = "csi.storage.k8s.io/pv/name"
	// ParamSelectedNode is the PVC annotation open-local copies into parameters.
	ParamSelectedNode = "volume.kubernetes.io/selected-node"

	// Volume context keys CreateVolume adds.
	CtxDevice         = "Device"
	CtxMountPoint     = "MountPoint"
	CtxSnapshotID     = "csi.aliyun.com/snapshot-id"
	CtxSourceVolumeID = "csi.aliyun.com/source-volume-id"

	// Volume context keys kubelet adds (podInfoOnMount, inline volumes).
	CtxEphemeral      = "csi.storage.k8s.io/ephemeral"
	CtxPodUID         = "csi.storage.k8s.io/pod.uid"
	CtxPodName        = "csi.storage.k8s.io/pod.name"
	CtxPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	CtxServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	CtxSATokens       = "csi.storage.k8s.io/serviceAccount.tokens"
	// CtxProvisionerIdentity is added to every PV's attributes by external-provisioner.
	CtxProvisionerIdentity = "storage.kubernetes.io/csiProvisionerIdentity"

	// Inline (ephemeral) volume attributes.
	AttrSize   = "size"
	AttrFSType = "fsType"

	// VolumeSnapshotClass parameters.
	SnapParamReadOnly        = "csi.aliyun.com/readonly"
	SnapParamInitialSize     = "csi.aliyun.com/snapshot-initial-size"
	SnapParamThreshold       = "csi.aliyun.com/snapshot-expansion-threshold"
	SnapParamExpansionSize   = "csi.aliyun.com/snapshot-expansion-size"
	SnapParamSecretName      = "csi.storage.k8s.io/snapshotter-secret-name"
	SnapParamSecretNamespace = "csi.storage.k8s.io/snapshotter-secret-namespace"
	// Added by external-snapshotter --extra-create-metadata.
	SnapParamVSName      = "csi.storage.k8s.io/volumesnapshot/name"
	SnapParamVSNamespace = "csi.storage.k8s.io/volumesnapshot/namespace"
	SnapParamVSCName     = "csi.storage.k8s.io/volumesnapshotcontent/name"
)

// VolumeType is open-local's volumeType.
type VolumeType string

const (
	TypeLVM        VolumeType = "LVM"
	TypeDevice     VolumeType = "Device"
	TypeMountPoint VolumeType = "MountPoint"
)

// Defaults.
const (
	DefaultFSType             = "ext4"
	DefaultEphemeralSize      = core.GiB
	DefaultVolumeSize         = core.GiB
	DefaultSnapshotSize       = 4 * core.GiB
	DefaultSnapshotThreshold  = 50
	DefaultSnapshotExpandSize = core.GiB
)

var (
	acceptedVolumeTypes = []string{string(TypeLVM), string(TypeDevice), string(TypeMountPoint)}
	acceptedFSTypes     = hostexec.FSTypes
	acceptedLVMTypes    = []string{"linear", "striping"}
	acceptedBools       = []string{"true", "false"}
)

// invalidParam is the InvalidArgument every parameter error becomes: it names
// the kind of object, the key, the value and what would have been accepted.
func invalidParam(where, key, value, reason string, accepted []string) error {
	msg := fmt.Sprintf("invalid %s %s %q", where, key, value)
	if reason != "" {
		msg += ": " + reason
	}
	if len(accepted) > 0 {
		msg += " (accepted: " + strings.Join(accepted, ", ") + ")"
	}
	return status.Error(codes.InvalidArgument, msg)
}

func unknownParam(where, key string, known []string) error {
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	return status.Errorf(codes.InvalidArgument, "unknown %s %q (accepted keys: %s)", where, key, strings.Join(sorted, ", "))
}

// VolumeParams are the parsed StorageClass parameters of CreateVolume.
type VolumeParams struct {
	Type VolumeType
	// VG pins the volume group; "" lets the driver choose.
	VG string
	// Media restricts Device and MountPoint volumes; "" accepts any.
	Media   core.MediaType
	Striped bool
	// FSType is the StorageClass's filesystem, "" when unset.
	FSType string
	// BPS and IOPS are cgroup io.max limits applied on publish (0 = none).
	BPS, IOPS int64
	// ReadOnlyRestore makes a volume restored from a snapshot use the
	// snapshot itself, read-only.
	ReadOnlyRestore bool
	// SelectedNode is the scheduler's node when the parameters carry it.
	SelectedNode string
}

const whereSC = "StorageClass parameter"

// sidecarPrefix is the parameter namespace Kubernetes reserves for itself
// and the CSI sidecars (secrets, fstype, extra metadata). Such keys are
// accepted and, unless listed, ignored: the capacity controller passes
// StorageClass parameters to GetCapacity as they are, secrets included.
const sidecarPrefix = "csi.storage.k8s.io/"

var storageClassKeys = []string{
	ParamVolumeType, ParamVGName, ParamMediaType, ParamLVMType, ParamFSType, ParamBPS, ParamIOPS,
	ParamSPDK, ParamReadOnly, ParamPVCName, ParamPVCNamespace, ParamPVName, ParamSelectedNode,
}

// ParseVolumeParams validates StorageClass parameters. A missing volumeType
// means LVM (open-local requires the key; accepting its absence lets a bare
// StorageClass and csi-sanity work). Every error is InvalidArgument.
func ParseVolumeParams(params map[string]string) (VolumeParams, error) {
	p := VolumeParams{Type: TypeLVM}
	for _, k := range sortedKeys(params) {
		if !contains(storageClassKeys, k) && !strings.HasPrefix(k, sidecarPrefix) {
			return VolumeParams{}, unknownParam(whereSC, k, storageClassKeys)
		}
	}
	if v, ok := params[ParamVolumeType]; ok {
		switch VolumeType(v) {
		case TypeLVM, TypeDevice, TypeMountPoint:
			p.Type = VolumeType(v)
		case "Quota":
			return VolumeParams{}, invalidParam(whereSC, ParamVolumeType, v, "Quota volumes are not supported", acceptedVolumeTypes)
		default:
			return VolumeParams{}, invalidParam(whereSC, ParamVolumeType, v, "values are case-sensitive", acceptedVolumeTypes)
		}
	}
	if v, ok := params[ParamVGName]; ok {
		if p.Type != TypeLVM {
			return VolumeParams{}, invalidParam(whereSC, ParamVGName, v, "applies to volumeType LVM only", nil)
		}
		if err := hostexec.ValidateVGName(v); err != nil {
			return VolumeParams{}, invalidParam(whereSC, ParamVGName, v, "not a valid volume group name", nil)
		}
		p.VG = v
	}
	if v, ok := params[ParamMediaType]; ok {
		m, err := core.ParseMediaType(v)
		if err != nil {
			return VolumeParams{}, invalidParam(whereSC, ParamMediaType, v, "", []string{"ssd", "hdd"})
		}
		// For LVM the media is a property of the VG: open-local ignores it there, so do we.
		if p.Type != TypeLVM {
			p.Media = m
		}
	}
	if v, ok := params[ParamLVMType]; ok {
		if p.Type != TypeLVM {
			return VolumeParams{}, invalidParam(whereSC, ParamLVMType, v, "applies to volumeType LVM only", nil)
		}
		switch v {
		case "linear":
		case "striping":
			p.Striped = true
		default:
			return VolumeParams{}, invalidParam(whereSC, ParamLVMType, v, "", acceptedLVMTypes)
		}
	}
	if v, ok := params[ParamFSType]; ok && v != "" {
		if err := hostexec.ValidateFSType(v); err != nil {
			return VolumeParams{}, invalidParam(whereSC, ParamFSType, v, "", acceptedFSTypes)
		}
		p.FSType = v
	}
	var err error
	if p.BPS, p.IOPS, err = parseThrottle(whereSC, params); err != nil {
		return VolumeParams{}, err
	}
	if (p.BPS > 0 || p.IOPS > 0) && p.Type == TypeMountPoint {
		return VolumeParams{}, status.Errorf(codes.InvalidArgument, "invalid %s: %s and %s apply to LVM and Device volumes, not MountPoint", whereSC, ParamBPS, ParamIOPS)
	}
	if v, ok := params[ParamSPDK]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return VolumeParams{}, invalidParam(whereSC, ParamSPDK, v, "", acceptedBools)
		}
		if b {
			return VolumeParams{}, invalidParam(whereSC, ParamSPDK, v, "SPDK volumes are not supported", []string{"false"})
		}
	}
	if v, ok := params[ParamReadOnly]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return VolumeParams{}, invalidParam(whereSC, ParamReadOnly, v, "", acceptedBools)
		}
		if b && p.Type != TypeLVM {
			return VolumeParams{}, invalidParam(whereSC, ParamReadOnly, v, "read-only snapshot restores are LVM volumes", nil)
		}
		p.ReadOnlyRestore = b
	}
	p.SelectedNode = params[ParamSelectedNode]
	return p, nil
}

// parseThrottle reads bps (a quantity: 1Mi, 10M, 1048576) and iops (an integer
// or quantity such as 1k). Zero means no limit.
func parseThrottle(where string, m map[string]string) (bps, iops int64, err error) {
	if v, ok := m[ParamBPS]; ok {
		bps, err = core.ParseSize(v)
		if err != nil {
			return 0, 0, invalidParam(where, ParamBPS, v, "must be a non-negative quantity of bytes per second such as 10Mi or 1048576", nil)
		}
	}
	if v, ok := m[ParamIOPS]; ok {
		iops, err = core.ParseSize(v)
		if err != nil {
			return 0, 0, invalidParam(where, ParamIOPS, v, "must be a non-negative integer such as 1000 or 1k", nil)
		}
	}
	return bps, iops, nil
}

// VolumeContext is what the node reads back from a volume context. It is
// lenient about keys it does not know (a PV carries whatever the provisioner
// and open-local put there) and strict about the values it uses.
type VolumeContext struct {
	Type VolumeType
	// TypeKnown is false when the context had no volumeType (then the volume
	// is looked up in LVM and in the records).
	TypeKnown  bool
	VG         string
	Device     string
	MountPoint string
	FSType     string
	BPS, IOPS  int64
	ReadOnly   bool
	SnapshotID string
	Ephemeral  bool
	PodUID     string
	// Size and VG pin of an inline volume.
	EphemeralSize int64
}

const whereCtx = "volume context key"

// ParseVolumeContext parses a persistent volume's context.
func ParseVolumeContext(vc map[string]string) (VolumeContext, error) {
	c := VolumeContext{Type: TypeLVM}
	if isTrue(vc[CtxEphemeral]) {
		return VolumeContext{}, status.Error(codes.Internal, "ParseVolumeContext called for an inline volume")
	}
	if v, ok := vc[ParamVolumeType]; ok {
		switch VolumeType(v) {
		case TypeLVM, TypeDevice, TypeMountPoint:
			c.Type, c.TypeKnown = VolumeType(v), true
		default:
			return VolumeContext{}, invalidParam(whereCtx, ParamVolumeType, v, "", acceptedVolumeTypes)
		}
	}
	c.VG = vc[ParamVGName]
	c.Device = vc[CtxDevice]
	c.MountPoint = vc[CtxMountPoint]
	if v := vc[ParamFSType]; v != "" {
		if err := hostexec.ValidateFSType(v); err != nil {
			return VolumeContext{}, invalidParam(whereCtx, ParamFSType, v, "", acceptedFSTypes)
		}
		c.FSType = v
	}
	var err error
	if c.BPS, c.IOPS, err = parseThrottle(whereCtx, vc); err != nil {
		return VolumeContext{}, err
	}
	if v, ok := vc[ParamReadOnly]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return VolumeContext{}, invalidParam(whereCtx, ParamReadOnly, v, "", acceptedBools)
		}
		c.ReadOnly = b
	}
	c.SnapshotID = vc[CtxSnapshotID]
	c.PodUID = vc[CtxPodUID]
	return c, nil
}

const whereInline = "inline volume attribute"

var inlineKeys = []string{
	ParamVGName, AttrSize, AttrFSType, ParamBPS, ParamIOPS,
	CtxEphemeral, CtxPodUID, CtxPodName, CtxPodNamespace, CtxServiceAccount, CtxSATokens,
}

// IsEphemeral reports whether a volume context is a CSI inline volume's.
func IsEphemeral(vc map[string]string) bool { return isTrue(vc[CtxEphemeral]) }

// ParseEphemeral parses a CSI inline volume's attributes. The user wrote them
// in the pod spec, so unknown keys are errors. capFS is the fs_type of the
// volume capability (the csi volume source's fsType).
func ParseEphemeral(vc map[string]string, capFS string) (VolumeContext, error) {
	c := VolumeContext{Type: TypeLVM, TypeKnown: true, Ephemeral: true, EphemeralSize: DefaultEphemeralSize}
	for _, k := range sortedKeys(vc) {
		if !contains(inlineKeys, k) {
			return VolumeContext{}, unknownParam(whereInline, k, inlineKeys)
		}
	}
	if v, ok := vc[ParamVGName]; ok {
		if err := hostexec.ValidateVGName(v); err != nil {
			return VolumeContext{}, invalidParam(whereInline, ParamVGName, v, "not a valid volume group name", nil)
		}
		c.VG = v
	}
	if v, ok := vc[AttrSize]; ok {
		n, err := core.ParseSize(v)
		if err != nil || n == 0 {
			return VolumeContext{}, invalidParam(whereInline, AttrSize, v, "must be a positive quantity such as 1Gi", nil)
		}
		c.EphemeralSize = n
	}
	attrFS := vc[AttrFSType]
	if attrFS != "" {
		if err := hostexec.ValidateFSType(attrFS); err != nil {
			return VolumeContext{}, invalidParam(whereInline, AttrFSType, attrFS, "", acceptedFSTypes)
		}
	}
	switch {
	case attrFS != "" && capFS != "" && attrFS != capFS:
		return VolumeContext{}, status.Errorf(codes.InvalidArgument, "inline volume: attribute %s %q differs from the volume's fsType %q", AttrFSType, attrFS, capFS)
	case attrFS != "":
		c.FSType = attrFS
	default:
		c.FSType = capFS
	}
	var err error
	if c.BPS, c.IOPS, err = parseThrottle(whereInline, vc); err != nil {
		return VolumeContext{}, err
	}
	c.PodUID = vc[CtxPodUID]
	return c, nil
}

// SnapshotParams are the parsed VolumeSnapshotClass parameters.
type SnapshotParams struct {
	InitialBytes int64
	// ThresholdPercent and ExpansionBytes drive the agent's auto-extension of
	// the COW space; they are stored as LV tags.
	ThresholdPercent int
	ExpansionBytes   int64
}

const whereVSC = "VolumeSnapshotClass parameter"

var snapshotClassKeys = []string{
	SnapParamReadOnly, SnapParamInitialSize, SnapParamThreshold, SnapParamExpansionSize,
	SnapParamSecretName, SnapParamSecretNamespace, SnapParamVSName, SnapParamVSNamespace, SnapParamVSCName,
}

// ParseSnapshotParams validates VolumeSnapshotClass parameters. Only
// copy-on-write LVM snapshots exist here, so readonly must be true when set.
func ParseSnapshotParams(params map[string]string) (SnapshotParams, error) {
	p := SnapshotParams{InitialBytes: DefaultSnapshotSize, ThresholdPercent: DefaultSnapshotThreshold, ExpansionBytes: DefaultSnapshotExpandSize}
	for _, k := range sortedKeys(params) {
		if !contains(snapshotClassKeys, k) && !strings.HasPrefix(k, sidecarPrefix) {
			return SnapshotParams{}, unknownParam(whereVSC, k, snapshotClassKeys)
		}
	}
	if v, ok := params[SnapParamReadOnly]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return SnapshotParams{}, invalidParam(whereVSC, SnapParamReadOnly, v, "", acceptedBools)
		}
		if !b {
			return SnapshotParams{}, invalidParam(whereVSC, SnapParamReadOnly, v, "only copy-on-write LVM snapshots are supported (no restic/S3 backups)", []string{"true"})
		}
	}
	if v, ok := params[SnapParamInitialSize]; ok {
		n, err := core.ParseSize(v)
		if err != nil || n == 0 {
			return SnapshotParams{}, invalidParam(whereVSC, SnapParamInitialSize, v, "must be a positive quantity such as 4Gi", nil)
		}
		p.InitialBytes = n
	}
	if v, ok := params[SnapParamThreshold]; ok {
		_, pct, isPct, err := core.ParseSizeOrPercent(v)
		if err != nil || !isPct || pct <= 0 || pct > 100 || float64(pct) != float64(int(pct)) {
			return SnapshotParams{}, invalidParam(whereVSC, SnapParamThreshold, v, "must be a whole percentage from 1% to 100% such as 50%", nil)
		}
		p.ThresholdPercent = int(pct)
	}
	if v, ok := params[SnapParamExpansionSize]; ok {
		n, err := core.ParseSize(v)
		if err != nil || n == 0 {
			return SnapshotParams{}, invalidParam(whereVSC, SnapParamExpansionSize, v, "must be a positive quantity such as 1Gi", nil)
		}
		p.ExpansionBytes = n
	}
	return p, nil
}

// accessModes are the modes a local volume supports: one node, one or many
// readers, one writer.
var accessModes = []csi.VolumeCapability_AccessMode_Mode{
	csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
	csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
}

// checkCapability says why a capability is not supported for a volume type
// ("" when it is). It does not decide between InvalidArgument and a
// ValidateVolumeCapabilities message: callers do.
func checkCapability(c *csi.VolumeCapability, t VolumeType) string {
	if c == nil {
		return "volume capability is missing"
	}
	mode := c.GetAccessMode().GetMode()
	ok := false
	for _, m := range accessModes {
		if m == mode {
			ok = true
		}
	}
	if !ok {
		return fmt.Sprintf("access mode %s is not supported (supported: SINGLE_NODE_WRITER, SINGLE_NODE_SINGLE_WRITER, SINGLE_NODE_READER_ONLY)", mode)
	}
	switch at := c.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		if t == TypeMountPoint {
			return "block access is not supported for MountPoint volumes"
		}
	case *csi.VolumeCapability_Mount:
		if fs := at.Mount.GetFsType(); fs != "" {
			if err := hostexec.ValidateFSType(fs); err != nil {
				return fmt.Sprintf("filesystem type %q is not supported (supported: %s)", fs, strings.Join(acceptedFSTypes, ", "))
			}
		}
		if err := hostexec.ValidateMountOptions(at.Mount.GetMountFlags()); err != nil {
			return err.Error()
		}
		if at.Mount.GetVolumeMountGroup() != "" {
			return "volume_mount_group is not supported"
		}
	default:
		return "volume capability needs an access type (mount or block)"
	}
	return ""
}

func isBlock(c *csi.VolumeCapability) bool { return c.GetBlock() != nil }

func isTrue(s string) bool { b, _ := strconv.ParseBool(s); return b }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
