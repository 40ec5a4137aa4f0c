package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCLI runs the root command as the binary would, with stdin.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestSimBuiltInExample(t *testing.T) {
	out, errOut, err := runCLI(t, "", "sim")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^NODE\s+RESOURCE\s+ALLOCATABLE\s+REQUESTED\s+FREE\s+PODS$`, out)
	assert.Regexp(t, `(?m)^node-3\s+mountpoint /mnt/open-local/disk-0 \(hdd\)\s+1Ti\s+1Ti\s+0\s+default/log-archiver$`, out)
	assert.Regexp(t, `default/analytics\s+0/4 nodes are available: 4 Insufficient LVM storage`, out)
	assert.Contains(t, out, "4 nodes, 10 pods: 9 placed, 1 unschedulable; 0 over-committed resources")
	assert.Equal(t, "note: skipping Pod default/nginx: it has no Open-Local volume\n", errOut)
}

type simJSON struct {
	Placements []struct {
		Pod     string `json:"pod"`
		Node    string `json:"node"`
		Volumes []struct {
			Claim  string `json:"claim"`
			VG     string `json:"vg"`
			Device string `json:"device"`
			Bytes  int64  `json:"bytes"`
		} `json:"volumes"`
	} `json:"placements"`
	Unschedulable []struct {
		Pod    string `json:"pod"`
		Reason string `json:"reason"`
	} `json:"unschedulable"`
	Overcommitted int     `json:"overcommitted"`
	Pods          int     `json:"pods"`
	Nodes         int     `json:"nodes"`
	Elapsed       float64 `json:"elapsedSeconds"`
}

func TestSimJSONFromStdinAndFiles(t *testing.T) {
	examples := filepath.Join("..", "..", "sim", "examples")
	cluster, err := os.ReadFile(filepath.Join(examples, "cluster.yaml"))
	require.NoError(t, err)
	out, _, err := runCLI(t, string(cluster), "sim", "--json", "-f", "-", "-f", filepath.Join(examples, "workload.yaml"), "--strategy", "spread")
	require.NoError(t, err)
	var res simJSON
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, 4, res.Nodes)
	assert.Equal(t, 10, res.Pods)
	assert.Len(t, res.Placements, 9)
	assert.Equal(t, 0, res.Overcommitted)
	require.Len(t, res.Unschedulable, 1)
	assert.Equal(t, "default/analytics", res.Unschedulable[0].Pod)
	nodes := map[string]bool{}
	for _, p := range res.Placements {
		nodes[p.Node] = true
	}
	assert.Len(t, nodes, 4, "spread uses every node")
}

func TestSimGenerate(t *testing.T) {
	examples := filepath.Join("..", "..", "sim", "examples")
	out, _, err := runCLI(t, "", "sim", "--json", "--generate", "300", "--template", filepath.Join(examples, "node-template.yaml"))
	require.NoError(t, err)
	var res simJSON
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, 300, res.Nodes)
	assert.Equal(t, 10, res.Pods, "the built-in workload by default")
	assert.Empty(t, res.Unschedulable)
	for _, p := range res.Placements {
		assert.True(t, strings.HasPrefix(p.Node, "storage-node-"), p.Node)
	}
}

func TestSimErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("kind: Node\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: [\n"), 0o600))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"sim", "-f", bad}, bad + ": document 2 (line 4)"},
		{[]string{"sim", "-f", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"sim", "--strategy", "random"}, `--strategy: invalid strategy "random" (accepted: binpack, spread)`},
		{[]string{"sim", "--sample", "-2"}, "--sample -2"},
		{[]string{"sim", "--generate", "5"}, "--generate and --template go together"},
		{[]string{"sim", "--generate", "0", "--template", bad}, "--generate and --template go together"},
		{[]string{"sim", "-f", "-", "-f", "-"}, "stdin can be read only once"},
		{[]string{"sim", "extra"}, `unknown command "extra"`},
		{[]string{"sim", "--mode", "kubelet"}, `--mode: unknown mode "kubelet" (accepted: core, extender, plugin)`},
		{[]string{"sim", "--mode", "extender", "--bind-lag", "0"}, "--bind-lag 0: must be at least 1"},
	}
	for _, c := range cases {
		_, _, err := runCLI(t, "", c.args...)
		require.Error(t, err, "%v", c.args)
		assert.Contains(t, err.Error(), c.want, "%v", c.args)
	}
}

func TestSimPrintExamples(t *testing.T) {
	out, _, err := runCLI(t, "", "sim", "--print-examples")
	require.NoError(t, err)
	assert.Contains(t, out, "# ---- examples/cluster.yaml ----")
	assert.Contains(t, out, "kind: NodeLocalStorage")
	// What it prints is valid input again.
	again, _, err := runCLI(t, out, "sim", "--json", "-f", "-")
	require.NoError(t, err)
	var res simJSON
	require.NoError(t, json.Unmarshal([]byte(again), &res))
	assert.Equal(t, 5, res.Nodes, "four nodes plus the template's")
}

func TestSimModes(t *testing.T) {
	for _, mode := range []string{"extender", "plugin"} {
		out, _, err := runCLI(t, "", "sim", "--mode", mode, "--bind-lag", "4")
		require.NoError(t, err, mode)
		assert.Contains(t, out, "4 nodes, 10 pods: 9 placed, 1 unschedulable; 0 over-committed resources", mode)
		assert.Regexp(t, `(?m)^mode `+mode+`: \d+ placements/s, \d+ reschedules, \d+ over-commit attempts caught at reservation, 0 over-committed$`, out)

		out, _, err = runCLI(t, "", "sim", "--mode", mode, "--json")
		require.NoError(t, err, mode)
		var res struct {
			Mode               string `json:"mode"`
			Reschedules        *int   `json:"reschedules"`
			Caught             *int   `json:"overcommitAttemptsCaught"`
			OvercommittedBytes int64  `json:"overcommittedBytes"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		assert.Equal(t, mode, res.Mode)
		require.NotNil(t, res.Reschedules)
		require.NotNil(t, res.Caught)
		assert.Zero(t, res.OvercommittedBytes)
	}
}
