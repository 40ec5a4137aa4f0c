package extender

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulerv1 "k8s.io/kube-scheduler/config/v1"
	"sigs.k8s.io/yaml"
)

const deployDir = "../deploy/scheduler"

// documents splits a YAML file into its documents.
func documents(t *testing.T, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, name))
	require.NoError(t, err)
	var out [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func TestSchedulerConfigurationManifest(t *testing.T) {
	docs := documents(t, "kube-scheduler-config-extender.yaml")
	require.Len(t, docs, 1)
	var cfg schedulerv1.KubeSchedulerConfiguration
	require.NoError(t, yaml.UnmarshalStrict(docs[0], &cfg))
	assert.Equal(t, "kubescheduler.config.k8s.io/v1", cfg.APIVersion)
	require.Len(t, cfg.Extenders, 1)
	e := cfg.Extenders[0]
	assert.Equal(t, "http://open-local-scheduler-extender.kube-system:23000/scheduler", e.URLPrefix)
	assert.Equal(t, "predicates", e.FilterVerb)
	assert.Equal(t, "priorities", e.PrioritizeVerb)
	assert.Equal(t, int64(10), e.Weight)
	assert.True(t, e.NodeCacheCapable)
	assert.False(t, e.Ignorable)
	assert.Empty(t, e.BindVerb, "binding stays with kube-scheduler")
	assert.Empty(t, e.ManagedResources)
}

func TestExtenderManifests(t *testing.T) {
	var dep appsv1.Deployment
	var svc corev1.Service
	var pdb policyv1.PodDisruptionBudget
	for _, d := range documents(t, "extender.yaml") {
		var meta struct{ Kind string }
		require.NoError(t, yaml.Unmarshal(d, &meta))
		var target any
		switch meta.Kind {
		case "Deployment":
			target = &dep
		case "Service":
			target = &svc
		case "PodDisruptionBudget":
			target = &pdb
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
		require.NoError(t, yaml.UnmarshalStrict(d, target), meta.Kind)
	}
	require.NotNil(t, dep.Spec.Replicas)
	assert.Equal(t, int32(2), *dep.Spec.Replicas)
	c := dep.Spec.Template.Spec.Containers[0]
	assert.Equal(t, "scheduler", c.Args[0])
	assert.Contains(t, c.Args, "--listen=$(POD_IP):23000", "bind to the pod IP")
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "open-local-scheduler-extender", dep.Spec.Template.Spec.ServiceAccountName)
	assert.Equal(t, "open-local-scheduler-extender", svc.Name)
	assert.Equal(t, "kube-system", svc.Namespace)
	assert.Equal(t, int32(23000), svc.Spec.Ports[0].Port)
	assert.Equal(t, dep.Spec.Selector.MatchLabels, svc.Spec.Selector)
	assert.Equal(t, dep.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)
	for _, a := range c.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		assert.Contains(t, []string{"listen", "strategy", "stuck-pod-delay"}, name, "flag %s", a)
	}
}

func TestExtenderRBACIsWhatTheCacheNeeds(t *testing.T) {
	var role rbacv1.ClusterRole
	var binding rbacv1.ClusterRoleBinding
	var sa corev1.ServiceAccount
	for _, d := range documents(t, "rbac.yaml") {
		var meta struct{ Kind string }
		require.NoError(t, yaml.Unmarshal(d, &meta))
		switch meta.Kind {
		case "ClusterRole":
			require.NoError(t, yaml.UnmarshalStrict(d, &role))
		case "ClusterRoleBinding":
			require.NoError(t, yaml.UnmarshalStrict(d, &binding))
		case "ServiceAccount":
			require.NoError(t, yaml.UnmarshalStrict(d, &sa))
		}
	}
	allowed := func(group, resource, verb string) bool {
		for _, r := range role.Rules {
			if contains(r.APIGroups, group) && contains(r.Resources, resource) && contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, gr := range [][2]string{
		{"", "nodes"}, {"", "pods"}, {"", "persistentvolumes"}, {"", "persistentvolumeclaims"},
		{"storage.k8s.io", "storageclasses"}, {"csi.aliyun.com", "nodelocalstorages"},
		{"snapshot.storage.k8s.io", "volumesnapshots"}, {"snapshot.storage.k8s.io", "volumesnapshotcontents"},
	} {
		for _, verb := range []string{"list", "watch"} {
			assert.True(t, allowed(gr[0], gr[1], verb), "%s %s/%s", verb, gr[0], gr[1])
		}
	}
	assert.True(t, allowed("", "persistentvolumeclaims", "patch"), "unstick patches PVCs")
	assert.True(t, allowed("", "events", "create"))
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			assert.Contains(t, []string{"get", "list", "watch", "patch", "create"}, v, "least privilege")
			if v == "patch" || v == "create" {
				assert.Subset(t, []string{"persistentvolumeclaims", "events"}, r.Resources)
			}
		}
		assert.NotContains(t, r.Resources, "*")
	}
	assert.Equal(t, role.Name, binding.RoleRef.Name)
	assert.Equal(t, sa.Name, binding.Subjects[0].Name)
	assert.Equal(t, sa.Namespace, binding.Subjects[0].Namespace)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
