// Package discovery finds what storage a node has, through hostexec.Host
// only: block devices, LVM (one report per pass), and the filesystems
// mounted directly under the agent's mount root. It turns the result into
// the status of a NodeLocalStorage. It keeps no state between passes.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// DefaultMountRoot is where MountPoint volumes live (open-local's --path.mount).
const DefaultMountRoot = "/mnt/open-local"

// Host operations a pass makes; OpError.Op is one of them.
const (
	OpListBlockDevices = "ListBlockDevices"
	OpLVMReport        = "LVMReport"
	OpListMounts       = "ListMounts"
	OpStatFS           = "StatFS"
)

// OpError is a failed host call, named by the Host method, so that the
// caller can count failures per operation.
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }

// Op returns the host operation an error came from, or "" when it did not
// come from one.
func Op(err error) string {
	var oe *OpError
	if errors.As(err, &oe) {
		return oe.Op
	}
	return ""
}

// Options configure a Discoverer.
type Options struct {
	// MountRoot is the directory whose direct children, when they are mount
	// points, are reported (default DefaultMountRoot).
	MountRoot string
	// DeviceFilter, when set, keeps only the block devices whose kernel name
	// (the path without /dev/) it matches in whole, as open-local's --regexp.
	// Devices that are PVs are reported through their VG either way.
	DeviceFilter *regexp.Regexp
}

// Snapshot is what one pass found.
type Snapshot struct {
	// Storage is the node's storage, every list sorted by name.
	Storage core.NodeStorage
	// OrphanPVs are PVs that belong to no VG.
	OrphanPVs []core.PhysicalVolume
	// Mounts is the whole mount table, in mount order (initialisation needs
	// to know every mounted device, not only those under the root).
	Mounts []hostexec.MountInfo
	// Problems are failures that did not stop the pass (a mount point that
	// could not be measured is left out), each an *OpError.
	Problems []error
}

// Discoverer runs discovery passes against one host.
type Discoverer struct {
	host hostexec.Host
	opts Options
}

// New returns a Discoverer. The mount root must be a clean absolute path.
func New(host hostexec.Host, opts Options) (*Discoverer, error) {
	if opts.MountRoot == "" {
		opts.MountRoot = DefaultMountRoot
	}
	if err := hostexec.ValidatePath(opts.MountRoot); err != nil {
		return nil, fmt.Errorf("mount root: %w", err)
	}
	if opts.DeviceFilter != nil {
		// Leftmost-longest: a match from the first to the last character
		// exists exactly when the pattern matches the whole name ("sd|sdb"
		// matches "sdb"). A copy, so the caller's regexp is left alone.
		re, err := regexp.Compile(opts.DeviceFilter.String())
		if err != nil {
			return nil, fmt.Errorf("device filter: %w", err)
		}
		re.Longest()
		opts.DeviceFilter = re
	}
	return &Discoverer{host: host, opts: opts}, nil
}

// MountRoot is the directory the Discoverer reports mount points under.
func (d *Discoverer) MountRoot() string { return d.opts.MountRoot }

// Discover makes one pass: ListBlockDevices, one LVMReport, ListMounts and a
// StatFS per mount point under the root. A failure of one of the first three
// fails the pass (a partial picture would look like storage vanished).
func (d *Discoverer) Discover(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	devs, err := d.host.ListBlockDevices(ctx)
	if err != nil {
		return Snapshot{}, &OpError{Op: OpListBlockDevices, Err: err}
	}
	lvm, err := d.host.LVMReport(ctx)
	if err != nil {
		return Snapshot{}, &OpError{Op: OpLVMReport, Err: err}
	}
	mounts, err := d.host.ListMounts(ctx)
	if err != nil {
		return Snapshot{}, &OpError{Op: OpListMounts, Err: err}
	}
	snap.Mounts = mounts
	snap.Storage.Devices = d.filterDevices(devs)
	snap.Storage.VGs = sortVGs(lvm.VGs)
	snap.OrphanPVs = append([]core.PhysicalVolume(nil), lvm.OrphanPVs...)
	sort.Slice(snap.OrphanPVs, func(i, j int) bool { return snap.OrphanPVs[i].Name < snap.OrphanPVs[j].Name })

	for _, m := range MountsUnder(mounts, d.opts.MountRoot) {
		st, err := d.host.StatFS(ctx, m.Target)
		if err != nil {
			if ctx.Err() != nil {
				return Snapshot{}, &OpError{Op: OpStatFS, Err: err}
			}
			snap.Problems = append(snap.Problems, &OpError{Op: OpStatFS, Err: fmt.Errorf("mount point %s: %w", m.Target, err)})
			continue
		}
		snap.Storage.MountPoints = append(snap.Storage.MountPoints, core.MountPoint{
			Path:           m.Target,
			Device:         m.Source,
			FSType:         m.FSType,
			Options:        append([]string(nil), m.Options...),
			TotalBytes:     st.TotalBytes,
			AvailableBytes: st.AvailableBytes,
			ReadOnly:       hasOption(m.Options, "ro"),
		})
	}
	return snap, nil
}

func (d *Discoverer) filterDevices(devs []core.BlockDevice) []core.BlockDevice {
	out := make([]core.BlockDevice, 0, len(devs))
	for _, dev := range devs {
		if d.opts.DeviceFilter != nil {
			name := strings.TrimPrefix(dev.Name, "/dev/")
			if loc := d.opts.DeviceFilter.FindStringIndex(name); loc == nil || loc[0] != 0 || loc[1] != len(name) {
				continue
			}
		}
		dev.Partitions = append([]string(nil), dev.Partitions...)
		sort.Strings(dev.Partitions)
		dev.Signatures = append([]string(nil), dev.Signatures...)
		sort.Strings(dev.Signatures)
		out = append(out, dev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sortVGs copies the VGs with PVs and LVs sorted by name: the report's order
// must not decide the status's.
func sortVGs(vgs []core.VolumeGroup) []core.VolumeGroup {
	out := make([]core.VolumeGroup, len(vgs))
	for i, vg := range vgs {
		vg.PVs = append([]core.PhysicalVolume(nil), vg.PVs...)
		sort.Slice(vg.PVs, func(a, b int) bool { return vg.PVs[a].Name < vg.PVs[b].Name })
		vg.LVs = append([]core.LogicalVolume(nil), vg.LVs...)
		sort.Slice(vg.LVs, func(a, b int) bool { return vg.LVs[a].Name < vg.LVs[b].Name })
		out[i] = vg
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// MountsUnder returns the mounts whose target is a direct child of root,
// one per target: where mounts are stacked, the last one (the visible one)
// wins. The result is sorted by target.
func MountsUnder(mounts []hostexec.MountInfo, root string) []hostexec.MountInfo {
	root = path.Clean(root)
	byTarget := map[string]hostexec.MountInfo{}
	for _, m := range mounts {
		t := path.Clean(m.Target)
		if t == root || path.Dir(t) != root {
			continue
		}
		m.Target = t
		byTarget[t] = m
	}
	out := make([]hostexec.MountInfo, 0, len(byTarget))
	for _, m := range byTarget {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// SchedulableFSTypes are the filesystems a mount point must carry to be
// offered (as open-local requires).
var SchedulableFSTypes = []string{"ext3", "ext4", "xfs"}

// Schedulable reports whether volumes may be placed on a mount point: it is
// writable and carries ext3, ext4 or xfs.
func Schedulable(mp core.MountPoint) bool {
	if mp.ReadOnly {
		return false
	}
	for _, t := range SchedulableFSTypes {
		if mp.FSType == t {
			return true
		}
	}
	return false
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}
