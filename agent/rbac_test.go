package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clienttesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi/lvtag"
	"github.com/open-local/open-local/hostexec"
)

// rules are the grants of deploy/rbac/agent.yaml, cluster-wide and per namespace.
type rules struct {
	cluster    []rbacv1.PolicyRule
	namespaced map[string][]rbacv1.PolicyRule
	accounts   []string
}

func loadRules(t *testing.T) rules {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "deploy", "rbac", "agent.yaml"))
	require.NoError(t, err)
	r := rules{namespaced: map[string][]rbacv1.PolicyRule{}}
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
			r.cluster = append(r.cluster, cr.Rules...)
		case "Role":
			var role rbacv1.Role
			require.NoError(t, yaml.UnmarshalStrict(doc, &role))
			r.namespaced[role.Namespace] = append(r.namespaced[role.Namespace], role.Rules...)
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			require.NoError(t, yaml.UnmarshalStrict(doc, &sa))
			r.accounts = append(r.accounts, sa.Namespace+"/"+sa.Name)
		case "ClusterRoleBinding", "RoleBinding":
		default:
			t.Fatalf("unexpected kind %q in deploy/rbac/agent.yaml", tm.Kind)
		}
	}
	return r
}

func (r rules) allows(a clienttesting.Action) bool {
	res := a.GetResource().Resource
	if sub := a.GetSubresource(); sub != "" {
		res += "/" + sub
	}
	match := func(rs []rbacv1.PolicyRule) bool {
		for _, x := range rs {
			if slices.Contains(x.APIGroups, a.GetResource().Group) && slices.Contains(x.Resources, res) && slices.Contains(x.Verbs, a.GetVerb()) {
				return true
			}
		}
		return false
	}
	return match(r.cluster) || match(r.namespaced[a.GetNamespace()])
}

// TestRBACCoversEveryRequest runs the agent through its flows (status,
// events, a VG created, the Lease created and renewed, the Node read, an
// orphan volume checked against PersistentVolumes and its claim) and
// checks that deploy/rbac/agent.yaml grants every request it made, and
// nothing that writes a spec.
func TestRBACCoversEveryRequest(t *testing.T) {
	r := loadRules(t)
	require.Equal(t, []string{"kube-system/open-local-agent"}, r.accounts)
	host := defaultHost(t)
	require.NoError(t, host.CreateLV(context.Background(), hostexec.LVSpec{VG: pool, Name: volOld, SizeBytes: core.GiB,
		Tags: append([]string{lvtag.Owner, lvtag.KindVolume, lvtag.CreatedTag(time.Now().Add(-2 * time.Hour))}, prov(volOld).Tags()...)}))
	spec := v1alpha1.NodeLocalStorageSpec{ListConfig: allListed(), ResourceToBeInited: v1alpha1.ResourceToBeInited{
		VGs: []v1alpha1.VGToBeInited{{Name: "pool-1", Devices: []string{"/dev/sdc"}}}}}
	api := newFakeAPI(newNLS(spec))
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: "uid-1"}}
	opts := fastOptions()
	opts.OrphanGC = OrphanGCDelete
	opts.OrphanInterval = 20 * time.Millisecond
	h := run(t, host, opts, api, node)
	h.waitStatus("VG reported", func(n *v1alpha1.NodeLocalStorage) bool { return vgInStatus(n, "pool-1") != nil })
	h.waitEvent(initres.ReasonVGCreated, corev1.EventTypeNormal, "pool-1")
	h.waitEvent(EventOrphanVolumeRemoved, corev1.EventTypeNormal, volOld)
	h.eventually("Lease renewed", func() (bool, string) {
		for _, a := range h.kube.Actions() {
			if a.GetVerb() == "update" && a.GetResource().Resource == "leases" {
				return true, ""
			}
		}
		return false, ""
	})
	h.stop()
	<-h.done
	h.done <- nil // for the cleanup

	seen := map[string]bool{}
	for _, a := range append(h.kube.Actions(), api.cs.Actions()...) {
		key := a.GetVerb() + " " + a.GetResource().Resource + "/" + a.GetSubresource() + " ns=" + a.GetNamespace()
		if seen[key] {
			continue
		}
		seen[key] = true
		if a.GetVerb() == "list" && a.GetResource().Resource == "events" {
			continue // the test's own look at the events
		}
		require.True(t, r.allows(a), "deploy/rbac/agent.yaml does not grant: %s", key)
	}
	for _, want := range []string{"update nodelocalstorages/status ns=", "list nodelocalstorages/ ns=", "watch nodelocalstorages/ ns=",
		"create events/ ns=default", "create leases/ ns=kube-system", "update leases/ ns=kube-system", "get nodes/ ns=",
		"get persistentvolumes/ ns=", "list persistentvolumes/ ns=", "get persistentvolumeclaims/ ns=team-a"} {
		require.True(t, seen[want], "the flow did not exercise %q", want)
	}
	for _, verb := range []string{"create", "update", "patch", "delete"} {
		require.False(t, r.allows(clienttesting.ActionImpl{Verb: verb, Resource: nlsGVR}),
			"the agent may not %s a NodeLocalStorage (its spec is the controller's)", verb)
		for _, res := range []string{"persistentvolumes", "persistentvolumeclaims"} {
			require.False(t, r.allows(clienttesting.ActionImpl{Verb: verb, Resource: corev1.SchemeGroupVersion.WithResource(res)}),
				"the agent may not %s %s: it only reads them", verb, res)
		}
	}
}
