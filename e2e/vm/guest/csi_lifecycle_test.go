//go:build vmguest && vmcsi

package guest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
)

const (
	csiMiB = int64(1) << 20
	csiGiB = int64(1) << 30
)

// TestCSILifecycle drives the production binary over CSI gRPC through what a
// CO does with a volume's life, on real LVM, filesystems, mounts and cgroups.
// It runs next to TestCSISanity, after the serial tests (the latency
// measurement among them): the two use disks of their own, and the VM's two
// vCPUs then both work. The throttle checks have a wide margin for that (the
// unthrottled control runs some 40 times faster than the limit allows).
func TestCSILifecycle(t *testing.T) {
	t.Parallel()
	d := startCSIDriver(t)

	for _, fs := range []string{"ext4", "xfs"} {
		t.Run("filesystem_"+fs, func(t *testing.T) { lifecycleFS(t, d, fs) })
	}
	t.Run("block_odirect", func(t *testing.T) { lifecycleBlock(t, d) })
	t.Run("device", func(t *testing.T) { lifecycleDevice(t, d) })
	t.Run("ephemeral", func(t *testing.T) { lifecycleEphemeral(t, d) })
	t.Run("throttle_bps", func(t *testing.T) {
		// 16 MiB of 1 MiB direct writes at 4 MiB/s: 4 s nominal.
		lifecycleThrottle(t, d, "bps", "4Mi", 4*csiMiB, []string{"bs=1M", "count=16"}, 16*csiMiB)
	})
	t.Run("throttle_iops", func(t *testing.T) {
		// 200 direct 4 KiB writes at 50 IOPS: 4 s nominal.
		lifecycleThrottle(t, d, "iops", "50", 50, []string{"bs=4k", "count=200"}, 200)
	})
	requireNoLVs(t, csiVG)
	requireNoIOMax(t)
}

// lifecycleFS: create, stage, publish, write, expand online, snapshot,
// restore read-only and writable, clone, delete.
func lifecycleFS(t *testing.T, d *csiDriver, fs string) {
	v := d.create(t, "life-"+fs, 512*csiMiB, mountCap(fs), map[string]string{"volumeType": "LVM", "csi.storage.k8s.io/fstype": fs}, nil)
	d.stage(t, v)
	d.publish(t, v, false, nil)
	m, ok, err := MountOf(v.target)
	require.NoError(t, err)
	require.True(t, ok, "the target is a mount")
	require.Equal(t, fs, m.FSType)

	data := filepath.Join(v.target, "data")
	require.NoError(t, os.WriteFile(data, []byte("version-1"), 0o644))
	Run(t, "sync")

	// Online expansion: the LV grows in ControllerExpandVolume, the mounted
	// filesystem in NodeExpandVolume.
	before := fsSize(t, v.target)
	er, err := d.ctl.ControllerExpandVolume(rpcCtx(t), &csi.ControllerExpandVolumeRequest{
		VolumeId: v.id, CapacityRange: &csi.CapacityRange{RequiredBytes: csiGiB}, VolumeCapability: v.cap})
	require.NoError(t, err)
	require.GreaterOrEqual(t, er.CapacityBytes, csiGiB)
	_, err = d.node.NodeExpandVolume(rpcCtx(t), &csi.NodeExpandVolumeRequest{
		VolumeId: v.id, VolumePath: v.target, StagingTargetPath: v.staging,
		CapacityRange: &csi.CapacityRange{RequiredBytes: csiGiB}, VolumeCapability: v.cap})
	require.NoError(t, err)
	after := fsSize(t, v.target)
	t.Logf("%s: statfs size %d -> %d bytes", fs, before, after)
	require.Greater(t, after, before*3/2, "the filesystem grew online")
	require.Greater(t, after, csiGiB*85/100)
	got, err := os.ReadFile(data)
	require.NoError(t, err)
	require.Equal(t, "version-1", string(got))

	// The snapshot keeps the content of its moment.
	sr, err := d.ctl.CreateSnapshot(rpcCtx(t), &csi.CreateSnapshotRequest{SourceVolumeId: v.id, Name: "snap-" + fs})
	require.NoError(t, err)
	snapID := sr.Snapshot.SnapshotId
	t.Cleanup(func() {
		_, err := d.ctl.DeleteSnapshot(rpcCtx(t), &csi.DeleteSnapshotRequest{SnapshotId: snapID})
		require.NoError(t, err)
	})
	require.NoError(t, os.WriteFile(data, []byte("version-2"), 0o644))
	Run(t, "sync")
	fromSnap := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}

	// Read-only restore: the snapshot itself, published read-only.
	roCap := mountCap(fs)
	roCap.AccessMode.Mode = csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	ro := d.create(t, "ro-"+fs, csiGiB, roCap, map[string]string{"volumeType": "LVM", "csi.storage.k8s.io/fstype": fs, "csi.aliyun.com/readonly": "true"}, fromSnap)
	d.stage(t, ro)
	d.publish(t, ro, true, nil)
	got, err = os.ReadFile(filepath.Join(ro.target, "data"))
	require.NoError(t, err)
	require.Equal(t, "version-1", string(got), "the read-only restore shows the snapshot's content")
	require.Error(t, os.WriteFile(filepath.Join(ro.target, "x"), []byte("x"), 0o644), "a read-only restore refuses writes")
	d.teardown(t, ro)

	// Writable restore: a copy of the snapshot.
	rw := d.create(t, "rw-"+fs, csiGiB, mountCap(fs), map[string]string{"volumeType": "LVM", "csi.storage.k8s.io/fstype": fs}, fromSnap)
	d.stage(t, rw)
	d.publish(t, rw, false, nil)
	got, err = os.ReadFile(filepath.Join(rw.target, "data"))
	require.NoError(t, err)
	require.Equal(t, "version-1", string(got), "the writable restore starts with the snapshot's content")
	require.NoError(t, os.WriteFile(filepath.Join(rw.target, "data"), []byte("restored"), 0o644))
	d.teardown(t, rw)

	// Clone: a copy of the volume as it is now.
	cl := d.create(t, "clone-"+fs, csiGiB, mountCap(fs), map[string]string{"volumeType": "LVM", "csi.storage.k8s.io/fstype": fs},
		&csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.id}}})
	d.stage(t, cl)
	d.publish(t, cl, false, nil)
	got, err = os.ReadFile(filepath.Join(cl.target, "data"))
	require.NoError(t, err)
	require.Equal(t, "version-2", string(got), "the clone has the source's current content")
	d.teardown(t, cl)

	got, err = os.ReadFile(data)
	require.NoError(t, err)
	require.Equal(t, "version-2", string(got), "restores and clones leave the origin alone")
	_, err = d.ctl.DeleteSnapshot(rpcCtx(t), &csi.DeleteSnapshotRequest{SnapshotId: snapID})
	require.NoError(t, err)
	d.teardown(t, v)
	requireNoMountsUnder(t, filepath.Dir(v.target))
	require.Empty(t, lvNames(t), "DeleteVolume and DeleteSnapshot leave no LV")
}

// lifecycleBlock: a raw block volume written and read back with O_DIRECT.
func lifecycleBlock(t *testing.T, d *csiDriver) {
	v := d.create(t, "life-block", 64*csiMiB, blockCap(), map[string]string{"volumeType": "LVM"}, nil)
	d.stage(t, v)
	d.publish(t, v, false, nil)
	st, err := os.Stat(v.target)
	require.NoError(t, err)
	require.Equal(t, os.ModeDevice, st.Mode()&(os.ModeDevice|os.ModeCharDevice), "the target is a block device")

	pattern := filepath.Join(d.dir, "pattern")
	require.NoError(t, os.WriteFile(pattern, bytes.Repeat([]byte("open-local block volume "), 4<<20/24+1)[:4<<20], 0o644))
	Run(t, "dd", "if="+pattern, "of="+v.target, "bs=1M", "count=4", "oflag=direct")
	back := filepath.Join(d.dir, "back")
	Run(t, "dd", "if="+v.target, "of="+back, "bs=1M", "count=4", "iflag=direct")
	want, err := os.ReadFile(pattern)
	require.NoError(t, err)
	got, err := os.ReadFile(back)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "O_DIRECT read returns what the O_DIRECT write wrote")
	d.teardown(t, v)
}

// lifecycleDevice: a Device volume takes the whole Disks.Device.
func lifecycleDevice(t *testing.T, d *csiDriver) {
	disk := RequireDisks(t).Device
	ClaimDisk(t, disk)
	v := d.create(t, "life-device", disk.SizeBytes/2, mountCap("ext4"), map[string]string{"volumeType": "Device"}, nil)
	d.stage(t, v)
	d.publish(t, v, false, nil)
	m, ok, err := MountOf(v.target)
	require.NoError(t, err)
	require.True(t, ok)
	src, err := filepath.EvalSymlinks(m.Source)
	require.NoError(t, err)
	require.Equal(t, disk.Path, src, "the Device volume is the whole disk")
	require.Greater(t, fsSize(t, v.target), disk.SizeBytes*85/100)
	require.NoError(t, os.WriteFile(filepath.Join(v.target, "f"), []byte("device"), 0o644))
	d.teardown(t, v)
}

// lifecycleEphemeral: an inline volume lives from publish to unpublish.
func lifecycleEphemeral(t *testing.T, d *csiDriver) {
	sum := sha256.Sum256([]byte("ol-vm-ephemeral"))
	v := &csiVolume{
		id:     "csi-" + hex.EncodeToString(sum[:]),
		cap:    mountCap("ext4"),
		target: filepath.Join(d.dir, "pods", "ephemeral", "mount"),
		ctx: map[string]string{
			"csi.storage.k8s.io/ephemeral": "true", "size": "128Mi",
			"csi.storage.k8s.io/pod.uid": "0b7e6f3c-1a52-4d2e-9a41-3c5e2f9d8b11", "csi.storage.k8s.io/pod.name": "inline",
			"csi.storage.k8s.io/pod.namespace": "default",
		},
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(v.target), 0o750))
	d.publish(t, v, false, nil)
	require.NotEmpty(t, lvNames(t), "the inline volume has an LV")
	require.NoError(t, os.WriteFile(filepath.Join(v.target, "f"), []byte("inline"), 0o644))
	d.unpublish(t, v)
	require.Empty(t, lvNames(t), "unpublish removes the inline volume's LV")
	_, ok, err := MountOf(v.target)
	require.NoError(t, err)
	require.False(t, ok)
}

// lifecycleThrottle: a volume with an io.max limit, published for a pod whose
// kubelet-style cgroup exists; direct writes from that cgroup are held to the
// limit, the same writes from another cgroup are not, and DeleteVolume's
// path (unpublish) takes the io.max entry away.
func lifecycleThrottle(t *testing.T, d *csiDriver, key, value string, limit int64, ddArgs []string, units int64) {
	podUID := map[string]string{"bps": "6f3c1a52-0b7e-4d2e-9a41-3c5e2f9d8b21", "iops": "6f3c1a52-0b7e-4d2e-9a41-3c5e2f9d8b22"}[key]
	pod := NewCgroup(t, "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+strings.ReplaceAll(podUID, "-", "_")+".slice")
	control := NewCgroup(t, "ol-vm-csi-unthrottled")

	v := d.create(t, "throttle-"+key, 128*csiMiB, mountCap("ext4"), map[string]string{"volumeType": "LVM", key: value}, nil)
	d.stage(t, v)
	d.publish(t, v, false, map[string]string{"csi.storage.k8s.io/pod.uid": podUID})
	raw, err := os.ReadFile(filepath.Join(pod, "io.max"))
	require.NoError(t, err)
	t.Logf("io.max of the pod: %q", strings.TrimSpace(string(raw)))
	want := map[string]string{"bps": "wbps=" + strconv.FormatInt(limit, 10), "iops": "wiops=" + strconv.FormatInt(limit, 10)}[key]
	require.Contains(t, string(raw), want)

	dd := append([]string{"if=/dev/zero", "of=" + filepath.Join(v.target, "f"), "oflag=direct", "conv=notrunc"}, ddArgs...)
	free := ddCopyTime(t, control, dd)
	throttled := ddCopyTime(t, pod, dd)
	nominal := time.Duration(float64(units) / float64(limit) * float64(time.Second))
	t.Logf("%s=%s: %.3fs unthrottled, %.3fs throttled (nominal %.1fs)", key, value, free.Seconds(), throttled.Seconds(), nominal.Seconds())
	require.GreaterOrEqual(t, throttled, nominal*8/10, "the %s limit holds the pod's writer back", key)
	require.LessOrEqual(t, free*5, throttled, "the unthrottled control is at least 5x faster")

	d.teardown(t, v)
	raw, err = os.ReadFile(filepath.Join(pod, "io.max"))
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(string(raw)), "no io.max entry left after the volume is gone")
}

// requireNoIOMax fails when a cgroup under kubepods.slice still has an io.max
// entry.
func requireNoIOMax(t *testing.T) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(CgroupRoot, "kubepods.slice", "*", "*", "io.max"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(raw)) != "" {
			t.Errorf("io.max entry left in %s: %s", f, raw)
		}
	}
}
