package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender"
	"github.com/open-local/open-local/extender/cache"
	fx "github.com/open-local/open-local/extender/fixture"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// The extender benchmark's cluster: as in open-local's measurement, 5,000
// nodes and one pod with 3 PVCs (2 × 10Gi LVM, one pinned to a VG, and a
// 50Gi ssd Device) asked about all of them.
const extenderNodes = 5_000

// extenderCluster builds the cache: every node has VGs open-local-pool-0
// and -1 of 500Gi to 2Ti and two to four devices of mixed media; one node in
// two already holds a 1–64Gi volume, so VG usage differs between nodes.
func extenderCluster(tb testing.TB) (*cache.Cache, []string) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	c := cache.New(cache.Options{Strategy: core.Binpack})
	c.UpsertStorageClass(fx.LVMClass("open-local-lvm", ""))
	c.UpsertStorageClass(fx.LVMClass("open-local-lvm-pool1", "open-local-pool-1"))
	c.UpsertStorageClass(fx.DeviceClass("open-local-device-ssd", "ssd"))
	names := make([]string, extenderNodes)
	for i := range names {
		names[i] = fmt.Sprintf("node-%05d", i)
		vgs := []fx.VG{
			{Name: "open-local-pool-0", Bytes: (500 + rng.Int64N(1548)) * fx.GiB},
			{Name: "open-local-pool-1", Bytes: (500 + rng.Int64N(1548)) * fx.GiB},
		}
		var devs []fx.Device
		for d := 0; d < 2+rng.IntN(3); d++ {
			devs = append(devs, fx.Device{Name: "/dev/vd" + string(rune('c'+d)), Bytes: (100 + rng.Int64N(924)) * fx.GiB, Media: []string{"ssd", "hdd"}[rng.IntN(2)]})
		}
		c.UpsertNLS(fx.NLS(names[i], vgs, devs, nil))
		if i%2 == 0 {
			pvc := fx.PVC("existing", fmt.Sprintf("vol-%d", i), "open-local-lvm", (1+rng.Int64N(64))*fx.GiB, i)
			pv := fx.PV(pvc, fx.Placement{Node: names[i], VG: vgs[rng.IntN(2)].Name})
			c.UpsertPVC(fx.Bound(pvc, pv.Name))
			c.UpsertPV(pv)
		}
	}
	c.UpsertPVC(fx.PVC("bench", "data-0", "open-local-lvm", 10*fx.GiB, 0))
	c.UpsertPVC(fx.PVC("bench", "data-1", "open-local-lvm-pool1", 10*fx.GiB, 0))
	c.UpsertPVC(fx.PVC("bench", "disk", "open-local-device-ssd", 50*fx.GiB, 0))
	c.MarkSynced()
	return c, names
}

func benchPod(uid string) *corev1.Pod {
	p := fx.Pod("bench", "app", "data-0", "data-1", "disk")
	p.UID = types.UID(uid)
	// What kube-scheduler sends: the whole pod, labels, containers and all.
	p.Labels = map[string]string{"app": "bench", "tier": "db"}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "primary"}}
	return p
}

// timed records the server-side time of each request.
type timed struct {
	h  http.Handler
	mu sync.Mutex
	d  []time.Duration
}

func (t *timed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t.h.ServeHTTP(w, r)
	d := time.Since(start)
	t.mu.Lock()
	t.d = append(t.d, d)
	t.mu.Unlock()
}

// pair does what kube-scheduler does for one pod: encode ExtenderArgs, POST
// filter, decode the result, then POST prioritize for the nodes that
// passed and decode the scores.
func pair(b *testing.B, client *http.Client, url string, pod, prioPod *corev1.Pod, names []string) {
	body, err := json.Marshal(extenderv1.ExtenderArgs{Pod: pod, NodeNames: &names})
	if err != nil {
		b.Fatal(err)
	}
	var fr extenderv1.ExtenderFilterResult
	post(b, client, url+"/scheduler/predicates", body, &fr)
	if fr.NodeNames == nil || len(*fr.NodeNames) == 0 {
		b.Fatalf("no node passed: %d failed, e.g. %v", len(fr.FailedAndUnresolvableNodes), firstReason(fr.FailedAndUnresolvableNodes))
	}
	body, err = json.Marshal(extenderv1.ExtenderArgs{Pod: prioPod, NodeNames: fr.NodeNames})
	if err != nil {
		b.Fatal(err)
	}
	var scores extenderv1.HostPriorityList
	post(b, client, url+"/scheduler/priorities", body, &scores)
	if len(scores) != len(*fr.NodeNames) {
		b.Fatalf("%d scores for %d nodes", len(scores), len(*fr.NodeNames))
	}
}

func firstReason(m extenderv1.FailedNodesMap) string {
	for n, r := range m {
		return n + ": " + r
	}
	return ""
}

func post(b *testing.B, client *http.Client, url string, body []byte, out any) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: status %d, %v: %s", url, resp.StatusCode, err, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		b.Fatal(err)
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// rssMiB is the process's resident set from /proc (0 where there is none).
func rssMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkExtenderFilterPrioritize5kNodes times one filter + prioritize
// pair over HTTP per iteration, each pair for a new pod:
//
//   - "cycle": as kube-scheduler makes them (encode ExtenderArgs, POST,
//     decode the answer, both verbs), prioritize following filter for the
//     same pod with nothing changed in between, so that it reuses the
//     filter's placement;
//   - "no-reuse": the same, but prioritize comes for a pod filter never saw
//     (another replica answered the filter), so both verbs place the pod over
//     all 5,000 nodes;
//   - "raw": the bodies are encoded beforehand and the answers read but not
//     decoded, which leaves the extender and HTTP: the client's JSON work
//     (kube-scheduler's, in a cluster) otherwise shares the same two CPUs and
//     garbage collector;
//   - "raw-passing": as raw, but filter is asked only about the nodes that
//     pass, which shows what the failing nodes cost.
//
// p50/p99 are per pair as the client sees it; server-p50/p99 the sum of the
// two handlers' times.
func BenchmarkExtenderFilterPrioritize5kNodes(b *testing.B) {
	runtime.GC()
	heap0 := heapMiB()
	c, names := extenderCluster(b)
	runtime.GC()
	heapCache := heapMiB() - heap0
	for _, mode := range []string{"cycle", "no-reuse", "raw", "raw-passing"} {
		b.Run(mode, func(b *testing.B) {
			srv := extender.NewServer(c, extender.NewMetrics(c), extender.Config{})
			th := &timed{h: srv.Handler()}
			hs := httptest.NewServer(th)
			defer hs.Close()
			client := hs.Client()
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = 4
			for i := 0; i < 20; i++ { // warm-up: connections, pools, buffers
				pod := benchPod(fmt.Sprintf("warmup-%d", i))
				pair(b, client, hs.URL, pod, pod, names)
			}
			rss := rssMiB()
			var filterBodies, prioBodies [][]byte
			raw := strings.HasPrefix(mode, "raw")
			if raw {
				// 64 pods in turn: more than the cache remembers, so each
				// filter places its pod afresh.
				filterBodies, prioBodies = rawBodies(b, client, hs.URL, names, 64, mode == "raw-passing")
			}
			th.d = th.d[:0]
			pairs := make([]time.Duration, 0, b.N)
			runtime.GC()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pod := benchPod(fmt.Sprintf("%s-%d", mode, i))
				prio := pod
				if mode == "no-reuse" {
					prio = benchPod(fmt.Sprintf("%s-%d-elsewhere", mode, i))
				}
				t0 := time.Now()
				if raw {
					postRaw(b, client, hs.URL+"/scheduler/predicates", filterBodies[i%len(filterBodies)])
					postRaw(b, client, hs.URL+"/scheduler/priorities", prioBodies[i%len(prioBodies)])
				} else {
					pair(b, client, hs.URL, pod, prio, names)
				}
				pairs = append(pairs, time.Since(t0))
			}
			b.StopTimer()
			serverPairs := make([]time.Duration, 0, len(th.d)/2)
			for i := 0; i+1 < len(th.d); i += 2 {
				serverPairs = append(serverPairs, th.d[i]+th.d[i+1])
			}
			b.ReportMetric(float64(percentile(pairs, 0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(pairs, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(percentile(serverPairs, 0.50).Microseconds())/1000, "server-p50-ms")
			b.ReportMetric(float64(percentile(serverPairs, 0.99).Microseconds())/1000, "server-p99-ms")
			var total time.Duration
			for _, d := range pairs {
				total += d
			}
			b.ReportMetric(total.Seconds()*1000, "total-ms")
			b.ReportMetric(heapCache, "cache-heap-MiB")
			b.ReportMetric(rss, "rss-MiB")
		})
	}
}

// rawBodies encodes n filter requests for new pods and the prioritize
// request that follows each (the nodes its filter passes). passingOnly
// asks filter about those nodes only.
func rawBodies(b *testing.B, client *http.Client, url string, names []string, n int, passingOnly bool) (filter, prio [][]byte) {
	body, err := json.Marshal(extenderv1.ExtenderArgs{Pod: benchPod("raw-probe"), NodeNames: &names})
	if err != nil {
		b.Fatal(err)
	}
	var fr extenderv1.ExtenderFilterResult
	post(b, client, url+"/scheduler/predicates", body, &fr)
	passed := *fr.NodeNames // the cache does not change: every pod passes the same nodes
	ask := names
	if passingOnly {
		ask = passed
	}
	for i := 0; i < n; i++ {
		pod := benchPod(fmt.Sprintf("raw-%d", i))
		body, err = json.Marshal(extenderv1.ExtenderArgs{Pod: pod, NodeNames: &ask})
		if err != nil {
			b.Fatal(err)
		}
		filter = append(filter, body)
		body, err = json.Marshal(extenderv1.ExtenderArgs{Pod: pod, NodeNames: &passed})
		if err != nil {
			b.Fatal(err)
		}
		prio = append(prio, body)
	}
	return filter, prio
}

func postRaw(b *testing.B, client *http.Client, url string, body []byte) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: status %d, %v", url, resp.StatusCode, err)
	}
}

func heapMiB() float64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}

// BenchmarkExtenderFilterParallel measures filter throughput with
// concurrent requests (kube-scheduler sends one at a time; several
// schedulers or profiles may not): evaluations share the cache's read lock,
// each with an evaluator of its own from a pool.
func BenchmarkExtenderFilterParallel(b *testing.B) {
	c, names := extenderCluster(b)
	srv := extender.NewServer(c, extender.NewMetrics(c), extender.Config{})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	client := hs.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	var seq sync.Mutex
	n := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			seq.Lock()
			n++
			uid := fmt.Sprintf("par-%d", n)
			seq.Unlock()
			body, _ := json.Marshal(extenderv1.ExtenderArgs{Pod: benchPod(uid), NodeNames: &names})
			var fr extenderv1.ExtenderFilterResult
			post(b, client, hs.URL+"/scheduler/predicates", body, &fr)
		}
	})
}

// BenchmarkExtenderEvaluateConcurrency compares how concurrent filters share
// the cache: "pool" is what the cache does (read lock, an evaluator per call
// from a sync.Pool); "mutex" serialises the evaluations as one evaluator
// behind a mutex would. On a machine with one free core they tie; the pool
// scales with cores, the mutex does not.
func BenchmarkExtenderEvaluateConcurrency(b *testing.B) {
	c, names := extenderCluster(b)
	var mu sync.Mutex
	for _, mode := range []string{"pool", "mutex"} {
		b.Run(mode, func(b *testing.B) {
			var seq sync.Mutex
			n := 0
			b.RunParallel(func(pb *testing.PB) {
				var out []core.NodeResult
				for pb.Next() {
					seq.Lock()
					n++
					pod := benchPod(fmt.Sprintf("%s-%d", mode, n))
					seq.Unlock()
					if mode == "mutex" {
						mu.Lock()
					}
					out, _ = c.Evaluate(pod, names, out[:0])
					if mode == "mutex" {
						mu.Unlock()
					}
					if len(out) != len(names) {
						b.Fatalf("%d results for %d nodes", len(out), len(names))
					}
				}
			})
		})
	}
}
