// Package volumereq turns what Kubernetes objects ask for (a StorageClass's
// parameters with a PersistentVolumeClaim, or a pod's CSI inline volume) into
// core.VolumeRequest. Every component that places volumes (scheduler extender,
// framework plugin, simulator) decodes requests here, so that they agree on
// what a parameter means and reject the same mistakes with the same message.
package volumereq

import (
	"sort"
	"strings"

	"github.com/open-local/open-local/core"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Driver names. LegacyDriverName is the name older open-local releases used;
// StorageClasses and inline volumes naming it are still Open-Local's.
const (
	DriverName       = "local.csi.aliyun.com"
	LegacyDriverName = "yodaplugin.csi.alibabacloud.com"
)

// IsOpenLocalDriver reports whether a provisioner or CSI driver name is Open-Local's.
func IsOpenLocalDriver(name string) bool {
	return name == DriverName || name == LegacyDriverName
}

// StorageClass parameter keys (and inline volumeAttributes keys) as open-local defines them.
const (
	ParamVolumeType = "volumeType"
	ParamVGName     = "vgName"
	ParamMediaType  = "mediaType"
	ParamLVMType    = "lvmType"
	ParamFSType     = "csi.storage.k8s.io/fstype"
	ParamBPS        = "bps"
	ParamIOPS       = "iops"
	// AttrSize is the size of a CSI inline volume (volumeAttributes only).
	AttrSize = "size"
	// DefaultInlineSize is an inline volume's size when AttrSize is absent.
	DefaultInlineSize = "1Gi"
)

// VolumeType is a StorageClass's volumeType. The values are case-sensitive, as in open-local.
type VolumeType string

const (
	VolumeTypeLVM        VolumeType = "LVM"
	VolumeTypeDevice     VolumeType = "Device"
	VolumeTypeMountPoint VolumeType = "MountPoint"
)

// LVMType is how an LV is laid out on its VG's PVs.
type LVMType string

const (
	LVMLinear   LVMType = "linear"
	LVMStriping LVMType = "striping"
)

// DefaultFSType is the filesystem when a StorageClass names none.
const DefaultFSType = "ext4"

var (
	volumeTypes = []string{string(VolumeTypeLVM), string(VolumeTypeDevice), string(VolumeTypeMountPoint)}
	lvmTypes    = []string{string(LVMLinear), string(LVMStriping)}
	fsTypes     = []string{"ext4", "ext3", "xfs"}
	mediaTypes  = []string{string(core.MediaSSD), string(core.MediaHDD)}
)

// Params are a StorageClass's parameters, validated.
type Params struct {
	VolumeType VolumeType
	// VGName pins the volume group of an LVM volume ("" lets placement choose).
	VGName string
	// Media is the medium of a Device or MountPoint volume (required for them).
	Media   core.MediaType
	LVMType LVMType
	FSType  string
	// BPS and IOPS are the throttling limits of an LVM volume (0 = none).
	BPS  int64
	IOPS int64
}

// ParseStorageClassParams validates parameters. Every invalid parameter is
// reported in one error that names it, the value and the accepted values.
// Keys this package does not know (e.g. the provisioner's secret parameters)
// are left alone.
func ParseStorageClassParams(params map[string]string) (Params, error) {
	p := Params{LVMType: LVMLinear, FSType: DefaultFSType}
	var errs []error
	vt, ok := params[ParamVolumeType]
	switch {
	case !ok || vt == "":
		// As the CSI driver does: a class without volumeType is LVM, so a
		// bare StorageClass is scheduled the way it is provisioned.
		p.VolumeType = VolumeTypeLVM
	case contains(volumeTypes, vt):
		p.VolumeType = VolumeType(vt)
	default:
		errs = append(errs, &core.InvalidValueError{Field: ParamVolumeType, Value: vt, Accepted: volumeTypes})
	}
	p.VGName = params[ParamVGName]
	if m, ok := params[ParamMediaType]; ok {
		media, err := core.ParseMediaType(m)
		if err != nil {
			errs = append(errs, err)
		}
		p.Media = media
	}
	// Without mediaType a Device or MountPoint volume takes either medium,
	// as the CSI driver does (open-local refused such pods).
	if t, ok := params[ParamLVMType]; ok {
		if contains(lvmTypes, t) {
			p.LVMType = LVMType(t)
		} else {
			errs = append(errs, &core.InvalidValueError{Field: ParamLVMType, Value: t, Accepted: lvmTypes})
		}
	}
	if fs, ok := params[ParamFSType]; ok {
		if contains(fsTypes, fs) {
			p.FSType = fs
		} else {
			errs = append(errs, &core.InvalidValueError{Field: ParamFSType, Value: fs, Accepted: fsTypes})
		}
	}
	for _, q := range []struct {
		key string
		dst *int64
	}{{ParamBPS, &p.BPS}, {ParamIOPS, &p.IOPS}} {
		s, ok := params[q.key]
		if !ok {
			continue
		}
		v, err := parseLimit(q.key, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*q.dst = v
	}
	if len(errs) > 0 {
		return Params{}, joinErrors(errs)
	}
	return p, nil
}

// parseLimit reads a throttling limit: a non-negative whole quantity ("1Mi", "2000", "3k").
func parseLimit(key, s string) (int64, error) {
	q, err := resource.ParseQuantity(strings.TrimSpace(s))
	if err != nil {
		return 0, &core.InvalidValueError{Field: key, Value: s, Reason: "not a quantity such as 1000, 10Mi or 3k"}
	}
	v, ok := q.AsInt64()
	if !ok || v < 0 {
		return 0, &core.InvalidValueError{Field: key, Value: s, Reason: "must be a whole number, at least 0"}
	}
	return v, nil
}

// Request is the volume these parameters describe for one claim of bytes.
func (p Params) Request(claim core.ClaimID, bytes int64) core.VolumeRequest {
	r := core.VolumeRequest{Claim: claim, Bytes: bytes}
	switch p.VolumeType {
	case VolumeTypeLVM:
		r.Kind = core.VolumeLVM
		r.VG = p.VGName
		r.Striped = p.LVMType == LVMStriping
	case VolumeTypeDevice:
		r.Kind = core.VolumeDevice
		r.Media = p.Media
	case VolumeTypeMountPoint:
		r.Kind = core.VolumeMountPoint
		r.Media = p.Media
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// paramErrors keeps every parameter error on one line, sorted, so that a
// message is stable whatever the map order was.
type paramErrors []error

func (m paramErrors) Error() string {
	msgs := make([]string, len(m))
	for i, e := range m {
		msgs[i] = e.Error()
	}
	sort.Strings(msgs)
	return strings.Join(msgs, "; ")
}

func (m paramErrors) Unwrap() []error { return m }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return paramErrors(errs)
}
