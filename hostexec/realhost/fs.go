package realhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	"k8s.io/mount-utils"

	"github.com/open-local/open-local/hostexec"
)

// mkfsArgs are the options mount-utils' SafeFormatAndMount gives mkfs: ext
// filesystems keep no blocks for root (-m0), and the force flags only skip
// questions (Mkfs has already checked that the device is blank).
func mkfsArgs(fsType string, options []string, device string) []string {
	var args []string
	switch fsType {
	case "ext4", "ext3":
		args = []string{"-F", "-m0"}
	case "xfs":
		args = []string{"-f"}
	}
	args = append(args, options...)
	return append(args, device)
}

// Mkfs formats a blank device. A device with any signature is ErrInUse:
// formatting is never how an existing filesystem gets replaced.
func (h *Host) Mkfs(ctx context.Context, device, fsType string, options []string) error {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	if err := hostexec.ValidateFSType(fsType); err != nil {
		return err
	}
	if err := hostexec.ValidateToolOptions("mkfs option", options); err != nil {
		return err
	}
	if err := statDevice(device); err != nil {
		return err
	}
	sigs, err := h.Signatures(ctx, device)
	if err != nil {
		return err
	}
	if len(sigs) > 0 {
		return fmt.Errorf("device %s is not blank (signatures %v); refusing to format it: %w", device, sigs, hostexec.ErrInUse)
	}
	if _, err := h.run.run(ctx, "mkfs."+fsType, mkfsArgs(fsType, options, device)...); err != nil {
		return fmt.Errorf("format %s as %s: %w", device, fsType, err)
	}
	klog.FromContext(ctx).Info("Formatted device", "device", device, "fsType", fsType)
	return nil
}

// FormatNewLV formats a new LV without the signature probe (see
// hostexec.Host): the probe is a process start, and on the provisioning path
// it only repeats what lvcreate's --wipesignatures and --zero did moments
// before. What it keeps is a read of the LV's first 4 KiB, which lvcreate
// zeroed: a non-zero byte there means something was written since (almost
// every filesystem, partition table and RAID or LVM label starts within
// them), and the LV is ErrInUse for the caller to probe as any other.
func (h *Host) FormatNewLV(ctx context.Context, vg, name, fsType string, options []string) error {
	if err := hostexec.ValidateLVName(vg, name); err != nil {
		return err
	}
	if err := hostexec.ValidateFSType(fsType); err != nil {
		return err
	}
	if err := hostexec.ValidateToolOptions("mkfs option", options); err != nil {
		return err
	}
	device := h.LVDevicePath(vg, name)
	if err := statDevice(device); err != nil {
		return err
	}
	zero, err := startIsZero(device)
	if err != nil {
		return err
	}
	if !zero {
		return fmt.Errorf("LV %s/%s was written to since it was created; probe it: %w", vg, name, hostexec.ErrInUse)
	}
	if _, err := h.run.run(ctx, "mkfs."+fsType, mkfsArgs(fsType, options, device)...); err != nil {
		return fmt.Errorf("format %s as %s: %w", device, fsType, err)
	}
	klog.FromContext(ctx).Info("Formatted new LV", "device", device, "fsType", fsType)
	return nil
}

// zeroedStart is how much of a new LV lvcreate --zero y clears.
const zeroedStart = 4096

// startIsZero reads a device's first zeroedStart bytes past the page cache
// (O_DIRECT, into a page-aligned buffer) and reports whether all are zero.
func startIsZero(device string) (bool, error) {
	fd, err := unix.Open(device, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, pathError("open", device, err)
	}
	defer func() { _ = unix.Close(fd) }()
	buf, err := unix.Mmap(-1, 0, zeroedStart, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", device, err)
	}
	defer func() { _ = unix.Munmap(buf) }()
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return false, pathError("read", device, err)
	}
	for _, b := range buf[:n] {
		if b != 0 {
			return false, nil
		}
	}
	return n == zeroedStart, nil
}

// sameDevice reports whether the filesystem mounted at mountPath lives on
// device: the mount root's st_dev is the block device's st_rdev.
func sameDevice(device, mountPath string) (bool, error) {
	var d, m unix.Stat_t
	if err := unix.Stat(device, &d); err != nil {
		return false, pathError("stat device", device, err)
	}
	if err := unix.Stat(mountPath, &m); err != nil {
		return false, pathError("stat", mountPath, err)
	}
	return d.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(m.Dev) == uint64(d.Rdev), nil
}

// ResizeFS grows the filesystem of device, mounted at mountPath, to the
// device's size (resize2fs or xfs_growfs, as mount-utils' resizefs picks).
func (h *Host) ResizeFS(ctx context.Context, device, mountPath string) error {
	if err := hostexec.ValidateDevicePath(device); err != nil {
		return err
	}
	if err := hostexec.ValidatePath(mountPath); err != nil {
		return err
	}
	same, err := sameDevice(device, mountPath)
	if err != nil {
		return err
	}
	if !same {
		return hostexec.Invalid("mount path", mountPath, "is not where "+device+" is mounted")
	}
	r := mount.NewResizeFs(utilExec{ctx: ctx, r: h.run})
	if _, err := r.Resize(device, mountPath); err != nil {
		return fmt.Errorf("grow filesystem on %s at %s: %w", device, mountPath, withKind(err))
	}
	klog.FromContext(ctx).Info("Grew filesystem", "device", device, "mountPath", mountPath)
	return nil
}

// withKind classifies a library error from its message.
func withKind(err error) error {
	if kind := classify(err.Error()); kind != nil {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return err
}

// CopyDevice copies the first bytes of src onto dst with dd, fsyncing dst
// at the end.
func (h *Host) CopyDevice(ctx context.Context, src, dst string, bytes int64) error {
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
	srcSize, err := h.DeviceSize(ctx, src)
	if err != nil {
		return err
	}
	if bytes > srcSize {
		return hostexec.Invalid("copy length", strconv.FormatInt(bytes, 10), fmt.Sprintf("exceeds the %d bytes of %s", srcSize, src))
	}
	dstSize, err := h.DeviceSize(ctx, dst)
	if err != nil {
		return err
	}
	if bytes > dstSize {
		return fmt.Errorf("copy %d bytes onto %s of %d bytes: %w", bytes, dst, dstSize, hostexec.ErrInsufficientSpace)
	}
	if err := h.refuseBusyTarget(ctx, dst); err != nil {
		return err
	}
	// Read with O_DIRECT: a filesystem such as xfs writes its metadata past the
	// source's page cache, so a buffered read of a mounted source can return
	// blocks cached before (by blkid at stage time, say) instead of what is on disk.
	args := []string{
		"if=" + src, "of=" + dst, "bs=1M", "count=" + strconv.FormatInt(bytes, 10),
		"iflag=count_bytes,direct", "conv=fsync,notrunc", "status=none",
	}
	if _, err := h.run.run(ctx, "dd", args...); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	klog.FromContext(ctx).Info("Copied device", "src", src, "dst", dst, "bytes", bytes)
	return nil
}

// refuseBusyTarget refuses to overwrite a mounted device or a PV.
func (h *Host) refuseBusyTarget(ctx context.Context, device string) error {
	if target, err := h.mountedAt(device); err != nil {
		return err
	} else if target != "" {
		return fmt.Errorf("device %s is mounted on %s: %w", device, target, hostexec.ErrInUse)
	}
	st, err := h.LVMReport(ctx)
	if err != nil {
		return err
	}
	if vg, isPV := pvOwner(st, device); isPV {
		return fmt.Errorf("device %s is a physical volume (VG %q): %w", device, vg, hostexec.ErrInUse)
	}
	return nil
}

// mountedAt returns a mount target of device ("" when it is not mounted),
// comparing device numbers so /dev/<vg>/<lv> matches /dev/mapper/<vg>-<lv>.
func (h *Host) mountedAt(device string) (string, error) {
	var d unix.Stat_t
	if err := unix.Stat(device, &d); err != nil {
		return "", pathError("stat device", device, err)
	}
	mps, err := h.mounter.List()
	if err != nil {
		return "", fmt.Errorf("list mounts: %w", err)
	}
	for _, mp := range mps {
		if !strings.HasPrefix(mp.Device, "/") {
			continue
		}
		var s unix.Stat_t
		if unix.Stat(mp.Device, &s) != nil {
			continue
		}
		if s.Mode&unix.S_IFMT == unix.S_IFBLK && s.Rdev == d.Rdev {
			return mp.Path, nil
		}
	}
	return "", nil
}

func (h *Host) isMountPoint(p string) (bool, error) {
	mounted, err := h.mounter.IsMountPoint(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("path %s: %w", p, hostexec.ErrNotFound)
		}
		return false, fmt.Errorf("check mount point %s: %w", p, err)
	}
	return mounted, nil
}

// Mount mounts a formatted device on an existing directory. A target that
// already is a mount point is ErrInUse (mounts are never stacked).
func (h *Host) Mount(ctx context.Context, source, target, fsType string, options []string) error {
	if err := hostexec.ValidateDevicePath(source); err != nil {
		return err
	}
	if err := hostexec.ValidatePath(target); err != nil {
		return err
	}
	if err := hostexec.ValidateFSType(fsType); err != nil {
		return err
	}
	if err := hostexec.ValidateMountOptions(options); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := statDevice(source); err != nil {
		return err
	}
	if fi, err := os.Stat(target); err != nil {
		return pathError("mount target", target, err)
	} else if !fi.IsDir() {
		return hostexec.Invalid("mount target", target, "is not a directory")
	}
	if mounted, err := h.isMountPoint(target); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("mount target %s already has a mount: %w", target, hostexec.ErrInUse)
	}
	if err := h.mounter.Mount(source, target, fsType, options); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, withKind(err))
	}
	klog.FromContext(ctx).Info("Mounted", "source", source, "target", target, "fsType", fsType, "options", options)
	return nil
}

// BindMount bind-mounts a directory on a directory or a file (e.g. a device
// node) on a file; readOnly remounts the bind read-only.
func (h *Host) BindMount(ctx context.Context, source, target string, readOnly bool) error {
	if err := hostexec.ValidatePath(source); err != nil {
		return err
	}
	if err := hostexec.ValidatePath(target); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sfi, err := os.Stat(source)
	if err != nil {
		return pathError("bind source", source, err)
	}
	tfi, err := os.Stat(target)
	if err != nil {
		return pathError("bind target", target, err)
	}
	if sfi.IsDir() != tfi.IsDir() {
		return hostexec.Invalid("bind target", target, "must be a directory exactly when the source is one")
	}
	if mounted, err := h.isMountPoint(target); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("bind target %s already has a mount: %w", target, hostexec.ErrInUse)
	}
	if err := bindMount(source, target, readOnly); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Bind-mounted", "source", source, "target", target, "readOnly", readOnly)
	return nil
}

// bindMount makes the bind with mount(2) itself: a bind has no filesystem
// options for mount(8) to interpret, and starting mount(8) once (twice for a
// read-only bind) is most of what publishing costs. A read-only bind is the
// bind remounted MS_RDONLY; if that remount fails the bind is undone, so a
// failed read-only publish never leaves a writable mount behind.
func bindMount(source, target string, readOnly bool) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", source, target, pathError("mount", target, err))
	}
	if !readOnly {
		return nil
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		if uerr := unix.Unmount(target, 0); uerr != nil {
			return fmt.Errorf("bind %s on %s: remounting read-only failed (%v) and the writable bind could not be undone: %v", source, target, err, uerr)
		}
		return fmt.Errorf("bind %s on %s: remounting read-only: %w", source, target, pathError("mount", target, err))
	}
	return nil
}

// Unmount unmounts target; a missing or unmounted path is not an error.
func (h *Host) Unmount(ctx context.Context, target string) error {
	if err := hostexec.ValidatePath(target); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	mounted, err := h.isMountPoint(target)
	if err != nil {
		if errors.Is(err, hostexec.ErrNotFound) {
			return nil
		}
		return err
	}
	if !mounted {
		return nil
	}
	if err := h.mounter.Unmount(target); err != nil {
		return fmt.Errorf("unmount %s: %w", target, withKind(err))
	}
	klog.FromContext(ctx).Info("Unmounted", "target", target)
	return nil
}

// IsMountPoint reports whether something is mounted on p.
func (h *Host) IsMountPoint(ctx context.Context, p string) (bool, error) {
	if err := hostexec.ValidatePath(p); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return h.isMountPoint(p)
}

// ListMounts is the mount table (/proc/mounts).
func (h *Host) ListMounts(ctx context.Context) ([]hostexec.MountInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mps, err := h.mounter.List()
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	out := make([]hostexec.MountInfo, 0, len(mps))
	for _, mp := range mps {
		out = append(out, hostexec.MountInfo{Source: mp.Device, Target: mp.Path, FSType: mp.Type, Options: mp.Opts})
	}
	return out, nil
}

// StatFS is statfs(2) of a path.
func (h *Host) StatFS(ctx context.Context, p string) (hostexec.FSStats, error) {
	if err := hostexec.ValidatePath(p); err != nil {
		return hostexec.FSStats{}, err
	}
	if err := ctx.Err(); err != nil {
		return hostexec.FSStats{}, err
	}
	var s unix.Statfs_t
	if err := unix.Statfs(p, &s); err != nil {
		return hostexec.FSStats{}, pathError("statfs", p, err)
	}
	bs := int64(s.Bsize)
	return hostexec.FSStats{
		TotalBytes:     int64(s.Blocks) * bs,
		AvailableBytes: int64(s.Bavail) * bs,
		UsedBytes:      int64(s.Blocks-s.Bfree) * bs,
		TotalInodes:    int64(s.Files),
		FreeInodes:     int64(s.Ffree),
		UsedInodes:     int64(s.Files - s.Ffree),
	}, nil
}
