package core

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCapacity is node n1 of most ledger tests.
func testCapacity() NodeCapacity {
	return NodeCapacity{
		VGs: []VGCapacity{
			{Name: "pool", AllocatableBytes: 100 * GiB, ExtentSizeBytes: DefaultExtentSize, PVCount: 1},
			{Name: "striped", AllocatableBytes: 100 * GiB, PVCount: 3},
			{Name: "bigext", AllocatableBytes: 10 * GiB, ExtentSizeBytes: 32 * MiB},
		},
		Devices: []DeviceCapacity{
			{Name: "/dev/vdb", SizeBytes: 100 * GiB, Media: MediaSSD},
			{Name: "/dev/vdc", SizeBytes: 200 * GiB, Media: MediaHDD},
		},
		MountPoints: []DeviceCapacity{{Name: "/mnt/d1", SizeBytes: 50 * GiB, Media: MediaHDD}},
	}
}

func testLedger(t *testing.T) *Ledger {
	t.Helper()
	l := NewLedger()
	l.SetNode("n1", testCapacity())
	l.SetNode("n2", NodeCapacity{VGs: []VGCapacity{{Name: "pool", AllocatableBytes: 50 * GiB}}})
	return l
}

func lvm(id ClaimID, vg string, bytes int64) ClaimCharge {
	return ClaimCharge{ID: id, Kind: KindLVM, VG: vg, Bytes: bytes}
}

func dev(id ClaimID, name string, bytes int64) ClaimCharge {
	return ClaimCharge{ID: id, Kind: KindDevice, Device: name, Bytes: bytes}
}

func vgUsed(t *testing.T, l *Ledger, node, vg string) int64 {
	t.Helper()
	u, ok := l.Node(node)
	require.True(t, ok, "node %s", node)
	for _, v := range u.VGs {
		if v.Name == vg {
			return v.UsedBytes
		}
	}
	t.Fatalf("node %s has no VG %s", node, vg)
	return 0
}

func TestReserve(t *testing.T) {
	cases := []struct {
		name    string
		before  []ClaimCharge // reserved on n1 first
		node    string
		charges []ClaimCharge
		err     error // sentinel, nil for success
		msg     string
		used    map[string]int64 // n1's VG usage after
		claims  int              // claims in the ledger after
	}{
		{name: "one LV", node: "n1", charges: []ClaimCharge{lvm("a", "pool", 10*GiB)},
			used: map[string]int64{"pool": 10 * GiB}, claims: 1},
		{name: "rounded to extents", node: "n1", charges: []ClaimCharge{lvm("a", "pool", 1)},
			used: map[string]int64{"pool": 4 * MiB}, claims: 1},
		{name: "rounded to the VG's extent size", node: "n1", charges: []ClaimCharge{lvm("a", "bigext", 33*MiB)},
			used: map[string]int64{"bigext": 64 * MiB}, claims: 1},
		{name: "striped rounds to stripes times extent", node: "n1", charges: []ClaimCharge{{ID: "a", Kind: KindLVM, VG: "striped", Bytes: 13 * MiB, Stripes: 3}},
			used: map[string]int64{"striped": 24 * MiB}, claims: 1},
		{name: "exactly full", node: "n1", charges: []ClaimCharge{lvm("a", "pool", 60*GiB), lvm("b", "pool", 40*GiB)},
			used: map[string]int64{"pool": 100 * GiB}, claims: 2},
		{name: "one extent too many", node: "n1", charges: []ClaimCharge{lvm("a", "pool", 100*GiB+1)},
			err: ErrInsufficientCapacity, msg: "volume group pool: claim a requests", used: map[string]int64{"pool": 0}},
		{name: "all or nothing", node: "n1", charges: []ClaimCharge{lvm("a", "pool", 60*GiB), lvm("b", "pool", 41*GiB)},
			err: ErrInsufficientCapacity, msg: "claim b", used: map[string]int64{"pool": 0}},
		{name: "counts what is already charged", before: []ClaimCharge{lvm("x", "pool", 95*GiB)}, node: "n1",
			charges: []ClaimCharge{lvm("a", "pool", 6*GiB)}, err: ErrInsufficientCapacity, msg: "free 5Gi",
			used: map[string]int64{"pool": 95 * GiB}, claims: 1},
		{name: "near MaxInt64 cannot overflow into fitting", before: []ClaimCharge{lvm("x", "pool", GiB)}, node: "n1",
			charges: []ClaimCharge{lvm("a", "pool", math.MaxInt64)}, err: ErrInsufficientCapacity,
			used: map[string]int64{"pool": GiB}, claims: 1},
		{name: "idempotent", before: []ClaimCharge{lvm("a", "pool", 10*GiB)}, node: "n1",
			charges: []ClaimCharge{lvm("a", "pool", 10*GiB)}, used: map[string]int64{"pool": 10 * GiB}, claims: 1},
		{name: "idempotent with zero stripes meaning one", before: []ClaimCharge{{ID: "a", Kind: KindLVM, VG: "pool", Bytes: GiB, Stripes: 1}}, node: "n1",
			charges: []ClaimCharge{lvm("a", "pool", GiB)}, used: map[string]int64{"pool": GiB}, claims: 1},
		{name: "idempotent inside one call", node: "n1", charges: []ClaimCharge{lvm("a", "pool", GiB), lvm("a", "pool", GiB)},
			used: map[string]int64{"pool": GiB}, claims: 1},
		{name: "same claim different size conflicts", before: []ClaimCharge{lvm("a", "pool", 10*GiB)}, node: "n1",
			charges: []ClaimCharge{lvm("a", "pool", 11*GiB)}, err: ErrConflict, msg: "claim a holds 10Gi of volume group pool on node n1",
			used: map[string]int64{"pool": 10 * GiB}, claims: 1},
		{name: "same claim on another node conflicts", before: []ClaimCharge{lvm("a", "pool", 10*GiB)}, node: "n2",
			charges: []ClaimCharge{lvm("a", "pool", 10*GiB)}, err: ErrConflict, used: map[string]int64{"pool": 10 * GiB}, claims: 1},
		{name: "same claim twice in one call with different charges", node: "n1",
			charges: []ClaimCharge{lvm("a", "pool", GiB), lvm("a", "pool", 2*GiB)}, err: ErrConflict, used: map[string]int64{"pool": 0}},
		{name: "unknown node", node: "nope", charges: []ClaimCharge{lvm("a", "pool", GiB)}, err: ErrUnknownNode, msg: `node "nope"`},
		{name: "unknown VG", node: "n1", charges: []ClaimCharge{lvm("a", "nope", GiB)}, err: ErrUnknownVG, msg: `volume group "nope"`},
		{name: "no ID", node: "n1", charges: []ClaimCharge{lvm("", "pool", GiB)}, err: ErrInvalid, msg: "needs an ID"},
		{name: "negative size", node: "n1", charges: []ClaimCharge{lvm("a", "pool", -1)}, err: ErrInvalid, msg: "negative"},
		{name: "unknown kind", node: "n1", charges: []ClaimCharge{{ID: "a", Kind: 9}}, err: ErrInvalid, msg: "unknown resource kind 9"},
		{name: "device charges the whole device", node: "n1", charges: []ClaimCharge{dev("d", "/dev/vdb", GiB)}, claims: 1},
		{name: "device too small", node: "n1", charges: []ClaimCharge{dev("d", "/dev/vdb", 101*GiB)}, err: ErrInsufficientCapacity, msg: "has 100Gi, requested 101Gi"},
		{name: "device taken", before: []ClaimCharge{dev("x", "/dev/vdb", 0)}, node: "n1",
			charges: []ClaimCharge{dev("d", "/dev/vdb", GiB)}, err: ErrInsufficientCapacity, msg: "already allocated to x", claims: 1},
		{name: "device twice in one call", node: "n1", charges: []ClaimCharge{dev("d", "/dev/vdb", 0), dev("e", "/dev/vdb", 0)},
			err: ErrInsufficientCapacity, msg: "requested twice"},
		{name: "unknown device", node: "n1", charges: []ClaimCharge{dev("d", "/dev/vdz", 0)}, err: ErrUnknownDevice},
		{name: "a device name is not a mount point", node: "n1", charges: []ClaimCharge{{ID: "m", Kind: KindMountPoint, Device: "/dev/vdb"}}, err: ErrUnknownDevice},
		{name: "mount point", node: "n1", charges: []ClaimCharge{{ID: "m", Kind: KindMountPoint, Device: "/mnt/d1", Bytes: 50 * GiB}}, claims: 1},
		{name: "mixed pod", node: "n1", charges: []ClaimCharge{lvm("a", "pool", GiB), dev("d", "/dev/vdc", GiB), {ID: "m", Kind: KindMountPoint, Device: "/mnt/d1"}},
			used: map[string]int64{"pool": GiB}, claims: 3},
		{name: "no charges", node: "n1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := testLedger(t)
			if len(tc.before) > 0 {
				require.NoError(t, l.Reserve("n1", tc.before...))
			}
			err := l.Reserve(tc.node, tc.charges...)
			if tc.err != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tc.err)
				assert.Contains(t, err.Error(), tc.msg)
			} else {
				require.NoError(t, err)
			}
			for vg, want := range tc.used {
				assert.Equal(t, want, vgUsed(t, l, "n1", vg), "VG %s", vg)
			}
			assert.Equal(t, tc.claims, l.NumClaims())
			assert.Empty(t, l.Overcommits())
		})
	}
}

func TestReserveRecordsTheClaim(t *testing.T) {
	l := testLedger(t)
	require.NoError(t, l.Reserve("n1", ClaimCharge{ID: "a", Kind: KindLVM, VG: "striped", Device: "ignored", Bytes: 5 * MiB, Stripes: 3}, dev("d", "/dev/vdc", GiB)))
	ci, ok := l.Claim("a")
	require.True(t, ok)
	assert.Equal(t, ClaimInfo{ClaimCharge: ClaimCharge{ID: "a", Kind: KindLVM, VG: "striped", Bytes: 5 * MiB, Stripes: 3}, Node: "n1", Charged: 12 * MiB, State: Reserved}, ci)
	ci, ok = l.Claim("d")
	require.True(t, ok)
	assert.Equal(t, 200*GiB, ci.Charged)
	assert.Equal(t, Reserved, ci.State)
	u, _ := l.Node("n1")
	assert.Equal(t, ClaimID("d"), u.Devices[1].Owner)
	assert.Equal(t, ClaimID(""), u.Devices[0].Owner)
	assert.Equal(t, 2, u.Claims)
	_, ok = l.Claim("nope")
	assert.False(t, ok)
}

func TestCommit(t *testing.T) {
	l := testLedger(t)
	require.NoError(t, l.Reserve("n1", lvm("a", "pool", GiB)))
	require.NoError(t, l.Commit("a"))
	ci, _ := l.Claim("a")
	assert.Equal(t, Committed, ci.State)
	require.NoError(t, l.Commit("a"), "committing twice is a no-op")
	assert.Equal(t, GiB, vgUsed(t, l, "n1", "pool"), "commit does not charge again")
	require.NoError(t, l.Reserve("n1", lvm("a", "pool", GiB)), "a reserve after commit is still idempotent")
	ci, _ = l.Claim("a")
	assert.Equal(t, Committed, ci.State, "and keeps the committed state")

	err := l.Commit("nope")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnknownClaim)
	assert.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "claim nope")
}

func TestRelease(t *testing.T) {
	l := testLedger(t)
	require.NoError(t, l.Reserve("n1", lvm("a", "pool", 10*GiB), lvm("b", "pool", 5*GiB), dev("d", "/dev/vdb", 0)))
	require.NoError(t, l.Commit("a"))
	assert.True(t, l.Release("a"), "a committed claim releases too")
	assert.Equal(t, 5*GiB, vgUsed(t, l, "n1", "pool"))
	assert.False(t, l.Release("a"), "releasing twice is harmless")
	assert.Equal(t, 5*GiB, vgUsed(t, l, "n1", "pool"))
	assert.True(t, l.Release("d"))
	u, _ := l.Node("n1")
	assert.Equal(t, ClaimID(""), u.Devices[0].Owner, "the device is free again")
	require.NoError(t, l.Reserve("n1", dev("e", "/dev/vdb", 0)), "and can be taken")
	assert.False(t, l.Release("never"))
	assert.Equal(t, []ClaimID{"b", "e"}, l.ClaimsOnNode("n1"))
	require.NoError(t, l.Reserve("n1", lvm("a", "pool", 95*GiB)), "a released claim ID can be charged anew")
}

func TestResize(t *testing.T) {
	cases := []struct {
		name   string
		claims []ClaimCharge
		cap    func(*NodeCapacity) // capacity change after the reservation
		id     ClaimID
		bytes  int64
		err    error
		used   int64 // pool usage after
		charge int64 // the claim's charge after
	}{
		{name: "grow", claims: []ClaimCharge{lvm("a", "pool", 10*GiB)}, id: "a", bytes: 20 * GiB, used: 20 * GiB, charge: 20 * GiB},
		{name: "grow rounds", claims: []ClaimCharge{lvm("a", "pool", 10*GiB)}, id: "a", bytes: 10*GiB + 1, used: 10*GiB + 4*MiB, charge: 10*GiB + 4*MiB},
		{name: "grow to full", claims: []ClaimCharge{lvm("a", "pool", 10*GiB), lvm("b", "pool", 10*GiB)}, id: "a", bytes: 90 * GiB, used: 100 * GiB, charge: 90 * GiB},
		{name: "grow past free", claims: []ClaimCharge{lvm("a", "pool", 10*GiB), lvm("b", "pool", 10*GiB)}, id: "a", bytes: 90*GiB + 1,
			err: ErrInsufficientCapacity, used: 20 * GiB, charge: 10 * GiB},
		{name: "shrink", claims: []ClaimCharge{lvm("a", "pool", 10*GiB)}, id: "a", bytes: GiB, used: GiB, charge: GiB},
		{name: "same size", claims: []ClaimCharge{lvm("a", "pool", 10*GiB)}, id: "a", bytes: 10 * GiB, used: 10 * GiB, charge: 10 * GiB},
		{name: "huge cannot overflow", claims: []ClaimCharge{lvm("a", "pool", 10*GiB)}, id: "a", bytes: math.MaxInt64,
			err: ErrInsufficientCapacity, used: 10 * GiB, charge: 10 * GiB},
		{name: "no growth on an over-committed VG", claims: []ClaimCharge{lvm("a", "pool", 60*GiB)},
			cap: func(c *NodeCapacity) { c.VGs[0].AllocatableBytes = 50 * GiB }, id: "a", bytes: 61 * GiB,
			err: ErrInsufficientCapacity, used: 60 * GiB, charge: 60 * GiB},
		{name: "shrinking an over-committed VG is fine", claims: []ClaimCharge{lvm("a", "pool", 60*GiB)},
			cap: func(c *NodeCapacity) { c.VGs[0].AllocatableBytes = 50 * GiB }, id: "a", bytes: 55 * GiB, used: 55 * GiB, charge: 55 * GiB},
		{name: "VG gone", claims: []ClaimCharge{lvm("a", "pool", 10*GiB)},
			cap: func(c *NodeCapacity) { c.VGs = c.VGs[1:] }, id: "a", bytes: 11 * GiB, err: ErrUnknownVG, used: -1, charge: 10 * GiB},
		{name: "unknown claim", id: "nope", bytes: GiB, err: ErrUnknownClaim},
		{name: "negative", claims: []ClaimCharge{lvm("a", "pool", 10*GiB)}, id: "a", bytes: -1, err: ErrInvalid, used: 10 * GiB, charge: 10 * GiB},
		{name: "device within its size", claims: []ClaimCharge{dev("a", "/dev/vdb", GiB)}, id: "a", bytes: 100 * GiB, used: 0, charge: 100 * GiB},
		{name: "device beyond its size", claims: []ClaimCharge{dev("a", "/dev/vdb", GiB)}, id: "a", bytes: 100*GiB + 1, err: ErrInsufficientCapacity, used: 0, charge: 100 * GiB},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := testLedger(t)
			require.NoError(t, l.Reserve("n1", tc.claims...))
			if tc.cap != nil {
				c := testCapacity()
				tc.cap(&c)
				l.SetNode("n1", c)
			}
			before := l.Overcommits()
			err := l.Resize(tc.id, tc.bytes)
			if tc.err != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tc.err)
			} else {
				require.NoError(t, err)
			}
			if tc.used >= 0 && len(tc.claims) > 0 {
				assert.Equal(t, tc.used, vgUsed(t, l, "n1", "pool"))
			}
			if ci, ok := l.Claim(tc.id); ok {
				assert.Equal(t, tc.charge, ci.Charged)
			}
			if len(before) == 0 {
				assert.Empty(t, l.Overcommits(), "a resize never over-commits")
			} else if len(l.Overcommits()) > 0 {
				assert.LessOrEqual(t, l.Overcommits()[0].ExcessBytes, before[0].ExcessBytes, "a resize never adds to an over-commit")
			}
		})
	}
}

func TestSetNodeCapacityChanges(t *testing.T) {
	l := testLedger(t)
	require.NoError(t, l.Reserve("n1", lvm("a", "pool", 60*GiB), dev("d", "/dev/vdb", GiB)))

	// Growth: the claims stay, more is free.
	c := testCapacity()
	c.VGs[0].AllocatableBytes = 200 * GiB
	l.SetNode("n1", c)
	assert.Equal(t, 60*GiB, vgUsed(t, l, "n1", "pool"))
	require.NoError(t, l.Reserve("n1", lvm("b", "pool", 140*GiB)))
	assert.Empty(t, l.Overcommits())

	// Shrink below what is charged: reported, exactly.
	c.VGs[0].AllocatableBytes = 150 * GiB
	l.SetNode("n1", c)
	assert.Equal(t, []Overcommit{{Node: "n1", Kind: KindLVM, Resource: "pool", ExcessBytes: 50 * GiB, Claims: []ClaimID{"a", "b"}}}, l.Overcommits())
	err := l.Reserve("n1", lvm("c", "pool", 1))
	assert.ErrorIs(t, err, ErrInsufficientCapacity, "an over-committed VG takes nothing more")
	u, _ := l.Node("n1")
	assert.Equal(t, int64(0), u.VGs[0].FreeBytes(), "free never shows negative")

	// The VG and the device disappear: their claims are over-committed by all they hold.
	c.VGs = c.VGs[1:]
	c.Devices = c.Devices[1:]
	l.SetNode("n1", c)
	assert.Equal(t, []Overcommit{
		{Node: "n1", Kind: KindLVM, Resource: "pool", ExcessBytes: 200 * GiB, Claims: []ClaimID{"a", "b"}},
		{Node: "n1", Kind: KindDevice, Resource: "/dev/vdb", ExcessBytes: 100 * GiB, Claims: []ClaimID{"d"}},
	}, l.Overcommits())

	// They come back: the claims are charged on them again.
	l.SetNode("n1", testCapacity())
	assert.Equal(t, 200*GiB, vgUsed(t, l, "n1", "pool"))
	u, _ = l.Node("n1")
	assert.Equal(t, ClaimID("d"), u.Devices[0].Owner)
	assert.Len(t, l.Overcommits(), 1)
	l.Release("b")
	assert.Empty(t, l.Overcommits())
}

func TestSetNodeNormalises(t *testing.T) {
	l := NewLedger()
	l.SetNode("n", NodeCapacity{
		VGs:         []VGCapacity{{Name: "a", AllocatableBytes: -5}, {Name: "b", AllocatableBytes: GiB}, {Name: "a", AllocatableBytes: 100 * GiB}},
		Devices:     []DeviceCapacity{{Name: "/dev/x", SizeBytes: GiB}, {Name: "/dev/x", SizeBytes: 9 * GiB}},
		MountPoints: []DeviceCapacity{{Name: "/mnt", SizeBytes: -1}},
	})
	u, ok := l.Node("n")
	require.True(t, ok)
	assert.Equal(t, []VGUsage{
		{VGCapacity: VGCapacity{Name: "a", AllocatableBytes: 0, ExtentSizeBytes: DefaultExtentSize, PVCount: 1}},
		{VGCapacity: VGCapacity{Name: "b", AllocatableBytes: GiB, ExtentSizeBytes: DefaultExtentSize, PVCount: 1}},
	}, u.VGs, "the first of a repeated name wins; negatives are zero; defaults filled")
	assert.Equal(t, []ExclusiveUsage{{DeviceCapacity: DeviceCapacity{Name: "/dev/x", SizeBytes: GiB}}}, u.Devices)
	assert.Equal(t, int64(0), u.MountPoints[0].SizeBytes)
	err := l.Reserve("n", lvm("c", "a", 1))
	assert.ErrorIs(t, err, ErrInsufficientCapacity, "the repeated name did not add capacity")
}

func TestRemoveNode(t *testing.T) {
	l := testLedger(t)
	l.SetNode("n3", NodeCapacity{VGs: []VGCapacity{{Name: "pool", AllocatableBytes: GiB}}})
	require.NoError(t, l.Reserve("n1", lvm("b", "pool", GiB), lvm("a", "pool", GiB)))
	require.NoError(t, l.Reserve("n2", lvm("c", "pool", GiB)))
	assert.Equal(t, []ClaimID{"a", "b"}, l.RemoveNode("n1"))
	assert.False(t, l.HasNode("n1"))
	assert.Equal(t, 2, l.NumNodes())
	assert.ElementsMatch(t, []string{"n2", "n3"}, l.NodeNames())
	assert.Equal(t, []ClaimID{"c"}, l.ClaimIDs())
	_, ok := l.Claim("a")
	assert.False(t, ok)
	assert.Nil(t, l.RemoveNode("n1"), "removing twice is harmless")
	assert.Nil(t, l.ClaimsOnNode("n1"))
	// The remaining nodes still work after the index moved.
	require.NoError(t, l.Reserve("n3", lvm("d", "pool", GiB)))
	assert.True(t, l.Release("c"))
	assert.Equal(t, int64(0), vgUsed(t, l, "n2", "pool"))
	// The node can come back, empty.
	l.SetNode("n1", testCapacity())
	assert.Equal(t, int64(0), vgUsed(t, l, "n1", "pool"))
	assert.Empty(t, l.Overcommits())
}

func TestLedgerQueries(t *testing.T) {
	l := testLedger(t)
	assert.True(t, l.HasNode("n1"))
	assert.False(t, l.HasNode("n9"))
	assert.Equal(t, []string{"n1", "n2"}, l.NodeNames())
	require.NoError(t, l.Reserve("n1", lvm("z", "pool", GiB), lvm("y", "pool", GiB)))
	require.NoError(t, l.Reserve("n2", lvm("x", "pool", GiB)))
	assert.Equal(t, []ClaimID{"x", "y", "z"}, l.ClaimIDs())
	assert.Equal(t, []ClaimID{"y", "z"}, l.ClaimsOnNode("n1"))
	assert.Equal(t, 3, l.NumClaims())
	_, ok := l.Node("n9")
	assert.False(t, ok)
	assert.Equal(t, "LVM", KindLVM.String())
	assert.Equal(t, "Device", KindDevice.String())
	assert.Equal(t, "MountPoint", KindMountPoint.String())
	assert.Equal(t, "ResourceKind(7)", ResourceKind(7).String())
	assert.Equal(t, 3*GiB, VGUsage{VGCapacity: VGCapacity{AllocatableBytes: 4 * GiB}, UsedBytes: GiB}.FreeBytes())
}

func TestClone(t *testing.T) {
	l := testLedger(t)
	require.NoError(t, l.Reserve("n1", lvm("a", "pool", 10*GiB), dev("d", "/dev/vdb", 0)))
	c := l.Clone()
	require.NoError(t, c.Reserve("n1", lvm("b", "pool", 90*GiB)))
	c.Release("d")
	require.NoError(t, c.Commit("a"))
	c.SetNode("n9", NodeCapacity{})
	c.RemoveNode("n2")

	assert.Equal(t, 10*GiB, vgUsed(t, l, "n1", "pool"), "the original is untouched")
	u, _ := l.Node("n1")
	assert.Equal(t, ClaimID("d"), u.Devices[0].Owner)
	ci, _ := l.Claim("a")
	assert.Equal(t, Reserved, ci.State)
	assert.Equal(t, []string{"n1", "n2"}, l.NodeNames())
	assert.Equal(t, 100*GiB, vgUsed(t, c, "n1", "pool"))
	assert.ErrorIs(t, c.Reserve("n1", lvm("e", "pool", 1)), ErrInsufficientCapacity)
	require.NoError(t, l.Reserve("n1", lvm("e", "pool", 1)))
}

func TestOvercommitsCountsAnExclusiveHeldTwice(t *testing.T) {
	// Two claims on one device can only come from a capacity change that
	// renamed devices: both stay charged, and the extra holder is reported.
	l := NewLedger()
	l.SetNode("n", NodeCapacity{Devices: []DeviceCapacity{{Name: "/dev/a", SizeBytes: GiB}, {Name: "/dev/b", SizeBytes: GiB}}})
	require.NoError(t, l.Reserve("n", dev("x", "/dev/a", 0), dev("y", "/dev/b", 0)))
	// The ledger refuses a second holder, so forge the state a rename leaves.
	r := l.claims["y"]
	r.Device = "/dev/a"
	assert.Equal(t, []Overcommit{{Node: "n", Kind: KindDevice, Resource: "/dev/a", ExcessBytes: GiB, Claims: []ClaimID{"x", "y"}}}, l.Overcommits())
}

func TestLedgerErrorsAreSentinels(t *testing.T) {
	for _, e := range []error{ErrInsufficientCapacity, ErrUnknownNode, ErrUnknownVG, ErrUnknownDevice, ErrConflict, ErrInvalid, ErrUnknownClaim} {
		assert.NotEmpty(t, e.Error())
		for _, other := range []error{ErrInsufficientCapacity, ErrUnknownNode, ErrUnknownVG, ErrUnknownDevice, ErrConflict} {
			if e != other {
				assert.False(t, errors.Is(e, other), "%v is not %v", e, other)
			}
		}
	}
}

// Capacity changes that change a node's number of VGs or devices move its
// entries to the end of the pools; once dead entries dominate, the pools are
// rebuilt. Figures and claims must survive that, and memory stays bounded.
func TestPoolsCompactUnderChurn(t *testing.T) {
	l := NewLedger()
	const nodes = 300
	name := func(i int) string { return "node-" + string(rune('A'+i/26)) + string(rune('a'+i%26)) }
	capOf := func(round, i int) NodeCapacity {
		c := NodeCapacity{VGs: []VGCapacity{{Name: "pool", AllocatableBytes: 100 * GiB}}}
		for k := 0; k < (round+i)%3; k++ {
			c.VGs = append(c.VGs, VGCapacity{Name: "extra" + string(rune('0'+k)), AllocatableBytes: GiB})
			c.Devices = append(c.Devices, DeviceCapacity{Name: "/dev/x" + string(rune('0'+k)), SizeBytes: GiB})
		}
		c.Devices = append(c.Devices, DeviceCapacity{Name: "/dev/keep", SizeBytes: 10 * GiB})
		return c
	}
	for i := 0; i < nodes; i++ {
		l.SetNode(name(i), capOf(0, i))
		require.NoError(t, l.Reserve(name(i), lvm(ClaimID(name(i)+"/lv"), "pool", GiB*int64(1+i%7)), dev(ClaimID(name(i)+"/dev"), "/dev/keep", 0)))
	}
	for round := 1; round <= 12; round++ {
		for i := 0; i < nodes; i++ {
			l.SetNode(name(i), capOf(round, i))
		}
		if round == 6 {
			for i := 0; i < nodes; i += 10 {
				l.RemoveNode(name(i))
				l.SetNode(name(i), capOf(round, i))
				require.NoError(t, l.Reserve(name(i), lvm(ClaimID(name(i)+"/lv"), "pool", GiB*int64(1+i%7)), dev(ClaimID(name(i)+"/dev"), "/dev/keep", 0)))
			}
		}
	}
	live := 0
	for i := 0; i < nodes; i++ {
		want := capOf(12, i)
		u, ok := l.Node(name(i))
		require.True(t, ok)
		require.Len(t, u.VGs, len(want.VGs))
		assert.Equal(t, "pool", u.VGs[0].Name)
		assert.Equal(t, GiB*int64(1+i%7), u.VGs[0].UsedBytes, "%s", name(i))
		keep := u.Devices[len(u.Devices)-1]
		assert.Equal(t, "/dev/keep", keep.Name)
		assert.Equal(t, ClaimID(name(i)+"/dev"), keep.Owner)
		live += len(u.VGs)
	}
	assert.Empty(t, l.Overcommits())
	assert.LessOrEqual(t, len(l.vgs), 2*live+1024, "dead pool entries are reclaimed")
	assert.Less(t, l.deadVGs, len(l.vgs))
	c := l.Clone()
	require.NoError(t, c.Reserve(name(1), lvm("more", "pool", 90*GiB)))
	assert.ErrorIs(t, l.Reserve(name(1), lvm("more", "pool", 99*GiB)), ErrInsufficientCapacity, "the original still counts its own claims")
}
