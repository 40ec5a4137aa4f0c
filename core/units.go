package core

import (
	"math"
	"strconv"
	"strings"

	"gopkg.in/inf.v0"
	"k8s.io/apimachinery/pkg/api/resource"
)

const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30

	// DefaultExtentSize is LVM's default physical extent size.
	DefaultExtentSize = 4 * MiB
	// SectorSize is the unit LVM and the kernel size block devices in.
	SectorSize int64 = 512
)

// ParseSize parses a byte count written as a Kubernetes quantity ("10Gi",
// "500M", "1073741824"). Fractions of a byte are rounded up; negative values
// and values beyond math.MaxInt64 are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	bad := func(reason string) (int64, error) {
		return 0, &InvalidValueError{Field: "size", Value: s, Reason: reason}
	}
	if t == "" {
		return bad("empty")
	}
	q, err := resource.ParseQuantity(t)
	if err != nil || !strings.ContainsAny(t, "0123456789") {
		// The quantity parser takes a bare suffix ("m", "Gi") for zero;
		// nobody means that.
		return bad("not a quantity such as 10Gi or 500M")
	}
	if q.Sign() < 0 {
		return bad("negative")
	}
	v, ok := q.AsInt64()
	if !ok {
		// A fraction of a byte or a value beyond int64: decide exactly in
		// decimal arithmetic (a float64 would misround "1.0000000001" or 2^63-1).
		d := q.AsDec()
		if d.Scale() < -18 || d.Cmp(maxInt64Dec) > 0 {
			// A non-zero integer times 10^19 or more is beyond int64; testing
			// the scale first spares a huge multiplication for "1e1000000".
			return bad("too large")
		}
		if d.Sign() == 0 {
			return 0, nil
		}
		if sc := int(d.Scale()); sc > 0 && d.UnscaledBig().BitLen() < 3*sc {
			// Below one byte (10^sc > 2^(3sc) > unscaled): rounds up to 1
			// without dividing by a huge power of ten.
			return 1, nil
		}
		if v, ok = new(inf.Dec).Round(d, 0, inf.RoundCeil).Unscaled(); !ok {
			return bad("too large")
		}
	}
	// The quantity type caps binary-suffixed values at 2^63-1 ("8Ei"), and no
	// binary quantity is exactly that, so that value means "capped".
	if v == math.MaxInt64 && q.Format == resource.BinarySI {
		return bad("too large")
	}
	return v, nil
}

var maxInt64Dec = inf.NewDec(math.MaxInt64, 0)

// FormatSize prints bytes the way kubectl prints binary quantities.
func FormatSize(b int64) string {
	return resource.NewQuantity(b, resource.BinarySI).String()
}

// RoundUp rounds n up to a multiple of unit (unit <= 0 leaves n as it is;
// a negative n gives 0). Where the next multiple does not fit in an int64 it
// saturates at math.MaxInt64, so the result is never smaller than n.
func RoundUp(n, unit int64) int64 {
	if n <= 0 {
		return 0
	}
	if unit <= 0 {
		return n
	}
	r := n % unit
	if r == 0 {
		return n
	}
	if n > math.MaxInt64-(unit-r) {
		return math.MaxInt64
	}
	return n + unit - r
}

// LVSize is the size LVM gives an LV asked for with `lvcreate -L <bytes>b`:
// the request rounded up to whole extents and, for a striped LV, to a whole
// number of extents per stripe (LVM's "Rounding size up to full stripe size").
// A zero request still takes one extent per stripe, as LVM refuses 0-size LVs.
func LVSize(requestBytes, extentSize int64, stripes int) int64 {
	if extentSize <= 0 {
		extentSize = DefaultExtentSize
	}
	if stripes < 1 {
		stripes = 1
	}
	unit := extentSize * int64(stripes)
	if requestBytes <= 0 {
		return unit
	}
	return RoundUp(requestBytes, unit)
}

// Percent is a parsed "20%" value.
type Percent float64

// ParseSizeOrPercent parses "10Gi" or "20%" (the storage-reserved annotation's
// forms). Exactly one of bytes or pct is meaningful, as isPercent says. A
// percentage is a plain decimal number from 0 to 100 ("12.5%").
func ParseSizeOrPercent(s string) (bytes int64, pct Percent, isPercent bool, err error) {
	t := strings.TrimSpace(s)
	if num, ok := strings.CutSuffix(t, "%"); ok {
		num = strings.TrimSpace(num)
		f, perr := strconv.ParseFloat(num, 64)
		if !isPlainDecimal(num) || perr != nil || f < 0 || f > 100 {
			return 0, 0, true, &InvalidValueError{Field: "percentage", Value: s, Reason: "must be a number from 0 to 100 followed by %"}
		}
		return 0, Percent(f), true, nil
	}
	b, err := ParseSize(t)
	return b, 0, false, err
}

// isPlainDecimal accepts digits with at most one decimal point and at least
// one digit: what people write as a percentage, none of ParseFloat's
// exponents, hexadecimal, underscores, signs, "Inf" or "NaN".
func isPlainDecimal(s string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
