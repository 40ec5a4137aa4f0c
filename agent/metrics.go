package agent

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/core"
)

const metricsNamespace = "open_local_agent"

// metrics are the agent's Prometheus metrics. The storage gauges come from
// the last discovery pass as a whole, so that a scrape never sees half of
// one pass and a removed LV or VG disappears at once.
type metrics struct {
	discoveryDuration prometheus.Histogram
	commandErrors     *prometheus.CounterVec
	statusWrites      *prometheus.CounterVec
	leaseRenewals     *prometheus.CounterVec
	storage           *storageCollector
	orphanVolumes     prometheus.Gauge
	orphansRemoved    prometheus.Counter
	orphanErrors      *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		discoveryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "discovery_duration_seconds",
			Help:      "Time one discovery pass took (block devices, one LVM report, mounts).",
			Buckets:   prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		commandErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "command_errors_total",
			Help:      "Host operations that failed, by operation.",
		}, []string{"op"}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "status_updates_total",
			Help:      "NodeLocalStorage status updates sent, by result (ok, conflict, error).",
		}, []string{"result"}),
		leaseRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "lease_renewals_total",
			Help:      "Lease renewals, by result (ok, error, skipped: no recent discovery pass).",
		}, []string{"result"}),
		storage: newStorageCollector(),
		orphanVolumes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace,
			Name:      "orphan_volumes",
			Help:      "Orphan volumes (LVs whose PersistentVolume is gone or never came) on the node after the last orphan pass.",
		}),
		orphansRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "orphan_volumes_removed_total",
			Help:      "Orphan volumes removed (--orphan-gc=delete).",
		}),
		orphanErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "orphan_gc_errors_total",
			Help:      "Orphan passes cut short or removals that failed, by operation; the volumes concerned are kept and retried at the next pass.",
		}, []string{"op"}),
	}
}

// NewMetricsRegistry returns a registry holding a fresh, unconnected set of
// the agent's metrics, registered as Run registers them: for tools that
// check the exported names (dashboards, documentation).
func NewMetricsRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	if err := newMetrics().register(r); err != nil {
		panic(fmt.Sprintf("agent metrics: %v", err)) // a programming error: names collide
	}
	return r
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.discoveryDuration, m.commandErrors, m.statusWrites, m.leaseRenewals, m.storage,
		m.orphanVolumes, m.orphansRemoved, m.orphanErrors} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) commandError(op string) {
	if op == "" {
		return
	}
	m.commandErrors.WithLabelValues(op).Inc()
}

type vgSample struct {
	name                    string
	size, free, allocatable float64
}

type deviceSample struct {
	name, media string
	size        float64
}

type lvSample struct {
	vg, name string
	size     float64
}

// storageCollector holds the last pass's samples.
type storageCollector struct {
	vgSize, vgFree, vgAllocatable, deviceSize, lvSize *prometheus.Desc

	mu      sync.Mutex
	vgs     []vgSample
	devices []deviceSample
	lvs     []lvSample
}

func newStorageCollector() *storageCollector {
	name := func(n string) string { return prometheus.BuildFQName(metricsNamespace, "", n) }
	return &storageCollector{
		vgSize:        prometheus.NewDesc(name("vg_size_bytes"), "Size of a volume group.", []string{"vg"}, nil),
		vgFree:        prometheus.NewDesc(name("vg_free_bytes"), "Free space of a volume group.", []string{"vg"}, nil),
		vgAllocatable: prometheus.NewDesc(name("vg_allocatable_bytes"), "What Open-Local may allocate in a volume group: its size less foreign LVs and the reservation.", []string{"vg"}, nil),
		deviceSize:    prometheus.NewDesc(name("device_size_bytes"), "Size of a block device.", []string{"device", "media"}, nil),
		lvSize:        prometheus.NewDesc(name("lv_size_bytes"), "Size of a logical volume.", []string{"vg", "lv"}, nil),
	}
}

// update replaces the samples with those of a pass; allocatable is sized
// with the given options.
func (c *storageCollector) update(snap discovery.Snapshot, so discovery.StatusOptions) {
	var vgs []vgSample
	var lvs []lvSample
	for _, vg := range snap.Storage.VGs {
		alloc := int64(0)
		if !so.HoldBackAll {
			alloc = core.Allocatable(vg, so.OwnedLVPrefixes, so.Reservations[vg.Name])
		}
		vgs = append(vgs, vgSample{name: vg.Name, size: float64(vg.TotalBytes), free: float64(vg.FreeBytes), allocatable: float64(alloc)})
		for _, lv := range vg.LVs {
			lvs = append(lvs, lvSample{vg: vg.Name, name: lv.Name, size: float64(lv.SizeBytes)})
		}
	}
	devs := make([]deviceSample, 0, len(snap.Storage.Devices))
	for _, d := range snap.Storage.Devices {
		devs = append(devs, deviceSample{name: d.Name, media: string(d.Media), size: float64(d.SizeBytes)})
	}
	c.mu.Lock()
	c.vgs, c.devices, c.lvs = vgs, devs, lvs
	c.mu.Unlock()
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.vgSize, c.vgFree, c.vgAllocatable, c.deviceSize, c.lvSize} {
		ch <- d
	}
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, vg := range c.vgs {
		ch <- prometheus.MustNewConstMetric(c.vgSize, prometheus.GaugeValue, vg.size, vg.name)
		ch <- prometheus.MustNewConstMetric(c.vgFree, prometheus.GaugeValue, vg.free, vg.name)
		ch <- prometheus.MustNewConstMetric(c.vgAllocatable, prometheus.GaugeValue, vg.allocatable, vg.name)
	}
	for _, d := range c.devices {
		ch <- prometheus.MustNewConstMetric(c.deviceSize, prometheus.GaugeValue, d.size, d.name, d.media)
	}
	for _, lv := range c.lvs {
		ch <- prometheus.MustNewConstMetric(c.lvSize, prometheus.GaugeValue, lv.size, lv.vg, lv.name)
	}
}
