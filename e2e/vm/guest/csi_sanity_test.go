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
//
// It runs in parallel with TestCSILifecycle, on a disk and a VG of its own
// (sanityVG on Disks.Sanity), with LVM commands that see only that disk and
// no device Device volumes may take, so that neither driver can allocate or
// list what the other one uses.
func TestCSISanity(t *testing.T) {
	t.Parallel()
	const mib, gib = int64(1) << 20, int64(1) << 30
	disks := RequireDisks(t)
	env := lvmView(t, `"a|^`+disks.Sanity.Path+`$|", "r|.*|"`)
	d := startCSIDriverOn(t, disks.Sanity, sanityVG, env,
		"--vg-include", "^"+sanityVG+"$", "--device-include", "^/dev/open-local-sanity-has-no-device$")
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
