package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/sim"
	"github.com/spf13/cobra"
)

const simLong = `Simulate placing pods' local volumes on a cluster, offline, with the same
placement code the scheduler uses.

Input (-f FILE, repeatable; "-" reads stdin) is ordinary Kubernetes YAML or
JSON: several documents per file, and List objects as "kubectl get -o yaml"
prints them. The simulator reads:

  Node                   labels, taints and cordons (spec.unschedulable).
  NodeLocalStorage       spec.listConfig, status.nodeStorageInfo and the
                         csi.aliyun.com/storage-reserved annotation, as the agent
                         reports them. filteredStorageInfo is computed from
                         listConfig, never read. A NodeLocalStorage without a
                         Node implies a node of its name.
  StorageClass           provisioner local.csi.aliyun.com (or the legacy
                         yodaplugin.csi.alibabacloud.com); parameters volumeType
                         (LVM|Device|MountPoint), vgName, mediaType (ssd|hdd),
                         lvmType (linear|striping), csi.storage.k8s.io/fstype
                         (ext4|ext3|xfs), bps, iops.
  PersistentVolumeClaim  the storage request and class. Every PVC is treated
                         as unbound; a dataSource is not simulated.
  Pod                    PVC volumes, generic ephemeral volumes and CSI inline
                         volumes of local.csi.aliyun.com (volumeAttributes vgName,
                         size, default 1Gi); nodeName, nodeSelector, required
                         node affinity and tolerations are honoured.
  StatefulSet            expanded into its pods <name>-<i> and their PVCs
                         <template>-<name>-<i>.

Other kinds are ignored with a note on stderr. Pods without an Open-Local
volume are skipped with a note.

Capacity: a volume group offers its size minus the LVs that are not
Open-Local's (names starting local, csi- or snap) minus the reservation;
Open-Local's LVs already there are charged to it. A device that is an LVM PV,
mounted, partitioned or read-only is not offered.

Pods are placed in file order, each on the best node by --strategy among the
first --sample nodes that fit (0: kube-scheduler's adaptive default, all nodes
up to 100 nodes; give at least the node count to score every node).

Output: a table per node and resource (allocatable, requested, free, pods),
the unschedulable pods with kube-scheduler-style reasons, and the resources
whose charges exceed what they offer, recounted from the final state. --json
prints {"placements", "unschedulable", "overcommitted" (number of
over-committed resources), "pods" (pods with Open-Local volumes), "nodes",
"elapsedSeconds" (time spent building the cluster and placing pods)}; a
volume's "bytes" is what is charged, after rounding to whole LVM extents.

--generate N --template FILE clones the Nodes and NodeLocalStorages of FILE N
times, named <name>-0 .. <name>-<N-1>; -f files (default: the built-in
workload) supply the workload.

--mode chooses the code that places the pods. core (the default) calls the
placement library directly. extender runs the scheduler extender's HTTP
handlers over a storage cache fed by informers, as kube-scheduler would:
each pod's scheduling cycle (filter, prioritize, best node) runs up to
--bind-lag pods ahead of its binding, which writes the PVCs' selected-node
annotation; then the provisioner's reservation call books the volumes and
may refuse a node promised meanwhile, and the pod is scheduled again.
plugin runs the scheduler framework plugin (PreFilter, Filter, Score,
Reserve inside the cycle, PreBind). The footer then gives placements per
second, reschedules, over-commit attempts caught at reservation and the
bytes over-committed in the final state; --json adds "mode",
"placementsPerSecond", "reschedules", "overcommitAttemptsCaught" and
"overcommittedBytes".

Without -f and --generate, a built-in example cluster and workload are used
(see "open-local sim --print-examples").

Bad objects (an unknown volumeType, a missing StorageClass, an invalid
listConfig regexp, ...) are reported and the rest is still simulated; a file
that is not valid YAML is an error naming the file and the document.`

func init() {
	register(newSimCommand)
}

type simFlags struct {
	files         []string
	json          bool
	strategy      string
	sample        int
	generate      int
	template      string
	printExamples bool
	mode          string
	bindLag       int
}

func newSimCommand() *cobra.Command {
	var f simFlags
	cmd := &cobra.Command{
		Use:   "sim [-f FILE]...",
		Short: "Simulate placing local volumes on a cluster described in YAML",
		Long:  simLong,
		Example: `  open-local sim
  open-local sim --json
  open-local sim -f cluster.yaml -f workload.yaml --strategy spread
  kubectl get nodes,nodelocalstorages,storageclasses,pvc,pods -A -o yaml | open-local sim -f -
  open-local sim --generate 1000 --template node-template.yaml -f workload.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSim(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.files, "filename", "f", nil, `YAML or JSON file to read; repeatable; "-" reads stdin`)
	fl.BoolVar(&f.json, "json", false, "print the result as JSON")
	fl.StringVar(&f.strategy, "strategy", "binpack", "how to choose among nodes that fit: binpack or spread")
	fl.IntVar(&f.sample, "sample", 0, "stop searching once this many nodes fit (0 = kube-scheduler's adaptive default)")
	fl.IntVar(&f.generate, "generate", 0, "clone the nodes of --template this many times")
	fl.StringVar(&f.template, "template", "", "file with the Node and NodeLocalStorage to clone (with --generate)")
	fl.StringVar(&f.mode, "mode", sim.ModeCore, "code that places the pods: core (the placement library), extender (the HTTP extender, with CSI's reservation call) or plugin (the scheduler framework plugin)")
	fl.IntVar(&f.bindLag, "bind-lag", sim.DefaultBindLag, "extender and plugin modes: how many pods scheduling runs ahead of binding")
	fl.BoolVar(&f.printExamples, "print-examples", false, "print the built-in example files and exit")
	return cmd
}

func runSim(cmd *cobra.Command, f simFlags) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if f.printExamples {
		return printExamples(out)
	}
	strategy, err := core.ParseStrategy(f.strategy)
	if err != nil {
		return fmt.Errorf("--strategy: %w", err)
	}
	if f.sample < 0 {
		return fmt.Errorf("--sample %d: must be at least 0", f.sample)
	}
	if (f.generate != 0) != (f.template != "") {
		return errors.New("--generate and --template go together")
	}

	set := sim.NewSet()
	stdinUsed := false
	load := func(name string) error {
		if name == "-" {
			if stdinUsed {
				return errors.New(`-f -: stdin can be read only once`)
			}
			stdinUsed = true
			return set.Load("-", cmd.InOrStdin())
		}
		file, err := os.Open(name)
		if err != nil {
			return err
		}
		defer file.Close()
		return set.Load(name, file)
	}

	if f.generate != 0 {
		tmpl := sim.NewSet()
		file, err := os.Open(f.template)
		if err != nil {
			return fmt.Errorf("--template: %w", err)
		}
		err = tmpl.Load(f.template, file)
		file.Close()
		if err != nil {
			return err
		}
		if err := set.Generate(tmpl, f.generate); err != nil {
			return fmt.Errorf("--template %s: %w", f.template, err)
		}
	}
	for _, name := range f.files {
		if err := load(name); err != nil {
			return err
		}
	}
	if len(f.files) == 0 {
		if f.generate == 0 {
			if err := set.LoadExample(sim.ExampleCluster); err != nil {
				return err
			}
		}
		if err := set.LoadExample(sim.ExampleWorkload); err != nil {
			return err
		}
	}

	if f.mode != sim.ModeCore && f.mode != sim.ModeExtender && f.mode != sim.ModePlugin {
		return fmt.Errorf("--mode: unknown mode %q (accepted: core, extender, plugin)", f.mode)
	}
	if f.bindLag < 1 {
		return fmt.Errorf("--bind-lag %d: must be at least 1", f.bindLag)
	}
	res, err := sim.Run(set, sim.Options{Strategy: strategy, Sample: f.sample, Mode: f.mode, BindLag: f.bindLag})
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		fmt.Fprintln(errOut, "note:", n)
	}
	if f.json {
		return res.WriteJSON(out)
	}
	return res.WriteTable(out)
}

func printExamples(w io.Writer) error {
	for i, name := range sim.ExampleFiles() {
		data, err := sim.Examples.ReadFile(name)
		if err != nil {
			return err
		}
		// A document separator between files keeps the output valid input.
		sep := "---\n"
		if i == 0 {
			sep = ""
		}
		if _, err := fmt.Fprintf(w, "%s# ---- %s ----\n%s", sep, name, data); err != nil {
			return err
		}
	}
	return nil
}
