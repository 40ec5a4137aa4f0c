package initres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
)

var ctx = context.Background()

func host(t *testing.T) *simhost.Host {
	t.Helper()
	return simhost.MustNew(simhost.Config{
		Devices: []simhost.DeviceConfig{
			{Name: "/dev/sdb", Size: "100Gi", Media: "ssd"},
			{Name: "/dev/sdc", Size: "50Gi", Media: "ssd"},
			{Name: "/dev/sdd", Size: "50Gi", Media: "hdd"},
			{Name: "/dev/sde", Size: "10Gi", Signatures: []string{"ntfs"}},
			{Name: "/dev/sdf", Size: "10Gi", Signatures: []string{"gpt"}},
			{Name: "/dev/sdf1", Size: "5Gi", Parent: "/dev/sdf"},
			{Name: "/dev/sdg", Size: "10Gi", ReadOnly: true},
		},
		VGs: []simhost.VGConfig{{Name: "other", Devices: []string{"/dev/sdd"}}},
	})
}

func apply(t *testing.T, h *simhost.Host, spec v1alpha1.ResourceToBeInited, opts initres.Options) initres.Result {
	t.Helper()
	d, err := discovery.New(h, discovery.Options{})
	require.NoError(t, err)
	snap, err := d.Discover(ctx)
	require.NoError(t, err)
	return initres.Apply(ctx, h, snap, spec, opts)
}

func vgPVs(t *testing.T, h *simhost.Host, name string) []string {
	t.Helper()
	st, err := h.LVMReport(ctx)
	require.NoError(t, err)
	vg, ok := st.FindVG(name)
	if !ok {
		return nil
	}
	var out []string
	for _, pv := range vg.PVs {
		out = append(out, pv.Name)
	}
	return out
}

// mutations are the calls that change the host.
func mutations(h *simhost.Host) []string {
	var out []string
	for _, c := range h.Calls() {
		op, _, _ := strings.Cut(c, " ")
		switch op {
		case "CreatePV", "CreateVG", "ExtendVG", "Mkfs", "Mount", "MakeDir", "Wipe":
			out = append(out, c)
		}
	}
	return out
}

func vgSpec(name string, devs ...string) v1alpha1.ResourceToBeInited {
	return v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: name, Devices: devs}}}
}

func TestCreateVG(t *testing.T) {
	h := host(t)
	r := apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdc"), initres.Options{})
	require.NoError(t, r.Err())
	assert.True(t, r.Changed)
	assert.Equal(t, []string{"/dev/sdb", "/dev/sdc"}, vgPVs(t, h, "pool"))
	assert.Equal(t, []initres.Event{{Type: corev1.EventTypeNormal, Reason: initres.ReasonVGCreated, Message: "created volume group pool from /dev/sdb, /dev/sdc"}}, r.Events)

	// Nothing left to do: no change the second time.
	h.ResetCalls()
	r = apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdc"), initres.Options{})
	require.NoError(t, r.Err())
	assert.False(t, r.Changed)
	assert.Empty(t, r.Events)
	assert.Empty(t, mutations(h))
}

func TestGrowVG(t *testing.T) {
	h := host(t)
	require.NoError(t, apply(t, h, vgSpec("pool", "/dev/sdb"), initres.Options{}).Err())
	h.ResetCalls()
	r := apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdc"), initres.Options{})
	require.NoError(t, r.Err())
	assert.True(t, r.Changed)
	assert.Equal(t, []string{"/dev/sdb", "/dev/sdc"}, vgPVs(t, h, "pool"))
	assert.Equal(t, []string{"ExtendVG pool /dev/sdc"}, mutations(h), "vgextend with the new device only")
	assert.Equal(t, []initres.Event{{Type: corev1.EventTypeNormal, Reason: initres.ReasonVGExtended, Message: "extended volume group pool with /dev/sdc"}}, r.Events)
}

func TestGrowVGWithOrphanPV(t *testing.T) {
	h := host(t)
	require.NoError(t, h.CreateVG(ctx, "pool", []string{"/dev/sdb"}, false))
	require.NoError(t, h.CreatePV(ctx, "/dev/sdc", false))
	r := apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdc"), initres.Options{})
	require.NoError(t, r.Err(), "an orphan PV's LVM label is not a foreign signature")
	assert.Equal(t, []string{"/dev/sdb", "/dev/sdc"}, vgPVs(t, h, "pool"))
}

func TestRefuseDeviceOfAnotherVG(t *testing.T) {
	h := host(t)
	for _, tc := range []struct {
		name   string
		before func()
		reason string
	}{
		{"create", func() {}, initres.ReasonCreateVGFailed},
		{"extend", func() { require.NoError(t, h.CreateVG(ctx, "pool", []string{"/dev/sdb"}, false)) }, initres.ReasonExtendVGFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.before()
			h.ResetCalls()
			r := apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdd"), initres.Options{Force: true})
			require.Len(t, r.Problems, 1)
			assert.Equal(t, "volume group pool", r.Problems[0].Resource)
			assert.Empty(t, r.Problems[0].Op, "a refusal, not a failed command")
			require.Len(t, r.Events, 1)
			assert.Equal(t, corev1.EventTypeWarning, r.Events[0].Type)
			assert.Equal(t, tc.reason, r.Events[0].Reason)
			assert.Contains(t, r.Events[0].Message, "device /dev/sdd is a physical volume of volume group other")
			assert.Empty(t, mutations(h), "not even with force")
			assert.Equal(t, []string{"/dev/sdd"}, vgPVs(t, h, "other"))
		})
	}
}

func TestSignatures(t *testing.T) {
	h := host(t)
	r := apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sde"), initres.Options{})
	require.Len(t, r.Problems, 1)
	require.Len(t, r.Events, 1)
	ev := r.Events[0]
	assert.Equal(t, corev1.EventTypeWarning, ev.Type)
	assert.Equal(t, initres.ReasonCreateVGFailed, ev.Reason)
	assert.Contains(t, ev.Message, "device /dev/sde carries ntfs signatures")
	assert.Contains(t, ev.Message, "--force-create-vg (Force_Create_VG=true)", "the event says how to proceed")
	assert.Nil(t, vgPVs(t, h, "pool"), "no VG from part of its devices")
	assert.Empty(t, mutations(h))

	r = apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sde"), initres.Options{Force: true})
	require.NoError(t, r.Err())
	assert.Equal(t, []string{"/dev/sdb", "/dev/sde"}, vgPVs(t, h, "pool"))
	require.Len(t, r.Events, 1)
	assert.Equal(t, initres.ReasonVGCreated, r.Events[0].Reason)
	assert.Contains(t, r.Events[0].Message, "forced over existing signatures on /dev/sde (ntfs)")
}

func TestGrowOverSignatures(t *testing.T) {
	h := host(t)
	require.NoError(t, h.CreateVG(ctx, "pool", []string{"/dev/sdb"}, false))
	r := apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdc", "/dev/sde"), initres.Options{})
	require.Len(t, r.Problems, 1, "the refused device is reported")
	assert.Equal(t, []string{"/dev/sdb", "/dev/sdc"}, vgPVs(t, h, "pool"), "the accepted device is added all the same")
	require.Len(t, r.Events, 2)
	assert.Equal(t, initres.ReasonExtendVGFailed, r.Events[0].Reason)
	assert.Contains(t, r.Events[0].Message, "/dev/sde carries ntfs")
	assert.Equal(t, initres.ReasonVGExtended, r.Events[1].Reason)

	h.ResetCalls()
	r = apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdc", "/dev/sde"), initres.Options{Force: true})
	require.NoError(t, r.Err())
	assert.Equal(t, []string{"/dev/sdb", "/dev/sdc", "/dev/sde"}, vgPVs(t, h, "pool"))
	assert.Equal(t, []string{"CreatePV /dev/sde", "ExtendVG pool /dev/sde"}, mutations(h), "pvcreate --force, then vgextend")
	assert.Contains(t, r.Events[0].Message, "forced over existing signatures on /dev/sde (ntfs)")
}

func TestRefusals(t *testing.T) {
	h := host(t)
	require.NoError(t, h.Mkfs(ctx, "/dev/sdc", "ext4", nil))
	require.NoError(t, h.MakeDir(ctx, "/data"))
	require.NoError(t, h.Mount(ctx, "/dev/sdc", "/data", "ext4", nil))
	for dev, want := range map[string]string{
		"/dev/nope": "device /dev/nope not found",
		"/dev/sdc":  "device /dev/sdc is mounted on /data",
		"/dev/sdf":  "device /dev/sdf has partitions /dev/sdf1; list a partition instead",
		"/dev/sdg":  "device /dev/sdg is read-only",
	} {
		r := apply(t, h, vgSpec("pool", dev), initres.Options{Force: true})
		require.Len(t, r.Problems, 1, dev)
		assert.Contains(t, r.Problems[0].Message, want)
		assert.Contains(t, r.Err().Error(), "volume group pool: ")
	}
	r := apply(t, h, vgSpec("-bad", "/dev/sdb"), initres.Options{})
	require.Len(t, r.Problems, 1)
	assert.Contains(t, r.Problems[0].Message, "must not start with '-'")
	assert.Nil(t, vgPVs(t, h, "pool"))
}

func TestHostFailures(t *testing.T) {
	h := host(t)
	h.FailNth("CreateVG", 1, nil)
	r := apply(t, h, vgSpec("pool", "/dev/sdb"), initres.Options{})
	require.Len(t, r.Problems, 1)
	assert.Equal(t, initres.OpCreateVG, r.Problems[0].Op)
	assert.Contains(t, r.Events[0].Message, "create volume group pool from /dev/sdb")
	assert.NoError(t, apply(t, h, vgSpec("pool", "/dev/sdb"), initres.Options{}).Err(), "a retry succeeds")

	h.FailNth("ExtendVG", 1, nil)
	r = apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sdc"), initres.Options{})
	require.Len(t, r.Problems, 1)
	assert.Equal(t, initres.OpExtendVG, r.Problems[0].Op)

	h.FailNth("CreatePV", 1, nil)
	r = apply(t, h, vgSpec("pool", "/dev/sdb", "/dev/sde"), initres.Options{Force: true})
	require.Len(t, r.Problems, 1)
	assert.Equal(t, initres.OpCreatePV, r.Problems[0].Op)

	// A device the discovery did not list is probed directly.
	h.FailNth("Signatures", 1, nil)
	r = apply(t, h, vgSpec("pool2", "/dev/unlisted"), initres.Options{})
	require.Len(t, r.Problems, 1)
	assert.Equal(t, initres.OpSignatures, r.Problems[0].Op)

	mp := mpSpec(v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/a", Device: "/dev/sdc"})
	for _, op := range []string{initres.OpMkfs, initres.OpMakeDir, initres.OpMount} {
		h.FailNth(op, 1, nil)
		r = apply(t, h, mp, initres.Options{})
		require.Len(t, r.Problems, 1, op)
		assert.Equal(t, op, r.Problems[0].Op)
		assert.Equal(t, initres.ReasonMountPointFail, r.Events[0].Reason)
	}
	require.NoError(t, apply(t, h, mp, initres.Options{}).Err(), "a retry succeeds")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	r = initres.Apply(cancelled, h, discovery.Snapshot{}, v1alpha1.ResourceToBeInited{
		VGs:         []v1alpha1.VGToBeInited{{Name: "x", Devices: []string{"/dev/sdc"}}},
		MountPoints: []v1alpha1.MountPointToBeInited{{Path: "/mnt/open-local/x", Device: "/dev/sdc"}}}, initres.Options{})
	assert.Len(t, r.Problems, 2)
	assert.False(t, r.Changed)
}

func TestUnlistedDevice(t *testing.T) {
	h := host(t)
	// Discovery restricted to other names: the VG's device is probed directly.
	d, err := discovery.New(h, discovery.Options{DeviceFilter: nil, MountRoot: "/mnt/open-local"})
	require.NoError(t, err)
	snap, err := d.Discover(ctx)
	require.NoError(t, err)
	snap.Storage.Devices = nil
	r := initres.Apply(ctx, h, snap, vgSpec("pool", "/dev/sde"), initres.Options{})
	require.Len(t, r.Problems, 1)
	assert.Contains(t, r.Problems[0].Message, "carries ntfs")
	r = initres.Apply(ctx, h, snap, vgSpec("pool", "/dev/sdc"), initres.Options{})
	require.NoError(t, r.Err())
}

func mpSpec(mps ...v1alpha1.MountPointToBeInited) v1alpha1.ResourceToBeInited {
	return v1alpha1.ResourceToBeInited{MountPoints: mps}
}

func TestMountPoints(t *testing.T) {
	h := host(t)
	spec := mpSpec(
		v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/ssd0", Device: "/dev/sdb"},
		v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/ssd1", Device: "/dev/sdc", FsType: v1alpha1.FSTypeXFS, Options: []string{"noatime"}},
	)
	r := apply(t, h, spec, initres.Options{})
	require.NoError(t, r.Err())
	assert.Equal(t, []initres.Event{
		{Type: corev1.EventTypeNormal, Reason: initres.ReasonMountPointReady, Message: "/dev/sdb formatted as ext4 and mounted on /mnt/open-local/ssd0"},
		{Type: corev1.EventTypeNormal, Reason: initres.ReasonMountPointReady, Message: "/dev/sdc formatted as xfs and mounted on /mnt/open-local/ssd1"},
	}, r.Events)
	mounts, err := h.ListMounts(ctx)
	require.NoError(t, err)
	require.Len(t, mounts, 2)
	assert.Equal(t, hostexec.MountInfo{Source: "/dev/sdb", Target: "/mnt/open-local/ssd0", FSType: "ext4", Options: []string{"rw"}}, mounts[0])
	assert.Equal(t, hostexec.MountInfo{Source: "/dev/sdc", Target: "/mnt/open-local/ssd1", FSType: "xfs", Options: []string{"rw", "noatime"}}, mounts[1])

	h.ResetCalls()
	r = apply(t, h, spec, initres.Options{})
	require.NoError(t, r.Err())
	assert.Empty(t, mutations(h), "mounted already: nothing to do")

	// After a reboot the filesystem is there but not mounted: mount, do not format.
	require.NoError(t, h.Unmount(ctx, "/mnt/open-local/ssd0"))
	h.ResetCalls()
	r = apply(t, h, spec, initres.Options{})
	require.NoError(t, r.Err())
	assert.Equal(t, []string{"MakeDir /mnt/open-local/ssd0", "Mount /dev/sdb /mnt/open-local/ssd0"}, mutations(h))
	assert.Equal(t, "/dev/sdb mounted on /mnt/open-local/ssd0", r.Events[0].Message)
}

func TestMountPointRefusals(t *testing.T) {
	h := host(t)
	require.NoError(t, h.Mkfs(ctx, "/dev/sdc", "ext4", nil))
	require.NoError(t, h.MakeDir(ctx, "/mnt/open-local/busy"))
	require.NoError(t, h.Mount(ctx, "/dev/sdc", "/mnt/open-local/busy", "ext4", nil))
	for _, tc := range []struct {
		mp   v1alpha1.MountPointToBeInited
		want string
	}{
		{v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/a", Device: "/dev/sde"}, "device /dev/sde carries ntfs signatures; only blank devices are formatted"},
		{v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/a", Device: "/dev/sdc", FsType: v1alpha1.FSTypeXFS}, "device /dev/sdc is mounted on /mnt/open-local/busy"},
		{v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/busy", Device: "/dev/sdb"}, "/mnt/open-local/busy already has /dev/sdc mounted"},
		{v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/a", Device: "/dev/sdd"}, "device /dev/sdd is a physical volume of volume group other"},
		{v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/a", Device: "/dev/nope"}, "device /dev/nope not found"},
		{v1alpha1.MountPointToBeInited{Path: "relative", Device: "/dev/sdb"}, "must be an absolute path"},
		{v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/a", Device: "/dev/sdb", Options: []string{"bad,option"}}, "bad,option"},
		{v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/a", Device: "/dev/sdb", FsType: "btrfs"}, "btrfs"},
	} {
		h.ResetCalls()
		r := apply(t, h, mpSpec(tc.mp), initres.Options{})
		require.Len(t, r.Problems, 1, tc.want)
		assert.Contains(t, r.Problems[0].Message, tc.want)
		assert.Equal(t, "mount point "+tc.mp.Path, r.Problems[0].Resource)
		require.NotEmpty(t, r.Events)
		assert.Equal(t, initres.ReasonMountPointFail, r.Events[len(r.Events)-1].Reason)
	}
	// A device formatted with another filesystem is not reformatted.
	require.NoError(t, h.Mkfs(ctx, "/dev/sdb", "xfs", nil))
	r := apply(t, h, mpSpec(v1alpha1.MountPointToBeInited{Path: "/mnt/open-local/b", Device: "/dev/sdb"}), initres.Options{})
	require.Len(t, r.Problems, 1)
	assert.Contains(t, r.Problems[0].Message, "carries xfs signatures")
}

func TestMountPointOutsideRoot(t *testing.T) {
	h := host(t)
	r := apply(t, h, mpSpec(v1alpha1.MountPointToBeInited{Path: "/data/x", Device: "/dev/sdb"}), initres.Options{MountRoot: "/mnt/open-local"})
	require.NoError(t, r.Err(), "mounted all the same")
	require.Len(t, r.Events, 2)
	assert.Equal(t, corev1.EventTypeWarning, r.Events[1].Type)
	assert.Equal(t, initres.ReasonMountOutsideRoot, r.Events[1].Reason)
	assert.Contains(t, r.Events[1].Message, "not directly under /mnt/open-local")
}

func TestVGThenMountPoint(t *testing.T) {
	h := host(t)
	// The same device in a VG and under a mount point (the CRD forbids it):
	// the VG takes it and the mount point is refused, not formatted over it.
	spec := vgSpec("pool", "/dev/sdb")
	spec.MountPoints = []v1alpha1.MountPointToBeInited{{Path: "/mnt/open-local/a", Device: "/dev/sdb"}}
	r := apply(t, h, spec, initres.Options{})
	require.Len(t, r.Problems, 1)
	assert.Contains(t, r.Problems[0].Message, "device /dev/sdb is a physical volume of volume group pool")
	assert.Equal(t, []string{"/dev/sdb"}, vgPVs(t, h, "pool"))
}
