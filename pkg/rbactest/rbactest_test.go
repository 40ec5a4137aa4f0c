package rbactest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"
)

const manifest = `apiVersion: v1
kind: ServiceAccount
metadata: {name: sa, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: c}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: kube-system}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [update]
  resourceNames: [mine]
`

func TestAllows(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(p, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	g := Load(t, p)
	assert.Equal(t, []string{"kube-system/sa"}, g.Accounts)
	nodes := schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	leases := coordinationv1.SchemeGroupVersion.WithResource("leases")
	lease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"}}
	}
	assert.True(t, g.Allows(clienttesting.NewRootGetAction(nodes, "n1")))
	assert.False(t, g.Allows(clienttesting.NewRootDeleteAction(nodes, "n1")), "verb not granted")
	assert.True(t, g.Allows(clienttesting.NewUpdateAction(leases, "kube-system", lease("mine"))))
	assert.False(t, g.Allows(clienttesting.NewUpdateAction(leases, "kube-system", lease("other"))), "resourceNames")
	assert.False(t, g.Allows(clienttesting.NewUpdateAction(leases, "default", lease("mine"))), "another namespace")
	assert.False(t, g.Allows(clienttesting.NewUpdateSubresourceAction(leases, "status", "kube-system", lease("mine"))), "a subresource is its own resource")
}
