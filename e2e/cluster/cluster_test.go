package cluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/open-local/open-local/e2e/cluster"
)

// The shared control plane of this package: all components, as the
// scheduler and CSI tests of other packages use it.
func TestMain(m *testing.M) {
	cluster.Main(m, cluster.Options{ControllerManager: true, Scheduler: true})
}

func TestControlPlaneStarts(t *testing.T) {
	c := cluster.Shared(t)
	ctx := t.Context()

	v, err := c.Client().Discovery().ServerVersion()
	require.NoError(t, err)
	assert.Equal(t, "v1.37.2", v.GitVersion, "the build stamps the version into kube-apiserver")

	body, err := c.Client().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(body))

	assert.True(t, strings.HasPrefix(c.Host(), "https://127.0.0.1:"), c.Host())
	assert.FileExists(t, c.Kubeconfig())

	times := c.StartupTimes()
	assert.Positive(t, times.APIServer)
	assert.Positive(t, times.ControllerManager)
	assert.Positive(t, times.Scheduler)
	t.Logf("startup: %s", times)
}

func TestNodeCanBeCreated(t *testing.T) {
	c := cluster.Shared(t)
	ctx := t.Context()

	_, err := c.RegisterNode(ctx, cluster.FakeNode{
		Name:     "node-created",
		Labels:   map[string]string{"open-local.test/pool": "a"},
		Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")},
	})
	require.NoError(t, err)

	n, err := c.Client().CoreV1().Nodes().Get(ctx, "node-created", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "a", n.Labels["open-local.test/pool"])
	assert.Equal(t, "node-created", n.Labels["kubernetes.io/hostname"])
	assert.True(t, n.Status.Allocatable.Cpu().Equal(resource.MustParse("8")))
	assert.True(t, n.Status.Allocatable.Memory().Equal(resource.MustParse("8Gi")), "default memory")
	var ready bool
	for _, cond := range n.Status.Conditions {
		ready = ready || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
	}
	assert.True(t, ready, "node reports Ready")
	for _, taint := range n.Spec.Taints {
		assert.NotEqual(t, "node.kubernetes.io/not-ready", taint.Key, "the node lifecycle controller removes the not-ready taint")
	}

	_, err = c.RegisterNode(ctx, cluster.FakeNode{})
	require.ErrorContains(t, err, "FakeNode.Name is empty")
}

func TestRBACDeniesServiceAccountWithoutPermissions(t *testing.T) {
	c := cluster.Shared(t)
	ctx := t.Context()

	cfg, err := c.ServiceAccountConfig(ctx, "rbac-test", "nobody")
	require.NoError(t, err)
	sa, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)

	// The token authenticates: the apiserver knows who is asking ...
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "system:serviceaccount:rbac-test:nobody", review.Status.UserInfo.Username)

	// ... and refuses what no role grants.
	_, err = sa.CoreV1().Pods("rbac-test").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
	_, err = sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)

	// A Role grants exactly what it says, proving the denial came from RBAC.
	admin := c.Client()
	_, err = admin.RbacV1().Roles("rbac-test").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.RbacV1().RoleBindings("rbac-test").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "rbac-test", Name: "nobody"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := sa.CoreV1().Pods("rbac-test").List(ctx, metav1.ListOptions{})
		return err == nil, nil
	}), "the bound Role allows listing pods")
	_, err = sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "the Role is namespaced; want Forbidden in default, got %v", err)
}

func TestSchedulerBindsPodToFakeNode(t *testing.T) {
	c := cluster.Shared(t)
	ctx := t.Context()
	require.NoError(t, c.CreateNamespace(ctx, "sched-test"))
	_, err := c.RegisterNode(ctx, cluster.FakeNode{Name: "node-sched", Labels: map[string]string{"open-local.test/sched": "yes"}})
	require.NoError(t, err)

	pod := func(name, cpu string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"open-local.test/sched": "yes"},
				Containers: []corev1.Container{{
					Name: "c", Image: "registry.invalid/none",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}},
				}},
			},
		}
	}
	pods := c.Client().CoreV1().Pods("sched-test")
	created := time.Now()
	_, err = pods.Create(ctx, pod("fits", "1"), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = pods.Create(ctx, pod("too-big", "64"), metav1.CreateOptions{})
	require.NoError(t, err)

	var bound time.Duration
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, "fits", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		bound = time.Since(created)
		return p.Spec.NodeName != "", nil
	}))
	p, err := pods.Get(ctx, "fits", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "node-sched", p.Spec.NodeName)
	t.Logf("pod bound %s after creation", bound.Round(time.Millisecond))

	// The scheduler honours the node's allocatable: 64 CPUs do not fit in 4.
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, "too-big", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, nil
	}))
	p, err = pods.Get(ctx, "too-big", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Empty(t, p.Spec.NodeName)
}

const widgetManifest = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.open-local.io
spec:
  group: test.open-local.io
  scope: Cluster
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: string}
---
apiVersion: test.open-local.io/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 10Gi
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
data:
  k: v
`

func TestApplyYAMLCreatesCRDAndItsObjects(t *testing.T) {
	c := cluster.Shared(t)
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "widgets.yaml")
	require.NoError(t, os.WriteFile(file, []byte(widgetManifest), 0o600))

	require.NoError(t, c.ApplyYAML(ctx, file))
	require.NoError(t, c.ApplyYAML(ctx, file), "applying again is a no-op")

	dyn, err := dynamic.NewForConfig(c.AdminConfig())
	require.NoError(t, err)
	w, err := dyn.Resource(schema.GroupVersionResource{Group: "test.open-local.io", Version: "v1", Resource: "widgets"}).
		Get(ctx, "w1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"size": "10Gi"}, w.Object["spec"])
	cm, err := c.Client().CoreV1().ConfigMaps("default").Get(ctx, "applied", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "v", cm.Data["k"])
	require.NotEmpty(t, cm.ManagedFields)
	assert.Equal(t, cluster.FieldManager, cm.ManagedFields[0].Manager)

	err = c.ApplyManifest(ctx, []byte("apiVersion: v1\nkind: NoSuchKind\nmetadata: {name: x}\n"))
	require.ErrorContains(t, err, "NoSuchKind")
}

// A private control plane without the controller-manager, with a scheduler
// profile from a config file: the pod names that profile and gets bound,
// and cancelling the context stops every process.
func TestStartWithSchedulerConfigAndStopOnCancel(t *testing.T) {
	config := filepath.Join(t.TempDir(), "scheduler.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: open-local-test
`), 0o600))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c, err := cluster.Start(ctx, t, cluster.Options{Scheduler: true, SchedulerConfig: config})
	require.NoError(t, err)
	t.Logf("startup without controller-manager: %s", c.StartupTimes())

	_, err = c.RegisterNode(ctx, cluster.FakeNode{Name: "solo"})
	require.NoError(t, err)
	pods := c.Client().CoreV1().Pods("default")
	_, err = pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "custom"},
		Spec: corev1.PodSpec{
			SchedulerName: "open-local-test",
			Containers:    []corev1.Container{{Name: "c", Image: "registry.invalid/none"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "no controller-manager: the ServiceAccount admission plugin must be off")
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, "custom", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName == "solo", err
	}))

	pids := processIDs(t, c)
	require.Len(t, pids, 3, "etcd, kube-apiserver, kube-scheduler")
	cancel()
	for _, pid := range pids {
		cluster.WaitGone(t, pid)
	}
}

// A private control plane with the node lifecycle controller disabled:
// RegisterNode clears the not-ready taint itself, and Stop ends every
// process, including one started with StartProcess.
func TestStopEndsEveryProcess(t *testing.T) {
	c, err := cluster.Start(t.Context(), t, cluster.Options{
		ControllerManager: true,
		Controllers:       []string{"*", "-node-lifecycle-controller"},
	})
	require.NoError(t, err)
	t.Logf("startup of etcd + kube-apiserver + kube-controller-manager: %s", c.StartupTimes())

	n, err := c.RegisterNode(t.Context(), cluster.FakeNode{
		Name:   "no-lifecycle",
		Taints: []corev1.Taint{{Key: "open-local.test/keep", Effect: corev1.TaintEffectNoSchedule}},
	})
	require.NoError(t, err)
	var keys []string
	for _, taint := range n.Spec.Taints {
		keys = append(keys, taint.Key)
	}
	assert.Equal(t, []string{"open-local.test/keep"}, keys, "only the not-ready taint goes")

	extra, err := c.StartProcess("sleeper", "/bin/sleep", "600")
	require.NoError(t, err)
	pids := processIDs(t, c)
	require.Len(t, pids, 4, "etcd, kube-apiserver, kube-controller-manager, sleeper")
	assert.Contains(t, pids, extra.Pid())

	start := time.Now()
	c.Stop()
	t.Logf("stop took %s", time.Since(start).Round(time.Millisecond))
	for _, pid := range pids {
		cluster.WaitGone(t, pid)
	}
	done, _ := extra.Exited()
	assert.True(t, done)
	_, err = c.StartProcess("late", "/bin/sleep", "1")
	require.ErrorContains(t, err, "stopped")
	c.Stop() // idempotent
}

// processIDs lists the pids of the processes still running.
func processIDs(t *testing.T, c *cluster.Cluster) []int {
	t.Helper()
	var pids []int
	for _, p := range c.Processes() {
		if done, _ := p.Exited(); !done {
			pids = append(pids, p.Pid())
		}
	}
	return pids
}

// A node identity gets its rights from the Node authorizer (RBAC binds
// nothing to system:nodes): it may read and label its own Node, and nothing
// of other nodes.
func TestNodeAuthorizerAndNodeRestriction(t *testing.T) {
	c := cluster.Shared(t)
	ctx := t.Context()
	for _, name := range []string{"node-authz", "node-other"} {
		_, err := c.RegisterNode(ctx, cluster.FakeNode{Name: name})
		require.NoError(t, err)
	}
	cfg, err := c.UserConfig("system:node:node-authz", "system:nodes")
	require.NoError(t, err)
	node, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)

	self, err := node.CoreV1().Nodes().Get(ctx, "node-authz", metav1.GetOptions{})
	require.NoError(t, err, "the Node authorizer lets a node read Nodes")

	self.Labels["open-local.test/own"] = "ok"
	_, err = node.CoreV1().Nodes().Update(ctx, self, metav1.UpdateOptions{})
	require.NoError(t, err, "a node may label itself")

	_, err = node.CoreV1().Nodes().Get(ctx, "node-other", metav1.GetOptions{})
	require.True(t, apierrors.IsForbidden(err), "the Node authorizer confines a node to its own Node; got %v", err)

	other, err := c.Client().CoreV1().Nodes().Get(ctx, "node-other", metav1.GetOptions{})
	require.NoError(t, err)
	other.Labels["open-local.test/own"] = "no"
	_, err = node.CoreV1().Nodes().Update(ctx, other, metav1.UpdateOptions{})
	require.True(t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)

	_, err = node.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "a node may not list secrets; got %v", err)

	_, err = c.UserConfig("")
	require.Error(t, err)
}
