// Package status reports, per node, the local storage Open-Local manages:
// each volume group, device and mount point with what it offers
// (allocatable), what volumes take from it (requested), what is left, its
// medium and its health. It reads only API objects — NodeLocalStorages,
// PersistentVolumes of the driver and Nodes — so it answers the same for a
// real cluster and for an in-memory one.
//
// Allocatable is computed with pkg/nodecap, the definition the scheduler
// extender and the simulator share. Requested is the capacity of every
// Open-Local PV on the resource, plus Open-Local's LVs the agent reports that
// no PV explains (snapshots, volumes whose PV is already gone): what is on
// the disk counts, as the extender counts it.
package status

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	"github.com/open-local/open-local/pkg/nodecap"
	"github.com/open-local/open-local/pkg/volumereq"
)

// Resource kinds, as the table prints them.
const (
	KindVG         = "VG"
	KindDevice     = "DEVICE"
	KindMountPoint = "MOUNTPOINT"
)

// Health values of nodes and resources. A node's problem is every
// resource's problem; otherwise a resource has its own.
const (
	HealthReady = "Ready"
	// HealthNodeNotReady: the Node's Ready condition is not True.
	HealthNodeNotReady = "NodeNotReady"
	// HealthNodeMissing: a NodeLocalStorage or a PV names a node that has no Node object.
	HealthNodeMissing = "NodeMissing"
	// HealthNotReported: the node has no NodeLocalStorage, or its agent has
	// not reported yet, or a PV's resource is absent from the report.
	HealthNotReported = "NotReported"
	// HealthStorageNotReady: the NodeLocalStorage's Ready condition is False.
	HealthStorageNotReady = "StorageNotReady"
	// HealthConfigInvalid: listConfig or the storage-reserved annotation cannot be applied.
	HealthConfigInvalid = "ConfigInvalid"
	// HealthDiskFault: the agent reports the resource as faulty.
	HealthDiskFault = "DiskFault"
	// HealthNotAllocatable: volumes use a resource Open-Local does not offer
	// (not selected by listConfig, read-only, in use otherwise).
	HealthNotAllocatable = "NotAllocatable"
	// HealthOvercommitted: more is requested than the resource offers.
	HealthOvercommitted = "Overcommitted"
)

// Report is the storage of every node, sorted by node name.
type Report struct {
	Nodes []Node `json:"nodes"`
}

// Node is one node's storage.
type Node struct {
	Name   string `json:"name"`
	Health string `json:"health"`
	// Message explains a health other than Ready.
	Message   string     `json:"message,omitempty"`
	Resources []Resource `json:"resources"`
}

// Resource is one volume group, device or mount point.
type Resource struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Media is ssd or hdd; "" when unknown, "mixed" for a VG on both.
	Media            string `json:"media,omitempty"`
	AllocatableBytes int64  `json:"allocatableBytes"`
	RequestedBytes   int64  `json:"requestedBytes"`
	// FreeBytes is what is left to allocate: 0 for a device or mount point
	// a volume holds (they are never shared).
	FreeBytes int64    `json:"freeBytes"`
	Health    string   `json:"health"`
	Message   string   `json:"message,omitempty"`
	Volumes   []Volume `json:"volumes,omitempty"`
}

// Volume is what takes capacity from a resource: a PV, or an LV of
// Open-Local's that no PV explains (a snapshot).
type Volume struct {
	// Name is the PV name, or the LV name when there is no PV.
	Name string `json:"name"`
	// PV is false for an LV without a PV.
	PV bool `json:"pv"`
	// Claim is the bound PVC "namespace/name".
	Claim string `json:"claim,omitempty"`
	Bytes int64  `json:"bytes"`
}

// Overcommitted lists "node/kind/name" of every over-committed resource.
func (r *Report) Overcommitted() []string {
	var out []string
	for _, n := range r.Nodes {
		for _, res := range n.Resources {
			if res.overcommitted() {
				out = append(out, n.Name+"/"+res.Kind+"/"+res.Name)
			}
		}
	}
	return out
}

// overcommitted: more requested than offered, or a device or mount point
// held by more than one volume, whatever else is wrong with the node.
func (r *Resource) overcommitted() bool {
	if r.Kind != KindVG && len(r.Volumes) > 1 {
		return true
	}
	return r.AllocatableBytes > 0 && r.RequestedBytes > r.AllocatableBytes
}

// Options tune Collect and Build.
type Options struct {
	// Node limits the report to one node ("" = every node).
	Node string
	// OwnedLVPrefixes mark Open-Local's LVs (nil = core.DefaultOwnedLVPrefixes).
	OwnedLVPrefixes []string
}

// ErrNoSuchNode is returned when Options.Node names a node the cluster does
// not know.
var ErrNoSuchNode = errors.New("no such node")

// Collect reads the objects and builds the report.
func Collect(ctx context.Context, kube kubernetes.Interface, local versioned.Interface, opt Options) (*Report, error) {
	nls, err := local.CsiV1alpha1().NodeLocalStorages().List(ctx, metav1.ListOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("listing NodeLocalStorages: the csi.aliyun.com/v1alpha1 API is not served; is Open-Local installed (deploy/crds)? (%w)", err)
		}
		return nil, fmt.Errorf("listing NodeLocalStorages: %w", err)
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	pvs, err := kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing PersistentVolumes: %w", err)
	}
	return Build(nodes.Items, nls.Items, pvs.Items, opt)
}

// resourceKey names a resource of a node.
type resourceKey struct {
	node, kind, name string
}

// pvCharge is what one PV takes.
type pvCharge struct {
	key    resourceKey
	volume Volume
	handle string
}

// Build computes the report from the objects; it does no I/O.
func Build(nodes []corev1.Node, nlses []v1alpha1.NodeLocalStorage, pvs []corev1.PersistentVolume, opt Options) (*Report, error) {
	prefixes := opt.OwnedLVPrefixes
	if prefixes == nil {
		prefixes = core.DefaultOwnedLVPrefixes
	}
	nodeByName := make(map[string]*corev1.Node, len(nodes))
	hostToNode := map[string]string{}
	for i := range nodes {
		n := &nodes[i]
		nodeByName[n.Name] = n
		if h := n.Labels[corev1.LabelHostname]; h != "" {
			hostToNode[h] = n.Name
		}
	}
	nlsByName := make(map[string]*v1alpha1.NodeLocalStorage, len(nlses))
	for i := range nlses {
		nlsByName[nlses[i].Name] = &nlses[i]
	}

	// PVs by node and resource.
	charges := map[string][]pvCharge{}
	pvProblems := map[string][]string{}
	for i := range pvs {
		pv := &pvs[i]
		ch, node, problem := chargeOf(pv, hostToNode)
		if node == "" {
			continue // not Open-Local's, or not on a node
		}
		if problem != "" {
			pvProblems[node] = append(pvProblems[node], problem)
			continue
		}
		if ch != nil {
			charges[node] = append(charges[node], *ch)
		}
	}

	names := map[string]struct{}{}
	for n := range nodeByName {
		names[n] = struct{}{}
	}
	for n := range nlsByName {
		names[n] = struct{}{}
	}
	for n := range charges {
		names[n] = struct{}{}
	}
	for n := range pvProblems {
		names[n] = struct{}{}
	}
	if opt.Node != "" {
		if _, ok := names[opt.Node]; !ok {
			return nil, fmt.Errorf("node %q: %w (no Node, NodeLocalStorage or Open-Local PersistentVolume names it)", opt.Node, ErrNoSuchNode)
		}
		names = map[string]struct{}{opt.Node: {}}
	}

	rep := &Report{Nodes: make([]Node, 0, len(names))}
	for name := range names {
		rep.Nodes = append(rep.Nodes, buildNode(name, nodeByName[name], nlsByName[name], charges[name], pvProblems[name], prefixes))
	}
	sort.Slice(rep.Nodes, func(a, b int) bool { return rep.Nodes[a].Name < rep.Nodes[b].Name })
	return rep, nil
}

// chargeOf reads an Open-Local PV: the node it is on (its
// kubernetes.io/hostname affinity, mapped to a Node name) and the resource
// it takes. node is "" for another driver's PV; problem explains a PV that
// cannot be attributed to a resource.
func chargeOf(pv *corev1.PersistentVolume, hostToNode map[string]string) (ch *pvCharge, node, problem string) {
	src := pv.Spec.CSI
	if src == nil || !volumereq.IsOpenLocalDriver(src.Driver) {
		return nil, "", ""
	}
	attrs := src.VolumeAttributes
	host := hostnameOf(pv)
	if host == "" {
		host = attrs["volume.kubernetes.io/selected-node"]
	}
	if host == "" {
		return nil, "", ""
	}
	node = host
	if n, ok := hostToNode[host]; ok {
		node = n
	}
	var bytes int64
	if q, ok := pv.Spec.Capacity[corev1.ResourceStorage]; ok {
		bytes = q.Value()
	}
	vol := Volume{Name: pv.Name, PV: true, Bytes: bytes}
	if ref := pv.Spec.ClaimRef; ref != nil && ref.Name != "" {
		vol.Claim = ref.Namespace + "/" + ref.Name
	}
	key := resourceKey{node: node}
	switch vt := attrs[volumereq.ParamVolumeType]; volumereq.VolumeType(vt) {
	case volumereq.VolumeTypeLVM, "":
		if attrs["csi.aliyun.com/readonly"] == "true" {
			// A read-only restore is the snapshot itself: the snapshot's LV
			// is what takes the space.
			return nil, node, ""
		}
		key.kind, key.name = KindVG, attrs[volumereq.ParamVGName]
		if key.name == "" {
			return nil, node, fmt.Sprintf("PersistentVolume %s: volumeAttributes.vgName is missing", pv.Name)
		}
	case volumereq.VolumeTypeDevice:
		key.kind, key.name = KindDevice, attrs["Device"]
		if key.name == "" {
			return nil, node, fmt.Sprintf("PersistentVolume %s: volumeAttributes.Device is missing", pv.Name)
		}
	case volumereq.VolumeTypeMountPoint:
		key.kind, key.name = KindMountPoint, attrs["MountPoint"]
		if key.name == "" {
			return nil, node, fmt.Sprintf("PersistentVolume %s: volumeAttributes.MountPoint is missing", pv.Name)
		}
	default:
		return nil, node, fmt.Sprintf("PersistentVolume %s: volumeAttributes.volumeType %q is not LVM, Device or MountPoint", pv.Name, vt)
	}
	return &pvCharge{key: key, volume: vol, handle: src.VolumeHandle}, node, ""
}

// hostnameOf is the single kubernetes.io/hostname value a PV's required
// node affinity names ("" when there is none).
func hostnameOf(pv *corev1.PersistentVolume) string {
	na := pv.Spec.NodeAffinity
	if na == nil || na.Required == nil {
		return ""
	}
	for _, term := range na.Required.NodeSelectorTerms {
		for _, req := range term.MatchExpressions {
			if req.Key == corev1.LabelHostname && req.Operator == corev1.NodeSelectorOpIn && len(req.Values) == 1 {
				return req.Values[0]
			}
		}
	}
	return ""
}

// nodeHealth is the health every resource of the node shares.
func nodeHealth(node *corev1.Node, nls *v1alpha1.NodeLocalStorage) (string, string) {
	if node == nil {
		return HealthNodeMissing, "no Node object of this name"
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status != corev1.ConditionTrue {
				msg := "Node condition Ready is " + string(c.Status)
				if c.Reason != "" {
					msg += " (" + c.Reason + ")"
				}
				return HealthNodeNotReady, msg
			}
			ready = true
		}
	}
	if !ready {
		return HealthNodeNotReady, "the Node has no Ready condition"
	}
	if nls == nil {
		return HealthNotReported, "no NodeLocalStorage: the controller has not created it, or the node is not selected"
	}
	for _, c := range nls.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady && c.Status == metav1.ConditionFalse {
			msg := "NodeLocalStorage condition Ready is False"
			if c.Reason != "" {
				msg += " (" + c.Reason + ")"
			}
			if c.Message != "" {
				msg += ": " + c.Message
			}
			return HealthStorageNotReady, msg
		}
	}
	if nls.Status.NodeStorageInfo.State.LastHeartbeatTime == nil && len(nls.Status.NodeStorageInfo.DeviceInfos) == 0 && len(nls.Status.NodeStorageInfo.VolumeGroups) == 0 {
		return HealthNotReported, "the agent has not reported this node's storage yet"
	}
	return HealthReady, ""
}

func buildNode(name string, node *corev1.Node, nls *v1alpha1.NodeLocalStorage, charges []pvCharge, problems []string, prefixes []string) Node {
	out := Node{Name: name, Resources: []Resource{}}
	out.Health, out.Message = nodeHealth(node, nls)
	resources := map[resourceKey]*Resource{}
	get := func(k resourceKey) *Resource {
		r := resources[k]
		if r == nil {
			r = &Resource{Kind: k.kind, Name: k.name}
			resources[k] = r
		}
		return r
	}
	offered := map[resourceKey]bool{}
	skipped := map[resourceKey]string{}
	reported := map[resourceKey]bool{}
	conditions := map[resourceKey]v1alpha1.StorageConditionType{}
	var existing []nodecap.ExistingVolume
	if nls != nil {
		ns, lc := nodecap.FromNLS(nls)
		media := map[string]core.MediaType{}
		for _, d := range ns.Devices {
			media[d.Name] = d.Media
		}
		res, err := nodecap.Compute(ns, lc, nls.Annotations[core.ReservedAnnotation], nodecap.Options{OwnedLVPrefixes: prefixes})
		if err != nil {
			if out.Health == HealthReady {
				out.Health, out.Message = HealthConfigInvalid, err.Error()
			}
		}
		for _, vg := range res.Capacity.VGs {
			k := resourceKey{name, KindVG, vg.Name}
			r := get(k)
			r.AllocatableBytes = vg.AllocatableBytes
			r.Media = vgMedia(ns, vg.Name, media)
			offered[k] = true
		}
		for _, d := range res.Capacity.Devices {
			k := resourceKey{name, KindDevice, d.Name}
			r := get(k)
			r.AllocatableBytes, r.Media = d.SizeBytes, string(d.Media)
			offered[k] = true
		}
		for _, mp := range res.Capacity.MountPoints {
			k := resourceKey{name, KindMountPoint, mp.Name}
			r := get(k)
			r.AllocatableBytes, r.Media = mp.SizeBytes, string(mp.Media)
			offered[k] = true
		}
		for _, s := range res.Skipped {
			skipped[resourceKey{name, kindWord(s.Kind), s.Name}] = s.Reason
		}
		existing = res.Existing
		info := &nls.Status.NodeStorageInfo
		for _, vg := range info.VolumeGroups {
			k := resourceKey{name, KindVG, vg.Name}
			conditions[k], reported[k] = vg.Condition, true
		}
		for _, d := range info.DeviceInfos {
			k := resourceKey{name, KindDevice, d.Name}
			conditions[k], reported[k] = d.Condition, true
		}
		for _, mp := range info.MountPoints {
			k := resourceKey{name, KindMountPoint, mp.Name}
			conditions[k], reported[k] = mp.Condition, true
		}
	}

	handles := map[string]bool{}
	for _, ch := range charges {
		r := get(ch.key)
		r.RequestedBytes += ch.volume.Bytes
		r.Volumes = append(r.Volumes, ch.volume)
		handles[ch.handle] = true
	}
	// Open-Local's LVs without a PV still take their space.
	for _, lv := range existing {
		if handles[lv.Name] {
			continue
		}
		r := get(resourceKey{name, KindVG, lv.VG})
		r.RequestedBytes += lv.SizeBytes
		r.Volumes = append(r.Volumes, Volume{Name: lv.Name, Bytes: lv.SizeBytes})
	}

	for k, r := range resources {
		if !offered[k] && r.Kind != KindVG {
			// A held device or mount point: size it from the report.
			r.AllocatableBytes, r.Media = reportedSize(nls, k)
		}
		exclusive := r.Kind != KindVG
		switch {
		case exclusive && len(r.Volumes) > 0:
			r.FreeBytes = 0
		default:
			r.FreeBytes = max(0, r.AllocatableBytes-r.RequestedBytes)
		}
		sort.Slice(r.Volumes, func(a, b int) bool { return r.Volumes[a].Name < r.Volumes[b].Name })
		r.Health, r.Message = resourceHealth(out, k, r, offered[k], reported[k], skipped[k], conditions[k], exclusive)
		out.Resources = append(out.Resources, *r)
	}
	sort.Slice(out.Resources, func(a, b int) bool {
		ra, rb := &out.Resources[a], &out.Resources[b]
		if ra.Kind != rb.Kind {
			return kindOrder(ra.Kind) < kindOrder(rb.Kind)
		}
		return ra.Name < rb.Name
	})
	if len(problems) > 0 {
		sort.Strings(problems)
		msg := strings.Join(problems, "; ")
		if out.Message != "" {
			out.Message += "; " + msg
		} else {
			out.Message = msg
		}
	}
	return out
}

func resourceHealth(n Node, k resourceKey, r *Resource, offered, reported bool, why string, cond v1alpha1.StorageConditionType, exclusive bool) (string, string) {
	switch {
	case n.Health != HealthReady:
		return n.Health, ""
	case cond == v1alpha1.StorageFault:
		return HealthDiskFault, "the agent reports the " + strings.ToLower(k.kind) + " as faulty"
	case !offered && !reported:
		return HealthNotReported, "the agent does not report " + k.name + ", yet PersistentVolumes use it"
	case !offered:
		if why == "" {
			why = "not selected by listConfig"
		}
		if exclusive && len(r.Volumes) == 1 {
			// A device a volume already holds is no longer offered: that
			// is how it should be.
			return HealthReady, ""
		}
		return HealthNotAllocatable, why
	case exclusive && len(r.Volumes) > 1:
		return HealthOvercommitted, fmt.Sprintf("%d volumes share a %s that only one may hold", len(r.Volumes), strings.ToLower(k.kind))
	case r.RequestedBytes > r.AllocatableBytes:
		return HealthOvercommitted, fmt.Sprintf("requested exceeds allocatable by %s", FormatBytes(r.RequestedBytes-r.AllocatableBytes))
	}
	return HealthReady, ""
}

// reportedSize is the size and medium the agent reports for a device or
// mount point (0 when it does not report it).
func reportedSize(nls *v1alpha1.NodeLocalStorage, k resourceKey) (int64, string) {
	if nls == nil {
		return 0, ""
	}
	info := &nls.Status.NodeStorageInfo
	media := map[string]string{}
	for _, d := range info.DeviceInfos {
		media[d.Name] = string(d.MediaType)
	}
	switch k.kind {
	case KindDevice:
		for _, d := range info.DeviceInfos {
			if d.Name == k.name {
				return clamp(d.Total), string(d.MediaType)
			}
		}
	case KindMountPoint:
		for _, mp := range info.MountPoints {
			if mp.Name == k.name {
				return clamp(mp.Total), media[mp.Device]
			}
		}
	}
	return 0, ""
}

// vgMedia is the medium of a VG's PVs: one medium, "mixed", or "" when unknown.
func vgMedia(ns core.NodeStorage, vg string, media map[string]core.MediaType) string {
	seen := ""
	for _, v := range ns.VGs {
		if v.Name != vg {
			continue
		}
		for _, pv := range v.PVs {
			m := string(media[pv.Name])
			switch {
			case m == "":
				return ""
			case seen == "":
				seen = m
			case seen != m:
				return "mixed"
			}
		}
	}
	return seen
}

func kindWord(k core.ResourceKind) string {
	switch k {
	case core.KindDevice:
		return KindDevice
	case core.KindMountPoint:
		return KindMountPoint
	default:
		return KindVG
	}
}

func kindOrder(k string) int {
	switch k {
	case KindVG:
		return 0
	case KindDevice:
		return 1
	default:
		return 2
	}
}

func clamp(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
