package cache

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/open-local/open-local/core"
	fx "github.com/open-local/open-local/extender/fixture"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

const gi = fx.GiB

// twoNodes: n1 and n2, each with VG pool (100Gi) and an ssd device (50Gi).
func twoNodes(c *Cache) {
	for _, n := range []string{"n1", "n2"} {
		c.UpsertNLS(fx.NLS(n, []fx.VG{{Name: "pool", Bytes: 100 * gi}}, []fx.Device{{Name: "/dev/vdc", Bytes: 50 * gi, Media: "ssd"}}, nil))
	}
	c.UpsertStorageClass(fx.LVMClass("lvm", ""))
	c.UpsertStorageClass(fx.LVMClass("lvm-pool", "pool"))
	c.UpsertStorageClass(fx.DeviceClass("ssd", "ssd"))
}

func newCache(t *testing.T) (*Cache, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(fx.Epoch)
	c := New(Options{Strategy: core.Binpack, Clock: clk})
	c.MarkSynced()
	return c, clk
}

func requested(t *testing.T, c *Cache, node, vg string) int64 {
	t.Helper()
	v, ok := c.View(node)
	require.True(t, ok, "node %s", node)
	for _, g := range v.Nodes[0].VolumeGroups {
		if g.Name == vg {
			return g.Requested
		}
	}
	t.Fatalf("node %s has no VG %s", node, vg)
	return 0
}

func TestClaimChargedOnceAcrossSources(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	pvc := fx.PVC("ns", "data", "lvm", 10*gi, 1)
	c.UpsertPVC(pvc)
	c.UpsertPod(fx.Pod("ns", "app", "data"))
	assert.Zero(t, c.NumClaims(), "an unbound PVC without selected node takes nothing")

	// The reservation call books it...
	b, err := c.Reserve(ReserveRequest{Namespace: "ns", Name: "data", Node: "n1"})
	require.NoError(t, err)
	assert.Equal(t, Binding{Node: "n1", VGName: "pool", VolumeType: "LVM", PersistentVolumeClaim: "ns/data"}, b)
	again, err := c.Reserve(ReserveRequest{Namespace: "ns", Name: "data", Node: "n1", VolumeType: "LVM"})
	require.NoError(t, err)
	assert.Equal(t, b, again, "the call is idempotent")
	assert.Equal(t, 10*gi, requested(t, c, "n1", "pool"))

	// ...the annotation that follows changes nothing...
	c.UpsertPVC(fx.Selected(pvc, "n1"))
	assert.Equal(t, 10*gi, requested(t, c, "n1", "pool"))
	ci, src, ok := c.Claim("ns/data")
	require.True(t, ok)
	assert.Equal(t, SourceReservation, src)
	assert.Equal(t, core.Reserved, ci.State)

	// ...and the PV commits it where the volume really is.
	pv := fx.PV(pvc, fx.Placement{Node: "n1", VG: "pool"})
	c.UpsertPV(pv)
	c.UpsertPVC(fx.Bound(fx.Selected(pvc, "n1"), pv.Name))
	ci, src, ok = c.Claim("ns/data")
	require.True(t, ok)
	assert.Equal(t, SourcePV, src)
	assert.Equal(t, core.Committed, ci.State)
	assert.Equal(t, 1, c.NumClaims())
	assert.Equal(t, 10*gi, requested(t, c, "n1", "pool"))

	// Deleting the PVC leaves the PV's charge (a Retain PV keeps its LV);
	// deleting the PV releases it.
	c.DeletePVC("ns", "data")
	_, _, ok = c.Claim("pv:" + core.ClaimID(pv.Name))
	assert.True(t, ok, "the PV's charge is kept under its own name")
	c.DeletePV(pv.Name)
	assert.Zero(t, c.NumClaims())
	assert.Zero(t, requested(t, c, "n1", "pool"))
}

func TestAnnotationFirstThenPVOnAnotherVG(t *testing.T) {
	c, _ := newCache(t)
	c.UpsertNLS(fx.NLS("n1", []fx.VG{{Name: "a", Bytes: 100 * gi}, {Name: "b", Bytes: 100 * gi}}, nil, nil))
	c.UpsertStorageClass(fx.LVMClass("lvm", ""))
	pvc := fx.Selected(fx.PVC("ns", "data", "lvm", 10*gi, 1), "n1")
	c.UpsertPVC(pvc)
	ci, src, ok := c.Claim("ns/data")
	require.True(t, ok)
	assert.Equal(t, SourceAnnotation, src)
	// Binpack with equal VGs: the first one.
	assert.Equal(t, "a", ci.VG)

	// CSI created it in b: the PV is the truth.
	c.UpsertPV(fx.PV(pvc, fx.Placement{Node: "n1", VG: "b"}))
	ci, src, _ = c.Claim("ns/data")
	assert.Equal(t, SourcePV, src)
	assert.Equal(t, "b", ci.VG)
	assert.Zero(t, requested(t, c, "n1", "a"))
	assert.Equal(t, 10*gi, requested(t, c, "n1", "b"))
}

func TestRecreatedPVCDoesNotInheritTheOldPV(t *testing.T) {
	// open-local #269: a PVC re-created under the same name hit the stale
	// record of the first one and its reservation was skipped.
	c, _ := newCache(t)
	twoNodes(c)
	old := fx.Selected(fx.PVC("ns", "data", "lvm", 30*gi, 1), "n1")
	c.UpsertPVC(old)
	oldPV := fx.PV(old, fx.Placement{Node: "n1", VG: "pool"})
	c.UpsertPV(oldPV)
	c.DeletePVC("ns", "data") // the PV is Released, not yet deleted

	fresh := fx.Selected(fx.PVC("ns", "data", "lvm", 20*gi, 2), "n1")
	fresh.UID = "uid-second"
	c.UpsertPVC(fresh)
	assert.Equal(t, 50*gi, requested(t, c, "n1", "pool"), "old PV and new reservation both count")
	_, src, ok := c.Claim("ns/data")
	require.True(t, ok)
	assert.Equal(t, SourceAnnotation, src)

	c.DeletePV(oldPV.Name)
	assert.Equal(t, 20*gi, requested(t, c, "n1", "pool"))
	c.DeletePVC("ns", "data")
	assert.Zero(t, c.NumClaims())
}

func TestInlineVolumesChargedWhileThePodRuns(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	pod := fx.WithInline(fx.Pod("ns", "cache"), "scratch", "pool", "5Gi")
	c.UpsertPod(pod)
	assert.Zero(t, c.NumClaims(), "not charged before the pod is bound")
	running := fx.OnNode(pod, "n2")
	c.UpsertPod(running)
	assert.Equal(t, 5*gi, requested(t, c, "n2", "pool"))
	c.UpsertPod(running) // a repeated event charges nothing more
	assert.Equal(t, 5*gi, requested(t, c, "n2", "pool"))

	done := running.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	c.UpsertPod(done)
	assert.Zero(t, requested(t, c, "n2", "pool"), "released when the pod terminates")
	c.UpsertPod(running)
	c.DeletePod("ns", "cache")
	assert.Zero(t, c.NumClaims(), "released when the pod is deleted")
}

func TestAgentReportedLVs(t *testing.T) {
	c, _ := newCache(t)
	c.UpsertStorageClass(fx.LVMClass("lvm", ""))
	pvc := fx.Selected(fx.PVC("ns", "data", "lvm", 10*gi, 1), "n1")
	pv := fx.PV(pvc, fx.Placement{Node: "n1", VG: "pool"})
	pod := fx.OnNode(fx.WithInline(fx.Pod("ns", "p"), "tmp", "pool", "1Gi"), "n1")
	lvs := map[string]int64{
		pv.Name:                            10 * gi, // the PV's LV
		InlineVolumeHandle(pod.UID, "tmp"): gi,      // the inline volume's LV
		"snap-0001":                        4 * gi,  // a snapshot: charged as found
		"database":                         20 * gi, // not Open-Local's: outside allocatable
	}
	c.UpsertNLS(fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 100 * gi, LVs: lvs}}, nil, nil))
	c.UpsertPVC(pvc)
	c.UpsertPV(pv)
	c.UpsertPod(pod)
	v, _ := c.View("n1")
	vg := v.Nodes[0].VolumeGroups[0]
	assert.Equal(t, 80*gi, vg.Allocatable)
	assert.Equal(t, 15*gi, vg.Requested, "PV, inline volume and snapshot, each once")
	_, src, ok := c.Claim("lv:n1/pool/snap-0001")
	require.True(t, ok)
	assert.Equal(t, SourceLV, src)

	// The PVC and the PV are deleted before the agent reports the LV gone:
	// the LV is still charged.
	c.DeletePVC("ns", "data")
	c.DeletePV(pv.Name)
	assert.Equal(t, 15*gi, requested(t, c, "n1", "pool"))
	delete(lvs, pv.Name)
	c.UpsertNLS(fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 100 * gi, LVs: lvs}}, nil, nil))
	assert.Equal(t, 5*gi, requested(t, c, "n1", "pool"))
}

func TestCapacityShrinkUnderVolumes(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	pvc := fx.Selected(fx.PVC("ns", "big", "lvm", 80*gi, 1), "n1")
	c.UpsertPVC(pvc)
	c.UpsertPV(fx.PV(pvc, fx.Placement{Node: "n1", VG: "pool"}))
	require.Empty(t, c.Overcommits())
	c.UpsertNLS(fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 60 * gi}}, nil, nil))
	oc := c.Overcommits()
	require.Len(t, oc, 1, "the ledger reports the shrink instead of hiding the volume")
	assert.Equal(t, 20*gi, oc[0].ExcessBytes)
	assert.Equal(t, 80*gi, requested(t, c, "n1", "pool"))

	// A PV on a VG the node no longer reports is still charged.
	c.UpsertNLS(fx.NLS("n1", []fx.VG{{Name: "other", Bytes: 60 * gi}}, nil, nil))
	oc = c.Overcommits()
	require.Len(t, oc, 1)
	assert.Equal(t, "pool", oc[0].Resource)
}

func TestSelectedNodeThatNoLongerFits(t *testing.T) {
	c, clk := newCache(t)
	var woken []core.ClaimID
	c.opt.OnUnplaced = func(id core.ClaimID) { woken = append(woken, id) }
	twoNodes(c)
	first := fx.Selected(fx.PVC("ns", "first", "lvm", 70*gi, 1), "n1")
	second := fx.Selected(fx.PVC("ns", "second", "lvm", 70*gi, 2), "n1")
	c.UpsertPVC(second)
	c.UpsertPVC(first)
	_, _, ok := c.Claim("ns/first")
	assert.True(t, ok, "the older PVC keeps the room whatever the event order")
	node, reason, ok := c.Unplaced("ns/second")
	require.True(t, ok)
	assert.Equal(t, "n1", node)
	assert.Contains(t, reason, core.ReasonInsufficientLVM)
	assert.Equal(t, []core.ClaimID{"ns/second"}, woken)

	pod := fx.Pod("ns", "late", "second")
	c.UpsertPod(pod)
	assert.Equal(t, StuckVerdict{}, c.Stuck("ns/second", time.Minute), "not while kube-scheduler may still be binding")
	c.UpsertPod(fx.Unschedulable(pod))
	assert.Equal(t, []core.ClaimID{"ns/second", "ns/second"}, woken, "an unschedulable pod wakes the claim")
	v := c.Stuck("ns/second", time.Minute)
	assert.False(t, v.Unstick)
	assert.Equal(t, time.Minute, v.Wait)
	clk.Step(time.Minute)
	v = c.Stuck("ns/second", time.Minute)
	assert.True(t, v.Unstick)
	assert.Equal(t, "n1", v.Node)

	// Room comes back: nothing to do any more.
	c.DeletePVC("ns", "first")
	_, _, ok = c.Unplaced("ns/second")
	assert.False(t, ok)
	assert.Equal(t, StuckVerdict{}, c.Stuck("ns/second", time.Minute))
}

func TestReserveErrors(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	ebs := fx.StorageClass("ebs", nil)
	ebs.Provisioner = "ebs.csi.aws.com"
	c.UpsertStorageClass(ebs)
	c.UpsertPVC(fx.PVC("ns", "a", "lvm", 10*gi, 1))
	c.UpsertPVC(fx.PVC("ns", "huge", "lvm", 500*gi, 1))
	c.UpsertPVC(fx.PVC("ns", "foreign", "ebs", 10*gi, 1))
	c.UpsertPVC(fx.PVC("ns", "dev", "ssd", 10*gi, 1))
	cases := []struct {
		name string
		req  ReserveRequest
		want error
		msg  string
	}{
		{"no node", ReserveRequest{Namespace: "ns", Name: "a"}, ErrBadRequest, "nodeName is required"},
		{"no PVC", ReserveRequest{Namespace: "ns", Name: "x", Node: "n1"}, ErrNotFound, "persistentvolumeclaim ns/x"},
		{"foreign", ReserveRequest{Namespace: "ns", Name: "foreign", Node: "n1"}, ErrBadRequest, "does not use an Open-Local StorageClass"},
		{"type mismatch", ReserveRequest{Namespace: "ns", Name: "a", Node: "n1", VolumeType: "Device"}, ErrBadRequest, `volumeType "Device" does not match`},
		{"vg on device", ReserveRequest{Namespace: "ns", Name: "dev", Node: "n1", VGName: "pool"}, ErrBadRequest, "vgName is for LVM volumes"},
		{"unknown node", ReserveRequest{Namespace: "ns", Name: "a", Node: "n9"}, ErrInsufficient, core.ReasonNoStorage},
		{"too big", ReserveRequest{Namespace: "ns", Name: "huge", Node: "n1"}, ErrInsufficient, core.ReasonInsufficientLVM},
		{"unknown VG", ReserveRequest{Namespace: "ns", Name: "a", Node: "n1", VGName: "nope"}, ErrInsufficient, core.ReasonNoSuchVG},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Reserve(tc.req)
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	_, err := c.Reserve(ReserveRequest{Namespace: "ns", Name: "a", Node: "n1"})
	require.NoError(t, err)
	_, err = c.Reserve(ReserveRequest{Namespace: "ns", Name: "a", Node: "n2"})
	require.ErrorIs(t, err, ErrConflict)
	assert.Zero(t, requested(t, c, "n2", "pool"))
}

func TestReserveBooksThePodsOtherClaims(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	c.UpsertPVC(fx.PVC("ns", "a", "lvm", 10*gi, 1))
	c.UpsertPVC(fx.PVC("ns", "b", "lvm-pool", 20*gi, 1))
	c.UpsertPVC(fx.PVC("ns", "d", "ssd", 40*gi, 1))
	c.UpsertPod(fx.Pod("ns", "app", "a", "b", "d"))
	b, err := c.Reserve(ReserveRequest{Namespace: "ns", Name: "d", Node: "n2"})
	require.NoError(t, err)
	assert.Equal(t, Binding{Node: "n2", Device: "/dev/vdc", VolumeType: "Device", PersistentVolumeClaim: "ns/d"}, b)
	assert.Equal(t, 30*gi, requested(t, c, "n2", "pool"), "a and b are booked with d")
	b, err = c.Reserve(ReserveRequest{Namespace: "ns", Name: "a", Node: "n2"})
	require.NoError(t, err)
	assert.Equal(t, "pool", b.VGName)
	assert.Equal(t, 3, c.NumClaims())
}

func TestRebuildIsIndependentOfEventOrder(t *testing.T) {
	objs := clusterObjects()
	var views []string
	for _, perm := range [][]int{identity(len(objs)), reversed(len(objs)), shuffled(len(objs), 7), shuffled(len(objs), 99)} {
		c, _ := newCache(t)
		for _, i := range perm {
			objs[i](c)
		}
		v, _ := c.View("")
		b, err := json.MarshalIndent(v, "", " ")
		require.NoError(t, err)
		views = append(views, string(b))
	}
	for i := 1; i < len(views); i++ {
		assert.Equal(t, views[0], views[i], "order %d", i)
	}
	assert.Contains(t, views[0], `"source": "annotation"`)
	assert.Contains(t, views[0], `"source": "pv"`)
	assert.Contains(t, views[0], `"source": "inline"`)
	assert.Contains(t, views[0], `"unplaced"`)
}

// clusterObjects is a small cluster with every kind of charge, as events.
func clusterObjects() []func(*Cache) {
	var out []func(*Cache)
	add := func(f func(*Cache)) { out = append(out, f) }
	for _, n := range []string{"n1", "n2", "n3"} {
		nls := fx.NLS(n, []fx.VG{{Name: "a", Bytes: 100 * gi}, {Name: "b", Bytes: 60 * gi}}, []fx.Device{{Name: "/dev/vdc", Bytes: 50 * gi, Media: "ssd"}, {Name: "/dev/vdd", Bytes: 200 * gi, Media: "hdd"}}, nil)
		add(func(c *Cache) { c.UpsertNLS(nls) })
	}
	add(func(c *Cache) { c.UpsertStorageClass(fx.LVMClass("lvm", "")) })
	add(func(c *Cache) { c.UpsertStorageClass(fx.DeviceClass("hdd", "hdd")) })
	for i := 0; i < 8; i++ {
		pvc := fx.Selected(fx.PVC("ns", "p"+string(rune('0'+i)), "lvm", int64(15+i*5)*gi, i), "n1")
		add(func(c *Cache) { c.UpsertPVC(pvc) })
	}
	bound := fx.Selected(fx.PVC("ns", "bound", "lvm", 25*gi, 20), "n2")
	pv := fx.PV(bound, fx.Placement{Node: "n2", VG: "b"})
	add(func(c *Cache) { c.UpsertPVC(fx.Bound(bound, pv.Name)) })
	add(func(c *Cache) { c.UpsertPV(pv) })
	dev := fx.Selected(fx.PVC("ns", "disk", "hdd", 100*gi, 21), "n3")
	add(func(c *Cache) { c.UpsertPVC(dev) })
	pod := fx.OnNode(fx.WithInline(fx.Pod("ns", "inline"), "tmp", "a", "2Gi"), "n3")
	add(func(c *Cache) { c.UpsertPod(pod) })
	return out
}

func identity(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func reversed(n int) []int {
	out := identity(n)
	for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func shuffled(n int, seed uint64) []int {
	out := identity(n)
	x := seed
	for i := n - 1; i > 0; i-- {
		x = x*6364136223846793005 + 1442695040888963407
		j := int((x >> 33) % uint64(i+1))
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func TestConcurrentEvaluateAndEvents(t *testing.T) {
	// Run with -race: filters read under the read lock with pooled
	// evaluators while events rebuild nodes under the write lock.
	c, _ := newCache(t)
	twoNodes(c)
	nodes := []string{"n1", "n2"}
	for i := 0; i < 40; i++ {
		c.UpsertPVC(fx.PVC("ns", fmt.Sprintf("p%d", i), "lvm", gi, i))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var out []core.NodeResult
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				pod := fx.Pod("ns", fmt.Sprintf("pod-%d-%d", g, i), fmt.Sprintf("p%d", i%40))
				var o Outcome
				out, o = c.Evaluate(pod, nodes, out[:0])
				if o.Err != nil || len(out) != len(nodes) {
					t.Errorf("evaluate: %v, %d results", o.Err, len(out))
					return
				}
				_, _ = c.View("")
			}
		}(g)
	}
	for i := 0; i < 40; i++ {
		c.UpsertPVC(fx.Selected(fx.PVC("ns", fmt.Sprintf("p%d", i), "lvm", gi, i), nodes[i%2]))
		if _, err := c.Reserve(ReserveRequest{Namespace: "ns", Name: fmt.Sprintf("p%d", i), Node: nodes[i%2]}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	assert.Equal(t, 40, c.NumClaims())
	assert.Empty(t, c.Overcommits())
}

// TestFormattedDevices: a device that carries a signature is not offered to
// new Device volumes (the CSI driver refuses such a device), yet the Device
// volume that formatted it is charged within the node's capacity.
func TestFormattedDevices(t *testing.T) {
	c, _ := newCache(t)
	twoNodes(c)
	formatted := func() {
		nls := fx.NLS("n1", []fx.VG{{Name: "pool", Bytes: 100 * gi}}, []fx.Device{{Name: "/dev/vdc", Bytes: 50 * gi, Media: "ssd"}}, nil)
		for i := range nls.Status.NodeStorageInfo.DeviceInfos {
			if nls.Status.NodeStorageInfo.DeviceInfos[i].Name == "/dev/vdc" {
				nls.Status.NodeStorageInfo.DeviceInfos[i].Signatures = []string{"ext4"}
			}
		}
		c.UpsertNLS(nls)
	}
	devices := func(node string) []ExclusiveView {
		v, ok := c.View(node)
		require.True(t, ok)
		return v.Nodes[0].Devices
	}

	formatted()
	assert.Empty(t, devices("n1"), "a device with a filesystem on it is not free")
	v, _ := c.View("n1")
	assert.Contains(t, v.Nodes[0].Skipped, "Device /dev/vdc: carries ext4")
	assert.Len(t, devices("n2"), 1, "the blank device of n2 is offered")

	// The Device volume that made the filesystem: charged, not over-committed.
	pvc := fx.Selected(fx.PVC("ns", "dev", "ssd", 50*gi, 1), "n1")
	c.UpsertPVC(pvc)
	c.UpsertPV(fx.PV(pvc, fx.Placement{Node: "n1", Device: "/dev/vdc"}))
	assert.Empty(t, c.Overcommits(), "the volume's own device is within the node's capacity")
	d := devices("n1")
	require.Len(t, d, 1)
	assert.Equal(t, "/dev/vdc", d[0].Name)
	assert.NotEmpty(t, d[0].Owner, "held by the volume")
}
