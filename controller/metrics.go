package controller

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reconcile results, the "result" label of the reconcile metrics.
const (
	resultCreated   = "created"
	resultUpdated   = "updated"
	resultDeleted   = "deleted"
	resultUnchanged = "unchanged"
	// resultPreserved: the spec differs from the derived one by a manual edit that is kept.
	resultPreserved = "preserved"
	// resultSkipped: nothing to do for this node (not selected, no config, not ours).
	resultSkipped = "skipped"
	// resultInvalid: the config cannot be applied to the node.
	resultInvalid = "invalid"
	resultError   = "error"
)

// Kinds of work item, the "kind" label.
const (
	kindNode   = "node"
	kindStatus = "initconfig_status"
)

// metrics are the controller's Prometheus metrics, all prefixed open_local_controller_.
type metrics struct {
	reconciles *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	errors     *prometheus.CounterVec
	leader     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, managed func() float64) (*metrics, error) {
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "open_local_controller_reconcile_total",
			Help: "Reconciles by kind of work item and result.",
		}, []string{"kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "open_local_controller_reconcile_duration_seconds",
			Help:    "Time a reconcile took, by kind of work item and result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"kind", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "open_local_controller_reconcile_errors_total",
			Help: "Reconciles that failed and were retried, by kind of work item and reason (conflict, invalid, api).",
		}, []string{"kind", "reason"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "open_local_controller_leader",
			Help: "1 while this replica leads (always 1 without leader election).",
		}),
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "open_local_controller_managed_nodelocalstorages",
		Help: "NodeLocalStorages the controller created and manages.",
	}, managed)
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.reconciles, m.duration, m.errors, m.leader, gauge} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	return m, errors.Join(errs...)
}

// NewMetricsRegistry returns a registry holding a fresh, unconnected set of
// the controller's metrics, registered as the controller registers them: for
// tools that check the exported names (dashboards, documentation).
func NewMetricsRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	if _, err := newMetrics(r, func() float64 { return 0 }); err != nil {
		panic("controller metrics: " + err.Error()) // a programming error: names collide
	}
	return r
}
