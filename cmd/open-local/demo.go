package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/demo"
	"github.com/open-local/open-local/pkg/status"
)

const demoLong = `Run all of Open-Local in this process, on an in-memory Kubernetes API and
simulated disks, in a few seconds and with no setup.

The real components run: the controller derives one NodeLocalStorage per
node from the built-in NodeLocalStorageInitConfig; each node's agent creates
the volume group open-local-pool-0 on /dev/vdb and an ext4 mount point on
/dev/vdd of its simulated host and reports them; the scheduler extender's
handlers filter and score every pod over the cache its informers feed; each
node's CSI driver, on the same simulated host as its agent and reached over
gRPC on a unix socket, creates, stages and publishes the volumes, takes a
snapshot and expands a volume.

The workload is the StatefulSet web (--replicas pods, each with a 20Gi
volume of open-local-lvm) and the StatefulSet db (one pod with a 40Gi
open-local-device-ssd volume: a whole disk). The demo plays kube-scheduler,
external-provisioner, csi-snapshotter, external-resizer and kubelet around
them, prints each step, and ends with the table of "open-local status"
computed from the in-memory API.

It exits non-zero when a step failed, a pod found no node, or anything is
over-committed in the extender's ledger, the status report or on the disks.
--json prints the outcome (placements, PVs bound, snapshot, expansion,
over-commits, the status report) instead; progress then goes to stderr
unless --quiet.`

func init() { register(newDemoCommand) }

type demoFlags struct {
	nodes    int
	replicas int
	json     bool
	quiet    bool
	strategy string
	timeout  time.Duration
}

func newDemoCommand() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole stack in one process on an in-memory cluster, in seconds",
		Long:  demoLong,
		Example: `  open-local demo
  open-local demo --nodes 5 --replicas 12 --strategy spread
  open-local demo --json --quiet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.nodes, "nodes", demo.DefaultNodes, fmt.Sprintf("simulated nodes (1 to %d)", demo.MaxNodes))
	fl.IntVar(&f.replicas, "replicas", demo.DefaultReplicas, fmt.Sprintf("pods of the StatefulSet web, each with a 20Gi LVM volume (0 to %d)", demo.MaxReplicas))
	fl.BoolVar(&f.json, "json", false, "print the outcome as JSON")
	fl.BoolVar(&f.quiet, "quiet", false, "do not print the steps")
	fl.StringVar(&f.strategy, "strategy", core.Binpack.String(), "placement strategy of the extender and the drivers: binpack or spread")
	fl.DurationVar(&f.timeout, "timeout", demo.DefaultTimeout, "give up after this long")
	return cmd
}

func runDemo(cmd *cobra.Command, f demoFlags) error {
	strategy, err := core.ParseStrategy(f.strategy)
	if err != nil {
		return fmt.Errorf("--strategy: %w", err)
	}
	if f.nodes < 1 || f.nodes > demo.MaxNodes {
		return fmt.Errorf("--nodes %d: must be from 1 to %d", f.nodes, demo.MaxNodes)
	}
	if f.replicas < 0 || f.replicas > demo.MaxReplicas {
		return fmt.Errorf("--replicas %d: must be from 0 to %d", f.replicas, demo.MaxReplicas)
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", f.timeout)
	}
	out := cmd.OutOrStdout()
	var progress io.Writer
	switch {
	case f.quiet:
	case f.json:
		progress = cmd.ErrOrStderr()
	default:
		progress = out
	}
	opt := demo.Options{Nodes: f.nodes, Replicas: f.replicas, Strategy: strategy, Progress: progress, Timeout: f.timeout}
	// The components log only when asked for (-v 1 or more). Some log
	// through klog's global logger (the CSI driver's RPC handlers), so it
	// is silenced for the run.
	if klog.V(1).Enabled() {
		logger := klog.Background()
		opt.Logger = &logger
	} else {
		klog.SetLogger(logr.Discard())
		defer klog.ClearLogger()
	}
	res, err := demo.Run(cmd.Context(), opt)
	if res == nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(res); jerr != nil {
			return jerr
		}
		return err
	}
	if res.Status != nil {
		if progress != nil {
			fmt.Fprintln(out)
		}
		if werr := res.Status.WriteTable(out); werr != nil {
			return werr
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, demoSummary(res))
	return err
}

// demoSummary is the closing line.
func demoSummary(r *demo.Result) string {
	s := fmt.Sprintf("%d nodes, %d pods: %d placed, %d unschedulable; %d PVs bound", r.Nodes, r.Pods, len(r.Placements), len(r.Unschedulable), r.PVsBound)
	if r.Snapshot != nil {
		state := "not ready"
		if r.Snapshot.ReadyToUse {
			state = "ready"
		}
		s += fmt.Sprintf("; snapshot %s", state)
	}
	if e := r.Expansion; e != nil && e.Done {
		s += fmt.Sprintf("; %s expanded to %s", e.Claim, status.FormatBytes(e.ToBytes))
	}
	return s + fmt.Sprintf("; %d over-committed; %.1fs", len(r.Overcommits), r.ElapsedSeconds)
}
