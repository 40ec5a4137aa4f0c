package cache

import (
	"context"
	"testing"
	"time"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	fx "github.com/open-local/open-local/extender/fixture"
	localfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func TestRunFeedsTheCacheFromInformers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	src := fx.Selected(fx.PVC("ns", "src", "lvm", 10*gi, 1), "n1")
	srcPV := fx.PV(src, fx.Placement{Node: "n1", VG: "pool"})
	restore := fx.RestoreFrom(fx.PVC("ns", "restore", "lvm", 10*gi, 2), "snap")
	pod := fx.OnNode(fx.WithInline(fx.Pod("ns", "app", "src", "restore"), "tmp", "pool", "2Gi"), "n1")
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "BIG", Value: "what the cache does not keep"}}
	node := fx.Node("n1", "n1")
	node.Status.Images = []corev1.ContainerImage{{Names: []string{"registry/huge:1"}, SizeBytes: 1 << 30}}
	kube := fake.NewClientset(fx.Bound(src, srcPV.Name), srcPV, restore, pod, node, fx.LVMClass("lvm", ""))
	kube.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: "snapshot.storage.k8s.io/v1",
		APIResources: []metav1.APIResource{{Name: "volumesnapshots", Namespaced: true, Kind: "VolumeSnapshot"}, {Name: "volumesnapshotcontents", Kind: "VolumeSnapshotContent"}},
	}}
	local := localfake.NewSimpleClientset(fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 100 * gi}}, nil, nil))
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		snapshotGVR: "VolumeSnapshotList", contentGVR: "VolumeSnapshotContentList",
	}, fx.Snapshot("ns", "snap", "content"), fx.SnapshotContent("content", srcPV.Name, "snap-1"))

	c := New(Options{})
	require.NoError(t, c.Run(ctx, Clients{Kube: kube, Local: local, Dynamic: dyn}))
	require.True(t, c.Synced())
	assert.Equal(t, 12*gi, requested(t, c, "n1", "pool"), "the PV and the inline volume")
	r := c.Request(fx.Pod("ns", "other", "restore"))
	require.NoError(t, r.Err)
	assert.Equal(t, "n1", r.Volumes[0].Node, "the restore found its source through the snapshot objects")

	// The informer stores hold trimmed objects.
	c.mu.RLock()
	assert.Contains(t, c.pods, "ns/app")
	c.mu.RUnlock()

	// Events keep flowing: a new annotated PVC is charged, a deletion released.
	_, err := kube.CoreV1().PersistentVolumeClaims("ns").Create(ctx, fx.Selected(fx.PVC("ns", "late", "lvm", 5*gi, 3), "n1"), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return requested(t, c, "n1", "pool") == 17*gi }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, kube.CoreV1().Pods("ns").Delete(ctx, "app", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return requested(t, c, "n1", "pool") == 15*gi }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, local.CsiV1alpha1().NodeLocalStorages().Delete(ctx, "n1", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { _, ok := c.View("n1"); return !ok }, 10*time.Second, 10*time.Millisecond)
}

func TestRunWithoutSnapshotAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	restore := fx.RestoreFrom(fx.PVC("ns", "restore", "lvm", 10*gi, 2), "snap")
	kube := fake.NewClientset(restore, fx.LVMClass("lvm", ""))
	c := New(Options{})
	require.NoError(t, c.Run(ctx, Clients{Kube: kube, Local: localfake.NewSimpleClientset()}))
	r := c.Request(fx.Pod("ns", "p", "restore"))
	assert.ErrorContains(t, r.Err, "snapshot.storage.k8s.io/v1 API")
}

func TestTransformsKeepWhatTheCacheReads(t *testing.T) {
	pod := fx.Unschedulable(fx.WithInline(fx.Pod("ns", "p", "a"), "tmp", "pool", "3Gi"))
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "eph", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{}}}},
		corev1.Volume{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}})
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	stripped, err := stripKube(pod)
	require.NoError(t, err)
	assert.Equal(t, parsePod(pod), parsePod(stripped.(*corev1.Pod)))
	assert.Empty(t, stripped.(*corev1.Pod).Spec.Containers)
	assert.Len(t, stripped.(*corev1.Pod).Spec.Volumes, 3, "the configMap volume is dropped")

	pvc := fx.Selected(fx.PVC("ns", "a", "lvm", gi, 1), "n1")
	pvc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	s2, _ := stripKube(pvc)
	assert.Equal(t, "n1", s2.(*corev1.PersistentVolumeClaim).Annotations[AnnSelectedNode])
	assert.Empty(t, s2.(*corev1.PersistentVolumeClaim).ManagedFields)

	nls := fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 10 * gi}}, []fx.Device{{Name: "/dev/vdc", Bytes: gi, Media: "ssd"}}, nil)
	nls.Annotations = map[string]string{"csi.aliyun.com/storage-reserved": `{"pool":"1Gi"}`, "other": "x"}
	s3, _ := stripNLS(nls)
	assert.Equal(t, parseNLS(nls, nil), parseNLS(s3.(*v1alpha1.NodeLocalStorage), nil))

	u := fx.SnapshotContent("content", "vol", "snap")
	s4, _ := stripSnapshot(u)
	assert.Equal(t, parseContent(u), parseContent(s4.(*unstructured.Unstructured)))
}
