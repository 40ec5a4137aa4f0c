package csi

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// TestSanity runs csi-sanity against the driver in "all" mode on the
// simulated host, over a unix socket. Target and staging directories live on
// the simulated host, so the sanity hooks create, check and remove them there.
//
// The specs csi-sanity skips are those of capabilities the driver does not
// advertise, and no others:
//   - ControllerPublishVolume, ControllerUnpublishVolume, "volume lifecycle",
//     the node attach-limit spec (PUBLISH_UNPUBLISH_VOLUME: a local volume has
//     nothing to attach);
//   - ControllerPublishVolume readonly (PUBLISH_READONLY);
//   - ModifyVolume and the VolumeAttributesClass CreateVolume specs (MODIFY_VOLUME);
//   - "with single node multi writer capability" (SINGLE_NODE_MULTI_WRITER);
//   - CreateSnapshot with accessibility requirements (SNAPSHOT_ACCESSIBILITY_CONSTRAINTS);
//   - the GroupController specs (GROUP_CONTROLLER_SERVICE).
func TestSanity(t *testing.T) {
	e := newEnv(t, nil)
	sock := filepath.Join(t.TempDir(), "csi.sock")
	ep, err := ParseEndpoint("unix://" + sock)
	require.NoError(t, err)
	l, err := ep.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.d.Serve(ctx, l) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	var mu sync.Mutex
	var cleanupErrs []error
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + sock
	cfg.TargetPath = kubeletDir + "/pods/sanity/volumes/mount"
	cfg.StagingPath = kubeletDir + "/plugins/sanity/staging"
	// Extent multiples that are not whole GiB: csi-sanity asks for exactly
	// required == limit bytes and wants that size back.
	cfg.TestVolumeSize = core.GiB + 4*core.MiB
	cfg.TestVolumeExpandSize = 2*core.GiB + 8*core.MiB
	mkdir := func(p string) (string, error) { return p, e.h.MakeDir(context.Background(), p) }
	cfg.CreateTargetDir = mkdir
	cfg.CreateStagingDir = mkdir
	remove := func(p string) error {
		err := e.h.RemovePath(context.Background(), p)
		if err != nil {
			mu.Lock()
			cleanupErrs = append(cleanupErrs, err)
			mu.Unlock()
		}
		return err
	}
	cfg.RemoveTargetPath = remove
	cfg.RemoveStagingPath = remove
	cfg.CheckPath = func(p string) (sanity.PathKind, error) {
		ok, err := e.h.PathExists(context.Background(), p)
		if err != nil {
			return "", err
		}
		if !ok {
			return sanity.PathIsNotFound, nil
		}
		if _, err := e.h.ListDir(context.Background(), p); err == nil {
			return sanity.PathIsDir, nil
		} else if errors.Is(err, hostexec.ErrInvalidArgument) || errors.Is(err, hostexec.ErrNotFound) {
			return sanity.PathIsFile, nil
		}
		return sanity.PathIsOther, nil
	}
	sanity.Test(t, cfg)

	require.Empty(t, cleanupErrs, "the driver left something in a target or staging directory")
	// Every volume and snapshot csi-sanity made was deleted: nothing is left
	// on the host or in the ledger.
	e.checkLedgerMatchesHost()
	require.Empty(t, e.d.cap.claims())
	mounts, err := e.h.ListMounts(e.ctx)
	require.NoError(t, err)
	require.Empty(t, mounts)
}
