package simhost

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// dmMajor is the device-mapper major number LVs get.
const dmMajor = 253

// blockRef is a block device node: a disk, a partition or an active LV.
type blockRef struct {
	path         string
	size         int64
	data         *content
	dev          *device
	vg           *volumeGroup
	lv           *logicalVolume
	major, minor uint32
	readOnly     bool
}

// lvByPath finds the LV of /dev/<vg>/<lv>, active or not.
func (h *Host) lvByPath(p string) (*volumeGroup, *logicalVolume, bool) {
	rest, ok := strings.CutPrefix(p, "/dev/")
	if !ok {
		return nil, nil, false
	}
	vgName, lvName, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(lvName, "/") {
		return nil, nil, false
	}
	vg, ok := h.vgs[vgName]
	if !ok {
		return nil, nil, false
	}
	lv, ok := vg.lvs[lvName]
	return vg, lv, ok
}

// block finds the device node at p. Inactive LVs have none.
func (h *Host) block(p string) (*blockRef, bool) {
	if d, ok := h.devs[p]; ok {
		return &blockRef{path: p, size: d.size, data: &d.data, dev: d, major: d.major, minor: d.minor, readOnly: d.readOnly}, true
	}
	vg, lv, ok := h.lvByPath(p)
	if !ok || !lv.active {
		return nil, false
	}
	size := lv.extents * vg.extentSize
	if o, ok := vg.lvs[lv.origin]; ok {
		// A snapshot's device shows the origin; its own extents are COW space.
		size = o.extents * vg.extentSize
	}
	return &blockRef{path: p, size: size, data: &lv.data, vg: vg, lv: lv, major: dmMajor, minor: lv.minor}, true
}

// holder is the mount keeping a block device open ("" when none).
func (h *Host) holder(p string) string {
	for _, m := range h.mounts {
		if m.holds == p {
			return m.target
		}
	}
	return ""
}

func (b *blockRef) signatures() []string {
	sigs := append([]string(nil), b.data.sigs...)
	if b.data.fs != nil {
		sigs = append(sigs, b.data.fs.fsType)
	}
	if b.dev != nil && b.dev.pv {
		sigs = append(sigs, "LVM2_member")
	}
	return sigs
}

func (h *Host) lookupBlock(p string) (*blockRef, error) {
	b, ok := h.block(p)
	if !ok {
		return nil, fmt.Errorf("device %s: %w", p, hostexec.ErrNotFound)
	}
	return b, nil
}

// ListBlockDevices reports the configured disks and partitions (not LVs),
// sorted by name with partitions after their disk, as sysfs lists them.
func (h *Host) ListBlockDevices(ctx context.Context) (out []core.BlockDevice, err error) {
	finish, err := h.enter(ctx, "ListBlockDevices")
	if err != nil {
		return nil, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, name := range sortedKeys(h.devs) {
		d := h.devs[name]
		if d.parent != "" {
			continue
		}
		out = append(out, h.describe(d))
		parts := append([]string(nil), d.partitions...)
		sort.Slice(parts, func(i, j int) bool {
			if len(parts[i]) != len(parts[j]) {
				return len(parts[i]) < len(parts[j])
			}
			return parts[i] < parts[j]
		})
		for _, p := range parts {
			out = append(out, h.describe(h.devs[p]))
		}
	}
	return out, nil
}

func (h *Host) describe(d *device) core.BlockDevice {
	b, _ := h.block(d.name)
	bd := core.BlockDevice{
		Name: d.name, SizeBytes: d.size, Media: d.media, ReadOnly: d.readOnly, Parent: d.parent,
		Signatures: b.signatures(), Major: d.major, Minor: d.minor,
	}
	if len(d.partitions) > 0 {
		bd.Partitions = append([]string(nil), d.partitions...)
		sort.Strings(bd.Partitions)
	}
	return bd
}

// Signatures lists the signatures on a device.
func (h *Host) Signatures(ctx context.Context, device string) (sigs []string, err error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return nil, err
	}
	finish, err := h.enter(ctx, "Signatures", device)
	if err != nil {
		return nil, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.lookupBlock(device)
	if err != nil {
		return nil, err
	}
	return b.signatures(), nil
}

// Wipe removes every signature. A PV of a VG or an open device is ErrInUse.
func (h *Host) Wipe(ctx context.Context, device string) (err error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "Wipe", device)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.lookupBlock(device)
	if err != nil {
		return err
	}
	if b.dev != nil && b.dev.pv && b.dev.vg != "" {
		return fmt.Errorf("device %s is a physical volume of VG %s: %w", device, b.dev.vg, hostexec.ErrInUse)
	}
	if t := h.holder(device); t != "" {
		return fmt.Errorf("device %s is mounted on %s: %w", device, t, hostexec.ErrInUse)
	}
	if b.readOnly {
		return fmt.Errorf("wipe %s: device is read-only", device)
	}
	*b.data = content{}
	if b.dev != nil {
		b.dev.pv = false
	}
	return nil
}

// FormatNewLV is Mkfs on the LV's device: the simulation keeps the
// signature check, so a caller that formats a used LV this way fails.
func (h *Host) FormatNewLV(ctx context.Context, vg, name, fsType string, options []string) (err error) {
	if err := hostexec.ValidateLVName(vg, name); err != nil {
		return err
	}
	device := h.LVDevicePath(vg, name)
	return h.mkfs(ctx, "FormatNewLV", device, fsType, options)
}

// Mkfs formats a blank device.
func (h *Host) Mkfs(ctx context.Context, device, fsType string, options []string) (err error) {
	return h.mkfs(ctx, "Mkfs", device, fsType, options)
}

func (h *Host) mkfs(ctx context.Context, op, device, fsType string, options []string) (err error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	if err := hostexec.ValidateFSType(fsType); err != nil {
		return err
	}
	if err := hostexec.ValidateToolOptions("mkfs option", options); err != nil {
		return err
	}
	finish, err := h.enter(ctx, op, device, fsType)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.lookupBlock(device)
	if err != nil {
		return err
	}
	if sigs := b.signatures(); len(sigs) > 0 {
		return fmt.Errorf("device %s is not blank (signatures %v); refusing to format it: %w", device, sigs, hostexec.ErrInUse)
	}
	if b.readOnly {
		return fmt.Errorf("format %s: device is read-only", device)
	}
	if fsType == "xfs" && b.size < 300*core.MiB {
		// mkfs.xfs refuses small devices too.
		return fmt.Errorf("format %s as xfs: filesystem must be larger than 300MB", device)
	}
	h.nextUUID++
	b.data.fs = &filesystem{fsType: fsType, size: b.size, uuid: fmt.Sprintf("5e1f0000-0000-4000-8000-%012d", h.nextUUID), root: newDir(), owner: device}
	return nil
}

// ResizeFS grows the filesystem on device, which must be mounted at
// mountPath, to the device's size.
func (h *Host) ResizeFS(ctx context.Context, device, mountPath string) (err error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	if err := hostexec.ValidatePath(mountPath); err != nil {
		return err
	}
	finish, err := h.enter(ctx, "ResizeFS", device, mountPath)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.lookupBlock(device)
	if err != nil {
		return err
	}
	if _, _, ok := h.resolve(mountPath); !ok {
		return fmt.Errorf("mount path %s: %w", mountPath, hostexec.ErrNotFound)
	}
	m := h.mountAt(mountPath)
	if m == nil || m.fs == nil || m.fs != b.data.fs {
		return hostexec.Invalid("mount path", mountPath, "is not where "+device+" is mounted")
	}
	if m.readOnly {
		return fmt.Errorf("grow filesystem on %s: mounted read-only at %s", device, mountPath)
	}
	if b.size > m.fs.size {
		m.fs.size = b.size
	}
	return nil
}

// CopyDevice copies the first bytes of src onto dst. A copy shorter than the
// source filesystem leaves a truncated filesystem that does not mount.
func (h *Host) CopyDevice(ctx context.Context, src, dst string, bytes int64) (err error) {
	if err := hostexec.ValidateDevicePath(src); err != nil {
		return err
	}
	if err := hostexec.ValidateDevicePath(dst); err != nil {
		return err
	}
	if src == dst {
		return hostexec.Invalid("copy destination", dst, "is the source")
	}
	if bytes <= 0 {
		return hostexec.Invalid("copy length", strconv.FormatInt(bytes, 10), "must be positive")
	}
	finish, err := h.enter(ctx, "CopyDevice", src, dst, strconv.FormatInt(bytes, 10))
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	s, err := h.lookupBlock(src)
	if err != nil {
		return err
	}
	if bytes > s.size {
		return hostexec.Invalid("copy length", strconv.FormatInt(bytes, 10), fmt.Sprintf("exceeds the %d bytes of %s", s.size, src))
	}
	d, err := h.lookupBlock(dst)
	if err != nil {
		return err
	}
	if bytes > d.size {
		return fmt.Errorf("copy %d bytes onto %s of %d bytes: %w", bytes, dst, d.size, hostexec.ErrInsufficientSpace)
	}
	if t := h.holder(dst); t != "" {
		return fmt.Errorf("device %s is mounted on %s: %w", dst, t, hostexec.ErrInUse)
	}
	if d.dev != nil && d.dev.pv {
		return fmt.Errorf("device %s is a physical volume (VG %q): %w", dst, d.dev.vg, hostexec.ErrInUse)
	}
	if d.readOnly {
		return fmt.Errorf("copy onto %s: device is read-only", dst)
	}
	c := s.data.clone(dst)
	if c.fs != nil && bytes < c.fs.size {
		c.fs.truncated = true
	}
	*d.data = c
	return nil
}

// DeviceSize is the size of a block device.
func (h *Host) DeviceSize(ctx context.Context, device string) (n int64, err error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return 0, err
	}
	finish, err := h.enter(ctx, "DeviceSize", device)
	if err != nil {
		return 0, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.lookupBlock(device)
	if err != nil {
		return 0, err
	}
	return b.size, nil
}

// DeviceNumber is major:minor of a block device (LVs: 253:n).
func (h *Host) DeviceNumber(ctx context.Context, device string) (major, minor uint32, err error) {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return 0, 0, err
	}
	finish, err := h.enter(ctx, "DeviceNumber", device)
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.lookupBlock(device)
	if err != nil {
		return 0, 0, err
	}
	return b.major, b.minor, nil
}
