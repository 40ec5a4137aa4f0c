package cache

import (
	"errors"
	"fmt"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/volumereq"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// snapshotRecord is the part of a VolumeSnapshot restores need.
type snapshotRecord struct {
	content string // the VolumeSnapshotContent it is bound to
}

// contentRecord is the part of a VolumeSnapshotContent restores need.
type contentRecord struct {
	volumeHandle   string // the source volume of a dynamic snapshot
	snapshotHandle string // the snapshot's ID: Open-Local's snapshot LV name
}

// SnapshotGroup is the API group of VolumeSnapshot and VolumeSnapshotContent.
const SnapshotGroup = "snapshot.storage.k8s.io"

func parseSnapshot(u *unstructured.Unstructured) snapshotRecord {
	name, _, _ := unstructured.NestedString(u.Object, "status", "boundVolumeSnapshotContentName")
	if name == "" {
		name, _, _ = unstructured.NestedString(u.Object, "spec", "source", "volumeSnapshotContentName")
	}
	return snapshotRecord{content: name}
}

func parseContent(u *unstructured.Unstructured) contentRecord {
	vh, _, _ := unstructured.NestedString(u.Object, "spec", "source", "volumeHandle")
	sh, _, _ := unstructured.NestedString(u.Object, "status", "snapshotHandle")
	if sh == "" {
		sh, _, _ = unstructured.NestedString(u.Object, "spec", "source", "snapshotHandle")
	}
	return contentRecord{volumeHandle: vh, snapshotHandle: sh}
}

// PodRequest is what a pod asks of Open-Local.
type PodRequest struct {
	core.PodRequest
	// Ours is false when the pod has no Open-Local volume: it fits everywhere.
	Ours bool
	// Err says why the pod's volumes cannot be judged (a PVC not found, an
	// invalid StorageClass): it fits nowhere until that is fixed.
	Err error
}

// podRequest builds what pod asks for; vols is a buffer for the volumes.
func (c *Cache) podRequest(pod *corev1.Pod, vols []core.VolumeRequest) PodRequest {
	out := PodRequest{PodRequest: core.PodRequest{Name: pod.Namespace + "/" + pod.Name}}
	fail := func(err error) PodRequest {
		out.Ours, out.Err, out.Volumes = true, err, nil
		return out
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		claimName := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			claimName = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			claimName = pod.Name + "-" + v.Name
		case v.CSI != nil:
			req, ok, err := volumereq.FromInlineVolume(pod, v)
			if !ok {
				continue
			}
			if err != nil {
				return fail(err)
			}
			vols = append(vols, req)
			continue
		default:
			continue
		}
		id := volumereq.ClaimForPVC(pod.Namespace, claimName)
		pvc := c.pvcs[id]
		if pvc == nil {
			return fail(fmt.Errorf("persistentvolumeclaim %s not found", id))
		}
		req, ours, err := c.requestForPVC(pvc)
		if !ours {
			continue
		}
		if err != nil {
			return fail(err)
		}
		vols = append(vols, req)
	}
	out.Volumes = vols
	out.Ours = len(vols) > 0
	return out
}

// requestForPVC is the volume a PVC asks for. ours is false for a PVC of
// another driver, or one without a class.
func (c *Cache) requestForPVC(pvc *corev1.PersistentVolumeClaim) (req core.VolumeRequest, ours bool, err error) {
	id := volumereq.ClaimForPVC(pvc.Namespace, pvc.Name)
	if r := c.backingPV(id); r != nil {
		// Bound: the volume exists, on its node.
		req = core.VolumeRequest{Claim: id, Bytes: r.charge.Bytes, Node: c.nodeOfPV(r), VG: r.charge.VG}
		switch {
		case r.noCharge:
			req.Kind, req.VG = core.VolumeSnapshotRestore, ""
		case r.charge.Kind == core.KindDevice:
			req.Kind = core.VolumeDevice
		case r.charge.Kind == core.KindMountPoint:
			req.Kind = core.VolumeMountPoint
		default:
			req.Kind = core.VolumeLVM
		}
		if r.invalid != "" {
			return req, true, fmt.Errorf("persistentvolume %s of %s: %s", r.name, id, r.invalid)
		}
		return req, true, nil
	}
	if _, foreign := c.foreignPVs[pvc.Spec.VolumeName]; foreign && pvc.Spec.VolumeName != "" {
		return req, false, nil
	}
	sc, err := c.classOf(pvc)
	if sc == nil {
		return req, err != nil, err
	}
	req, err = volumereq.FromPVC(pvc, sc)
	if errors.Is(err, volumereq.ErrNotOpenLocal) {
		return req, false, nil
	}
	if err != nil {
		return req, true, err
	}
	node, isSnapshot, err := c.sourceNode(pvc)
	if err != nil {
		return req, true, err
	}
	if node != "" {
		req.Node = node
		if isSnapshot && sc.Parameters[ParamReadOnly] == "true" {
			req.Kind, req.VG, req.Striped = core.VolumeSnapshotRestore, "", false
		}
	}
	return req, true, nil
}

// classOf is a PVC's StorageClass: nil without error when it names none
// (and no default class exists), an error when it names one the cache lacks.
func (c *Cache) classOf(pvc *corev1.PersistentVolumeClaim) (*storagev1.StorageClass, error) {
	name, explicit := volumereq.StorageClassName(pvc)
	if !explicit {
		var best *storagev1.StorageClass
		for _, sc := range c.scs {
			if !volumereq.IsDefaultClass(sc) {
				continue
			}
			// Like the API server: the newest default class wins.
			if best == nil || sc.CreationTimestamp.After(best.CreationTimestamp.Time) ||
				(sc.CreationTimestamp.Equal(&best.CreationTimestamp) && sc.Name < best.Name) {
				best = sc
			}
		}
		return best, nil
	}
	if name == "" {
		return nil, nil
	}
	sc := c.scs[name]
	if sc == nil {
		return nil, fmt.Errorf("persistentvolumeclaim %s/%s: storageclass %q not found", pvc.Namespace, pvc.Name, name)
	}
	return sc, nil
}

// sourceNode is the node a PVC restored from a snapshot or cloned from a
// PVC must use: Open-Local copies from the source's LV, which is on one node.
// isSnapshot tells a restore from a clone. A populator of another kind pins nothing.
func (c *Cache) sourceNode(pvc *corev1.PersistentVolumeClaim) (node string, isSnapshot bool, err error) {
	kind, group, name, ns := "", "", "", pvc.Namespace
	switch {
	case pvc.Spec.DataSourceRef != nil:
		r := pvc.Spec.DataSourceRef
		kind, name = r.Kind, r.Name
		if r.APIGroup != nil {
			group = *r.APIGroup
		}
		if r.Namespace != nil && *r.Namespace != "" {
			ns = *r.Namespace
		}
	case pvc.Spec.DataSource != nil:
		r := pvc.Spec.DataSource
		kind, name = r.Kind, r.Name
		if r.APIGroup != nil {
			group = *r.APIGroup
		}
	default:
		return "", false, nil
	}
	id := volumereq.ClaimForPVC(pvc.Namespace, pvc.Name)
	switch {
	case kind == "PersistentVolumeClaim" && group == "":
		src := volumereq.ClaimForPVC(ns, name)
		r := c.backingPV(src)
		if r == nil {
			return "", false, fmt.Errorf("persistentvolumeclaim %s: clone source %s is not bound to an Open-Local volume yet", id, src)
		}
		return c.nodeOfPV(r), false, nil
	case kind == "VolumeSnapshot" && group == SnapshotGroup:
		if !c.snapshotAPI {
			return "", true, fmt.Errorf("persistentvolumeclaim %s: restores from VolumeSnapshot %s/%s need the snapshot.storage.k8s.io/v1 API, which the cluster does not serve", id, ns, name)
		}
		vs, ok := c.snapshots[ns+"/"+name]
		if !ok || vs.content == "" {
			return "", true, fmt.Errorf("persistentvolumeclaim %s: VolumeSnapshot %s/%s not found or not bound to a content yet", id, ns, name)
		}
		content, ok := c.contents[vs.content]
		if !ok {
			return "", true, fmt.Errorf("persistentvolumeclaim %s: VolumeSnapshotContent %s not found", id, vs.content)
		}
		if pvName, ok := c.pvByHandle[content.volumeHandle]; ok && content.volumeHandle != "" {
			return c.nodeOfPV(c.pvs[pvName]), true, nil
		}
		// A pre-provisioned content names only the snapshot: find the node
		// whose agent reports that LV.
		if n := c.nodeWithLV(content.snapshotHandle); n != "" {
			return n, true, nil
		}
		return "", true, fmt.Errorf("persistentvolumeclaim %s: the source volume of VolumeSnapshotContent %s is on no known node", id, vs.content)
	}
	return "", false, nil
}

// nodeWithLV is the node whose agent reports an Open-Local LV of that name
// ("" when none does, or several do).
func (c *Cache) nodeWithLV(lv string) string {
	if set := c.lvNodes[lv]; len(set) == 1 && lv != "" {
		for n := range set {
			return n
		}
	}
	return ""
}
