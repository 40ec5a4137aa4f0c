package core

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string // substring of the error, "" for success
	}{
		{"0", 0, ""},
		{"1", 1, ""},
		{" 10Gi ", 10 * GiB, ""},
		{"1Ki", KiB, ""},
		{"500M", 500_000_000, ""},
		{"1.5Gi", 3 * GiB / 2, ""},
		{"1e3", 1000, ""},
		{"1073741824", GiB, ""},
		{"0.5", 1, ""},          // fractions of a byte round up
		{"1.0000000001", 2, ""}, // exactly, not through a float
		{"100m", 1, ""},         // 0.1 byte
		{"1e-1000000", 1, ""},   // tiny but positive: one byte, quickly
		{"0e1000000", 0, ""},    // zero however it is written
		{"9223372036854775807", math.MaxInt64, ""},
		{"9223372036854775808", 0, "too large"},
		{"8Ei", 0, "too large"}, // 2^63: the quantity type would cap it silently
		{"7Ei", 7 << 60, ""},
		{"1e19", 0, "too large"},
		{"1e1000000", 0, "too large"},
		{"", 0, "empty"},
		{"   ", 0, "empty"},
		{"-1", 0, "negative"},
		{"-1Gi", 0, "negative"},
		{"ten", 0, "not a quantity"},
		{"10GB", 0, "not a quantity"},
		{"10 Gi", 0, "not a quantity"},
		{"m", 0, "not a quantity"}, // the quantity parser would say 0
		{"Gi", 0, "not a quantity"},
		{"0.000m", 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.err != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalid)
				var iv *InvalidValueError
				require.ErrorAs(t, err, &iv)
				assert.Equal(t, "size", iv.Field)
				assert.Contains(t, err.Error(), tc.err)
				assert.Contains(t, err.Error(), tc.in, "the message quotes what was written")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFormatSizeRoundTrips(t *testing.T) {
	for _, b := range []int64{0, 1, 1023, KiB, 1536, GiB, 10 * GiB, 860063006720, math.MaxInt64} {
		s := FormatSize(b)
		got, err := ParseSize(s)
		require.NoError(t, err, "%d formats as %q", b, s)
		assert.Equal(t, b, got, "%q", s)
	}
	assert.Equal(t, "10Gi", FormatSize(10*GiB))
}

func TestRoundUp(t *testing.T) {
	cases := []struct{ n, unit, want int64 }{
		{0, 4, 0},
		{-5, 4, 0},
		{1, 4, 4},
		{4, 4, 4},
		{5, 4, 8},
		{7, 0, 7},
		{7, -3, 7},
		{math.MaxInt64, 4, math.MaxInt64}, // saturates, never below n
		{math.MaxInt64 - 1, DefaultExtentSize, math.MaxInt64},
		{math.MaxInt64 - math.MaxInt64%DefaultExtentSize, DefaultExtentSize, math.MaxInt64 - math.MaxInt64%DefaultExtentSize},
	}
	for _, tc := range cases {
		got := RoundUp(tc.n, tc.unit)
		assert.Equal(t, tc.want, got, "RoundUp(%d, %d)", tc.n, tc.unit)
	}
}

// LVSize must round exactly as lvcreate does: up to whole extents, and for a
// striped LV up to a whole number of extents on every stripe.
func TestLVSizeRoundsLikeLVM(t *testing.T) {
	const ext = DefaultExtentSize
	cases := []struct {
		name    string
		req     int64
		extent  int64
		stripes int
		want    int64
	}{
		{"exact extents", 8 * MiB, ext, 1, 8 * MiB},
		{"one byte over", 8*MiB + 1, ext, 1, 12 * MiB},
		{"one byte", 1, ext, 1, 4 * MiB},
		{"zero takes one extent", 0, ext, 1, 4 * MiB},
		{"negative takes one extent", -1, ext, 1, 4 * MiB},
		{"default extent when unset", 1, 0, 1, 4 * MiB},
		{"1Gi", GiB, ext, 1, GiB},
		{"10Gi with 32 MiB extents", 10*GiB + 1, 32 * MiB, 1, 10*GiB + 32*MiB},
		{"striped 2 rounds to 8 MiB", 5 * MiB, ext, 2, 8 * MiB},
		{"striped 3 rounds to 12 MiB", 13 * MiB, ext, 3, 24 * MiB},
		{"striped 3 exact", 12 * MiB, ext, 3, 12 * MiB},
		{"striped zero takes one extent per stripe", 0, ext, 4, 16 * MiB},
		{"stripes below 1 mean linear", 5 * MiB, ext, 0, 8 * MiB},
		{"huge saturates", math.MaxInt64, ext, 1, math.MaxInt64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := LVSize(tc.req, tc.extent, tc.stripes)
			assert.Equal(t, tc.want, got)
			assert.GreaterOrEqual(t, got, tc.req, "never smaller than asked")
		})
	}
}

func TestParseSizeOrPercent(t *testing.T) {
	cases := []struct {
		in      string
		bytes   int64
		pct     Percent
		isPct   bool
		wantErr bool
	}{
		{"10Gi", 10 * GiB, 0, false, false},
		{"20%", 0, 20, true, false},
		{" 12.5 % ", 0, 12.5, true, false},
		{"0%", 0, 0, true, false},
		{"100%", 0, 100, true, false},
		{".5%", 0, 0.5, true, false},
		{"5.%", 0, 5, true, false},
		{"101%", 0, 0, true, true},
		{"-1%", 0, 0, true, true},
		{"%", 0, 0, true, true},
		{"10abc%", 0, 0, true, true}, // a scanf would read 10 and stop
		{"1e1%", 0, 0, true, true},
		{"0x10%", 0, 0, true, true},
		{"NaN%", 0, 0, true, true},
		{"Inf%", 0, 0, true, true},
		{"20%%", 0, 0, true, true},
		{"1.2.3%", 0, 0, true, true},
		{"-5Gi", 0, 0, false, true},
		{"x", 0, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			b, p, isPct, err := ParseSizeOrPercent(tc.in)
			assert.Equal(t, tc.isPct, isPct)
			if tc.wantErr {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalid)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.bytes, b)
			assert.Equal(t, tc.pct, p)
		})
	}
}

func TestParseMediaType(t *testing.T) {
	for _, ok := range []string{"ssd", "hdd"} {
		m, err := ParseMediaType(ok)
		require.NoError(t, err)
		assert.Equal(t, MediaType(ok), m)
	}
	for _, bad := range []string{"", "SSD", "nvme"} {
		_, err := ParseMediaType(bad)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrInvalid)
		assert.Contains(t, err.Error(), "accepted: ssd, hdd")
	}
}

func TestInvalidValueErrorMessage(t *testing.T) {
	err := &InvalidValueError{Field: "strategy", Value: "pack", Accepted: []string{"binpack", "spread"}, Reason: "unknown"}
	assert.Equal(t, `invalid strategy "pack": unknown (accepted: binpack, spread)`, err.Error())
	assert.True(t, errors.Is(err, ErrInvalid))
	assert.True(t, errors.Is(ErrUnknownClaim, ErrInvalid), "ErrUnknownClaim is also ErrInvalid")
	assert.False(t, errors.Is(ErrInvalid, ErrUnknownClaim))
}

// FuzzParseSize: never panics; what parses is non-negative, equals the
// quantity rounded up to a byte, and survives FormatSize.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1", "10Gi", "500M", "1.5Gi", "0.5", "1e3", "1e-1000000", "9223372036854775807",
		"9223372036854775808", "8Ei", "7.99Ei", "-1", "", " 1Ki ", "1.0000000001", "100m", "12345678901234567890123456789e-10", "m", "Gi", "0.000m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 64 {
			t.Skip("longer quantities only slow the quantity parser down")
		}
		v, err := ParseSize(s)
		if err != nil {
			var iv *InvalidValueError
			require.ErrorAs(t, err, &iv)
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		require.GreaterOrEqual(t, v, int64(0))
		q, qerr := resource.ParseQuantity(strings.TrimSpace(s))
		require.NoError(t, qerr, "ParseSize accepted what the quantity parser rejects")
		require.True(t, strings.ContainsAny(s, "0123456789"), "a size has digits")
		if q.CmpInt64(1<<53) < 0 {
			// Quantity.Value rounds up too; compare where it cannot overflow.
			require.Equal(t, q.Value(), v, "%q", s)
		}
		back, err := ParseSize(FormatSize(v))
		require.NoError(t, err)
		require.Equal(t, v, back)
	})
}

// FuzzParseSizeOrPercent: never panics; a percentage is 0..100 and comes
// from a value ending in %; anything else parses as ParseSize does.
func FuzzParseSizeOrPercent(f *testing.F) {
	for _, s := range []string{"20%", "12.5%", "100%", "101%", "10abc%", "%", "10Gi", "-1", " 5 % ", "NaN%", ".5%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 64 {
			t.Skip("longer values only slow the quantity parser down")
		}
		b, p, isPct, err := ParseSizeOrPercent(s)
		require.Equal(t, strings.HasSuffix(strings.TrimSpace(s), "%"), isPct)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		if isPct {
			require.Zero(t, b)
			require.GreaterOrEqual(t, float64(p), 0.0)
			require.LessOrEqual(t, float64(p), 100.0)
			return
		}
		want, werr := ParseSize(s)
		require.NoError(t, werr)
		require.Equal(t, want, b)
	})
}
