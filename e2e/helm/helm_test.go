// Package helm renders the Helm chart with the real helm binary and applies
// every object it renders to a real API server with server-side dry-run, so
// that schema errors, unknown fields and references the API server checks
// (roles, priority classes) fail here instead of at install.
package helm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/open-local/open-local/e2e/cluster"
)

func TestMain(m *testing.M) { cluster.Main(m, cluster.Options{}) }

func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// helmBinary is $HELM, or the one hack/build-helm.sh built and cached.
func helmBinary(t *testing.T) string {
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	cache := os.Getenv("OPEN_LOCAL_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "open-local")
	}
	found, _ := filepath.Glob(filepath.Join(cache, "helm-*", "helm"))
	if len(found) == 0 {
		if os.Getenv(cluster.EnvRequire) == "1" {
			t.Fatalf("no helm binary in %s/helm-*/ (run hack/build-helm.sh)", cache)
		}
		t.Skipf("no helm binary in %s/helm-*/: run hack/build-helm.sh", cache)
	}
	return found[len(found)-1]
}

// render runs helm template with the given --set values.
func render(t *testing.T, sets ...string) []*unstructured.Unstructured {
	args := []string{"template", "open-local", filepath.Join(repoRoot(t), "deploy/helm/open-local"), "--namespace", "kube-system"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "helm %s: %s", strings.Join(args, " "), stderr.String())
	return decode(t, out)
}

func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	var objs []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// setup applies the CRDs the chart's objects need: Open-Local's and the
// snapshot API's (from the external-snapshotter module the control-plane
// tier builds its binaries from).
func setup(t *testing.T) *cluster.Cluster {
	c := cluster.Shared(t)
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "deploy/crds/*.yaml"))
	require.NoError(t, err)
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/kubernetes-csi/external-snapshotter/client/v8")
	cmd.Dir = filepath.Join(root, "tools/k8s")
	out, err := cmd.Output()
	require.NoError(t, err, "go mod download external-snapshotter/client in tools/k8s")
	var mod struct{ Dir string }
	require.NoError(t, json.Unmarshal(out, &mod))
	for _, n := range []string{"volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshots"} {
		files = append(files, filepath.Join(mod.Dir, "config/crd", "snapshot.storage.k8s.io_"+n+".yaml"))
	}
	require.NoError(t, c.ApplyYAML(context.Background(), files...))
	return c
}

// dryRun applies every object with server-side apply in dry-run mode and
// returns one error per refused object.
func dryRun(t *testing.T, c *cluster.Cluster, objs []*unstructured.Unstructured) []string {
	cfg := c.AdminConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	var refused []string
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		var mapping *schema.GroupVersionResource
		var namespaced bool
		// A CRD applied just before may take a moment to be discovered.
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				mapper.Reset()
				return false, nil
			}
			mapping, namespaced = &m.Resource, m.Scope.Name() == "namespace"
			return true, nil
		})
		if err != nil {
			refused = append(refused, gvk.Kind+" "+o.GetName()+": kind unknown to the API server")
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(*mapping)
		if namespaced {
			ns := o.GetNamespace()
			if ns == "" {
				ns = "kube-system"
			}
			ri = dyn.Resource(*mapping).Namespace(ns)
		}
		_, err = ri.Apply(context.Background(), o.GetName(), o, metav1.ApplyOptions{FieldManager: "open-local-e2e", Force: true, DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			refused = append(refused, gvk.Kind+" "+o.GetName()+": "+err.Error())
		}
	}
	return refused
}

func TestChartDryRunsOnTheAPIServer(t *testing.T) {
	c := setup(t)
	for _, mode := range []string{"extender", "plugin", "capacity"} {
		t.Run(mode, func(t *testing.T) {
			objs := render(t, "scheduling.mode="+mode, "metrics.grafanaDashboard.enabled=true")
			require.NotEmpty(t, objs)
			assert.Empty(t, dryRun(t, c, objs))
		})
	}
}

// TestChartShape checks facts of the rendered chart the API server does not:
// every flag given to open-local exists, the classes and the driver are
// open-local's, and no role grants everything.
func TestChartShape(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "open-local")
	build := exec.Command("go", "build", "-o", bin, "./cmd/open-local")
	build.Dir = repoRoot(t)
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	helpOf := map[string]string{}
	flagsOK := func(args []string) {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return
		}
		sub := args[0]
		if _, ok := helpOf[sub]; !ok {
			h, err := exec.Command(bin, sub, "--help").CombinedOutput()
			require.NoError(t, err, "%s --help: %s", sub, h)
			helpOf[sub] = string(h)
		}
		for _, a := range args[1:] {
			name, _, _ := strings.Cut(a, "=")
			assert.Contains(t, helpOf[sub], "      "+name+" ", "open-local %s has no flag %s", sub, name)
		}
	}
	for _, mode := range []string{"extender", "plugin", "capacity"} {
		objs := render(t, "scheduling.mode="+mode)
		classes := map[string]map[string]any{}
		for _, o := range objs {
			switch o.GetKind() {
			case "Deployment", "DaemonSet":
				containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				for _, ci := range containers {
					cm := ci.(map[string]any)
					if img, _ := cm["image"].(string); strings.Contains(img, "openlocal/open-local:") {
						args, _, _ := unstructured.NestedStringSlice(cm, "args")
						flagsOK(args)
					}
				}
			case "StorageClass":
				p, _, _ := unstructured.NestedMap(o.Object, "parameters")
				classes[o.GetName()] = p
				prov, _, _ := unstructured.NestedString(o.Object, "provisioner")
				assert.Equal(t, "local.csi.aliyun.com", prov)
			case "CSIDriver":
				capacity, _, _ := unstructured.NestedBool(o.Object, "spec", "storageCapacity")
				assert.Equal(t, mode == "capacity", capacity, "storageCapacity in mode %s", mode)
				pod, _, _ := unstructured.NestedBool(o.Object, "spec", "podInfoOnMount")
				assert.True(t, pod)
				modes, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "volumeLifecycleModes")
				assert.ElementsMatch(t, []string{"Persistent", "Ephemeral"}, modes)
			case "ClusterRole", "Role":
				rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
				for _, r := range rules {
					rm := r.(map[string]any)
					for _, k := range []string{"verbs", "resources", "apiGroups"} {
						list, _, _ := unstructured.NestedStringSlice(rm, k)
						assert.NotContains(t, list, "*", "%s %s grants %s *", o.GetKind(), o.GetName(), k)
					}
				}
			}
		}
		assert.Equal(t, "LVM", classes["open-local-lvm"]["volumeType"])
		assert.Equal(t, "xfs", classes["open-local-lvm-xfs"]["csi.storage.k8s.io/fstype"])
		assert.Contains(t, classes["open-local-lvm-io-throttling"], "bps")
		assert.Equal(t, "ssd", classes["open-local-device-ssd"]["mediaType"])
		assert.Equal(t, "hdd", classes["open-local-device-hdd"]["mediaType"])
		found := map[string]bool{}
		for _, o := range objs {
			found[o.GetKind()+"/"+o.GetName()] = true
		}
		assert.Equal(t, mode == "extender", found["Deployment/open-local-scheduler-extender"], mode)
		assert.Equal(t, mode == "plugin", found["Deployment/open-local-scheduler"], mode)
	}
}
