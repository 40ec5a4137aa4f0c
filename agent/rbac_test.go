package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clienttesting "k8s.io/client-go/testing"

	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi/lvtag"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/pkg/rbactest"
)

// TestRBACCoversEveryRequest runs the agent through its flows (status,
// events, a VG created, the Lease created and renewed, the Node read, an
// orphan volume checked against PersistentVolumes and its claim) and
// checks that deploy/rbac/agent.yaml grants every request it made, and
// nothing that writes a spec.
func TestRBACCoversEveryRequest(t *testing.T) {
	r := rbactest.Load(t, filepath.Join("..", "deploy", "rbac", "agent.yaml"))
	require.Equal(t, []string{"kube-system/open-local-agent"}, r.Accounts)
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
		require.True(t, r.Allows(a), "deploy/rbac/agent.yaml does not grant: %s", key)
	}
	for _, want := range []string{"update nodelocalstorages/status ns=", "list nodelocalstorages/ ns=", "watch nodelocalstorages/ ns=",
		"create events/ ns=default", "create leases/ ns=kube-system", "update leases/ ns=kube-system", "get nodes/ ns=",
		"get persistentvolumes/ ns=", "list persistentvolumes/ ns=", "get persistentvolumeclaims/ ns=team-a"} {
		require.True(t, seen[want], "the flow did not exercise %q", want)
	}
	for _, verb := range []string{"create", "update", "patch", "delete"} {
		require.False(t, r.Allows(clienttesting.ActionImpl{Verb: verb, Resource: nlsGVR}),
			"the agent may not %s a NodeLocalStorage (its spec is the controller's)", verb)
		for _, res := range []string{"persistentvolumes", "persistentvolumeclaims"} {
			require.False(t, r.Allows(clienttesting.ActionImpl{Verb: verb, Resource: corev1.SchemeGroupVersion.WithResource(res)}),
				"the agent may not %s %s: it only reads them", verb, res)
		}
	}
}
