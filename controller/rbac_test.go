package controller

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
	"github.com/open-local/open-local/pkg/rbactest"
)

// TestRBACCoversEveryRequest runs the controller through its flows and checks
// that every request it made is granted by deploy/rbac/controller.yaml.
func TestRBACCoversEveryRequest(t *testing.T) {
	g := rbactest.Load(t, filepath.Join("..", "deploy", "rbac", "controller.yaml"))
	kube := k8sfake.NewClientset(newNode("node-1", nil), newNode("node-2", nil))
	ol := olfake.NewSimpleClientset(newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	emulateAPIServer(ol)
	bufferWatches(&kube.Fake, kube.Tracker())
	bufferWatches(&ol.Fake, ol.Tracker())
	opts := Options{
		MetricsRegisterer: prometheus.NewRegistry(),
		StatusUpdateDelay: time.Millisecond,
		LeaderElection: LeaderElectionOptions{
			Enabled: true, Identity: "replica-a",
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond,
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, kube, ol) }()

	nlsClient := ol.CsiV1alpha1().NodeLocalStorages()
	eventually := func(what string, cond func() bool) {
		t.Helper()
		require.Eventually(t, cond, waitFor, 5*time.Millisecond, what)
	}
	eventually("NodeLocalStorages created", func() bool {
		l, err := nlsClient.List(context.Background(), metav1.ListOptions{})
		return err == nil && len(l.Items) == 2
	})
	// Update: a config change; status: a broken pattern; delete: a node goes.
	nlsc, err := ol.CsiV1alpha1().NodeLocalStorageInitConfigs().Get(context.Background(), cfgName, metav1.GetOptions{})
	require.NoError(t, err)
	nlsc.Spec.GlobalConfig.ListConfig.Devices.Include = []string{"(bad"}
	_, err = ol.CsiV1alpha1().NodeLocalStorageInitConfigs().Update(context.Background(), nlsc, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually("config status written", func() bool {
		c, err := ol.CsiV1alpha1().NodeLocalStorageInitConfigs().Get(context.Background(), cfgName, metav1.GetOptions{})
		return err == nil && c.Status.FailedNodeCount == 2
	})
	nls, err := nlsClient.Get(context.Background(), "node-1", metav1.GetOptions{})
	require.NoError(t, err)
	nls.Spec.ListConfig.VGs.Include = []string{"[x"}
	_, err = nlsClient.Update(context.Background(), nls, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, kube.CoreV1().Nodes().Delete(context.Background(), "node-2", metav1.DeleteOptions{}))
	eventually("NodeLocalStorage of the deleted node gone", func() bool {
		_, err := nlsClient.Get(context.Background(), "node-2", metav1.GetOptions{})
		return err != nil
	})
	eventually("events recorded", func() bool {
		for _, a := range kube.Actions() {
			if a.GetResource().Resource == "events" {
				return true
			}
		}
		return false
	})
	cancel()
	require.NoError(t, <-done)

	seen := map[string]bool{}
	for _, a := range append(kube.Actions(), ol.Actions()...) {
		key := a.GetVerb() + " " + a.GetResource().Resource + "/" + a.GetSubresource() + " ns=" + a.GetNamespace()
		if seen[key] {
			continue
		}
		seen[key] = true
		// The test's own requests are made as an administrator.
		if isTestRequest(a) {
			continue
		}
		require.True(t, g.Allows(a), "deploy/rbac/controller.yaml does not grant: %s", key)
	}
	for _, want := range []string{"create nodelocalstorages/ ns=", "update nodelocalstorages/status ns=", "delete nodelocalstorages/ ns=",
		"update nodelocalstorageinitconfigs/status ns=", "create leases/ ns=kube-system"} {
		require.True(t, seen[want], "the flow did not exercise %q", want)
	}
}

// isTestRequest tells the test's own requests, made as an administrator,
// from the controller's: the controller never deletes nodes nor writes an
// init config's spec.
func isTestRequest(a clienttesting.Action) bool {
	switch a.GetResource().Resource {
	case "nodes":
		return a.GetVerb() == "delete"
	case "nodelocalstorageinitconfigs":
		return a.GetVerb() == "update" && a.GetSubresource() == ""
	}
	return false
}
