package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/open-local/open-local/core"
)

// Cluster and workload of the placement benchmark.
const (
	placementNodes    = 10_000
	placementPodCount = 100_000
	// placementHeapSampleEvery is how often (in pods) the heap is sampled for its peak.
	placementHeapSampleEvery = 2_000
)

var (
	placementVGNames = [2]string{"open-local-pool-0", "open-local-pool-1"}
	placementMedia   = [2]core.MediaType{core.MediaSSD, core.MediaHDD}
)

// placementCluster gives every node two VGs of 500 GiB to 2 TiB and two to four
// devices of 100 GiB to 1 TiB of mixed media.
func placementCluster(rng *rand.Rand, nodes int) *core.Ledger {
	l := core.NewLedger()
	for i := 0; i < nodes; i++ {
		var c core.NodeCapacity
		for _, name := range placementVGNames {
			c.VGs = append(c.VGs, core.VGCapacity{
				Name:             name,
				AllocatableBytes: (500 + rng.Int64N(1548)) * core.GiB,
				ExtentSizeBytes:  core.DefaultExtentSize,
				PVCount:          1 + rng.IntN(2),
			})
		}
		for d := 0; d < 2+rng.IntN(3); d++ {
			c.Devices = append(c.Devices, core.DeviceCapacity{
				Name:      "/dev/vd" + string(rune('b'+d)),
				SizeBytes: (100 + rng.Int64N(924)) * core.GiB,
				Media:     placementMedia[rng.IntN(2)],
			})
		}
		l.SetNode(fmt.Sprintf("node-%05d", i), c)
	}
	return l
}

// placementPods makes pods of one to three volumes: 7% whole devices (50–200 GiB,
// ssd or hdd), the rest LVM volumes of 1–64 GiB, half of them pinned to a VG,
// one in ten of those striped.
func placementPods(rng *rand.Rand, pods int) []core.PodRequest {
	out := make([]core.PodRequest, pods)
	for p := range out {
		vols := make([]core.VolumeRequest, 1+rng.IntN(3))
		for v := range vols {
			id := core.ClaimID(fmt.Sprintf("ns-%d/pvc-%d-%d", p%97, p, v))
			switch r := rng.IntN(100); {
			case r < 7:
				vols[v] = core.VolumeRequest{Claim: id, Kind: core.VolumeDevice, Media: placementMedia[rng.IntN(2)], Bytes: (50 + rng.Int64N(151)) * core.GiB}
			case r < 53:
				vols[v] = core.VolumeRequest{Claim: id, Kind: core.VolumeLVM, VG: placementVGNames[rng.IntN(2)], Bytes: (1 + rng.Int64N(64)) * core.GiB, Striped: rng.IntN(10) == 0}
			default:
				vols[v] = core.VolumeRequest{Claim: id, Kind: core.VolumeLVM, Bytes: (1 + rng.Int64N(64)) * core.GiB}
			}
		}
		out[p] = core.PodRequest{Name: fmt.Sprintf("pod-%d", p), Volumes: vols}
	}
	return out
}

// BenchmarkPlace100kPods10kNodes places 100,000 pods on 10,000 nodes the way
// kube-scheduler samples nodes (NumNodesToScore: 500 of 10,000), one
// operation being the whole run. It fails on any over-commit.
func BenchmarkPlace100kPods10kNodes(b *testing.B) {
	pods := placementPods(rand.New(rand.NewPCG(2, 2)), placementPodCount)
	sample := core.NumNodesToScore(placementNodes, 0)
	for _, s := range []core.Strategy{core.Binpack, core.Spread} {
		b.Run(s.String(), func(b *testing.B) {
			var peak uint64
			var ms runtime.MemStats
			var elapsed, cpu time.Duration
			var mallocs uint64
			unschedulable, evaluated := 0, 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				l := placementCluster(rand.New(rand.NewPCG(1, 1)), placementNodes)
				e := core.NewEvaluator(l)
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				m0 := ms.Mallocs
				unschedulable, evaluated = 0, 0
				b.StartTimer()
				t0, c0 := time.Now(), placementCPUTime()
				opt := core.PlaceOptions{Sample: sample}
				for p := range pods {
					r, err := e.Place(pods[p], s, opt)
					if err != nil {
						unschedulable++
					}
					evaluated += r.Evaluated
					opt.Start = r.Next
					if p%placementHeapSampleEvery == placementHeapSampleEvery-1 {
						b.StopTimer()
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapInuse)
						b.StartTimer()
					}
				}
				elapsed += time.Since(t0)
				cpu += placementCPUTime() - c0
				b.StopTimer()
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				mallocs = ms.Mallocs - m0
				if oc := l.Overcommits(); len(oc) != 0 {
					b.Fatalf("%d over-committed resources, first %+v", len(oc), oc[0])
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(placementPodCount*b.N)/elapsed.Seconds(), "pods/s")
			// On a shared machine the wall clock also counts time the process
			// waited for a CPU; pods per CPU-second is the steadier figure.
			b.ReportMetric(float64(placementPodCount*b.N)/cpu.Seconds(), "pods/cpu-s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(mallocs)/placementPodCount, "allocs/pod")
			b.ReportMetric(float64(unschedulable), "unschedulable")
			b.ReportMetric(float64(evaluated)/placementPodCount, "nodes/pod")
			b.ReportMetric(0, "overcommits") // any other value failed above
		})
	}
}

// placementCPUTime is the CPU time (user and system) the process has used so far.
func placementCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPlacePod measures one Place on a 10,000-node cluster kept half
// full: each operation places one pod of the benchmark's mix and releases a
// pod placed earlier, so capacity stays steady however long it runs.
func BenchmarkPlacePod(b *testing.B) {
	const window = 50_000
	pods := placementPods(rand.New(rand.NewPCG(3, 3)), 2*window)
	l := placementCluster(rand.New(rand.NewPCG(1, 1)), placementNodes)
	e := core.NewEvaluator(l)
	opt := core.PlaceOptions{Sample: core.NumNodesToScore(placementNodes, 0)}
	evaluated := 0
	place := func(p int) {
		r, _ := e.Place(pods[p%len(pods)], core.Binpack, opt)
		opt.Start = r.Next
		evaluated += r.Evaluated
	}
	release := func(p int) {
		for _, v := range pods[p%len(pods)].Volumes {
			l.Release(v.Claim)
		}
	}
	for p := 0; p < window; p++ {
		place(p)
	}
	b.ReportAllocs()
	b.ResetTimer()
	evaluated = 0
	c0 := placementCPUTime()
	for i := 0; i < b.N; i++ {
		release(i)
		place(i + window)
	}
	b.StopTimer()
	b.ReportMetric(float64(placementCPUTime()-c0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(evaluated)/float64(b.N), "nodes/op")
	if oc := l.Overcommits(); len(oc) != 0 {
		b.Fatalf("%d over-committed resources", len(oc))
	}
}

// BenchmarkFilterAndScore5kNodes is one scheduler-extender round: filter and
// score a pod of two 10Gi LVM claims and one 50Gi ssd Device claim against
// 5,000 node names (the request open-local's extender takes 287 ms to filter).
func BenchmarkFilterAndScore5kNodes(b *testing.B) {
	const nodes = 5_000
	l := placementCluster(rand.New(rand.NewPCG(1, 1)), nodes)
	e := core.NewEvaluator(l)
	names := l.NodeNames()
	pod := core.PodRequest{Name: "p", Volumes: []core.VolumeRequest{
		{Claim: "ns/a", Kind: core.VolumeLVM, Bytes: 10 * core.GiB},
		{Claim: "ns/b", Kind: core.VolumeLVM, Bytes: 10 * core.GiB},
		{Claim: "ns/c", Kind: core.VolumeDevice, Media: core.MediaSSD, Bytes: 50 * core.GiB},
	}}
	out := make([]core.NodeResult, 0, nodes)
	fits := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out = e.FilterAndScore(names, pod, core.Binpack, out[:0])
	}
	b.StopTimer()
	for _, r := range out {
		if r.Fits {
			fits++
		}
	}
	b.ReportMetric(float64(fits), "fitting-nodes")
}
