package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi"
	"github.com/open-local/open-local/extender/cache"
	"github.com/open-local/open-local/pkg/status"
	"github.com/open-local/open-local/pkg/volumereq"
)

// kubelet's directories for CSI volumes.
const (
	kubeletPlugins = "/var/lib/kubelet/plugins/kubernetes.io/csi"
	kubeletPods    = "/var/lib/kubelet/pods"
)

func (d *run) nls(ctx context.Context, name string) (*v1alpha1.NodeLocalStorage, bool, error) {
	n, err := d.cl.local.CsiV1alpha1().NodeLocalStorages().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	return n, err == nil, err
}

// awaitStorage waits for the controller to create each node's
// NodeLocalStorage and for its agent to create and report the VG and the
// mount point.
func (d *run) awaitStorage(ctx context.Context) error {
	for _, sn := range d.cl.nodes {
		var nls *v1alpha1.NodeLocalStorage
		err := d.cl.waitFor(ctx, "NodeLocalStorage of "+sn.name, func() (bool, error) {
			n, ok, err := d.nls(ctx, sn.name)
			nls = n
			return ok, err
		})
		if err != nil {
			return err
		}
		d.say("%s: NodeLocalStorage created by the controller from %s (VG %s on %s, mount point %s on %s)",
			sn.name, nls.Annotations[v1alpha1.AnnotationInitConfig], poolName, vgDevice, mountPath, mountDevice)
		var vg *v1alpha1.VolumeGroup
		var mp *v1alpha1.MountPoint
		err = d.cl.waitFor(ctx, "the agent of "+sn.name+" to report "+poolName+" and "+mountPath, func() (bool, error) {
			n, ok, err := d.nls(ctx, sn.name)
			if !ok || err != nil {
				return false, err
			}
			vg, mp = nil, nil
			for i := range n.Status.NodeStorageInfo.VolumeGroups {
				if g := &n.Status.NodeStorageInfo.VolumeGroups[i]; g.Name == poolName {
					vg = g
				}
			}
			for i := range n.Status.NodeStorageInfo.MountPoints {
				if m := &n.Status.NodeStorageInfo.MountPoints[i]; m.Name == mountPath {
					mp = m
				}
			}
			return vg != nil && mp != nil, nil
		})
		if err != nil {
			return err
		}
		d.say("%s: agent created VG %s on %s (%s allocatable) and mount point %s (%s on %s, %s)",
			sn.name, poolName, vgDevice, status.FormatBytes(int64(vg.Allocatable)), mountPath, mp.FsType, mountDevice, status.FormatBytes(int64(mp.Total)))
	}
	return nil
}

// awaitCache waits for the extender's cache to offer every node's VG.
func (d *run) awaitCache(ctx context.Context) error {
	err := d.cl.waitFor(ctx, "the extender's cache to hold every node", func() (bool, error) {
		for _, sn := range d.cl.nodes {
			v, ok := d.cl.cache.View(sn.name)
			if !ok || len(v.Nodes) != 1 {
				return false, nil
			}
			found := false
			for _, vg := range v.Nodes[0].VolumeGroups {
				found = found || vg.Name == poolName && vg.Allocatable > 0
			}
			if !found {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	d.say("extender: cache synced from informers, %d nodes, strategy %s", len(d.cl.nodes), d.opt.Strategy)
	return nil
}

// place creates one StatefulSet member and takes it through scheduling,
// provisioning, binding and kubelet's mounts.
func (d *run) place(ctx context.Context, m member) error {
	kube := d.cl.kube.CoreV1()
	for _, pvc := range m.pvcs {
		if _, err := kube.PersistentVolumeClaims(namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating PVC %s: %w", pvc.Name, err)
		}
	}
	pod, err := kube.Pods(namespace).Create(ctx, m.pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %s: %w", m.pod.Name, err)
	}
	key := namespace + "/" + pod.Name
	// kube-scheduler retries a pod whose claims its informers have not seen.
	err = d.cl.waitFor(ctx, "the extender's cache to see the claims of "+key, func() (bool, error) {
		r := d.cl.cache.Request(pod)
		return r.Ours && r.Err == nil, nil
	})
	if err != nil {
		return err
	}

	node, score, scores, filtered, reason, err := d.schedule(pod)
	if err != nil {
		return fmt.Errorf("scheduling %s: %w", key, err)
	}
	if node == "" {
		d.res.Unschedulable = append(d.res.Unschedulable, Unschedulable{Pod: key, Reason: reason})
		d.say("pod %s: unschedulable: %s", key, reason)
		return nil
	}
	d.say("pod %s → %s (%s score %d; %s%s)", key, node, d.opt.Strategy, score, scoreList(scores), filteredList(filtered))

	// The volume binder's PreBind: the selected-node annotation, which the
	// extender's cache books the claims by until their PVs exist.
	ids := make([]core.ClaimID, 0, len(m.pvcs))
	for _, pvc := range m.pvcs {
		if err := d.updatePVC(ctx, pvc.Name, func(p *corev1.PersistentVolumeClaim) {
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[annSelectedNode] = node
		}); err != nil {
			return fmt.Errorf("annotating PVC %s: %w", pvc.Name, err)
		}
		ids = append(ids, volumereq.ClaimForPVC(namespace, pvc.Name))
	}
	pl := Placement{Pod: key, Node: node, Score: score, Scores: scores}
	for _, pvc := range m.pvcs {
		v, err := d.provision(ctx, pvc.Name, node)
		if err != nil {
			return err
		}
		pl.Volumes = append(pl.Volumes, v)
		where := v.VG
		if v.Device != "" {
			where = "device " + v.Device
		}
		d.say("  %s: %s %s in %s on %s, PV bound", pvc.Name, status.FormatBytes(v.Bytes), v.PV, where, node)
	}
	d.res.Placements = append(d.res.Placements, pl)
	if err := d.bindAndMount(ctx, pod.Name, node); err != nil {
		return err
	}
	d.res.PodsRunning++
	// The next pod is judged on what this one took: the cache charges the
	// claims by their PVs once its informers have them.
	return d.cl.waitFor(ctx, "the extender's cache to charge the PVs of "+key, func() (bool, error) {
		for _, id := range ids {
			ci, src, ok := d.cl.cache.Claim(id)
			if !ok || src != cache.SourcePV || ci.Node != node {
				return false, nil
			}
		}
		return true, nil
	})
}

// filteredList names the nodes the filter rejected, with why.
func filteredList(failed map[string]string) string {
	if len(failed) == 0 {
		return ""
	}
	names := make([]string, 0, len(failed))
	for n := range failed {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + ": " + failed[n]
	}
	return "; filtered out " + strings.Join(parts, ", ")
}

func scoreList(scores map[string]int64) string {
	names := make([]string, 0, len(scores))
	for n := range scores {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%d", n, scores[n])
	}
	return "scores " + strings.Join(parts, " ")
}

// schedule is kube-scheduler's scheduling cycle for pod as far as the
// extender is concerned: filter, prioritize, the best node (ties go to the
// first by name). filtered are the nodes the filter rejected; node is ""
// with reason when no node passes.
func (d *run) schedule(pod *corev1.Pod) (node string, score int64, scores map[string]int64, filtered map[string]string, reason string, err error) {
	names := make([]string, len(d.cl.nodes))
	for i, sn := range d.cl.nodes {
		names[i] = sn.name
	}
	args := extenderv1.ExtenderArgs{Pod: pod, NodeNames: &names}
	var fr extenderv1.ExtenderFilterResult
	if err := d.cl.call(http.MethodPost, "/scheduler/predicates", args, &fr); err != nil {
		return "", 0, nil, nil, "", err
	}
	if fr.Error != "" {
		return "", 0, nil, nil, "", errors.New(fr.Error)
	}
	filtered = map[string]string{}
	reasons := map[string]int{}
	for _, m := range []extenderv1.FailedNodesMap{fr.FailedNodes, fr.FailedAndUnresolvableNodes} {
		for n, why := range m {
			filtered[n] = why
			reasons[why]++
		}
	}
	if fr.NodeNames == nil || len(*fr.NodeNames) == 0 {
		return "", 0, nil, filtered, (&core.UnschedulableError{Nodes: len(names), Reasons: reasons}).Error(), nil
	}
	passed := append([]string(nil), *fr.NodeNames...)
	sort.Strings(passed)
	args.NodeNames = &passed
	var pl extenderv1.HostPriorityList
	if err := d.cl.call(http.MethodPost, "/scheduler/priorities", args, &pl); err != nil {
		return "", 0, nil, nil, "", err
	}
	scores = make(map[string]int64, len(pl))
	for _, hp := range pl {
		scores[hp.Host] = hp.Score
	}
	best := ""
	for _, n := range passed {
		if best == "" || scores[n] > scores[best] {
			best = n
		}
	}
	return best, scores[best], scores, filtered, "", nil
}

func (d *run) updatePVC(ctx context.Context, name string, mutate func(*corev1.PersistentVolumeClaim)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pvc, err := d.cl.kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(pvc)
		_, err = d.cl.kube.CoreV1().PersistentVolumeClaims(namespace).Update(ctx, pvc, metav1.UpdateOptions{})
		return err
	})
}

func (d *run) updatePVCStatus(ctx context.Context, name string, mutate func(*corev1.PersistentVolumeClaim)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pvc, err := d.cl.kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(pvc)
		_, err = d.cl.kube.CoreV1().PersistentVolumeClaims(namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{})
		return err
	})
}

func (d *run) updatePV(ctx context.Context, name string, mutate func(*corev1.PersistentVolume)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pv, err := d.cl.kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(pv)
		_, err = d.cl.kube.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{})
		return err
	})
}

// mountCapability is what external-provisioner and kubelet send for a
// filesystem volume of fsType.
func mountCapability(fsType string) *csiapi.VolumeCapability {
	return &csiapi.VolumeCapability{
		AccessMode: &csiapi.VolumeCapability_AccessMode{Mode: csiapi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csiapi.VolumeCapability_Mount{Mount: &csiapi.VolumeCapability_MountVolume{FsType: fsType}},
	}
}

// provision is external-provisioner (--node-deployment, --strict-topology,
// --extra-create-metadata, --volume-name-prefix=local) on the selected node,
// and the PV controller binding the claim.
func (d *run) provision(ctx context.Context, claim, node string) (Volume, error) {
	kube := d.cl.kube.CoreV1()
	pvc, err := kube.PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return Volume{}, err
	}
	className := ""
	if pvc.Spec.StorageClassName != nil {
		className = *pvc.Spec.StorageClassName
	}
	sc, err := d.cl.kube.StorageV1().StorageClasses().Get(ctx, className, metav1.GetOptions{})
	if err != nil {
		return Volume{}, fmt.Errorf("PVC %s: StorageClass %q: %w", claim, className, err)
	}
	sn := d.cl.byName[node]
	pvName := "local-" + string(pvc.UID)
	// The provisioner moves the fstype into the capability and adds the
	// claim's metadata.
	fsType := volumereq.DefaultFSType
	params := map[string]string{}
	for k, v := range sc.Parameters {
		if k == volumereq.ParamFSType {
			fsType = v
			continue
		}
		params[k] = v
	}
	params[csi.ParamPVCName], params[csi.ParamPVCNamespace], params[csi.ParamPVName] = pvc.Name, pvc.Namespace, pvName
	request := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	topo := []*csiapi.Topology{{Segments: map[string]string{csi.TopologyKey: node}}}
	resp, err := sn.ctrl.CreateVolume(ctx, &csiapi.CreateVolumeRequest{
		Name:                      pvName,
		CapacityRange:             &csiapi.CapacityRange{RequiredBytes: request.Value()},
		VolumeCapabilities:        []*csiapi.VolumeCapability{mountCapability(fsType)},
		Parameters:                params,
		AccessibilityRequirements: &csiapi.TopologyRequirement{Requisite: topo, Preferred: topo},
	})
	if err != nil {
		return Volume{}, fmt.Errorf("CreateVolume for PVC %s on %s: %w", claim, node, err)
	}
	vol := resp.GetVolume()
	var terms []corev1.NodeSelectorTerm
	for _, t := range vol.GetAccessibleTopology() {
		var reqs []corev1.NodeSelectorRequirement
		keys := make([]string, 0, len(t.GetSegments()))
		for k := range t.GetSegments() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			reqs = append(reqs, corev1.NodeSelectorRequirement{Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{t.GetSegments()[k]}})
		}
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: reqs})
	}
	capacity := *resource.NewQuantity(vol.GetCapacityBytes(), resource.BinarySI)
	mode := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, Annotations: map[string]string{annProvisionedBy: volumereq.DriverName}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              className,
			VolumeMode:                    &mode,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: volumereq.DriverName, VolumeHandle: vol.GetVolumeId(), FSType: fsType, VolumeAttributes: vol.GetVolumeContext(),
			}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}},
		},
	}
	if pv, err = kube.PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		return Volume{}, fmt.Errorf("creating PV %s: %w", pvName, err)
	}
	pv.Status.Phase = corev1.VolumeBound
	if _, err := kube.PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		return Volume{}, fmt.Errorf("PV %s status: %w", pvName, err)
	}
	if err := d.updatePVC(ctx, claim, func(p *corev1.PersistentVolumeClaim) {
		p.Spec.VolumeName = pvName
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[annBindCompleted] = "yes"
	}); err != nil {
		return Volume{}, fmt.Errorf("binding PVC %s: %w", claim, err)
	}
	if err := d.updatePVCStatus(ctx, claim, func(p *corev1.PersistentVolumeClaim) {
		p.Status.Phase = corev1.ClaimBound
		p.Status.AccessModes = pv.Spec.AccessModes
		p.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: capacity}
	}); err != nil {
		return Volume{}, fmt.Errorf("PVC %s status: %w", claim, err)
	}
	d.res.PVsBound++
	ctxAttrs := vol.GetVolumeContext()
	return Volume{Claim: namespace + "/" + claim, PV: pvName, VG: ctxAttrs[volumereq.ParamVGName], Device: ctxAttrs["Device"], Bytes: vol.GetCapacityBytes()}, nil
}

// stagingPath and targetPath are where kubelet stages and publishes a CSI volume.
func stagingPath(pv string) string {
	sum := sha256.Sum256([]byte(pv))
	return kubeletPlugins + "/" + volumereq.DriverName + "/" + hex.EncodeToString(sum[:]) + "/globalmount"
}

func targetPath(podUID, pv string) string {
	return kubeletPods + "/" + podUID + "/volumes/kubernetes.io~csi/" + pv + "/mount"
}

// bindAndMount binds the pod to node, then does kubelet's part: stage and
// publish each volume on the node's driver, and mark the pod Running.
func (d *run) bindAndMount(ctx context.Context, podName, node string) error {
	pods := d.cl.kube.CoreV1().Pods(namespace)
	var pod *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Spec.NodeName = node
		pod, err = pods.Update(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("binding pod %s: %w", podName, err)
	}
	sn := d.cl.byName[node]
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := d.cl.kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pv, err := d.cl.kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		src := pv.Spec.CSI
		capability := mountCapability(src.FSType)
		if _, err := sn.node.NodeStageVolume(ctx, &csiapi.NodeStageVolumeRequest{
			VolumeId: src.VolumeHandle, StagingTargetPath: stagingPath(pv.Name), VolumeCapability: capability, VolumeContext: src.VolumeAttributes,
		}); err != nil {
			return fmt.Errorf("NodeStageVolume of %s on %s: %w", pv.Name, node, err)
		}
		vc := map[string]string{
			"csi.storage.k8s.io/pod.name": pod.Name, "csi.storage.k8s.io/pod.namespace": pod.Namespace,
			"csi.storage.k8s.io/pod.uid": string(pod.UID), "csi.storage.k8s.io/serviceAccount.name": "default",
			"csi.storage.k8s.io/ephemeral": "false",
		}
		for k, val := range src.VolumeAttributes {
			vc[k] = val
		}
		if _, err := sn.node.NodePublishVolume(ctx, &csiapi.NodePublishVolumeRequest{
			VolumeId: src.VolumeHandle, StagingTargetPath: stagingPath(pv.Name), TargetPath: targetPath(string(pod.UID), pv.Name),
			VolumeCapability: capability, VolumeContext: vc,
		}); err != nil {
			return fmt.Errorf("NodePublishVolume of %s on %s: %w", pv.Name, node, err)
		}
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s status: %w", podName, err)
	}
	return nil
}

// boundPV returns the PV of a bound claim and the node of its volume.
func (d *run) boundPV(ctx context.Context, claim string) (*corev1.PersistentVolume, *simNode, error) {
	pvc, err := d.cl.kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	if pvc.Spec.VolumeName == "" {
		return nil, nil, fmt.Errorf("PVC %s is not bound", claim)
	}
	pv, err := d.cl.kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	sn := d.cl.byName[pvc.Annotations[annSelectedNode]]
	if sn == nil {
		return nil, nil, fmt.Errorf("PVC %s has no selected node", claim)
	}
	return pv, sn, nil
}

// snapshot takes a VolumeSnapshot of claim: the snapshot controller's and
// csi-snapshotter's (--node-deployment) parts, with the content object the
// extender reads for restores.
func (d *run) snapshot(ctx context.Context, claim string) error {
	pv, sn, err := d.boundPV(ctx, claim)
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", claim, err)
	}
	name := claim + "-snapshot"
	snaps := d.cl.dyn.Resource(snapshotGVR).Namespace(namespace)
	obj := volumeSnapshot(name, claim)
	// The dynamic fake assigns no UIDs, and the snapshot controller names
	// the content and the snapshot after it.
	obj.SetUID(types.UID(uuid.NewString()))
	vs, err := snaps.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating VolumeSnapshot %s: %w", name, err)
	}
	uid := string(vs.GetUID())
	contentName := "snapcontent-" + uid
	params := snapshotClassParams()
	params[csi.SnapParamVSName], params[csi.SnapParamVSNamespace], params[csi.SnapParamVSCName] = name, namespace, contentName
	resp, err := sn.ctrl.CreateSnapshot(ctx, &csiapi.CreateSnapshotRequest{
		SourceVolumeId: pv.Spec.CSI.VolumeHandle, Name: "snap-" + uid, Parameters: params,
	})
	if err != nil {
		return fmt.Errorf("CreateSnapshot of %s on %s: %w", claim, sn.name, err)
	}
	s := resp.GetSnapshot()
	content := snapshotContent(contentName, name, uid, pv.Spec.CSI.VolumeHandle, s.GetSnapshotId(), s.GetSizeBytes())
	if _, err := d.cl.dyn.Resource(contentGVR).Create(ctx, content, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating VolumeSnapshotContent %s: %w", contentName, err)
	}
	if err := unstructured.SetNestedMap(vs.Object, map[string]any{
		"boundVolumeSnapshotContentName": contentName,
		"readyToUse":                     s.GetReadyToUse(),
		"restoreSize":                    resource.NewQuantity(s.GetSizeBytes(), resource.BinarySI).String(),
		"creationTime":                   s.GetCreationTime().AsTime().UTC().Format("2006-01-02T15:04:05Z"),
	}, "status"); err != nil {
		return err
	}
	if vs, err = snaps.UpdateStatus(ctx, vs, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("VolumeSnapshot %s status: %w", name, err)
	}
	ready, _, _ := unstructured.NestedBool(vs.Object, "status", "readyToUse")
	out := &SnapshotOutcome{Name: namespace + "/" + name, Claim: namespace + "/" + claim, Node: sn.name, SnapshotID: s.GetSnapshotId(),
		ReadyToUse: ready, RestoreBytes: s.GetSizeBytes()}
	if state, err := sn.host.LVMReport(ctx); err == nil {
		for _, vg := range state.VGs {
			for _, lv := range vg.LVs {
				if lv.Name == s.GetSnapshotId() {
					out.COWBytes = lv.SizeBytes
				}
			}
		}
	}
	d.res.Snapshot = out
	if !ready {
		return fmt.Errorf("VolumeSnapshot %s is not ready to use", name)
	}
	d.say("snapshot %s of %s: %s on %s, copy-on-write %s, restores %s, ready", out.Name, claim, out.SnapshotID, sn.name,
		status.FormatBytes(out.COWBytes), status.FormatBytes(out.RestoreBytes))
	return nil
}

// expand grows claim to size as a user, external-resizer and kubelet do:
// the PVC's request, ControllerExpandVolume, the PV's capacity,
// NodeExpandVolume on the published volume, the PVC's capacity.
func (d *run) expand(ctx context.Context, claim, size string) error {
	pv, sn, err := d.boundPV(ctx, claim)
	if err != nil {
		return fmt.Errorf("expansion of %s: %w", claim, err)
	}
	want := resource.MustParse(size)
	from := pv.Spec.Capacity[corev1.ResourceStorage]
	out := &ExpansionOutcome{Claim: namespace + "/" + claim, Node: sn.name, FromBytes: from.Value()}
	d.res.Expansion = out
	if err := d.updatePVC(ctx, claim, func(p *corev1.PersistentVolumeClaim) {
		p.Spec.Resources.Requests[corev1.ResourceStorage] = want
	}); err != nil {
		return fmt.Errorf("resizing PVC %s: %w", claim, err)
	}
	src := pv.Spec.CSI
	capability := mountCapability(src.FSType)
	cr, err := sn.ctrl.ControllerExpandVolume(ctx, &csiapi.ControllerExpandVolumeRequest{
		VolumeId: src.VolumeHandle, CapacityRange: &csiapi.CapacityRange{RequiredBytes: want.Value()}, VolumeCapability: capability,
	})
	if err != nil {
		return fmt.Errorf("ControllerExpandVolume of %s on %s: %w", claim, sn.name, err)
	}
	grown := *resource.NewQuantity(cr.GetCapacityBytes(), resource.BinarySI)
	if err := d.updatePV(ctx, pv.Name, func(p *corev1.PersistentVolume) {
		p.Spec.Capacity[corev1.ResourceStorage] = grown
	}); err != nil {
		return fmt.Errorf("PV %s capacity: %w", pv.Name, err)
	}
	if cr.GetNodeExpansionRequired() {
		pvc, err := d.cl.kube.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return err
		}
		podName := d.podOf(namespace + "/" + pvc.Name)
		pod, err := d.cl.kube.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("the pod of %s: %w", pvc.Name, err)
		}
		if _, err := sn.node.NodeExpandVolume(ctx, &csiapi.NodeExpandVolumeRequest{
			VolumeId: src.VolumeHandle, VolumePath: targetPath(string(pod.UID), pv.Name), StagingTargetPath: stagingPath(pv.Name),
			CapacityRange: &csiapi.CapacityRange{RequiredBytes: want.Value()}, VolumeCapability: capability,
		}); err != nil {
			return fmt.Errorf("NodeExpandVolume of %s on %s: %w", claim, sn.name, err)
		}
	}
	if err := d.updatePVCStatus(ctx, claim, func(p *corev1.PersistentVolumeClaim) {
		p.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: grown}
	}); err != nil {
		return fmt.Errorf("PVC %s status: %w", claim, err)
	}
	out.ToBytes = cr.GetCapacityBytes()
	out.Done = out.ToBytes >= want.Value()
	if !out.Done {
		return fmt.Errorf("expansion of %s: the volume has %d bytes, %d were asked", claim, out.ToBytes, want.Value())
	}
	d.say("expansion of %s on %s: %s → %s (lvextend, then the filesystem grown online)", claim, sn.name,
		status.FormatBytes(out.FromBytes), status.FormatBytes(out.ToBytes))
	return nil
}

// podOf is the name of the placed pod that uses claim ("" if none).
func (d *run) podOf(claim string) string {
	for _, p := range d.res.Placements {
		for _, v := range p.Volumes {
			if v.Claim == claim {
				_, name, _ := strings.Cut(p.Pod, "/")
				return name
			}
		}
	}
	return ""
}

// expectedLVs are, per node, the LVs the PVs and the snapshot put there and their sizes.
func (d *run) expectedLVs(ctx context.Context) (map[string]map[string]int64, error) {
	want := map[string]map[string]int64{}
	for _, sn := range d.cl.nodes {
		want[sn.name] = map[string]int64{}
	}
	pvs, err := d.cl.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, pv := range pvs.Items {
		attrs := pv.Spec.CSI.VolumeAttributes
		if attrs[volumereq.ParamVolumeType] != string(volumereq.VolumeTypeLVM) {
			continue
		}
		q := pv.Spec.Capacity[corev1.ResourceStorage]
		want[attrs[annSelectedNode]][pv.Spec.CSI.VolumeHandle] = q.Value()
	}
	if s := d.res.Snapshot; s != nil {
		want[s.Node][s.SnapshotID] = s.COWBytes
	}
	return want, nil
}

// awaitAgents waits for every agent to report its node's LVs at their sizes.
func (d *run) awaitAgents(ctx context.Context) error {
	want, err := d.expectedLVs(ctx)
	if err != nil {
		return err
	}
	for _, sn := range d.cl.nodes {
		var used, alloc uint64
		err := d.cl.waitFor(ctx, "the agent of "+sn.name+" to report its volumes", func() (bool, error) {
			n, ok, err := d.nls(ctx, sn.name)
			if !ok || err != nil {
				return false, err
			}
			seen := map[string]int64{}
			used, alloc = 0, 0
			for _, vg := range n.Status.NodeStorageInfo.VolumeGroups {
				if vg.Name == poolName {
					alloc = vg.Allocatable
				}
				for _, lv := range vg.LogicalVolumes {
					seen[lv.Name] = int64(lv.Total)
					used += lv.Total
				}
			}
			for name, size := range want[sn.name] {
				if seen[name] != size {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		d.say("%s: agent reports %d LVs in %s, %s of %s", sn.name, len(want[sn.name]), poolName, status.FormatBytes(int64(used)), status.FormatBytes(int64(alloc)))
	}
	d.res.AgentsReported = true
	return nil
}

// check recounts: the extender's ledger, the status report (the same code
// "open-local status" runs) and the simulated disks must show no
// over-commitment, every PV's volume must exist on its host, and the
// extender and the report must agree on what each VG holds.
func (d *run) check(ctx context.Context) error {
	// The extender's cache follows the API through informers, the report
	// reads the API: the last change (an expansion, say) may not have reached
	// the cache yet, so the two are compared until they agree or a few
	// seconds have passed.
	var rep *status.Report
	var problems []error
	for deadline := time.Now().Add(agreeWithin); ; {
		var err error
		if rep, err = status.Collect(ctx, d.cl.kube, d.cl.local, status.Options{}); err != nil {
			return fmt.Errorf("status report: %w", err)
		}
		if problems = d.disagreements(rep); len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, oc := range d.cl.cache.Overcommits() {
		d.res.Overcommits = append(d.res.Overcommits, fmt.Sprintf("extender ledger: %s %s on %s exceeds what it offers by %s", oc.Kind, oc.Resource, oc.Node, status.FormatBytes(oc.ExcessBytes)))
	}
	d.res.Status = rep
	for _, o := range rep.Overcommitted() {
		d.res.Overcommits = append(d.res.Overcommits, "status report: "+o)
	}
	pvs, err := d.cl.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, sn := range d.cl.nodes {
		state, err := sn.host.LVMReport(ctx)
		if err != nil {
			return fmt.Errorf("%s: LVM report: %w", sn.name, err)
		}
		lvs := map[string]int64{}
		for _, vg := range state.VGs {
			var sum int64
			for _, lv := range vg.LVs {
				sum += lv.SizeBytes
				lvs[lv.Name] = lv.SizeBytes
			}
			if sum > vg.TotalBytes || vg.FreeBytes < 0 {
				d.res.Overcommits = append(d.res.Overcommits, fmt.Sprintf("%s disk: VG %s holds %s of LVs in %s", sn.name, vg.Name, status.FormatBytes(sum), status.FormatBytes(vg.TotalBytes)))
			}
		}
		for _, pv := range pvs.Items {
			attrs := pv.Spec.CSI.VolumeAttributes
			if attrs[annSelectedNode] != sn.name || attrs[volumereq.ParamVolumeType] != string(volumereq.VolumeTypeLVM) {
				continue
			}
			q := pv.Spec.Capacity[corev1.ResourceStorage]
			if got, ok := lvs[pv.Spec.CSI.VolumeHandle]; !ok || got < q.Value() {
				problems = append(problems, fmt.Errorf("%s: PV %s promises %s but its LV %s has %s", sn.name, pv.Name, q.String(), pv.Spec.CSI.VolumeHandle, status.FormatBytes(got)))
			}
		}
	}
	return errors.Join(problems...)
}

// agreeWithin bounds how long check waits for the extender's cache to agree
// with the status report.
const agreeWithin = 5 * time.Second

// disagreements compares the status report with the extender's cache: every
// resource healthy, and each VG's requested and allocatable bytes the same.
func (d *run) disagreements(rep *status.Report) []error {
	var problems []error
	for _, n := range rep.Nodes {
		v, ok := d.cl.cache.View(n.Name)
		if !ok || len(v.Nodes) != 1 {
			problems = append(problems, fmt.Errorf("%s: the extender's cache does not hold the node", n.Name))
			continue
		}
		for _, r := range n.Resources {
			if r.Health != status.HealthReady {
				problems = append(problems, fmt.Errorf("%s: %s %s is %s: %s", n.Name, r.Kind, r.Name, r.Health, r.Message))
			}
			if r.Kind != status.KindVG {
				continue
			}
			for _, vg := range v.Nodes[0].VolumeGroups {
				if vg.Name == r.Name && (vg.Requested != r.RequestedBytes || vg.Allocatable != r.AllocatableBytes) {
					problems = append(problems, fmt.Errorf("%s: VG %s: the extender counts %s of %s, the status report %s of %s", n.Name, r.Name,
						status.FormatBytes(vg.Requested), status.FormatBytes(vg.Allocatable), status.FormatBytes(r.RequestedBytes), status.FormatBytes(r.AllocatableBytes)))
				}
			}
		}
	}
	return problems
}
