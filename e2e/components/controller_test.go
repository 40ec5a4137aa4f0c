package components

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/controller"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
)

var listOne = metav1.ListOptions{Limit: 1}

const controllerNodes = 100

// TestControllerConvergesOnRealAPIServer runs the controller as its own
// ServiceAccount with deploy/rbac/controller.yaml over 100 nodes: it creates one
// NodeLocalStorage per node, re-derives them when the init config changes and
// deletes them with their nodes. Times to converge are logged.
func TestControllerConvergesOnRealAPIServer(t *testing.T) {
	c := setup(t, "deploy/rbac/controller.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin := c.Client()
	adminOL := versioned.NewForConfigOrDie(c.AdminConfig())

	nlsc := &v1alpha1.NodeLocalStorageInitConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "open-local"},
		Spec: v1alpha1.NodeLocalStorageInitConfigSpec{
			GlobalConfig: v1alpha1.StorageConfig{
				ListConfig:         v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+"}}},
				ResourceToBeInited: v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: "open-local-pool-0", Devices: []string{"/dev/vdb"}}}},
			},
			NodesConfig: []v1alpha1.NodeConfig{{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"storage": "ssd"}},
				StorageConfig: v1alpha1.StorageConfig{
					ListConfig: v1alpha1.ListConfig{Devices: v1alpha1.ListFilter{Include: []string{"/dev/nvme[0-9]n1"}}},
				},
			}},
		},
	}
	_, err := adminOL.CsiV1alpha1().NodeLocalStorageInitConfigs().Create(ctx, nlsc, metav1.CreateOptions{})
	require.NoError(t, err)

	for i := 0; i < controllerNodes; i++ {
		labels := map[string]string{"kubernetes.io/hostname": nodeName(i)}
		if i%10 == 0 {
			labels["storage"] = "ssd"
		}
		_, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i), Labels: labels}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for i := 0; i < controllerNodes; i++ {
			_ = admin.CoreV1().Nodes().Delete(context.Background(), nodeName(i), metav1.DeleteOptions{})
		}
		_ = adminOL.CsiV1alpha1().NodeLocalStorageInitConfigs().Delete(context.Background(), "open-local", metav1.DeleteOptions{})
	})

	// The controller runs with its own identity: anything outside its role fails.
	saCfg, err := c.ServiceAccountConfig(ctx, "kube-system", "open-local-controller")
	require.NoError(t, err)
	kube := kubernetes.NewForConfigOrDie(saCfg)
	ol := versioned.NewForConfigOrDie(saCfg)
	opts := controller.DefaultOptions()
	opts.LeaderElection.Enabled = true
	opts.LeaderElection.Namespace = "kube-system"
	opts.LeaderElection.Identity = "e2e"
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- controller.Run(ctx, opts, kube, ol) }()

	// 1. One NLS per node, with the right config.
	waitFor(t, "one NodeLocalStorage per node", 60*time.Second, func(ctx context.Context) (bool, error) {
		list, err := adminOL.CsiV1alpha1().NodeLocalStorages().List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == controllerNodes, err
	})
	t.Logf("created %d NodeLocalStorages in %v", controllerNodes, time.Since(start))
	ssd, err := adminOL.CsiV1alpha1().NodeLocalStorages().Get(ctx, nodeName(0), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"/dev/nvme[0-9]n1"}, ssd.Spec.ListConfig.Devices.Include, "last matching nodesConfig entry replaces the global config")
	require.Empty(t, ssd.Spec.ResourceToBeInited.VGs)
	plain, err := adminOL.CsiV1alpha1().NodeLocalStorages().Get(ctx, nodeName(1), metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"open-local-pool-[0-9]+"}, plain.Spec.ListConfig.VGs.Include)
	require.Equal(t, nodeName(1), plain.Spec.NodeName)

	// 2. An init config change is re-derived on every node it affects.
	cur, err := adminOL.CsiV1alpha1().NodeLocalStorageInitConfigs().Get(ctx, "open-local", metav1.GetOptions{})
	require.NoError(t, err)
	cur.Spec.GlobalConfig.ListConfig.VGs.Include = []string{"open-local-pool-[0-9]+", "share"}
	_, err = adminOL.CsiV1alpha1().NodeLocalStorageInitConfigs().Update(ctx, cur, metav1.UpdateOptions{})
	require.NoError(t, err)
	start = time.Now()
	waitFor(t, "the init config change on every node", 60*time.Second, func(ctx context.Context) (bool, error) {
		list, err := adminOL.CsiV1alpha1().NodeLocalStorages().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, nls := range list.Items {
			if nls.Name == nodeName(0) || nls.Name[len(nls.Name)-1] == '0' {
				continue // ssd nodes take their nodesConfig entry
			}
			if len(nls.Spec.ListConfig.VGs.Include) != 2 {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("re-derived after an init config change in %v", time.Since(start))

	// 3. The init config status counts the synced nodes.
	waitFor(t, "init config status", 30*time.Second, func(ctx context.Context) (bool, error) {
		cur, err := adminOL.CsiV1alpha1().NodeLocalStorageInitConfigs().Get(ctx, "open-local", metav1.GetOptions{})
		return err == nil && cur.Status.SyncedNodes == controllerNodes, err
	})

	// 4. Deleting nodes deletes their NodeLocalStorages.
	start = time.Now()
	for i := 0; i < 10; i++ {
		require.NoError(t, admin.CoreV1().Nodes().Delete(ctx, nodeName(i), metav1.DeleteOptions{}))
	}
	waitFor(t, "NodeLocalStorages of deleted nodes gone", 60*time.Second, func(ctx context.Context) (bool, error) {
		for i := 0; i < 10; i++ {
			_, err := adminOL.CsiV1alpha1().NodeLocalStorages().Get(ctx, nodeName(i), metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("deleted 10 NodeLocalStorages with their nodes in %v", time.Since(start))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("controller did not stop after its context was cancelled")
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%03d", i) }

func waitFor(t *testing.T, what string, timeout time.Duration, cond wait.ConditionWithContextFunc) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, cond)
	require.NoError(t, err, "waiting for %s", what)
}
