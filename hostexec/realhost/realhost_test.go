package realhost

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// Messages lvm2 2.03, util-linux and mount print (LC_ALL=C), as captured on
// a test host.
func TestClassify(t *testing.T) {
	cases := map[string]error{
		`Volume group "nope" not found; Cannot process volume group nope`:                                        hostexec.ErrNotFound,
		`Failed to find logical volume "vg1/nope"`:                                                               hostexec.ErrNotFound,
		`Logical volume nope not found in volume group vg1.`:                                                     hostexec.ErrNotFound,
		`No device found for /dev/nope.`:                                                                         hostexec.ErrNotFound,
		`wipefs: error: /dev/nope: probing initialization failed: No such file or directory`:                     hostexec.ErrNotFound,
		`Logical Volume "lv1" already exists in volume group "vg1"`:                                              hostexec.ErrAlreadyExists,
		`A volume group called vg1 already exists.`:                                                              hostexec.ErrAlreadyExists,
		`Volume group "vg1" has insufficient free space (87 extents): 150 required.`:                             hostexec.ErrInsufficientSpace,
		`Insufficient suitable allocatable extents for logical volume st: 3 more required`:                       hostexec.ErrInsufficientSpace,
		`Number of stripes (4) must not exceed number of physical volumes (3)`:                                   hostexec.ErrInsufficientSpace,
		`dd: error writing '/dev/loop4': No space left on device`:                                                hostexec.ErrInsufficientSpace,
		`Can't initialize physical volume "/dev/loop0" of volume group "vg1" without -ff`:                        hostexec.ErrInUse,
		`WARNING: ext4 signature detected on /dev/loop1 at offset 1080. Wipe it? [y/n]: [n]; Aborted wiping`:     hostexec.ErrInUse,
		`Can't open /dev/loop1 exclusively.  Mounted filesystem?; Cannot use /dev/loop1: device has a signature`: hostexec.ErrInUse,
		`Logical volume vg/lv contains a filesystem in use.`:                                                     hostexec.ErrInUse,
		`umount: /mnt: target is busy.`:                                                                          hostexec.ErrInUse,
		`Physical volume '/dev/loop1' is already in volume group 'vg1'`:                                          hostexec.ErrInUse,
		`Invalid stripe size 3.00 KiB.`:                                                                          nil,
		``:                                                                                                       nil,
	}
	for msg, want := range cases {
		assert.Equal(t, want, classify(msg), msg)
	}
}

func TestCleanStderr(t *testing.T) {
	in := "  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n  Volume group \"x\" not found\n\n  Cannot process volume group x\n"
	assert.Equal(t, `Volume group "x" not found; Cannot process volume group x`, cleanStderr(in))
}

func TestRunnerKeepsStderrAndTypesErrors(t *testing.T) {
	r := newRunner(nil, []string{"OPEN_LOCAL_TEST=1"})
	assert.Contains(t, r.env, "LC_ALL=C")
	assert.Contains(t, r.env, "OPEN_LOCAL_TEST=1")
	_, err := r.run(context.Background(), "ls", "/open-local-definitely-missing")
	require.Error(t, err)
	var ce *CommandError
	require.True(t, errors.As(err, &ce))
	assert.Equal(t, 2, ce.ExitCode)
	assert.Contains(t, err.Error(), "No such file or directory", "stderr is in the message")
	assert.True(t, errors.Is(err, hostexec.ErrNotFound))

	out, err := r.run(context.Background(), "env")
	require.NoError(t, err)
	assert.Contains(t, string(out), "OPEN_LOCAL_TEST=1")
	assert.Contains(t, string(out), "LC_ALL=C")

	c, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.run(c, "true")
	assert.True(t, errors.Is(err, context.Canceled))
}

func TestRunnerPrefix(t *testing.T) {
	r := newRunner([]string{"env", "OPEN_LOCAL_PREFIXED=yes"}, nil)
	assert.Equal(t, []string{"env", "OPEN_LOCAL_PREFIXED=yes", "lvm", "vgs"}, r.argv("lvm", []string{"vgs"}))
	out, err := r.run(context.Background(), "env")
	require.NoError(t, err)
	assert.Contains(t, string(out), "OPEN_LOCAL_PREFIXED=yes", "the command ran through the prefix")
}

func TestLVMGetsExtraArgsOnly(t *testing.T) {
	dir := t.TempDir()
	// A stand-in lvm that prints its argv proves where the global options go.
	script := filepath.Join(dir, "fake-lvm")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755))
	h, err := New(Config{LVMBinary: script, ExtraLVMArgs: []string{"--driverloaded", "n"}})
	require.NoError(t, err)
	out, err := h.lvm(context.Background(), "lvs", "-o", "lv_name")
	require.NoError(t, err)
	assert.Equal(t, "lvs --driverloaded n -o lv_name\n", string(out))
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{SysfsRoot: "relative"})
	assert.ErrorIs(t, err, hostexec.ErrInvalidArgument)
	_, err = New(Config{CgroupRoot: "/sys/fs/cgroup/"})
	assert.ErrorIs(t, err, hostexec.ErrInvalidArgument)
	_, err = New(Config{Env: []string{"NOEQUALS"}})
	assert.ErrorIs(t, err, hostexec.ErrInvalidArgument)
	h, err := New(Config{})
	require.NoError(t, err)
	assert.Equal(t, "/dev/vg/lv", h.LVDevicePath("vg", "lv"))
	assert.Equal(t, "/sys/fs/cgroup", h.cfg.CgroupRoot)
}

func TestSizeArgAndMkfsArgs(t *testing.T) {
	assert.Equal(t, "512b", sizeArg(0))
	assert.Equal(t, "512b", sizeArg(1))
	assert.Equal(t, "1024b", sizeArg(513))
	assert.Equal(t, "4194304b", sizeArg(4*core.MiB))
	assert.Equal(t, []string{"-F", "-m0", "-E", "nodiscard", "/dev/x"}, mkfsArgs("ext4", []string{"-E", "nodiscard"}, "/dev/x"))
	assert.Equal(t, []string{"-f", "/dev/x"}, mkfsArgs("xfs", nil, "/dev/x"))
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content+"\n"), 0o644))
	}
}

func TestListSysfs(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"block/sda/size": "209715200", "block/sda/ro": "0", "block/sda/dev": "8:0", "block/sda/queue/rotational": "1",
		"block/sda/sda1/size": "2048", "block/sda/sda1/ro": "0", "block/sda/sda1/dev": "8:1", "block/sda/sda1/partition": "1",
		"block/sda/sda10/size": "4096", "block/sda/sda10/ro": "1", "block/sda/sda10/dev": "8:10", "block/sda/sda10/partition": "10",
		"block/sda/sda2/size": "4096", "block/sda/sda2/ro": "0", "block/sda/sda2/dev": "8:2", "block/sda/sda2/partition": "2",
		"block/sda/holders/.keep": "", "block/sda/power/control": "auto",
		"block/nvme0n1/size": "1953525168", "block/nvme0n1/ro": "0", "block/nvme0n1/dev": "259:0", "block/nvme0n1/queue/rotational": "0",
		"block/nvme0n1/nvme0n1p1/size": "1000000", "block/nvme0n1/nvme0n1p1/ro": "0", "block/nvme0n1/nvme0n1p1/dev": "259:1", "block/nvme0n1/nvme0n1p1/partition": "1",
		"block/vdb/size": "104857600", "block/vdb/ro": "1", "block/vdb/dev": "252:16",
		"block/loop0/size": "131072", "block/loop0/ro": "0", "block/loop0/dev": "7:0", "block/loop0/queue/rotational": "1",
		"block/loop1/size": "0", "block/loop1/ro": "0", "block/loop1/dev": "7:1",
		"block/dm-0/size": "8192", "block/dm-0/ro": "0", "block/dm-0/dev": "253:0",
		"block/zram0/size": "8192", "block/zram0/ro": "0", "block/zram0/dev": "251:0",
		"block/sr0/size": "2097152", "block/sr0/ro": "1", "block/sr0/dev": "11:0",
		"block/ram0/size": "8192", "block/ram0/ro": "0", "block/ram0/dev": "1:0",
	})
	devs, err := listSysfs(root, "/dev", false)
	require.NoError(t, err)
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	assert.Equal(t, []string{"/dev/nvme0n1", "/dev/nvme0n1p1", "/dev/sda", "/dev/sda1", "/dev/sda2", "/dev/sda10", "/dev/vdb"}, names)
	nvme := devs[0]
	assert.Equal(t, core.BlockDevice{Name: "/dev/nvme0n1", SizeBytes: 1953525168 * 512, Media: core.MediaSSD,
		Partitions: []string{"/dev/nvme0n1p1"}, Major: 259, Minor: 0}, nvme)
	assert.Equal(t, core.BlockDevice{Name: "/dev/nvme0n1p1", SizeBytes: 1000000 * 512, Media: core.MediaSSD,
		Parent: "/dev/nvme0n1", Major: 259, Minor: 1}, devs[1])
	sda := devs[2]
	assert.Equal(t, core.MediaHDD, sda.Media)
	assert.Equal(t, []string{"/dev/sda1", "/dev/sda2", "/dev/sda10"}, sda.Partitions)
	assert.True(t, devs[5].ReadOnly, "sda10 is read-only")
	vdb := devs[6]
	assert.True(t, vdb.ReadOnly)
	assert.Equal(t, core.MediaHDD, vdb.Media, "no rotational file: assume a spinning disk")

	withLoop, err := listSysfs(root, "/dev", true)
	require.NoError(t, err)
	assert.Len(t, withLoop, len(devs)+1, "loop0 included; empty loop1 still skipped")

	writeTree(t, root, map[string]string{"block/vdc/size": "100", "block/vdc/dev": "junk"})
	_, err = listSysfs(root, "/dev", false)
	assert.ErrorContains(t, err, "vdc")
}

func TestParseWipefs(t *testing.T) {
	sigs, err := parseWipefs(nil)
	require.NoError(t, err)
	assert.Empty(t, sigs)
	out := `{
   "signatures": [
      {"device":"sdb", "offset":"0x200", "type":"gpt", "uuid":"c6e1", "label":null},
      {"device":"sdb", "offset":"0x7ffffe00", "type":"gpt", "uuid":"c6e1", "label":null},
      {"device":"sdb", "offset":"0x1fe", "type":"PMBR", "uuid":null, "label":null}
   ]
}`
	sigs, err = parseWipefs([]byte(out))
	require.NoError(t, err)
	assert.Equal(t, []string{"gpt", "PMBR"}, sigs)
	_, err = parseWipefs([]byte("garbage"))
	assert.Error(t, err)
}

func TestFindPodCgroup(t *testing.T) {
	uid := "0f4c2c1a-8d2e-4b8e-9b7a-1c2d3e4f5a6b"
	under := strings.ReplaceAll(uid, "-", "_")
	layouts := map[string]string{
		"systemd guaranteed": "kubepods.slice/kubepods-pod" + under + ".slice",
		"systemd burstable":  "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice",
		"systemd besteffort": "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice",
		"cgroupfs":           "kubepods/pod" + uid,
		"cgroupfs burstable": "kubepods/burstable/pod" + uid,
		"nested kind node":   "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + under + ".slice",
	}
	for name, rel := range layouts {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(root, rel), 0o755))
			require.NoError(t, os.MkdirAll(filepath.Join(root, "system.slice", "pod"+uid), 0o755), "outside kubelet's tree")
			got, err := findPodCgroup(root, uid)
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(root, rel), got)
		})
	}
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "system.slice", "pod"+uid), 0o755))
	_, err := findPodCgroup(root, uid)
	assert.ErrorIs(t, err, hostexec.ErrNotFound, "a pod-like directory outside kubelet's tree is not a pod")
}

func TestIOMax(t *testing.T) {
	assert.Equal(t, "8:16 rbps=1048576 wbps=max riops=max wiops=200",
		ioMaxLine(8, 16, hostexec.IOLimits{ReadBPS: core.MiB, WriteIOPS: 200}))
	assert.Equal(t, "253:3 rbps=max wbps=max riops=max wiops=max", ioMaxLine(253, 3, hostexec.IOLimits{}))

	got, err := parseIOMax("8:16 rbps=1048576 wbps=max riops=max wiops=200\n253:3 rbps=max wbps=max riops=max wiops=max\n")
	require.NoError(t, err)
	assert.Equal(t, map[string]hostexec.IOLimits{"8:16": {ReadBPS: core.MiB, WriteIOPS: 200}}, got)
	for _, bad := range []string{"8:x rbps=1", "8:1 rbps", "8:1 rbps=-4", "8:1 wbps=lots"} {
		_, err := parseIOMax(bad)
		assert.Error(t, err, bad)
	}

	root := t.TempDir()
	h, err := New(Config{CgroupRoot: root})
	require.NoError(t, err)
	pod := filepath.Join(root, "kubepods", "pod1")
	require.NoError(t, os.MkdirAll(pod, 0o755))
	err = h.SetIOLimits(context.Background(), pod, 8, 0, hostexec.IOLimits{ReadBPS: 1})
	assert.ErrorIs(t, err, hostexec.ErrUnsupported, "no io.max: the io controller is off")
	_, err = h.IOLimits(context.Background(), pod)
	assert.ErrorIs(t, err, hostexec.ErrUnsupported)
	require.NoError(t, os.WriteFile(filepath.Join(pod, "io.max"), nil, 0o644))
	require.NoError(t, h.SetIOLimits(context.Background(), pod, 8, 0, hostexec.IOLimits{ReadBPS: 1}))
	b, err := os.ReadFile(filepath.Join(pod, "io.max"))
	require.NoError(t, err)
	assert.Equal(t, "8:0 rbps=1 wbps=max riops=max wiops=max\n", string(b), "one line per write, as cgroupfs takes it")
	limits, err := h.IOLimits(context.Background(), pod)
	require.NoError(t, err)
	assert.Equal(t, map[string]hostexec.IOLimits{"8:0": {ReadBPS: 1}}, limits)
	assert.ErrorIs(t, h.SetIOLimits(context.Background(), "/etc", 8, 0, hostexec.IOLimits{}), hostexec.ErrInvalidArgument)
	assert.ErrorIs(t, h.SetIOLimits(context.Background(), filepath.Join(root, "gone"), 8, 0, hostexec.IOLimits{}), hostexec.ErrNotFound)
}
