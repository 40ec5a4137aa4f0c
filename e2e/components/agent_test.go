package components

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/open-local/open-local/agent"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
)

const agentNodes = 3

// TestAgentsReportAndReact runs several agents, each on its own simulated host
// and as the open-local-agent ServiceAccount with deploy/rbac/agent.yaml: each
// creates its VG from resourceToBeInited, reports status with the filtered
// list, keeps a Lease, grows the VG when a device is added to the list, and
// shows an LV removed out of band.
func TestAgentsReportAndReact(t *testing.T) {
	c := setup(t, "deploy/rbac/agent.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin := c.Client()
	adminOL := versioned.NewForConfigOrDie(c.AdminConfig())
	saCfg, err := c.ServiceAccountConfig(ctx, "kube-system", "open-local-agent")
	require.NoError(t, err)
	kube := kubernetes.NewForConfigOrDie(saCfg)
	ol := versioned.NewForConfigOrDie(saCfg)

	hosts := make([]*simhost.Host, agentNodes)
	done := make(chan error, agentNodes)
	for i := range hosts {
		name := fmt.Sprintf("agent-node-%d", i)
		_, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
		t.Cleanup(func() {
			_ = admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
			_ = adminOL.CsiV1alpha1().NodeLocalStorages().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
		// The controller's job, done by hand here: one NLS per node.
		_, err = adminOL.CsiV1alpha1().NodeLocalStorages().Create(ctx, &v1alpha1.NodeLocalStorage{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.NodeLocalStorageSpec{
				NodeName: name,
				ListConfig: v1alpha1.ListConfig{
					VGs:     v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+"}},
					Devices: v1alpha1.ListFilter{Include: []string{"/dev/sd[d-z]"}},
				},
				ResourceToBeInited: v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: "open-local-pool-0", Devices: []string{"/dev/sdb"}}}},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		hosts[i] = simhost.MustNew(simhost.Config{Devices: []simhost.DeviceConfig{
			{Name: "/dev/sdb", Size: "100Gi", Media: "ssd"},
			{Name: "/dev/sdc", Size: "50Gi", Media: "ssd"},
			{Name: "/dev/sdd", Size: "200Gi", Media: "hdd"},
		}})
		opts := agent.DefaultOptions()
		opts.NodeName = name
		opts.Namespace = "kube-system"
		opts.Interval = 500 * time.Millisecond
		opts.LeaseInterval = time.Second
		opts.Registerer = prometheus.NewRegistry()
		go func(h hostexec.Host) { done <- agent.Run(ctx, opts, h, kube, ol) }(hosts[i])
	}

	vgOf := func(nls *v1alpha1.NodeLocalStorage) (v1alpha1.VolumeGroup, bool) {
		for _, vg := range nls.Status.NodeStorageInfo.VolumeGroups {
			if vg.Name == "open-local-pool-0" {
				return vg, true
			}
		}
		return v1alpha1.VolumeGroup{}, false
	}
	start := time.Now()
	for i := range hosts {
		name := fmt.Sprintf("agent-node-%d", i)
		waitFor(t, name+" reports its new VG", 60*time.Second, func(ctx context.Context) (bool, error) {
			nls, err := adminOL.CsiV1alpha1().NodeLocalStorages().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			vg, ok := vgOf(nls)
			return ok && vg.Total > 0 && len(nls.Status.FilteredStorageInfo.VolumeGroups) == 1 &&
				len(nls.Status.FilteredStorageInfo.Devices) == 1 && nls.Status.FilteredStorageInfo.Devices[0] == "/dev/sdd", nil
		})
		waitFor(t, name+" Lease", 30*time.Second, func(ctx context.Context) (bool, error) {
			_, err := admin.CoordinationV1().Leases("kube-system").Get(ctx, agent.LeaseName(name), metav1.GetOptions{})
			return err == nil, nil
		})
	}
	t.Logf("%d agents created their VGs and reported status in %v", agentNodes, time.Since(start))

	// Grow: a device added to resourceToBeInited joins the VG (vgextend).
	name := "agent-node-0"
	nls, err := adminOL.CsiV1alpha1().NodeLocalStorages().Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	before, _ := vgOf(nls)
	nls.Spec.ResourceToBeInited.VGs[0].Devices = append(nls.Spec.ResourceToBeInited.VGs[0].Devices, "/dev/sdc")
	_, err = adminOL.CsiV1alpha1().NodeLocalStorages().Update(ctx, nls, metav1.UpdateOptions{})
	require.NoError(t, err)
	start = time.Now()
	waitFor(t, "the VG grown by /dev/sdc", 30*time.Second, func(ctx context.Context) (bool, error) {
		nls, err := adminOL.CsiV1alpha1().NodeLocalStorages().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		vg, _ := vgOf(nls)
		return vg.Total > before.Total && len(vg.PhysicalVolumes) == 2, nil
	})
	t.Logf("VG growth visible in %v", time.Since(start))

	// Out of band: an LV made and then removed by hand shows in status.
	h := hosts[1]
	require.NoError(t, h.CreateLV(ctx, hostexec.LVSpec{VG: "open-local-pool-0", Name: "manual", SizeBytes: 10 << 30}))
	lvShown := func(want bool) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			nls, err := adminOL.CsiV1alpha1().NodeLocalStorages().Get(ctx, "agent-node-1", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			vg, _ := vgOf(nls)
			found := false
			for _, lv := range vg.LogicalVolumes {
				found = found || lv.Name == "manual"
			}
			// A foreign LV reduces allocatable below the VG size.
			return found == want && (vg.Allocatable < vg.Total) == want, nil
		}
	}
	start = time.Now()
	waitFor(t, "the hand-made LV in status", 10*time.Second, lvShown(true))
	t.Logf("out-of-band LV creation visible in %v", time.Since(start))
	require.NoError(t, h.RemoveLV(ctx, "open-local-pool-0", "manual"))
	start = time.Now()
	waitFor(t, "the removed LV gone from status", 10*time.Second, lvShown(false))
	t.Logf("out-of-band LV removal visible in %v", time.Since(start))

	cancel()
	for range hosts {
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("an agent did not stop after its context was cancelled")
		}
	}
}
