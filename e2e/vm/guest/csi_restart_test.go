//go:build vmguest && vmcsi

package guest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCSIRestart kills the plugin with SIGKILL at the points where a node
// plugin most often dies mid-way and checks that the CO's retries succeed on
// the restarted process and that nothing leaks.
func TestCSIRestart(t *testing.T) {
	d := startCSIDriver(t)

	t.Run("between_stage_and_publish", func(t *testing.T) {
		v := d.create(t, "restart-stage", 128*csiMiB, mountCap("ext4"), map[string]string{"volumeType": "LVM"}, nil)
		d.stage(t, v)
		d.restart()
		// kubelet repeats NodeStageVolume after a plugin restart: idempotent.
		d.stage(t, v)
		d.publish(t, v, false, nil)
		require.NoError(t, os.WriteFile(filepath.Join(v.target, "f"), []byte("after restart"), 0o644))
		d.teardown(t, v)
		requireNoMountsUnder(t, d.dir)
		require.Empty(t, lvNames(t))
	})

	t.Run("between_publish_and_unpublish", func(t *testing.T) {
		v := d.create(t, "restart-publish", 128*csiMiB, mountCap("ext4"), map[string]string{"volumeType": "LVM"}, nil)
		d.stage(t, v)
		d.publish(t, v, false, nil)
		require.NoError(t, os.WriteFile(filepath.Join(v.target, "f"), []byte("before restart"), 0o644))
		d.restart()
		// The mount survives the plugin; a repeated publish is a no-op.
		_, ok, err := MountOf(v.target)
		require.NoError(t, err)
		require.True(t, ok, "the published mount outlives the plugin process")
		d.publish(t, v, false, nil)
		got, err := os.ReadFile(filepath.Join(v.target, "f"))
		require.NoError(t, err)
		require.Equal(t, "before restart", string(got))
		d.teardown(t, v)
		requireNoMountsUnder(t, d.dir)
		require.Empty(t, lvNames(t))
	})
}
