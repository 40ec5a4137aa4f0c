package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/controller"
)

func init() { register(newControllerCommand) }

func newControllerCommand() *cobra.Command {
	opts := controller.DefaultOptions()
	var kubeconfig, nodeSelector, metricsAddress string
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Derive one NodeLocalStorage per node from the NodeLocalStorageInitConfig",
		Long: `controller keeps one NodeLocalStorage per node in line with the
NodeLocalStorageInitConfig: globalConfig first, then the last nodesConfig entry
whose selector matches the node. NodeLocalStorages are created when nodes join
and deleted when they leave; manual edits of a NodeLocalStorage spec are kept
until the init config changes what it gives that node (--overwrite-manual-edits
restores open-local's behaviour of always overwriting).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodeSelector != "" {
				sel, err := labels.Parse(nodeSelector)
				if err != nil {
					return fmt.Errorf("--node-selector %q: %w", nodeSelector, err)
				}
				opts.NodeSelector = sel
			}
			if opts.LeaderElection.Namespace == "" {
				opts.LeaderElection.Namespace = os.Getenv("POD_NAMESPACE")
			}
			return runController(cmd.Context(), opts, kubeconfig, metricsAddress)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	f.StringVar(&opts.InitConfigName, "initconfig", opts.InitConfigName, "name of the NodeLocalStorageInitConfig to apply")
	f.StringVar(&nodeSelector, "node-selector", "", "manage only nodes matching this label selector (default: every node)")
	f.BoolVar(&opts.OverwriteManualEdits, "overwrite-manual-edits", false, "restore the derived spec on every difference, as open-local did")
	f.IntVar(&opts.Workers, "workers", opts.Workers, "concurrent reconciles")
	f.DurationVar(&opts.ResyncPeriod, "resync", opts.ResyncPeriod, "how often every node is re-checked")
	f.BoolVar(&opts.LeaderElection.Enabled, "leader-elect", true, "run one active replica at a time (a Lease)")
	f.StringVar(&opts.LeaderElection.Namespace, "leader-elect-namespace", opts.LeaderElection.Namespace, "namespace of the leader election Lease")
	f.StringVar(&opts.LeaderElection.LeaseName, "leader-elect-lease", opts.LeaderElection.LeaseName, "name of the leader election Lease")
	f.StringVar(&metricsAddress, "metrics-address", "", "serve /metrics and /healthz on this address (empty: off)")
	return cmd
}

func runController(ctx context.Context, opts controller.Options, kubeconfig, metricsAddress string) error {
	kube, ol, err := newClients(kubeconfig, "controller")
	if err != nil {
		return err
	}
	reg := newRegistry()
	opts.MetricsRegisterer = reg
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if metricsAddress != "" {
		stop, err := serveMetrics(ctx, metricsAddress, reg, func(err error) {
			klog.FromContext(ctx).Error(err, "Metrics server stopped")
			cancel()
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	return controller.Run(ctx, opts, kube, ol)
}
