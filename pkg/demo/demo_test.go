package demo

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/status"
)

const gi = core.GiB

// run runs the demo and checks that it left no goroutine behind.
func runDemo(t *testing.T, opt Options) (*Result, error) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	if opt.Timeout == 0 {
		opt.Timeout = 30 * time.Second
	}
	return Run(context.Background(), opt)
}

func nodeOf(t *testing.T, res *Result, pod string) string {
	t.Helper()
	for _, p := range res.Placements {
		if p.Pod == pod {
			return p.Node
		}
	}
	t.Fatalf("pod %s was not placed: %+v", pod, res.Placements)
	return ""
}

func vgOf(t *testing.T, rep *status.Report, node string) status.Resource {
	t.Helper()
	for _, n := range rep.Nodes {
		if n.Name != node {
			continue
		}
		for _, r := range n.Resources {
			if r.Kind == status.KindVG && r.Name == poolName {
				return r
			}
		}
	}
	t.Fatalf("no VG %s on %s in the report", poolName, node)
	return status.Resource{}
}

func TestRunPlacesProvisionsSnapshotsAndExpands(t *testing.T) {
	var progress bytes.Buffer
	res, err := runDemo(t, Options{Nodes: 2, Replicas: 3, Progress: &progress})
	require.NoError(t, err, "progress:\n%s", progress.String())

	assert.Equal(t, 4, res.Pods)
	assert.Len(t, res.Placements, 4)
	assert.Empty(t, res.Unschedulable)
	assert.Equal(t, 4, res.PVsBound)
	assert.Equal(t, 4, res.PodsRunning)
	assert.True(t, res.AgentsReported)
	assert.Empty(t, res.Overcommits)
	assert.Empty(t, res.Errors)

	// Binpack keeps filling the node it started on while the VG has room.
	for _, p := range []string{"default/web-0", "default/web-1", "default/web-2"} {
		assert.Equal(t, "node-1", nodeOf(t, res, p))
	}
	db := res.Placements[3]
	require.Len(t, db.Volumes, 1)
	assert.Equal(t, rawDevice, db.Volumes[0].Device, "the Device volume takes the blank ssd")
	assert.Equal(t, 50*gi, db.Volumes[0].Bytes, "a Device volume is the whole disk")

	require.NotNil(t, res.Snapshot)
	assert.True(t, res.Snapshot.ReadyToUse)
	assert.Equal(t, "node-1", res.Snapshot.Node)
	assert.Equal(t, 4*gi, res.Snapshot.COWBytes)
	assert.Equal(t, 20*gi, res.Snapshot.RestoreBytes)

	require.NotNil(t, res.Expansion)
	assert.True(t, res.Expansion.Done)
	assert.Equal(t, 20*gi, res.Expansion.FromBytes)
	assert.Equal(t, 30*gi, res.Expansion.ToBytes)

	// The report counts the expanded volume, the two others and the
	// snapshot, as the extender does (check compared the two).
	require.NotNil(t, res.Status)
	require.Len(t, res.Status.Nodes, 2)
	vg := vgOf(t, res.Status, "node-1")
	assert.Equal(t, (30+20+20+4)*gi, vg.RequestedBytes)
	assert.Equal(t, status.HealthReady, vg.Health)
	assert.Equal(t, int64(0), vgOf(t, res.Status, "node-2").RequestedBytes)
	assert.Positive(t, res.ElapsedSeconds)
}

func TestRunReportsWhatDoesNotFit(t *testing.T) {
	res, err := runDemo(t, Options{Nodes: 1, Replicas: 5})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pod default/web-4 is unschedulable")
	require.Len(t, res.Unschedulable, 1)
	assert.Equal(t, "default/web-4", res.Unschedulable[0].Pod)
	assert.Contains(t, res.Unschedulable[0].Reason, "Insufficient LVM storage")
	// Everything else still happened, and nothing was over-committed.
	assert.Len(t, res.Placements, 5)
	assert.Equal(t, 5, res.PVsBound)
	assert.True(t, res.Snapshot.ReadyToUse)
	assert.True(t, res.Expansion.Done)
	assert.Empty(t, res.Overcommits)
	assert.Empty(t, res.Errors)
	assert.Equal(t, (30+3*20+4)*gi, vgOf(t, res.Status, "node-1").RequestedBytes)
}

func TestRunSpread(t *testing.T) {
	res, err := runDemo(t, Options{Nodes: 3, Replicas: 3, Strategy: core.Spread})
	require.NoError(t, err)
	nodes := map[string]bool{}
	for _, p := range []string{"default/web-0", "default/web-1", "default/web-2"} {
		nodes[nodeOf(t, res, p)] = true
	}
	assert.Len(t, nodes, 3, "spread puts each volume on an empty node")
	assert.Equal(t, "spread", res.Strategy)
}

func TestRunWithoutReplicas(t *testing.T) {
	res, err := runDemo(t, Options{Nodes: 1, Replicas: 0})
	require.NoError(t, err)
	assert.Len(t, res.Placements, 1, "the db pod alone")
	assert.Nil(t, res.Snapshot)
	assert.Nil(t, res.Expansion)
}

func TestRunStopsWithItsContext(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Options{Nodes: 3, Replicas: 6})
	require.Error(t, err)
	require.NotNil(t, res)
	assert.NotEmpty(t, res.Errors)
	assert.Less(t, time.Since(start), 15*time.Second)
}

func TestOptionsAreChecked(t *testing.T) {
	for _, opt := range []Options{{Nodes: MaxNodes + 1}, {Nodes: -1}, {Replicas: -1}, {Replicas: MaxReplicas + 1}} {
		res, err := Run(context.Background(), opt)
		assert.Error(t, err, "%+v", opt)
		assert.Nil(t, res)
	}
}

func TestResultErr(t *testing.T) {
	assert.NoError(t, (&Result{}).Err())
	one := &Result{Unschedulable: []Unschedulable{{Pod: "default/web-4", Reason: "0/1 nodes are available"}}}
	assert.EqualError(t, one.Err(), "pod default/web-4 is unschedulable: 0/1 nodes are available")
	many := &Result{Errors: []string{"CreateVolume failed"}, Overcommits: []string{"x"}}
	for i := 0; i < 5; i++ {
		many.Unschedulable = append(many.Unschedulable, Unschedulable{Pod: "default/web-" + string(rune('0'+i)), Reason: "full"})
	}
	assert.EqualError(t, many.Err(), "CreateVolume failed\n5 pods are unschedulable (default/web-0, default/web-1, default/web-2, …); the first: full\nover-committed: x")
}
