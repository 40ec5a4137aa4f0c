package core

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPlaceBinpackPrefersUsedVG(t *testing.T) {
	l := NewLedger()
	l.SetNode("a", NodeCapacity{VGs: []VGCapacity{{Name: "pool", AllocatableBytes: 100 * GiB}}})
	l.SetNode("b", NodeCapacity{VGs: []VGCapacity{{Name: "pool", AllocatableBytes: 100 * GiB}}})
	require.NoError(t, l.Reserve("b", ClaimCharge{ID: "x", Kind: KindLVM, VG: "pool", Bytes: 50 * GiB}))
	e := NewEvaluator(l)
	pod := PodRequest{Name: "p", Volumes: []VolumeRequest{{Claim: "c1", Kind: VolumeLVM, Bytes: 10 * GiB}}}
	r, err := e.Place(pod, Binpack, PlaceOptions{})
	require.NoError(t, err)
	require.Equal(t, "b", r.Assignment.Node)
	pod.Volumes[0].Claim = "c2"
	r, err = e.Place(pod, Spread, PlaceOptions{})
	require.NoError(t, err)
	require.Equal(t, "a", r.Assignment.Node)
	_, err = e.Place(PodRequest{Volumes: []VolumeRequest{{Claim: "big", Kind: VolumeLVM, Bytes: 95 * GiB}}}, Binpack, PlaceOptions{})
	require.ErrorContains(t, err, "0/2 nodes are available: 2 Insufficient LVM storage")
	require.Empty(t, l.Overcommits())
}
