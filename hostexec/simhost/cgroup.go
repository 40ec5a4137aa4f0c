package simhost

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-local/open-local/hostexec"
)

// CgroupRoot is where the simulated cgroup v2 hierarchy lives.
const CgroupRoot = "/sys/fs/cgroup"

// QoS classes of a pod, as kubelet names its cgroup slices.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// AddPod gives a burstable pod a cgroup (systemd driver layout) and returns
// its directory.
func (h *Host) AddPod(uid string) (string, error) {
	return h.AddPodQoS(uid, QoSBurstable)
}

// AddPodQoS gives a pod of a QoS class a cgroup and returns its directory.
func (h *Host) AddPodQoS(uid, qos string) (string, error) {
	if err := hostexec.ValidatePodUID(uid); err != nil {
		return "", err
	}
	under := strings.ReplaceAll(uid, "-", "_")
	var dir string
	switch qos {
	case QoSGuaranteed:
		dir = CgroupRoot + "/kubepods.slice/kubepods-pod" + under + ".slice"
	case QoSBurstable, QoSBestEffort:
		dir = CgroupRoot + "/kubepods.slice/kubepods-" + qos + ".slice/kubepods-" + qos + "-pod" + under + ".slice"
	default:
		return "", hostexec.Invalid("QoS class", qos, "accepted: guaranteed, burstable, besteffort")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pods[strings.ReplaceAll(uid, "_", "-")] = dir
	if _, ok := h.cgroups[dir]; !ok {
		h.cgroups[dir] = map[string]hostexec.IOLimits{}
	}
	return dir, nil
}

// RemovePod deletes a pod's cgroup (the pod ended).
func (h *Host) RemovePod(uid string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := strings.ReplaceAll(uid, "_", "-")
	if dir, ok := h.pods[key]; ok {
		delete(h.cgroups, dir)
		delete(h.pods, key)
	}
}

// PodCgroupDir finds a pod's cgroup directory.
func (h *Host) PodCgroupDir(ctx context.Context, podUID string) (dir string, err error) {
	if err := hostexec.ValidatePodUID(podUID); err != nil {
		return "", err
	}
	finish, err := h.enter(ctx, "PodCgroupDir", podUID)
	if err != nil {
		return "", err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	dir, ok := h.pods[strings.ReplaceAll(podUID, "_", "-")]
	if !ok {
		return "", fmt.Errorf("cgroup of pod %s under %s: %w", podUID, CgroupRoot, hostexec.ErrNotFound)
	}
	return dir, nil
}

func (h *Host) cgroup(dir string) (map[string]hostexec.IOLimits, error) {
	if err := hostexec.ValidatePath(dir); err != nil {
		return nil, err
	}
	if dir != CgroupRoot && !strings.HasPrefix(dir, CgroupRoot+"/") {
		return nil, hostexec.Invalid("cgroup directory", dir, "must be under "+CgroupRoot)
	}
	limits, ok := h.cgroups[dir]
	if !ok {
		return nil, fmt.Errorf("cgroup directory %s: %w", dir, hostexec.ErrNotFound)
	}
	if h.noCgroupIO {
		return nil, fmt.Errorf("cgroup %s has no io.max (the io controller is not enabled): %w", dir, hostexec.ErrUnsupported)
	}
	return limits, nil
}

// SetIOLimits sets (or, with zero limits, removes) one device's io.max entry.
func (h *Host) SetIOLimits(ctx context.Context, cgroupDir string, major, minor uint32, limits hostexec.IOLimits) (err error) {
	if limits.ReadBPS < 0 || limits.WriteBPS < 0 || limits.ReadIOPS < 0 || limits.WriteIOPS < 0 {
		return hostexec.Invalid("IO limits", fmt.Sprintf("%+v", limits), "must not be negative")
	}
	key := fmt.Sprintf("%d:%d", major, minor)
	finish, err := h.enter(ctx, "SetIOLimits", cgroupDir, key)
	if err != nil {
		return err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	cg, err := h.cgroup(cgroupDir)
	if err != nil {
		return err
	}
	if !h.knownDevNum(major, minor) {
		return fmt.Errorf("write io.max of %s: device %s: %w", cgroupDir, key, hostexec.ErrNotFound)
	}
	if limits.IsZero() {
		delete(cg, key)
		return nil
	}
	cg[key] = limits
	return nil
}

// knownDevNum: the kernel refuses io.max for a device number it has no disk for.
func (h *Host) knownDevNum(major, minor uint32) bool {
	for _, d := range h.devs {
		if d.major == major && d.minor == minor {
			return true
		}
	}
	if major != dmMajor {
		return false
	}
	for _, vg := range h.vgs {
		for _, lv := range vg.lvs {
			if lv.active && lv.minor == minor {
				return true
			}
		}
	}
	return false
}

// IOLimits reads a cgroup's io.max back.
func (h *Host) IOLimits(ctx context.Context, cgroupDir string) (out map[string]hostexec.IOLimits, err error) {
	finish, err := h.enter(ctx, "IOLimits", cgroupDir)
	if err != nil {
		return nil, err
	}
	defer func() { err = finish(err) }()
	h.mu.Lock()
	defer h.mu.Unlock()
	cg, err := h.cgroup(cgroupDir)
	if err != nil {
		return nil, err
	}
	out = make(map[string]hostexec.IOLimits, len(cg))
	for k, v := range cg {
		out[k] = v
	}
	return out, nil
}
