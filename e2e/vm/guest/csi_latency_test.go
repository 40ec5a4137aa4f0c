//go:build vmguest && vmcsi

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
)

// TestCSILatency compares the provisioning path of the driver, CreateVolume +
// NodeStageVolume + NodePublishVolume of a 1 GiB ext4 volume, with what an
// administrator would run by hand (lvcreate; mkfs.ext4; mount), on the same
// VG, interleaved so that drifts of the emulated machine hit both alike. It
// prints one parseable line:
//
//	LATENCY runs=N csi=<median s> shell=<median s> ratio=<csi/shell>
//
// The goal is ratio <= 1.15. Under software emulation every tool start costs
// hundreds of milliseconds and the noise is large, so the ratio is reported,
// not enforced; the test fails when a call fails.
func TestCSILatency(t *testing.T) {
	const runs = 10
	d := startCSIDriver(t)
	var csiTimes, shellTimes []time.Duration
	for i := range runs {
		csiTimes = append(csiTimes, csiProvision(t, d, i))
		shellTimes = append(shellTimes, shellProvision(t, d, i))
	}
	csiMed, shellMed := median(csiTimes), median(shellTimes)
	ratio := csiMed.Seconds() / shellMed.Seconds()
	t.Logf("csi runs: %v", csiTimes)
	t.Logf("shell runs: %v", shellTimes)
	line := fmt.Sprintf("LATENCY runs=%d csi=%.3f shell=%.3f ratio=%.3f", runs, csiMed.Seconds(), shellMed.Seconds(), ratio)
	fmt.Println(line)
	t.Log(line)
	if ratio > 1.15 {
		t.Logf("ratio %.3f is above the 1.15 goal", ratio)
	}
}

// csiProvision times the three calls and then tears the volume down
// (untimed).
func csiProvision(t *testing.T, d *csiDriver, i int) time.Duration {
	t.Helper()
	name := fmt.Sprintf("lat-csi-%d", i)
	staging := filepath.Join(d.dir, "staging", name)
	target := filepath.Join(d.dir, "pods", name, "mount")
	require.NoError(t, os.MkdirAll(staging, 0o750))
	require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o750))
	capab := mountCap("ext4")

	start := time.Now()
	cr, err := d.ctl.CreateVolume(rpcCtx(t), &csi.CreateVolumeRequest{
		Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: csiGiB},
		VolumeCapabilities: []*csi.VolumeCapability{capab}, Parameters: map[string]string{"volumeType": "LVM"}})
	require.NoError(t, err)
	v := &csiVolume{id: cr.Volume.VolumeId, ctx: cr.Volume.VolumeContext, cap: capab, staging: staging, target: target}
	d.stage(t, v)
	d.publish(t, v, false, nil)
	elapsed := time.Since(start)

	d.teardown(t, v)
	return elapsed
}

// shellProvision times lvcreate, mkfs.ext4 and mount run as separate tools,
// then unmounts and removes the LV (untimed).
func shellProvision(t *testing.T, d *csiDriver, i int) time.Duration {
	t.Helper()
	name := fmt.Sprintf("lat-shell-%d", i)
	dir := filepath.Join(d.dir, "shell", name)
	require.NoError(t, os.MkdirAll(dir, 0o750))
	dev := "/dev/" + csiVG + "/" + name

	start := time.Now()
	Run(t, "lvm", "lvcreate", "-y", "-n", name, "-L", "1g", csiVG)
	Run(t, "mkfs.ext4", "-q", dev)
	Run(t, "mount", "-t", "ext4", dev, dir)
	elapsed := time.Since(start)

	Run(t, "umount", dir)
	Run(t, "lvm", "lvremove", "-y", csiVG+"/"+name)
	return elapsed
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
