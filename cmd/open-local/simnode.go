package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/agent"
	"github.com/open-local/open-local/csi"
)

const simnodeLong = `Run a simulated node: the node agent and the CSI driver (--driver-mode all)
in one process, acting on one in-memory host built from --sim-config.

This is a test and demo tool. On a real node the agent and the CSI driver are
separate containers that share the machine's LVM; with --host sim each of
"open-local agent" and "open-local csi" would get its own in-memory host, so a
volume group the agent creates would never be seen by the driver. simnode gives
both the same host, so a control plane with one simnode per Node object (and
external-provisioner and csi-snapshotter beside each, on its --csi-endpoint)
behaves like a cluster of Open-Local nodes without disks or a kubelet.

The flags are those of "open-local agent" and "open-local csi" that make sense
on a simulated node; --nodename is also the CSI node ID, and one
--metrics-address serves the metrics of both (open_local_agent_* and
open_local_csi_*) with /healthz.`

func init() {
	register(newSimnodeCommand)
}

type simnodeFlags struct {
	agent          agent.Options
	csi            csiOptions
	kubeconfig     string
	metricsAddress string
	orphanGC       string
}

func newSimnodeCommand() *cobra.Command {
	agentDef := agent.DefaultOptions()
	csiDef := csi.DefaultConfig()
	f := simnodeFlags{}
	cmd := &cobra.Command{
		Use:   "simnode",
		Short: "Run the agent and the CSI driver of one simulated node in one process (test and demo tool)",
		Long:  simnodeLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	// Shared by both halves.
	fl.StringVar(&f.agent.NodeName, "nodename", "", "the simulated node's name: the NodeLocalStorage the agent reports to and the CSI node ID (default: $KUBE_NODE_NAME, else the hostname)")
	fl.StringVar(&f.csi.simConfig, "sim-config", "", "the simulated node's YAML or JSON description (default: one 100 GiB VG open-local-pool-0 and two blank 50 GiB disks)")
	fl.StringVar(&f.agent.MountRoot, "mount-root", agentDef.MountRoot, "directory whose mounted children are mount points (agent discovery and MountPoint volumes)")
	fl.StringVar(&f.metricsAddress, "metrics-address", "", "serve the agent's and the driver's Prometheus metrics (/metrics) and /healthz on this address, e.g. 127.0.0.1:9809; empty: not served")
	// Agent.
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "the agent's kubeconfig file (default: the in-cluster configuration)")
	fl.StringVar(&f.agent.Namespace, "namespace", "", "namespace of the agent's Lease (default: $POD_NAMESPACE, else "+agent.DefaultNamespace+")")
	fl.DurationVar(&f.agent.Interval, "interval", agentDef.Interval, "time between the agent's discovery passes")
	fl.DurationVar(&f.agent.LeaseInterval, "lease-interval", agentDef.LeaseInterval, "time between renewals of the agent's Lease")
	fl.StringVar(&f.agent.LVNamePrefix, "lvname", agentDef.LVNamePrefix, "name prefix of Open-Local's LVs; other LVs (except csi-* and snap*) reduce allocatable")
	fl.BoolVar(&f.agent.CreateNLS, "create-nls", false, "let the agent create the node's NodeLocalStorage (empty spec) when none exists")
	fl.DurationVar(&f.agent.InitBackoff, "init-backoff", agentDef.InitBackoff, "first delay before retrying a failed initialisation of resourceToBeInited")
	fl.DurationVar(&f.agent.HostTimeout, "host-timeout", agentDef.HostTimeout, "longest time one discovery pass or initialisation attempt may take")
	fl.StringVar(&f.orphanGC, "orphan-gc", string(agentDef.OrphanGC), "what the agent does with orphan volumes (LVs created for a PersistentVolume that is gone or never came): off, report or delete")
	fl.DurationVar(&f.agent.OrphanInterval, "orphan-interval", agentDef.OrphanInterval, "time between the agent's orphan passes")
	fl.DurationVar(&f.agent.OrphanGrace, "orphan-grace", agentDef.OrphanGrace, "how old a volume must be before it can be an orphan (at least "+agent.MinOrphanGrace.String()+")")
	// CSI driver.
	fl.StringVar(&f.csi.endpoint, "csi-endpoint", "", "where the CSI driver serves: unix:///path/to/socket or tcp://127.0.0.1:<port> (required)")
	fl.StringVar(&f.csi.driver, "driver", csiDef.DriverName, "CSI driver name")
	fl.StringVar(&f.csi.stateDir, "state-dir", csiDef.StateDir, "directory of the driver's durable records on the simulated host")
	fl.StringToStringVar(&f.csi.reservations, "vg-reservation", nil, "capacity held back per volume group, as size or percentage: open-local-pool-0=10Gi,other=20%")
	fl.Int64Var(&f.csi.maxVolumes, "max-volumes", 0, "volumes per node reported by NodeGetInfo; 0 derives it from capacity")
	fl.BoolVar(&f.csi.controllerExpansion, "controller-expansion", csiDef.ControllerExpansion, "grow LVs in ControllerExpandVolume; false: NodeExpandVolume grows them")
	fl.StringSliceVar(&f.csi.vgInclude, "vg-include", csiDef.VGs.Include, "regular expressions of the volume groups the driver allocates from")
	fl.StringSliceVar(&f.csi.vgExclude, "vg-exclude", nil, "regular expressions of volume groups never allocated from")
	fl.StringSliceVar(&f.csi.deviceInclude, "device-include", csiDef.Devices.Include, "regular expressions of the devices Device volumes may take")
	fl.StringSliceVar(&f.csi.deviceExclude, "device-exclude", csiDef.Devices.Exclude, "regular expressions of devices never taken")
	fl.StringVar(&f.csi.strategy, "strategy", csiDef.Strategy.String(), "the driver's choice among this node's VGs and devices: binpack or spread")
	return cmd
}

func (f *simnodeFlags) run(ctx context.Context) error {
	logger := klog.Background().WithName("open-local")
	if f.agent.NodeName == "" {
		f.agent.NodeName = os.Getenv("KUBE_NODE_NAME")
	}
	if f.agent.NodeName == "" {
		name, err := os.Hostname()
		if err != nil || name == "" {
			return fmt.Errorf("--nodename is not set, KUBE_NODE_NAME is empty and the hostname is unknown: %v", err)
		}
		f.agent.NodeName = name
	}
	if f.agent.Namespace == "" {
		f.agent.Namespace = os.Getenv("POD_NAMESPACE")
	}
	mode, err := agent.ParseOrphanMode(f.orphanGC)
	if err != nil {
		return fmt.Errorf("--orphan-gc: %w", err)
	}
	f.agent.OrphanGC = mode
	if f.csi.endpoint == "" {
		return errors.New("--csi-endpoint is required, e.g. unix:///tmp/node-0/csi.sock")
	}
	// The CSI options parse as "open-local csi --host sim" would; the one
	// host they build is then given to the agent too.
	f.csi.mode = string(csi.ModeAll)
	f.csi.host = "sim"
	f.csi.nodeID = f.agent.NodeName
	f.csi.mountRoot = f.agent.MountRoot
	cfg, host, err := f.csi.config()
	if err != nil {
		return err
	}
	// One registry for both halves, served once (not by the driver).
	reg := newRegistry()
	cfg.Registry = reg
	cfg.MetricsAddress = ""
	f.agent.Registerer = reg
	driver, err := csi.NewDriver(cfg, host)
	if err != nil {
		return err
	}
	kube, ol, err := newClients(f.kubeconfig, "simnode")
	if err != nil {
		return err
	}

	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 1)
	if f.metricsAddress != "" {
		stop, err := serveMetrics(klog.NewContext(ctx, logger), f.metricsAddress, reg, func(err error) {
			errs <- err
			cancel()
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	logger.Info("Simulated node starting", "node", f.agent.NodeName, "endpoint", f.csi.endpoint)
	done := make(chan error, 2)
	go func() {
		err := agent.Run(klog.NewContext(ctx, logger), f.agent, host, kube, ol)
		if err != nil {
			err = fmt.Errorf("agent: %w", err)
		}
		done <- err
	}()
	go func() {
		err := driver.Run(klog.NewContext(ctx, logger.WithName("csi")), f.csi.endpoint)
		if err != nil {
			err = fmt.Errorf("csi: %w", err)
		}
		done <- err
	}()
	// Either half ending ends the node: a simulated node without its
	// driver (or its agent) would mislead whatever tests against it.
	first := <-done
	stopping := outer.Err() != nil
	cancel()
	var second error
	select {
	case second = <-done:
	case <-time.After(30 * time.Second):
		second = errors.New("the other half did not stop within 30s")
	}
	var serveErr error
	select {
	case serveErr = <-errs:
	default:
	}
	if err := errors.Join(first, second, serveErr); err != nil {
		return err
	}
	if !stopping {
		return errors.New("the agent or the CSI driver stopped unexpectedly")
	}
	return nil
}
