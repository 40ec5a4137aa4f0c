package demo

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
)

func TestAPIServerEmulation(t *testing.T) {
	ctx := context.Background()
	cs := olfake.NewSimpleClientset()
	newAPIServer().install(&cs.Fake, cs.Tracker())
	nlses := cs.CsiV1alpha1().NodeLocalStorages()

	created, err := nlses.Create(ctx, &v1alpha1.NodeLocalStorage{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.NotEmpty(t, created.UID)
	assert.NotEmpty(t, created.ResourceVersion)
	assert.Equal(t, int64(1), created.Generation)

	// A status update changes only the status.
	withStatus := created.DeepCopy()
	withStatus.Status.NodeStorageInfo.Phase = v1alpha1.StorageRunning
	withStatus.Spec.NodeName = "ignored"
	afterStatus, err := nlses.UpdateStatus(ctx, withStatus, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.StorageRunning, afterStatus.Status.NodeStorageInfo.Phase)
	assert.Empty(t, afterStatus.Spec.NodeName)
	assert.Equal(t, int64(1), afterStatus.Generation)

	// An update from the stale copy conflicts.
	stale := created.DeepCopy()
	stale.Spec.NodeName = "node-1"
	_, err = nlses.Update(ctx, stale, metav1.UpdateOptions{})
	assert.True(t, apierrors.IsConflict(err), "got %v", err)

	// A spec update keeps the stored status and bumps the generation.
	fresh := afterStatus.DeepCopy()
	fresh.Spec.NodeName = "node-1"
	fresh.Status = v1alpha1.NodeLocalStorageStatus{}
	updated, err := nlses.Update(ctx, fresh, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "node-1", updated.Spec.NodeName)
	assert.Equal(t, v1alpha1.StorageRunning, updated.Status.NodeStorageInfo.Phase)
	assert.Equal(t, int64(2), updated.Generation)
	assert.Equal(t, created.UID, updated.UID)

	// Labels alone leave the generation as it is.
	labelled := updated.DeepCopy()
	labelled.Labels = map[string]string{"a": "b"}
	labelled, err = nlses.Update(ctx, labelled, metav1.UpdateOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(2), labelled.Generation)

	stored, err := nlses.Get(ctx, "node-1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, labelled, stored)
}
