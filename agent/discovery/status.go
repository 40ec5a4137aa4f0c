package discovery

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec/lvmreport"
)

// Reasons of status.nodeStorageInfo.state.
const (
	StateReasonDiscovered  = "Discovered"
	StateReasonNoSpaceLeft = "NoSpaceLeft"
	StateReasonFault       = "StorageFault"
)

// StatusOptions say how to size what was found.
type StatusOptions struct {
	// OwnedLVPrefixes mark Open-Local's LVs; other LVs reduce allocatable.
	OwnedLVPrefixes []string
	// Reservations hold back VG capacity (the storage-reserved annotation).
	Reservations map[string]core.Reservation
	// HoldBackAll reports every VG's allocatable as 0: set when the
	// reservation annotation is malformed, because what the admin meant to
	// hold back is unknown.
	HoldBackAll bool
}

// NodeStorageInfo converts a snapshot into status.nodeStorageInfo, lists
// sorted by name, phase Running and the overall state. Timestamps are left
// for the caller, which sets them only when something else changed.
func NodeStorageInfo(s Snapshot, o StatusOptions) v1alpha1.NodeStorageInfo {
	info := v1alpha1.NodeStorageInfo{Phase: v1alpha1.StorageRunning}
	for _, d := range s.Storage.Devices {
		info.DeviceInfos = append(info.DeviceInfos, v1alpha1.DeviceInfo{
			Name:       d.Name,
			MediaType:  v1alpha1.MediaType(d.Media),
			Total:      toU64(d.SizeBytes),
			ReadOnly:   d.ReadOnly,
			Condition:  v1alpha1.StorageReady,
			Signatures: slices.Clone(d.Signatures),
		})
	}
	var faults []string
	allFull := len(s.Storage.VGs) > 0 || len(s.Storage.MountPoints) > 0
	for _, vg := range s.Storage.VGs {
		out := v1alpha1.VolumeGroup{
			Name:      vg.Name,
			Total:     toU64(vg.TotalBytes),
			Available: toU64(vg.FreeBytes),
		}
		if !o.HoldBackAll {
			out.Allocatable = toU64(core.Allocatable(vg, o.OwnedLVPrefixes, o.Reservations[vg.Name]))
		}
		for _, pv := range vg.PVs {
			out.PhysicalVolumes = append(out.PhysicalVolumes, pv.Name)
		}
		for _, lv := range vg.LVs {
			h := LVHealth(lv)
			out.LogicalVolumes = append(out.LogicalVolumes, v1alpha1.LogicalVolume{
				Name:      lv.Name,
				VGName:    vg.Name,
				Total:     toU64(lv.SizeBytes),
				ReadOnly:  h.ReadOnly,
				Condition: h.Condition,
			})
		}
		vgFaults := VGFaults(vg)
		switch {
		case len(vgFaults) > 0:
			out.Condition = v1alpha1.StorageFault
			faults = append(faults, vgFaults...)
		case vg.FreeBytes <= 0:
			out.Condition = v1alpha1.StorageFull
		default:
			out.Condition = v1alpha1.StorageReady
		}
		if vg.FreeBytes > 0 {
			allFull = false
		}
		info.VolumeGroups = append(info.VolumeGroups, out)
	}
	for _, mp := range s.Storage.MountPoints {
		cond := v1alpha1.StorageReady
		if mp.AvailableBytes <= 0 {
			cond = v1alpha1.StorageFull
		} else {
			allFull = false
		}
		info.MountPoints = append(info.MountPoints, v1alpha1.MountPoint{
			Name:      mp.Path,
			Total:     toU64(mp.TotalBytes),
			Available: toU64(mp.AvailableBytes),
			FsType:    mp.FSType,
			Options:   append([]string(nil), mp.Options...),
			Device:    mp.Device,
			ReadOnly:  mp.ReadOnly,
			Condition: cond,
		})
	}
	switch {
	case len(faults) > 0:
		info.State = v1alpha1.StorageState{Type: v1alpha1.StorageFault, Status: metav1.ConditionTrue,
			Reason: StateReasonFault, Message: strings.Join(faults, "; ")}
	case allFull:
		info.State = v1alpha1.StorageState{Type: v1alpha1.StorageFull, Status: metav1.ConditionTrue,
			Reason: StateReasonNoSpaceLeft, Message: "no volume group or mount point has free space"}
	default:
		info.State = v1alpha1.StorageState{Type: v1alpha1.StorageReady, Status: metav1.ConditionTrue,
			Reason: StateReasonDiscovered, Message: fmt.Sprintf("%d devices, %d volume groups, %d mount points",
				len(info.DeviceInfos), len(info.VolumeGroups), len(info.MountPoints))}
	}
	return info
}

// MissingPVName is how LVM names a PV whose device it cannot find.
const MissingPVName = "[unknown]"

// VGFaults lists what is wrong with a VG: a PV whose device is missing, or
// an LV that LVM reports partial (a PV missing under it), failed, or in
// need of a refresh after a write error. An empty list means healthy.
func VGFaults(vg core.VolumeGroup) []string {
	var out []string
	for _, pv := range vg.PVs {
		if pv.Name == MissingPVName || strings.HasPrefix(pv.Name, "[") {
			out = append(out, fmt.Sprintf("volume group %s: a physical volume is missing", vg.Name))
		}
	}
	for _, lv := range vg.LVs {
		a, err := lvmreport.ParseLVAttr(lv.Attr)
		if err != nil {
			continue
		}
		switch a.Health {
		case 'p', 'F', 'r':
			out = append(out, fmt.Sprintf("logical volume %s/%s: %s", vg.Name, lv.Name, a.Condition().Message))
		}
	}
	sort.Strings(out)
	return out
}

// Health is an LV's condition as the status reports it.
type Health struct {
	Condition v1alpha1.StorageConditionType
	ReadOnly  bool
	// Message says what is wrong when Condition is DiskFault.
	Message string
}

// LVHealth reads an LV's lv_attr: DiskFault when LVM reports it abnormal
// (partial, failed, an overflowed snapshot, suspended, ...), read-only when
// its permissions say so. An attribute that does not parse is reported as
// ready: LVM's report, not the agent, is the authority on its format.
func LVHealth(lv core.LogicalVolume) Health {
	a, err := lvmreport.ParseLVAttr(lv.Attr)
	if err != nil {
		return Health{Condition: v1alpha1.StorageReady}
	}
	h := Health{Condition: v1alpha1.StorageReady, ReadOnly: a.Permissions == 'r' || a.Permissions == 'R'}
	if c := a.Condition(); c.Abnormal {
		h.Condition, h.Message = v1alpha1.StorageFault, c.Message
	}
	return h
}

func toU64(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// Filtered applies a compiled listConfig to a snapshot: the VGs, mount
// points and devices Open-Local may allocate (status.filteredStorageInfo),
// sorted. Mount points that are not Schedulable are left out even when
// listed. The update time and outcome are left for the caller.
func Filtered(s Snapshot, lc *core.CompiledListConfig) v1alpha1.FilteredStorageInfo {
	f := lc.Apply(s.Storage)
	out := v1alpha1.FilteredStorageInfo{VolumeGroups: f.VGs, Devices: f.Devices}
	schedulable := make(map[string]bool, len(s.Storage.MountPoints))
	for _, mp := range s.Storage.MountPoints {
		schedulable[mp.Path] = Schedulable(mp)
	}
	for _, p := range f.MountPoints {
		if schedulable[p] {
			out.MountPoints = append(out.MountPoints, p)
		}
	}
	return out
}
