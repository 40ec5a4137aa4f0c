// Package rbactest reads an RBAC manifest of deploy/rbac and tells whether
// it grants a request that a fake clientset recorded. The components' tests
// run a component's flows against fake clientsets and check, with it, that
// the manifest the component is deployed with covers every request made.
package rbactest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clienttesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

// Grants are a manifest's rules, cluster-wide and per namespace, and its
// ServiceAccounts ("namespace/name").
type Grants struct {
	Cluster    []rbacv1.PolicyRule
	Namespaced map[string][]rbacv1.PolicyRule
	Accounts   []string
}

// Load reads a manifest. It holds ServiceAccounts, roles and their
// bindings; any other kind fails the test.
func Load(t testing.TB, path string) Grants {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	g := Grants{Namespaced: map[string][]rbacv1.PolicyRule{}}
	dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var tm metav1.TypeMeta
		require.NoError(t, yaml.Unmarshal(doc, &tm))
		switch tm.Kind {
		case "ClusterRole":
			var cr rbacv1.ClusterRole
			require.NoError(t, yaml.UnmarshalStrict(doc, &cr))
			g.Cluster = append(g.Cluster, cr.Rules...)
		case "Role":
			var role rbacv1.Role
			require.NoError(t, yaml.UnmarshalStrict(doc, &role))
			g.Namespaced[role.Namespace] = append(g.Namespaced[role.Namespace], role.Rules...)
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			require.NoError(t, yaml.UnmarshalStrict(doc, &sa))
			g.Accounts = append(g.Accounts, sa.Namespace+"/"+sa.Name)
		case "ClusterRoleBinding", "RoleBinding":
		default:
			t.Fatalf("unexpected kind %q in %s", tm.Kind, path)
		}
	}
	return g
}

// Allows reports whether a rule grants the action: its API group, resource
// (with the subresource, "leases" or "nodelocalstorages/status") and verb,
// and the object's name when the rule lists resourceNames.
func (g Grants) Allows(a clienttesting.Action) bool {
	res := a.GetResource().Resource
	if sub := a.GetSubresource(); sub != "" {
		res += "/" + sub
	}
	name := ""
	switch x := a.(type) {
	case interface{ GetName() string }: // get, delete, patch
		name = x.GetName()
	case clienttesting.UpdateAction:
		if m, ok := x.GetObject().(metav1.Object); ok {
			name = m.GetName()
		}
	}
	match := func(rules []rbacv1.PolicyRule) bool {
		for _, r := range rules {
			if slices.Contains(r.APIGroups, a.GetResource().Group) && slices.Contains(r.Resources, res) &&
				slices.Contains(r.Verbs, a.GetVerb()) && (len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
				return true
			}
		}
		return false
	}
	return match(g.Cluster) || match(g.Namespaced[a.GetNamespace()])
}
