package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	"github.com/open-local/open-local/extender/fixture"
	"github.com/open-local/open-local/extender/plugin/fwkfake"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	fwk "k8s.io/kube-scheduler/framework"
	"sigs.k8s.io/yaml"
)

const GiB = fixture.GiB

func nodeInfo(name string) fwk.NodeInfo {
	return fwkfake.NodeInfo{N: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}}
}

type env struct {
	t      *testing.T
	cache  *cache.Cache
	plugin *Plugin
	client *fake.Clientset
}

// newEnv builds a plugin on nodes n1 (VG "pool", vg1Bytes) and n2 (VG
// "pool", vg2Bytes), with StorageClass "lvm" (any VG) and "ssd" (Device).
func newEnv(t *testing.T, s core.Strategy, vg1Bytes, vg2Bytes int64) *env {
	t.Helper()
	c := cache.New(cache.Options{Strategy: s})
	c.UpsertNode(fixture.Node("n1", "n1"))
	c.UpsertNode(fixture.Node("n2", "n2"))
	c.UpsertNLS(fixture.NLS("n1", []fixture.VG{{Name: "pool", Bytes: vg1Bytes}}, []fixture.Device{{Name: "/dev/sdb", Bytes: 100 * GiB, Media: "ssd"}}, nil))
	c.UpsertNLS(fixture.NLS("n2", []fixture.VG{{Name: "pool", Bytes: vg2Bytes}}, nil, nil))
	c.UpsertStorageClass(fixture.LVMClass("lvm", ""))
	c.UpsertStorageClass(fixture.DeviceClass("ssd", "ssd"))
	c.MarkSynced()
	client := fake.NewClientset()
	return &env{t: t, cache: c, plugin: NewWithCache(c, s, client), client: client}
}

// pod creates PVCs of class lvm with the given sizes and a pod using them.
func (e *env) pod(name string, sizes ...int64) *corev1.Pod {
	var names []string
	for i, b := range sizes {
		pvc := fixture.PVC("ns", fmt.Sprintf("%s-%d", name, i), "lvm", b, i)
		e.cache.UpsertPVC(pvc)
		_, err := e.client.CoreV1().PersistentVolumeClaims("ns").Create(context.Background(), pvc, metav1.CreateOptions{})
		require.NoError(e.t, err)
		names = append(names, pvc.Name)
	}
	p := fixture.Pod("ns", name, names...)
	e.cache.UpsertPod(p)
	return p
}

func (e *env) preFilter(pod *corev1.Pod) (*fwkfake.CycleState, *fwk.Status) {
	st := fwkfake.NewCycleState()
	_, s := e.plugin.PreFilter(context.Background(), st, pod, nil)
	return st, s
}

func TestPreFilterSkipsPodsWithoutOpenLocalVolumes(t *testing.T) {
	e := newEnv(t, core.Binpack, 100*GiB, 100*GiB)
	pod := fixture.Pod("ns", "plain")
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	st, s := e.preFilter(pod)
	require.Equal(t, fwk.Skip, s.Code())
	_, err := st.Read(stateKey)
	assert.ErrorIs(t, err, fwk.ErrNotFound)

	_, s = e.plugin.PreBindPreFlight(context.Background(), st, pod, "n1")
	assert.Equal(t, fwk.Skip, s.Code())
}

func TestPreFilterMissingPVCIsUnschedulable(t *testing.T) {
	e := newEnv(t, core.Binpack, 100*GiB, 100*GiB)
	_, s := e.preFilter(fixture.Pod("ns", "p", "nope"))
	require.Equal(t, fwk.UnschedulableAndUnresolvable, s.Code())
	assert.Contains(t, s.Message(), "ns/nope")
}

func TestFilterScoreReserveUnreserve(t *testing.T) {
	e := newEnv(t, core.Binpack, 10*GiB, 100*GiB)
	big := e.pod("big", 20*GiB)
	st, s := e.preFilter(big)
	require.True(t, s.IsSuccess(), s.Message())

	s = e.plugin.Filter(context.Background(), st, big, nodeInfo("n1"))
	require.Equal(t, fwk.Unschedulable, s.Code())
	assert.Contains(t, s.Message(), "Insufficient LVM storage")
	require.True(t, e.plugin.Filter(context.Background(), st, big, nodeInfo("n2")).IsSuccess())
	assert.Equal(t, fwk.Unschedulable, e.plugin.Filter(context.Background(), st, big, nodeInfo("n3")).Code(), "a node without NodeLocalStorage holds nothing")

	// Binpack prefers the fuller node: 4 GiB of 10 scores above 4 of 100.
	small := e.pod("small", 4*GiB)
	sst, s := e.preFilter(small)
	require.True(t, s.IsSuccess())
	s1, s := e.plugin.Score(context.Background(), sst, small, nodeInfo("n1"))
	require.True(t, s.IsSuccess())
	s2, _ := e.plugin.Score(context.Background(), sst, small, nodeInfo("n2"))
	assert.Greater(t, s1, s2)
	assert.LessOrEqual(t, s1, int64(fwk.MaxScore))

	// Reserve takes 4 GiB of n1: a second 7 GiB pod no longer fits there.
	require.True(t, e.plugin.Reserve(context.Background(), sst, small, "n1").IsSuccess())
	assert.Equal(t, 1, e.plugin.Reservations())
	other := e.pod("other", 7*GiB)
	ost, _ := e.preFilter(other)
	assert.Equal(t, fwk.Unschedulable, e.plugin.Filter(context.Background(), ost, other, nodeInfo("n1")).Code())

	// The reserved pod itself still fits where it is reserved (its own
	// reservation is not counted against it).
	assert.True(t, e.plugin.Filter(context.Background(), sst, small, nodeInfo("n1")).IsSuccess())

	e.plugin.Unreserve(context.Background(), sst, small, "n1")
	e.plugin.Unreserve(context.Background(), sst, small, "n1") // idempotent
	assert.Equal(t, 0, e.plugin.Reservations())
	assert.True(t, e.plugin.Filter(context.Background(), ost, other, nodeInfo("n1")).IsSuccess())
}

func TestScoreSpreadPrefersEmptierNode(t *testing.T) {
	e := newEnv(t, core.Spread, 10*GiB, 100*GiB)
	p := e.pod("p", 4*GiB)
	st, _ := e.preFilter(p)
	s1, s := e.plugin.Score(context.Background(), st, p, nodeInfo("n1"))
	require.True(t, s.IsSuccess())
	s2, _ := e.plugin.Score(context.Background(), st, p, nodeInfo("n2"))
	assert.Greater(t, s2, s1)
	assert.Nil(t, e.plugin.ScoreExtensions(), "scores are already on the framework's scale")
}

func TestReserveFailsWhenNodeFilled(t *testing.T) {
	e := newEnv(t, core.Binpack, 10*GiB, 10*GiB)
	a, b := e.pod("a", 6*GiB), e.pod("b", 6*GiB)
	ast, _ := e.preFilter(a)
	bst, _ := e.preFilter(b)
	// Both pass Filter on n1 before either reserves; only one Reserve wins.
	require.True(t, e.plugin.Filter(context.Background(), ast, a, nodeInfo("n1")).IsSuccess())
	require.True(t, e.plugin.Filter(context.Background(), bst, b, nodeInfo("n1")).IsSuccess())
	require.True(t, e.plugin.Reserve(context.Background(), ast, a, "n1").IsSuccess())
	s := e.plugin.Reserve(context.Background(), bst, b, "n1")
	require.Equal(t, fwk.Unschedulable, s.Code())
	assert.Contains(t, s.Message(), "Insufficient LVM storage")
}

func TestReservationEndsWhenCacheShowsClaims(t *testing.T) {
	e := newEnv(t, core.Binpack, 10*GiB, 10*GiB)
	a := e.pod("a", 6*GiB)
	ast, _ := e.preFilter(a)
	require.True(t, e.plugin.Reserve(context.Background(), ast, a, "n1").IsSuccess())

	// The volume binder writes selected-node: the cache charges the claim
	// by its annotation, and the plugin must not count it twice.
	pvc, err := e.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "a-0", metav1.GetOptions{})
	require.NoError(t, err)
	e.cache.UpsertPVC(fixture.Selected(pvc, "n1"))
	b := e.pod("b", 4*GiB)
	bst, _ := e.preFilter(b)
	require.True(t, e.plugin.Filter(context.Background(), bst, b, nodeInfo("n1")).IsSuccess(), "6+4 GiB fit in 10 GiB")
	require.True(t, e.plugin.Reserve(context.Background(), bst, b, "n1").IsSuccess())
	assert.Equal(t, 1, e.plugin.Reservations(), "a's reservation is pruned once the cache holds it")
	assert.Empty(t, e.cache.Overcommits())
}

func TestPreBindAnnotatesPVCs(t *testing.T) {
	e := newEnv(t, core.Spread, 10*GiB, 10*GiB)
	pvc := fixture.PVC("ns", "fast", "ssd", 50*GiB, 0)
	e.cache.UpsertPVC(pvc)
	_, err := e.client.CoreV1().PersistentVolumeClaims("ns").Create(context.Background(), pvc, metav1.CreateOptions{})
	require.NoError(t, err)
	lv := e.pod("lv", 1*GiB)
	pod := fixture.Pod("ns", "p", "fast", "lv-0")
	pod.UID = "pod-p"
	e.cache.UpsertPod(pod)
	_ = lv

	st, s := e.preFilter(pod)
	require.True(t, s.IsSuccess(), s.Message())
	require.Equal(t, fwk.Unschedulable, e.plugin.Filter(context.Background(), st, pod, nodeInfo("n2")).Code(), "n2 has no device")
	require.True(t, e.plugin.Reserve(context.Background(), st, pod, "n1").IsSuccess())
	_, s = e.plugin.PreBindPreFlight(context.Background(), st, pod, "n1")
	require.True(t, s.IsSuccess())
	require.True(t, e.plugin.PreBind(context.Background(), st, pod, "n1").IsSuccess())

	want := map[string]Allocation{
		"fast": {Device: "/dev/sdb", VolumeType: "Device"},
		"lv-0": {VGName: "pool", VolumeType: "LVM"},
	}
	for name, w := range want {
		got, err := e.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), name, metav1.GetOptions{})
		require.NoError(t, err)
		var a Allocation
		require.NoError(t, json.Unmarshal([]byte(got.Annotations[AllocatedAnnotation]), &a), name)
		assert.Equal(t, w, a, name)
	}
}

func TestPreBindReportsMissingPVC(t *testing.T) {
	e := newEnv(t, core.Binpack, 10*GiB, 10*GiB)
	pod := e.pod("gone", 1*GiB)
	st, _ := e.preFilter(pod)
	require.True(t, e.plugin.Reserve(context.Background(), st, pod, "n1").IsSuccess())
	require.NoError(t, e.client.CoreV1().PersistentVolumeClaims("ns").Delete(context.Background(), "gone-0", metav1.DeleteOptions{}))
	s := e.plugin.PreBind(context.Background(), st, pod, "n1")
	require.False(t, s.IsSuccess())
	assert.Contains(t, s.Message(), "ns/gone-0")
}

func TestInlineVolumeReserved(t *testing.T) {
	e := newEnv(t, core.Binpack, 10*GiB, 10*GiB)
	a := fixture.WithInline(fixture.Pod("ns", "a"), "scratch", "pool", "8Gi")
	b := fixture.WithInline(fixture.Pod("ns", "b"), "scratch", "pool", "8Gi")
	e.cache.UpsertPod(a)
	e.cache.UpsertPod(b)
	ast, s := e.preFilter(a)
	require.True(t, s.IsSuccess(), s.Message())
	bst, _ := e.preFilter(b)
	require.True(t, e.plugin.Reserve(context.Background(), ast, a, "n1").IsSuccess())
	assert.Equal(t, fwk.Unschedulable, e.plugin.Filter(context.Background(), bst, b, nodeInfo("n1")).Code())
	// Once a runs on n1 the cache charges its inline volume itself.
	e.cache.UpsertPod(fixture.OnNode(a, "n1"))
	assert.Equal(t, fwk.Unschedulable, e.plugin.Filter(context.Background(), bst, b, nodeInfo("n1")).Code())
	require.True(t, e.plugin.Reserve(context.Background(), bst, b, "n2").IsSuccess())
	assert.Equal(t, 1, e.plugin.Reservations(), "a is settled, b is not")
}

// TestConcurrentReserveNeverOvercommits races many pods through
// Filter→Reserve on one VG: exactly as many as fit get it, and feeding the
// winners' selected-node annotations to the cache over-commits nothing.
func TestConcurrentReserveNeverOvercommits(t *testing.T) {
	const pods, size, vg = 64, 3 * GiB, 50 * GiB
	e := newEnv(t, core.Binpack, vg, vg)
	list := make([]*corev1.Pod, pods)
	for i := range list {
		list[i] = e.pod(fmt.Sprintf("p%02d", i), size)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []*corev1.Pod
		fail int
	)
	for _, p := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, s := e.preFilter(p)
			if !s.IsSuccess() {
				t.Errorf("PreFilter %s: %s", p.Name, s.Message())
				return
			}
			if !e.plugin.Filter(context.Background(), st, p, nodeInfo("n1")).IsSuccess() {
				mu.Lock()
				fail++
				mu.Unlock()
				return
			}
			s = e.plugin.Reserve(context.Background(), st, p, "n1")
			mu.Lock()
			defer mu.Unlock()
			if s.IsSuccess() {
				won = append(won, p)
			} else {
				fail++
			}
		}()
	}
	wg.Wait()
	fits := int(vg / size)
	require.Len(t, won, fits)
	assert.Equal(t, pods-fits, fail)
	for _, p := range won {
		pvc, err := e.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), p.Name+"-0", metav1.GetOptions{})
		require.NoError(t, err)
		e.cache.UpsertPVC(fixture.Selected(pvc, "n1"))
	}
	assert.Empty(t, e.cache.Overcommits())
	v, ok := e.cache.View("n1")
	require.True(t, ok)
	assert.Len(t, v.Nodes[0].Claims, fits)
	assert.Empty(t, v.Nodes[0].Unplaced, "every annotated claim fits where the plugin reserved it")
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      Config
		err       string
	}{
		{name: "empty", want: Config{Strategy: core.Binpack}},
		{name: "json", raw: `{"strategy":"spread","kubeconfig":"/k"}`, want: Config{Strategy: core.Spread, KubeConfig: "/k"}},
		{name: "historical names", raw: "schedulerStrategy: spread\nkubeConfigPath: /k\n", want: Config{Strategy: core.Spread, KubeConfig: "/k"}},
		{name: "bad strategy", raw: `{"strategy":"random"}`, err: `strategy "random"`},
		{name: "unknown field", raw: `{"stratgy":"spread"}`, err: "stratgy"},
		{name: "disagree", raw: `{"strategy":"spread","schedulerStrategy":"binpack"}`, err: "disagree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var obj runtime.Object
			if tc.raw != "" {
				obj = &runtime.Unknown{Raw: []byte(tc.raw)}
			}
			got, err := ParseArgs(obj)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := ParseArgs(&corev1.Pod{})
	assert.ErrorContains(t, err, "unsupported type")
}

// TestDeployConfigEnablesPlugin checks the shipped KubeSchedulerConfiguration:
// the plugin at every extension point it implements, and args it accepts.
func TestDeployConfigEnablesPlugin(t *testing.T) {
	data, err := os.ReadFile("../../deploy/scheduler/kube-scheduler-config-plugin.yaml")
	require.NoError(t, err)
	type pluginSet struct {
		Enabled []struct{ Name string } `json:"enabled"`
	}
	var cfg struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Profiles   []struct {
			SchedulerName string               `json:"schedulerName"`
			Plugins       map[string]pluginSet `json:"plugins"`
			PluginConfig  []struct {
				Name string          `json:"name"`
				Args json.RawMessage `json:"args"`
			} `json:"pluginConfig"`
		} `json:"profiles"`
	}
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	require.Equal(t, "kubescheduler.config.k8s.io/v1", cfg.APIVersion)
	require.Equal(t, "KubeSchedulerConfiguration", cfg.Kind)
	require.Len(t, cfg.Profiles, 1)
	prof := cfg.Profiles[0]
	assert.Equal(t, "open-local-scheduler", prof.SchedulerName)
	for _, point := range []string{"preFilter", "filter", "score", "reserve", "preBind"} {
		set, ok := prof.Plugins[point]
		require.True(t, ok, point)
		require.Len(t, set.Enabled, 1, point)
		assert.Equal(t, Name, set.Enabled[0].Name, point)
	}
	require.Len(t, prof.PluginConfig, 1)
	require.Equal(t, Name, prof.PluginConfig[0].Name)
	got, err := ParseArgs(&runtime.Unknown{Raw: prof.PluginConfig[0].Args})
	require.NoError(t, err)
	assert.Equal(t, core.Binpack, got.Strategy)
}

// TestUnreserveGivesBytesBack: a pod whose binding failed leaves nothing
// booked, and a second Unreserve changes nothing.
func TestUnreserveGivesBytesBack(t *testing.T) {
	e := newEnv(t, core.Binpack, 10*GiB, 10*GiB)
	a, b := e.pod("a", 8*GiB), e.pod("b", 8*GiB)
	ast, _ := e.preFilter(a)
	bst, _ := e.preFilter(b)
	require.True(t, e.plugin.Reserve(context.Background(), ast, a, "n1").IsSuccess())
	require.Equal(t, fwk.Unschedulable, e.plugin.Filter(context.Background(), bst, b, nodeInfo("n1")).Code(), "a holds n1")
	e.plugin.Unreserve(context.Background(), ast, a, "n1")
	e.plugin.Unreserve(context.Background(), ast, a, "n1")
	assert.Equal(t, 0, e.plugin.Reservations())
	fresh, _ := e.preFilter(b)
	assert.True(t, e.plugin.Filter(context.Background(), fresh, b, nodeInfo("n1")).IsSuccess(), "a's bytes are back")
	_, _, ok := e.cache.Claim("ns/a-0")
	assert.False(t, ok, "nothing charged for a")
}

// TestAssumptionEndsWithItsPVC: deleting the PVC of an assumed pod (the
// user gave up before binding) frees its bytes.
func TestAssumptionEndsWithItsPVC(t *testing.T) {
	e := newEnv(t, core.Binpack, 10*GiB, 10*GiB)
	a := e.pod("a", 8*GiB)
	ast, _ := e.preFilter(a)
	require.True(t, e.plugin.Reserve(context.Background(), ast, a, "n1").IsSuccess())
	_, _, ok := e.cache.Claim("ns/a-0")
	require.True(t, ok)
	e.cache.DeletePVC("ns", "a-0")
	_, _, ok = e.cache.Claim("ns/a-0")
	assert.False(t, ok)
	assert.Equal(t, 0, e.plugin.Reservations())
}
