package core

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAllocatable(t *testing.T) {
	vg := VolumeGroup{
		Name:       "open-local-pool-0",
		TotalBytes: 100 * GiB,
		LVs: []LogicalVolume{
			{Name: "local-a", SizeBytes: 10 * GiB},    // ours
			{Name: "csi-old", SizeBytes: 5 * GiB},     // ours (older volumes)
			{Name: "snap-x", SizeBytes: 1 * GiB},      // ours (COW snapshot)
			{Name: "root", SizeBytes: 20 * GiB},       // the host's
			{Name: "docker-pool", SizeBytes: 7 * GiB}, // the host's
		},
	}
	cases := []struct {
		name     string
		vg       VolumeGroup
		prefixes []string
		res      Reservation
		want     int64
	}{
		{"foreign LVs are subtracted", vg, DefaultOwnedLVPrefixes, Reservation{}, 73 * GiB},
		{"absolute reservation", vg, DefaultOwnedLVPrefixes, Reservation{Bytes: 3 * GiB}, 70 * GiB},
		{"percentage of the total, not of what is left", vg, DefaultOwnedLVPrefixes, Reservation{Percent: 10, IsPercent: true}, 63 * GiB},
		{"fractional percentage", vg, DefaultOwnedLVPrefixes, Reservation{Percent: 2.5, IsPercent: true}, 73*GiB - 100*GiB/40},
		{"reservation larger than what is left", vg, DefaultOwnedLVPrefixes, Reservation{Bytes: 80 * GiB}, 0},
		{"100 percent", vg, DefaultOwnedLVPrefixes, Reservation{Percent: 100, IsPercent: true}, 0},
		{"no prefixes: every LV is foreign", vg, nil, Reservation{}, 57 * GiB},
		{"empty prefix marks nothing", vg, []string{""}, Reservation{}, 57 * GiB},
		{"custom prefix", vg, []string{"docker"}, Reservation{}, 57*GiB + 7*GiB},
		{"empty VG", VolumeGroup{TotalBytes: GiB}, DefaultOwnedLVPrefixes, Reservation{}, GiB},
		{"negative foreign size ignored", VolumeGroup{TotalBytes: GiB, LVs: []LogicalVolume{{Name: "x", SizeBytes: -5}}}, nil, Reservation{}, GiB},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Allocatable(tc.vg, tc.prefixes, tc.res))
		})
	}
	assert.Equal(t, 16*GiB, OwnedUsage(vg, DefaultOwnedLVPrefixes))
	assert.Equal(t, int64(0), OwnedUsage(vg, nil))
}

func TestReservationOf(t *testing.T) {
	cases := []struct {
		r     Reservation
		total int64
		want  int64
	}{
		{Reservation{Bytes: 5}, 100, 5},
		{Reservation{Bytes: 500}, 100, 500}, // Allocatable clamps, Of reports what was asked
		{Reservation{Bytes: -5}, 100, 0},
		{Reservation{Percent: 50, IsPercent: true}, 101, 50}, // rounded down
		{Reservation{Percent: 0, IsPercent: true}, 100, 0},
		{Reservation{Percent: 100, IsPercent: true}, 100, 100},
		{Reservation{Percent: 150, IsPercent: true}, 100, 100},
		{Reservation{Percent: 20, IsPercent: true}, 0, 0},
		{Reservation{Percent: 20, IsPercent: true}, -10, 0},
		{Reservation{Percent: 100, IsPercent: true}, math.MaxInt64, math.MaxInt64},
	}
	// Near the top of int64, float64 is exact to a part in 2^53 and the result
	// stays within the VG.
	huge := Reservation{Percent: 99.999, IsPercent: true}.Of(math.MaxInt64)
	assert.InEpsilon(t, 0.99999*math.MaxInt64, float64(huge), 1e-12)
	assert.LessOrEqual(t, huge, int64(math.MaxInt64))
	for _, tc := range cases {
		got := tc.r.Of(tc.total)
		assert.Equal(t, tc.want, got, "%+v of %d", tc.r, tc.total)
		if tc.r.IsPercent {
			assert.GreaterOrEqual(t, got, int64(0))
			assert.LessOrEqual(t, got, max(0, tc.total))
		}
	}
}

func TestParseReservations(t *testing.T) {
	got, err := ParseReservations(`{"open-local-pool-0":"10Gi","share":"20%","paas1":"0"}`)
	require.NoError(t, err)
	assert.Equal(t, map[string]Reservation{
		"open-local-pool-0": {Bytes: 10 * GiB},
		"share":             {Percent: 20, IsPercent: true},
		"paas1":             {},
	}, got)

	for _, empty := range []string{"", "  ", "null", "{}"} {
		got, err := ParseReservations(empty)
		require.NoError(t, err, "%q", empty)
		assert.Empty(t, got)
	}

	bad := []struct{ in, want string }{
		{`not json`, "must be a JSON object"},
		{`["10Gi"]`, "must be a JSON object"},
		{`{"vg": 10}`, "must be a JSON object"},
		{`{"vg":"10Gi"} trailing`, "must be a JSON object"},
		{`{"vg":"ten"}`, `volume group "vg"`},
		{`{"a":"1Gi","vg":"120%"}`, `volume group "vg": invalid percentage "120%"`},
		{`{"vg":"-1Gi"}`, `volume group "vg": invalid size "-1Gi": negative`},
		{`{"":"1Gi"}`, "a volume group name is empty"},
	}
	for _, tc := range bad {
		_, err := ParseReservations(tc.in)
		require.Error(t, err, "%s", tc.in)
		assert.ErrorIs(t, err, ErrInvalid)
		assert.Contains(t, err.Error(), ReservedAnnotation)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestIsOwnedLV(t *testing.T) {
	assert.True(t, IsOwnedLV("local-123", DefaultOwnedLVPrefixes))
	assert.True(t, IsOwnedLV("csi-1", DefaultOwnedLVPrefixes))
	assert.True(t, IsOwnedLV("snapshot-1", DefaultOwnedLVPrefixes))
	assert.False(t, IsOwnedLV("root", DefaultOwnedLVPrefixes))
	assert.False(t, IsOwnedLV("mylocal", DefaultOwnedLVPrefixes), "a prefix, not a substring")
	assert.False(t, IsOwnedLV("anything", []string{""}))
}

// FuzzParseReservations: never panics; what parses holds values that are
// sizes or percentages from 0 to 100, each reserving within its VG.
func FuzzParseReservations(f *testing.F) {
	for _, s := range []string{
		`{"open-local-pool-0":"10Gi"}`, `{"a":"20%","b":"1Ki"}`, `{"a":"101%"}`, `{"":"1"}`, `null`, ``,
		`{"a":"10abc%"}`, `{"a":1}`, `{"a":"1e1000000"}`, `{"a":"-0"}`, `[1]`, `{"a":"1","a":"2%"}`,
	} {
		f.Add(s, int64(100*GiB))
	}
	f.Fuzz(func(t *testing.T, annotation string, total int64) {
		if len(annotation) > 512 {
			t.Skip("longer annotations only slow the parsers down")
		}
		got, err := ParseReservations(annotation)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			require.Contains(t, err.Error(), ReservedAnnotation)
			return
		}
		for vg, r := range got {
			require.NotEmpty(t, vg)
			if r.IsPercent {
				require.Zero(t, r.Bytes)
				require.GreaterOrEqual(t, float64(r.Percent), 0.0)
				require.LessOrEqual(t, float64(r.Percent), 100.0)
				of := r.Of(total)
				require.GreaterOrEqual(t, of, int64(0))
				require.LessOrEqual(t, of, max(0, total))
			} else {
				require.GreaterOrEqual(t, r.Bytes, int64(0))
			}
			a := Allocatable(VolumeGroup{TotalBytes: total}, nil, r)
			require.GreaterOrEqual(t, a, int64(0))
			require.LessOrEqual(t, a, max(0, total))
		}
	})
}
