package extender

import (
	"time"

	"github.com/open-local/open-local/extender/cache"
	"github.com/prometheus/client_golang/prometheus"
)

// Verbs, as metric labels.
const (
	verbPredicates = "predicates"
	verbPriorities = "priorities"
	verbReserve    = "reserve"
)

// Results, as metric labels.
const (
	resultOK          = "ok"          // answered; for predicates at least one node passed
	resultPassThrough = "passthrough" // the pod has no Open-Local volume
	resultNoFit       = "unschedulable"
	resultInvalid     = "invalid" // the request was refused (400)
	resultNotFound    = "not_found"
	resultConflict    = "conflict"
	resultError       = "error" // the extender failed (500, 503)
)

// Metrics are the extender's Prometheus metrics. The cache figures are read
// from the cache at scrape time by a Collector: nothing is reset or
// recomputed in request handlers.
type Metrics struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	registry  *prometheus.Registry
}

// NewMetrics registers the extender's metrics, and a collector of c's
// figures, on a new registry.
func NewMetrics(c *cache.Cache) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "open_local_extender_decisions_total",
			Help: "Requests answered, by verb (predicates, priorities, reserve) and result.",
		}, []string{"verb", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "open_local_extender_request_duration_seconds",
			Help: "Time from reading a request to writing its answer, by verb.",
			// 50µs to ~1.6s: a filter over thousands of nodes takes hundreds of microseconds.
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"verb"}),
		registry: prometheus.NewRegistry(),
	}
	m.registry.MustRegister(m.decisions, m.latency, newCacheCollector(c))
	return m
}

// Registry is where the metrics live (GET /metrics serves it).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

func (m *Metrics) observe(verb, result string, start time.Time) {
	m.decisions.WithLabelValues(verb, result).Inc()
	m.latency.WithLabelValues(verb).Observe(time.Since(start).Seconds())
}

// cacheCollector reads the ledger when Prometheus scrapes.
type cacheCollector struct {
	c *cache.Cache

	vgAllocatable, vgRequested, vgFree *prometheus.Desc
	deviceAllocated, mountAllocated    *prometheus.Desc
	nodeClaims, nodeUnplaced           *prometheus.Desc
	nodes, claims, reservations        *prometheus.Desc
	unplaced, overcommits, conflicts   *prometheus.Desc
	synced                             *prometheus.Desc

	// open-local's names, for its Grafana dashboard.
	olVGTotal, olVGUsed                   *prometheus.Desc
	olDeviceTotal, olDeviceBind           *prometheus.Desc
	olMountTotal, olMountBind, olAllocNum *prometheus.Desc
}

func newCacheCollector(c *cache.Cache) *cacheCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &cacheCollector{
		c:               c,
		vgAllocatable:   d("open_local_extender_vg_allocatable_bytes", "What a volume group offers Open-Local.", "node", "vg"),
		vgRequested:     d("open_local_extender_vg_requested_bytes", "What is charged to a volume group (volumes and reservations).", "node", "vg"),
		vgFree:          d("open_local_extender_vg_free_bytes", "Allocatable minus requested, at least 0.", "node", "vg"),
		deviceAllocated: d("open_local_extender_device_allocated", "1 when a whole device is charged to a claim.", "node", "device", "media"),
		mountAllocated:  d("open_local_extender_mountpoint_allocated", "1 when a mount point is charged to a claim.", "node", "mountpoint", "media"),
		nodeClaims:      d("open_local_extender_node_claims", "Claims charged on a node.", "node"),
		nodeUnplaced:    d("open_local_extender_node_unplaced_claims", "Claims selected for a node that do not fit there.", "node"),
		nodes:           d("open_local_extender_cache_nodes", "Nodes with a NodeLocalStorage."),
		claims:          d("open_local_extender_cache_claims", "Claims charged in the ledger."),
		reservations:    d("open_local_extender_cache_reservations", "Claims reserved by the reservation call and not provisioned yet."),
		unplaced:        d("open_local_extender_cache_unplaced_claims", "Claims whose selected node cannot hold them."),
		overcommits:     d("open_local_extender_cache_overcommitted_resources", "Resources holding more than they offer (capacity shrank under existing volumes)."),
		conflicts:       d("open_local_extender_cache_conflicts", "Charges that could not be recorded (a device claimed twice)."),
		synced:          d("open_local_extender_cache_synced", "1 once every informer delivered its initial list."),
		olVGTotal:       d("local_volume_group_total", "Allocatable bytes of a volume group (open-local compatible).", "nodename", "vgname"),
		olVGUsed:        d("local_volume_group_used", "Requested bytes of a volume group (open-local compatible).", "nodename", "vgname"),
		olDeviceTotal:   d("local_device_total", "Size of a whole device (open-local compatible).", "nodename", "name", "type"),
		olDeviceBind:    d("local_device_bind", "1 when a device is allocated (open-local compatible).", "nodename", "name"),
		olMountTotal:    d("local_mount_point_total", "Size of a mount point (open-local compatible).", "nodename", "name", "type"),
		olMountBind:     d("local_mount_point_bind", "1 when a mount point is allocated (open-local compatible).", "nodename", "name"),
		olAllocNum:      d("local_allocated_num", "Claims charged on a node (open-local compatible).", "nodename"),
	}
}

func (cc *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		cc.vgAllocatable, cc.vgRequested, cc.vgFree, cc.deviceAllocated, cc.mountAllocated,
		cc.nodeClaims, cc.nodeUnplaced, cc.nodes, cc.claims, cc.reservations, cc.unplaced,
		cc.overcommits, cc.conflicts, cc.synced,
		cc.olVGTotal, cc.olVGUsed, cc.olDeviceTotal, cc.olDeviceBind, cc.olMountTotal, cc.olMountBind, cc.olAllocNum,
	} {
		ch <- d
	}
}

func (cc *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	bit := func(owned bool) float64 {
		if owned {
			return 1
		}
		return 0
	}
	cc.c.VisitNodes(func(n cache.NodeStats) {
		for _, vg := range n.VGs {
			gauge(cc.vgAllocatable, float64(vg.AllocatableBytes), n.Name, vg.Name)
			gauge(cc.vgRequested, float64(vg.UsedBytes), n.Name, vg.Name)
			gauge(cc.vgFree, float64(vg.FreeBytes()), n.Name, vg.Name)
			gauge(cc.olVGTotal, float64(vg.AllocatableBytes), n.Name, vg.Name)
			gauge(cc.olVGUsed, float64(vg.UsedBytes), n.Name, vg.Name)
		}
		for _, d := range n.Devices {
			gauge(cc.deviceAllocated, bit(d.Owner != ""), n.Name, d.Name, string(d.Media))
			gauge(cc.olDeviceTotal, float64(d.SizeBytes), n.Name, d.Name, string(d.Media))
			gauge(cc.olDeviceBind, bit(d.Owner != ""), n.Name, d.Name)
		}
		for _, d := range n.MountPoints {
			gauge(cc.mountAllocated, bit(d.Owner != ""), n.Name, d.Name, string(d.Media))
			gauge(cc.olMountTotal, float64(d.SizeBytes), n.Name, d.Name, string(d.Media))
			gauge(cc.olMountBind, bit(d.Owner != ""), n.Name, d.Name)
		}
		gauge(cc.nodeClaims, float64(n.Claims), n.Name)
		gauge(cc.nodeUnplaced, float64(n.Unplaced), n.Name)
		gauge(cc.olAllocNum, float64(n.Claims), n.Name)
	})
	t := cc.c.Totals()
	gauge(cc.nodes, float64(t.Nodes))
	gauge(cc.claims, float64(t.Claims))
	gauge(cc.reservations, float64(t.Reservations))
	gauge(cc.unplaced, float64(t.Unplaced))
	gauge(cc.overcommits, float64(t.Overcommits))
	gauge(cc.conflicts, float64(t.Conflicts))
	gauge(cc.synced, bit(cc.c.Synced()))
}
