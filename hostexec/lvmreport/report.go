// Package lvmreport turns LVM's JSON report into Open-Local's storage model.
// It is pure: the caller runs the command (FullReportArgs) and hands the
// output to Parse.
package lvmreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/open-local/open-local/core"
)

// ErrMalformed wraps every parse error.
var ErrMalformed = errors.New("malformed LVM report")

// Fields asked of each sub-report. Naming them keeps the output small and
// stable across lvm2 releases (the default field sets change).
var (
	VGFields  = []string{"vg_name", "vg_uuid", "vg_extent_size", "vg_size", "vg_free"}
	PVFields  = []string{"pv_name", "pv_uuid", "vg_name", "pv_size", "pv_free"}
	LVFields  = []string{"lv_uuid", "lv_name", "lv_attr", "lv_size", "lv_tags", "origin", "data_percent", "lv_kernel_major", "lv_kernel_minor"}
	SegFields = []string{"lv_uuid", "segtype", "stripes"}
)

// FullReportArgs is the argv after "lvm" for one report of every VG, PV and
// LV: `lvm fullreport --reportformat json --units b --nosuffix` with explicit
// fields per sub-report. Global options (e.g. --driverloaded n) go right after
// "fullreport".
func FullReportArgs() []string {
	return []string{
		"fullreport", "--reportformat", "json", "--units", "b", "--nosuffix",
		"--configreport", "vg", "-o", strings.Join(VGFields, ","),
		"--configreport", "pv", "-o", strings.Join(PVFields, ","),
		"--configreport", "lv", "-o", strings.Join(LVFields, ","),
		// pvseg cannot be left out of a fullreport; ask for one small field.
		"--configreport", "pvseg", "-o", "pvseg_start",
		"--configreport", "seg", "-o", strings.Join(SegFields, ","),
	}
}

type rawVG struct {
	Name       string `json:"vg_name"`
	UUID       string `json:"vg_uuid"`
	ExtentSize string `json:"vg_extent_size"`
	Size       string `json:"vg_size"`
	Free       string `json:"vg_free"`
}

type rawPV struct {
	Name string `json:"pv_name"`
	UUID string `json:"pv_uuid"`
	VG   string `json:"vg_name"`
	Size string `json:"pv_size"`
	Free string `json:"pv_free"`
}

type rawLV struct {
	UUID        string `json:"lv_uuid"`
	Name        string `json:"lv_name"`
	Attr        string `json:"lv_attr"`
	Size        string `json:"lv_size"`
	Tags        string `json:"lv_tags"`
	Origin      string `json:"origin"`
	DataPercent string `json:"data_percent"`
	KernelMajor string `json:"lv_kernel_major"`
	KernelMinor string `json:"lv_kernel_minor"`
}

type rawSeg struct {
	LVUUID  string `json:"lv_uuid"`
	SegType string `json:"segtype"`
	Stripes string `json:"stripes"`
}

type rawItem struct {
	VG  []rawVG  `json:"vg"`
	PV  []rawPV  `json:"pv"`
	LV  []rawLV  `json:"lv"`
	Seg []rawSeg `json:"seg"`
}

type rawReport struct {
	Report []rawItem `json:"report"`
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func parseBytes(what, field, v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, malformed("%s: %s %q is not a byte count", what, field, v)
	}
	return n, nil
}

// parseDevNum reads lv_kernel_major/minor: -1 (or empty) when inactive.
func parseDevNum(what, field, v string) (int32, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < -1 {
		return 0, malformed("%s: %s %q is not a device number", what, field, v)
	}
	return int32(n), nil
}

func parsePercent(what, v string) (float64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, malformed("%s: data_percent %q is not a percentage", what, v)
	}
	return f, nil
}

func parseTags(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var tags []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	return tags
}

func parsePV(p rawPV, vg string) (core.PhysicalVolume, error) {
	if p.Name == "" {
		return core.PhysicalVolume{}, malformed("PV with an empty pv_name")
	}
	what := fmt.Sprintf("PV %q", p.Name)
	size, err := parseBytes(what, "pv_size", p.Size)
	if err != nil {
		return core.PhysicalVolume{}, err
	}
	free, err := parseBytes(what, "pv_free", p.Free)
	if err != nil {
		return core.PhysicalVolume{}, err
	}
	if free > size {
		return core.PhysicalVolume{}, malformed("%s: pv_free %d exceeds pv_size %d", what, free, size)
	}
	return core.PhysicalVolume{Name: p.Name, VG: vg, SizeBytes: size, FreeBytes: free}, nil
}

func parseLV(l rawLV, vg string, stripes map[string]int) (core.LogicalVolume, error) {
	if l.Name == "" {
		return core.LogicalVolume{}, malformed("VG %q: LV with an empty lv_name", vg)
	}
	what := fmt.Sprintf("LV %s/%s", vg, l.Name)
	size, err := parseBytes(what, "lv_size", l.Size)
	if err != nil {
		return core.LogicalVolume{}, err
	}
	pct, err := parsePercent(what, l.DataPercent)
	if err != nil {
		return core.LogicalVolume{}, err
	}
	major, err := parseDevNum(what, "lv_kernel_major", l.KernelMajor)
	if err != nil {
		return core.LogicalVolume{}, err
	}
	minor, err := parseDevNum(what, "lv_kernel_minor", l.KernelMinor)
	if err != nil {
		return core.LogicalVolume{}, err
	}
	n := stripes[l.UUID]
	if n < 1 {
		n = 1
	}
	return core.LogicalVolume{
		Name:        l.Name,
		VG:          vg,
		SizeBytes:   size,
		Tags:        parseTags(l.Tags),
		Origin:      l.Origin,
		Stripes:     n,
		Attr:        l.Attr,
		DataPercent: pct,
		Major:       major,
		Minor:       minor,
	}, nil
}

// segStripes maps an LV UUID to its stripe count: the largest over its
// segments, so a striped LV extended with more segments stays striped.
func segStripes(segs []rawSeg) (map[string]int, error) {
	out := make(map[string]int, len(segs))
	for _, s := range segs {
		if strings.TrimSpace(s.Stripes) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(s.Stripes))
		if err != nil || n < 0 {
			return nil, malformed("segment of LV %q: stripes %q is not a count", s.LVUUID, s.Stripes)
		}
		if n > out[s.LVUUID] {
			out[s.LVUUID] = n
		}
	}
	return out, nil
}

// Parse reads the JSON printed by `lvm` with FullReportArgs. VGs, PVs, LVs and
// tags come out sorted by name, so the same host state always gives the same
// value. Internal LVs (bracketed names) are skipped.
func Parse(data []byte) (core.LVMState, error) {
	var raw rawReport
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return core.LVMState{}, malformed("%v", err)
	}
	var state core.LVMState
	seenVG := map[string]bool{}
	seenPV := map[string]bool{}
	for _, item := range raw.Report {
		if len(item.VG) > 1 {
			return core.LVMState{}, malformed("a report item holds %d VGs", len(item.VG))
		}
		if len(item.VG) == 0 {
			if len(item.LV) > 0 {
				return core.LVMState{}, malformed("LVs listed outside any VG")
			}
			for _, p := range item.PV {
				pv, err := parsePV(p, "")
				if err != nil {
					return core.LVMState{}, err
				}
				if seenPV[pv.Name] {
					return core.LVMState{}, malformed("PV %q reported twice", pv.Name)
				}
				seenPV[pv.Name] = true
				state.OrphanPVs = append(state.OrphanPVs, pv)
			}
			continue
		}
		rv := item.VG[0]
		if rv.Name == "" {
			return core.LVMState{}, malformed("VG with an empty vg_name")
		}
		if seenVG[rv.Name] {
			// Two VGs of one name (e.g. a cloned disk): which one an LV path
			// means is ambiguous, so refuse rather than guess.
			return core.LVMState{}, malformed("VG name %q reported twice (duplicate VG names must be renamed with vgrename by UUID)", rv.Name)
		}
		seenVG[rv.Name] = true
		what := fmt.Sprintf("VG %q", rv.Name)
		vg := core.VolumeGroup{Name: rv.Name}
		var err error
		if vg.ExtentSizeBytes, err = parseBytes(what, "vg_extent_size", rv.ExtentSize); err != nil {
			return core.LVMState{}, err
		}
		if vg.ExtentSizeBytes == 0 {
			return core.LVMState{}, malformed("%s: vg_extent_size is 0", what)
		}
		if vg.TotalBytes, err = parseBytes(what, "vg_size", rv.Size); err != nil {
			return core.LVMState{}, err
		}
		if vg.FreeBytes, err = parseBytes(what, "vg_free", rv.Free); err != nil {
			return core.LVMState{}, err
		}
		if vg.FreeBytes > vg.TotalBytes {
			return core.LVMState{}, malformed("%s: vg_free %d exceeds vg_size %d", what, vg.FreeBytes, vg.TotalBytes)
		}
		for _, p := range item.PV {
			pv, err := parsePV(p, rv.Name)
			if err != nil {
				return core.LVMState{}, err
			}
			if seenPV[pv.Name] {
				return core.LVMState{}, malformed("PV %q reported twice", pv.Name)
			}
			seenPV[pv.Name] = true
			vg.PVs = append(vg.PVs, pv)
		}
		stripes, err := segStripes(item.Seg)
		if err != nil {
			return core.LVMState{}, err
		}
		seenLV := map[string]bool{}
		for _, l := range item.LV {
			if strings.HasPrefix(l.Name, "[") {
				continue
			}
			lv, err := parseLV(l, rv.Name, stripes)
			if err != nil {
				return core.LVMState{}, err
			}
			if seenLV[lv.Name] {
				return core.LVMState{}, malformed("LV %s/%s reported twice", rv.Name, lv.Name)
			}
			seenLV[lv.Name] = true
			vg.LVs = append(vg.LVs, lv)
		}
		sort.Slice(vg.PVs, func(i, j int) bool { return vg.PVs[i].Name < vg.PVs[j].Name })
		sort.Slice(vg.LVs, func(i, j int) bool { return vg.LVs[i].Name < vg.LVs[j].Name })
		state.VGs = append(state.VGs, vg)
	}
	sort.Slice(state.VGs, func(i, j int) bool { return state.VGs[i].Name < state.VGs[j].Name })
	sort.Slice(state.OrphanPVs, func(i, j int) bool { return state.OrphanPVs[i].Name < state.OrphanPVs[j].Name })
	return state, nil
}
