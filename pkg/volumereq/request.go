package volumereq

import (
	"errors"
	"fmt"

	"github.com/open-local/open-local/core"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// ErrNotOpenLocal: the StorageClass belongs to another provisioner. Callers
// test it with errors.Is and leave such volumes to their own driver.
var ErrNotOpenLocal = errors.New("not an Open-Local storage class")

// Annotations that name a PVC's class or mark the default class.
const (
	// BetaStorageClassAnnotation is the class of PVCs written before storageClassName existed.
	BetaStorageClassAnnotation = "volume.beta.kubernetes.io/storage-class"
	// DefaultClassAnnotation (and its beta form) marks the cluster's default StorageClass.
	DefaultClassAnnotation     = "storageclass.kubernetes.io/is-default-class"
	BetaDefaultClassAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

// ClaimForPVC is a PVC's claim ID: "namespace/name".
func ClaimForPVC(namespace, name string) core.ClaimID {
	return core.ClaimID(namespaceOrDefault(namespace) + "/" + name)
}

// ClaimForInline is an inline volume's claim ID: "<pod UID>/<volume>" once the
// pod has a UID (every pod the API server returns does), otherwise
// "namespace/pod/volume". Neither form can equal a PVC's "namespace/name".
func ClaimForInline(pod *corev1.Pod, volume string) core.ClaimID {
	if pod.UID != "" {
		return core.ClaimID(string(pod.UID) + "/" + volume)
	}
	return core.ClaimID(namespaceOrDefault(pod.Namespace) + "/" + pod.Name + "/" + volume)
}

func namespaceOrDefault(ns string) string {
	if ns == "" {
		return corev1.NamespaceDefault
	}
	return ns
}

// StorageClassName is the class a PVC names, from spec.storageClassName or the
// beta annotation. explicit is false when it names none, in which case the
// default class applies; an explicit "" means no class at all.
func StorageClassName(pvc *corev1.PersistentVolumeClaim) (name string, explicit bool) {
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName, true
	}
	if v, ok := pvc.Annotations[BetaStorageClassAnnotation]; ok {
		return v, true
	}
	return "", false
}

// IsDefaultClass reports whether the StorageClass is marked as the default.
func IsDefaultClass(sc *storagev1.StorageClass) bool {
	return sc.Annotations[DefaultClassAnnotation] == "true" || sc.Annotations[BetaDefaultClassAnnotation] == "true"
}

// FromPVC is the volume a PVC of an Open-Local StorageClass asks for. The error
// names the PVC or the class and what is wrong; a class of another provisioner
// is ErrNotOpenLocal. A dataSource is not looked at: restores and clones need
// the source's node, which only the caller knows.
func FromPVC(pvc *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) (core.VolumeRequest, error) {
	if !IsOpenLocalDriver(sc.Provisioner) {
		return core.VolumeRequest{}, fmt.Errorf("storageclass %s: provisioner %q: %w", sc.Name, sc.Provisioner, ErrNotOpenLocal)
	}
	p, err := ParseStorageClassParams(sc.Parameters)
	if err != nil {
		return core.VolumeRequest{}, fmt.Errorf("storageclass %s: %w", sc.Name, err)
	}
	id := ClaimForPVC(pvc.Namespace, pvc.Name)
	for _, m := range pvc.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return core.VolumeRequest{}, fmt.Errorf("persistentvolumeclaim %s: access mode %s is not supported: a local volume is reachable from one node only (accepted: ReadWriteOnce, ReadWriteOncePod): %w", id, m, core.ErrInvalid)
		}
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock && p.VolumeType == VolumeTypeMountPoint {
		return core.VolumeRequest{}, fmt.Errorf("persistentvolumeclaim %s: volumeMode Block is not supported by volumeType MountPoint (use LVM or Device): %w", id, core.ErrInvalid)
	}
	q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return core.VolumeRequest{}, fmt.Errorf("persistentvolumeclaim %s: spec.resources.requests.storage is required: %w", id, core.ErrInvalid)
	}
	bytes, err := core.ParseSize(q.String())
	if err != nil {
		return core.VolumeRequest{}, fmt.Errorf("persistentvolumeclaim %s: spec.resources.requests.storage: %w", id, err)
	}
	return p.Request(id, bytes), nil
}

// FromInlineVolume is the volume a pod's CSI inline volume asks for. ok is
// false when vol is not an Open-Local CSI inline volume. Inline volumes are LVM
// only and need volumeAttributes.vgName (the node creates the LV there at
// publish); size defaults to 1Gi; the StorageClass parameters lvmType, bps and
// iops are accepted as attributes too.
func FromInlineVolume(pod *corev1.Pod, vol *corev1.Volume) (req core.VolumeRequest, ok bool, err error) {
	if vol.CSI == nil || !IsOpenLocalDriver(vol.CSI.Driver) {
		return core.VolumeRequest{}, false, nil
	}
	where := fmt.Sprintf("pod %s/%s: inline volume %s", namespaceOrDefault(pod.Namespace), pod.Name, vol.Name)
	params := make(map[string]string, len(vol.CSI.VolumeAttributes)+2)
	for k, v := range vol.CSI.VolumeAttributes {
		if k != AttrSize {
			params[k] = v
		}
	}
	if _, set := params[ParamVolumeType]; !set {
		params[ParamVolumeType] = string(VolumeTypeLVM)
	}
	if vol.CSI.FSType != nil && *vol.CSI.FSType != "" {
		params[ParamFSType] = *vol.CSI.FSType
	}
	p, err := ParseStorageClassParams(params)
	if err != nil {
		return core.VolumeRequest{}, true, fmt.Errorf("%s: volumeAttributes: %w", where, err)
	}
	if p.VolumeType != VolumeTypeLVM {
		return core.VolumeRequest{}, true, fmt.Errorf("%s: %w", where, &core.InvalidValueError{Field: "volumeAttributes." + ParamVolumeType, Value: string(p.VolumeType), Reason: "inline volumes are LVM only", Accepted: []string{string(VolumeTypeLVM)}})
	}
	if p.VGName == "" {
		return core.VolumeRequest{}, true, fmt.Errorf("%s: volumeAttributes.%s is required: %w", where, ParamVGName, core.ErrInvalid)
	}
	size, set := vol.CSI.VolumeAttributes[AttrSize]
	if !set {
		size = DefaultInlineSize
	}
	bytes, err := core.ParseSize(size)
	if err != nil {
		return core.VolumeRequest{}, true, fmt.Errorf("%s: volumeAttributes.%s: %w", where, AttrSize, err)
	}
	return p.Request(ClaimForInline(pod, vol.Name), bytes), true, nil
}
