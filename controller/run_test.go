package controller

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
)

func TestRunWithLeaderElection(t *testing.T) {
	kube := k8sfake.NewClientset(newNode("node-1", nil))
	ol := olfake.NewSimpleClientset(newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: global}))
	bufferWatches(&kube.Fake, kube.Tracker())
	bufferWatches(&ol.Fake, ol.Tracker())
	reg := prometheus.NewRegistry()
	opts := Options{
		MetricsRegisterer: reg,
		LeaderElection: LeaderElectionOptions{
			Enabled: true, Namespace: "kube-system", LeaseName: "open-local-controller", Identity: "replica-a",
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond,
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, kube, ol) }()

	require.Eventually(t, func() bool {
		_, err := ol.CsiV1alpha1().NodeLocalStorages().Get(context.Background(), "node-1", metav1.GetOptions{})
		return err == nil
	}, waitFor, 10*time.Millisecond, "the leader creates the NodeLocalStorage")

	var lease *coordinationv1.Lease
	require.Eventually(t, func() bool {
		var err error
		lease, err = kube.CoordinationV1().Leases("kube-system").Get(context.Background(), "open-local-controller", metav1.GetOptions{})
		return err == nil && lease.Spec.HolderIdentity != nil
	}, waitFor, 10*time.Millisecond)
	assert.Equal(t, "replica-a", *lease.Spec.HolderIdentity)

	mfs, err := reg.Gather()
	require.NoError(t, err)
	leader := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "open_local_controller_leader" {
			leader = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	assert.Equal(t, 1.0, leader)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "a cancelled context is a clean stop")
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
	// The lease is released on the way out so another replica takes over at once.
	lease, err = kube.CoordinationV1().Leases("kube-system").Get(context.Background(), "open-local-controller", metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "", "lease still held by %v", lease.Spec.HolderIdentity)
}

func TestRunWithoutLeaderElectionAndBadOptions(t *testing.T) {
	kube := k8sfake.NewClientset()
	ol := olfake.NewSimpleClientset()
	err := Run(t.Context(), Options{Workers: -3}, kube, ol)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "workers")

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{}, kube, ol) }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
}
