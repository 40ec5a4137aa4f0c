package main

import (
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/realhost"
	"github.com/open-local/open-local/hostexec/simhost"
)

func init() {
	register(newCSICommand)
}

type csiOptions struct {
	endpoint            string
	nodeID              string
	driver              string
	mode                string
	host                string
	simConfig           string
	stateDir            string
	reservations        map[string]string
	maxVolumes          int64
	controllerExpansion bool
	vgInclude           []string
	vgExclude           []string
	deviceInclude       []string
	deviceExclude       []string
	mountRoot           string
	strategy            string
	metricsAddress      string
	lvmCacheTTL         time.Duration
	commandPrefix       []string
	sysfs               string
	cgroupRoot          string
}

func newCSICommand() *cobra.Command {
	def := csi.DefaultConfig()
	o := csiOptions{}
	cmd := &cobra.Command{
		Use:   "csi",
		Short: "Run the CSI driver for this node (Identity, Controller and Node services)",
		Long: `Run Open-Local's CSI driver. Each node runs it for itself beside
external-provisioner (--node-deployment) and csi-snapshotter: the driver only
ever acts on its own node, listens on a unix socket (or a loopback TCP port)
and nowhere else.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, host, err := o.config()
			if err != nil {
				return err
			}
			d, err := csi.NewDriver(cfg, host)
			if err != nil {
				return err
			}
			return d.Run(klog.NewContext(cmd.Context(), klog.Background()), o.endpoint)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.endpoint, "endpoint", "unix:///csi/csi.sock", "where to serve CSI: unix:///path/to/socket or tcp://127.0.0.1:<port> (loopback only)")
	f.StringVar(&o.nodeID, "node-id", "", "this node's name (default: $KUBE_NODE_NAME, else the hostname)")
	f.StringVar(&o.driver, "driver", def.DriverName, "CSI driver name")
	f.StringVar(&o.mode, "driver-mode", string(def.Mode), "services to serve: all (Identity+Controller+Node), controller (Identity+Controller) or node (Identity+Node)")
	f.StringVar(&o.host, "host", "real", "the host to act on: real (LVM and mounts of this machine) or sim (an in-memory node)")
	f.StringVar(&o.simConfig, "sim-config", "", "with --host sim: a simulated node's YAML or JSON description (default: one 100 GiB VG open-local-pool-0 and two blank 50 GiB disks)")
	f.StringVar(&o.stateDir, "state-dir", def.StateDir, "directory of the driver's durable records (on the host)")
	f.StringToStringVar(&o.reservations, "vg-reservation", nil, "capacity held back per volume group, as size or percentage: open-local-pool-0=10Gi,other=20%")
	f.Int64Var(&o.maxVolumes, "max-volumes", 0, "volumes per node reported to kubelet; 0 derives it from capacity")
	f.BoolVar(&o.controllerExpansion, "controller-expansion", def.ControllerExpansion, "grow LVs in ControllerExpandVolume; false: NodeExpandVolume grows them (resizer without a controller service per node)")
	f.StringSliceVar(&o.vgInclude, "vg-include", def.VGs.Include, "regular expressions of the volume groups the driver allocates from (whole-name match)")
	f.StringSliceVar(&o.vgExclude, "vg-exclude", nil, "regular expressions of volume groups never allocated from")
	f.StringSliceVar(&o.deviceInclude, "device-include", def.Devices.Include, "regular expressions of the devices Device volumes may take (only blank, unpartitioned, unmounted ones are taken)")
	f.StringSliceVar(&o.deviceExclude, "device-exclude", def.Devices.Exclude, "regular expressions of devices never taken")
	f.StringVar(&o.mountRoot, "mount-root", def.MountRoot, "directory whose mounted children are MountPoint volumes")
	f.StringVar(&o.strategy, "strategy", def.Strategy.String(), "choice among this node's VGs and devices: binpack or spread")
	f.DurationVar(&o.lvmCacheTTL, "lvm-cache-ttl", csi.DefaultLVMCacheTTL, "how long CreateVolume, NodeStageVolume and NodePublishVolume may answer from the last LVM report instead of running one (changes the driver makes keep it true; 0: always run a report)")
	f.StringVar(&o.metricsAddress, "metrics-address", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9808); empty: not served")
	f.StringSliceVar(&o.commandPrefix, "command-prefix", nil, "with --host real: run every host tool through this command, e.g. nsenter,--mount=/proc/1/ns/mnt,--")
	f.StringVar(&o.sysfs, "sysfs", "/sys", "with --host real: where the host's sysfs is mounted")
	f.StringVar(&o.cgroupRoot, "cgroup-root", "/sys/fs/cgroup", "with --host real: where the host's cgroup v2 hierarchy is mounted")
	return cmd
}

func (o csiOptions) config() (csi.Config, hostexec.Host, error) {
	cfg := csi.DefaultConfig()
	cfg.Version = version
	cfg.DriverName = o.driver
	mode, err := csi.ParseMode(o.mode)
	if err != nil {
		return cfg, nil, err
	}
	cfg.Mode = mode
	cfg.NodeID = o.nodeID
	if cfg.NodeID == "" {
		cfg.NodeID = os.Getenv("KUBE_NODE_NAME")
	}
	if cfg.NodeID == "" {
		if cfg.NodeID, err = os.Hostname(); err != nil {
			return cfg, nil, fmt.Errorf("--node-id is not set, KUBE_NODE_NAME is empty and the hostname is unknown: %w", err)
		}
	}
	if _, err := csi.ParseEndpoint(o.endpoint); err != nil {
		return cfg, nil, fmt.Errorf("--endpoint: %w", err)
	}
	cfg.StateDir = o.stateDir
	switch {
	case o.lvmCacheTTL < 0:
		return cfg, nil, fmt.Errorf("--lvm-cache-ttl %s is negative", o.lvmCacheTTL)
	case o.lvmCacheTTL == 0:
		cfg.LVMCacheTTL = -1 // off
	default:
		cfg.LVMCacheTTL = o.lvmCacheTTL
	}
	cfg.MaxVolumes = o.maxVolumes
	cfg.ControllerExpansion = o.controllerExpansion
	cfg.VGs = core.Filter{Include: o.vgInclude, Exclude: o.vgExclude}
	cfg.Devices = core.Filter{Include: o.deviceInclude, Exclude: o.deviceExclude}
	cfg.MountRoot = o.mountRoot
	if cfg.Strategy, err = core.ParseStrategy(o.strategy); err != nil {
		return cfg, nil, fmt.Errorf("--strategy: %w", err)
	}
	if len(o.reservations) > 0 {
		cfg.Reservations = map[string]core.Reservation{}
		vgs := make([]string, 0, len(o.reservations))
		for vg := range o.reservations {
			vgs = append(vgs, vg)
		}
		sort.Strings(vgs)
		for _, vg := range vgs {
			b, p, isPct, err := core.ParseSizeOrPercent(o.reservations[vg])
			if err != nil {
				return cfg, nil, fmt.Errorf("--vg-reservation %s: %w", vg, err)
			}
			cfg.Reservations[vg] = core.Reservation{Bytes: b, Percent: p, IsPercent: isPct}
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg
	cfg.MetricsAddress = o.metricsAddress

	var host hostexec.Host
	switch o.host {
	case "real":
		if o.simConfig != "" {
			return cfg, nil, fmt.Errorf("--sim-config needs --host sim")
		}
		host, err = realhost.New(realhost.Config{CommandPrefix: o.commandPrefix, SysfsRoot: o.sysfs, CgroupRoot: o.cgroupRoot})
	case "sim":
		sc := simhost.Default()
		if o.simConfig != "" {
			data, rerr := os.ReadFile(o.simConfig)
			if rerr != nil {
				return cfg, nil, fmt.Errorf("--sim-config: %w", rerr)
			}
			if sc, err = simhost.LoadConfig(data); err != nil {
				return cfg, nil, fmt.Errorf("--sim-config %s: %w", o.simConfig, err)
			}
		}
		host, err = simhost.New(sc)
	default:
		return cfg, nil, fmt.Errorf("--host %q: accepted: real, sim", o.host)
	}
	if err != nil {
		return cfg, nil, err
	}
	return cfg, host, nil
}
