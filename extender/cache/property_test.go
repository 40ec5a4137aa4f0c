package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	fx "github.com/open-local/open-local/extender/fixture"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"pgregory.net/rapid"
)

// world is the model the property tests drive: the API objects, what CSI
// was told and what really sits on the disks, with the extender's cache
// fed from the objects.
type world struct {
	c   *Cache
	seq int

	nls  map[string]*v1alpha1.NodeLocalStorage
	scs  []*storagev1.StorageClass
	pvcs map[string]*corev1.PersistentVolumeClaim
	pvs  map[string]*corev1.PersistentVolume
	pods map[string]*corev1.Pod
	// inline are pods with an inline volume, bound to a node once filter let them.
	inline map[string]*corev1.Pod

	// vgSize and devices are the nodes' capacity now.
	vgSize  map[string]map[string]int64 // node -> vg -> bytes
	devices map[string][]fx.Device
	// shrunk marks resources whose capacity was lowered or removed: only
	// they may end up over-committed, by volumes that existed before.
	shrunk map[string]bool // "node/resource"
	// chosen is the node filter found for a pending pod.
	chosen map[string]string
	// bindings are what the reservation call answered, by PVC name.
	bindings map[string]Binding
}

var propNodes = []string{"n0", "n1", "n2"}

// propClock never moves: the dates of unplaced claims are part of the view.
var propClock = clocktesting.NewFakeClock(fx.Epoch)

func newWorld() *world {
	w := &world{
		nls: map[string]*v1alpha1.NodeLocalStorage{}, pvcs: map[string]*corev1.PersistentVolumeClaim{},
		pvs: map[string]*corev1.PersistentVolume{}, pods: map[string]*corev1.Pod{}, inline: map[string]*corev1.Pod{},
		vgSize: map[string]map[string]int64{}, devices: map[string][]fx.Device{},
		shrunk: map[string]bool{}, chosen: map[string]string{}, bindings: map[string]Binding{},
		scs: []*storagev1.StorageClass{fx.LVMClass("lvm", ""), fx.LVMClass("lvm-a", "a"), fx.DeviceClass("ssd", "ssd")},
	}
	w.c = New(Options{Strategy: core.Binpack, Clock: propClock})
	for _, sc := range w.scs {
		w.c.UpsertStorageClass(sc)
	}
	for _, n := range propNodes {
		w.vgSize[n] = map[string]int64{"a": 100 * gi, "b": 100 * gi}
		w.devices[n] = []fx.Device{{Name: "/dev/vdc", Bytes: 50 * gi, Media: "ssd"}, {Name: "/dev/vdd", Bytes: 50 * gi, Media: "ssd"}}
		w.setNLS(n)
	}
	w.c.MarkSynced()
	return w
}

func (w *world) setNLS(n string) {
	var vgs []fx.VG
	for _, name := range []string{"a", "b"} {
		if b, ok := w.vgSize[n][name]; ok {
			vgs = append(vgs, fx.VG{Name: name, Bytes: b})
		}
	}
	w.nls[n] = fx.NLS(n, vgs, w.devices[n], nil)
	w.c.UpsertNLS(w.nls[n])
}

// realUse is what the PVs on a node's VG or device hold.
func (w *world) realUse(node, res string) int64 {
	var sum int64
	for _, pv := range w.pvs {
		a := pv.Spec.CSI.VolumeAttributes
		if a["volume.kubernetes.io/selected-node"] != node || (a["vgName"] != res && a["Device"] != res) {
			continue
		}
		q := pv.Spec.Capacity[corev1.ResourceStorage]
		sum += core.LVSize(q.Value(), 0, 1)
	}
	for _, p := range w.inline {
		if p.Spec.NodeName != node || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.CSI != nil && v.CSI.VolumeAttributes["vgName"] == res {
				sum += core.LVSize(mustSize(v.CSI.VolumeAttributes["size"]), 0, 1)
			}
		}
	}
	return sum
}

func mustSize(s string) int64 {
	b, err := core.ParseSize(s)
	if err != nil {
		panic(err)
	}
	return b
}

// runInline is a pod with a CSI inline volume that kube-scheduler binds
// where filter lets it.
func (w *world) runInline(t *rapid.T) {
	w.seq++
	name := fmt.Sprintf("inline%d", w.seq)
	vg := rapid.SampledFrom([]string{"a", "b"}).Draw(t, "vg")
	size := rapid.IntRange(1, 40).Draw(t, "GiB")
	p := fx.WithInline(fx.Pod("ns", name), "scratch", vg, fmt.Sprintf("%dGi", size))
	results, o := w.c.Evaluate(p, propNodes, nil)
	if o.Err != nil {
		t.Fatalf("pod %s: %v", name, o.Err)
	}
	for _, r := range results {
		if r.Fits {
			p = fx.OnNode(p, r.Node)
			w.inline[name] = p
			w.c.UpsertPod(p)
			return
		}
	}
}

func (w *world) endInline(t *rapid.T) {
	if len(w.inline) == 0 {
		t.Skip("no inline pod")
	}
	name := rapid.SampledFrom(sortedKeys(w.inline)).Draw(t, "pod")
	if rapid.Bool().Draw(t, "delete") {
		delete(w.inline, name)
		w.c.DeletePod("ns", name)
		return
	}
	p := w.inline[name].DeepCopy()
	p.Status.Phase = corev1.PodSucceeded
	w.inline[name] = p
	w.c.UpsertPod(p)
}

func (w *world) pvcOf(name string) (*corev1.PersistentVolumeClaim, string) {
	p := w.pvcs[name]
	if p == nil {
		return nil, ""
	}
	return p, *p.Spec.StorageClassName
}

func (w *world) newPod(t *rapid.T) {
	w.seq++
	pod := fmt.Sprintf("pod%d", w.seq)
	var names []string
	for i := 0; i < rapid.IntRange(1, 3).Draw(t, "volumes"); i++ {
		name := fmt.Sprintf("%s-v%d", pod, i)
		class := rapid.SampledFrom([]string{"lvm", "lvm", "lvm-a", "ssd"}).Draw(t, "class")
		size := rapid.Int64Range(1, 60).Draw(t, "GiB") * gi
		pvc := fx.PVC("ns", name, class, size, w.seq)
		w.pvcs[name] = pvc
		w.c.UpsertPVC(pvc)
		names = append(names, name)
	}
	p := fx.Pod("ns", pod, names...)
	w.pods[pod] = p
	w.c.UpsertPod(p)

	results, o := w.c.Evaluate(p, propNodes, nil)
	if o.Err != nil {
		t.Fatalf("pod %s: %v", pod, o.Err)
	}
	best, score := "", -1
	for _, r := range results {
		if r.Fits && r.Score > score {
			best, score = r.Node, r.Score
		}
	}
	if best == "" {
		w.c.UpsertPod(fx.Unschedulable(p))
		return
	}
	w.chosen[pod] = best
	if rapid.Bool().Draw(t, "reserveAtOnce") {
		// Filter said the node holds the pod: the reservation right after must agree.
		b, err := w.c.Reserve(ReserveRequest{Namespace: "ns", Name: names[0], Node: best})
		if err != nil {
			t.Fatalf("filter let pod %s onto %s, the reservation refused: %v", pod, best, err)
		}
		w.bindings[names[0]] = b
		for _, n := range names[1:] {
			b, err := w.c.Reserve(ReserveRequest{Namespace: "ns", Name: n, Node: best})
			if err != nil {
				t.Fatalf("claim %s of pod %s was reserved with the first one, asking again failed: %v", n, pod, err)
			}
			w.bindings[n] = b
		}
	}
}

func (w *world) pendingPod(t *rapid.T) (string, string) {
	if len(w.chosen) == 0 {
		t.Skip("no pending pod")
	}
	pods := sortedKeys(w.chosen)
	p := rapid.SampledFrom(pods).Draw(t, "pod")
	return p, w.chosen[p]
}

func (w *world) claimsOf(pod string) []string {
	var out []string
	for _, v := range w.pods[pod].Spec.Volumes {
		if _, ok := w.pvcs[v.PersistentVolumeClaim.ClaimName]; ok {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

// annotate is kube-scheduler's volume binding writing selected-node.
func (w *world) annotate(t *rapid.T) {
	pod, node := w.pendingPod(t)
	for _, n := range w.claimsOf(pod) {
		if w.pvcs[n].Spec.VolumeName == "" {
			w.pvcs[n] = fx.Selected(w.pvcs[n], node)
			w.c.UpsertPVC(w.pvcs[n])
		}
	}
}

// reserve is CSI CreateVolume's reservation call; a refusal makes the
// provisioner drop the annotation and kube-scheduler try again.
func (w *world) reserve(t *rapid.T) {
	pod, node := w.pendingPod(t)
	for _, n := range w.claimsOf(pod) {
		if w.pvcs[n].Spec.VolumeName != "" {
			continue
		}
		b, err := w.c.Reserve(ReserveRequest{Namespace: "ns", Name: n, Node: node})
		if err != nil {
			if !errors.Is(err, ErrInsufficient) && !errors.Is(err, ErrConflict) {
				t.Fatalf("reservation of %s on %s: unexpected error %v", n, node, err)
			}
			w.reschedule(pod)
			return
		}
		w.bindings[n] = b
	}
}

func (w *world) reschedule(pod string) {
	delete(w.chosen, pod)
	for _, n := range w.claimsOf(pod) {
		p := w.pvcs[n]
		if p.Spec.VolumeName == "" && p.Annotations["volume.kubernetes.io/selected-node"] != "" {
			p = p.DeepCopy()
			delete(p.Annotations, "volume.kubernetes.io/selected-node")
			w.pvcs[n] = p
			w.c.UpsertPVC(p)
		}
		delete(w.bindings, n)
	}
	w.c.UpsertPod(fx.Unschedulable(w.pods[pod]))
}

// provision is CSI creating the volume and the PV: where the reservation
// call said, or wherever the disks really have room (CSI's own choice).
func (w *world) provision(t *rapid.T) {
	var ready []string
	for name, p := range w.pvcs {
		if p.Spec.VolumeName == "" && p.Annotations["volume.kubernetes.io/selected-node"] != "" {
			ready = append(ready, name)
		}
	}
	if len(ready) == 0 {
		t.Skip("nothing to provision")
	}
	sort.Strings(ready)
	name := rapid.SampledFrom(ready).Draw(t, "pvc")
	pvc, class := w.pvcOf(name)
	node := pvc.Annotations["volume.kubernetes.io/selected-node"]
	q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	size := q.Value()
	at := fx.Placement{Node: node}
	if b, ok := w.bindings[name]; ok && b.Node == node {
		at.VG, at.Device = b.VGName, b.Device
	} else if class == "ssd" {
		for _, d := range w.devices[node] {
			if d.Bytes >= size && w.realUse(node, d.Name) == 0 {
				at.Device = d.Name
				break
			}
		}
	} else {
		for _, vg := range []string{"a", "b"} {
			if class == "lvm-a" && vg != "a" {
				continue
			}
			if cap, ok := w.vgSize[node][vg]; ok && cap-w.realUse(node, vg) >= core.LVSize(size, 0, 1) {
				at.VG = vg
				break
			}
		}
	}
	// LVM and the device itself are the last word: no room, no volume.
	roomy := false
	switch {
	case at.Device != "":
		for _, d := range w.devices[node] {
			roomy = roomy || (d.Name == at.Device && d.Bytes >= size && w.realUse(node, d.Name) == 0)
		}
	case at.VG != "":
		cap, ok := w.vgSize[node][at.VG]
		roomy = ok && cap-w.realUse(node, at.VG) >= core.LVSize(size, 0, 1)
	}
	if !roomy {
		for pod := range w.pods {
			for _, n := range w.claimsOf(pod) {
				if n == name {
					w.reschedule(pod)
				}
			}
		}
		return
	}
	pv := fx.PV(pvc, at)
	w.pvs[pv.Name] = pv
	w.c.UpsertPV(pv)
	if rapid.Bool().Draw(t, "bindNow") {
		w.pvcs[name] = fx.Bound(pvc, pv.Name)
		w.c.UpsertPVC(w.pvcs[name])
	}
}

func (w *world) bind(t *rapid.T) {
	var unbound []string
	for _, pv := range w.pvs {
		if p := w.pvcs[pv.Spec.ClaimRef.Name]; p != nil && p.UID == pv.Spec.ClaimRef.UID && p.Spec.VolumeName == "" {
			unbound = append(unbound, pv.Spec.ClaimRef.Name)
		}
	}
	if len(unbound) == 0 {
		t.Skip("nothing to bind")
	}
	sort.Strings(unbound)
	name := rapid.SampledFrom(unbound).Draw(t, "pvc")
	w.pvcs[name] = fx.Bound(w.pvcs[name], fx.PVName(w.pvcs[name]))
	w.c.UpsertPVC(w.pvcs[name])
}

func (w *world) deletePVC(t *rapid.T) {
	if len(w.pvcs) == 0 {
		t.Skip("no PVC")
	}
	name := rapid.SampledFrom(sortedKeys(w.pvcs)).Draw(t, "pvc")
	w.removePVC(name)
}

func (w *world) removePVC(name string) {
	delete(w.pvcs, name)
	delete(w.bindings, name)
	w.c.DeletePVC("ns", name)
	for pod := range w.pods {
		if len(w.claimsOf(pod)) == 0 {
			delete(w.pods, pod)
			delete(w.chosen, pod)
			w.c.DeletePod("ns", pod)
		}
	}
}

func (w *world) deletePV(t *rapid.T) {
	var gone []string
	for name, pv := range w.pvs {
		if p := w.pvcs[pv.Spec.ClaimRef.Name]; p == nil || p.UID != pv.Spec.ClaimRef.UID {
			gone = append(gone, name)
		}
	}
	if len(gone) == 0 {
		t.Skip("no released PV")
	}
	sort.Strings(gone)
	name := rapid.SampledFrom(gone).Draw(t, "pv")
	delete(w.pvs, name)
	w.c.DeletePV(name)
}

// resize is the agent reporting a VG grown or shrunk, or a device gone or back.
func (w *world) resize(t *rapid.T) {
	n := rapid.SampledFrom(propNodes).Draw(t, "node")
	switch rapid.IntRange(0, 2).Draw(t, "what") {
	case 0, 1:
		vg := rapid.SampledFrom([]string{"a", "b"}).Draw(t, "vg")
		size := rapid.Int64Range(0, 200).Draw(t, "GiB") * gi
		if old, ok := w.vgSize[n][vg]; !ok || size < old {
			w.shrunk[n+"/"+vg] = true
		}
		w.vgSize[n][vg] = size
	default:
		if len(w.devices[n]) == 2 {
			w.shrunk[n+"/"+w.devices[n][1].Name] = true
			w.devices[n] = w.devices[n][:1]
		} else {
			w.devices[n] = append(w.devices[n], fx.Device{Name: "/dev/vdd", Bytes: 50 * gi, Media: "ssd"})
		}
	}
	w.setNLS(n)
}

// build makes a cache from the objects alone, fed in the order perm gives.
func (w *world) build(perm func(int) []int) *Cache {
	var feed []func(*Cache)
	for _, sc := range w.scs {
		feed = append(feed, func(c *Cache) { c.UpsertStorageClass(sc) })
	}
	for _, n := range sortedKeys(w.nls) {
		nls := w.nls[n]
		feed = append(feed, func(c *Cache) { c.UpsertNLS(nls) })
	}
	for _, k := range sortedKeys(w.pvcs) {
		p := w.pvcs[k]
		feed = append(feed, func(c *Cache) { c.UpsertPVC(p) })
	}
	for _, k := range sortedKeys(w.pvs) {
		p := w.pvs[k]
		feed = append(feed, func(c *Cache) { c.UpsertPV(p) })
	}
	for _, k := range sortedKeys(w.pods) {
		p := w.pods[k]
		feed = append(feed, func(c *Cache) { c.UpsertPod(p) })
	}
	for _, k := range sortedKeys(w.inline) {
		p := w.inline[k]
		feed = append(feed, func(c *Cache) { c.UpsertPod(p) })
	}
	c := New(Options{Strategy: core.Binpack, Clock: propClock})
	for _, i := range perm(len(feed)) {
		feed[i](c)
	}
	c.MarkSynced()
	return c
}

func viewJSON(t *rapid.T, c *Cache) string {
	v, _ := c.View("")
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// restart replaces the extender by one built from the objects; the
// reservation call's promises are gone with the old process.
func (w *world) restart(t *rapid.T) {
	seed := rapid.Uint64().Draw(t, "order")
	c1 := w.build(func(n int) []int { return shuffled(n, seed) })
	c2 := w.build(reversed)
	if a, b := viewJSON(t, c1), viewJSON(t, c2); a != b {
		t.Fatalf("two rebuilds from the same objects differ:\n%s\n%s", a, b)
	}
	w.c = c1
}

func (w *world) check(t *rapid.T) {
	for _, oc := range w.c.Overcommits() {
		if !w.shrunk[oc.Node+"/"+oc.Resource] {
			t.Fatalf("over-commit without a shrink: %+v\n%s", oc, viewJSON(t, w.c))
		}
	}
	// Every charge stands for an object, and every PV and running inline
	// volume is charged.
	inline := map[string]string{} // claim -> node
	for _, p := range w.inline {
		if p.Status.Phase == corev1.PodRunning {
			inline[string(p.UID)+"/scratch"] = p.Spec.NodeName
		}
	}
	for _, n := range propNodes {
		v, _ := w.c.View(n)
		for _, cl := range v.Nodes[0].Claims {
			name := strings.TrimPrefix(cl.Claim, "ns/")
			switch {
			case strings.HasPrefix(cl.Claim, "pv:"):
				if w.pvs[strings.TrimPrefix(cl.Claim, "pv:")] == nil {
					t.Fatalf("charge %s outlived its PV", cl.Claim)
				}
			case inline[cl.Claim] != "":
				if inline[cl.Claim] != n || cl.Source != SourceInline {
					t.Fatalf("inline volume %s charged on %s as %s, its pod runs on %s", cl.Claim, n, cl.Source, inline[cl.Claim])
				}
				delete(inline, cl.Claim)
			case w.pvcs[name] == nil:
				t.Fatalf("charge %s outlived its PVC and pod", cl.Claim)
			}
		}
	}
	if len(inline) > 0 {
		t.Fatalf("inline volumes not charged: %v", inline)
	}
	for _, pv := range w.pvs {
		id := core.ClaimID("pv:" + pv.Name)
		if p := w.pvcs[pv.Spec.ClaimRef.Name]; p != nil && p.UID == pv.Spec.ClaimRef.UID {
			id = core.ClaimID("ns/" + p.Name)
		}
		ci, src, ok := w.c.Claim(id)
		if !ok {
			t.Fatalf("PV %s (%s) is not charged:\n%s", pv.Name, id, viewJSON(t, w.c))
		}
		if ok && (src != SourcePV || ci.State != core.Committed) {
			t.Fatalf("PV %s charged as %s/%v", pv.Name, src, ci.State)
		}
	}
}

func TestPropertyNoOvercommitNoLeak(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld()
		t.Repeat(map[string]func(*rapid.T){
			"":          w.check,
			"newPod":    w.newPod,
			"annotate":  w.annotate,
			"reserve":   w.reserve,
			"provision": w.provision,
			"bind":      w.bind,
			"deletePVC": w.deletePVC,
			"deletePV":  w.deletePV,
			"resize":    w.resize,
			"restart":   w.restart,
			"runInline": w.runInline,
			"endInline": w.endInline,
		})
		// Everything goes: nothing may stay charged.
		for _, name := range sortedKeys(w.inline) {
			delete(w.inline, name)
			w.c.DeletePod("ns", name)
		}
		for _, name := range sortedKeys(w.pvcs) {
			w.removePVC(name)
		}
		for _, name := range sortedKeys(w.pvs) {
			delete(w.pvs, name)
			w.c.DeletePV(name)
		}
		if n := w.c.NumClaims(); n != 0 {
			t.Fatalf("%d charges leaked:\n%s", n, viewJSON(t, w.c))
		}
		if oc := w.c.Overcommits(); len(oc) != 0 {
			t.Fatalf("over-commits left: %+v", oc)
		}
	})
}

func TestPropertyRestartRebuildsTheSameState(t *testing.T) {
	// Without reservation calls the state is a function of the objects: the
	// live cache and any rebuild agree exactly.
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld()
		t.Repeat(map[string]func(*rapid.T){
			"": func(t *rapid.T) {
				seed := rapid.Uint64().Draw(t, "order")
				rebuilt := w.build(func(n int) []int { return shuffled(n, seed) })
				if a, b := viewJSON(t, w.c), viewJSON(t, rebuilt); a != b {
					t.Fatalf("live cache and rebuild differ:\n%s\n%s", a, b)
				}
			},
			"newPod": func(t *rapid.T) {
				// Filter only: no reservation call in this world.
				w.seq++
				pod := fmt.Sprintf("pod%d", w.seq)
				name := pod + "-v0"
				pvc := fx.PVC("ns", name, rapid.SampledFrom([]string{"lvm", "lvm-a", "ssd"}).Draw(t, "class"), rapid.Int64Range(1, 80).Draw(t, "GiB")*gi, rapid.IntRange(0, 5).Draw(t, "age"))
				w.pvcs[name] = pvc
				w.c.UpsertPVC(pvc)
				p := fx.Pod("ns", pod, name)
				w.pods[pod] = p
				w.c.UpsertPod(p)
				w.chosen[pod] = rapid.SampledFrom(propNodes).Draw(t, "node")
			},
			"annotate":  w.annotate,
			"provision": w.provision,
			"bind":      w.bind,
			"deletePVC": w.deletePVC,
			"deletePV":  w.deletePV,
			"resize":    w.resize,
			"runInline": w.runInline,
			"endInline": w.endInline,
		})
	})
}
