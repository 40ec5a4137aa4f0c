package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/pkg/demo"
)

func TestDemoQuietPrintsTheStatusTable(t *testing.T) {
	out, _, err := runCLI(t, "", "demo", "--quiet", "--nodes", "2", "--replicas", "2")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^NODE\s+KIND\s+NAME\s+MEDIA\s+ALLOCATABLE\s+REQUESTED\s+FREE\s+HEALTH$`, out)
	// web-0 (expanded to 30Gi), web-1 and the 4Gi snapshot on node-1.
	assert.Regexp(t, `(?m)^node-1\s+VG\s+open-local-pool-0\s+ssd\s+99\.9Gi\s+54Gi\s+45\.9Gi\s+Ready$`, out)
	assert.Regexp(t, `(?m)^node-1\s+DEVICE\s+/dev/vdc\s+ssd\s+50Gi\s+50Gi\s+0\s+Ready$`, out)
	assert.Regexp(t, `(?m)^2 nodes, 3 pods: 3 placed, 0 unschedulable; 3 PVs bound; snapshot ready; default/data-web-0 expanded to 30Gi; 0 over-committed; [0-9.]+s$`, out)
	assert.NotContains(t, out, "pod default/web-0 →", "--quiet prints no steps")
}

func TestDemoPrintsSteps(t *testing.T) {
	out, _, err := runCLI(t, "", "demo", "--nodes", "1", "--replicas", "1")
	require.NoError(t, err)
	assert.Contains(t, out, "node-1: agent created VG open-local-pool-0 on /dev/vdb")
	assert.Regexp(t, `pod default/web-0 → node-1 \(binpack score \d+; scores node-1=\d+\)`, out)
	assert.Contains(t, out, "expansion of data-web-0 on node-1: 20Gi → 30Gi")
}

func TestDemoJSON(t *testing.T) {
	out, errOut, err := runCLI(t, "", "demo", "--json", "--nodes", "1", "--replicas", "5")
	require.Error(t, err, "web-4 does not fit on one node")
	assert.Contains(t, err.Error(), "pod default/web-4 is unschedulable")
	assert.Contains(t, errOut, "pod default/web-4: unschedulable", "the steps go to stderr with --json")
	var res demo.Result
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Len(t, res.Placements, 5)
	require.Len(t, res.Unschedulable, 1)
	assert.Equal(t, "default/web-4", res.Unschedulable[0].Pod)
	assert.Empty(t, res.Overcommits)
	require.NotNil(t, res.Status)
	assert.Equal(t, "node-1", res.Status.Nodes[0].Name)
}

func TestDemoFlagErrors(t *testing.T) {
	for args, want := range map[string][]string{
		"--nodes 0: must be from 1 to 20":      {"demo", "--nodes", "0"},
		"--replicas -1: must be from 0 to 100": {"demo", "--replicas", "-1"},
		"--strategy":                           {"demo", "--strategy", "random"},
		"--timeout 0s: must be positive":       {"demo", "--timeout", "0s"},
	} {
		_, _, err := runCLI(t, "", want...)
		require.Error(t, err, "%v", want)
		assert.Contains(t, err.Error(), args)
	}
}
