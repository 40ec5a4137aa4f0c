package v1alpha1

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGeneratedCodeIsUpToDate regenerates deepcopy, CRDs, clientset, listers
// and informers in a scratch copy of the tree and fails on any difference from
// what is committed. It builds the generators, which takes minutes on a cold
// cache, so it runs only where OPEN_LOCAL_VERIFY_CODEGEN=1 (CI sets it).
func TestGeneratedCodeIsUpToDate(t *testing.T) {
	if os.Getenv("OPEN_LOCAL_VERIFY_CODEGEN") != "1" {
		t.Skip("set OPEN_LOCAL_VERIFY_CODEGEN=1 to regenerate the code and diff it (builds the generators)")
	}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), filepath.Join(root, "hack", "verify-codegen.sh"))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "hack/verify-codegen.sh:\n%s", out)
}
