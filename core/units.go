package core

import (
	"fmt"
	"math"
	"strings"

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
// "500M", "1073741824"). Fractions of a byte are rounded up; negative and
// non-finite values are errors.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, &InvalidValueError{Field: "size", Value: s, Reason: "empty"}
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, &InvalidValueError{Field: "size", Value: s, Reason: "not a quantity such as 10Gi or 500M"}
	}
	if q.Sign() < 0 {
		return 0, &InvalidValueError{Field: "size", Value: s, Reason: "negative"}
	}
	v, ok := q.AsInt64()
	if !ok {
		// A fractional or very large value: round up through the decimal form.
		f := q.AsApproximateFloat64()
		if f > math.MaxInt64/2 || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, &InvalidValueError{Field: "size", Value: s, Reason: "too large"}
		}
		v = int64(math.Ceil(f))
	}
	return v, nil
}

// FormatSize prints bytes the way kubectl prints binary quantities.
func FormatSize(b int64) string {
	return resource.NewQuantity(b, resource.BinarySI).String()
}

// RoundUp rounds n up to a multiple of unit (unit <= 0 leaves n as it is).
// It saturates instead of overflowing.
func RoundUp(n, unit int64) int64 {
	if unit <= 0 || n <= 0 {
		if n < 0 {
			return 0
		}
		return n
	}
	r := n % unit
	if r == 0 {
		return n
	}
	if n > math.MaxInt64-(unit-r) {
		return math.MaxInt64 - (math.MaxInt64 % unit)
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
// forms). Exactly one of bytes or pct is meaningful, as isPercent says.
func ParseSizeOrPercent(s string) (bytes int64, pct Percent, isPercent bool, err error) {
	t := strings.TrimSpace(s)
	if strings.HasSuffix(t, "%") {
		var f float64
		if _, e := fmt.Sscanf(strings.TrimSuffix(t, "%"), "%g", &f); e != nil || math.IsNaN(f) || f < 0 || f > 100 || strings.TrimSpace(strings.TrimSuffix(t, "%")) == "" {
			return 0, 0, true, &InvalidValueError{Field: "percentage", Value: s, Reason: "must be a number from 0 to 100 followed by %"}
		}
		return 0, Percent(f), true, nil
	}
	b, err := ParseSize(t)
	return b, 0, false, err
}
