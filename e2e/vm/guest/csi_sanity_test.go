//go:build vmguest && vmcsi

package guest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// TestCSISanity runs csi-sanity against the production binary on the real
// host: LVs in a VG on a virtio disk, real ext4 mounts under target and
// staging directories on the guest's filesystem, with csi-sanity's own
// hooks creating and removing those directories. The volume sizes are those
// of the in-process suite (csi/sanity_test.go): whole extents off GiB
// boundaries, since csi-sanity asks for required == limit bytes. The
// driver's cleanup checks that no LV and no mount is left.
func TestCSISanity(t *testing.T) {
	const mib, gib = int64(1) << 20, int64(1) << 30
	d := startCSIDriver(t)
	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + d.sock
	// csi-sanity's hooks create the two directories, not their parent.
	require.NoError(t, os.MkdirAll(filepath.Join(d.dir, "sanity"), 0o750))
	cfg.TargetPath = filepath.Join(d.dir, "sanity", "target")
	cfg.StagingPath = filepath.Join(d.dir, "sanity", "staging")
	cfg.TestVolumeSize = gib + 4*mib
	cfg.TestVolumeExpandSize = 2*gib + 8*mib
	sanity.Test(t, cfg)
}
