package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckBinaries(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, BinEtcd), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, BinAPIServer), []byte("not executable"), 0o644))
	require.NoError(t, checkBinaries(dir, BinEtcd))

	err := checkBinaries(dir, BinEtcd, BinAPIServer, BinScheduler)
	require.ErrorIs(t, err, ErrNotBuilt)
	assert.Contains(t, err.Error(), "run hack/build-k8s.sh")
	assert.Contains(t, err.Error(), "lacks kube-apiserver, kube-scheduler")
}

func TestFindBinDirFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBinDir, dir)
	got, err := findBinDir()
	require.NoError(t, err)
	assert.Equal(t, dir, got)

	t.Setenv(EnvBinDir, filepath.Join(dir, "missing"))
	_, err = findBinDir()
	require.ErrorIs(t, err, ErrNotBuilt)
	assert.Contains(t, err.Error(), EnvBinDir)
}

// The Go side finds the cache through the build script, so both agree on
// the key; an unbuilt cache must read as "not built", never as a half build.
func TestFindBinDirAsksTheBuildScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH; the build script needs it")
	}
	cache := t.TempDir()
	t.Setenv(EnvBinDir, "")
	t.Setenv(EnvCache, cache)

	root, ok := findRepoRoot()
	require.True(t, ok, "the package lives in the source tree")
	want, err := scriptBinDir(root)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(want, filepath.Join(cache, "k8s-")), want)
	assert.Equal(t, "bin", filepath.Base(want))
	again, err := scriptBinDir(root)
	require.NoError(t, err)
	assert.Equal(t, want, again, "the key is deterministic")

	_, err = findBinDir()
	require.ErrorIs(t, err, ErrNotBuilt)

	// Binaries without the completion stamp are an interrupted build.
	require.NoError(t, os.MkdirAll(want, 0o755))
	_, err = findBinDir()
	require.ErrorIs(t, err, ErrNotBuilt)

	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(want), stampName), nil, 0o644))
	got, err := findBinDir()
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.NoError(t, exec.Command("bash", filepath.Join(root, buildScript), "--check").Run(), "--check agrees")
}
