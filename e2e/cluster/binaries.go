package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrNotBuilt reports that the control-plane binaries are not available.
// Start and Shared turn it into a skip unless OPEN_LOCAL_REQUIRE_CLUSTER=1.
var ErrNotBuilt = errors.New("control-plane binaries not built; run hack/build-k8s.sh")

// Environment variables read by this package.
const (
	EnvBinDir  = "OPEN_LOCAL_K8S_BIN"
	EnvCache   = "OPEN_LOCAL_CACHE"
	EnvRequire = "OPEN_LOCAL_REQUIRE_CLUSTER"
)

const (
	buildScript = "hack/build-k8s.sh"
	// stampName is written by the build script next to bin/ once every
	// binary is in place; a bin/ without it is an interrupted build.
	stampName = "complete"
)

// Binary names in the bin directory.
const (
	BinEtcd               = "etcd"
	BinAPIServer          = "kube-apiserver"
	BinControllerManager  = "kube-controller-manager"
	BinScheduler          = "kube-scheduler"
	BinCSIProvisioner     = "csi-provisioner"
	BinCSIResizer         = "csi-resizer"
	BinCSISnapshotter     = "csi-snapshotter"
	BinSnapshotController = "snapshot-controller"
)

func requireCluster() bool { return os.Getenv(EnvRequire) == "1" }

var (
	binDirOnce sync.Once
	binDirPath string
	binDirErr  error
)

// BinDir returns the directory that holds the control-plane binaries:
// $OPEN_LOCAL_K8S_BIN if set, else the cache directory hack/build-k8s.sh
// builds into for the current tools modules. The error wraps ErrNotBuilt
// when that build has not completed.
func BinDir() (string, error) {
	binDirOnce.Do(func() { binDirPath, binDirErr = findBinDir() })
	return binDirPath, binDirErr
}

func findBinDir() (string, error) {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return "", fmt.Errorf("%w: %s=%q is not a directory", ErrNotBuilt, EnvBinDir, dir)
		}
		return filepath.Abs(dir)
	}
	if root, ok := findRepoRoot(); ok {
		dir, err := scriptBinDir(root)
		if err != nil {
			return "", err
		}
		if !fileExists(filepath.Join(filepath.Dir(dir), stampName)) {
			return "", fmt.Errorf("%w (no complete build in %s)", ErrNotBuilt, filepath.Dir(dir))
		}
		return dir, nil
	}
	// Outside the source tree (a test binary copied elsewhere): use whatever
	// the last complete build was.
	cache, err := cacheRoot()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotBuilt, err)
	}
	current := filepath.Join(cache, "k8s-current")
	if !fileExists(filepath.Join(current, stampName)) {
		return "", fmt.Errorf("%w (no source tree found and no complete build at %s)", ErrNotBuilt, current)
	}
	return filepath.Join(current, "bin"), nil
}

// scriptBinDir asks the build script where it builds, so the cache key is
// computed in one place only.
func scriptBinDir(root string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, buildScript), "--print-dir")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s --print-dir: %w: %s", buildScript, err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("%s --print-dir printed %q, want an absolute path", buildScript, dir)
	}
	return dir, nil
}

// findRepoRoot walks up from the working directory (go test runs tests in
// their package directory) to the directory holding the build script.
func findRepoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if fileExists(filepath.Join(dir, buildScript)) && fileExists(filepath.Join(dir, "go.mod")) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func cacheRoot() (string, error) {
	if dir := os.Getenv(EnvCache); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "open-local"), nil
}

// checkBinaries verifies that dir holds an executable for every name.
func checkBinaries(dir string, names ...string) error {
	var missing []string
	for _, name := range names {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (%s lacks %s)", ErrNotBuilt, dir, strings.Join(missing, ", "))
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
