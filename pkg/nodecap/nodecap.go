// Package nodecap computes what a node offers Open-Local (core.NodeCapacity)
// from what its agent reports: the storage found on the node, the node's
// listConfig and its storage-reserved annotation. It is the single definition
// of "allocatable" shared by the scheduler and the simulator; it takes plain
// core types so that any representation of a NodeLocalStorage converts to it.
package nodecap

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/open-local/open-local/core"
)

// Options tune Compute.
type Options struct {
	// OwnedLVPrefixes mark Open-Local's LVs (nil = core.DefaultOwnedLVPrefixes).
	OwnedLVPrefixes []string
}

// ExistingVolume is one of Open-Local's LVs already on the node. The ledger must
// charge it as a committed claim: allocatable does not subtract it.
type ExistingVolume struct {
	VG        string
	Name      string
	SizeBytes int64
}

// Skipped is a resource the listConfig selects that is not allocatable, with why.
type Skipped struct {
	Kind   core.ResourceKind
	Name   string
	Reason string
}

// Result is Compute's outcome.
type Result struct {
	// Filtered is what the listConfig selects (open-local's filteredStorageInfo).
	Filtered core.FilteredStorage
	// Capacity is what the ledger may hand out.
	Capacity core.NodeCapacity
	// Existing are Open-Local's LVs in the selected VGs, sorted by VG then name.
	Existing []ExistingVolume
	// Skipped are selected resources that are not allocatable.
	Skipped []Skipped
	// Formatted are the skipped devices whose only fault is that they
	// carry signatures. A Device volume's own device is one once its
	// filesystem is made: a caller that knows the PersistentVolumes offers
	// such a device when a volume holds it, as the CSI driver does, so that
	// the holding volume is charged within the node's capacity.
	Formatted []core.DeviceCapacity
}

// reportedTwice explains why a second resource of the same name is not offered:
// the first one is, and names must be unique in the ledger.
const reportedTwice = "reported twice; only the first is offered"

// Filesystems a mount point may carry to be allocatable (as open-local requires).
var mountPointFSTypes = []string{"ext3", "ext4", "xfs"}

// Compute filters ns through lc and sizes what is left:
//
//   - a VG offers core.Allocatable (its size minus LVs that are not Open-Local's,
//     minus the reservation), but never more than its free space plus
//     Open-Local's own LVs, so that LVs missing from a report cannot make room
//     that is not there;
//   - a device is offered whole unless it is read-only, an LVM PV, mounted,
//     partitioned, a partition of a disk in use or of a disk that carries a
//     signature other than its partition table, or carries signatures (see
//     Result.Formatted);
//   - a mount point is offered whole unless it is read-only or its filesystem
//     is not ext3, ext4 or xfs; its medium is that of the device behind it.
//
// An invalid listConfig pattern or reservation annotation is an error and the
// node offers nothing: guessing could hand out space the admin held back.
func Compute(ns core.NodeStorage, lc core.ListConfig, reservedAnnotation string, opt Options) (Result, error) {
	compiled, err := core.CompileListConfig(lc)
	if err != nil {
		return Result{}, err
	}
	reservations, err := core.ParseReservations(reservedAnnotation)
	if err != nil {
		return Result{}, err
	}
	prefixes := opt.OwnedLVPrefixes
	if prefixes == nil {
		prefixes = core.DefaultOwnedLVPrefixes
	}
	res := Result{Filtered: compiled.Apply(ns)}
	selected := func(list []string, name string) bool {
		i := sort.SearchStrings(list, name)
		return i < len(list) && list[i] == name
	}

	seenVG := make(map[string]bool, len(ns.VGs))
	for i := range ns.VGs {
		vg := &ns.VGs[i]
		if !selected(res.Filtered.VGs, vg.Name) {
			continue
		}
		if seenVG[vg.Name] {
			res.Skipped = append(res.Skipped, Skipped{Kind: core.KindLVM, Name: vg.Name, Reason: reportedTwice})
			continue
		}
		seenVG[vg.Name] = true
		owned := core.OwnedUsage(*vg, prefixes)
		alloc := core.Allocatable(*vg, prefixes, reservations[vg.Name])
		if limit := vg.FreeBytes + owned; alloc > limit {
			alloc = max(0, limit)
		}
		res.Capacity.VGs = append(res.Capacity.VGs, core.VGCapacity{
			Name:             vg.Name,
			AllocatableBytes: alloc,
			ExtentSizeBytes:  vg.ExtentSizeBytes,
			PVCount:          len(vg.PVs),
		})
		for _, lv := range vg.LVs {
			if core.IsOwnedLV(lv.Name, prefixes) {
				res.Existing = append(res.Existing, ExistingVolume{VG: vg.Name, Name: lv.Name, SizeBytes: lv.SizeBytes})
			}
		}
	}
	sort.Slice(res.Capacity.VGs, func(a, b int) bool { return res.Capacity.VGs[a].Name < res.Capacity.VGs[b].Name })
	sort.Slice(res.Existing, func(a, b int) bool {
		if res.Existing[a].VG != res.Existing[b].VG {
			return res.Existing[a].VG < res.Existing[b].VG
		}
		return res.Existing[a].Name < res.Existing[b].Name
	})

	busy := busyDevices(ns)
	byName := make(map[string]*core.BlockDevice, len(ns.Devices))
	for i := range ns.Devices {
		if _, dup := byName[ns.Devices[i].Name]; !dup {
			byName[ns.Devices[i].Name] = &ns.Devices[i]
		}
	}
	for k, name := range res.Filtered.Devices {
		if k > 0 && res.Filtered.Devices[k-1] == name {
			res.Skipped = append(res.Skipped, Skipped{Kind: core.KindDevice, Name: name, Reason: reportedTwice})
			continue
		}
		d := byName[name]
		if why, onlySignatures := deviceInUse(d, byName, busy); why != "" {
			res.Skipped = append(res.Skipped, Skipped{Kind: core.KindDevice, Name: name, Reason: why})
			if onlySignatures {
				res.Formatted = append(res.Formatted, core.DeviceCapacity{Name: name, SizeBytes: d.SizeBytes, Media: d.Media})
			}
			continue
		}
		res.Capacity.Devices = append(res.Capacity.Devices, core.DeviceCapacity{Name: name, SizeBytes: d.SizeBytes, Media: d.Media})
	}

	mounts := make(map[string]*core.MountPoint, len(ns.MountPoints))
	for i := range ns.MountPoints {
		if _, dup := mounts[ns.MountPoints[i].Path]; !dup {
			mounts[ns.MountPoints[i].Path] = &ns.MountPoints[i]
		}
	}
	for k, path := range res.Filtered.MountPoints {
		if k > 0 && res.Filtered.MountPoints[k-1] == path {
			res.Skipped = append(res.Skipped, Skipped{Kind: core.KindMountPoint, Name: path, Reason: reportedTwice})
			continue
		}
		mp := mounts[path]
		switch {
		case mp.ReadOnly:
			res.Skipped = append(res.Skipped, Skipped{Kind: core.KindMountPoint, Name: path, Reason: "mounted read-only"})
			continue
		case !contains(mountPointFSTypes, mp.FSType):
			res.Skipped = append(res.Skipped, Skipped{Kind: core.KindMountPoint, Name: path, Reason: fmt.Sprintf("filesystem %q is not one of %s", mp.FSType, strings.Join(mountPointFSTypes, ", "))})
			continue
		}
		var media core.MediaType
		if d, ok := byName[mp.Device]; ok {
			media = d.Media
		}
		res.Capacity.MountPoints = append(res.Capacity.MountPoints, core.DeviceCapacity{Name: path, SizeBytes: mp.TotalBytes, Media: media})
	}
	return res, nil
}

// busyDevices maps each device that is an LVM PV or backs a mount point to why.
func busyDevices(ns core.NodeStorage) map[string]string {
	busy := map[string]string{}
	for _, vg := range ns.VGs {
		for _, pv := range vg.PVs {
			busy[pv.Name] = "physical volume of volume group " + vg.Name
		}
	}
	for _, mp := range ns.MountPoints {
		if mp.Device != "" {
			if _, ok := busy[mp.Device]; !ok {
				busy[mp.Device] = "mounted at " + mp.Path
			}
		}
	}
	return busy
}

// deviceInUse says why a device is not offered ("" when it is), and whether
// the only reason is that it carries signatures.
func deviceInUse(d *core.BlockDevice, byName map[string]*core.BlockDevice, busy map[string]string) (why string, onlySignatures bool) {
	if d.ReadOnly {
		return "read-only", false
	}
	if why, ok := busy[d.Name]; ok {
		return why, false
	}
	for _, p := range d.Partitions {
		if why, ok := busy[p]; ok {
			return "partition " + p + " is in use (" + why + ")", false
		}
	}
	if len(d.Partitions) > 0 {
		return "has partitions " + strings.Join(d.Partitions, ", "), false
	}
	if d.Parent != "" {
		if why, ok := busy[d.Parent]; ok {
			return "its disk " + d.Parent + " is in use (" + why + ")", false
		}
		// The disk's partition table is what makes the partition; any other
		// signature on the disk means its layout is not what the table says.
		if p, ok := byName[d.Parent]; ok {
			if other := notPartitionTables(p.Signatures); len(other) > 0 {
				return "its disk " + d.Parent + " carries " + strings.Join(other, ", "), false
			}
		}
	}
	if len(d.Signatures) > 0 {
		return "carries " + strings.Join(d.Signatures, ", "), true
	}
	return "", false
}

// partitionTables are the signature types wipefs gives partition tables.
var partitionTables = []string{"gpt", "PMBR", "dos", "atari", "bsd", "mac", "sgi", "sun"}

func notPartitionTables(sigs []string) []string {
	var out []string
	for _, s := range sigs {
		if !contains(partitionTables, s) {
			out = append(out, s)
		}
	}
	return out
}

// LinkPartitions fills Parent and Partitions of devices reported by path only
// (as a NodeLocalStorage reports them): /dev/vdb1 is a partition of /dev/vdb,
// and /dev/nvme0n1p2 of /dev/nvme0n1, when both are in the list. Relations
// already set are kept.
func LinkPartitions(devs []core.BlockDevice) {
	index := make(map[string]int, len(devs))
	for i := range devs {
		index[devs[i].Name] = i
	}
	for i := range devs {
		d := &devs[i]
		if d.Parent != "" {
			continue
		}
		parent, ok := partitionParent(d.Name)
		if !ok {
			continue
		}
		j, ok := index[parent]
		if !ok || j == i {
			continue
		}
		d.Parent = parent
		if !contains(devs[j].Partitions, d.Name) {
			devs[j].Partitions = append(devs[j].Partitions, d.Name)
		}
	}
}

// partitionParent splits a trailing partition number off a device name: the
// kernel appends it to the disk name, with a "p" when the disk's name ends
// with a digit (nvme0n1p1, mmcblk0p1, loop0p1).
func partitionParent(name string) (string, bool) {
	end := len(name)
	for end > 0 && name[end-1] >= '0' && name[end-1] <= '9' {
		end--
	}
	if end == len(name) || end == 0 {
		return "", false
	}
	if _, err := strconv.Atoi(name[end:]); err != nil {
		return "", false
	}
	base := name[:end]
	if strings.HasSuffix(base, "p") && len(base) > 1 && base[len(base)-2] >= '0' && base[len(base)-2] <= '9' {
		return base[:len(base)-1], true
	}
	return base, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
