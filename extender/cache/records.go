package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/volumereq"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Keys Open-Local and Kubernetes write on the objects the cache reads.
const (
	// AnnSelectedNode is the node kube-scheduler chose for a PVC of a
	// WaitForFirstConsumer class; external-provisioner provisions there.
	AnnSelectedNode = "volume.kubernetes.io/selected-node"
	// LabelHostname is the topology key of Open-Local's PVs.
	LabelHostname = "kubernetes.io/hostname"

	// PV volumeAttributes CreateVolume sets (open-local's names).
	attrVolumeType = volumereq.ParamVolumeType
	attrVGName     = volumereq.ParamVGName
	attrLVMType    = volumereq.ParamLVMType
	attrDevice     = "Device"
	attrMountPoint = "MountPoint"
	// ParamReadOnly on a StorageClass (and in a PV's attributes) makes a
	// volume restored from a snapshot use the snapshot itself, read-only: it
	// takes no capacity of its own.
	ParamReadOnly = "csi.aliyun.com/readonly"
	// annPVAllocated is what open-local's scheduling-framework plugin wrote on
	// PVs: {"vgName":..,"deviceName":..,"volumeType":..}. Read as a fallback.
	annPVAllocated = "csi.aliyun.com/pv-allocated"
)

// pvRecord is what the cache keeps of an Open-Local PV.
type pvRecord struct {
	name     string
	hostname string // from nodeAffinity kubernetes.io/hostname (or the selected-node attribute)
	handle   string
	// claimRef
	claim    core.ClaimID
	claimUID types.UID
	// charge is what the volume takes (ID left empty); noCharge for a
	// read-only snapshot restore, which lives in the snapshot's LV.
	charge   core.ClaimCharge
	striped  bool
	noCharge bool
	// invalid says why the PV cannot be charged ("" when it can).
	invalid string
}

// parsePV reads an Open-Local PV; nil when the PV is another driver's.
func parsePV(pv *corev1.PersistentVolume) *pvRecord {
	if pv.Spec.CSI == nil || !volumereq.IsOpenLocalDriver(pv.Spec.CSI.Driver) {
		return nil
	}
	attrs := pv.Spec.CSI.VolumeAttributes
	r := &pvRecord{name: pv.Name, handle: pv.Spec.CSI.VolumeHandle, hostname: hostnameOf(pv)}
	if r.hostname == "" {
		r.hostname = attrs[AnnSelectedNode]
	}
	if ref := pv.Spec.ClaimRef; ref != nil && ref.Name != "" {
		r.claim = volumereq.ClaimForPVC(ref.Namespace, ref.Name)
		r.claimUID = ref.UID
	}
	if q, ok := pv.Spec.Capacity[corev1.ResourceStorage]; ok {
		b, err := core.ParseSize(q.String())
		if err != nil {
			r.invalid = fmt.Sprintf("spec.capacity.storage: %v", err)
		}
		r.charge.Bytes = b
	}
	vt, vg, dev := attrs[attrVolumeType], attrs[attrVGName], ""
	if alloc, ok := pv.Annotations[annPVAllocated]; ok && (vt == "" || (vt == string(volumereq.VolumeTypeLVM) && vg == "")) {
		var a struct {
			VGName     string `json:"vgName"`
			DeviceName string `json:"deviceName"`
			VolumeType string `json:"volumeType"`
		}
		if json.Unmarshal([]byte(alloc), &a) == nil {
			vt, vg, dev = firstSet(vt, a.VolumeType), firstSet(vg, a.VGName), a.DeviceName
		}
	}
	switch volumereq.VolumeType(firstSet(vt, string(volumereq.VolumeTypeLVM))) {
	case volumereq.VolumeTypeLVM:
		r.charge.Kind, r.charge.VG = core.KindLVM, vg
		r.striped = attrs[attrLVMType] == string(volumereq.LVMStriping)
		r.noCharge = attrs[ParamReadOnly] == "true"
		if vg == "" && !r.noCharge && r.invalid == "" {
			r.invalid = "volumeAttributes.vgName is missing"
		}
	case volumereq.VolumeTypeDevice:
		r.charge.Kind, r.charge.Device = core.KindDevice, firstSet(attrs[attrDevice], dev)
	case volumereq.VolumeTypeMountPoint:
		r.charge.Kind, r.charge.Device = core.KindMountPoint, firstSet(attrs[attrMountPoint], dev)
	default:
		r.invalid = fmt.Sprintf("volumeAttributes.volumeType %q is not LVM, Device or MountPoint", vt)
	}
	if r.charge.Kind != core.KindLVM && r.charge.Device == "" && r.invalid == "" {
		r.invalid = "volumeAttributes has no Device or MountPoint path"
	}
	if r.hostname == "" && r.invalid == "" {
		r.invalid = "no kubernetes.io/hostname node affinity"
	}
	return r
}

func firstSet(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// hostnameOf is the kubernetes.io/hostname value a PV's node affinity requires.
func hostnameOf(pv *corev1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, e := range term.MatchExpressions {
			if e.Key == LabelHostname && e.Operator == corev1.NodeSelectorOpIn && len(e.Values) > 0 {
				return e.Values[0]
			}
		}
		for _, f := range term.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) > 0 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// podRecord is what the cache keeps of a pod.
type podRecord struct {
	key       string // namespace/name
	namespace string
	name      string
	uid       types.UID
	nodeName  string
	terminal  bool // Succeeded or Failed: its inline volumes are gone
	// unschedulable: kube-scheduler's last attempt found no node.
	unschedulable bool
	// pvcs are the claims of its PVC and generic ephemeral volumes.
	pvcs []core.ClaimID
	// inline are its Open-Local CSI inline volumes; inlineErr the first invalid one.
	inline    []core.VolumeRequest
	inlineLVs []string // the LV name of each inline volume (kubelet's volume handle)
	inlineErr error
}

func parsePod(p *corev1.Pod) *podRecord {
	r := &podRecord{
		key:       p.Namespace + "/" + p.Name,
		namespace: p.Namespace,
		name:      p.Name,
		uid:       p.UID,
		nodeName:  p.Spec.NodeName,
		terminal:  p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			r.unschedulable = true
		}
	}
	for i := range p.Spec.Volumes {
		v := &p.Spec.Volumes[i]
		switch {
		case v.PersistentVolumeClaim != nil:
			r.pvcs = append(r.pvcs, volumereq.ClaimForPVC(p.Namespace, v.PersistentVolumeClaim.ClaimName))
		case v.Ephemeral != nil:
			// The ephemeral-volume controller names the PVC <pod>-<volume>.
			r.pvcs = append(r.pvcs, volumereq.ClaimForPVC(p.Namespace, p.Name+"-"+v.Name))
		case v.CSI != nil:
			req, ok, err := volumereq.FromInlineVolume(p, v)
			if !ok {
				continue
			}
			if err != nil {
				if r.inlineErr == nil {
					r.inlineErr = err
				}
				continue
			}
			r.inline = append(r.inline, req)
			r.inlineLVs = append(r.inlineLVs, InlineVolumeHandle(p.UID, v.Name))
		}
	}
	return r
}

// InlineVolumeHandle is the volume ID kubelet gives a CSI inline volume,
// "csi-" and the hex SHA-256 of the pod UID followed by the volume name;
// Open-Local's driver names the LV after it, so an inline volume's LV can be
// told from an orphan.
func InlineVolumeHandle(podUID types.UID, volume string) string {
	sum := sha256.Sum256([]byte(string(podUID) + volume))
	return "csi-" + hex.EncodeToString(sum[:])
}
