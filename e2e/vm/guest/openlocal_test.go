//go:build vmguest

package guest

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOpenLocalBinary checks that the real binary, built for the node, runs
// in the guest, and exercises the subprocess functions the CSI tests use.
func TestOpenLocalBinary(t *testing.T) {
	t.Run("version", func(t *testing.T) {
		out, _, err := RunOpenLocal(t, "version")
		require.NoError(t, err)
		require.NotEmpty(t, strings.TrimSpace(out), "open-local version prints the version")
	})

	t.Run("help_lists_subcommands", func(t *testing.T) {
		out, _, err := RunOpenLocal(t, "--help")
		require.NoError(t, err)
		require.Contains(t, out, "version")
	})

	t.Run("unknown_subcommand_fails", func(t *testing.T) {
		_, stderr, err := RunOpenLocal(t, "no-such-subcommand")
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "an unknown subcommand must fail")
		require.NotZero(t, ee.ExitCode())
		require.Contains(t, stderr, "no-such-subcommand", "the error names the subcommand")
	})

	t.Run("subprocess", func(t *testing.T) {
		p := StartOpenLocal(t, nil, "version")
		require.NoError(t, p.Wait(30*time.Second))
		ended, err := p.Exited()
		require.True(t, ended)
		require.NoError(t, err)
		require.NotEmpty(t, strings.TrimSpace(p.Output()))
	})
}
