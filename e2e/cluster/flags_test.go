package cluster

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

func TestMergeFlagsOverridesByName(t *testing.T) {
	got := mergeFlags(
		[]string{"--a=1", "--b=2", "--flag", "--c=3"},
		[]string{"--b=20", "--flag=false", "--d=4"},
	)
	assert.Equal(t, []string{"--a=1", "--c=3", "--b=20", "--flag=false", "--d=4"}, got)
	assert.Equal(t, []string{"--a=1"}, mergeFlags([]string{"--a=1"}, nil))
}

func TestWriteSchedulerConfigDefault(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "out.yaml")
	require.NoError(t, writeSchedulerConfig("", "/k/sched.kubeconfig", dst))
	cfg := readYAML(t, dst)
	assert.Equal(t, "KubeSchedulerConfiguration", cfg["kind"])
	assert.Equal(t, "kubescheduler.config.k8s.io/v1", cfg["apiVersion"])
	assert.Equal(t, map[string]any{"kubeconfig": "/k/sched.kubeconfig"}, cfg["clientConnection"])
	assert.Equal(t, map[string]any{"leaderElect": false}, cfg["leaderElection"])
}

func TestWriteSchedulerConfigKeepsUserSettings(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.yaml")
	require.NoError(t, os.WriteFile(src, []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: /somewhere/else
  qps: 77
leaderElection:
  leaderElect: true
profiles:
- schedulerName: custom
extenders:
- urlPrefix: http://127.0.0.1:9999
  filterVerb: filter
`), 0o600))
	dst := filepath.Join(dir, "out.yaml")
	require.NoError(t, writeSchedulerConfig(src, "/k/sched.kubeconfig", dst))
	cfg := readYAML(t, dst)
	assert.Equal(t, map[string]any{"kubeconfig": "/k/sched.kubeconfig", "qps": float64(77)}, cfg["clientConnection"])
	assert.Equal(t, map[string]any{"leaderElect": true}, cfg["leaderElection"], "an explicit setting is kept")
	assert.Equal(t, []any{map[string]any{"schedulerName": "custom"}}, cfg["profiles"])
	assert.Len(t, cfg["extenders"], 1)
}

func TestWriteSchedulerConfigRejectsOtherKinds(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.yaml")
	require.NoError(t, os.WriteFile(src, []byte("apiVersion: v1\nkind: ConfigMap\n"), 0o600))
	err := writeSchedulerConfig(src, "k", filepath.Join(dir, "out.yaml"))
	require.ErrorContains(t, err, "want KubeSchedulerConfiguration")

	err = writeSchedulerConfig(filepath.Join(dir, "missing.yaml"), "k", filepath.Join(dir, "out.yaml"))
	require.ErrorContains(t, err, "missing.yaml")
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(data, &m))
	return m
}

func TestControllerEnabled(t *testing.T) {
	names := []string{"serviceaccount-controller", "serviceaccount"}
	assert.True(t, controllerEnabled(nil, names...), "default is *")
	assert.True(t, controllerEnabled([]string{"*", "-node-lifecycle-controller"}, names...))
	assert.False(t, controllerEnabled([]string{"*", "-serviceaccount-controller"}, names...))
	assert.False(t, controllerEnabled([]string{"-serviceaccount", "*"}, names...))
	assert.True(t, controllerEnabled([]string{"serviceaccount-controller"}, names...))
	assert.False(t, controllerEnabled([]string{"namespace-controller"}, names...))
}
