package core

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// ReservedAnnotation is the NodeLocalStorage annotation that holds back VG
// capacity from Open-Local: JSON {"<vg>": "10Gi" | "20%"}.
const ReservedAnnotation = "csi.aliyun.com/storage-reserved"

// DefaultOwnedLVPrefixes are LV name prefixes that mark an LV as Open-Local's:
// "local" (the provisioner's volume-name prefix and the agent's --lvname default),
// "csi-" (open-local's exception for older volumes) and "snap" (the snapshotter's
// name prefix, so that our COW snapshots are charged by the ledger, not subtracted twice).
var DefaultOwnedLVPrefixes = []string{"local", "csi-", "snap"}

// Reservation is a parsed storage-reserved value for one VG.
type Reservation struct {
	Bytes     int64
	Percent   Percent
	IsPercent bool
}

// Of returns the reserved bytes of a VG of the given total size. A
// percentage is taken of the total and rounded down; the result is never
// negative and, for a percentage, never above the total.
func (r Reservation) Of(totalBytes int64) int64 {
	if !r.IsPercent {
		return max(0, r.Bytes)
	}
	if totalBytes <= 0 || r.Percent <= 0 {
		return 0
	}
	if r.Percent >= 100 {
		return totalBytes
	}
	// float64 keeps 53 bits: exact to the byte below 8 PiB, and off by less
	// than a part in 10^15 above, which the clamp keeps within the VG.
	f := math.Floor(float64(totalBytes) * float64(r.Percent) / 100)
	if f >= float64(totalBytes) {
		return totalBytes
	}
	return int64(f)
}

// ParseReservations parses the storage-reserved annotation. An empty value
// reserves nothing. A malformed one is an error naming the VG and the value.
func ParseReservations(annotation string) (map[string]Reservation, error) {
	if strings.TrimSpace(annotation) == "" {
		return nil, nil
	}
	var raw map[string]string
	if err := json.Unmarshal([]byte(annotation), &raw); err != nil {
		return nil, &InvalidValueError{Field: ReservedAnnotation, Value: annotation, Reason: "must be a JSON object of VG name to size or percentage, e.g. {\"open-local-pool-0\":\"10Gi\"}"}
	}
	out := make(map[string]Reservation, len(raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, vg := range keys {
		if strings.TrimSpace(vg) == "" {
			return nil, &InvalidValueError{Field: ReservedAnnotation, Value: annotation, Reason: "a volume group name is empty"}
		}
		b, p, isPct, err := ParseSizeOrPercent(raw[vg])
		if err != nil {
			return nil, fmt.Errorf("%s: volume group %q: %w", ReservedAnnotation, vg, err)
		}
		out[vg] = Reservation{Bytes: b, Percent: p, IsPercent: isPct}
	}
	return out, nil
}

// IsOwnedLV reports whether an LV name marks the LV as Open-Local's.
func IsOwnedLV(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Allocatable is what Open-Local may hand out of a VG: its size minus the LVs
// that are not Open-Local's minus the reservation. It never goes below zero.
// (open-local ignores percentage reservations; this honours them.)
func Allocatable(vg VolumeGroup, ownedPrefixes []string, res Reservation) int64 {
	a := vg.TotalBytes
	for _, lv := range vg.LVs {
		if !IsOwnedLV(lv.Name, ownedPrefixes) {
			a -= max(0, lv.SizeBytes)
		}
	}
	a -= res.Of(vg.TotalBytes)
	return max(0, a)
}

// OwnedUsage is the bytes held by Open-Local's own LVs in a VG (snapshots included).
func OwnedUsage(vg VolumeGroup, ownedPrefixes []string) int64 {
	var u int64
	for _, lv := range vg.LVs {
		if IsOwnedLV(lv.Name, ownedPrefixes) {
			u += lv.SizeBytes
		}
	}
	return u
}
