package cache

import (
	"testing"

	"github.com/open-local/open-local/core"
	fx "github.com/open-local/open-local/extender/fixture"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func TestRestoreFromSnapshotPinsTheSourceNode(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	src := fx.Selected(fx.PVC("ns", "src", "lvm", 10*gi, 1), "n2")
	srcPV := fx.PV(src, fx.Placement{Node: "n2", VG: "pool"})
	c.UpsertPVC(fx.Bound(src, srcPV.Name))
	c.UpsertPV(srcPV)
	c.UpsertSnapshot(fx.Snapshot("ns", "snap", "content-1"))
	c.UpsertSnapshotContent(fx.SnapshotContent("content-1", srcPV.Name, "snap-1"))
	c.UpsertStorageClass(fx.StorageClass("lvm-ro", map[string]string{"volumeType": "LVM", ParamReadOnly: "true"}))

	copyPVC := fx.RestoreFrom(fx.PVC("ns", "copy", "lvm", 10*gi, 2), "snap")
	roPVC := fx.RestoreFrom(fx.PVC("ns", "ro", "lvm-ro", 10*gi, 3), "snap")
	clonePVC := fx.CloneOf(fx.PVC("ns", "clone", "lvm", 10*gi, 4), "src")
	for _, p := range []*corev1.PersistentVolumeClaim{copyPVC, roPVC, clonePVC} {
		c.UpsertPVC(p)
	}
	r := c.Request(fx.Pod("ns", "a", "copy", "ro", "clone"))
	require.NoError(t, r.Err)
	require.Len(t, r.Volumes, 3)
	assert.Equal(t, core.VolumeRequest{Claim: "ns/copy", Kind: core.VolumeLVM, Bytes: 10 * gi, Node: "n2"}, r.Volumes[0], "a writable restore copies on the source node")
	assert.Equal(t, core.VolumeRequest{Claim: "ns/ro", Kind: core.VolumeSnapshotRestore, Bytes: 10 * gi, Node: "n2"}, r.Volumes[1], "a read-only restore takes nothing")
	assert.Equal(t, core.VolumeRequest{Claim: "ns/clone", Kind: core.VolumeLVM, Bytes: 10 * gi, Node: "n2"}, r.Volumes[2])

	// A pre-provisioned content names only the snapshot LV: the node whose agent reports it.
	c.UpsertNLS(fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 100 * gi, LVs: map[string]int64{"snap-static": gi}}}, nil, nil))
	c.UpsertSnapshot(fx.Snapshot("ns", "static", "content-2"))
	c.UpsertSnapshotContent(fx.SnapshotContent("content-2", "", "snap-static"))
	c.UpsertPVC(fx.RestoreFrom(fx.PVC("ns", "fromstatic", "lvm", 5*gi, 5), "static"))
	r = c.Request(fx.Pod("ns", "b", "fromstatic"))
	require.NoError(t, r.Err)
	assert.Equal(t, "n1", r.Volumes[0].Node)

	// Unknown sources fail the pod with a message naming them.
	c.UpsertPVC(fx.RestoreFrom(fx.PVC("ns", "lost", "lvm", 5*gi, 6), "missing"))
	r = c.Request(fx.Pod("ns", "c", "lost"))
	assert.ErrorContains(t, r.Err, "VolumeSnapshot ns/missing not found")
	c.SetSnapshotAPI(false)
	r = c.Request(fx.Pod("ns", "a", "copy"))
	assert.ErrorContains(t, r.Err, "snapshot.storage.k8s.io/v1 API")
	c.UpsertPVC(fx.CloneOf(fx.PVC("ns", "clone2", "lvm", 10*gi, 7), "unbound"))
	c.UpsertPVC(fx.PVC("ns", "unbound", "lvm", 10*gi, 8))
	r = c.Request(fx.Pod("ns", "d", "clone2"))
	assert.ErrorContains(t, r.Err, "clone source ns/unbound is not bound")
}

func TestPodRequestKinds(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	ebs := fx.StorageClass("ebs", map[string]string{"type": "gp3"})
	ebs.Provisioner = "ebs.csi.aws.com"
	c.UpsertStorageClass(ebs)
	c.UpsertPVC(fx.PVC("ns", "web", "ebs", 10*gi, 1))
	none := fx.PVC("ns", "static", "", gi, 1)
	c.UpsertPVC(none)

	r := c.Request(fx.Pod("ns", "p", "web", "static"))
	assert.False(t, r.Ours, "PVCs of other drivers and without class are not Open-Local's")
	assert.NoError(t, r.Err)

	r = c.Request(fx.Pod("ns", "p", "web", "ghost"))
	assert.True(t, r.Ours)
	assert.ErrorContains(t, r.Err, "persistentvolumeclaim ns/ghost not found")

	c.UpsertPVC(fx.PVC("ns", "typo", "lvmm", gi, 1))
	r = c.Request(fx.Pod("ns", "p", "typo"))
	assert.ErrorContains(t, r.Err, `storageclass "lvmm" not found`)

	c.UpsertStorageClass(fx.StorageClass("broken", map[string]string{"volumeType": "lvm"}))
	c.UpsertPVC(fx.PVC("ns", "bad", "broken", gi, 1))
	r = c.Request(fx.Pod("ns", "p", "bad"))
	assert.ErrorContains(t, r.Err, `storageclass broken: invalid volumeType "lvm"`)

	bad := fx.WithInline(fx.Pod("ns", "inline"), "v", "", "")
	r = c.Request(bad)
	assert.ErrorContains(t, r.Err, "volumeAttributes.vgName is required")

	// Generic ephemeral volumes are PVCs named <pod>-<volume>.
	eph := fx.Pod("ns", "eph")
	eph.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}}}
	c.UpsertPVC(fx.PVC("ns", "eph-scratch", "lvm", 3*gi, 1))
	r = c.Request(eph)
	require.NoError(t, r.Err)
	assert.Equal(t, core.ClaimID("ns/eph-scratch"), r.Volumes[0].Claim)
}

func TestDefaultStorageClass(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	pvc := fx.PVC("ns", "d", "", 5*gi, 1)
	pvc.Spec.StorageClassName = nil
	c.UpsertPVC(pvc)
	assert.False(t, c.Request(fx.Pod("ns", "p", "d")).Ours, "no default class")
	def := fx.LVMClass("default-lvm", "")
	def.Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
	c.UpsertStorageClass(def)
	r := c.Request(fx.Pod("ns", "p", "d"))
	require.True(t, r.Ours)
	assert.Equal(t, core.VolumeLVM, r.Volumes[0].Kind)
	c.UpsertPVC(fx.Selected(pvc, "n1"))
	assert.Equal(t, 5*gi, requested(t, c, "n1", "pool"), "annotated PVCs of the default class are charged")
	c.DeleteStorageClass("default-lvm")
	assert.Zero(t, requested(t, c, "n1", "pool"))
}

func TestHostnameLabelDiffersFromNodeName(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	pvc := fx.PVC("ns", "data", "lvm", 10*gi, 1)
	pv := fx.PV(pvc, fx.Placement{Node: "ip-10-0-0-1", VG: "pool"})
	c.UpsertPVC(fx.Bound(pvc, pv.Name))
	c.UpsertPV(pv)
	assert.Zero(t, requested(t, c, "n1", "pool"), "hostname unknown yet")
	c.UpsertNode(fx.Node("n1", "ip-10-0-0-1"))
	assert.Equal(t, 10*gi, requested(t, c, "n1", "pool"))
	r := c.Request(fx.Pod("ns", "p", "data"))
	assert.Equal(t, "n1", r.Volumes[0].Node)
	c.DeleteNode("n1")
	assert.Zero(t, requested(t, c, "n1", "pool"))
}

func TestInvalidNodeLocalStorage(t *testing.T) {
	c, _ := newCache(t)
	nls := fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 100 * gi}}, nil, nil)
	nls.Spec.ListConfig.VGs.Include = []string{"pool-("}
	c.UpsertNLS(nls)
	v, ok := c.View("n1")
	require.True(t, ok)
	assert.Contains(t, v.Nodes[0].Error, "invalid regular expression")
	assert.Empty(t, v.Nodes[0].VolumeGroups, "an invalid listConfig offers nothing")
	_, ok = c.View("n9")
	assert.False(t, ok)
}
