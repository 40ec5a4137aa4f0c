package csi

import (
	"context"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// rpcMetrics are the driver's Prometheus series.
type rpcMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newRPCMetrics(reg prometheus.Registerer) (*rpcMetrics, error) {
	m := &rpcMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "open_local_csi_rpc_total",
			Help: "CSI RPCs served, by method and gRPC status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "open_local_csi_rpc_duration_seconds",
			Help: "Time to serve a CSI RPC, by method.",
			// From a probe (sub-millisecond) to a clone copying gigabytes.
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 11),
		}, []string{"method"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.total, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// polledMethods are called periodically by kubelet, sidecars and probes;
// their successes log only at -v=4. Everything else logs at the default level.
var polledMethods = map[string]bool{
	"Probe": true, "GetPluginInfo": true, "GetPluginCapabilities": true,
	"ControllerGetCapabilities": true, "NodeGetCapabilities": true, "NodeGetInfo": true,
	"NodeGetVolumeStats": true, "GetCapacity": true, "ListVolumes": true, "ListSnapshots": true,
	"ControllerGetVolume": true, "ControllerGetVolumeHealth": true, "ControllerListVolumeHealth": true,
	"NodeGetVolumeHealth": true, "NodeGetStorageHealth": true,
}

// interceptor logs every RPC with its method, duration and status code and
// counts it, and gives the handler a logger that names the method.
func (m *rpcMetrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	logger := klog.FromContext(ctx).WithValues("method", method)
	ctx = klog.NewContext(ctx, logger)
	start := time.Now()
	resp, err := handler(ctx, req)
	elapsed := time.Since(start)
	code := status.Code(err)
	m.total.WithLabelValues(method, code.String()).Inc()
	m.duration.WithLabelValues(method).Observe(elapsed.Seconds())
	switch {
	case err != nil:
		logger.Info("RPC failed", "code", code.String(), "duration", elapsed, "err", status.Convert(err).Message())
	case polledMethods[method]:
		logger.V(4).Info("RPC served", "code", code.String(), "duration", elapsed)
	default:
		logger.Info("RPC served", "code", code.String(), "duration", elapsed)
	}
	return resp, err
}

// NewMetricsRegistry returns a registry holding a fresh, unconnected set of
// the driver's metrics, registered as NewDriver registers them: for tools
// that check the exported names (dashboards, documentation).
func NewMetricsRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	if _, err := newRPCMetrics(r); err != nil {
		panic("csi metrics: " + err.Error()) // a programming error: names collide
	}
	return r
}
