package lvmreport

import (
	"fmt"
	"strings"
)

// Attr is LVM's ten-character lv_attr field, decoded (lvs(8), "lv_attr bits").
type Attr struct {
	// VolumeType: 'o' origin, 's' snapshot, 'm' mirrored, 'r' raid, 'V' thin
	// volume, 't' thin pool, '-' plain linear/striped volume, ...
	VolumeType byte
	// Permissions: 'w' writeable, 'r' read-only, 'R' read-only activation.
	Permissions byte
	// AllocationPolicy: a, c, i, l, n; upper case when locked.
	AllocationPolicy byte
	FixedMinor       bool
	// State: 'a' active, '-' inactive, 's' suspended, 'I' invalid snapshot,
	// 'S' invalid suspended snapshot, 'm'/'M' merge failed, 'd' device without
	// tables, 'i' inactive table, 'c'/'C' thin-pool check needed, 'h'
	// historical, 'X' unknown (no device-mapper).
	State byte
	// Open: 'o' open, '-' closed, 'X' unknown.
	Open byte
	// TargetType: 'C' cache, 'm' mirror, 'r' raid, 's' snapshot, 't' thin,
	// 'u' unknown, 'v' virtual, 'd' vdo, '-' linear/striped.
	TargetType    byte
	ZeroNewBlocks bool
	// Health: '-' fine, 'p' partial, 'r' refresh needed, 'm' mismatches,
	// 'w' write-mostly, 's' reshaping, 'R' remove after reshape, 'F' failed,
	// 'D' out of data space, 'M' metadata read-only, 'E' error, 'X' unknown.
	Health         byte
	SkipActivation bool
}

// attrPositions lists, per position, its name and the characters LVM prints there.
var attrPositions = [10]struct {
	name    string
	allowed string
}{
	{"volume type", "CmMoOrRsSpvilIcVtTdDe-"},
	{"permissions", "wrR-"},
	{"allocation policy", "acilnACILN-"},
	{"fixed minor", "m-"},
	{"state", "ahsISmMdicCX-"},
	{"device open", "oX-"},
	{"target type", "Cmrstuvd-"},
	{"zero new blocks", "z-"},
	{"volume health", "prmwsRFDMEX-"},
	{"skip activation", "k-"},
}

// ParseLVAttr decodes an lv_attr string such as "-wi-ao----" or "swi-a-s---".
func ParseLVAttr(s string) (Attr, error) {
	if len(s) != len(attrPositions) {
		return Attr{}, fmt.Errorf("%w: lv_attr %q: want %d characters, got %d", ErrMalformed, s, len(attrPositions), len(s))
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(attrPositions[i].allowed, rune(s[i])) {
			return Attr{}, fmt.Errorf("%w: lv_attr %q: character %q at position %d (%s) is not one of %q",
				ErrMalformed, s, s[i], i+1, attrPositions[i].name, attrPositions[i].allowed)
		}
	}
	return Attr{
		VolumeType:       s[0],
		Permissions:      s[1],
		AllocationPolicy: s[2],
		FixedMinor:       s[3] == 'm',
		State:            s[4],
		Open:             s[5],
		TargetType:       s[6],
		ZeroNewBlocks:    s[7] == 'z',
		Health:           s[8],
		SkipActivation:   s[9] == 'k',
	}, nil
}

// String encodes the attribute back into LVM's form.
func (a Attr) String() string {
	flag := func(on bool, c byte) byte {
		if on {
			return c
		}
		return '-'
	}
	return string([]byte{
		a.VolumeType, a.Permissions, a.AllocationPolicy, flag(a.FixedMinor, 'm'),
		a.State, a.Open, a.TargetType, flag(a.ZeroNewBlocks, 'z'), a.Health, flag(a.SkipActivation, 'k'),
	})
}

// IsSnapshot reports a COW snapshot (merging or not).
func (a Attr) IsSnapshot() bool { return a.VolumeType == 's' || a.VolumeType == 'S' }

// IsOrigin reports an LV that has snapshots.
func (a Attr) IsOrigin() bool { return a.VolumeType == 'o' || a.VolumeType == 'O' }

// IsActive reports an LV with a live device-mapper table.
func (a Attr) IsActive() bool { return a.State == 'a' }

// IsSuspended reports a suspended LV (I/O to it blocks).
func (a Attr) IsSuspended() bool {
	return a.State == 's' || a.State == 'S' || a.State == 'M' || a.State == 'C'
}

// IsInvalidSnapshot reports a snapshot whose COW space overflowed.
func (a Attr) IsInvalidSnapshot() bool { return a.State == 'I' || a.State == 'S' }

// IsOpen reports an LV held open (mounted or in use by a process).
func (a Attr) IsOpen() bool { return a.Open == 'o' }

// StateUnknown reports that LVM could not ask device-mapper (the host has no
// device-mapper, or LVM ran with --driverloaded n).
func (a Attr) StateUnknown() bool { return a.State == 'X' }

// Condition is a CSI-style volume condition: whether the volume is abnormal
// and a message a user can act on.
type Condition struct {
	Abnormal bool
	Message  string
}

// Condition tells whether the LV needs attention. An inactive or unknown
// state is not abnormal by itself: the caller knows whether the LV should be
// active.
func (a Attr) Condition() Condition {
	var problems []string
	switch a.State {
	case 'I':
		problems = append(problems, "snapshot is invalid: its copy-on-write space overflowed")
	case 'S':
		problems = append(problems, "snapshot is invalid (its copy-on-write space overflowed) and suspended")
	case 's':
		problems = append(problems, "LV is suspended: I/O to it blocks")
	case 'm':
		problems = append(problems, "snapshot merge failed")
	case 'M':
		problems = append(problems, "snapshot merge failed and the LV is suspended")
	case 'd':
		problems = append(problems, "device-mapper device present without tables")
	case 'i':
		problems = append(problems, "device-mapper device present with an inactive table")
	case 'c':
		problems = append(problems, "thin pool needs a check")
	case 'C':
		problems = append(problems, "thin pool needs a check and is suspended")
	}
	switch a.Health {
	case 'p':
		problems = append(problems, "LV is partial: one or more of its physical volumes is missing")
	case 'r':
		problems = append(problems, "LV needs a refresh: one of its physical volumes had a write error")
	case 'm':
		problems = append(problems, "RAID mismatches exist")
	case 'F':
		problems = append(problems, "LV failed: no further I/O is possible")
	case 'D':
		problems = append(problems, "thin pool is out of data space")
	case 'M':
		problems = append(problems, "thin pool metadata is read-only")
	case 'E':
		problems = append(problems, "writecache reports an error")
	}
	if len(problems) > 0 {
		return Condition{Abnormal: true, Message: strings.Join(problems, "; ")}
	}
	switch {
	case a.State == 'X' || a.Health == 'X':
		return Condition{Message: "LV state unknown: device-mapper not queried"}
	case a.State == 'a' && a.Open == 'o':
		return Condition{Message: "LV is active and open"}
	case a.State == 'a':
		return Condition{Message: "LV is active"}
	case a.State == 'h':
		return Condition{Message: "LV was removed and is kept as history"}
	default:
		return Condition{Message: "LV is not active"}
	}
}
