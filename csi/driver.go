package csi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// Mode selects the CSI services a process serves.
type Mode string

const (
	// ModeAll serves Identity, Controller and Node: the DaemonSet container
	// in the node-local deployment, and csi-sanity.
	ModeAll Mode = "all"
	// ModeController serves Identity and Controller for this node's host.
	ModeController Mode = "controller"
	// ModeNode serves Identity and Node.
	ModeNode Mode = "node"
)

// ParseMode accepts all, controller and node.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeAll, ModeController, ModeNode:
		return Mode(s), nil
	}
	return "", &core.InvalidValueError{Field: "driver-mode", Value: s, Accepted: []string{"all", "controller", "node"}}
}

func (m Mode) controller() bool { return m == ModeAll || m == ModeController }
func (m Mode) node() bool       { return m == ModeAll || m == ModeNode }

// Defaults for Config.
const (
	DefaultDriverName = "local.csi.aliyun.com"
	DefaultStateDir   = "/var/lib/open-local/csi"
	DefaultMountRoot  = "/mnt/open-local"
	// TopologyKey is the only topology key, as in open-local.
	TopologyKey = "kubernetes.io/hostname"
	// maxVolumesCeiling bounds the derived per-node volume limit.
	maxVolumesCeiling = 1024
	// typicalMinVolume is the volume size the derived limit assumes.
	typicalMinVolume = core.GiB
)

// DefaultVGInclude are the VGs open-local's default NodeLocalStorageInitConfig includes.
var DefaultVGInclude = []string{"open-local-pool-[0-9]+", "yoda-pool[0-9]+", "ackdistro-pool"}

// DefaultDeviceInclude admits any block device; only blank, unpartitioned,
// unmounted, writable devices that are no PV are ever handed out.
var DefaultDeviceInclude = []string{"/dev/.+"}

// DefaultDeviceExclude keeps device-mapper, optical, RAM and zram devices out.
var DefaultDeviceExclude = []string{"/dev/dm-[0-9]+", "/dev/sr[0-9]+", "/dev/ram[0-9]+", "/dev/zram[0-9]+"}

// Config is everything the driver is told at start.
type Config struct {
	DriverName string
	// NodeID is this node's name (the topology value and the node ID).
	NodeID string
	Mode   Mode
	// Version is reported by GetPluginInfo.
	Version string
	// StateDir holds the durable records.
	StateDir string
	// ControllerExpansion makes ControllerExpandVolume grow LVs (and the node
	// grow filesystems). When false only the node expands, lvextend included,
	// for a resizer deployed without a controller service on each node.
	ControllerExpansion bool
	// MaxVolumes is NodeGetInfo's limit; 0 derives it from capacity.
	MaxVolumes int64
	// VGs and Devices say which VGs and devices may be allocated.
	VGs, Devices core.Filter
	// MountRoot is the directory whose mounted children are MountPoint volumes.
	MountRoot string
	// Reservations hold back VG capacity (open-local's storage-reserved).
	Reservations map[string]core.Reservation
	// Strategy chooses among this node's VGs and devices.
	Strategy core.Strategy
	// Registry receives the RPC metrics (nil: not registered).
	Registry prometheus.Registerer
	// MetricsAddress, when set, serves Registry's metrics over HTTP (it must
	// then be a prometheus.Gatherer too).
	MetricsAddress string
	// LVMCacheTTL is how long CreateVolume, NodeStageVolume and
	// NodePublishVolume trust the last LVM report (0: DefaultLVMCacheTTL;
	// negative: every call runs a report). See lvmcache.go.
	LVMCacheTTL time.Duration
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		DriverName:          DefaultDriverName,
		Mode:                ModeAll,
		Version:             "dev",
		StateDir:            DefaultStateDir,
		ControllerExpansion: true,
		VGs:                 core.Filter{Include: DefaultVGInclude},
		Devices:             core.Filter{Include: DefaultDeviceInclude, Exclude: DefaultDeviceExclude},
		MountRoot:           DefaultMountRoot,
		Strategy:            core.Binpack,
	}
}

// Driver is Open-Local's CSI plugin for one node.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	cfg  Config
	host hostexec.Host
	// lvm is host with the last LVM report kept (host is lvm).
	lvm *lvmCache
	// fresh are the LVs created for plain volumes and not yet staged.
	fresh   newLVs
	rec     *records
	cap     *capacity
	locks   *keyLocks
	metrics *rpcMetrics
	// now is the clock for volume and snapshot creation times (tests replace it).
	now func() time.Time

	readyMu sync.Mutex
	ready   bool
}

// NewDriver checks the configuration and returns a driver; Start (or Run)
// then loads the node's state.
func NewDriver(cfg Config, host hostexec.Host) (*Driver, error) {
	if host == nil {
		return nil, errors.New("csi: no host")
	}
	if cfg.DriverName == "" {
		cfg.DriverName = DefaultDriverName
	}
	if err := validateDriverName(cfg.DriverName); err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		return nil, errors.New("csi: the node ID is empty (set --node-id or KUBE_NODE_NAME)")
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeAll
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if err := hostexec.ValidatePath(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("csi: state directory: %w", err)
	}
	if cfg.MountRoot != "" {
		if err := hostexec.ValidatePath(cfg.MountRoot); err != nil {
			return nil, fmt.Errorf("csi: mount root: %w", err)
		}
	}
	if cfg.MaxVolumes < 0 {
		return nil, fmt.Errorf("csi: max volumes %d is negative", cfg.MaxVolumes)
	}
	if cfg.Strategy == 0 {
		cfg.Strategy = core.Binpack
	}
	vgs, err := core.CompileFilter("vg", cfg.VGs)
	if err != nil {
		return nil, fmt.Errorf("csi: %w", err)
	}
	devs, err := core.CompileFilter("device", cfg.Devices)
	if err != nil {
		return nil, fmt.Errorf("csi: %w", err)
	}
	if cfg.MetricsAddress != "" {
		if _, ok := cfg.Registry.(prometheus.Gatherer); !ok {
			return nil, errors.New("csi: serving metrics needs a registry that is also a prometheus.Gatherer")
		}
	}
	m, err := newRPCMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("csi: registering metrics: %w", err)
	}
	if cfg.LVMCacheTTL == 0 {
		cfg.LVMCacheTTL = DefaultLVMCacheTTL
	}
	lvm := newLVMCache(host, cfg.LVMCacheTTL)
	d := &Driver{
		cfg:     cfg,
		host:    lvm,
		lvm:     lvm,
		rec:     &records{host: lvm, dir: cfg.StateDir},
		cap:     newCapacity(cfg.NodeID, cfg.Strategy, capacityFilters{vgs: vgs, devices: devs, mountRoot: cfg.MountRoot, reservations: cfg.Reservations}),
		locks:   newKeyLocks(),
		metrics: m,
		now:     time.Now,
	}
	return d, nil
}

// validateDriverName applies the CSI rule: at most 63 characters, DNS-like,
// starting and ending with an alphanumeric character.
func validateDriverName(n string) error {
	if len(n) > 63 {
		return fmt.Errorf("csi: driver name %q is longer than 63 characters", n)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' && c != '.' && c != '_' || i == 0 || i == len(n)-1) {
			return fmt.Errorf("csi: driver name %q: only alphanumerics, '-', '.' and '_' are allowed, starting and ending with an alphanumeric", n)
		}
	}
	if n == "" {
		return errors.New("csi: driver name is empty")
	}
	return nil
}

// Start prepares the state directory, rebuilds the capacity ledger from the
// host and recovers from a previous run: it re-applies io.max limits and
// removes inline volumes that were never handed to a pod.
func (d *Driver) Start(ctx context.Context) error {
	if err := d.rec.ensureDirs(ctx); err != nil {
		return err
	}
	if err := d.cap.resync(ctx, d.host, d.rec); err != nil {
		return fmt.Errorf("csi: loading the node's storage: %w", err)
	}
	u := d.cap.usage()
	vgs := make([]string, 0, len(u.VGs))
	for _, vg := range u.VGs {
		vgs = append(vgs, fmt.Sprintf("%s (%s allocatable, %s used)", vg.Name, core.FormatSize(vg.AllocatableBytes), core.FormatSize(vg.UsedBytes)))
	}
	klog.FromContext(ctx).Info("Loaded the node's storage", "node", d.cfg.NodeID, "vgs", vgs, "devices", len(u.Devices), "mountPoints", len(u.MountPoints), "claims", u.Claims)
	if d.cfg.Mode.node() {
		if err := d.recover(ctx); err != nil {
			return fmt.Errorf("csi: recovering from the previous run: %w", err)
		}
	}
	d.readyMu.Lock()
	d.ready = true
	d.readyMu.Unlock()
	return nil
}

// Server returns a gRPC server with the driver's services registered for its mode.
func (d *Driver) Server() *grpc.Server {
	s := grpc.NewServer(grpc.UnaryInterceptor(d.metrics.interceptor))
	csi.RegisterIdentityServer(s, d)
	if d.cfg.Mode.controller() {
		csi.RegisterControllerServer(s, d)
	}
	if d.cfg.Mode.node() {
		csi.RegisterNodeServer(s, d)
	}
	return s
}

// Run starts the driver and serves endpoint until ctx is cancelled, then
// stops gracefully (in-flight RPCs finish).
func (d *Driver) Run(ctx context.Context, endpoint string) error {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return err
	}
	l, err := ep.Listen()
	if err != nil {
		return err
	}
	return d.Serve(ctx, l)
}

// Serve serves the driver on an open listener until ctx is cancelled.
func (d *Driver) Serve(ctx context.Context, l net.Listener) error {
	logger := klog.FromContext(ctx)
	srv := d.Server()
	var metricsSrv *http.Server
	if d.cfg.MetricsAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(d.cfg.Registry.(prometheus.Gatherer), promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Addr: d.cfg.MetricsAddress, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "Metrics server stopped")
			}
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	logger.Info("CSI driver serving", "driver", d.cfg.DriverName, "node", d.cfg.NodeID, "mode", d.cfg.Mode, "endpoint", l.Addr().String())
	select {
	case <-ctx.Done():
		logger.Info("CSI driver stopping")
		srv.GracefulStop()
		if metricsSrv != nil {
			_ = metricsSrv.Close()
		}
		return nil
	case err := <-errc:
		if metricsSrv != nil {
			_ = metricsSrv.Close()
		}
		return err
	}
}

func (d *Driver) isReady() bool {
	d.readyMu.Lock()
	defer d.readyMu.Unlock()
	return d.ready
}

func (d *Driver) topology() *csi.Topology {
	return &csi.Topology{Segments: map[string]string{TopologyKey: d.cfg.NodeID}}
}
