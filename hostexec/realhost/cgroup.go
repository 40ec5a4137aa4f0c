package realhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/hostexec"
)

// podCgroupCandidates are where kubelet puts a pod's cgroup, relative to the
// cgroup root: the systemd driver (slices, UID dashes spelled as
// underscores) and the cgroupfs driver, for each QoS class.
func podCgroupCandidates(uid string) []string {
	under := strings.ReplaceAll(uid, "-", "_")
	dash := strings.ReplaceAll(uid, "_", "-")
	return []string{
		filepath.Join("kubepods.slice", "kubepods-pod"+under+".slice"),
		filepath.Join("kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+under+".slice"),
		filepath.Join("kubepods.slice", "kubepods-besteffort.slice", "kubepods-besteffort-pod"+under+".slice"),
		filepath.Join("kubepods", "pod"+dash),
		filepath.Join("kubepods", "burstable", "pod"+dash),
		filepath.Join("kubepods", "besteffort", "pod"+dash),
	}
}

// maxCgroupSearchDepth bounds the fallback walk for kubelets run with a
// nested --cgroup-root (kind, k3s in a container, ...).
const maxCgroupSearchDepth = 5

// PodCgroupDir finds the cgroup directory of a pod by UID.
func (h *Host) PodCgroupDir(ctx context.Context, podUID string) (string, error) {
	if err := hostexec.ValidatePodUID(podUID); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return findPodCgroup(h.cfg.CgroupRoot, podUID)
}

func findPodCgroup(root, uid string) (string, error) {
	for _, rel := range podCgroupCandidates(uid) {
		p := filepath.Join(root, rel)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p, nil
		}
	}
	under := strings.ReplaceAll(uid, "-", "_")
	dash := strings.ReplaceAll(uid, "_", "-")
	found := ""
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Unreadable corners of cgroupfs are not where pods live.
			if d != nil && d.IsDir() && p != root {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		depth := 0
		if rel != "." {
			depth = strings.Count(rel, string(filepath.Separator)) + 1
		}
		name := d.Name()
		if depth > 0 && (name == "pod"+dash || strings.HasSuffix(name, "-pod"+under+".slice")) {
			found = p
			return fs.SkipAll
		}
		// Descend only into kubelet's hierarchy (its names mention kube, or
		// are QoS classes) and not too deep.
		if depth >= maxCgroupSearchDepth || depth > 0 && !strings.Contains(name, "kube") &&
			name != "burstable" && name != "besteffort" {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("search cgroups of pod %s: %w", uid, err)
	}
	if found == "" {
		return "", fmt.Errorf("cgroup of pod %s under %s: %w", uid, root, hostexec.ErrNotFound)
	}
	return found, nil
}

func (h *Host) checkCgroupDir(dir string) error {
	if err := hostexec.ValidatePath(dir); err != nil {
		return err
	}
	if dir != h.cfg.CgroupRoot && !strings.HasPrefix(dir, h.cfg.CgroupRoot+"/") {
		return hostexec.Invalid("cgroup directory", dir, "must be under "+h.cfg.CgroupRoot)
	}
	if fi, err := os.Stat(dir); err != nil {
		return pathError("cgroup directory", dir, err)
	} else if !fi.IsDir() {
		return hostexec.Invalid("cgroup directory", dir, "is not a directory")
	}
	return nil
}

func limitValue(v int64) string {
	if v == 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// ioMaxLine is what io.max takes for one device; "max" lifts a limit, so
// zero limits remove the entry.
func ioMaxLine(major, minor uint32, l hostexec.IOLimits) string {
	return fmt.Sprintf("%d:%d rbps=%s wbps=%s riops=%s wiops=%s", major, minor,
		limitValue(l.ReadBPS), limitValue(l.WriteBPS), limitValue(l.ReadIOPS), limitValue(l.WriteIOPS))
}

// SetIOLimits writes one device's line to <cgroupDir>/io.max. The kernel
// updates that device's entry only; the others stay.
func (h *Host) SetIOLimits(ctx context.Context, cgroupDir string, major, minor uint32, limits hostexec.IOLimits) error {
	if err := h.checkCgroupDir(cgroupDir); err != nil {
		return err
	}
	if limits.ReadBPS < 0 || limits.WriteBPS < 0 || limits.ReadIOPS < 0 || limits.WriteIOPS < 0 {
		return hostexec.Invalid("IO limits", fmt.Sprintf("%+v", limits), "must not be negative")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	file := filepath.Join(cgroupDir, "io.max")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup %s has no io.max (the io controller is not enabled): %w", cgroupDir, hostexec.ErrUnsupported)
		}
		return pathError("open", file, err)
	}
	line := ioMaxLine(major, minor, limits)
	_, werr := f.WriteString(line + "\n")
	cerr := f.Close()
	if werr != nil {
		switch {
		case errors.Is(werr, unix.ENODEV):
			return fmt.Errorf("write %q to %s: device %d:%d: %w (%w)", line, file, major, minor, hostexec.ErrNotFound, werr)
		case errors.Is(werr, unix.EINVAL):
			return fmt.Errorf("write %q to %s: %w (%w)", line, file, hostexec.ErrInvalidArgument, werr)
		}
		return fmt.Errorf("write %q to %s: %w", line, file, werr)
	}
	if cerr != nil {
		return fmt.Errorf("write %q to %s: %w", line, file, cerr)
	}
	klog.FromContext(ctx).V(2).Info("Set IO limits", "cgroup", cgroupDir, "line", line)
	return nil
}

// IOLimits reads io.max back, keyed by "major:minor".
func (h *Host) IOLimits(ctx context.Context, cgroupDir string) (map[string]hostexec.IOLimits, error) {
	if err := h.checkCgroupDir(cgroupDir); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(cgroupDir, "io.max"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cgroup %s has no io.max (the io controller is not enabled): %w", cgroupDir, hostexec.ErrUnsupported)
		}
		return nil, pathError("read", filepath.Join(cgroupDir, "io.max"), err)
	}
	return parseIOMax(string(b))
}

// parseIOMax reads io.max content: one "MAJ:MIN rbps=N wbps=max ..." line per
// limited device. Entries whose limits are all "max" are dropped.
func parseIOMax(s string) (map[string]hostexec.IOLimits, error) {
	out := map[string]hostexec.IOLimits{}
	for _, line := range strings.Split(s, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if _, _, err := parseDevNumber(fields[0]); err != nil {
			return nil, fmt.Errorf("io.max line %q: %w", line, err)
		}
		var l hostexec.IOLimits
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("io.max line %q: %q is not key=value", line, kv)
			}
			var n int64
			if v != "max" {
				var err error
				if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
					return nil, fmt.Errorf("io.max line %q: %s=%q is not a limit", line, k, v)
				}
			}
			switch k {
			case "rbps":
				l.ReadBPS = n
			case "wbps":
				l.WriteBPS = n
			case "riops":
				l.ReadIOPS = n
			case "wiops":
				l.WriteIOPS = n
			}
		}
		if !l.IsZero() {
			out[fields[0]] = l
		}
	}
	return out, nil
}
