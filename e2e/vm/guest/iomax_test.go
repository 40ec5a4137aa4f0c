//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/hostexec"
)

// testIOMaxThrottle checks cgroup v2 io.max on an LV's device-mapper device
// (253:N) the way Open-Local limits a pod's volume: the Host finds the pod's
// cgroup (kubelet's systemd layout) and writes the limit; a direct write of
// writeMiB at wbps=2 MiB/s then takes about writeMiB/2 seconds, against a
// control group without a limit. Direct I/O, because buffered writes are
// charged at writeback, not to the writer.
func (e *lvmEnv) testIOMaxThrottle(t *testing.T) {
	const (
		writeMiB = 8
		wbps     = 2 << 20
		podUID   = "6f3c1a52-0b7e-4d2e-9a41-3c5e2f9d8b10"
	)
	dev := e.createLV(t, hostexec.LVSpec{Name: "throttled", SizeBytes: 64 * mib})
	major, minor, err := e.h.DeviceNumber(e.ctx, dev)
	require.NoError(t, err)
	devno := fmt.Sprintf("%d:%d", major, minor)

	pod := NewCgroup(t, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+strings.ReplaceAll(podUID, "-", "_")+".slice")
	control := NewCgroup(t, "ol-vm-unthrottled")
	found, err := e.h.PodCgroupDir(e.ctx, podUID)
	require.NoError(t, err)
	require.Equal(t, pod, found, "the pod's cgroup is found by its UID")
	_, err = e.h.PodCgroupDir(e.ctx, "00000000-0000-0000-0000-000000000000")
	require.ErrorIs(t, err, hostexec.ErrNotFound)

	require.NoError(t, e.h.SetIOLimits(e.ctx, pod, major, minor, hostexec.IOLimits{WriteBPS: wbps}))
	limits, err := e.h.IOLimits(e.ctx, pod)
	require.NoError(t, err)
	require.Equal(t, map[string]hostexec.IOLimits{devno: {WriteBPS: wbps}}, limits)
	raw, err := os.ReadFile(filepath.Join(pod, "io.max"))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("%s rbps=max wbps=%d riops=max wiops=max", devno, wbps), strings.TrimSpace(string(raw)), "what the kernel holds")

	dd := []string{"if=/dev/zero", "of=" + dev, "bs=1M", fmt.Sprintf("count=%d", writeMiB), "oflag=direct"}
	free := ddCopyTime(t, control, dd)
	throttled := ddCopyTime(t, pod, dd)
	want := time.Duration(float64(writeMiB<<20) / wbps * float64(time.Second))
	t.Logf("%d MiB direct write: %.3fs unthrottled, %.3fs at wbps=%d (nominal %.1fs)", writeMiB, free.Seconds(), throttled.Seconds(), wbps, want.Seconds())
	require.GreaterOrEqual(t, throttled, want*8/10, "io.max wbps holds the writer back")
	require.LessOrEqual(t, free*5, throttled, "the unthrottled control is at least 5x faster")

	stat := IOStat(t, pod)[devno]
	require.GreaterOrEqual(t, stat["wbytes"], int64(writeMiB<<20), "io.stat charges the writes to the pod: %v", stat)

	// Zero limits remove the device's entry, and the slowdown with it.
	require.NoError(t, e.h.SetIOLimits(e.ctx, pod, major, minor, hostexec.IOLimits{}))
	limits, err = e.h.IOLimits(e.ctx, pod)
	require.NoError(t, err)
	require.Empty(t, limits)
	lifted := ddCopyTime(t, pod, dd)
	require.Less(t, lifted, want/2, "without the limit the write is fast again")

	require.ErrorIs(t, e.h.SetIOLimits(e.ctx, "/tmp", major, minor, hostexec.IOLimits{WriteBPS: wbps}), hostexec.ErrInvalidArgument,
		"only directories under the cgroup root")
}

// ddCopyTime runs dd in a cgroup and returns the copy time dd reports itself
// ("... copied, 0.0521 s, ..."), which leaves out starting the process: under
// emulation that costs more than an unthrottled write of a few MiB.
func ddCopyTime(t *testing.T, cgroupDir string, args []string) time.Duration {
	t.Helper()
	_, out := RunInCgroup(t, cgroupDir, "dd", args...)
	m := ddCopied.FindStringSubmatch(out)
	require.NotNil(t, m, "dd's summary line in %q", out)
	secs, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return time.Duration(secs * float64(time.Second))
}

var ddCopied = regexp.MustCompile(`copied, ([0-9.]+(?:e[-+]?[0-9]+)?) s`)
