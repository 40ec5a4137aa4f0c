package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/e2e/cluster"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
)

func TestSimnodeRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	sock := "--csi-endpoint=unix://" + filepath.Join(dir, "csi.sock")
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no endpoint":    {[]string{"simnode", "--nodename=n"}, "--csi-endpoint is required"},
		"bad endpoint":   {[]string{"simnode", "--nodename=n", "--csi-endpoint=tcp://10.0.0.1:1"}, "--endpoint"},
		"bad orphan gc":  {[]string{"simnode", "--nodename=n", sock, "--orphan-gc=sometimes"}, "--orphan-gc"},
		"missing config": {[]string{"simnode", "--nodename=n", sock, "--sim-config=" + filepath.Join(dir, "nope.yaml")}, "--sim-config"},
		"bad strategy":   {[]string{"simnode", "--nodename=n", sock, "--strategy=random"}, "--strategy"},
		"short grace":    {[]string{"simnode", "--nodename=n", sock, "--orphan-grace=1m", "--kubeconfig=" + writeDummyKubeconfig(t)}, "orphan grace"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := runCLI(t, "", tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// writeDummyKubeconfig points at a closed port: enough for the options to
// be checked, never contacted.
func writeDummyKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	return path
}

// TestSimnodeSharesOneHost runs simnode against a real kube-apiserver: the
// VG the agent creates from resourceToBeInited is where the CSI driver
// provisions, and the LV the driver creates shows in the agent's report —
// both halves act on the same simulated host. One metrics endpoint serves
// both halves' metrics.
func TestSimnodeSharesOneHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := cluster.Start(ctx, t, cluster.Options{})
	require.NoError(t, err)
	require.NoError(t, c.ApplyYAML(ctx, filepath.Join("..", "..", "deploy", "crds", "csi.aliyun.com_nodelocalstorages.yaml")))
	ol := versioned.NewForConfigOrDie(c.AdminConfig())
	const node = "sim-0"
	_, err = ol.CsiV1alpha1().NodeLocalStorages().Create(ctx, &v1alpha1.NodeLocalStorage{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: v1alpha1.NodeLocalStorageSpec{
			NodeName:           node,
			ListConfig:         v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+"}}},
			ResourceToBeInited: v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: "open-local-pool-0", Devices: []string{"/dev/sdb"}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	dir := t.TempDir()
	simCfg := filepath.Join(dir, "sim.yaml")
	require.NoError(t, os.WriteFile(simCfg, []byte("devices:\n- {name: /dev/sdb, size: 20Gi, media: ssd}\n"), 0o600))
	sock := filepath.Join(dir, "csi.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	metricsAddr := l.Addr().String()
	require.NoError(t, l.Close())

	root := newRoot()
	root.SetArgs([]string{"simnode", "--nodename=" + node, "--kubeconfig=" + c.Kubeconfig(), "--sim-config=" + simCfg,
		"--csi-endpoint=unix://" + sock, "--metrics-address=" + metricsAddr, "--interval=200ms", "--init-backoff=200ms"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	poll := func(what string, cond func(ctx context.Context) (bool, error)) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, cond)
		require.NoError(t, err, what)
	}
	vgLVs := func(ctx context.Context) (map[string]bool, bool) {
		nls, err := ol.CsiV1alpha1().NodeLocalStorages().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return nil, false
		}
		for _, vg := range nls.Status.NodeStorageInfo.VolumeGroups {
			if vg.Name == "open-local-pool-0" {
				lvs := map[string]bool{}
				for _, lv := range vg.LogicalVolumes {
					lvs[lv.Name] = true
				}
				return lvs, true
			}
		}
		return nil, false
	}
	poll("the agent's VG in the NodeLocalStorage", func(ctx context.Context) (bool, error) {
		_, ok := vgLVs(ctx)
		return ok, nil
	})

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctrl := csipb.NewControllerClient(conn)
	var vol *csipb.Volume
	poll("CreateVolume in the agent's VG", func(ctx context.Context) (bool, error) {
		r, err := ctrl.CreateVolume(ctx, &csipb.CreateVolumeRequest{
			Name:          "local-shared-host",
			CapacityRange: &csipb.CapacityRange{RequiredBytes: 2 << 30},
			VolumeCapabilities: []*csipb.VolumeCapability{{
				AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
				AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
			}},
			Parameters: map[string]string{"volumeType": "LVM"},
		})
		if err != nil {
			return false, nil // the driver has not served yet
		}
		vol = r.GetVolume()
		return true, nil
	})
	assert.Equal(t, node, vol.GetAccessibleTopology()[0].GetSegments()["kubernetes.io/hostname"])
	poll("the driver's LV in the agent's report", func(ctx context.Context) (bool, error) {
		lvs, _ := vgLVs(ctx)
		return lvs[vol.GetVolumeId()], nil
	})

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(body), "open_local_agent_")
	assert.Regexp(t, `open_local_csi_rpc_total\{[^}]*method="[^"]*CreateVolume"[^}]*\} 1`, string(body), "CSI metrics on the shared endpoint")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("simnode did not stop after its context ended")
	}
}
