// Package hostexec is the only code in Open-Local that touches a host: block
// devices, LVM, filesystems, mounts, cgroups and the plugin's state files.
// Everything else sees the Host interface. Two implementations exist:
// hostexec/realhost runs the real tools with an argv (never a shell), and
// hostexec/simhost is an in-memory host with the same semantics and fault
// injection, used by the simulator, the unit tests and csi-sanity.
package hostexec

import (
	"context"
	"errors"

	"github.com/open-local/open-local/core"
)

// Typed errors. Implementations wrap them (errors.Is works) and keep the
// tool's own message in the wrapping error.
var (
	ErrNotFound          = errors.New("not found")
	ErrAlreadyExists     = errors.New("already exists")
	ErrInsufficientSpace = errors.New("insufficient space")
	ErrInvalidArgument   = errors.New("invalid argument")
	// ErrInUse: a device holds a signature, an LV is open or has snapshots, a mount is busy.
	ErrInUse = errors.New("in use")
	// ErrUnsupported: the host cannot do this (no device-mapper, no cgroup v2 io controller).
	ErrUnsupported = errors.New("unsupported on this host")
)

// LVSpec describes an LV to create.
type LVSpec struct {
	VG        string
	Name      string
	SizeBytes int64
	// Stripes > 1 makes a striped LV over that many PVs; StripeSizeBytes 0 is LVM's default.
	Stripes         int
	StripeSizeBytes int64
	Tags            []string
}

// SnapshotSpec describes a COW snapshot to create.
type SnapshotSpec struct {
	VG        string
	Name      string
	Origin    string
	SizeBytes int64
	Tags      []string
}

// LVChange is what ChangeLV alters; nil/empty fields are left as they are.
type LVChange struct {
	Activate *bool
	AddTags  []string
	DelTags  []string
}

// FSStats is what statfs reports for a mounted filesystem.
type FSStats struct {
	TotalBytes     int64
	AvailableBytes int64
	UsedBytes      int64
	TotalInodes    int64
	FreeInodes     int64
	UsedInodes     int64
}

// MountInfo is one entry of the host's mount table.
type MountInfo struct {
	Source  string
	Target  string
	FSType  string
	Options []string
}

// IOLimits are cgroup v2 io.max limits for one device; 0 means no limit ("max").
type IOLimits struct {
	ReadBPS, WriteBPS   int64
	ReadIOPS, WriteIOPS int64
}

// IsZero reports whether no limit is set.
func (l IOLimits) IsZero() bool { return l == IOLimits{} }

// Host is everything the agent and the CSI driver do to a node. Every method
// takes a context: a cancelled RPC cancels the command it started.
type Host interface {
	// ListBlockDevices reports disks and their partitions from sysfs, with
	// size, media type, read-only flag, device numbers and signatures.
	ListBlockDevices(ctx context.Context) ([]core.BlockDevice, error)
	// LVMReport returns every VG with its PVs and LVs, from one LVM report.
	LVMReport(ctx context.Context) (core.LVMState, error)

	CreatePV(ctx context.Context, device string, force bool) error
	CreateVG(ctx context.Context, name string, devices []string, force bool) error
	ExtendVG(ctx context.Context, name string, devices []string) error

	CreateLV(ctx context.Context, spec LVSpec) error
	CreateSnapshot(ctx context.Context, spec SnapshotSpec) error
	// ExtendLV grows an LV to sizeBytes (rounded up to extents); a size at or
	// below the current one is a no-op.
	ExtendLV(ctx context.Context, vg, name string, sizeBytes int64) error
	// RemoveLV removes an LV; ErrNotFound when it does not exist, ErrInUse when
	// it has snapshots or is open.
	RemoveLV(ctx context.Context, vg, name string) error
	ChangeLV(ctx context.Context, vg, name string, change LVChange) error
	// LVDevicePath is the device node of an LV (/dev/<vg>/<lv>).
	LVDevicePath(vg, name string) string

	// Signatures lists the signatures on a device (empty for a blank device).
	Signatures(ctx context.Context, device string) ([]string, error)
	// Wipe removes every signature from a device (wipefs -a).
	Wipe(ctx context.Context, device string) error
	// Mkfs formats a device with ext4, ext3 or xfs.
	Mkfs(ctx context.Context, device, fsType string, options []string) error
	// FormatNewLV formats an LV that the caller created with CreateLV and
	// that nobody has used since, without probing it first: nothing on a
	// new LV belongs to anyone (CreateLV zeroes its start and wipes the
	// signatures LVM's probe finds; older bytes in its extents were a
	// deleted volume's), so the probe Mkfs runs would only cost a process
	// start. It is ErrInUse when it sees the LV was written since: the real
	// host reads the first 4 KiB lvcreate zeroed, the simulated one checks
	// signatures; the caller then probes it as any other device. Anything
	// that is not a new LV goes through Mkfs.
	FormatNewLV(ctx context.Context, vg, name, fsType string, options []string) error
	// ResizeFS grows the filesystem on device, mounted at mountPath, to fill it.
	ResizeFS(ctx context.Context, device, mountPath string) error
	// CopyDevice copies the first bytes of src onto dst (clone, writable restore).
	CopyDevice(ctx context.Context, src, dst string, bytes int64) error

	Mount(ctx context.Context, source, target, fsType string, options []string) error
	// BindMount bind-mounts source (a directory or a device file) on target,
	// read-only when readOnly is set.
	BindMount(ctx context.Context, source, target string, readOnly bool) error
	// Unmount unmounts target; not mounted is not an error.
	Unmount(ctx context.Context, target string) error
	// IsMountPoint reports whether something is mounted on path; ErrNotFound when path does not exist.
	IsMountPoint(ctx context.Context, path string) (bool, error)
	ListMounts(ctx context.Context) ([]MountInfo, error)
	StatFS(ctx context.Context, path string) (FSStats, error)
	// DeviceSize returns the size in bytes of a block device.
	DeviceSize(ctx context.Context, device string) (int64, error)
	// DeviceNumber returns major:minor of a block device node.
	DeviceNumber(ctx context.Context, device string) (major, minor uint32, err error)

	// MakeDir creates a directory and its parents; MakeFile creates an empty
	// file (a bind-mount target for block volumes); RemovePath removes a file or
	// an empty directory. Missing paths are not errors for RemovePath.
	MakeDir(ctx context.Context, path string) error
	MakeFile(ctx context.Context, path string) error
	RemovePath(ctx context.Context, path string) error
	PathExists(ctx context.Context, path string) (bool, error)
	// ReadFile and WriteFileAtomic keep the plugin's durable records; a write is
	// all or nothing (write, fsync, rename).
	ReadFile(ctx context.Context, path string) ([]byte, error)
	WriteFileAtomic(ctx context.Context, path string, data []byte) error
	// ListDir lists the names in a directory (sorted).
	ListDir(ctx context.Context, path string) ([]string, error)
	// CleanDir removes everything inside a directory, keeping the directory
	// (a released MountPoint volume is emptied, not removed).
	CleanDir(ctx context.Context, path string) error

	// PodCgroupDir finds the cgroup v2 directory of a pod by its UID, for the
	// systemd and cgroupfs drivers alike; ErrNotFound when the pod has none.
	PodCgroupDir(ctx context.Context, podUID string) (string, error)

	// SetIOLimits writes io.max for the device in a cgroup v2 directory;
	// zero limits remove the entry.
	SetIOLimits(ctx context.Context, cgroupDir string, major, minor uint32, limits IOLimits) error
	// IOLimits reads io.max of a cgroup directory back, by "major:minor".
	IOLimits(ctx context.Context, cgroupDir string) (map[string]IOLimits, error)
}
