package volumereq

import (
	"errors"
	"testing"

	"github.com/open-local/open-local/core"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"pgregory.net/rapid"
)

func TestParseStorageClassParamsAccepts(t *testing.T) {
	p, err := ParseStorageClassParams(map[string]string{
		ParamVolumeType: "LVM", ParamVGName: "pool", ParamLVMType: "striping",
		ParamFSType: "xfs", ParamBPS: "1Mi", ParamIOPS: "3k",
		"csi.storage.k8s.io/provisioner-secret-name": "ignored",
	})
	require.NoError(t, err)
	assert.Equal(t, Params{VolumeType: VolumeTypeLVM, VGName: "pool", LVMType: LVMStriping, FSType: "xfs", BPS: 1 << 20, IOPS: 3000}, p)

	p, err = ParseStorageClassParams(map[string]string{ParamVolumeType: "Device", ParamMediaType: "hdd"})
	require.NoError(t, err)
	assert.Equal(t, Params{VolumeType: VolumeTypeDevice, Media: core.MediaHDD, LVMType: LVMLinear, FSType: DefaultFSType}, p)
}

func TestParseStorageClassParamsRejects(t *testing.T) {
	cases := []struct {
		name   string
		params map[string]string
		want   []string
	}{
		{"volumeType is case-sensitive", map[string]string{ParamVolumeType: "lvm"}, []string{`invalid volumeType "lvm"`, "accepted: LVM, Device, MountPoint"}},
		{"Quota has no driver support", map[string]string{ParamVolumeType: "Quota"}, []string{`invalid volumeType "Quota"`}},
		{"mediaType", map[string]string{ParamVolumeType: "Device", ParamMediaType: "nvme"}, []string{`invalid mediaType "nvme"`, "accepted: ssd, hdd"}},
		{"lvmType", map[string]string{ParamVolumeType: "LVM", ParamLVMType: "raid1"}, []string{`invalid lvmType "raid1"`, "accepted: linear, striping"}},
		{"fstype", map[string]string{ParamVolumeType: "LVM", ParamFSType: "btrfs"}, []string{`invalid csi.storage.k8s.io/fstype "btrfs"`, "accepted: ext4, ext3, xfs"}},
		{"bps not a quantity", map[string]string{ParamVolumeType: "LVM", ParamBPS: "fast"}, []string{`invalid bps "fast"`}},
		{"iops negative", map[string]string{ParamVolumeType: "LVM", ParamIOPS: "-5"}, []string{`invalid iops "-5"`, "at least 0"}},
		{"iops fractional", map[string]string{ParamVolumeType: "LVM", ParamIOPS: "1.5"}, []string{`invalid iops "1.5"`, "whole number"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseStorageClassParams(c.params)
			require.Error(t, err)
			require.ErrorIs(t, err, core.ErrInvalid)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// The defaults the CSI driver applies: no volumeType is LVM, no mediaType
// is either medium.
func TestParseStorageClassParamsDefaults(t *testing.T) {
	p, err := ParseStorageClassParams(map[string]string{})
	require.NoError(t, err)
	assert.Equal(t, VolumeTypeLVM, p.VolumeType)
	for _, vt := range []string{"Device", "MountPoint"} {
		p, err := ParseStorageClassParams(map[string]string{ParamVolumeType: vt})
		require.NoError(t, err, vt)
		assert.Equal(t, core.MediaType(""), p.Media, vt)
	}
}

func TestParseStorageClassParamsReportsEveryError(t *testing.T) {
	_, err := ParseStorageClassParams(map[string]string{ParamVolumeType: "LVM", ParamLVMType: "x", ParamFSType: "y", ParamIOPS: "z"})
	require.Error(t, err)
	assert.Equal(t, `invalid csi.storage.k8s.io/fstype "y" (accepted: ext4, ext3, xfs); invalid iops "z": not a quantity such as 1000, 10Mi or 3k; invalid lvmType "x" (accepted: linear, striping)`, err.Error())
}

// Property: the parameters are accepted exactly when every known key holds an
// accepted value (a missing volumeType is LVM).
func TestParseStorageClassParamsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		params := map[string]string{}
		valid := true
		pick := func(key string, good, bad []string) {
			switch rapid.IntRange(0, 2).Draw(t, key+"-mode") {
			case 0: // absent
			case 1:
				params[key] = rapid.SampledFrom(good).Draw(t, key)
			case 2:
				params[key] = rapid.SampledFrom(bad).Draw(t, key)
				valid = false
			}
		}
		vt := rapid.SampledFrom([]string{"", "LVM", "Device", "MountPoint", "Lvm", "Quota"}).Draw(t, "volumeType")
		if vt != "" {
			params[ParamVolumeType] = vt
		}
		valid = valid && (vt == "" || contains(volumeTypes, vt))
		pick(ParamMediaType, mediaTypes, []string{"SSD", "nvme", ""})
		pick(ParamLVMType, lvmTypes, []string{"Linear", "mirror"})
		pick(ParamFSType, fsTypes, []string{"ext2", "XFS"})
		pick(ParamBPS, []string{"0", "1Mi", "100M", "5000"}, []string{"-1", "1.5", "x", ""})
		pick(ParamIOPS, []string{"0", "1k", "300"}, []string{"-1", "0.1", "many"})
		p, err := ParseStorageClassParams(params)
		if valid {
			if err != nil {
				t.Fatalf("valid parameters %v rejected: %v", params, err)
			}
			want := vt
			if want == "" {
				want = string(VolumeTypeLVM)
			}
			if string(p.VolumeType) != want {
				t.Fatalf("volumeType %q parsed as %q", vt, p.VolumeType)
			}
		} else if err == nil {
			t.Fatalf("invalid parameters %v accepted as %+v", params, p)
		}
	})
}

func TestParamsRequest(t *testing.T) {
	lvm := Params{VolumeType: VolumeTypeLVM, VGName: "pool", LVMType: LVMStriping}
	assert.Equal(t, core.VolumeRequest{Claim: "ns/a", Kind: core.VolumeLVM, VG: "pool", Striped: true, Bytes: 5}, lvm.Request("ns/a", 5))
	dev := Params{VolumeType: VolumeTypeDevice, Media: core.MediaSSD, VGName: "ignored"}
	assert.Equal(t, core.VolumeRequest{Claim: "ns/b", Kind: core.VolumeDevice, Media: core.MediaSSD, Bytes: 7}, dev.Request("ns/b", 7))
	mp := Params{VolumeType: VolumeTypeMountPoint, Media: core.MediaHDD}
	assert.Equal(t, core.VolumeRequest{Claim: "ns/c", Kind: core.VolumeMountPoint, Media: core.MediaHDD, Bytes: 9}, mp.Request("ns/c", 9))
}

func class(name, provisioner string, params map[string]string) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{Provisioner: provisioner, Parameters: params}
	sc.Name = name
	return sc
}

func claim(ns, name, size string) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{}
	pvc.Namespace, pvc.Name = ns, name
	if size != "" {
		pvc.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
	}
	return pvc
}

func TestFromPVC(t *testing.T) {
	lvm := class("open-local-lvm", DriverName, map[string]string{ParamVolumeType: "LVM", ParamVGName: "pool"})
	r, err := FromPVC(claim("", "data", "10Gi"), lvm)
	require.NoError(t, err)
	assert.Equal(t, core.VolumeRequest{Claim: "default/data", Kind: core.VolumeLVM, VG: "pool", Bytes: 10 * core.GiB}, r)

	legacy := class("old", LegacyDriverName, map[string]string{ParamVolumeType: "Device", ParamMediaType: "ssd"})
	r, err = FromPVC(claim("db", "disk", "1.5Gi"), legacy)
	require.NoError(t, err)
	assert.Equal(t, core.VolumeRequest{Claim: "db/disk", Kind: core.VolumeDevice, Media: core.MediaSSD, Bytes: 3 * core.GiB / 2}, r)

	block := corev1.PersistentVolumeBlock
	pvc := claim("ns", "raw", "1Gi")
	pvc.Spec.VolumeMode = &block
	pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}
	_, err = FromPVC(pvc, lvm)
	require.NoError(t, err, "Block volumes are LVM's and Device's")
}

func TestFromPVCRejects(t *testing.T) {
	lvm := class("open-local-lvm", DriverName, map[string]string{ParamVolumeType: "LVM"})
	_, err := FromPVC(claim("ns", "a", "1Gi"), class("ebs", "ebs.csi.aws.com", nil))
	require.ErrorIs(t, err, ErrNotOpenLocal)

	_, err = FromPVC(claim("ns", "a", "1Gi"), class("broken", DriverName, map[string]string{ParamVolumeType: "Lvm"}))
	require.ErrorIs(t, err, core.ErrInvalid)
	assert.Contains(t, err.Error(), `storageclass broken: invalid volumeType "Lvm"`)

	_, err = FromPVC(claim("ns", "a", ""), lvm)
	assert.EqualError(t, err, "persistentvolumeclaim ns/a: spec.resources.requests.storage is required: invalid value")

	rwx := claim("ns", "shared", "1Gi")
	rwx.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	_, err = FromPVC(rwx, lvm)
	require.ErrorIs(t, err, core.ErrInvalid)
	assert.Contains(t, err.Error(), "persistentvolumeclaim ns/shared: access mode ReadWriteMany is not supported")

	block := corev1.PersistentVolumeBlock
	mpBlock := claim("ns", "mp", "1Gi")
	mpBlock.Spec.VolumeMode = &block
	_, err = FromPVC(mpBlock, class("mp", DriverName, map[string]string{ParamVolumeType: "MountPoint", ParamMediaType: "hdd"}))
	assert.ErrorContains(t, err, "volumeMode Block is not supported by volumeType MountPoint")

	neg := claim("ns", "neg", "-1Gi")
	_, err = FromPVC(neg, lvm)
	assert.ErrorContains(t, err, `persistentvolumeclaim ns/neg: spec.resources.requests.storage: invalid size "-1Gi": negative`)
}

func inlinePod(uid string, vols ...corev1.Volume) *corev1.Pod {
	p := &corev1.Pod{}
	p.Namespace, p.Name, p.UID = "web", "cache", ""
	if uid != "" {
		p.UID = "uid-1"
	}
	p.Spec.Volumes = vols
	return p
}

func csiVolume(name, driver string, attrs map[string]string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: driver, VolumeAttributes: attrs}}}
}

func TestFromInlineVolume(t *testing.T) {
	pod := inlinePod("")
	v := csiVolume("scratch", DriverName, map[string]string{ParamVGName: "pool"})
	r, ok, err := FromInlineVolume(pod, &v)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, core.VolumeRequest{Claim: "web/cache/scratch", Kind: core.VolumeLVM, VG: "pool", Bytes: core.GiB}, r, "size defaults to 1Gi")

	v = csiVolume("scratch", LegacyDriverName, map[string]string{ParamVGName: "pool", AttrSize: "3Gi", ParamLVMType: "striping"})
	r, ok, err = FromInlineVolume(inlinePod("uid"), &v)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, core.VolumeRequest{Claim: "uid-1/scratch", Kind: core.VolumeLVM, VG: "pool", Bytes: 3 * core.GiB, Striped: true}, r)

	other := csiVolume("x", "secrets-store.csi.k8s.io", nil)
	_, ok, err = FromInlineVolume(pod, &other)
	require.NoError(t, err)
	assert.False(t, ok)
	empty := corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	_, ok, err = FromInlineVolume(pod, &empty)
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestFromInlineVolumeRejects(t *testing.T) {
	pod := inlinePod("")
	xfs, btrfs := "xfs", "btrfs"
	cases := []struct {
		name string
		vol  corev1.Volume
		want string
	}{
		{"vgName required", csiVolume("v", DriverName, nil), "pod web/cache: inline volume v: volumeAttributes.vgName is required"},
		{"LVM only", csiVolume("v", DriverName, map[string]string{ParamVGName: "p", ParamVolumeType: "Device", ParamMediaType: "ssd"}), `invalid volumeAttributes.volumeType "Device": inline volumes are LVM only`},
		{"bad size", csiVolume("v", DriverName, map[string]string{ParamVGName: "p", AttrSize: "big"}), `pod web/cache: inline volume v: volumeAttributes.size: invalid size "big"`},
		{"bad attribute", csiVolume("v", DriverName, map[string]string{ParamVGName: "p", ParamBPS: "x"}), `volumeAttributes: invalid bps "x"`},
	}
	withFS := csiVolume("v", DriverName, map[string]string{ParamVGName: "p"})
	withFS.CSI.FSType = &btrfs
	cases = append(cases, struct {
		name string
		vol  corev1.Volume
		want string
	}{"bad fsType", withFS, `invalid csi.storage.k8s.io/fstype "btrfs"`})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ok, err := FromInlineVolume(pod, &c.vol)
			assert.True(t, ok)
			require.ErrorIs(t, err, core.ErrInvalid)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	good := csiVolume("v", DriverName, map[string]string{ParamVGName: "p"})
	good.CSI.FSType = &xfs
	_, _, err := FromInlineVolume(pod, &good)
	require.NoError(t, err)
}

func TestStorageClassNameAndDefault(t *testing.T) {
	pvc := claim("ns", "a", "1Gi")
	name, explicit := StorageClassName(pvc)
	assert.Equal(t, "", name)
	assert.False(t, explicit)

	pvc.Annotations = map[string]string{BetaStorageClassAnnotation: "old"}
	name, explicit = StorageClassName(pvc)
	assert.Equal(t, "old", name)
	assert.True(t, explicit)

	none := ""
	pvc.Spec.StorageClassName = &none
	name, explicit = StorageClassName(pvc)
	assert.Equal(t, "", name)
	assert.True(t, explicit, "an explicit empty class means no class, not the default")

	sc := class("x", DriverName, nil)
	assert.False(t, IsDefaultClass(sc))
	sc.Annotations = map[string]string{BetaDefaultClassAnnotation: "true"}
	assert.True(t, IsDefaultClass(sc))
	sc.Annotations = map[string]string{DefaultClassAnnotation: "false"}
	assert.False(t, IsDefaultClass(sc))
}

func TestClaimIDs(t *testing.T) {
	assert.Equal(t, core.ClaimID("default/a"), ClaimForPVC("", "a"))
	assert.Equal(t, core.ClaimID("ns/a"), ClaimForPVC("ns", "a"))
	p := inlinePod("")
	p.Namespace = ""
	assert.Equal(t, core.ClaimID("default/cache/v"), ClaimForInline(p, "v"))
	assert.True(t, IsOpenLocalDriver(DriverName))
	assert.True(t, IsOpenLocalDriver(LegacyDriverName))
	assert.False(t, IsOpenLocalDriver("local.csi.aliyun.com.evil"))
	assert.False(t, errors.Is(ErrNotOpenLocal, core.ErrInvalid))
}
