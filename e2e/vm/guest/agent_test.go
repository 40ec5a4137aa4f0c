//go:build vmguest

package guest

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/open-local/open-local/agent"
	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
)

const agentNode = "vm-node"

// TestAgent runs the agent's discovery and its resourceToBeInited handling
// on the VM's virtio disks with real LVM and checks both against what sysfs,
// wipefs and the lvm tool say.
func TestAgent(t *testing.T) {
	disks := RequireDisks(t)
	vgDisk := ClaimDisk(t, disks.VG)
	extraDisk := ClaimDisk(t, disks.Extra)
	h, ctx := NewHost(t)

	t.Run("discovery_matches_sysfs_and_lvm", func(t *testing.T) {
		// A VG made with the lvm tool, not by the agent: discovery must
		// report it as lvm does.
		Run(t, "lvm", "vgcreate", "-y", "ol-agent-disc", vgDisk)
		t.Cleanup(func() { _, _ = Tool("lvm", "vgremove", "-ff", "-y", "ol-agent-disc") })
		Run(t, "lvm", "lvcreate", "-y", "-L", "64m", "-n", "local-disc", "ol-agent-disc")

		d, err := discovery.New(h, discovery.Options{DeviceFilter: regexp.MustCompile(`vd[a-z]+`)})
		require.NoError(t, err)
		snap, err := d.Discover(ctx)
		require.NoError(t, err)

		sysDisks, err := ListDisks()
		require.NoError(t, err)
		byName := map[string]core.BlockDevice{}
		for _, bd := range snap.Storage.Devices {
			byName[bd.Name] = bd
		}
		for _, sd := range sysDisks {
			bd, ok := byName[sd.Path]
			if !assert.True(t, ok, "discovery lists %s (serial %s)", sd.Path, sd.Serial) {
				continue
			}
			assert.Equal(t, sd.SizeBytes, bd.SizeBytes, "%s: size from /sys/block/%s/size", sd.Path, sd.Name)
			wantLVM := sd.Path == vgDisk
			assert.Equal(t, wantLVM, containsString(bd.Signatures, "LVM2_member"), "%s: LVM2_member signature (discovery says %v, wipefs says %v)", sd.Path, bd.Signatures, Signatures(t, sd.Path))
			if sd.Path == extraDisk {
				assert.Empty(t, bd.Signatures, "the extra disk is blank")
			}
		}

		vg := findDiscoveredVG(t, snap, "ol-agent-disc")
		size, free := lvmVGBytes(t, "ol-agent-disc")
		assert.Equal(t, size, vg.TotalBytes, "VG size as vgs reports it")
		assert.Equal(t, free, vg.FreeBytes, "VG free space as vgs reports it")
		require.Len(t, vg.PVs, 1)
		assert.Equal(t, vgDisk, vg.PVs[0].Name)
		lv, ok := vg.FindLV("local-disc")
		require.True(t, ok, "discovery lists the LV lvcreate made")
		assert.Equal(t, int64(64*core.MiB), lv.SizeBytes)

		info := discovery.NodeStorageInfo(snap, discovery.StatusOptions{OwnedLVPrefixes: core.DefaultOwnedLVPrefixes})
		var got *v1alpha1.VolumeGroup
		for i := range info.VolumeGroups {
			if info.VolumeGroups[i].Name == "ol-agent-disc" {
				got = &info.VolumeGroups[i]
			}
		}
		require.NotNil(t, got, "the VG is in nodeStorageInfo")
		assert.Equal(t, uint64(size), got.Total)
		// local- is an owned prefix: the LV is Open-Local's and still counts as allocatable.
		assert.Equal(t, uint64(size), got.Allocatable)

		Run(t, "lvm", "vgremove", "-ff", "-y", "ol-agent-disc")
		Run(t, "lvm", "pvremove", "-y", vgDisk)
		Run(t, "wipefs", "-a", vgDisk)
	})

	t.Run("resourceToBeInited_creates_then_extends_the_VG", func(t *testing.T) {
		const vgName = "ol-agent-vm"
		nls := &v1alpha1.NodeLocalStorage{
			ObjectMeta: metav1.ObjectMeta{Name: agentNode, Generation: 1},
			Spec: v1alpha1.NodeLocalStorageSpec{
				NodeName:           agentNode,
				ListConfig:         v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"ol-agent-.*"}}},
				ResourceToBeInited: v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: vgName, Devices: []string{vgDisk}}}},
			},
		}
		ol := olfake.NewSimpleClientset(nls)
		kube := kubefake.NewClientset()
		opts := agent.Options{
			NodeName:       agentNode,
			Interval:       time.Second,
			LeaseInterval:  5 * time.Second,
			InitBackoff:    time.Second,
			InitBackoffMax: 5 * time.Second,
			DeviceRegexp:   `vd[a-z]+`,
			MountRoot:      t.TempDir(),
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- agent.Run(runCtx, opts, h, kube, ol) }()
		// Registered after ClaimDisk, so the agent stops before the disks are wiped.
		t.Cleanup(func() {
			stop()
			select {
			case err := <-done:
				assert.NoError(t, err, "agent.Run after its context ended")
			case <-time.After(30 * time.Second):
				t.Error("the agent did not stop within 30 s of its context ending")
			}
			_, _ = Tool("lvm", "vgremove", "-ff", "-y", vgName)
		})

		get := func() (*v1alpha1.NodeLocalStorage, error) {
			return ol.CsiV1alpha1().NodeLocalStorages().Get(context.Background(), agentNode, metav1.GetOptions{})
		}
		// waitPVs waits until the status shows the VG on n PVs.
		waitPVs := func(what string, n int) {
			t.Helper()
			start := time.Now()
			Eventually(t, 90*time.Second, 200*time.Millisecond, what, func() (bool, error) {
				nls, err := get()
				if err != nil {
					return false, err
				}
				vg := statusVG(nls, vgName)
				return vg != nil && len(vg.PhysicalVolumes) == n, fmt.Errorf("status %+v", nls.Status.NodeStorageInfo.VolumeGroups)
			})
			t.Logf("%s: %.1fs", what, time.Since(start).Seconds())
		}
		waitPVs("the agent creates "+vgName+" and reports it", 1)
		pvs := lvmPVsOf(t, vgName)
		assert.Equal(t, []string{vgDisk}, pvs, "pvs shows the VG on the VG disk")
		size, _ := lvmVGBytes(t, vgName)
		n, err := get()
		require.NoError(t, err)
		assert.Equal(t, uint64(size), statusVG(n, vgName).Total, "the reported size is what vgs says")
		assert.Equal(t, []string{vgName}, n.Status.FilteredStorageInfo.VolumeGroups)

		// Add the extra disk to the list: the agent extends the VG.
		n.Spec.ResourceToBeInited.VGs[0].Devices = []string{vgDisk, extraDisk}
		n.Generation++
		_, err = ol.CsiV1alpha1().NodeLocalStorages().Update(context.Background(), n, metav1.UpdateOptions{})
		require.NoError(t, err)
		waitPVs("the agent extends "+vgName+" with "+extraDisk, 2)
		assert.ElementsMatch(t, []string{vgDisk, extraDisk}, lvmPVsOf(t, vgName), "pvs shows both disks in the VG")
		grown, _ := lvmVGBytes(t, vgName)
		assert.Greater(t, grown, size, "vgextend grew the VG")
		assert.InDelta(t, float64(size+disks.Extra.SizeBytes), float64(grown), float64(8*core.MiB), "the VG grew by about the extra disk's size")
		n, err = get()
		require.NoError(t, err)
		assert.Equal(t, uint64(grown), statusVG(n, vgName).Total, "the reported size follows vgextend")
	})
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func findDiscoveredVG(t *testing.T, snap discovery.Snapshot, name string) core.VolumeGroup {
	t.Helper()
	for _, vg := range snap.Storage.VGs {
		if vg.Name == name {
			return vg
		}
	}
	t.Fatalf("discovery does not list VG %s: %+v", name, snap.Storage.VGs)
	return core.VolumeGroup{}
}

func statusVG(n *v1alpha1.NodeLocalStorage, name string) *v1alpha1.VolumeGroup {
	for i := range n.Status.NodeStorageInfo.VolumeGroups {
		if n.Status.NodeStorageInfo.VolumeGroups[i].Name == name {
			return &n.Status.NodeStorageInfo.VolumeGroups[i]
		}
	}
	return nil
}

// lvmVGBytes is a VG's size and free space in bytes as vgs reports them.
func lvmVGBytes(t *testing.T, vg string) (size, free int64) {
	t.Helper()
	out := Run(t, "lvm", "vgs", "--noheadings", "--nosuffix", "--units", "b", "-o", "vg_size,vg_free", vg)
	f := strings.Fields(out)
	require.Len(t, f, 2, "vgs output %q", out)
	size, err := strconv.ParseInt(f[0], 10, 64)
	require.NoError(t, err)
	free, err = strconv.ParseInt(f[1], 10, 64)
	require.NoError(t, err)
	return size, free
}

// lvmPVsOf lists a VG's PVs as pvs reports them.
func lvmPVsOf(t *testing.T, vg string) []string {
	t.Helper()
	out := Run(t, "lvm", "pvs", "--noheadings", "-o", "pv_name", "--select", "vg_name="+vg)
	return strings.Fields(out)
}
