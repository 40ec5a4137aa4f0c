package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/agent"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/realhost"
	"github.com/open-local/open-local/hostexec/simhost"
)

const agentLong = `Run the node agent.

It discovers this node's block devices, LVM volume groups and the
filesystems mounted directly under --path.mount, and writes them to the
status of the node's NodeLocalStorage together with what spec.listConfig
keeps (status.filteredStorageInfo). It creates the volume groups and mount
points of spec.resourceToBeInited, and grows a volume group when a device is
added to its list. The status is written only when it changes; liveness is
the Lease open-local-agent-<node> in --namespace, renewed every
--lease-interval.`

func init() {
	register(newAgentCommand)
}

type agentFlags struct {
	opts           agent.Options
	kubeconfig     string
	host           string
	simConfig      string
	sysfs          string
	commandPrefix  []string
	metricsAddress string
	orphanGC       string
}

func newAgentCommand() *cobra.Command {
	def := agent.DefaultOptions()
	f := agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: storage discovery, NodeLocalStorage status, volume group initialisation",
		Long:  agentLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.opts.NodeName, "nodename", "", "this node's name (default: $KUBE_NODE_NAME, else the hostname)")
	fl.StringVar(&f.opts.Namespace, "namespace", "", "namespace of the agent's Lease (default: $POD_NAMESPACE, else "+agent.DefaultNamespace+")")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	fl.StringVar(&f.opts.MountRoot, "path.mount", def.MountRoot, "directory whose mounted children are reported as mount points")
	fl.StringVar(&f.sysfs, "path.sysfs", "/sys", "with --host real: where the host's sysfs is mounted")
	fl.DurationVar(&f.opts.Interval, "interval", def.Interval, "time between discovery passes (an LV removed or a VG grown by hand shows within it)")
	fl.DurationVar(&f.opts.LeaseInterval, "lease-interval", def.LeaseInterval, "time between renewals of the agent's Lease")
	fl.DurationVar(&f.opts.LeaseDuration, "lease-duration", 0, "how long one renewal vouches for the agent (default: 4 × --lease-interval)")
	fl.StringVar(&f.opts.LVNamePrefix, "lvname", def.LVNamePrefix, "name prefix of Open-Local's LVs; other LVs (except csi-* and snap*) reduce allocatable")
	fl.StringVar(&f.opts.DeviceRegexp, "regexp", "", "report only block devices whose kernel name (vdb, nvme0n1p1) this regular expression matches in whole (default: every disk and partition)")
	fl.BoolVar(&f.opts.ForceCreateVG, "force-create-vg", strings.EqualFold(os.Getenv("Force_Create_VG"), "true"), "let volume groups take devices that carry signatures (default: $Force_Create_VG == true)")
	fl.BoolVar(&f.opts.CreateNLS, "create-nls", false, "create this node's NodeLocalStorage (empty spec) when none exists, instead of waiting for the controller; needs the create verb on nodelocalstorages")
	fl.DurationVar(&f.opts.InitBackoff, "init-backoff", def.InitBackoff, "first delay before retrying a failed initialisation of resourceToBeInited; it doubles on each failure")
	fl.DurationVar(&f.opts.InitBackoffMax, "init-backoff-max", def.InitBackoffMax, "longest delay between initialisation retries")
	fl.DurationVar(&f.opts.HostTimeout, "host-timeout", def.HostTimeout, "longest time one discovery pass or initialisation attempt may take")
	fl.StringVar(&f.orphanGC, "orphan-gc", string(def.OrphanGC), "what to do with orphan volumes (LVs created for a PersistentVolume that is gone or never came): off, report (an event and a metric) or delete (lvremove, with an event)")
	fl.DurationVar(&f.opts.OrphanInterval, "orphan-interval", def.OrphanInterval, "time between orphan passes")
	fl.DurationVar(&f.opts.OrphanGrace, "orphan-grace", def.OrphanGrace, "how old a volume must be before it can be an orphan (at least "+agent.MinOrphanGrace.String()+")")
	fl.StringVar(&f.metricsAddress, "metrics-address", "", "serve Prometheus metrics (/metrics) and /healthz on this address, e.g. 127.0.0.1:9809; empty: not served")
	fl.StringVar(&f.host, "host", "real", "the host to act on: real (this machine's LVM and mounts) or sim (an in-memory node)")
	fl.StringVar(&f.simConfig, "sim-config", "", "with --host sim: a simulated node's YAML or JSON description (default: one 100 GiB VG open-local-pool-0 and two blank 50 GiB disks)")
	fl.StringSliceVar(&f.commandPrefix, "command-prefix", nil, "with --host real: run every host tool through this command, e.g. nsenter,--mount=/proc/1/ns/mnt,--")
	return cmd
}

func (f *agentFlags) run(ctx context.Context) error {
	logger := klog.Background().WithName("open-local")
	ctx = klog.NewContext(ctx, logger)
	if f.opts.NodeName == "" {
		f.opts.NodeName = os.Getenv("KUBE_NODE_NAME")
	}
	if f.opts.NodeName == "" {
		name, err := os.Hostname()
		if err != nil || name == "" {
			return fmt.Errorf("--nodename is not set, KUBE_NODE_NAME is empty and the hostname is unknown: %v", err)
		}
		f.opts.NodeName = name
	}
	if f.opts.Namespace == "" {
		f.opts.Namespace = os.Getenv("POD_NAMESPACE")
	}
	mode, err := agent.ParseOrphanMode(f.orphanGC)
	if err != nil {
		return fmt.Errorf("--orphan-gc: %w", err)
	}
	f.opts.OrphanGC = mode
	host, err := f.newHost()
	if err != nil {
		return err
	}
	kube, ol, err := newClients(f.kubeconfig, "agent")
	if err != nil {
		return err
	}
	reg := newRegistry()
	f.opts.Registerer = reg

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serveErr := make(chan error, 1)
	if f.metricsAddress != "" {
		stop, err := serveMetrics(ctx, f.metricsAddress, reg, func(err error) { serveErr <- err; cancel() })
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := agent.Run(ctx, f.opts, host, kube, ol); err != nil {
		return err
	}
	select {
	case err := <-serveErr:
		return err
	default:
		return nil
	}
}

func (f *agentFlags) newHost() (hostexec.Host, error) {
	switch f.host {
	case "real":
		if f.simConfig != "" {
			return nil, fmt.Errorf("--sim-config needs --host sim")
		}
		return realhost.New(realhost.Config{CommandPrefix: f.commandPrefix, SysfsRoot: f.sysfs})
	case "sim":
		cfg := simhost.Default()
		if f.simConfig != "" {
			data, err := os.ReadFile(f.simConfig)
			if err != nil {
				return nil, fmt.Errorf("--sim-config: %w", err)
			}
			if cfg, err = simhost.LoadConfig(data); err != nil {
				return nil, fmt.Errorf("--sim-config %s: %w", f.simConfig, err)
			}
		}
		return simhost.New(cfg)
	default:
		return nil, fmt.Errorf("--host %q: accepted: real, sim", f.host)
	}
}
