package agent

import (
	"context"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/realhost"
	"github.com/open-local/open-local/hostexec/realhost/looptest"
)

const loopSize = 64 * core.MiB

// realHost attaches n loop devices and returns a real host that sees only
// them, and a device regexp that matches only them.
func realHost(t *testing.T, n int) (*realhost.Host, *looptest.Loops, string) {
	t.Helper()
	loops := looptest.New(t, n, loopSize)
	h, err := realhost.New(realhost.Config{
		ExtraLVMArgs:       loops.LVMArgs(),
		Env:                loops.Env(),
		IncludeLoopDevices: true,
		NoActivation:       !loops.HasDeviceMapper,
	})
	require.NoError(t, err)
	var names []string
	for _, d := range loops.Devices {
		names = append(names, strings.TrimPrefix(d, "/dev/"))
	}
	return h, loops, strings.Join(names, "|")
}

func TestRealDiscovery(t *testing.T) {
	h, loops, re := realHost(t, 2)
	ctx := context.Background()
	require.NoError(t, h.CreateVG(ctx, "ol-agent-disc", loops.Devices[:1], false))
	if loops.HasDeviceMapper {
		require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "ol-agent-disc", Name: "local-a", SizeBytes: 8 * core.MiB}))
	}
	d, err := discovery.New(h, discovery.Options{DeviceFilter: regexpMust(t, re)})
	require.NoError(t, err)
	snap, err := d.Discover(ctx)
	require.NoError(t, err)
	require.Len(t, snap.Storage.Devices, 2, "exactly the test's loop devices")
	assert.Equal(t, loops.Devices[0], snap.Storage.Devices[0].Name)
	assert.Equal(t, loopSize, snap.Storage.Devices[0].SizeBytes)
	assert.Contains(t, snap.Storage.Devices[0].Signatures, "LVM2_member")
	assert.Empty(t, snap.Storage.Devices[1].Signatures)
	require.Len(t, snap.Storage.VGs, 1, "the isolated lvm.conf sees only the test's devices")
	vg := snap.Storage.VGs[0]
	assert.Equal(t, "ol-agent-disc", vg.Name)
	assert.Equal(t, []string{loops.Devices[0]}, pvNamesOf(vg))
	assert.Equal(t, 60*core.MiB, vg.TotalBytes, "64 MiB less LVM's first MiB, in 4 MiB extents")
	info := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes})
	assert.Equal(t, uint64(60*core.MiB), info.VolumeGroups[0].Allocatable)
	assert.Equal(t, v1alpha1.StorageReady, info.State.Type)
}

// TestRealAgent runs the agent on real LVM: it creates a VG from a loop
// device, grows it when a second one is listed, formats and mounts a third
// under the mount root, and reports all of it.
func TestRealAgent(t *testing.T) {
	h, loops, re := realHost(t, 3)
	canMount := true
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		canMount = false
	}
	root := t.TempDir()
	// Registered after the loop devices' cleanup, so it runs before it.
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(root, "disk0"), 0) })

	vgName := "ol-agent-" + path.Base(loops.Devices[0])
	spec := v1alpha1.NodeLocalStorageSpec{
		ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"ol-agent-.*"}},
			MountPoints: v1alpha1.ListFilter{Include: []string{".*"}}},
		ResourceToBeInited: v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: vgName, Devices: []string{loops.Devices[0]}}}},
	}
	if canMount {
		spec.ResourceToBeInited.MountPoints = []v1alpha1.MountPointToBeInited{{Path: filepath.Join(root, "disk0"), Device: loops.Devices[2]}}
	}
	api := newFakeAPI(newNLS(spec))
	opts := fastOptions()
	opts.Interval = 200 * time.Millisecond // a real LVM report takes tens of ms
	opts.DeviceRegexp = re
	opts.MountRoot = root
	ah := run(t, h, opts, api)

	n := ah.waitStatus("VG created", func(n *v1alpha1.NodeLocalStorage) bool {
		return vgInStatus(n, vgName) != nil && conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	vg := vgInStatus(n, vgName)
	assert.Equal(t, []string{loops.Devices[0]}, vg.PhysicalVolumes)
	assert.Equal(t, uint64(60*core.MiB), vg.Total)
	assert.Equal(t, []string{vgName}, n.Status.FilteredStorageInfo.VolumeGroups)
	ah.waitEvent(initres.ReasonVGCreated, corev1.EventTypeNormal, "created volume group "+vgName)
	if canMount {
		require.Len(t, n.Status.NodeStorageInfo.MountPoints, 1)
		mp := n.Status.NodeStorageInfo.MountPoints[0]
		assert.Equal(t, filepath.Join(root, "disk0"), mp.Name)
		assert.Equal(t, "ext4", mp.FsType)
		assert.Positive(t, mp.Total)
		assert.Equal(t, []string{mp.Name}, n.Status.FilteredStorageInfo.MountPoints)
	} else {
		t.Log("mkfs.ext4 is not installed (e2fsprogs): mount point initialisation not exercised")
	}

	api.update(t, func(n *v1alpha1.NodeLocalStorage) {
		n.Spec.ResourceToBeInited.VGs[0].Devices = []string{loops.Devices[0], loops.Devices[1]}
	})
	n = ah.waitStatus("VG grown", func(n *v1alpha1.NodeLocalStorage) bool {
		vg := vgInStatus(n, vgName)
		return vg != nil && len(vg.PhysicalVolumes) == 2
	})
	assert.Equal(t, uint64(120*core.MiB), vgInStatus(n, vgName).Total)
	ah.waitEvent(initres.ReasonVGExtended, corev1.EventTypeNormal, "extended volume group "+vgName+" with "+loops.Devices[1])
}

func pvNamesOf(vg core.VolumeGroup) []string {
	var out []string
	for _, pv := range vg.PVs {
		out = append(out, pv.Name)
	}
	return out
}

func regexpMust(t *testing.T, re string) *regexp.Regexp {
	t.Helper()
	r, err := regexp.Compile(re)
	require.NoError(t, err)
	return r
}
