package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	"github.com/open-local/open-local/pkg/status"
)

// kubectlPluginName is the file name under which the binary is kubectl's
// "open-local" plugin (kubectl maps the dash of a command to an underscore).
const kubectlPluginName = "kubectl-open_local"

const statusLong = `Show the local storage Open-Local manages on each node.

One line per volume group (VG), device (DEVICE) and mount point
(MOUNTPOINT), with its medium, what it offers (ALLOCATABLE: a VG's size less
LVs that are not Open-Local's and the storage-reserved annotation; a device or
mount point whole), what volumes take from it (REQUESTED: the capacity of its
PersistentVolumes of local.csi.aliyun.com, plus Open-Local LVs without a PV,
such as snapshots), what is left (FREE; 0 for a device or mount point a volume
holds) and its HEALTH: Ready, NodeNotReady, NodeMissing, NotReported (no
NodeLocalStorage, or not reported by the agent), StorageNotReady (the
NodeLocalStorage's Ready condition is False), ConfigInvalid, DiskFault,
NotAllocatable or Overcommitted. Explanations follow the table.

It reads NodeLocalStorages, PersistentVolumes and Nodes with the kubeconfig
kubectl would use (--kubeconfig, $KUBECONFIG, ~/.kube/config, or the pod's
service account) and --context. --output json prints the same figures in
bytes.

Installed as kubectl-open_local on the PATH, the binary is the kubectl plugin
"kubectl open-local", which runs this command (see docs/status.md).`

func init() { register(newStatusCommand) }

type statusFlags struct {
	kubeconfig string
	context    string
	output     string
	node       string
	timeout    time.Duration
}

func newStatusCommand() *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each node's VGs, devices and mount points: allocatable, requested, free, media and health",
		Long:  statusLong,
		Example: `  open-local status
  open-local status --node node-1 -o json
  open-local status --kubeconfig ~/.kube/prod --context admin@prod
  kubectl open-local --node node-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the in-cluster configuration)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context to use (default: the current context)")
	fl.StringVarP(&f.output, "output", "o", status.OutputTable, "output format: table or json")
	fl.StringVar(&f.node, "node", "", "show only this node")
	fl.DurationVar(&f.timeout, "request-timeout", 30*time.Second, "give up on the API server after this long")
	return cmd
}

func runStatus(cmd *cobra.Command, f statusFlags) error {
	if !slices.Contains(status.Outputs, f.output) {
		return fmt.Errorf("--output %q: accepted: %s", f.output, strings.Join(status.Outputs, ", "))
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--request-timeout %s: must be positive", f.timeout)
	}
	kube, local, err := kubectlClients(f.kubeconfig, f.context, f.timeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	rep, err := status.Collect(ctx, kube, local, status.Options{Node: f.node})
	if err != nil {
		return err
	}
	return rep.Write(cmd.OutOrStdout(), f.output)
}

// errNoKubeconfig is what a run without any cluster configuration says.
var errNoKubeconfig = errors.New("no cluster to ask: no kubeconfig found (--kubeconfig, $KUBECONFIG or ~/.kube/config) and not running in a pod; pass --kubeconfig FILE")

// kubectlClients builds clients the way kubectl finds its cluster: the
// loading rules (--kubeconfig, else $KUBECONFIG, else ~/.kube/config, else
// the in-cluster configuration) and the --context override.
func kubectlClients(kubeconfig, kubeContext string, timeout time.Duration) (kubernetes.Interface, versioned.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	switch {
	case clientcmd.IsEmptyConfig(err):
		return nil, nil, errNoKubeconfig
	case err != nil && kubeContext != "":
		return nil, nil, fmt.Errorf("--context %q: %w", kubeContext, err)
	case err != nil:
		return nil, nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.UserAgent = "open-local-status/" + version
	cfg.Timeout = timeout
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	local, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return kube, local, nil
}

// isKubectlPlugin tells whether the binary was started as kubectl's plugin.
func isKubectlPlugin(argv0 string) bool {
	return strings.TrimSuffix(filepath.Base(argv0), ".exe") == kubectlPluginName
}

// newKubectlPluginRoot is the status command as the root of "kubectl open-local".
func newKubectlPluginRoot() *cobra.Command {
	cmd := newStatusCommand()
	cmd.Use = "kubectl open-local"
	cmd.Example = `  kubectl open-local
  kubectl open-local --node node-1 -o json
  kubectl open-local --context admin@prod`
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.Version = version
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	cmd.PersistentFlags().AddGoFlagSet(klogFlags)
	return cmd
}
