// Package demo runs all of Open-Local in one process, on an in-memory
// Kubernetes API (client-go's fake clientsets with watches) and simulated
// hosts: the controller turns the built-in NodeLocalStorageInitConfig into
// one NodeLocalStorage per node, one agent per node creates the volume group
// and mount point on its simulated host and reports them, the scheduler
// extender's HTTP handlers judge each pod over the cache its informers feed,
// and each node's CSI driver, on the same simulated host as that node's
// agent and reached over gRPC on a unix socket, creates, stages, publishes,
// snapshots and expands the volumes.
//
// The demo itself plays only the parts that are not Open-Local's: a small
// kube-scheduler (filter, prioritize, pick the best node, write the
// selected-node annotation, bind), external-provisioner and the PV
// controller, csi-snapshotter and the snapshot controller, external-resizer,
// and kubelet. It ends with the table of pkg/status, computed from the API
// objects exactly as "open-local status" computes it for a real cluster, and
// checks that nothing is over-committed: not in the extender's ledger, not in
// that table, not on the simulated disks.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/status"
)

// Defaults and bounds of Options.
const (
	DefaultNodes    = 3
	DefaultReplicas = 6
	DefaultTimeout  = 60 * time.Second
	MaxNodes        = 20
	MaxReplicas     = 100
)

// Options configure Run.
type Options struct {
	// Nodes is the number of simulated nodes (default 3).
	Nodes int
	// Replicas is the number of pods of the StatefulSet web, each with a
	// 20Gi LVM volume (default 6); a StatefulSet db with one pod on a whole
	// ssd follows.
	Replicas int
	// Strategy is the extender's and the drivers' (default binpack).
	Strategy core.Strategy
	// Progress receives one line per step; nil prints nothing.
	Progress io.Writer
	// Logger receives the components' logs (default: discarded).
	Logger *logr.Logger
	// Timeout bounds the whole run (default 60s).
	Timeout time.Duration
}

func (o *Options) complete() error {
	if o.Nodes == 0 {
		o.Nodes = DefaultNodes
	}
	if o.Replicas < 0 {
		return fmt.Errorf("replicas %d: must not be negative", o.Replicas)
	}
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return fmt.Errorf("nodes %d: must be from 1 to %d", o.Nodes, MaxNodes)
	}
	if o.Replicas > MaxReplicas {
		return fmt.Errorf("replicas %d: must be at most %d", o.Replicas, MaxReplicas)
	}
	if o.Strategy == 0 {
		o.Strategy = core.Binpack
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return nil
}

// Result is what the run achieved; every field is filled as far as the run got.
type Result struct {
	Nodes    int    `json:"nodes"`
	Strategy string `json:"strategy"`
	// Pods is how many pods the workload has.
	Pods int `json:"pods"`
	// Placements are the pods placed, in order.
	Placements []Placement `json:"placements"`
	// Unschedulable are the pods no node could take.
	Unschedulable []Unschedulable `json:"unschedulable,omitempty"`
	// PVsBound counts PVCs bound to a provisioned PV.
	PVsBound int `json:"pvsBound"`
	// PodsRunning counts pods whose volumes were staged and published.
	PodsRunning int               `json:"podsRunning"`
	Snapshot    *SnapshotOutcome  `json:"snapshot,omitempty"`
	Expansion   *ExpansionOutcome `json:"expansion,omitempty"`
	// AgentsReported is true once every agent's NodeLocalStorage status
	// showed every volume and snapshot of its node at its final size.
	AgentsReported bool `json:"agentsReported"`
	// Overcommits lists every over-commitment found: by the extender's
	// ledger, in the status report, or on the simulated disks.
	Overcommits []string `json:"overcommits"`
	// Errors lists the steps that failed.
	Errors []string `json:"errors,omitempty"`
	// Status is the final report of pkg/status.
	Status         *status.Report `json:"status,omitempty"`
	ElapsedSeconds float64        `json:"elapsedSeconds"`
}

// Placement is where a pod went and its volumes.
type Placement struct {
	Pod   string `json:"pod"`
	Node  string `json:"node"`
	Score int64  `json:"score"`
	// Scores are the extender's scores of the nodes that passed its filter.
	Scores  map[string]int64 `json:"scores"`
	Volumes []Volume         `json:"volumes"`
}

// Volume is a provisioned volume.
type Volume struct {
	Claim  string `json:"claim"`
	PV     string `json:"pv"`
	VG     string `json:"vg,omitempty"`
	Device string `json:"device,omitempty"`
	Bytes  int64  `json:"bytes"`
}

// Unschedulable is a pod no node took, with the extender's reasons.
type Unschedulable struct {
	Pod    string `json:"pod"`
	Reason string `json:"reason"`
}

// SnapshotOutcome is the VolumeSnapshot the demo takes.
type SnapshotOutcome struct {
	Name       string `json:"name"`
	Claim      string `json:"claim"`
	Node       string `json:"node"`
	SnapshotID string `json:"snapshotID"`
	ReadyToUse bool   `json:"readyToUse"`
	// RestoreBytes is the size a restore needs; COWBytes the LV's own size.
	RestoreBytes int64 `json:"restoreBytes"`
	COWBytes     int64 `json:"cowBytes"`
}

// ExpansionOutcome is the volume expansion the demo performs.
type ExpansionOutcome struct {
	Claim     string `json:"claim"`
	Node      string `json:"node"`
	FromBytes int64  `json:"fromBytes"`
	ToBytes   int64  `json:"toBytes"`
	// Done: the LV and its filesystem grew and the PV and PVC show the size.
	Done bool `json:"done"`
}

// Err is nil when every step succeeded, every pod was placed and nothing is
// over-committed.
func (r *Result) Err() error {
	var errs []error
	for _, e := range r.Errors {
		errs = append(errs, errors.New(e))
	}
	switch n := len(r.Unschedulable); {
	case n == 1:
		u := r.Unschedulable[0]
		errs = append(errs, fmt.Errorf("pod %s is unschedulable: %s", u.Pod, u.Reason))
	case n > 1:
		names := make([]string, 0, 3)
		for _, u := range r.Unschedulable[:min(n, 3)] {
			names = append(names, u.Pod)
		}
		if n > 3 {
			names = append(names, "…")
		}
		errs = append(errs, fmt.Errorf("%d pods are unschedulable (%s); the first: %s", n, strings.Join(names, ", "), r.Unschedulable[0].Reason))
	}
	for _, o := range r.Overcommits {
		errs = append(errs, fmt.Errorf("over-committed: %s", o))
	}
	return errors.Join(errs...)
}

// Run runs the demo. Its error is Result.Err or a failure to start; the
// Result holds what was done either way. Every goroutine it starts has
// ended when it returns.
func Run(ctx context.Context, opt Options) (*Result, error) {
	if err := opt.complete(); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	start := time.Now()
	logger := logr.Discard()
	if opt.Logger != nil {
		logger = *opt.Logger
	}
	ctx = klog.NewContext(ctx, logger)
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()

	res := &Result{Nodes: opt.Nodes, Strategy: opt.Strategy.String(), Overcommits: []string{}}
	d := &run{opt: opt, res: res, out: opt.Progress}
	defer func() { res.ElapsedSeconds = time.Since(start).Seconds() }()
	err := d.do(ctx)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
	}
	res.ElapsedSeconds = time.Since(start).Seconds()
	return res, res.Err()
}

// run is one demo run.
type run struct {
	opt Options
	res *Result
	out io.Writer
	cl  *cluster
}

func (d *run) say(format string, args ...any) {
	if d.out != nil {
		fmt.Fprintf(d.out, format+"\n", args...)
	}
}

// fail records a failed step that does not stop the run.
func (d *run) fail(err error) {
	d.res.Errors = append(d.res.Errors, err.Error())
	d.say("FAILED: %v", err)
}

func (d *run) do(ctx context.Context) (err error) {
	cl, err := startCluster(ctx, d.opt)
	if cl != nil {
		defer func() {
			if serr := cl.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
	}
	if err != nil {
		return err
	}
	d.cl = cl
	d.say("API: %d nodes, NodeLocalStorageInitConfig %s, StorageClasses %s and %s", d.opt.Nodes, initConfigName, lvmClass, deviceClass)
	if err := d.awaitStorage(ctx); err != nil {
		return err
	}
	if err := cl.startScheduling(ctx); err != nil {
		return err
	}
	if err := d.awaitCache(ctx); err != nil {
		return err
	}
	if err := cl.startDrivers(ctx); err != nil {
		return err
	}
	d.say("CSI: one driver per node on its simulated host, serving gRPC on a unix socket")

	members := workload(d.opt.Replicas)
	d.res.Pods = len(members)
	d.say("StatefulSet %s: %d pods with a %s %s volume; StatefulSet %s: 1 pod with a whole ssd (%s, %s)",
		webSet, d.opt.Replicas, webVolumeSize, lvmClass, dbSet, dbVolumeSize, deviceClass)
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scheduling: %w", err)
		}
		if err := d.place(ctx, m); err != nil {
			d.fail(err)
		}
	}

	if d.opt.Replicas > 0 {
		if err := d.snapshot(ctx, dataTemplate+"-"+webSet+"-0"); err != nil {
			d.fail(err)
		}
		if err := d.expand(ctx, dataTemplate+"-"+webSet+"-0", expandedSize); err != nil {
			d.fail(err)
		}
	}
	if err := d.awaitAgents(ctx); err != nil {
		d.fail(err)
	}
	if err := d.check(ctx); err != nil {
		d.fail(err)
	}
	return nil
}
