package hostexec

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateVGName(t *testing.T) {
	for _, ok := range []string{"open-local-pool-0", "vg", "a+b_c.d-e", "A9", strings.Repeat("v", 127)} {
		assert.NoError(t, ValidateVGName(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", "-vg", "v g", "vg/x", "vg\x00", "vé", strings.Repeat("v", 128), "vg;rm"} {
		err := ValidateVGName(bad)
		require.Error(t, err, bad)
		assert.True(t, errors.Is(err, ErrInvalidArgument), bad)
		assert.Contains(t, err.Error(), "VG name")
	}
}

func TestValidateLVName(t *testing.T) {
	for _, ok := range []string{"lv", "local-3f2a", "my.snap", "a-snapshot", "x_cdat", strings.Repeat("l", 121)} {
		assert.NoError(t, ValidateLVName("vg1", ok), ok)
	}
	bad := []string{
		"", ".", "..", "-lv", "snapshot", "snapshot1", "pvmove0", "a_cdata", "x_tmeta_y",
		"lv_rimage_0", "a b", "a/b", strings.Repeat("l", 122), strings.Repeat("l", 128),
	}
	for _, b := range bad {
		err := ValidateLVName("vg1", b)
		require.Error(t, err, b)
		assert.True(t, errors.Is(err, ErrInvalidArgument), b)
	}
	// The VG part is validated too.
	assert.ErrorIs(t, ValidateLVName("-vg", "lv"), ErrInvalidArgument)
}

func TestValidateTag(t *testing.T) {
	for _, ok := range []string{"a", "csi.aliyun.com/snapshot=x", "a/b=c!d:e&f#g", "k+v_1.2-3"} {
		assert.NoError(t, ValidateTag(ok), ok)
	}
	for _, bad := range []string{"", "-x", "a,b", "a@b", "a b", strings.Repeat("t", 1025)} {
		assert.ErrorIs(t, ValidateTag(bad), ErrInvalidArgument, bad)
	}
	assert.ErrorIs(t, ValidateTags([]string{"ok", "no,pe"}), ErrInvalidArgument)
}

func TestValidatePaths(t *testing.T) {
	for _, ok := range []string{"/", "/var/lib/kubelet/pods/x/volumes", "/mnt/open-local/disk-1"} {
		assert.NoError(t, ValidatePath(ok), ok)
	}
	for _, bad := range []string{"", "rel/path", "/a/../b", "/a//b", "/a/", "/a/./b", "/a\nb", "/" + strings.Repeat("p", 4096)} {
		assert.ErrorIs(t, ValidatePath(bad), ErrInvalidArgument, bad)
	}
	for _, ok := range []string{"/dev/vdb", "/dev/nvme0n1p2", "/dev/open-local-pool-0/lv1", "/dev/loop3"} {
		assert.NoError(t, ValidateDevicePath(ok), ok)
	}
	for _, bad := range []string{"", "/dev", "/dev/", "vdb", "/tmp/disk", "/dev/../etc/passwd", "/dev/a b", "/devx/sda", "-/dev/sda"} {
		assert.ErrorIs(t, ValidateDevicePath(bad), ErrInvalidArgument, bad)
	}
	assert.NoError(t, ValidateDevicePathUnder("/tmp/dev", "/tmp/dev/sda"))
	assert.ErrorIs(t, ValidateDevicePathUnder("/tmp/dev", "/dev/sda"), ErrInvalidArgument)
}

func TestValidateFSTypeAndOptions(t *testing.T) {
	for _, ok := range []string{"ext4", "ext3", "xfs"} {
		assert.NoError(t, ValidateFSType(ok))
	}
	for _, bad := range []string{"", "ext2", "btrfs", "EXT4", "ext4 "} {
		err := ValidateFSType(bad)
		assert.ErrorIs(t, err, ErrInvalidArgument, bad)
	}
	assert.Contains(t, ValidateFSType("ntfs").Error(), "ext4, ext3, xfs")
	assert.NoError(t, ValidateMountOptions([]string{"ro", "nouuid", "discard", "data=ordered"}))
	for _, bad := range [][]string{{""}, {"ro,exec"}, {"a b"}, {"x\n"}} {
		assert.ErrorIs(t, ValidateMountOptions(bad), ErrInvalidArgument, bad)
	}
	assert.NoError(t, ValidateToolOptions("mkfs option", []string{"-E", "nodiscard"}))
	assert.ErrorIs(t, ValidateToolOptions("mkfs option", []string{""}), ErrInvalidArgument)
}

func TestValidatePodUID(t *testing.T) {
	assert.NoError(t, ValidatePodUID("0f4c2c1a-8d2e-4b8e-9b7a-1c2d3e4f5a6b"))
	assert.NoError(t, ValidatePodUID("0f4c2c1a_8d2e_4b8e_9b7a_1c2d3e4f5a6b"))
	for _, bad := range []string{"", "../../etc", "pod*", "0f4c/2c1a", strings.Repeat("a", 65)} {
		assert.ErrorIs(t, ValidatePodUID(bad), ErrInvalidArgument, bad)
	}
}

func TestValidateSpecs(t *testing.T) {
	good := LVSpec{VG: "vg", Name: "lv", SizeBytes: 1 << 30, Stripes: 2, StripeSizeBytes: 64 << 10, Tags: []string{"a"}}
	assert.NoError(t, ValidateLVSpec(good))
	for _, mut := range []func(*LVSpec){
		func(s *LVSpec) { s.SizeBytes = -1 },
		func(s *LVSpec) { s.Stripes = -1 },
		func(s *LVSpec) { s.StripeSizeBytes = 3000 },
		func(s *LVSpec) { s.StripeSizeBytes = 96 << 10 },
		func(s *LVSpec) { s.Tags = []string{"bad tag"} },
		func(s *LVSpec) { s.Name = "snapshot-x" },
	} {
		s := good
		mut(&s)
		assert.ErrorIs(t, ValidateLVSpec(s), ErrInvalidArgument)
	}
	snap := SnapshotSpec{VG: "vg", Name: "s", Origin: "lv", SizeBytes: 1}
	assert.NoError(t, ValidateSnapshotSpec(snap))
	snap.Origin = "s"
	assert.ErrorIs(t, ValidateSnapshotSpec(snap), ErrInvalidArgument)

	assert.NoError(t, ValidateDeviceList([]string{"/dev/sdb", "/dev/sdc"}))
	assert.ErrorIs(t, ValidateDeviceList(nil), ErrInvalidArgument)
	assert.ErrorIs(t, ValidateDeviceList([]string{"/dev/sdb", "/dev/sdb"}), ErrInvalidArgument)
	assert.ErrorIs(t, ValidateDeviceList([]string{"sdb"}), ErrInvalidArgument)
}
