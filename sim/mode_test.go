package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func exampleSet(t *testing.T) *Set {
	t.Helper()
	s := NewSet()
	require.NoError(t, s.LoadExample(ExampleCluster))
	require.NoError(t, s.LoadExample(ExampleWorkload))
	return s
}

func placedPods(r *Result) []string {
	var out []string
	for _, p := range r.Placements {
		out = append(out, p.Pod)
	}
	sort.Strings(out)
	return out
}

// checkFinalState recounts the placements from the result's own ledger
// figures: no VG holds more than it offers, and no device has two owners.
func checkFinalState(t *testing.T, r *Result) {
	t.Helper()
	assert.Zero(t, r.OvercommittedBytes, "bytes over-committed in mode %s", r.Mode)
	assert.Zero(t, r.Overcommitted, "over-committed resources in mode %s: %+v", r.Mode, r.Overcommits)
	for _, rr := range r.Resources {
		assert.LessOrEqual(t, rr.RequestedBytes, rr.AllocatableBytes, "node %s %s in mode %s", rr.Node, rr.Name, r.Mode)
	}
	devices := map[string]string{}
	for _, p := range r.Placements {
		for _, v := range p.Volumes {
			if v.Device == "" {
				continue
			}
			key := p.Node + " " + v.Device
			if other, ok := devices[key]; ok {
				assert.Failf(t, "device shared", "%s holds %s and %s", key, other, v.Claim)
			}
			devices[key] = v.Claim
		}
	}
}

func TestModesOnTheExample(t *testing.T) {
	core0 := run(t, exampleSet(t), Options{})
	for _, mode := range []string{ModeExtender, ModePlugin} {
		t.Run(mode, func(t *testing.T) {
			r := run(t, exampleSet(t), Options{Mode: mode})
			assert.Equal(t, mode, r.Mode)
			checkFinalState(t, r)
			assert.Equal(t, placedPods(core0), placedPods(r), "the same pods fit whichever code places them")
			require.Len(t, r.Unschedulable, 1)
			assert.Equal(t, "default/analytics", r.Unschedulable[0].Pod)
			assert.Contains(t, r.Unschedulable[0].Reason, "0/4 nodes are available: 4 Insufficient LVM storage; persistentvolumeclaim default/analytics-data requests 300Gi")
			if mode == ModePlugin {
				assert.Zero(t, r.OvercommitAttemptsCaught, "Reserve inside the cycle never over-commits")
				assert.Zero(t, r.Reschedules)
			}
			assert.Equal(t, r.OvercommitAttemptsCaught, r.Reschedules, "every refused reservation sends its pod round again")

			var table bytes.Buffer
			require.NoError(t, r.WriteTable(&table))
			assert.Contains(t, table.String(), fmt.Sprintf("mode %s: ", mode))
			assert.Contains(t, table.String(), "over-commit attempts caught at reservation, 0 over-committed")
		})
	}
}

func TestModeJSONFields(t *testing.T) {
	r := run(t, exampleSet(t), Options{Mode: ModeExtender, BindLag: 4})
	var out bytes.Buffer
	require.NoError(t, r.WriteJSON(&out))
	var m map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &m))
	assert.Equal(t, "extender", m["mode"])
	assert.Equal(t, float64(r.Reschedules), m["reschedules"])
	assert.Equal(t, float64(r.OvercommitAttemptsCaught), m["overcommitAttemptsCaught"])
	assert.Equal(t, float64(0), m["overcommittedBytes"])
	assert.Contains(t, m, "placementsPerSecond")

	c := run(t, exampleSet(t), Options{})
	assert.Equal(t, ModeCore, c.Mode)
	var table bytes.Buffer
	require.NoError(t, c.WriteTable(&table))
	assert.NotContains(t, table.String(), "mode core", "core mode's footer is unchanged")
}

func TestModeOptionsAreChecked(t *testing.T) {
	_, err := Run(exampleSet(t), Options{Mode: "kubelet"})
	assert.ErrorContains(t, err, `unknown mode "kubelet" (accepted: core, extender, plugin)`)
	_, err = Run(exampleSet(t), Options{Mode: ModeExtender, BindLag: -1})
	assert.ErrorContains(t, err, "bind lag -1: must be at least 0")
}

// contended is a cluster of nodes whose VG holds exactly one of its pods'
// volumes, so that pods scheduled before earlier ones are bound all pick
// the same emptiest node.
func contended(nodes, pods int) *Set {
	var b strings.Builder
	for i := range nodes {
		fmt.Fprintf(&b, "%s---\n", nls(fmt.Sprintf("n%d", i), 100, ""))
	}
	b.WriteString(classes)
	for i := range pods {
		// Sizes vary so that binpack ranks nodes differently as they fill.
		fmt.Fprintf(&b, "---\n%s---\n%s", pvc(fmt.Sprintf("c%d", i), "lvm", fmt.Sprintf("%dGi", 60+i%3*10)), pod(fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i)))
	}
	s := NewSet()
	if err := s.Load("contended.yaml", strings.NewReader(b.String())); err != nil {
		panic(err)
	}
	return s
}

func TestExtenderCatchesOvercommitAtReservation(t *testing.T) {
	r := run(t, contended(4, 6), Options{Mode: ModeExtender, BindLag: 8})
	checkFinalState(t, r)
	assert.Len(t, r.Placements, 4, "one pod per node")
	assert.Len(t, r.Unschedulable, 2)
	assert.Positive(t, r.OvercommitAttemptsCaught, "pods scheduled ahead of binding chose nodes already promised")
	assert.Positive(t, r.Reschedules)

	p := run(t, contended(4, 6), Options{Mode: ModePlugin, BindLag: 8})
	checkFinalState(t, p)
	assert.Len(t, p.Placements, 4)
	assert.Zero(t, p.OvercommitAttemptsCaught)
	assert.Zero(t, p.Reschedules)
}

// generated is n nodes of the example template and a workload of pods
// with LVM, Device and MountPoint volumes of varied sizes, together more
// than the cluster holds.
func generated(t testing.TB, nodes, pods int) *Set {
	tmpl := NewSet()
	require.NoError(t, tmpl.LoadExample(ExampleNodeTemplate))
	s := NewSet()
	require.NoError(t, s.Generate(tmpl, nodes))
	var b strings.Builder
	b.WriteString(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: lvm}
provisioner: local.csi.aliyun.com
parameters: {volumeType: LVM, vgName: open-local-pool-0}
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ssd}
provisioner: local.csi.aliyun.com
parameters: {volumeType: Device, mediaType: ssd}
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: hdd-mount}
provisioner: local.csi.aliyun.com
parameters: {volumeType: MountPoint, mediaType: hdd}
volumeBindingMode: WaitForFirstConsumer
`)
	for i := range pods {
		class, size := "lvm", fmt.Sprintf("%dGi", 50+(i*37)%5*50)
		switch i % 10 {
		case 3:
			class, size = "ssd", "500Gi"
		case 7:
			class, size = "hdd-mount", "1Ti"
		}
		fmt.Fprintf(&b, "---\n%s---\n%s", pvc(fmt.Sprintf("v%d", i), class, size), pod(fmt.Sprintf("w%d", i), fmt.Sprintf("v%d", i)))
	}
	require.NoError(t, s.Load("workload.yaml", strings.NewReader(b.String())))
	return s
}

func TestModesOnAGeneratedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("places 1000 pods on 200 nodes three times; skipped with -short")
	}
	results := map[string]*Result{}
	for _, mode := range []string{ModeCore, ModeExtender, ModePlugin} {
		r, err := Run(generated(t, 200, 1000), Options{Mode: mode})
		require.NoError(t, err)
		results[mode] = r
		checkFinalState(t, r)
		assert.Equal(t, 1000, r.Pods)
		t.Logf("mode %s: %d placed, %d unschedulable, %.0f placements/s, %d reschedules, %d over-commit attempts caught",
			mode, len(r.Placements), len(r.Unschedulable), r.PlacementsPerSecond, r.Reschedules, r.OvercommitAttemptsCaught)
	}
	assert.Equal(t, len(results[ModeCore].Placements), len(results[ModePlugin].Placements), "the plugin places as many pods as core")
	assert.Zero(t, results[ModePlugin].OvercommitAttemptsCaught)
	assert.Positive(t, results[ModeExtender].OvercommitAttemptsCaught, "binding lags scheduling by 16 pods")
}
