package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
)

const (
	gi   = core.GiB
	pool = "open-local-pool-0"
)

func readyNode(name string) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

// reportedNLS is a NodeLocalStorage as the agent writes it: a 100Gi VG on
// /dev/vdb (ssd), blank devices /dev/vdc (50Gi ssd) and /dev/vdd (200Gi
// hdd), the given LVs in the VG.
func reportedNLS(name string, lvs ...v1alpha1.LogicalVolume) v1alpha1.NodeLocalStorage {
	var used uint64
	for _, lv := range lvs {
		used += lv.Total
	}
	now := metav1.Now()
	return v1alpha1.NodeLocalStorage{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.NodeLocalStorageSpec{NodeName: name, ListConfig: v1alpha1.ListConfig{
			VGs:     v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+"}},
			Devices: v1alpha1.ListFilter{Include: []string{"/dev/vd[c-z]"}},
		}},
		Status: v1alpha1.NodeLocalStorageStatus{
			NodeStorageInfo: v1alpha1.NodeStorageInfo{
				DeviceInfos: []v1alpha1.DeviceInfo{
					{Name: "/dev/vdb", MediaType: v1alpha1.MediaTypeSSD, Total: uint64(100 * gi)},
					{Name: "/dev/vdc", MediaType: v1alpha1.MediaTypeSSD, Total: uint64(50 * gi)},
					{Name: "/dev/vdd", MediaType: v1alpha1.MediaTypeHDD, Total: uint64(200 * gi)},
				},
				VolumeGroups: []v1alpha1.VolumeGroup{{
					Name: pool, PhysicalVolumes: []string{"/dev/vdb"}, LogicalVolumes: lvs,
					Total: uint64(100 * gi), Available: uint64(100*gi) - used, Allocatable: uint64(100 * gi),
					Condition: v1alpha1.StorageReady,
				}},
				State: v1alpha1.StorageState{Type: v1alpha1.StorageReady, Status: metav1.ConditionTrue, LastHeartbeatTime: &now},
			},
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSynced}},
		},
	}
}

func lv(name string, bytes int64) v1alpha1.LogicalVolume {
	return v1alpha1.LogicalVolume{Name: name, VGName: pool, Total: uint64(bytes)}
}

func pvOn(name, host string, bytes int64, claim string, attrs map[string]string) corev1.PersistentVolume {
	pv := corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(bytes, resource.BinarySI)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "local.csi.aliyun.com", VolumeHandle: name, VolumeAttributes: attrs,
			}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{host}}},
			}}}},
		},
	}
	if claim != "" {
		ns, n, _ := strings.Cut(claim, "/")
		pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: ns, Name: n}
	}
	return pv
}

func lvmPV(name, host string, bytes int64, claim string) corev1.PersistentVolume {
	return pvOn(name, host, bytes, claim, map[string]string{"volumeType": "LVM", "vgName": pool})
}

func findNode(t *testing.T, r *Report, name string) Node {
	t.Helper()
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("node %s not in the report: %+v", name, r.Nodes)
	return Node{}
}

func findResource(t *testing.T, n Node, kind, name string) Resource {
	t.Helper()
	for _, r := range n.Resources {
		if r.Kind == kind && r.Name == name {
			return r
		}
	}
	t.Fatalf("%s %s not on node %s: %+v", kind, name, n.Name, n.Resources)
	return Resource{}
}

func TestRequestedSumsPVsAndLVsWithoutPV(t *testing.T) {
	nls := reportedNLS("node-1", lv("local-a", 10*gi), lv("local-b", 20*gi), lv("snap-1", 4*gi), lv("foreign", 5*gi))
	pvs := []corev1.PersistentVolume{
		lvmPV("local-a", "node-1", 10*gi, "default/data-a"),
		lvmPV("local-b", "node-1", 20*gi, "default/data-b"),
		// Another driver's PV on the same node is not Open-Local's business.
		{ObjectMeta: metav1.ObjectMeta{Name: "nfs"}, Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Ti")},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "nfs.csi.k8s.io", VolumeHandle: "x"}},
		}},
	}
	rep, err := Build([]corev1.Node{readyNode("node-1")}, []v1alpha1.NodeLocalStorage{nls}, pvs, Options{})
	require.NoError(t, err)
	n := findNode(t, rep, "node-1")
	assert.Equal(t, HealthReady, n.Health)
	vg := findResource(t, n, KindVG, pool)
	// The foreign LV is subtracted from allocatable, the snapshot counted as requested.
	assert.Equal(t, 95*gi, vg.AllocatableBytes)
	assert.Equal(t, 34*gi, vg.RequestedBytes)
	assert.Equal(t, 61*gi, vg.FreeBytes)
	assert.Equal(t, "ssd", vg.Media)
	assert.Equal(t, HealthReady, vg.Health)
	assert.Equal(t, []Volume{
		{Name: "local-a", PV: true, Claim: "default/data-a", Bytes: 10 * gi},
		{Name: "local-b", PV: true, Claim: "default/data-b", Bytes: 20 * gi},
		{Name: "snap-1", Bytes: 4 * gi},
	}, vg.Volumes)
	// The devices listConfig selects are offered whole; /dev/vdb is the VG's PV.
	assert.Equal(t, []string{"VG " + pool, "DEVICE /dev/vdc", "DEVICE /dev/vdd"}, resourceNames(n))
	assert.Empty(t, rep.Overcommitted())
}

func resourceNames(n Node) []string {
	out := make([]string, len(n.Resources))
	for i, r := range n.Resources {
		out[i] = r.Kind + " " + r.Name
	}
	return out
}

func TestDeviceBoundToAVolume(t *testing.T) {
	nls := reportedNLS("node-1")
	pvs := []corev1.PersistentVolume{
		pvOn("local-dev", "node-1", 50*gi, "default/raw", map[string]string{"volumeType": "Device", "Device": "/dev/vdc", "mediaType": "ssd"}),
	}
	rep, err := Build([]corev1.Node{readyNode("node-1")}, []v1alpha1.NodeLocalStorage{nls}, pvs, Options{})
	require.NoError(t, err)
	n := findNode(t, rep, "node-1")
	bound := findResource(t, n, KindDevice, "/dev/vdc")
	assert.Equal(t, Resource{Kind: KindDevice, Name: "/dev/vdc", Media: "ssd", AllocatableBytes: 50 * gi, RequestedBytes: 50 * gi, FreeBytes: 0,
		Health: HealthReady, Volumes: []Volume{{Name: "local-dev", PV: true, Claim: "default/raw", Bytes: 50 * gi}}}, bound)
	free := findResource(t, n, KindDevice, "/dev/vdd")
	assert.Equal(t, 200*gi, free.FreeBytes)
	assert.Equal(t, "hdd", free.Media)
	assert.Equal(t, int64(0), free.RequestedBytes)
}

func TestDeviceHeldTwiceIsOvercommitted(t *testing.T) {
	attrs := map[string]string{"volumeType": "Device", "Device": "/dev/vdc"}
	pvs := []corev1.PersistentVolume{pvOn("local-1", "node-1", 50*gi, "", attrs), pvOn("local-2", "node-1", 50*gi, "", attrs)}
	rep, err := Build([]corev1.Node{readyNode("node-1")}, []v1alpha1.NodeLocalStorage{reportedNLS("node-1")}, pvs, Options{})
	require.NoError(t, err)
	d := findResource(t, findNode(t, rep, "node-1"), KindDevice, "/dev/vdc")
	assert.Equal(t, HealthOvercommitted, d.Health)
	assert.Equal(t, []string{"node-1/DEVICE//dev/vdc"}, rep.Overcommitted())
}

func TestNodeWithoutNodeLocalStorage(t *testing.T) {
	rep, err := Build([]corev1.Node{readyNode("node-1"), readyNode("node-2")}, []v1alpha1.NodeLocalStorage{reportedNLS("node-1")}, nil, Options{})
	require.NoError(t, err)
	require.Len(t, rep.Nodes, 2)
	n := findNode(t, rep, "node-2")
	assert.Equal(t, HealthNotReported, n.Health)
	assert.Contains(t, n.Message, "no NodeLocalStorage")
	assert.Empty(t, n.Resources)

	var out bytes.Buffer
	require.NoError(t, rep.WriteTable(&out))
	assert.Regexp(t, `(?m)^node-2\s+-\s+-\s+-\s+-\s+-\s+-\s+NotReported$`, out.String())
	assert.Regexp(t, `(?m)^node-1\s+VG\s+open-local-pool-0\s+ssd\s+100Gi\s+0\s+100Gi\s+Ready$`, out.String())
	assert.Contains(t, out.String(), "node-2: no NodeLocalStorage")
}

func TestOvercommittedVG(t *testing.T) {
	nls := reportedNLS("node-1", lv("local-a", 60*gi), lv("local-b", 40*gi))
	nls.Annotations = map[string]string{core.ReservedAnnotation: `{"open-local-pool-0":"10Gi"}`}
	pvs := []corev1.PersistentVolume{lvmPV("local-a", "node-1", 60*gi, ""), lvmPV("local-b", "node-1", 40*gi, "")}
	rep, err := Build([]corev1.Node{readyNode("node-1")}, []v1alpha1.NodeLocalStorage{nls}, pvs, Options{})
	require.NoError(t, err)
	vg := findResource(t, findNode(t, rep, "node-1"), KindVG, pool)
	assert.Equal(t, 90*gi, vg.AllocatableBytes)
	assert.Equal(t, 100*gi, vg.RequestedBytes)
	assert.Equal(t, int64(0), vg.FreeBytes)
	assert.Equal(t, HealthOvercommitted, vg.Health)
	assert.Contains(t, vg.Message, "by 10Gi")
	assert.Equal(t, []string{"node-1/VG/open-local-pool-0"}, rep.Overcommitted())
}

func TestNodeHealthReachesItsResources(t *testing.T) {
	notReady := readyNode("node-1")
	notReady.Status.Conditions[0] = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}
	failing := reportedNLS("node-2")
	failing.Status.Conditions[0] = metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonVGCreateFailed, Message: "/dev/vdb carries ntfs"}
	pvs := []corev1.PersistentVolume{lvmPV("local-x", "node-3", 1*gi, "")}
	rep, err := Build([]corev1.Node{notReady, readyNode("node-2")}, []v1alpha1.NodeLocalStorage{reportedNLS("node-1"), failing}, pvs, Options{})
	require.NoError(t, err)

	n1 := findNode(t, rep, "node-1")
	assert.Equal(t, HealthNodeNotReady, n1.Health)
	assert.Contains(t, n1.Message, "Unknown (NodeStatusUnknown)")
	assert.Equal(t, HealthNodeNotReady, findResource(t, n1, KindVG, pool).Health)

	n2 := findNode(t, rep, "node-2")
	assert.Equal(t, HealthStorageNotReady, n2.Health)
	assert.Contains(t, n2.Message, "/dev/vdb carries ntfs")

	// A PV on a node the cluster no longer has still shows, with its charge.
	n3 := findNode(t, rep, "node-3")
	assert.Equal(t, HealthNodeMissing, n3.Health)
	assert.Equal(t, 1*gi, findResource(t, n3, KindVG, pool).RequestedBytes)
}

func TestHostnameLabelMapsPVsToNodes(t *testing.T) {
	node := readyNode("node-1")
	node.Labels[corev1.LabelHostname] = "host-a.example"
	pvs := []corev1.PersistentVolume{lvmPV("local-a", "host-a.example", 3*gi, "")}
	rep, err := Build([]corev1.Node{node}, []v1alpha1.NodeLocalStorage{reportedNLS("node-1", lv("local-a", 3*gi))}, pvs, Options{})
	require.NoError(t, err)
	require.Len(t, rep.Nodes, 1)
	assert.Equal(t, 3*gi, findResource(t, rep.Nodes[0], KindVG, pool).RequestedBytes)
}

func TestVolumeOnResourceTheAgentDoesNotReport(t *testing.T) {
	pvs := []corev1.PersistentVolume{
		pvOn("local-a", "node-1", 3*gi, "", map[string]string{"volumeType": "LVM", "vgName": "gone"}),
		pvOn("local-b", "node-1", 3*gi, "", map[string]string{"volumeType": "LVM"}),
	}
	rep, err := Build([]corev1.Node{readyNode("node-1")}, []v1alpha1.NodeLocalStorage{reportedNLS("node-1")}, pvs, Options{})
	require.NoError(t, err)
	n := findNode(t, rep, "node-1")
	r := findResource(t, n, KindVG, "gone")
	assert.Equal(t, HealthNotReported, r.Health)
	assert.Equal(t, 3*gi, r.RequestedBytes)
	assert.Contains(t, n.Message, "PersistentVolume local-b: volumeAttributes.vgName is missing")
}

func TestNodeFilter(t *testing.T) {
	nodes := []corev1.Node{readyNode("node-1"), readyNode("node-2")}
	rep, err := Build(nodes, nil, nil, Options{Node: "node-2"})
	require.NoError(t, err)
	require.Len(t, rep.Nodes, 1)
	assert.Equal(t, "node-2", rep.Nodes[0].Name)

	_, err = Build(nodes, nil, nil, Options{Node: "node-9"})
	require.ErrorIs(t, err, ErrNoSuchNode)
	assert.Contains(t, err.Error(), `node "node-9"`)
}

// TestJSONShape pins the field names scripts read.
func TestJSONShape(t *testing.T) {
	nls := reportedNLS("node-1", lv("local-a", 10*gi))
	nls.Status.NodeStorageInfo.DeviceInfos = nls.Status.NodeStorageInfo.DeviceInfos[:1]
	rep, err := Build([]corev1.Node{readyNode("node-1"), readyNode("node-2")}, []v1alpha1.NodeLocalStorage{nls},
		[]corev1.PersistentVolume{lvmPV("local-a", "node-1", 10*gi, "default/data")}, Options{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, rep.Write(&out, OutputJSON))
	want := `{
  "nodes": [
    {
      "name": "node-1",
      "health": "Ready",
      "resources": [
        {
          "kind": "VG",
          "name": "open-local-pool-0",
          "media": "ssd",
          "allocatableBytes": 107374182400,
          "requestedBytes": 10737418240,
          "freeBytes": 96636764160,
          "health": "Ready",
          "volumes": [
            {
              "name": "local-a",
              "pv": true,
              "claim": "default/data",
              "bytes": 10737418240
            }
          ]
        }
      ]
    },
    {
      "name": "node-2",
      "health": "NotReported",
      "message": "no NodeLocalStorage: the controller has not created it, or the node is not selected",
      "resources": []
    }
  ]
}
`
	assert.Equal(t, want, out.String())
	var back Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &back))
	assert.Equal(t, *rep, back)

	err = rep.Write(&out, "yaml")
	require.ErrorIs(t, err, core.ErrInvalid)
	assert.Contains(t, err.Error(), "accepted: table, json")
}

func TestCollectFromClients(t *testing.T) {
	node := readyNode("node-1")
	nls := reportedNLS("node-1", lv("local-a", 10*gi))
	pv := lvmPV("local-a", "node-1", 10*gi, "default/data")
	kube := kubefake.NewClientset([]runtime.Object{&node, &pv}...)
	local := olfake.NewSimpleClientset(&nls)
	rep, err := Collect(context.Background(), kube, local, Options{})
	require.NoError(t, err)
	require.Len(t, rep.Nodes, 1)
	vg := findResource(t, rep.Nodes[0], KindVG, pool)
	assert.Equal(t, 10*gi, vg.RequestedBytes)
	assert.Equal(t, 90*gi, vg.FreeBytes)

	_, err = Collect(context.Background(), kube, local, Options{Node: "nope"})
	assert.True(t, errors.Is(err, ErrNoSuchNode))
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{
		0: "0", 512: "512", 1024: "1Ki", 100 * gi: "100Gi", 100*gi - core.MiB: "99.9Gi", 1<<62 + 1: "4.0Ei",
		3 * gi / 2: "1.5Gi", 1 << 40: "1Ti", -2 * gi: "-2Gi", 4 * core.MiB: "4Mi",
	} {
		assert.Equal(t, want, FormatBytes(in), "FormatBytes(%d)", in)
	}
}
