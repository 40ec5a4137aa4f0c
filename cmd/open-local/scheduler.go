package main

import (
	"fmt"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender"
	"github.com/spf13/cobra"
)

const schedulerLong = `Run the kube-scheduler extender.

kube-scheduler calls it to filter nodes (POST /scheduler/predicates) and to
score them (POST /scheduler/priorities) for pods with Open-Local volumes; see
deploy/scheduler/ for the KubeSchedulerConfiguration. It also serves:

  POST /apis/scheduling/{namespace}/persistentvolumeclaims/{name}?nodeName=N
       the reservation call of open-local's CSI driver (volumeType and vgName
       are optional)
  GET  /cache[?nodeName=N]   the storage cache as JSON
  GET  /metrics              Prometheus metrics
  GET  /healthz, /readyz     liveness, and readiness once the cache synced
  GET  /version

The cache is built from NodeLocalStorage, Node, PersistentVolume,
PersistentVolumeClaim, StorageClass, Pod, VolumeSnapshot and
VolumeSnapshotContent objects, so every replica computes the same state.`

func init() {
	register(func() *cobra.Command {
		var (
			opt      extender.Options
			strategy string
			port     int
		)
		cmd := &cobra.Command{
			Use:   "scheduler",
			Short: "Run the kube-scheduler extender",
			Long:  schedulerLong,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				s, err := core.ParseStrategy(strategy)
				if err != nil {
					return fmt.Errorf("--strategy: %w", err)
				}
				opt.Strategy = s
				if cmd.Flags().Changed("port") {
					if cmd.Flags().Changed("listen") {
						return fmt.Errorf("--port and --listen are exclusive: --listen takes host:port")
					}
					if port < 1 || port > 65535 {
						return fmt.Errorf("--port %d: must be from 1 to 65535", port)
					}
					opt.Listen = fmt.Sprintf(":%d", port)
				}
				if opt.StuckPodDelay <= 0 {
					return fmt.Errorf("--stuck-pod-delay %s: must be positive", opt.StuckPodDelay)
				}
				if opt.MaxRequestBytes <= 0 {
					return fmt.Errorf("--max-request-bytes %d: must be positive", opt.MaxRequestBytes)
				}
				opt.Version = version
				return extender.Run(cmd.Context(), opt)
			},
		}
		f := cmd.Flags()
		f.StringVar(&opt.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
		f.StringVar(&opt.Listen, "listen", extender.DefaultListen, "HTTP listen address host:port; bind to the pod IP, e.g. $(POD_IP):23000")
		f.IntVar(&port, "port", 23000, "HTTP port on every interface (open-local's flag; --listen is preferred)")
		f.StringVar(&strategy, "strategy", core.Binpack.String(), "how to choose among nodes and VGs that fit: binpack (fill used ones) or spread (prefer empty ones)")
		f.StringVar(&strategy, "scheduler-strategy", core.Binpack.String(), "alias of --strategy (open-local's name)")
		_ = f.MarkHidden("scheduler-strategy")
		f.DurationVar(&opt.StuckPodDelay, "stuck-pod-delay", extender.DefaultStuckPodDelay, "how long an unschedulable pod waits for capacity on its PVCs' selected node before the selected-node annotation is removed")
		f.Int64Var(&opt.MaxRequestBytes, "max-request-bytes", extender.DefaultMaxRequestBytes, "largest request body accepted")
		return cmd
	})
}
