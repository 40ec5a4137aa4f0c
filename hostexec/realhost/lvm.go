package realhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/lvmreport"
)

// LVMReport runs one `lvm fullreport` and parses it.
func (h *Host) LVMReport(ctx context.Context) (core.LVMState, error) {
	args := lvmreport.FullReportArgs()
	out, err := h.lvm(ctx, args[0], args[1:]...)
	if err != nil {
		return core.LVMState{}, fmt.Errorf("LVM report: %w", err)
	}
	st, err := lvmreport.Parse(out)
	if err != nil {
		return core.LVMState{}, fmt.Errorf("LVM report: %w", err)
	}
	return st, nil
}

// pvOwner tells whether device is a PV, and of which VG ("" for an orphan).
func pvOwner(st core.LVMState, device string) (vg string, isPV bool) {
	for _, v := range st.VGs {
		for _, pv := range v.PVs {
			if pv.Name == device {
				return v.Name, true
			}
		}
	}
	for _, pv := range st.OrphanPVs {
		if pv.Name == device {
			return "", true
		}
	}
	return "", false
}

func statDevice(device string) error {
	if _, err := os.Stat(device); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("device %s: %w", device, hostexec.ErrNotFound)
		}
		return fmt.Errorf("device %s: %w", device, err)
	}
	return nil
}

// checkNewPV refuses a device that may not become a PV: missing, in a VG, or
// carrying signatures (unless force). It reports whether device is already
// an orphan PV, which needs no pvcreate.
func (h *Host) checkNewPV(ctx context.Context, st core.LVMState, device string, force bool) (isOrphanPV bool, err error) {
	if vg, isPV := pvOwner(st, device); isPV {
		if vg != "" {
			return false, fmt.Errorf("device %s is a physical volume of VG %s: %w", device, vg, hostexec.ErrInUse)
		}
		return true, nil
	}
	if err := statDevice(device); err != nil {
		return false, err
	}
	if parts := h.partitionsOf(device); len(parts) > 0 {
		return false, fmt.Errorf("device %s has partitions %v: %w", device, parts, hostexec.ErrInUse)
	}
	if force {
		return false, nil
	}
	sigs, err := h.Signatures(ctx, device)
	if err != nil {
		return false, err
	}
	if len(sigs) > 0 {
		return false, fmt.Errorf("device %s holds signatures %v; it is used by something else (wipe it or use force): %w", device, sigs, hostexec.ErrInUse)
	}
	return false, nil
}

// partitionsOf lists the partitions sysfs shows for a whole disk (none for
// a partition, an LV or a device sysfs does not know).
func (h *Host) partitionsOf(device string) []string {
	resolved, err := filepath.EvalSymlinks(device)
	if err != nil {
		return nil
	}
	name := filepath.Base(resolved)
	dir := filepath.Join(h.cfg.SysfsRoot, "class", "block", name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var parts []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err == nil {
			parts = append(parts, filepath.Join(h.cfg.DevRoot, e.Name()))
		}
	}
	return parts
}

func (h *Host) pvcreate(ctx context.Context, device string, force bool) error {
	args := []string{}
	if force {
		// -f wipes foreign signatures without asking; never -ff, which
		// would take a PV away from its VG.
		args = append(args, "-f", "-y")
	}
	args = append(args, device)
	if _, err := h.lvm(ctx, "pvcreate", args...); err != nil {
		return fmt.Errorf("create PV on %s: %w", device, err)
	}
	klog.FromContext(ctx).Info("Created physical volume", "device", device, "force", force)
	return nil
}

// CreatePV initialises device as a PV. An orphan PV is left as it is; a PV of
// a VG is ErrInUse even with force.
func (h *Host) CreatePV(ctx context.Context, device string, force bool) error {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	orphan, err := h.checkNewPV(ctx, st, device, force)
	if err != nil || orphan {
		return err
	}
	return h.pvcreate(ctx, device, force)
}

// CreateVG creates a VG over devices. Every device is checked before any is
// touched, so a refused call changes nothing.
func (h *Host) CreateVG(ctx context.Context, name string, devices []string, force bool) error {
	if err := hostexec.ValidateVGName(name); err != nil {
		return err
	}
	if err := hostexec.ValidateDeviceList(devices); err != nil {
		return err
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	if _, ok := st.FindVG(name); ok {
		return fmt.Errorf("VG %s: %w", name, hostexec.ErrAlreadyExists)
	}
	if err := h.preparePVs(ctx, st, devices, force); err != nil {
		return err
	}
	if _, err := h.lvm(ctx, "vgcreate", append([]string{name}, devices...)...); err != nil {
		return fmt.Errorf("create VG %s: %w", name, err)
	}
	klog.FromContext(ctx).Info("Created volume group", "vg", name, "devices", devices)
	return nil
}

// preparePVs makes devices PVs for a VG: every device is checked before
// any is touched, then those that are not orphan PVs yet get pvcreate.
func (h *Host) preparePVs(ctx context.Context, st core.LVMState, devices []string, force bool) error {
	var need []string
	for _, d := range devices {
		orphan, err := h.checkNewPV(ctx, st, d, force)
		if err != nil {
			return err
		}
		if !orphan {
			need = append(need, d)
		}
	}
	for _, d := range need {
		if err := h.pvcreate(ctx, d, force); err != nil {
			return err
		}
	}
	return nil
}

// ExtendVG adds devices to a VG. A device already in this VG is
// ErrAlreadyExists, one in another VG ErrInUse; devices with signatures are
// refused (ExtendVG never forces).
func (h *Host) ExtendVG(ctx context.Context, name string, devices []string) error {
	if err := hostexec.ValidateVGName(name); err != nil {
		return err
	}
	if err := hostexec.ValidateDeviceList(devices); err != nil {
		return err
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	if _, ok := st.FindVG(name); !ok {
		return fmt.Errorf("VG %s: %w", name, hostexec.ErrNotFound)
	}
	for _, d := range devices {
		if vg, _ := pvOwner(st, d); vg == name {
			return fmt.Errorf("device %s is already in VG %s: %w", d, name, hostexec.ErrAlreadyExists)
		}
	}
	if err := h.preparePVs(ctx, st, devices, false); err != nil {
		return err
	}
	if _, err := h.lvm(ctx, "vgextend", append([]string{name}, devices...)...); err != nil {
		return fmt.Errorf("extend VG %s: %w", name, err)
	}
	klog.FromContext(ctx).Info("Extended volume group", "vg", name, "devices", devices)
	return nil
}

// sizeArg is an lvm byte size: LVM wants whole sectors, and refuses 0, so
// the request is rounded up to a sector (LVM then rounds to extents, see
// core.LVSize).
func sizeArg(b int64) string {
	if b < core.SectorSize {
		b = core.SectorSize
	}
	return strconv.FormatInt(core.RoundUp(b, core.SectorSize), 10) + "b"
}

func tagArgs(flag string, tags []string) []string {
	var args []string
	for _, t := range tags {
		args = append(args, flag, t)
	}
	return args
}

// newLVArgs are the options every new LV gets. With device-mapper the LV is
// activated, its start zeroed and stale signatures wiped (-y answers LVM's
// question), so a new volume is blank and Mkfs accepts it. Without
// device-mapper nothing can be written, so the LV stays inactive.
func (h *Host) newLVArgs() []string {
	if h.cfg.NoActivation {
		return []string{"-an", "--zero", "n"}
	}
	return []string{"-ay", "--zero", "y", "--wipesignatures", "y", "-y"}
}

func lookupLV(st core.LVMState, vg, name string) (*core.VolumeGroup, *core.LogicalVolume, error) {
	v, ok := st.FindVG(vg)
	if !ok {
		return nil, nil, fmt.Errorf("VG %s: %w", vg, hostexec.ErrNotFound)
	}
	lv, ok := v.FindLV(name)
	if !ok {
		return v, nil, fmt.Errorf("LV %s/%s: %w", vg, name, hostexec.ErrNotFound)
	}
	return v, lv, nil
}

// CreateLV creates a linear or striped LV. It runs lvcreate alone: a
// missing VG, a name that is taken, too few PVs for the stripes or too little
// space come back as lvcreate's messages, classified (ErrNotFound,
// ErrAlreadyExists, ErrInsufficientSpace). A report first would double the
// cost of the call, and an LVM command is the slowest step of provisioning.
func (h *Host) CreateLV(ctx context.Context, spec hostexec.LVSpec) error {
	if err := hostexec.ValidateLVSpec(spec); err != nil {
		return err
	}
	stripes := spec.Stripes
	if stripes < 1 {
		stripes = 1
	}
	args := []string{"-n", spec.Name, "-L", sizeArg(spec.SizeBytes)}
	if stripes > 1 {
		args = append(args, "-i", strconv.Itoa(stripes))
		if spec.StripeSizeBytes > 0 {
			args = append(args, "-I", strconv.FormatInt(spec.StripeSizeBytes, 10)+"b")
		}
	}
	args = append(args, tagArgs("--addtag", spec.Tags)...)
	args = append(args, h.newLVArgs()...)
	args = append(args, spec.VG)
	if _, err := h.lvm(ctx, "lvcreate", args...); err != nil {
		return fmt.Errorf("create LV %s/%s: %w", spec.VG, spec.Name, err)
	}
	klog.FromContext(ctx).Info("Created logical volume", "vg", spec.VG, "lv", spec.Name,
		"requestBytes", spec.SizeBytes, "stripes", stripes)
	return nil
}

// CreateSnapshot creates a COW snapshot of an LV. Without device-mapper LVM
// refuses `lvcreate -s`, so the COW LV is created inactive and turned into a
// snapshot with `lvconvert -s` (metadata only).
func (h *Host) CreateSnapshot(ctx context.Context, spec hostexec.SnapshotSpec) error {
	if err := hostexec.ValidateSnapshotSpec(spec); err != nil {
		return err
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	vg, origin, err := lookupLV(st, spec.VG, spec.Origin)
	if err != nil {
		return fmt.Errorf("snapshot origin: %w", err)
	}
	if origin.IsSnapshot() {
		return hostexec.Invalid("snapshot origin", spec.VG+"/"+spec.Origin, "is itself a snapshot; LVM does not snapshot snapshots")
	}
	if _, ok := vg.FindLV(spec.Name); ok {
		return fmt.Errorf("LV %s/%s: %w", spec.VG, spec.Name, hostexec.ErrAlreadyExists)
	}
	originRef := spec.VG + "/" + spec.Origin
	logger := klog.FromContext(ctx)
	if !h.cfg.NoActivation {
		args := []string{"-s", "-n", spec.Name, "-L", sizeArg(spec.SizeBytes)}
		args = append(args, tagArgs("--addtag", spec.Tags)...)
		args = append(args, originRef)
		if _, err := h.lvm(ctx, "lvcreate", args...); err != nil {
			return fmt.Errorf("create snapshot %s/%s of %s: %w", spec.VG, spec.Name, spec.Origin, err)
		}
		logger.Info("Created snapshot", "vg", spec.VG, "snapshot", spec.Name, "origin", spec.Origin)
		return nil
	}
	args := []string{"-n", spec.Name, "-L", sizeArg(spec.SizeBytes)}
	args = append(args, tagArgs("--addtag", spec.Tags)...)
	args = append(args, h.newLVArgs()...)
	args = append(args, spec.VG)
	if _, err := h.lvm(ctx, "lvcreate", args...); err != nil {
		return fmt.Errorf("create snapshot %s/%s of %s: %w", spec.VG, spec.Name, spec.Origin, err)
	}
	if _, err := h.lvm(ctx, "lvconvert", "-y", "--zero", "n", "-s", originRef, spec.VG+"/"+spec.Name); err != nil {
		// Do not leave a stray COW volume behind.
		if _, rmErr := h.lvm(context.WithoutCancel(ctx), "lvremove", "-y", spec.VG+"/"+spec.Name); rmErr != nil {
			logger.Error(rmErr, "Removing the COW volume of a failed snapshot", "vg", spec.VG, "lv", spec.Name)
		}
		return fmt.Errorf("create snapshot %s/%s of %s: %w", spec.VG, spec.Name, spec.Origin, err)
	}
	logger.Info("Created snapshot (metadata only)", "vg", spec.VG, "snapshot", spec.Name, "origin", spec.Origin)
	return nil
}

// ExtendLV grows an LV to sizeBytes rounded as LVM rounds; a size at or
// below the current one does nothing.
func (h *Host) ExtendLV(ctx context.Context, vg, name string, sizeBytes int64) error {
	if err := hostexec.ValidateLVName(vg, name); err != nil {
		return err
	}
	if sizeBytes < 0 {
		return hostexec.Invalid("LV size", strconv.FormatInt(sizeBytes, 10), "must not be negative")
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	v, lv, err := lookupLV(st, vg, name)
	if err != nil {
		return err
	}
	target := core.LVSize(sizeBytes, v.ExtentSizeBytes, lv.Stripes)
	if target <= lv.SizeBytes {
		return nil
	}
	if _, err := h.lvm(ctx, "lvextend", "-L", sizeArg(target), vg+"/"+name); err != nil {
		return fmt.Errorf("extend LV %s/%s to %d bytes: %w", vg, name, target, err)
	}
	klog.FromContext(ctx).Info("Extended logical volume", "vg", vg, "lv", name, "fromBytes", lv.SizeBytes, "toBytes", target)
	return nil
}

// RemoveLV removes an LV. An origin with snapshots is ErrInUse: lvremove
// would silently take its snapshots with it.
func (h *Host) RemoveLV(ctx context.Context, vg, name string) error {
	if err := hostexec.ValidateLVName(vg, name); err != nil {
		return err
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	v, _, err := lookupLV(st, vg, name)
	if err != nil {
		return err
	}
	var snaps []string
	for _, l := range v.LVs {
		if l.Origin == name {
			snaps = append(snaps, l.Name)
		}
	}
	if len(snaps) > 0 {
		return fmt.Errorf("LV %s/%s has snapshots %v; remove them first: %w", vg, name, snaps, hostexec.ErrInUse)
	}
	if _, err := h.lvm(ctx, "lvremove", "-y", vg+"/"+name); err != nil {
		return fmt.Errorf("remove LV %s/%s: %w", vg, name, err)
	}
	klog.FromContext(ctx).Info("Removed logical volume", "vg", vg, "lv", name)
	return nil
}

// ChangeLV adds and removes tags, then (de)activates. They are two lvchange
// runs: LVM advises against combining activation with other changes.
func (h *Host) ChangeLV(ctx context.Context, vg, name string, change hostexec.LVChange) error {
	if err := hostexec.ValidateLVName(vg, name); err != nil {
		return err
	}
	if err := hostexec.ValidateTags(change.AddTags); err != nil {
		return err
	}
	if err := hostexec.ValidateTags(change.DelTags); err != nil {
		return err
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	if _, _, err := lookupLV(st, vg, name); err != nil {
		return err
	}
	ref := vg + "/" + name
	if len(change.AddTags)+len(change.DelTags) > 0 {
		args := append(tagArgs("--addtag", change.AddTags), tagArgs("--deltag", change.DelTags)...)
		if _, err := h.lvm(ctx, "lvchange", append(args, ref)...); err != nil {
			return fmt.Errorf("change tags of LV %s: %w", ref, err)
		}
	}
	if change.Activate != nil {
		flag := "-an"
		if *change.Activate {
			flag = "-ay"
		}
		// -y: (de)activating a snapshot also (de)activates its origin.
		if _, err := h.lvm(ctx, "lvchange", "-y", flag, ref); err != nil {
			return fmt.Errorf("change activation of LV %s: %w", ref, err)
		}
	}
	klog.FromContext(ctx).V(2).Info("Changed logical volume", "vg", vg, "lv", name,
		"addTags", change.AddTags, "delTags", change.DelTags, "activate", change.Activate)
	return nil
}

// LVDevicePath is /dev/<vg>/<lv>.
func (h *Host) LVDevicePath(vg, name string) string {
	return filepath.Join(h.cfg.DevRoot, vg, name)
}
