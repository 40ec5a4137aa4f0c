package core

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// Placement against brute force, on clusters small enough to enumerate
// (at most 4 nodes, 3 VGs, 4 devices and 4 volumes). Run in CI with
//
//	go test ./core -rapid.checks=1000

// bruteNode is what the oracle knows of a node: the ledger's own figures,
// which TestLedgerMatchesModel checks against its model.
type bruteNode struct {
	name string
	u    NodeUsage
}

// bruteFits decides by enumeration whether pod fits node, independently of
// placement's search. It returns one feasible assignment of VG or device
// names per volume index when it does.
func bruteFits(l *Ledger, n bruteNode, pod PodRequest) (bool, map[int]string) {
	for vi, v := range pod.Volumes {
		if invalidVolume(pod.Volumes, vi) != "" {
			return false, nil
		}
		if ci, ok := l.Claim(v.Claim); ok {
			if ci.Node != n.name || (v.Node != "" && v.Node != n.name) {
				return false, nil
			}
			continue
		}
		if v.Node != "" && v.Node != n.name {
			return false, nil
		}
	}
	choice := map[int]string{}
	// LVM: every VG for every volume, then the sums per VG.
	var lvmVols []int
	for vi, v := range pod.Volumes {
		if _, charged := l.Claim(v.Claim); !charged && v.Kind == VolumeLVM {
			lvmVols = append(lvmVols, vi)
		}
	}
	pick := make([]int, len(lvmVols))
	lvmOK := false
	var try func(k int) bool
	try = func(k int) bool {
		if k == len(lvmVols) {
			add := make([]int64, len(n.u.VGs))
			for i, vi := range lvmVols {
				vg := n.u.VGs[pick[i]]
				v := pod.Volumes[vi]
				stripes := 1
				if v.Striped && vg.PVCount > 1 {
					stripes = vg.PVCount
				}
				add[pick[i]] += refRound(v.Bytes, vg.ExtentSizeBytes, stripes)
			}
			for j, vg := range n.u.VGs {
				if add[j] > 0 && add[j] > vg.AllocatableBytes-vg.UsedBytes {
					return false
				}
			}
			return true
		}
		v := pod.Volumes[lvmVols[k]]
		for j, vg := range n.u.VGs {
			if v.VG != "" && vg.Name != v.VG {
				continue
			}
			pick[k] = j
			if try(k + 1) {
				return true
			}
		}
		return false
	}
	if lvmOK = try(0); !lvmOK {
		return false, nil
	}
	for i, vi := range lvmVols {
		choice[vi] = n.u.VGs[pick[i]].Name
	}
	// Devices and mount points: distinct free resources of the right medium and size.
	for _, kind := range []VolumeKind{VolumeDevice, VolumeMountPoint} {
		list := n.u.Devices
		if kind == VolumeMountPoint {
			list = n.u.MountPoints
		}
		var vols []int
		for vi, v := range pod.Volumes {
			if _, charged := l.Claim(v.Claim); !charged && v.Kind == kind {
				vols = append(vols, vi)
			}
		}
		used := make([]bool, len(list))
		var match func(k int) bool
		match = func(k int) bool {
			if k == len(vols) {
				return true
			}
			v := pod.Volumes[vols[k]]
			for j, d := range list {
				if used[j] || d.Owner != "" || d.SizeBytes < v.Bytes || (v.Media != "" && d.Media != v.Media) {
					continue
				}
				used[j] = true
				choice[vols[k]] = d.Name
				if match(k + 1) {
					return true
				}
				used[j] = false
			}
			return false
		}
		if !match(0) {
			return false, nil
		}
	}
	return true, choice
}

// checkAssignment verifies an assignment against the node's figures: every
// volume once, in order, on resources that exist and hold it all together.
func checkAssignment(t *rapid.T, l *Ledger, n bruteNode, pod PodRequest, a Assignment) {
	if a.Node != n.name || len(a.Volumes) != len(pod.Volumes) {
		t.Fatalf("assignment %+v for pod %+v on %s", a, pod, n.name)
	}
	add := map[string]int64{}
	taken := map[string]bool{}
	for vi, va := range a.Volumes {
		v := pod.Volumes[vi]
		if va.Claim != v.Claim {
			t.Fatalf("volume %d is %s, assignment says %s", vi, v.Claim, va.Claim)
		}
		ci, charged := l.Claim(v.Claim)
		if va.Existing != charged {
			t.Fatalf("%s: Existing %v, charged %v", v.Claim, va.Existing, charged)
		}
		if charged {
			if ci.Node != n.name || va.Charged != ci.Charged {
				t.Fatalf("%s: existing charge %+v, assignment %+v", v.Claim, ci, va)
			}
			continue
		}
		if va.Kind != v.Kind || va.Bytes != v.Bytes {
			t.Fatalf("%s: assignment %+v for request %+v", v.Claim, va, v)
		}
		switch v.Kind {
		case VolumeLVM:
			var vg *VGUsage
			for i := range n.u.VGs {
				if n.u.VGs[i].Name == va.VG {
					vg = &n.u.VGs[i]
				}
			}
			if vg == nil || (v.VG != "" && v.VG != va.VG) {
				t.Fatalf("%s: VG %q not allowed", v.Claim, va.VG)
			}
			stripes := 1
			if v.Striped && vg.PVCount > 1 {
				stripes = vg.PVCount
			}
			if want := refRound(v.Bytes, vg.ExtentSizeBytes, stripes); va.Charged != want || va.Stripes != stripes {
				t.Fatalf("%s: charged %d in %d stripes, LVM takes %d in %d", v.Claim, va.Charged, va.Stripes, want, stripes)
			}
			add[va.VG] += va.Charged
			if add[va.VG] > vg.AllocatableBytes-vg.UsedBytes {
				t.Fatalf("VG %s over-committed on %s by %+v", va.VG, n.name, a)
			}
		case VolumeDevice, VolumeMountPoint:
			list := n.u.Devices
			if v.Kind == VolumeMountPoint {
				list = n.u.MountPoints
			}
			ok := false
			for _, d := range list {
				if d.Name == va.Device && d.Owner == "" && d.SizeBytes >= v.Bytes && (v.Media == "" || d.Media == v.Media) && va.Charged == d.SizeBytes {
					ok = true
				}
			}
			key := v.Kind.String() + va.Device
			if !ok || taken[key] {
				t.Fatalf("%s: device %q not usable on %s: %+v", v.Claim, va.Device, n.name, n.u)
			}
			taken[key] = true
		case VolumeSnapshotRestore:
			if v.Node != n.name {
				t.Fatalf("restore %s placed on %s, its snapshot is on %s", v.Claim, n.name, v.Node)
			}
		}
	}
	if a.Score < 0 || a.Score > MaxScore {
		t.Fatalf("score %d", a.Score)
	}
}

var placeNodeNames = []string{"n0", "n1", "n2", "n3"}

// Sizes come from small sets of extent multiples so that volumes and VGs
// fill each other exactly, tie, and need backtracking or matching.
var (
	genVGAlloc  = rapid.SampledFrom([]int64{0, 4 * MiB, 8 * MiB, 12 * MiB, 16 * MiB, 20 * MiB, 24 * MiB, 40 * MiB})
	genDevSize  = rapid.SampledFrom([]int64{0, 4 * MiB, 8 * MiB, 12 * MiB, 16 * MiB, 40 * MiB})
	genVolBytes = rapid.SampledFrom([]int64{0, 1, 4 * MiB, 4*MiB + 1, 8 * MiB, 12 * MiB, 16 * MiB, 20 * MiB})
	genExtent   = rapid.SampledFrom([]int64{0, 0, 0, 2 * MiB, 8 * MiB})
)

func genCluster(t *rapid.T) *Ledger {
	l := NewLedger()
	for i, n := 0, rapid.IntRange(1, 4).Draw(t, "nodes"); i < n; i++ {
		var c NodeCapacity
		for j, k := 0, rapid.IntRange(0, 3).Draw(t, "vgs"); j < k; j++ {
			c.VGs = append(c.VGs, VGCapacity{
				Name:             fmt.Sprintf("v%d", j),
				AllocatableBytes: genVGAlloc.Draw(t, "alloc"),
				ExtentSizeBytes:  genExtent.Draw(t, "extent"),
				PVCount:          rapid.IntRange(1, 3).Draw(t, "pvs"),
			})
		}
		for j, k := 0, rapid.IntRange(0, 4).Draw(t, "devs"); j < k; j++ {
			c.Devices = append(c.Devices, DeviceCapacity{Name: fmt.Sprintf("/dev/d%d", j), SizeBytes: genDevSize.Draw(t, "devsize"), Media: genMedia.Draw(t, "media")})
		}
		for j, k := 0, rapid.IntRange(0, 2).Draw(t, "mps"); j < k; j++ {
			c.MountPoints = append(c.MountPoints, DeviceCapacity{Name: fmt.Sprintf("/mnt/m%d", j), SizeBytes: genDevSize.Draw(t, "mpsize"), Media: genMedia.Draw(t, "mpmedia")})
		}
		l.SetNode(placeNodeNames[i], c)
	}
	// Claims already charged, some of which the pod will name.
	for i, n := 0, rapid.IntRange(0, 5).Draw(t, "charged"); i < n; i++ {
		c := ClaimCharge{ID: ClaimID(fmt.Sprintf("old%d", i)), Bytes: genVolBytes.Draw(t, "oldsize")}
		if rapid.Bool().Draw(t, "olddev") {
			c.Kind, c.Device = KindDevice, fmt.Sprintf("/dev/d%d", rapid.IntRange(0, 3).Draw(t, "olddevname"))
		} else {
			c.Kind, c.VG = KindLVM, fmt.Sprintf("v%d", rapid.IntRange(0, 2).Draw(t, "oldvg"))
		}
		_ = l.Reserve(rapid.SampledFrom(placeNodeNames).Draw(t, "oldnode"), c) // it may well not fit
	}
	return l
}

// genPod draws a pod of one of three shapes: LVM volumes that compete for
// VGs, exclusive volumes that compete for devices, or anything at all.
func genPod(t *rapid.T) PodRequest {
	var p PodRequest
	shape := rapid.IntRange(0, 2).Draw(t, "shape")
	for i, n := 0, rapid.IntRange(0, 4).Draw(t, "volumes"); i < n; i++ {
		v := VolumeRequest{Claim: ClaimID(fmt.Sprintf("new%d", i)), Bytes: genVolBytes.Draw(t, "bytes")}
		kind := rapid.IntRange(0, 11).Draw(t, "kind")
		switch shape {
		case 0:
			kind = rapid.IntRange(0, 5).Draw(t, "lvmkind")
		case 1:
			kind = rapid.IntRange(6, 8).Draw(t, "exkind")
		}
		switch kind {
		case 0, 1, 2:
			v.Kind = VolumeLVM
		case 3, 4:
			// Mostly v0, so that pinned volumes compete for one VG.
			v.Kind, v.VG = VolumeLVM, rapid.SampledFrom([]string{"v0", "v0", "v0", "v1", "v2", "v9"}).Draw(t, "vg")
		case 5:
			v.Kind, v.Striped = VolumeLVM, true
		case 6, 7:
			v.Kind, v.Media = VolumeDevice, genMedia.Draw(t, "media")
		case 8:
			v.Kind, v.Media = VolumeMountPoint, genMedia.Draw(t, "media")
		case 9:
			v.Kind, v.Node = VolumeSnapshotRestore, rapid.SampledFrom([]string{"n0", "n1", "n2", "n3", "gone", ""}).Draw(t, "restorenode")
		case 10:
			// A volume whose claim is already charged somewhere (or nowhere).
			v.Kind, v.Claim = VolumeLVM, ClaimID(fmt.Sprintf("old%d", rapid.IntRange(0, 5).Draw(t, "old")))
		default:
			v.Kind, v.Node = VolumeLVM, rapid.SampledFrom(placeNodeNames).Draw(t, "pinnode")
		}
		if rapid.IntRange(0, 30).Draw(t, "oddity") == 0 {
			v.Claim = "new0" // a repeated claim makes the request invalid
		}
		p.Volumes = append(p.Volumes, v)
	}
	return p
}

// TestPlacementAgainstBruteForce: Fit agrees with enumeration on every node;
// Place only ever picks a node that holds every volume, with the best score
// when it examines every node, and reports unschedulable only when no node
// holds the pod.
func TestPlacementAgainstBruteForce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l := genCluster(t)
		p := genPod(t)
		s := rapid.SampledFrom([]Strategy{Binpack, Spread}).Draw(t, "strategy")
		opt := PlaceOptions{Sample: rapid.IntRange(0, 3).Draw(t, "sample"), Start: rapid.IntRange(-2, 5).Draw(t, "start")}

		names := l.NodeNames()
		nodes := make([]bruteNode, len(names))
		feasible := map[string]bool{}
		scores := map[string]int{}
		e := NewEvaluator(l)
		for i, name := range names {
			u, _ := l.Node(name)
			nodes[i] = bruteNode{name: name, u: u}
			want, _ := bruteFits(l, nodes[i], p)
			a, err := e.Fit(name, p, s)
			if (err == nil) != want {
				t.Fatalf("Fit(%s) = %v, enumeration says fits=%v\npod %+v\nnode %+v", name, err, want, p, u)
			}
			if err == nil {
				checkAssignment(t, l, nodes[i], p, a)
				feasible[name], scores[name] = true, a.Score
			}
		}

		claimsBefore := fmt.Sprint(l.ClaimIDs())
		placed := l.Clone()
		r, err := NewEvaluator(placed).Place(p, s, opt)
		if fmt.Sprint(l.ClaimIDs()) != claimsBefore {
			t.Fatalf("placing on a clone changed the original")
		}
		if err != nil {
			if len(feasible) > 0 {
				t.Fatalf("Place: %v, but %v fit", err, feasible)
			}
			if fmt.Sprint(placed.ClaimIDs()) != claimsBefore {
				t.Fatalf("an unschedulable pod reserved something")
			}
			return
		}
		if len(feasible) == 0 && len(p.Volumes) > 0 {
			t.Fatalf("Place chose %s, enumeration finds no node", r.Assignment.Node)
		}
		a := r.Assignment
		var chosen bruteNode
		for _, n := range nodes {
			if n.name == a.Node {
				chosen = n
			}
		}
		if !feasible[a.Node] {
			t.Fatalf("Place chose %s, which cannot hold the pod", a.Node)
		}
		checkAssignment(t, l, chosen, p, a)
		if opt.Sample == 0 {
			for name, sc := range scores {
				if sc > a.Score {
					t.Fatalf("Place chose %s (score %d), %s scores %d", a.Node, a.Score, name, sc)
				}
			}
		}
		// Reserving the assignment in another copy succeeds and leaves
		// exactly the state Place left.
		again := l.Clone()
		if err := again.Reserve(a.Node, a.Charges()...); err != nil {
			t.Fatalf("reserving Place's assignment: %v", err)
		}
		if len(placed.Overcommits()) != 0 || len(again.Overcommits()) != 0 {
			t.Fatalf("over-committed: %+v", placed.Overcommits())
		}
		for _, name := range names {
			u1, _ := placed.Node(name)
			u2, _ := again.Node(name)
			if fmt.Sprint(u1) != fmt.Sprint(u2) {
				t.Fatalf("node %s after Place %+v, after Reserve %+v", name, u1, u2)
			}
		}
	})
}
