package csi

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/open-local/open-local/core"
)

func requireCode(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	require.Error(t, err)
	s, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, code, s.Code(), "message: %s", s.Message())
	for _, c := range contains {
		require.Contains(t, s.Message(), c)
	}
}

func TestParseVolumeParams(t *testing.T) {
	cases := []struct {
		name    string
		in      map[string]string
		want    VolumeParams
		errHas  []string // InvalidArgument containing these
		wantErr bool
	}{
		{name: "empty means LVM", in: nil, want: VolumeParams{Type: TypeLVM}},
		{name: "LVM pinned striped", in: map[string]string{"volumeType": "LVM", "vgName": "pool", "lvmType": "striping"}, want: VolumeParams{Type: TypeLVM, VG: "pool", Striped: true}},
		{name: "linear", in: map[string]string{"lvmType": "linear"}, want: VolumeParams{Type: TypeLVM}},
		{name: "device ssd", in: map[string]string{"volumeType": "Device", "mediaType": "ssd"}, want: VolumeParams{Type: TypeDevice, Media: core.MediaSSD}},
		{name: "mountpoint hdd", in: map[string]string{"volumeType": "MountPoint", "mediaType": "hdd"}, want: VolumeParams{Type: TypeMountPoint, Media: core.MediaHDD}},
		{name: "media ignored for LVM", in: map[string]string{"mediaType": "ssd"}, want: VolumeParams{Type: TypeLVM}},
		{name: "fstype", in: map[string]string{"csi.storage.k8s.io/fstype": "xfs"}, want: VolumeParams{Type: TypeLVM, FSType: "xfs"}},
		{name: "throttle", in: map[string]string{"bps": "10Mi", "iops": "1k"}, want: VolumeParams{Type: TypeLVM, BPS: 10 << 20, IOPS: 1000}},
		{name: "provisioner metadata", in: map[string]string{"csi.storage.k8s.io/pvc/name": "a", "csi.storage.k8s.io/pvc/namespace": "b", "csi.storage.k8s.io/pv/name": "c", "volume.kubernetes.io/selected-node": "n1"}, want: VolumeParams{Type: TypeLVM, SelectedNode: "n1"}},
		{name: "readonly restore", in: map[string]string{"csi.aliyun.com/readonly": "true"}, want: VolumeParams{Type: TypeLVM, ReadOnlyRestore: true}},
		{name: "spdk false", in: map[string]string{"spdk": "false"}, want: VolumeParams{Type: TypeLVM}},
		{name: "sidecar keys", in: map[string]string{"csi.storage.k8s.io/provisioner-secret-name": "s", "csi.storage.k8s.io/controller-expand-secret-namespace": "n"}, want: VolumeParams{Type: TypeLVM}},

		{name: "lower-case type", in: map[string]string{"volumeType": "lvm"}, errHas: []string{"volumeType", `"lvm"`, "LVM, Device, MountPoint", "case-sensitive"}},
		{name: "quota", in: map[string]string{"volumeType": "Quota"}, errHas: []string{"Quota volumes are not supported"}},
		{name: "unknown key", in: map[string]string{"vgname": "x"}, errHas: []string{`unknown StorageClass parameter "vgname"`, "vgName"}},
		{name: "vg for device", in: map[string]string{"volumeType": "Device", "vgName": "x"}, errHas: []string{"vgName", "LVM only"}},
		{name: "bad vg name", in: map[string]string{"vgName": "a/b"}, errHas: []string{"vgName", "a/b"}},
		{name: "bad media", in: map[string]string{"volumeType": "Device", "mediaType": "nvme"}, errHas: []string{"mediaType", "ssd, hdd"}},
		{name: "bad lvmType", in: map[string]string{"lvmType": "raid1"}, errHas: []string{"lvmType", "linear, striping"}},
		{name: "lvmType for device", in: map[string]string{"volumeType": "Device", "lvmType": "linear"}, errHas: []string{"lvmType", "LVM only"}},
		{name: "bad fstype", in: map[string]string{"csi.storage.k8s.io/fstype": "btrfs"}, errHas: []string{"fstype", "ext4, ext3, xfs"}},
		{name: "bad bps", in: map[string]string{"bps": "fast"}, errHas: []string{"bps", `"fast"`}},
		{name: "negative iops", in: map[string]string{"iops": "-1"}, errHas: []string{"iops"}},
		{name: "throttle mountpoint", in: map[string]string{"volumeType": "MountPoint", "bps": "1Mi"}, errHas: []string{"not MountPoint"}},
		{name: "spdk true", in: map[string]string{"spdk": "true"}, errHas: []string{"SPDK"}},
		{name: "bad readonly", in: map[string]string{"csi.aliyun.com/readonly": "yes"}, errHas: []string{"readonly", "true, false"}},
		{name: "readonly for device", in: map[string]string{"volumeType": "Device", "csi.aliyun.com/readonly": "true"}, errHas: []string{"LVM volumes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseVolumeParams(tc.in)
			if tc.errHas != nil {
				requireCode(t, err, codes.InvalidArgument, tc.errHas...)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseVolumeParams(f *testing.F) {
	f.Add("volumeType", "LVM", "vgName", "pool")
	f.Add("volumeType", "Device", "mediaType", "ssd")
	f.Add("bps", "1Mi", "iops", "-3")
	f.Add("lvmType", "striping", "csi.storage.k8s.io/fstype", "xfs")
	f.Add("volumeType", "\x00", "", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		_, err := ParseVolumeParams(map[string]string{k1: v1, k2: v2})
		if err != nil {
			// Every refusal is an InvalidArgument a user can read.
			s, ok := status.FromError(err)
			if !ok || s.Code() != codes.InvalidArgument || s.Message() == "" {
				t.Fatalf("error is not a readable InvalidArgument: %v", err)
			}
		}
	})
}

func TestParseSnapshotParams(t *testing.T) {
	got, err := ParseSnapshotParams(nil)
	require.NoError(t, err)
	require.Equal(t, SnapshotParams{InitialBytes: 4 * core.GiB, ThresholdPercent: 50, ExpansionBytes: core.GiB}, got)

	got, err = ParseSnapshotParams(map[string]string{
		"csi.aliyun.com/readonly": "true", "csi.aliyun.com/snapshot-initial-size": "2Gi",
		"csi.aliyun.com/snapshot-expansion-threshold": "70%", "csi.aliyun.com/snapshot-expansion-size": "512Mi",
		"csi.storage.k8s.io/volumesnapshot/name": "s", "csi.storage.k8s.io/volumesnapshot/namespace": "n",
		"csi.storage.k8s.io/volumesnapshotcontent/name": "c",
	})
	require.NoError(t, err)
	require.Equal(t, SnapshotParams{InitialBytes: 2 * core.GiB, ThresholdPercent: 70, ExpansionBytes: 512 * core.MiB}, got)

	for _, tc := range []struct {
		in  map[string]string
		has string
	}{
		{map[string]string{"csi.aliyun.com/readonly": "false"}, "only copy-on-write"},
		{map[string]string{"csi.aliyun.com/snapshot-initial-size": "0"}, "snapshot-initial-size"},
		{map[string]string{"csi.aliyun.com/snapshot-expansion-threshold": "50"}, "whole percentage"},
		{map[string]string{"csi.aliyun.com/snapshot-expansion-threshold": "0%"}, "whole percentage"},
		{map[string]string{"csi.aliyun.com/snapshot-expansion-threshold": "12.5%"}, "whole percentage"},
		{map[string]string{"csi.aliyun.com/snapshot-expansion-size": "lots"}, "snapshot-expansion-size"},
		{map[string]string{"retention": "1d"}, `unknown VolumeSnapshotClass parameter "retention"`},
		{map[string]string{"csi.aliyun.com/retention": "1d"}, `unknown VolumeSnapshotClass parameter "csi.aliyun.com/retention"`},
	} {
		_, err := ParseSnapshotParams(tc.in)
		requireCode(t, err, codes.InvalidArgument, tc.has)
	}
}

func TestParseEphemeral(t *testing.T) {
	got, err := ParseEphemeral(map[string]string{"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.uid": "abc-1"}, "")
	require.NoError(t, err)
	require.Equal(t, VolumeContext{Type: TypeLVM, TypeKnown: true, Ephemeral: true, EphemeralSize: core.GiB, PodUID: "abc-1"}, got)

	got, err = ParseEphemeral(map[string]string{"vgName": "pool", "size": "2Gi", "fsType": "xfs", "bps": "1Mi"}, "xfs")
	require.NoError(t, err)
	require.Equal(t, "pool", got.VG)
	require.Equal(t, 2*core.GiB, got.EphemeralSize)
	require.Equal(t, "xfs", got.FSType)
	require.Equal(t, int64(1<<20), got.BPS)

	got, err = ParseEphemeral(nil, "ext3")
	require.NoError(t, err)
	require.Equal(t, "ext3", got.FSType)

	_, err = ParseEphemeral(map[string]string{"fsType": "xfs"}, "ext4")
	requireCode(t, err, codes.InvalidArgument, "differs")
	_, err = ParseEphemeral(map[string]string{"size": "0"}, "")
	requireCode(t, err, codes.InvalidArgument, "size")
	_, err = ParseEphemeral(map[string]string{"volumeType": "LVM"}, "")
	requireCode(t, err, codes.InvalidArgument, `unknown inline volume attribute "volumeType"`)
}

func TestParseVolumeContext(t *testing.T) {
	got, err := ParseVolumeContext(map[string]string{
		"volumeType": "Device", "Device": "/dev/sdc", "storage.kubernetes.io/csiProvisionerIdentity": "x",
		"csi.storage.k8s.io/pod.uid": "u", "bps": "1Ki", "csi.aliyun.com/readonly": "true", "csi.aliyun.com/snapshot-id": "s",
	})
	require.NoError(t, err)
	require.Equal(t, VolumeContext{Type: TypeDevice, TypeKnown: true, Device: "/dev/sdc", BPS: 1024, ReadOnly: true, SnapshotID: "s", PodUID: "u"}, got)
	_, err = ParseVolumeContext(map[string]string{"volumeType": "Quota"})
	requireCode(t, err, codes.InvalidArgument, "volumeType")
	_, err = ParseVolumeContext(map[string]string{"iops": "x"})
	requireCode(t, err, codes.InvalidArgument, "iops")
}

func TestCheckCapability(t *testing.T) {
	mount := func(mode csi.VolumeCapability_AccessMode_Mode, fs string, flags ...string) *csi.VolumeCapability {
		return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs, MountFlags: flags}}}
	}
	block := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
	assert.Empty(t, checkCapability(mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, ""), TypeLVM))
	assert.Empty(t, checkCapability(mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, "xfs", "noatime"), TypeDevice))
	assert.Empty(t, checkCapability(mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, "ext3"), TypeMountPoint))
	assert.Empty(t, checkCapability(block, TypeLVM))
	assert.Contains(t, checkCapability(block, TypeMountPoint), "block access")
	assert.Contains(t, checkCapability(mount(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, ""), TypeLVM), "MULTI_NODE_MULTI_WRITER")
	assert.Contains(t, checkCapability(mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, ""), TypeLVM), "not supported")
	assert.Contains(t, checkCapability(mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "ntfs"), TypeLVM), "ntfs")
	assert.Contains(t, checkCapability(mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "", "a,b"), TypeLVM), "commas")
	assert.Contains(t, checkCapability(nil, TypeLVM), "missing")
	assert.Contains(t, checkCapability(&csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}, TypeLVM), "access type")
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]Endpoint{
		"unix:///csi/csi.sock":   {Network: "unix", Address: "/csi/csi.sock"},
		"unix:/tmp/x.sock":       {Network: "unix", Address: "/tmp/x.sock"},
		"tcp://127.0.0.1:10000":  {Network: "tcp", Address: "127.0.0.1:10000"},
		"tcp://127.0.0.9:1":      {Network: "tcp", Address: "127.0.0.9:1"},
		"tcp://[::1]:10000":      {Network: "tcp", Address: "[::1]:10000"},
		"tcp://localhost:10000":  {Network: "tcp", Address: "127.0.0.1:10000"},
		"tcp://127.0.0.1:10000/": {Network: "tcp", Address: "127.0.0.1:10000"},
	} {
		got, err := ParseEndpoint(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for in, has := range map[string]string{
		"tcp://0.0.0.0:1736":    "only loopback",
		"tcp://10.0.0.1:1736":   "only loopback",
		"tcp://[::]:1736":       "only loopback",
		"tcp://example.com:1":   "only loopback",
		"tcp://127.0.0.1":       "want tcp://",
		"unix://relative.sock":  "absolute",
		"unix:relative.sock":    "absolute",
		"http://127.0.0.1:1":    "want unix://",
		"/csi/csi.sock":         "want unix://",
		"tcp://127.0.0.1:1/x/y": "want tcp://",
	} {
		_, err := ParseEndpoint(in)
		require.Error(t, err, in)
		require.Contains(t, err.Error(), has, in)
	}
}

func TestVolumeIDFor(t *testing.T) {
	assert.Equal(t, "local-0b5a4c1e-6f2e-4a7c-9c7b-0e8d6a1b2c3d", volumeIDFor("local-0b5a4c1e-6f2e-4a7c-9c7b-0e8d6a1b2c3d", "csi-"))
	ephemeral := "csi-" + strings.Repeat("ab", 32)
	assert.Equal(t, ephemeral, volumeIDFor(ephemeral, "csi-"))
	long := strings.Repeat("x", 128)
	id := volumeIDFor(long, "csi-")
	assert.True(t, strings.HasPrefix(id, "csi-"))
	assert.Len(t, id, 44)
	assert.Equal(t, id, volumeIDFor(long, "csi-"), "a pure function")
	assert.NotEqual(t, id, volumeIDFor(long+"y", "csi-"))
	for _, bad := range []string{"a/b", "snapshot-1", "x_tmeta", "-x", "..", "ü"} {
		got := volumeIDFor(bad, "snap-")
		assert.True(t, strings.HasPrefix(got, "snap-"), bad)
		assert.True(t, validID(got), bad)
		assert.False(t, validID(bad), bad)
	}
}

func TestMountOptions(t *testing.T) {
	assert.Equal(t, []string(nil), mountOptions("ext4", nil, false, false))
	assert.Equal(t, []string{"nouuid"}, mountOptions("xfs", nil, false, false))
	assert.Equal(t, []string{"noatime", "nouuid", "ro", "norecovery"}, mountOptions("xfs", []string{"noatime"}, true, true))
	assert.Equal(t, []string{"ro", "noload"}, mountOptions("ext4", []string{"ro"}, true, true))
}

func TestLVHealth(t *testing.T) {
	assert.Empty(t, lvHealth("-wi-a-----"))
	assert.Empty(t, lvHealth("-wi-ao----"))
	assert.Empty(t, lvHealth("owi-aos---"))
	h := lvHealth("swi-I-s---")
	require.Len(t, h, 1)
	assert.Equal(t, csi.VolumeHealthErrorType_DATA_LOSS, h[0].Status)
	assert.Equal(t, "SnapshotInvalid", h[0].Reason)
	h = lvHealth("-wi-a---p-")
	require.Len(t, h, 1)
	assert.Equal(t, csi.VolumeHealthErrorType_INACCESSIBLE, h[0].Status)
	assert.Equal(t, "MissingPhysicalVolume", h[0].Reason)
	h = lvHealth("-wi-------")
	require.Len(t, h, 1)
	assert.Equal(t, "NotActive", h[0].Reason)
	h = lvHealth("-wi-s---r-")
	require.Len(t, h, 2)
	assert.Empty(t, lvHealth("-wi-X---X-"), "unknown state is not a problem by itself")
	h = lvHealth("garbage")
	require.Len(t, h, 1)
	assert.Equal(t, csi.VolumeHealthErrorType_DEGRADED, h[0].Status)
}

func TestPageTokens(t *testing.T) {
	start, err := pageToken("", 3)
	require.NoError(t, err)
	require.Equal(t, 0, start)
	end, next := page(0, 2, 3)
	require.Equal(t, 2, end)
	require.Equal(t, "2", next)
	start, err = pageToken(next, 3)
	require.NoError(t, err)
	end, next = page(start, 2, 3)
	require.Equal(t, 3, end)
	require.Empty(t, next)
	for _, bad := range []string{"invalid-token", "-1", "4"} {
		_, err := pageToken(bad, 3)
		requireCode(t, err, codes.Aborted)
	}
}

func TestKeyLocks(t *testing.T) {
	k := newKeyLocks()
	unlock, err := k.tryLock("op1", "a", "b", "")
	require.NoError(t, err)
	_, err = k.tryLock("op2", "c", "b")
	requireCode(t, err, codes.Aborted, "pending", "b", "op1")
	assert.True(t, k.isHeld("a"))
	assert.False(t, k.isHeld("c"), "all or nothing")
	u2, err := k.tryLock("op3", "c", "c")
	require.NoError(t, err)
	unlock()
	u2()
	u3, err := k.tryLock("op4", "a", "b", "c")
	require.NoError(t, err)
	u3()
}

func TestSanitizeTag(t *testing.T) {
	assert.Equal(t, "abc-1_2", sanitizeTag("abc-1 2"))
	assert.Equal(t, "ns/name=x:y", sanitizeTag("ns/name=x:y"))
	assert.Len(t, sanitizeTag(strings.Repeat("a", 2000)), 1024)
}

func TestValidateDriverName(t *testing.T) {
	require.NoError(t, validateDriverName("local.csi.aliyun.com"))
	require.Error(t, validateDriverName(""))
	require.Error(t, validateDriverName("-a"))
	require.Error(t, validateDriverName("a b"))
	require.Error(t, validateDriverName(strings.Repeat("a", 64)))
}
