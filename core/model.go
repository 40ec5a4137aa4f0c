package core

// MediaType is the kind of medium behind a device: "ssd" or "hdd".
type MediaType string

const (
	MediaSSD MediaType = "ssd"
	MediaHDD MediaType = "hdd"
)

// ParseMediaType accepts the values open-local's StorageClasses use.
func ParseMediaType(s string) (MediaType, error) {
	switch MediaType(s) {
	case MediaSSD, MediaHDD:
		return MediaType(s), nil
	}
	return "", &InvalidValueError{Field: "mediaType", Value: s, Accepted: []string{"ssd", "hdd"}}
}

// BlockDevice is a disk or partition as the host reports it.
type BlockDevice struct {
	// Name is the device path, e.g. /dev/vdb or /dev/nvme0n1p2 (open-local reports paths).
	Name      string
	SizeBytes int64
	Media     MediaType
	ReadOnly  bool
	// Parent is the disk a partition belongs to ("" for a whole disk).
	Parent string
	// Partitions lists the partitions of a whole disk by path.
	Partitions []string
	// Signatures are the filesystem, RAID or partition-table signatures found on
	// the device (e.g. "ext4", "LVM2_member", "gpt"). A device with signatures is in
	// use and is never formatted or added to a VG without force.
	Signatures []string
	// Major and Minor are the device numbers (cgroup io.max needs them).
	Major, Minor uint32
}

// PhysicalVolume is an LVM PV.
type PhysicalVolume struct {
	Name      string // device path
	VG        string // "" when the PV belongs to no VG
	SizeBytes int64
	FreeBytes int64
}

// LogicalVolume is an LVM LV.
type LogicalVolume struct {
	Name      string
	VG        string
	SizeBytes int64
	Tags      []string
	// Origin is the origin LV of a COW snapshot ("" for an ordinary LV).
	Origin string
	// Stripes is the number of stripes (1 for linear).
	Stripes int
	// Attr is LVM's lv_attr string (e.g. "-wi-a-----"); see LVAttr.
	Attr string
	// DataPercent is the snapshot's COW usage in percent (snapshots only).
	DataPercent float64
	// Major and Minor are the kernel device numbers when the LV is active.
	Major, Minor int32
}

// IsSnapshot reports whether the LV is a COW snapshot.
func (lv LogicalVolume) IsSnapshot() bool { return lv.Origin != "" }

// HasTag reports whether the LV carries tag t.
func (lv LogicalVolume) HasTag(t string) bool {
	for _, x := range lv.Tags {
		if x == t {
			return true
		}
	}
	return false
}

// VolumeGroup is an LVM VG with its PVs and LVs.
type VolumeGroup struct {
	Name            string
	ExtentSizeBytes int64
	TotalBytes      int64
	FreeBytes       int64
	PVs             []PhysicalVolume
	LVs             []LogicalVolume
}

// FindLV returns the LV of that name, if any.
func (vg *VolumeGroup) FindLV(name string) (*LogicalVolume, bool) {
	for i := range vg.LVs {
		if vg.LVs[i].Name == name {
			return &vg.LVs[i], true
		}
	}
	return nil, false
}

// MountPoint is a filesystem mounted on the host.
type MountPoint struct {
	Path           string
	Device         string
	FSType         string
	Options        []string
	TotalBytes     int64
	AvailableBytes int64
	ReadOnly       bool
}

// LVMState is one LVM report: every VG with its PVs and LVs, plus PVs in no VG.
type LVMState struct {
	VGs       []VolumeGroup
	OrphanPVs []PhysicalVolume
}

// FindVG returns the VG of that name, if any.
func (s *LVMState) FindVG(name string) (*VolumeGroup, bool) {
	for i := range s.VGs {
		if s.VGs[i].Name == name {
			return &s.VGs[i], true
		}
	}
	return nil, false
}

// NodeStorage is everything a node has, as the agent discovers it.
type NodeStorage struct {
	Devices     []BlockDevice
	VGs         []VolumeGroup
	MountPoints []MountPoint
}
