package components

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/open-local/open-local/e2e/cluster"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
)

func TestMain(m *testing.M) {
	// Only the apiserver is needed: no pods are scheduled here.
	cluster.Main(m, cluster.Options{})
}

// repoRoot is the module root, so manifests are read from deploy/.
func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// setup returns the shared control plane with the CRDs and the given RBAC
// manifests applied.
func setup(t *testing.T, rbac ...string) *cluster.Cluster {
	t.Helper()
	c := cluster.Shared(t)
	ctx := context.Background()
	root := repoRoot(t)
	files := []string{
		filepath.Join(root, "deploy/crds/csi.aliyun.com_nodelocalstorages.yaml"),
		filepath.Join(root, "deploy/crds/csi.aliyun.com_nodelocalstorageinitconfigs.yaml"),
	}
	require.NoError(t, c.ApplyYAML(ctx, files...))
	waitForCRDs(t, c.AdminConfig())
	for _, f := range rbac {
		require.NoError(t, c.ApplyYAML(ctx, filepath.Join(root, f)))
	}
	return c
}

// waitForCRDs waits until the CRDs serve requests (established and discovered).
func waitForCRDs(t *testing.T, cfg *rest.Config) {
	t.Helper()
	ol := versioned.NewForConfigOrDie(cfg)
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err1 := ol.CsiV1alpha1().NodeLocalStorages().List(ctx, listOne)
		_, err2 := ol.CsiV1alpha1().NodeLocalStorageInitConfigs().List(ctx, listOne)
		return err1 == nil && err2 == nil, nil
	})
	require.NoError(t, err, "CRDs never became ready")
}
