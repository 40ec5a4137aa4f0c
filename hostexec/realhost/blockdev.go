package realhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// skippedPrefixes are kernel block devices that are never disks for
// Open-Local: RAM disks, compressed swap, device-mapper targets (LVs
// themselves), optical drives and floppies. Loop devices are skipped unless
// the configuration includes them.
var skippedPrefixes = []string{"ram", "zram", "dm-", "sr", "fd"}

// SignatureProbeFailed is the signature ListBlockDevices reports for a
// device wipefs could not open: reporting it blank would invite formatting a
// disk that may be in use, so it is reported as used by something unknown.
const SignatureProbeFailed = "probe-failed"

// ListBlockDevices reads disks and partitions from sysfs and probes each for
// signatures.
func (h *Host) ListBlockDevices(ctx context.Context) ([]core.BlockDevice, error) {
	devs, err := listSysfs(h.cfg.SysfsRoot, h.cfg.DevRoot, h.cfg.IncludeLoopDevices)
	if err != nil {
		return nil, err
	}
	for i := range devs {
		sigs, err := h.Signatures(ctx, devs[i].Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			klog.FromContext(ctx).Error(err, "Cannot probe device; reporting it as in use", "device", devs[i].Name)
			sigs = []string{SignatureProbeFailed}
		}
		devs[i].Signatures = sigs
	}
	return devs, nil
}

func readSysfsString(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readSysfsInt(p string) (int64, error) {
	s, err := readSysfsString(p)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", p, s)
	}
	return n, nil
}

func parseDevNumber(s string) (major, minor uint32, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, 0, fmt.Errorf("device number %q is not MAJOR:MINOR", s)
	}
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("device number %q is not MAJOR:MINOR", s)
	}
	return uint32(ma), uint32(mi), nil
}

// readSysfsDevice reads size, read-only flag and device numbers of one
// sysfs block directory.
func readSysfsDevice(dir, name, devRoot string) (core.BlockDevice, error) {
	d := core.BlockDevice{Name: filepath.Join(devRoot, name)}
	sectors, err := readSysfsInt(filepath.Join(dir, "size"))
	if err != nil {
		return d, err
	}
	// sysfs "size" is always in 512-byte units, whatever the sector size.
	d.SizeBytes = sectors * core.SectorSize
	if ro, err := readSysfsInt(filepath.Join(dir, "ro")); err == nil {
		d.ReadOnly = ro != 0
	}
	num, err := readSysfsString(filepath.Join(dir, "dev"))
	if err != nil {
		return d, err
	}
	if d.Major, d.Minor, err = parseDevNumber(num); err != nil {
		return d, fmt.Errorf("%s: %w", filepath.Join(dir, "dev"), err)
	}
	return d, nil
}

// listSysfs lists whole disks from <sysfsRoot>/block and their partitions
// (subdirectories holding a "partition" file, e.g. sda1 or nvme0n1p1).
// Devices of size 0 (empty loop slots, card readers without a card) are left
// out. The result is sorted by name, partitions after their disk.
func listSysfs(sysfsRoot, devRoot string, includeLoop bool) ([]core.BlockDevice, error) {
	blockDir := filepath.Join(sysfsRoot, "block")
	entries, err := os.ReadDir(blockDir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out []core.BlockDevice
	for _, name := range names {
		if skipDevice(name, includeLoop) {
			continue
		}
		dir := filepath.Join(blockDir, name)
		disk, err := readSysfsDevice(dir, name, devRoot)
		if err != nil {
			return nil, fmt.Errorf("block device %s: %w", name, err)
		}
		if disk.SizeBytes == 0 {
			continue
		}
		disk.Media = core.MediaHDD
		if rot, err := readSysfsInt(filepath.Join(dir, "queue", "rotational")); err == nil && rot == 0 {
			disk.Media = core.MediaSSD
		}
		parts, err := listPartitions(dir, name, devRoot, disk)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			disk.Partitions = append(disk.Partitions, p.Name)
		}
		out = append(out, disk)
		out = append(out, parts...)
	}
	return out, nil
}

func skipDevice(name string, includeLoop bool) bool {
	if strings.HasPrefix(name, "loop") {
		return !includeLoop
	}
	for _, p := range skippedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func listPartitions(diskDir, diskName, devRoot string, disk core.BlockDevice) ([]core.BlockDevice, error) {
	entries, err := os.ReadDir(diskDir)
	if err != nil {
		return nil, fmt.Errorf("block device %s: %w", diskName, err)
	}
	var parts []core.BlockDevice
	for _, e := range entries {
		// Partition directories are named after their disk; this also keeps
		// the walk out of "holders", "slaves" and "device" links.
		if !strings.HasPrefix(e.Name(), diskName) {
			continue
		}
		dir := filepath.Join(diskDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
			continue
		}
		p, err := readSysfsDevice(dir, e.Name(), devRoot)
		if err != nil {
			return nil, fmt.Errorf("partition %s: %w", e.Name(), err)
		}
		p.Parent = disk.Name
		p.Media = disk.Media
		p.ReadOnly = p.ReadOnly || disk.ReadOnly
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return partitionLess(parts[i].Name, parts[j].Name) })
	return parts, nil
}

// partitionLess orders sda2 before sda10 (by length, then by name).
func partitionLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// Signatures lists what wipefs finds on device: filesystems, RAID members,
// LVM labels, partition tables.
func (h *Host) Signatures(ctx context.Context, device string) ([]string, error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return nil, err
	}
	out, err := h.run.run(ctx, "wipefs", "--no-act", "--json", device)
	if err != nil {
		return nil, fmt.Errorf("probe signatures of %s: %w", device, err)
	}
	sigs, err := parseWipefs(out)
	if err != nil {
		return nil, fmt.Errorf("probe signatures of %s: %w", device, err)
	}
	return sigs, nil
}

// parseWipefs reads `wipefs --json` output; a blank device prints nothing.
// Types are deduplicated (a GPT disk shows "gpt" twice and "PMBR").
func parseWipefs(out []byte) ([]string, error) {
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil
	}
	var doc struct {
		Signatures []struct {
			Type string `json:"type"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("wipefs output is not JSON: %v", err)
	}
	var sigs []string
	seen := map[string]bool{}
	for _, s := range doc.Signatures {
		t := s.Type
		if t == "" {
			t = "unknown"
		}
		if !seen[t] {
			seen[t] = true
			sigs = append(sigs, t)
		}
	}
	return sigs, nil
}

// Wipe removes every signature from device. A PV of a VG and a mounted device
// are ErrInUse: wiping them would destroy live data.
func (h *Host) Wipe(ctx context.Context, device string) error {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	if err := statDevice(device); err != nil {
		return err
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	if vg, _ := pvOwner(st, device); vg != "" {
		return fmt.Errorf("device %s is a physical volume of VG %s: %w", device, vg, hostexec.ErrInUse)
	}
	if target, err := h.mountedAt(device); err != nil {
		return err
	} else if target != "" {
		return fmt.Errorf("device %s is mounted on %s: %w", device, target, hostexec.ErrInUse)
	}
	if _, err := h.run.run(ctx, "wipefs", "-a", device); err != nil {
		return fmt.Errorf("wipe %s: %w", device, err)
	}
	return nil
}

// DeviceSize is the size of a block device.
func (h *Host) DeviceSize(ctx context.Context, device string) (int64, error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if _, _, err := blockDeviceNumber(device); err != nil {
		return 0, err
	}
	f, err := os.Open(device)
	if err != nil {
		return 0, pathError("open device", device, err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", device, err)
	}
	return n, nil
}

// DeviceNumber is major:minor of a block device node (symlinks followed, so
// /dev/<vg>/<lv> gives the dm device).
func (h *Host) DeviceNumber(ctx context.Context, device string) (uint32, uint32, error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return 0, 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return blockDeviceNumber(device)
}

func blockDeviceNumber(device string) (uint32, uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		return 0, 0, pathError("stat device", device, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, hostexec.Invalid("device path", device, "is not a block device")
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), nil
}

// pathError maps an errno to the typed errors, keeping the original.
func pathError(op, p string, err error) error {
	var kind error
	switch {
	case errors.Is(err, unix.ENOENT):
		kind = hostexec.ErrNotFound
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTDIR) && op == "make directory":
		kind = hostexec.ErrAlreadyExists
	case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EBUSY):
		kind = hostexec.ErrInUse
	case errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENOTDIR):
		kind = hostexec.ErrInvalidArgument
	case errors.Is(err, unix.ENOSPC):
		kind = hostexec.ErrInsufficientSpace
	}
	if kind == nil {
		return fmt.Errorf("%s %s: %w", op, p, err)
	}
	return fmt.Errorf("%s %s: %w (%w)", op, p, kind, err)
}
