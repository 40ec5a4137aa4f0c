package core

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type testNode struct {
	name string
	cap  NodeCapacity
	// charged is reserved on the node before the pod is placed.
	charged []ClaimCharge
}

func vgs(nameBytes ...any) []VGCapacity {
	var out []VGCapacity
	for i := 0; i < len(nameBytes); i += 2 {
		out = append(out, VGCapacity{Name: nameBytes[i].(string), AllocatableBytes: nameBytes[i+1].(int64)})
	}
	return out
}

func buildLedger(t *testing.T, nodes []testNode) *Ledger {
	t.Helper()
	l := NewLedger()
	for _, n := range nodes {
		l.SetNode(n.name, n.cap)
	}
	for _, n := range nodes {
		require.NoError(t, l.Reserve(n.name, n.charged...))
	}
	return l
}

func lvmVol(id ClaimID, vg string, bytes int64) VolumeRequest {
	return VolumeRequest{Claim: id, Kind: VolumeLVM, VG: vg, Bytes: bytes}
}

func devVol(id ClaimID, m MediaType, bytes int64) VolumeRequest {
	return VolumeRequest{Claim: id, Kind: VolumeDevice, Media: m, Bytes: bytes}
}

func pod(vols ...VolumeRequest) PodRequest { return PodRequest{Name: "p", Volumes: vols} }

// where maps claim -> VG or device the assignment chose.
func where(a Assignment) map[ClaimID]string {
	out := map[ClaimID]string{}
	for _, v := range a.Volumes {
		if v.Kind == VolumeDevice || v.Kind == VolumeMountPoint {
			out[v.Claim] = v.Device
		} else {
			out[v.Claim] = v.VG
		}
	}
	return out
}

func TestPlace(t *testing.T) {
	twoVGs := NodeCapacity{VGs: vgs("small", 40*GiB, "big", 100*GiB)}
	devices := NodeCapacity{Devices: []DeviceCapacity{
		{Name: "/dev/hdd1", SizeBytes: 1000 * GiB, Media: MediaHDD},
		{Name: "/dev/ssd1", SizeBytes: 500 * GiB, Media: MediaSSD},
		{Name: "/dev/ssd2", SizeBytes: 200 * GiB, Media: MediaSSD},
	}}
	cases := []struct {
		name     string
		nodes    []testNode
		pod      PodRequest
		strategy Strategy
		node     string             // "" means unschedulable
		where    map[ClaimID]string // expected VG/device per claim
		reasons  map[string]int     // for an unschedulable pod
		check    func(*testing.T, PlaceResult, *Ledger)
	}{
		{
			name:     "pinned VG is used even when another has more room",
			nodes:    []testNode{{name: "a", cap: twoVGs}},
			pod:      pod(lvmVol("c", "small", 10*GiB)),
			strategy: Spread, node: "a", where: map[ClaimID]string{"c": "small"},
		},
		{
			name:    "pinned VG full: another VG does not help",
			nodes:   []testNode{{name: "a", cap: twoVGs}},
			pod:     pod(lvmVol("c", "small", 41*GiB)),
			reasons: map[string]int{ReasonInsufficientLVM: 1},
		},
		{
			name:    "pinned VG missing",
			nodes:   []testNode{{name: "a", cap: twoVGs}, {name: "b", cap: NodeCapacity{VGs: vgs("other", 10*GiB)}}},
			pod:     pod(lvmVol("c", "nope", GiB)),
			reasons: map[string]int{ReasonNoSuchVG: 2},
		},
		{
			name:     "automatic VG, binpack: the least free that fits",
			nodes:    []testNode{{name: "a", cap: twoVGs}},
			pod:      pod(lvmVol("c", "", 10*GiB)),
			strategy: Binpack, node: "a", where: map[ClaimID]string{"c": "small"},
		},
		{
			name:     "automatic VG, binpack skips a VG too small",
			nodes:    []testNode{{name: "a", cap: twoVGs}},
			pod:      pod(lvmVol("c", "", 50*GiB)),
			strategy: Binpack, node: "a", where: map[ClaimID]string{"c": "big"},
		},
		{
			name:     "automatic VG, spread: the most free",
			nodes:    []testNode{{name: "a", cap: twoVGs}},
			pod:      pod(lvmVol("c", "", 10*GiB)),
			strategy: Spread, node: "a", where: map[ClaimID]string{"c": "big"},
		},
		{
			name: "binpack scores the VG's whole usage after the pod, not the request alone",
			nodes: []testNode{
				{name: "small-empty", cap: NodeCapacity{VGs: vgs("pool", 20*GiB)}},
				{name: "big-half", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}, charged: []ClaimCharge{lvm("x", "pool", 50*GiB)}},
			},
			pod:      pod(lvmVol("c", "", 10*GiB)),
			strategy: Binpack, node: "big-half", // 60% full after the pod beats 50%
			check: func(t *testing.T, r PlaceResult, _ *Ledger) { assert.Equal(t, 60, r.Assignment.Score) },
		},
		{
			name: "spread scores the free share after the pod",
			nodes: []testNode{
				{name: "big-half", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}, charged: []ClaimCharge{lvm("x", "pool", 50*GiB)}},
				{name: "small-empty", cap: NodeCapacity{VGs: vgs("pool", 20*GiB)}},
			},
			pod:      pod(lvmVol("c", "", 10*GiB)),
			strategy: Spread, node: "small-empty", // 50% free after the pod beats 40%
			check: func(t *testing.T, r PlaceResult, _ *Ledger) { assert.Equal(t, 50, r.Assignment.Score) },
		},
		{
			name:    "two volumes in one VG count together",
			nodes:   []testNode{{name: "a", cap: NodeCapacity{VGs: vgs("pool", 10*GiB)}}},
			pod:     pod(lvmVol("c1", "pool", 6*GiB), lvmVol("c2", "", 5*GiB)),
			reasons: map[string]int{ReasonInsufficientLVM: 1},
		},
		{
			name: "multi-VG backtracking finds what greedy misses",
			// Binpack puts the 5Gi volume in the 6Gi VG first; then the two 3Gi
			// volumes no longer fit. 5+4 in the 9Gi VG and 3+3 in the 6Gi one do.
			nodes:    []testNode{{name: "a", cap: NodeCapacity{VGs: vgs("nine", 9*GiB, "six", 6*GiB)}}},
			pod:      pod(lvmVol("c5", "", 5*GiB), lvmVol("c3a", "", 3*GiB), lvmVol("c4", "", 4*GiB), lvmVol("c3b", "", 3*GiB)),
			strategy: Binpack, node: "a",
			where: map[ClaimID]string{"c5": "nine", "c4": "nine", "c3a": "six", "c3b": "six"},
			check: func(t *testing.T, _ PlaceResult, l *Ledger) {
				u, _ := l.Node("a")
				assert.Equal(t, int64(0), u.VGs[0].FreeBytes()+u.VGs[1].FreeBytes(), "both VGs exactly full")
			},
		},
		{
			name:     "pinned and automatic volumes together",
			nodes:    []testNode{{name: "a", cap: NodeCapacity{VGs: vgs("x", 10*GiB, "y", 10*GiB)}}},
			pod:      pod(lvmVol("auto", "", 6*GiB), lvmVol("pinned", "x", 6*GiB)),
			strategy: Binpack, node: "a", where: map[ClaimID]string{"pinned": "x", "auto": "y"},
		},
		{
			name:  "striped LV over every PV, rounded to whole stripes",
			nodes: []testNode{{name: "a", cap: NodeCapacity{VGs: []VGCapacity{{Name: "s", AllocatableBytes: 100 * GiB, PVCount: 3}}}}},
			pod:   pod(VolumeRequest{Claim: "c", Kind: VolumeLVM, VG: "s", Bytes: 13 * MiB, Striped: true}),
			node:  "a",
			check: func(t *testing.T, r PlaceResult, l *Ledger) {
				v := r.Assignment.Volumes[0]
				assert.Equal(t, 3, v.Stripes)
				assert.Equal(t, 24*MiB, v.Charged)
				ci, _ := l.Claim("c")
				assert.Equal(t, 24*MiB, ci.Charged)
				assert.Equal(t, 3, ci.Stripes)
			},
		},
		{
			name:  "media type: the smallest device of that medium that holds the request",
			nodes: []testNode{{name: "a", cap: devices}},
			pod:   pod(devVol("c", MediaSSD, 100*GiB)),
			node:  "a", where: map[ClaimID]string{"c": "/dev/ssd2"},
			check: func(t *testing.T, r PlaceResult, _ *Ledger) {
				assert.Equal(t, 200*GiB, r.Assignment.Volumes[0].Charged, "a device is charged whole")
				assert.Equal(t, 50, r.Assignment.Score, "request/device size")
			},
		},
		{
			name:  "media type: hdd",
			nodes: []testNode{{name: "a", cap: devices}},
			pod:   pod(devVol("c", MediaHDD, 100*GiB)),
			node:  "a", where: map[ClaimID]string{"c": "/dev/hdd1"},
		},
		{
			name:    "media type: none big enough",
			nodes:   []testNode{{name: "a", cap: devices}},
			pod:     pod(devVol("c", MediaSSD, 600*GiB)),
			reasons: map[string]int{ReasonInsufficientDev: 1},
		},
		{
			name:  "device count: two ssd volumes take both ssd devices",
			nodes: []testNode{{name: "a", cap: devices}},
			pod:   pod(devVol("big", MediaSSD, 300*GiB), devVol("small", MediaSSD, 100*GiB)),
			node:  "a", where: map[ClaimID]string{"small": "/dev/ssd2", "big": "/dev/ssd1"},
		},
		{
			name:    "device count: three ssd volumes, two ssd devices",
			nodes:   []testNode{{name: "a", cap: devices}},
			pod:     pod(devVol("c1", MediaSSD, GiB), devVol("c2", MediaSSD, GiB), devVol("c3", MediaSSD, GiB)),
			reasons: map[string]int{ReasonInsufficientDev: 1},
		},
		{
			name:    "device count: a device already allocated is not free",
			nodes:   []testNode{{name: "a", cap: devices, charged: []ClaimCharge{dev("x", "/dev/ssd1", 0)}}},
			pod:     pod(devVol("c1", MediaSSD, GiB), devVol("c2", MediaSSD, GiB)),
			reasons: map[string]int{ReasonInsufficientDev: 1},
		},
		{
			name: "any medium: an exact matching when the greedy choice strands a request",
			nodes: []testNode{{name: "a", cap: NodeCapacity{Devices: []DeviceCapacity{
				{Name: "/dev/h", SizeBytes: 10 * GiB, Media: MediaHDD},
				{Name: "/dev/s", SizeBytes: 10 * GiB, Media: MediaSSD},
			}}}},
			pod:  pod(devVol("any", "", 5*GiB), devVol("hdd", MediaHDD, 8*GiB)),
			node: "a", where: map[ClaimID]string{"any": "/dev/s", "hdd": "/dev/h"},
		},
		{
			name: "mount points by medium",
			nodes: []testNode{{name: "a", cap: NodeCapacity{MountPoints: []DeviceCapacity{
				{Name: "/mnt/ssd", SizeBytes: 100 * GiB, Media: MediaSSD},
				{Name: "/mnt/hdd", SizeBytes: 100 * GiB, Media: MediaHDD},
			}}}},
			pod:  pod(VolumeRequest{Claim: "m", Kind: VolumeMountPoint, Media: MediaHDD, Bytes: GiB}),
			node: "a", where: map[ClaimID]string{"m": "/mnt/hdd"},
		},
		{
			name:    "mount points are not devices",
			nodes:   []testNode{{name: "a", cap: devices}},
			pod:     pod(VolumeRequest{Claim: "m", Kind: VolumeMountPoint, Media: MediaHDD, Bytes: GiB}),
			reasons: map[string]int{ReasonInsufficientMP: 1},
		},
		{
			name: "snapshot restore lands on its node only",
			nodes: []testNode{
				{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}},
				{name: "b", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}},
				{name: "c", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}},
			},
			pod:      pod(VolumeRequest{Claim: "restore", Kind: VolumeSnapshotRestore, VG: "pool", Bytes: 10 * GiB, Node: "b"}, lvmVol("scratch", "", GiB)),
			strategy: Spread, node: "b",
			check: func(t *testing.T, r PlaceResult, l *Ledger) {
				assert.Equal(t, 1, r.Evaluated, "a bound pod examines its node only")
				_, charged := l.Claim("restore")
				assert.False(t, charged, "a restore takes no capacity")
				assert.Len(t, r.Assignment.Charges(), 1)
			},
		},
		{
			name: "snapshot restore whose node has no room for the rest",
			nodes: []testNode{
				{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}},
				{name: "b", cap: NodeCapacity{VGs: vgs("pool", GiB)}},
			},
			pod:     pod(VolumeRequest{Claim: "restore", Kind: VolumeSnapshotRestore, Node: "b"}, lvmVol("scratch", "", 2*GiB)),
			reasons: map[string]int{ReasonWrongNode: 1, ReasonInsufficientLVM: 1},
		},
		{
			name:    "snapshot restore on a node the ledger does not know",
			nodes:   []testNode{{name: "a", cap: twoVGs}, {name: "b", cap: twoVGs}},
			pod:     pod(VolumeRequest{Claim: "restore", Kind: VolumeSnapshotRestore, Node: "gone"}),
			reasons: map[string]int{ReasonWrongNode: 2},
		},
		{
			name:  "inline ephemeral LVM volume: an LVM volume with a pod-scoped claim",
			nodes: []testNode{{name: "a", cap: twoVGs}},
			pod:   pod(lvmVol("0b7c5b8e-pod-uid/scratch", "small", 2*GiB)),
			node:  "a", where: map[ClaimID]string{"0b7c5b8e-pod-uid/scratch": "small"},
			check: func(t *testing.T, _ PlaceResult, l *Ledger) {
				assert.True(t, l.Release("0b7c5b8e-pod-uid/scratch"), "released by its claim when the pod goes")
				assert.Equal(t, int64(0), vgUsed(t, l, "a", "small"))
			},
		},
		{
			name: "a claim already charged keeps its node and is not charged again",
			nodes: []testNode{
				{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}},
				{name: "b", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}, charged: []ClaimCharge{lvm("ns/data", "pool", 90*GiB)}},
			},
			pod:      pod(lvmVol("ns/data", "", 90*GiB), lvmVol("ns/logs", "", 5*GiB)),
			strategy: Spread, node: "b", where: map[ClaimID]string{"ns/data": "pool", "ns/logs": "pool"},
			check: func(t *testing.T, r PlaceResult, l *Ledger) {
				for _, v := range r.Assignment.Volumes {
					assert.Equal(t, v.Claim == "ns/data", v.Existing, "%s", v.Claim)
				}
				assert.Equal(t, 95*GiB, vgUsed(t, l, "b", "pool"))
				assert.Equal(t, 5, r.Assignment.Score, "spread: 5% left after the pod")
			},
		},
		{
			name: "a pod whose claims are all charged fits its node and reserves nothing",
			nodes: []testNode{
				{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}, charged: []ClaimCharge{lvm("ns/data", "pool", 100*GiB)}},
			},
			pod:  pod(lvmVol("ns/data", "pool", 100*GiB)),
			node: "a",
			check: func(t *testing.T, r PlaceResult, _ *Ledger) {
				assert.Empty(t, r.Assignment.Charges())
				assert.Equal(t, MaxScore, r.Assignment.Score)
			},
		},
		{
			name: "claims charged on two different nodes: nowhere",
			nodes: []testNode{
				{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}, charged: []ClaimCharge{lvm("x", "pool", GiB)}},
				{name: "b", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}, charged: []ClaimCharge{lvm("y", "pool", GiB)}},
			},
			pod:     pod(lvmVol("x", "pool", GiB), lvmVol("y", "pool", GiB)),
			reasons: map[string]int{ReasonWrongNode: 2},
		},
		{
			name:    "no VG at all",
			nodes:   []testNode{{name: "a", cap: devices}},
			pod:     pod(lvmVol("c", "", GiB)),
			reasons: map[string]int{ReasonInsufficientLVM: 1},
		},
		{
			name:  "a pod without volumes fits anywhere",
			nodes: []testNode{{name: "a", cap: NodeCapacity{}}},
			pod:   pod(),
			node:  "a",
		},
		{
			name: "mixed reasons are counted per node",
			nodes: []testNode{
				{name: "a", cap: NodeCapacity{VGs: vgs("pool", GiB)}},
				{name: "b", cap: NodeCapacity{VGs: vgs("pool", GiB)}},
				{name: "c", cap: devices},
			},
			pod:     pod(lvmVol("c", "pool", 2*GiB)),
			reasons: map[string]int{ReasonInsufficientLVM: 2, ReasonNoSuchVG: 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := buildLedger(t, tc.nodes)
			claimsBefore := l.NumClaims()
			s := tc.strategy
			if s == 0 {
				s = Binpack
			}
			r, err := NewEvaluator(l).Place(tc.pod, s, PlaceOptions{})
			if tc.node == "" {
				require.Error(t, err)
				var u *UnschedulableError
				require.ErrorAs(t, err, &u)
				assert.Equal(t, len(tc.nodes), u.Nodes)
				assert.Equal(t, tc.reasons, u.Reasons)
				assert.Equal(t, tc.reasons, r.Reasons)
				assert.Equal(t, claimsBefore, l.NumClaims(), "an unschedulable pod reserves nothing")
			} else {
				require.NoError(t, err)
				assert.Equal(t, tc.node, r.Assignment.Node)
				assert.Len(t, r.Assignment.Volumes, len(tc.pod.Volumes), "one assignment per volume")
				for i, v := range r.Assignment.Volumes {
					assert.Equal(t, tc.pod.Volumes[i].Claim, v.Claim, "in request order")
				}
				if tc.where != nil {
					assert.Equal(t, tc.where, where(r.Assignment))
				}
				for _, c := range r.Assignment.Charges() {
					ci, ok := l.Claim(c.ID)
					require.True(t, ok, "claim %s is reserved", c.ID)
					assert.Equal(t, tc.node, ci.Node)
					assert.Equal(t, Reserved, ci.State)
				}
				assert.GreaterOrEqual(t, r.Assignment.Score, 0)
				assert.LessOrEqual(t, r.Assignment.Score, MaxScore)
			}
			if tc.check != nil {
				tc.check(t, r, l)
			}
			assert.Empty(t, l.Overcommits())
		})
	}
}

func TestPlaceInvalidRequests(t *testing.T) {
	cases := []struct {
		name   string
		pod    PodRequest
		detail string
	}{
		{"no claim ID", pod(lvmVol("", "", GiB)), "volume 0 has no claim ID"},
		{"claim twice", pod(lvmVol("a", "", GiB), lvmVol("a", "", GiB)), "claim a appears twice"},
		{"negative size", pod(lvmVol("a", "", -1)), "claim a: negative size"},
		{"unknown kind", pod(VolumeRequest{Claim: "a", Kind: 42}), "claim a: unknown volume kind 42"},
		{"restore without its node", pod(VolumeRequest{Claim: "a", Kind: VolumeSnapshotRestore}), "claim a: a snapshot restore needs the node of its snapshot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := buildLedger(t, []testNode{{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}}, {name: "b", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}}})
			_, err := NewEvaluator(l).Place(tc.pod, Binpack, PlaceOptions{})
			var u *UnschedulableError
			require.ErrorAs(t, err, &u)
			assert.Equal(t, map[string]int{ReasonInvalidRequest: 2}, u.Reasons)
			assert.Equal(t, tc.detail, u.Detail)
			assert.Contains(t, err.Error(), "0/2 nodes are available: 2 invalid volume request ("+tc.detail+")")
			assert.Zero(t, l.NumClaims())

			_, err = l.Fit("a", tc.pod, Binpack)
			var unfit *Unfit
			require.ErrorAs(t, err, &unfit)
			assert.Equal(t, ReasonInvalidRequest, unfit.Reason)
			assert.Equal(t, tc.detail, unfit.Detail)
		})
	}
}

func TestPlaceSampleAndRotation(t *testing.T) {
	var nodes []testNode
	for _, n := range []string{"n0", "n1", "n2", "n3", "n4"} {
		nodes = append(nodes, testNode{name: n, cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}})
	}
	nodes[1].cap = NodeCapacity{} // n1 never fits
	l := buildLedger(t, nodes)
	e := NewEvaluator(l)
	opt := PlaceOptions{Sample: 1}
	var got []string
	for i := 0; i < 6; i++ {
		r, err := e.Place(pod(lvmVol(ClaimID(rune('a'+i)), "", GiB)), Spread, opt)
		require.NoError(t, err)
		got = append(got, r.Assignment.Node)
		opt.Start = r.Next
	}
	// With a sample of one, each pod takes the first feasible node from where
	// the previous search stopped, skipping n1.
	assert.Equal(t, []string{"n0", "n2", "n3", "n4", "n0", "n2"}, got)

	r, err := e.Place(pod(lvmVol("z", "", GiB)), Spread, PlaceOptions{Sample: 2, Start: 1})
	require.NoError(t, err)
	assert.Equal(t, 3, r.Evaluated, "n1 fails, n2 and n3 fit")
	assert.Equal(t, 4, r.Next)
	assert.Equal(t, "n3", r.Assignment.Node, "spread: n3 holds fewer volumes than n2")

	r, err = e.Place(pod(lvmVol("y", "", GiB)), Spread, PlaceOptions{Start: -7})
	require.NoError(t, err)
	assert.Equal(t, 5, r.Evaluated, "no sample: every node")
	assert.Equal(t, "n4", r.Assignment.Node, "the emptiest")

	_, err = NewEvaluator(NewLedger()).Place(pod(lvmVol("x", "", GiB)), Binpack, PlaceOptions{})
	var u *UnschedulableError
	require.ErrorAs(t, err, &u)
	assert.Equal(t, "0/0 nodes are available", err.Error())
}

func TestPlaceBinpackAndSpreadFillDifferently(t *testing.T) {
	for _, s := range []Strategy{Binpack, Spread} {
		l := buildLedger(t, []testNode{
			{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}},
			{name: "b", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}},
		})
		e := NewEvaluator(l)
		count := map[string]int{}
		for i := 0; i < 10; i++ {
			r, err := e.Place(pod(lvmVol(ClaimID(rune('a'+i)), "", 10*GiB)), s, PlaceOptions{})
			require.NoError(t, err)
			count[r.Assignment.Node]++
		}
		if s == Binpack {
			assert.Equal(t, map[string]int{"a": 10}, count, "binpack fills one node")
		} else {
			assert.Equal(t, map[string]int{"a": 5, "b": 5}, count, "spread alternates")
		}
		_, err := e.Place(pod(lvmVol("more", "", 101*GiB)), s, PlaceOptions{})
		require.Error(t, err)
		assert.Empty(t, l.Overcommits())
	}
}

func TestFitAndFilterAndScore(t *testing.T) {
	l := buildLedger(t, []testNode{
		{name: "a", cap: NodeCapacity{VGs: vgs("pool", 100*GiB)}, charged: []ClaimCharge{lvm("x", "pool", 50*GiB)}},
		{name: "b", cap: NodeCapacity{VGs: vgs("pool", 10*GiB)}},
		{name: "c", cap: NodeCapacity{Devices: []DeviceCapacity{{Name: "/dev/s", SizeBytes: GiB, Media: MediaSSD}}}},
	})
	p := pod(lvmVol("new", "", 20*GiB))

	a, err := l.Fit("a", p, Binpack)
	require.NoError(t, err)
	assert.Equal(t, Assignment{Node: "a", Score: 70, Volumes: []VolumeAssignment{{Claim: "new", Kind: VolumeLVM, VG: "pool", Bytes: 20 * GiB, Charged: 20 * GiB, Stripes: 1}}}, a)
	a.Volumes[0].VG = "changed"
	again, _ := l.Fit("a", p, Binpack)
	assert.Equal(t, "pool", again.Volumes[0].VG, "Ledger.Fit hands out its own copy")
	_, ok := l.Claim("new")
	assert.False(t, ok, "Fit reserves nothing")

	_, err = l.Fit("b", p, Binpack)
	var u *Unfit
	require.ErrorAs(t, err, &u)
	assert.Equal(t, &Unfit{Node: "b", Reason: ReasonInsufficientLVM, Detail: "requested 20Gi in total, largest free volume group pool has 10Gi"}, u)
	assert.Equal(t, "Insufficient LVM storage: requested 20Gi in total, largest free volume group pool has 10Gi", u.Error())

	_, err = l.Fit("zz", p, Binpack)
	require.ErrorAs(t, err, &u)
	assert.Equal(t, ReasonNoStorage, u.Reason)
	assert.Equal(t, ReasonNoStorage, u.Error())

	e := NewEvaluator(l)
	res := e.FilterAndScore([]string{"c", "zz", "a", "b"}, p, Spread, nil)
	require.Len(t, res, 4)
	assert.Equal(t, NodeResult{Node: "a", Fits: true, Score: 30}, res[2])
	for _, i := range []int{0, 1, 3} {
		assert.False(t, res[i].Fits)
		require.NotNil(t, res[i].Reason)
		assert.Equal(t, res[i].Node, res[i].Reason.Node)
	}
	assert.Equal(t, "Insufficient LVM storage: no volume group", res[0].Reason.Error())
	assert.Equal(t, ReasonNoStorage, res[1].Reason.Reason)
	assert.Equal(t, ReasonInsufficientLVM, res[3].Reason.Reason)
	res = e.FilterAndScore([]string{"a"}, p, Spread, res[:0])
	assert.Len(t, res, 1, "the result slice is reused")
}

func TestUnfitDetails(t *testing.T) {
	l := buildLedger(t, []testNode{
		{name: "a", cap: NodeCapacity{VGs: vgs("pool", 10*GiB), Devices: []DeviceCapacity{{Name: "/dev/s", SizeBytes: GiB, Media: MediaSSD}}},
			charged: []ClaimCharge{lvm("held", "pool", GiB)}},
		{name: "b", cap: NodeCapacity{VGs: vgs("pool", 10*GiB)}},
	})
	cases := []struct {
		pod  PodRequest
		node string
		want string
	}{
		{pod(lvmVol("c", "pool", 20*GiB)), "a", "Insufficient LVM storage: volume group pool: c requests 20Gi, free 9Gi"},
		{pod(lvmVol("c", "nope", GiB)), "a", "volume group not found on node: c needs volume group nope"},
		{pod(devVol("d", MediaSSD, 2*GiB)), "a", "Insufficient Device storage: no free ssd device of at least 2Gi for d"},
		{pod(devVol("d", "", 2*GiB)), "a", "Insufficient Device storage: no free any-media device of at least 2Gi for d"},
		{pod(VolumeRequest{Claim: "m", Kind: VolumeMountPoint, Media: MediaHDD, Bytes: GiB}), "a", "Insufficient MountPoint storage: no free hdd mount point of at least 1Gi for m"},
		{pod(lvmVol("held", "pool", GiB)), "b", "volume is bound to another node: held is on node a"},
		{pod(VolumeRequest{Claim: "r", Kind: VolumeSnapshotRestore, Node: "a"}), "b", "volume is bound to another node: r must stay on node a"},
	}
	for _, tc := range cases {
		_, err := l.Fit(tc.node, tc.pod, Binpack)
		require.Error(t, err)
		assert.Equal(t, tc.want, err.Error())
	}
}

func TestNumNodesToScore(t *testing.T) {
	cases := []struct{ total, pct, want int }{
		{0, 0, 0},
		{50, 0, 50},    // small clusters: every node
		{99, 10, 99},   // below the minimum of 100
		{100, 0, 100},  // 50% of 100 is below the minimum
		{1000, 0, 420}, // 50 - 1000/125 = 42%
		{5000, 0, 500}, // 50 - 40 = 10%
		{10000, 0, 500},
		{6000, 0, 300}, // 50 - 48 = 2% -> 5%
		{100000, 0, 5000},
		{10000, 30, 3000},
		{10000, 1, 100}, // never below 100
		{10000, 100, 10000},
		{10000, 250, 10000},
		{10000, -3, 500}, // negative means adaptive
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, NumNodesToScore(tc.total, tc.pct), "NumNodesToScore(%d, %d)", tc.total, tc.pct)
	}
}

func TestStrategyAndKinds(t *testing.T) {
	for in, want := range map[string]Strategy{"binpack": Binpack, "Spread": Spread, "BINPACK": Binpack} {
		s, err := ParseStrategy(in)
		require.NoError(t, err)
		assert.Equal(t, want, s)
	}
	_, err := ParseStrategy("random")
	assert.True(t, errors.Is(err, ErrInvalid))
	assert.Contains(t, err.Error(), `invalid strategy "random"`)
	assert.Equal(t, "binpack", Binpack.String())
	assert.Equal(t, "spread", Spread.String())
	for k, want := range map[VolumeKind]string{VolumeLVM: "LVM", VolumeDevice: "Device", VolumeMountPoint: "MountPoint", VolumeSnapshotRestore: "SnapshotRestore", 9: "VolumeKind(9)"} {
		assert.Equal(t, want, k.String())
	}
}

func TestAssignmentCharges(t *testing.T) {
	a := Assignment{Node: "n", Volumes: []VolumeAssignment{
		{Claim: "l", Kind: VolumeLVM, VG: "pool", Bytes: GiB, Stripes: 2},
		{Claim: "d", Kind: VolumeDevice, Device: "/dev/x", Bytes: GiB},
		{Claim: "m", Kind: VolumeMountPoint, Device: "/mnt/x"},
		{Claim: "e", Kind: VolumeLVM, VG: "pool", Existing: true},
		{Claim: "r", Kind: VolumeSnapshotRestore},
	}}
	assert.Equal(t, []ClaimCharge{
		{ID: "l", Kind: KindLVM, VG: "pool", Bytes: GiB, Stripes: 2},
		{ID: "d", Kind: KindDevice, Device: "/dev/x", Bytes: GiB},
		{ID: "m", Kind: KindMountPoint, Device: "/mnt/x"},
	}, a.Charges())
}

// bruteLVM reports whether volumes of the given sizes fit VGs with the given
// free space, by trying every assignment.
func bruteLVM(free []int64, vols []int64) bool {
	if len(vols) == 0 {
		return true
	}
	for j := range free {
		if vols[0] <= free[j] {
			free[j] -= vols[0]
			ok := bruteLVM(free, vols[1:])
			free[j] += vols[0]
			if ok {
				return true
			}
		}
	}
	return false
}

// The search over VGs for unpinned volumes is complete: for every pair and
// triple of small VGs and every pod of up to four volumes, Fit agrees with
// trying every assignment. (4 MiB extents, sizes in extents.)
func TestAutoLVMSearchIsComplete(t *testing.T) {
	var vgSets [][]int64
	for a := int64(0); a <= 9; a++ {
		for b := a; b <= 9; b++ {
			vgSets = append(vgSets, []int64{a, b})
			for c := b; c <= 9; c += 3 {
				vgSets = append(vgSets, []int64{a, b, c})
			}
		}
	}
	var pods [][]int64
	var gen func(prefix []int64, min int64)
	gen = func(prefix []int64, min int64) {
		if len(prefix) > 0 {
			pods = append(pods, append([]int64(nil), prefix...))
		}
		if len(prefix) == 4 {
			return
		}
		for s := min; s <= 5; s++ {
			gen(append(prefix, s), s)
		}
	}
	gen(nil, 1)
	checked, needBacktracking := 0, 0
	for _, set := range vgSets {
		l := NewLedger()
		var c NodeCapacity
		for i, ext := range set {
			c.VGs = append(c.VGs, VGCapacity{Name: string(rune('a' + i)), AllocatableBytes: ext * 4 * MiB})
		}
		l.SetNode("n", c)
		e := NewEvaluator(l)
		for _, sizes := range pods {
			var p PodRequest
			for i, s := range sizes {
				// Request order differs from size order on purpose.
				p.Volumes = append(p.Volumes, lvmVol(ClaimID(rune('p'+i)), "", s*4*MiB-int64(i%2)))
			}
			want := bruteLVM(append([]int64(nil), set...), sizes)
			for _, s := range []Strategy{Binpack, Spread} {
				a, err := e.Fit("n", p, s)
				if (err == nil) != want {
					t.Fatalf("VGs %v (extents), volumes %v, %s: Fit %v, enumeration %v", set, sizes, s, err, want)
				}
				if err == nil {
					used := map[string]int64{}
					for _, v := range a.Volumes {
						used[v.VG] += v.Charged
					}
					for i, ext := range set {
						require.LessOrEqual(t, used[string(rune('a'+i))], ext*4*MiB)
					}
				}
				checked++
			}
			if want && !greedyLVM(set, sizes) {
				needBacktracking++
			}
		}
	}
	t.Logf("%d fits checked, %d of the feasible pods need more than the greedy choice", checked, needBacktracking)
	require.Positive(t, needBacktracking, "the table exercises backtracking")
}

// greedyLVM is binpack's first choice alone: largest volume first into the
// least free VG that holds it.
func greedyLVM(free []int64, vols []int64) bool {
	f := append([]int64(nil), free...)
	v := append([]int64(nil), vols...)
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] > v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	for _, s := range v {
		best := -1
		for j := range f {
			if s <= f[j] && (best < 0 || f[j] < f[best]) {
				best = j
			}
		}
		if best < 0 {
			return false
		}
		f[best] -= s
	}
	return true
}

// Device matching is complete too, media included: every combination of up
// to three devices (two media, three sizes) and up to three requests
// (either medium or any) agrees with trying every matching.
func TestDeviceMatchingIsComplete(t *testing.T) {
	type item struct {
		size  int64
		media MediaType
	}
	var devItems, volItems []item
	for _, m := range []MediaType{MediaSSD, MediaHDD} {
		for _, s := range []int64{1, 2, 3} {
			devItems = append(devItems, item{s * GiB, m})
		}
	}
	for _, m := range []MediaType{MediaSSD, MediaHDD, ""} {
		for _, s := range []int64{1, 2, 3} {
			volItems = append(volItems, item{s * GiB, m})
		}
	}
	var devSets, volSets [][]item
	var combos func(from []item, k int, start int, cur []item, out *[][]item)
	combos = func(from []item, k int, start int, cur []item, out *[][]item) {
		*out = append(*out, append([]item(nil), cur...))
		if len(cur) == k {
			return
		}
		for i := start; i < len(from); i++ {
			combos(from, k, i, append(cur, from[i]), out)
		}
	}
	combos(devItems, 3, 0, nil, &devSets)
	combos(volItems, 3, 0, nil, &volSets)
	var match func(devs []item, used []bool, vols []item) bool
	match = func(devs []item, used []bool, vols []item) bool {
		if len(vols) == 0 {
			return true
		}
		for j, d := range devs {
			if !used[j] && d.size >= vols[0].size && (vols[0].media == "" || vols[0].media == d.media) {
				used[j] = true
				ok := match(devs, used, vols[1:])
				used[j] = false
				if ok {
					return true
				}
			}
		}
		return false
	}
	checked := 0
	for _, ds := range devSets {
		l := NewLedger()
		var c NodeCapacity
		for i, d := range ds {
			c.Devices = append(c.Devices, DeviceCapacity{Name: "/dev/" + string(rune('a'+i)), SizeBytes: d.size, Media: d.media})
		}
		l.SetNode("n", c)
		e := NewEvaluator(l)
		for _, vs := range volSets {
			var p PodRequest
			for i, v := range vs {
				p.Volumes = append(p.Volumes, devVol(ClaimID(rune('p'+i)), v.media, v.size))
			}
			want := match(ds, make([]bool, len(ds)), vs)
			a, err := e.Fit("n", p, Binpack)
			if (err == nil) != want {
				t.Fatalf("devices %v, volumes %v: Fit %v, enumeration %v", ds, vs, err, want)
			}
			if err == nil {
				seen := map[string]bool{}
				for i, va := range a.Volumes {
					require.False(t, seen[va.Device], "a device twice")
					seen[va.Device] = true
					var d item
					for k := range ds {
						if "/dev/"+string(rune('a'+k)) == va.Device {
							d = ds[k]
						}
					}
					require.GreaterOrEqual(t, d.size, vs[i].size)
					require.True(t, vs[i].media == "" || vs[i].media == d.media)
				}
			}
			checked++
		}
	}
	t.Logf("%d device fits checked", checked)
}

func TestFilterAndScoreBriefReasons(t *testing.T) {
	l := NewLedger()
	l.SetNode("small", NodeCapacity{VGs: []VGCapacity{{Name: "pool", AllocatableBytes: GiB}}})
	l.SetNode("big", NodeCapacity{VGs: []VGCapacity{{Name: "pool", AllocatableBytes: 100 * GiB}}})
	pod := PodRequest{Volumes: []VolumeRequest{{Claim: "ns/a", Kind: VolumeLVM, Bytes: 10 * GiB}}}
	e := NewEvaluator(l)
	full := e.FilterAndScore([]string{"small", "big"}, pod, Binpack, nil)
	e.SetBriefReasons(true)
	brief := e.FilterAndScore([]string{"small", "big"}, pod, Binpack, nil)
	require.Len(t, brief, 2)
	require.NotEmpty(t, full[0].Reason.Detail)
	require.Equal(t, full[0].Reason.Reason, brief[0].Reason.Reason)
	require.Empty(t, brief[0].Reason.Detail, "brief reasons carry no detail")
	require.Equal(t, full[1], brief[1], "fitting nodes are reported the same way")
	e.SetBriefReasons(false)
	require.Equal(t, full, e.FilterAndScore([]string{"small", "big"}, pod, Binpack, nil))
}
