package system

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-local/open-local/e2e/cluster"
)

// buildDir holds the open-local binary built for this run.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "open-local-system-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the module root (manifests are read from deploy/).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func requireCluster() bool { return os.Getenv(cluster.EnvRequire) == "1" }

// skipOrFail skips t with reason, or fails it when the environment asks
// for the cluster tier to run.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if requireCluster() {
		t.Fatalf("%s (%s=1 makes this a failure)", reason, cluster.EnvRequire)
	}
	t.Skip(reason)
}

// requireBinaries skips (or fails) t unless the control-plane bin directory
// holds every named binary, and returns that directory.
func requireBinaries(t testing.TB, names ...string) string {
	t.Helper()
	if testing.Short() && !requireCluster() {
		t.Skip("the system tier starts a control plane and dozens of processes; skipped in -short mode")
	}
	dir, err := cluster.BinDir()
	if errors.Is(err, cluster.ErrNotBuilt) {
		skipOrFail(t, err.Error())
	}
	if err != nil {
		t.Fatalf("locate control-plane binaries: %v", err)
	}
	var missing []string
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.Mode().Perm()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		skipOrFail(t, fmt.Sprintf("%v (%s lacks %s)", cluster.ErrNotBuilt, dir, strings.Join(missing, ", ")))
	}
	return dir
}

var sidecars = []string{
	cluster.BinEtcd, cluster.BinAPIServer, cluster.BinControllerManager, cluster.BinScheduler,
	cluster.BinCSIProvisioner, cluster.BinCSIResizer, cluster.BinCSISnapshotter, cluster.BinSnapshotController,
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// openLocalBinary builds cmd/open-local once per test run.
func openLocalBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		buildPath = filepath.Join(buildDir, "open-local")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", buildPath, "./cmd/open-local")
		cmd.Dir = repoRoot()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/open-local: %w\n%s", err, out.String())
			return
		}
		t.Logf("built open-local in %v", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// pluginScheduler returns the cached open-local-scheduler binary, skipping
// (or failing) t when hack/build-scheduler-plugin.sh has not built it for
// the current tree.
func pluginScheduler(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(), "hack", "build-scheduler-plugin.sh"), "--print-path")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/build-scheduler-plugin.sh --print-path: %v: %s", err, stderr.String())
	}
	path := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(path, '\n'); i >= 0 {
		path = path[i+1:]
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm()&0o111 == 0 {
		skipOrFail(t, "open-local-scheduler is not built for this tree; run hack/build-scheduler-plugin.sh ("+path+" is missing)")
	}
	return path
}
