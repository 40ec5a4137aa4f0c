package extender

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	fx "github.com/open-local/open-local/extender/fixture"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

const gi = fx.GiB

type testServer struct {
	*httptest.Server
	cache *cache.Cache
}

func newTestServer(t *testing.T, strategy core.Strategy, setup func(*cache.Cache)) *testServer {
	t.Helper()
	c := cache.New(cache.Options{Strategy: strategy})
	if setup != nil {
		setup(c)
	}
	c.MarkSynced()
	hs := httptest.NewServer(NewServer(c, NewMetrics(c), Config{Version: "v-test", MaxRequestBytes: 1 << 20}).Handler())
	t.Cleanup(hs.Close)
	return &testServer{Server: hs, cache: c}
}

func (s *testServer) post(t *testing.T, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(t, err)
		r = bytes.NewReader(data)
	}
	resp, err := http.Post(s.URL+path, "application/json", r)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func (s *testServer) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(s.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func (s *testServer) filter(t *testing.T, pod *corev1.Pod, nodes ...string) extenderv1.ExtenderFilterResult {
	t.Helper()
	code, body := s.post(t, "/scheduler/predicates", extenderv1.ExtenderArgs{Pod: pod, NodeNames: &nodes})
	require.Equal(t, http.StatusOK, code, string(body))
	var res extenderv1.ExtenderFilterResult
	require.NoError(t, json.Unmarshal(body, &res), string(body))
	return res
}

func (s *testServer) prioritize(t *testing.T, pod *corev1.Pod, nodes ...string) map[string]int64 {
	t.Helper()
	code, body := s.post(t, "/scheduler/priorities", extenderv1.ExtenderArgs{Pod: pod, NodeNames: &nodes})
	require.Equal(t, http.StatusOK, code, string(body))
	var list extenderv1.HostPriorityList
	require.NoError(t, json.Unmarshal(body, &list), string(body))
	out := map[string]int64{}
	for _, h := range list {
		out[h.Host] = h.Score
	}
	return out
}

// passed is the node names a filter result lets through.
func passed(r extenderv1.ExtenderFilterResult) []string {
	if r.NodeNames == nil || len(*r.NodeNames) == 0 {
		return nil
	}
	return *r.NodeNames
}

func storageClasses(c *cache.Cache) {
	c.UpsertStorageClass(fx.LVMClass("lvm", ""))
	c.UpsertStorageClass(fx.LVMClass("lvm-a", "a"))
	c.UpsertStorageClass(fx.LVMClass("lvm-b", "b"))
	c.UpsertStorageClass(fx.DeviceClass("ssd", "ssd"))
	c.UpsertStorageClass(fx.DeviceClass("hdd", "hdd"))
	c.UpsertStorageClass(fx.MountPointClass("mp-hdd", "hdd"))
	c.UpsertStorageClass(fx.StorageClass("lvm-ro", map[string]string{"volumeType": "LVM", cache.ParamReadOnly: "true"}))
	ebs := fx.StorageClass("ebs", nil)
	ebs.Provisioner = "ebs.csi.aws.com"
	c.UpsertStorageClass(ebs)
}

// semanticsCluster: small has VG a 50Gi + one ssd 100Gi; big has VGs a
// 200Gi and b 100Gi, two hdds and a mount point; bare has no storage.
func semanticsCluster(c *cache.Cache) {
	storageClasses(c)
	c.UpsertNLS(fx.NLS("small", []fx.VG{{Name: "a", Bytes: 50 * gi}}, []fx.Device{{Name: "/dev/vdc", Bytes: 100 * gi, Media: "ssd"}}, nil))
	c.UpsertNLS(fx.NLS("big", []fx.VG{{Name: "a", Bytes: 200 * gi}, {Name: "b", Bytes: 100 * gi}},
		[]fx.Device{{Name: "/dev/vdd", Bytes: 500 * gi, Media: "hdd"}, {Name: "/dev/vde", Bytes: 500 * gi, Media: "hdd"}},
		[]fx.MountPoint{{Path: "/mnt/open-local/disk1", Bytes: 300 * gi}}))
}

func TestFilterSemantics(t *testing.T) {
	s := newTestServer(t, core.Binpack, func(c *cache.Cache) {
		semanticsCluster(c)
		for _, p := range []*corev1.PersistentVolumeClaim{
			fx.PVC("ns", "lvm10", "lvm", 10*gi, 1),
			fx.PVC("ns", "lvm60", "lvm", 60*gi, 1),
			fx.PVC("ns", "pin-b", "lvm-b", 10*gi, 1),
			fx.PVC("ns", "ssd50", "ssd", 50*gi, 1),
			fx.PVC("ns", "hdd1", "hdd", 100*gi, 1),
			fx.PVC("ns", "hdd2", "hdd", 100*gi, 1),
			fx.PVC("ns", "hdd3", "hdd", 100*gi, 1),
			fx.PVC("ns", "mp", "mp-hdd", 100*gi, 1),
			fx.PVC("ns", "web", "ebs", 10*gi, 1),
		} {
			c.UpsertPVC(p)
		}
		// A snapshot of a volume on big, and a restore of it.
		src := fx.PVC("ns", "src", "lvm", 10*gi, 1)
		pv := fx.PV(src, fx.Placement{Node: "big", VG: "a"})
		c.UpsertPVC(fx.Bound(fx.Selected(src, "big"), pv.Name))
		c.UpsertPV(pv)
		c.UpsertSnapshot(fx.Snapshot("ns", "snap", "content"))
		c.UpsertSnapshotContent(fx.SnapshotContent("content", pv.Name, "snap-1"))
		c.UpsertPVC(fx.RestoreFrom(fx.PVC("ns", "restored", "lvm-ro", 10*gi, 2), "snap"))
		c.UpsertPVC(fx.RestoreFrom(fx.PVC("ns", "copied", "lvm", 10*gi, 2), "snap"))
	})
	nodes := []string{"small", "big", "bare"}
	cases := []struct {
		name   string
		pod    *corev1.Pod
		passed []string
		// reasons of the failed nodes
		reasons map[string]string
	}{
		{"LVM fits where the VG has room", fx.Pod("ns", "p", "lvm60"), []string{"big"},
			map[string]string{"small": core.ReasonInsufficientLVM, "bare": core.ReasonNoStorage}},
		{"pinned VG", fx.Pod("ns", "p", "pin-b"), []string{"big"},
			map[string]string{"small": core.ReasonNoSuchVG, "bare": core.ReasonNoStorage}},
		{"media type", fx.Pod("ns", "p", "ssd50"), []string{"small"},
			map[string]string{"big": core.ReasonInsufficientDev, "bare": core.ReasonNoStorage}},
		{"device count", fx.Pod("ns", "p", "hdd1", "hdd2", "hdd3"), nil,
			map[string]string{"small": core.ReasonInsufficientDev, "big": core.ReasonInsufficientDev, "bare": core.ReasonNoStorage}},
		{"two devices fit", fx.Pod("ns", "p", "hdd1", "hdd2"), []string{"big"}, nil},
		{"mount point", fx.Pod("ns", "p", "mp"), []string{"big"}, map[string]string{"small": core.ReasonInsufficientMP}},
		{"read-only restore on the source node", fx.Pod("ns", "p", "restored"), []string{"big"},
			map[string]string{"small": core.ReasonWrongNode, "bare": core.ReasonNoStorage}},
		{"writable restore on the source node", fx.Pod("ns", "p", "copied"), []string{"big"}, map[string]string{"small": core.ReasonWrongNode}},
		{"bound PVC stays on its node", fx.Pod("ns", "p", "src"), []string{"big"}, map[string]string{"small": core.ReasonWrongNode}},
		{"inline volume", fx.WithInline(fx.Pod("ns", "p"), "tmp", "b", "20Gi"), []string{"big"}, map[string]string{"small": core.ReasonNoSuchVG}},
		{"mixed pod", fx.WithInline(fx.Pod("ns", "p", "lvm10", "ssd50", "web"), "tmp", "a", "1Gi"), []string{"small"}, map[string]string{"big": core.ReasonInsufficientDev}},
		{"other drivers' PVCs pass through", fx.Pod("ns", "p", "web"), []string{"small", "big", "bare"}, nil},
		{"no volumes at all", fx.Pod("ns", "p"), []string{"small", "big", "bare"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := s.filter(t, tc.pod, nodes...)
			assert.Equal(t, tc.passed, passed(res))
			assert.Empty(t, res.FailedNodes)
			assert.Empty(t, res.Error)
			assert.Len(t, res.FailedAndUnresolvableNodes, len(nodes)-len(tc.passed))
			for n, want := range tc.reasons {
				assert.Equal(t, want, res.FailedAndUnresolvableNodes[n], "node %s", n)
			}
		})
	}

	t.Run("request-level errors fail every node with one message", func(t *testing.T) {
		res := s.filter(t, fx.Pod("ns", "p", "ghost"), nodes...)
		assert.Empty(t, passed(res))
		for _, n := range nodes {
			assert.Equal(t, "persistentvolumeclaim ns/ghost not found", res.FailedAndUnresolvableNodes[n])
		}
	})
}

func TestPrioritizeStrategies(t *testing.T) {
	setup := func(c *cache.Cache) {
		storageClasses(c)
		// empty: 100Gi free; half: 50 of 100Gi used; full: 80 of 100Gi used.
		for n, used := range map[string]int64{"empty": 0, "half": 50, "full": 80} {
			c.UpsertNLS(fx.NLS(n, []fx.VG{{Name: "a", Bytes: 100 * gi}}, []fx.Device{{Name: "/dev/vdc", Bytes: 100 * gi, Media: "ssd"}, {Name: "/dev/vdd", Bytes: 400 * gi, Media: "ssd"}}, nil))
			if used > 0 {
				c.UpsertPVC(fx.Selected(fx.PVC("ns", "used-"+n, "lvm", used*gi, 0), n))
			}
		}
		c.UpsertPVC(fx.PVC("ns", "ten", "lvm", 10*gi, 1))
		c.UpsertPVC(fx.PVC("ns", "dev", "ssd", 90*gi, 1))
		c.UpsertPVC(fx.PVC("ns", "web", "ebs", 10*gi, 1))
	}
	nodes := []string{"empty", "half", "full"}
	bin := newTestServer(t, core.Binpack, setup)
	scores := bin.prioritize(t, fx.Pod("ns", "p", "ten"), nodes...)
	assert.Equal(t, map[string]int64{"empty": 1, "half": 6, "full": 9}, scores, "binpack prefers used VGs")

	spread := newTestServer(t, core.Spread, setup)
	scores = spread.prioritize(t, fx.Pod("ns", "p", "ten"), nodes...)
	assert.Equal(t, map[string]int64{"empty": 9, "half": 4, "full": 1}, scores, "spread prefers free VGs")

	// Devices: the snuggest fit scores highest (90Gi on a 100Gi disk), both strategies.
	scores = spread.prioritize(t, fx.Pod("ns", "p", "dev"), nodes...)
	assert.Equal(t, map[string]int64{"empty": 9, "half": 9, "full": 9}, scores)

	scores = bin.prioritize(t, fx.Pod("ns", "p", "web"), nodes...)
	assert.Equal(t, map[string]int64{"empty": 0, "half": 0, "full": 0}, scores, "other drivers' pods: no preference")
	scores = bin.prioritize(t, fx.Pod("ns", "p", "ghost"), nodes...)
	assert.Equal(t, map[string]int64{"empty": 0, "half": 0, "full": 0}, scores)
}

func TestScaleScore(t *testing.T) {
	for in, want := range map[int]int64{0: 0, 4: 0, 5: 1, 50: 5, 94: 9, 95: 10, 100: 10, -3: 0, 250: 10} {
		assert.Equal(t, want, scaleScore(in), "score %d", in)
	}
}

func TestFilterWithNodeObjects(t *testing.T) {
	// nodeCacheCapable: false sends whole Node objects and expects them back.
	s := newTestServer(t, core.Binpack, func(c *cache.Cache) {
		semanticsCluster(c)
		c.UpsertPVC(fx.PVC("ns", "lvm60", "lvm", 60*gi, 1))
	})
	list := &corev1.NodeList{}
	for _, n := range []string{"small", "big", "bare"} {
		list.Items = append(list.Items, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"zone": "z1"}}})
	}
	code, body := s.post(t, "/scheduler/predicates", extenderv1.ExtenderArgs{Pod: fx.Pod("ns", "p", "lvm60"), Nodes: list})
	require.Equal(t, http.StatusOK, code, string(body))
	var res extenderv1.ExtenderFilterResult
	require.NoError(t, json.Unmarshal(body, &res))
	require.NotNil(t, res.Nodes)
	require.Len(t, res.Nodes.Items, 1)
	assert.Equal(t, "big", res.Nodes.Items[0].Name)
	assert.Equal(t, "z1", res.Nodes.Items[0].Labels["zone"], "the Node objects come back whole")
	assert.Len(t, res.FailedAndUnresolvableNodes, 2)

	code, body = s.post(t, "/scheduler/priorities", extenderv1.ExtenderArgs{Pod: fx.Pod("ns", "p", "lvm60"), Nodes: list})
	require.Equal(t, http.StatusOK, code)
	var prio extenderv1.HostPriorityList
	require.NoError(t, json.Unmarshal(body, &prio))
	assert.Len(t, prio, 3)
}

func TestReservationCall(t *testing.T) {
	s := newTestServer(t, core.Binpack, func(c *cache.Cache) {
		semanticsCluster(c)
		c.UpsertPVC(fx.PVC("ns", "a", "lvm", 10*gi, 1))
		c.UpsertPVC(fx.PVC("ns", "d", "hdd", 10*gi, 1))
		c.UpsertPVC(fx.PVC("ns", "m", "mp-hdd", 10*gi, 1))
		c.UpsertPVC(fx.PVC("ns", "huge", "lvm", 900*gi, 1))
		c.UpsertPod(fx.Pod("ns", "app", "a", "d", "m"))
	})
	code, body := s.post(t, "/apis/scheduling/ns/persistentvolumeclaims/a?nodeName=big&volumeType=LVM", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var b cache.Binding
	require.NoError(t, json.Unmarshal(body, &b))
	assert.Equal(t, cache.Binding{Node: "big", VGName: "b", VolumeType: "LVM", PersistentVolumeClaim: "ns/a"}, b, "binpack: the VG with the least room that fits")
	assert.JSONEq(t, `{"node":"big","disk":"","vgName":"b","device":"","volumeType":"LVM","persistentVolumeClaim":"ns/a"}`, string(body), "open-local's field names")

	code, body = s.post(t, "/apis/scheduling/ns/persistentvolumeclaims/d?nodeName=big", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.NoError(t, json.Unmarshal(body, &b))
	assert.Equal(t, "/dev/vdd", b.Device)
	code, body = s.post(t, "/apis/scheduling/ns/persistentvolumeclaims/m?nodeName=big", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.NoError(t, json.Unmarshal(body, &b))
	assert.Equal(t, "/mnt/open-local/disk1", b.Disk)

	for _, tc := range []struct {
		path string
		code int
		msg  string
	}{
		{"/apis/scheduling/ns/persistentvolumeclaims/a", http.StatusBadRequest, "nodeName is required"},
		{"/apis/scheduling/ns/persistentvolumeclaims/a?nodeName=", http.StatusBadRequest, "nodeName is required"},
		{"/apis/scheduling/ns/persistentvolumeclaims/nope?nodeName=big", http.StatusNotFound, "ns/nope"},
		{"/apis/scheduling/ns/persistentvolumeclaims/a?nodeName=small", http.StatusConflict, "reserved on node big"},
		{"/apis/scheduling/ns/persistentvolumeclaims/huge?nodeName=big", http.StatusConflict, "Insufficient LVM storage"},
		{"/apis/scheduling/ns/persistentvolumeclaims/a?nodeName=big&volumeType=Device", http.StatusBadRequest, "does not match"},
	} {
		code, body := s.post(t, tc.path, nil)
		assert.Equal(t, tc.code, code, "%s: %s", tc.path, body)
		var e errorBody
		require.NoError(t, json.Unmarshal(body, &e), tc.path)
		assert.Contains(t, e.Error, tc.msg, tc.path)
	}
	_, body = s.post(t, "/apis/scheduling/ns/persistentvolumeclaims/huge?nodeName=big", nil)
	var e errorBody
	require.NoError(t, json.Unmarshal(body, &e))
	assert.Equal(t, core.ReasonInsufficientLVM, e.Reason)

	code, _ = s.get(t, "/apis/scheduling/ns/persistentvolumeclaims/a?nodeName=big")
	assert.Equal(t, http.StatusMethodNotAllowed, code)
}

func TestRefusedRequests(t *testing.T) {
	s := newTestServer(t, core.Binpack, semanticsCluster)
	big := `{"Pod":{},"NodeNames":["` + strings.Repeat("x", 2<<20) + `"]}`
	for name, body := range map[string]string{
		"not JSON":      `{"Pod":`,
		"trailing data": `{"Pod":{}} x`,
		"wrong type":    `{"Pod":{},"NodeNames":"n1"}`,
		"no pod":        `{"NodeNames":["n1"]}`,
		"oversized":     big,
		"empty":         ``,
	} {
		for _, path := range []string{"/scheduler/predicates", "/scheduler/priorities"} {
			code, out := s.post(t, path, body)
			assert.Equal(t, http.StatusBadRequest, code, "%s %s: %s", name, path, out)
			var e errorBody
			require.NoError(t, json.Unmarshal(out, &e), "%s: the error is JSON", name)
			assert.NotEmpty(t, e.Error)
			var fr extenderv1.ExtenderFilterResult
			require.NoError(t, json.Unmarshal(out, &fr))
			assert.Equal(t, e.Error, fr.Error, "kube-scheduler reads the message as ExtenderFilterResult.Error")
		}
	}
	_, out := s.post(t, "/scheduler/predicates", big)
	assert.Contains(t, string(out), "exceeds the limit of 1048576 bytes")
}

func TestNotSyncedAnswers503(t *testing.T) {
	c := cache.New(cache.Options{})
	hs := httptest.NewServer(NewServer(c, NewMetrics(c), Config{}).Handler())
	defer hs.Close()
	s := &testServer{Server: hs, cache: c}
	code, _ := s.post(t, "/scheduler/predicates", extenderv1.ExtenderArgs{Pod: fx.Pod("ns", "p")})
	assert.Equal(t, http.StatusServiceUnavailable, code)
	code, _ = s.post(t, "/apis/scheduling/ns/persistentvolumeclaims/a?nodeName=n", nil)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	code, _ = s.get(t, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	code, _ = s.get(t, "/healthz")
	assert.Equal(t, http.StatusOK, code, "alive while syncing")
	c.MarkSynced()
	code, _ = s.get(t, "/readyz")
	assert.Equal(t, http.StatusOK, code)
}

func TestRecoverMiddleware(t *testing.T) {
	h := recoverJSON(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.JSONEq(t, `{"error":"internal error: boom"}`, rec.Body.String())
}

func TestCacheVersionAndMetricsEndpoints(t *testing.T) {
	s := newTestServer(t, core.Binpack, func(c *cache.Cache) {
		semanticsCluster(c)
		c.UpsertPVC(fx.Selected(fx.PVC("ns", "a", "lvm", 10*gi, 1), "big"))
	})
	code, body := s.get(t, "/cache?nodeName=big")
	require.Equal(t, http.StatusOK, code)
	var v cache.View
	require.NoError(t, json.Unmarshal(body, &v))
	require.Len(t, v.Nodes, 1)
	assert.Equal(t, "ns/a", v.Nodes[0].Claims[0].Claim)
	assert.Equal(t, "b", v.Nodes[0].Claims[0].VG, "binpack: the VG with the least room that fits")
	assert.Equal(t, int64(10*gi), v.Nodes[0].VolumeGroups[1].Requested)
	code, _ = s.get(t, "/cache?nodeName=nope")
	assert.Equal(t, http.StatusNotFound, code)
	code, body = s.post(t, "/cache", nil)
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &v))
	assert.Len(t, v.Nodes, 2)

	code, body = s.get(t, "/version")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "v-test\n", string(body))

	s.filter(t, fx.Pod("ns", "p", "a"), "big", "small")
	s.filter(t, fx.Pod("ns", "p"), "big")
	_, _ = s.post(t, "/scheduler/predicates", "{")
	code, body = s.get(t, "/metrics")
	require.Equal(t, http.StatusOK, code)
	text := string(body)
	for _, want := range []string{
		`open_local_extender_decisions_total{result="ok",verb="predicates"} 1`,
		`open_local_extender_decisions_total{result="passthrough",verb="predicates"} 1`,
		`open_local_extender_decisions_total{result="invalid",verb="predicates"} 1`,
		`open_local_extender_request_duration_seconds_count{verb="predicates"} 3`,
		`open_local_extender_vg_requested_bytes{node="big",vg="b"} 1.073741824e+10`,
		`open_local_extender_vg_free_bytes{node="big",vg="b"} 9.663676416e+10`,
		`open_local_extender_vg_allocatable_bytes{node="big",vg="b"} 1.073741824e+11`,
		`local_volume_group_used{nodename="big",vgname="b"} 1.073741824e+10`,
		`local_volume_group_used{nodename="big",vgname="a"} 0`,
		`local_volume_group_total{nodename="small",vgname="a"} 5.36870912e+10`,
		`open_local_extender_device_allocated{device="/dev/vdc",media="ssd",node="small"} 0`,
		`open_local_extender_cache_claims 1`,
		`open_local_extender_cache_synced 1`,
	} {
		assert.Contains(t, text, want)
	}
	code, _ = s.get(t, "/nope")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestFilterSeesOtherPodsReservations(t *testing.T) {
	s := newTestServer(t, core.Binpack, func(c *cache.Cache) {
		semanticsCluster(c)
		c.UpsertPVC(fx.PVC("ns", "a", "lvm-b", 60*gi, 1))
		c.UpsertPVC(fx.PVC("ns", "b", "lvm-b", 60*gi, 2))
		c.UpsertPVC(fx.PVC("ns", "c", "lvm-b", 60*gi, 3))
	})
	nodes := []string{"small", "big"}
	assert.Equal(t, []string{"big"}, passed(s.filter(t, fx.Pod("ns", "pb", "b"), nodes...)))

	// kube-scheduler put pod A's PVC on big: pod B no longer fits there.
	s.cache.UpsertPVC(fx.Selected(fx.PVC("ns", "a", "lvm-b", 60*gi, 1), "big"))
	res := s.filter(t, fx.Pod("ns", "pb", "b"), nodes...)
	assert.Empty(t, passed(res))
	assert.Equal(t, core.ReasonInsufficientLVM, res.FailedAndUnresolvableNodes["big"])
	// Pod A itself still fits there, and only there.
	assert.Equal(t, []string{"big"}, passed(s.filter(t, fx.Pod("ns", "pa", "a"), nodes...)))

	// The reservation call counts as much: C is refused once B's call booked the room.
	s.cache.DeletePVC("ns", "a")
	code, body := s.post(t, "/apis/scheduling/ns/persistentvolumeclaims/b?nodeName=big", nil)
	require.Equal(t, http.StatusOK, code, string(body))
	assert.Empty(t, passed(s.filter(t, fx.Pod("ns", "pc", "c"), nodes...)))
}
