// Package agent is Open-Local's per-node agent. It discovers the node's
// storage (block devices, LVM, mount points under the mount root), writes it
// to the node's NodeLocalStorage status together with what listConfig keeps,
// creates and grows the volume groups and mount points of
// spec.resourceToBeInited, renews a Lease that tells the agent is alive,
// reports or removes orphan volumes (orphans.go), and exports Prometheus
// metrics.
//
// Run holds no global state and returns when its context ends, so several
// agents (one per simulated node) can run in one process.
package agent

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// Defaults.
const (
	DefaultNamespace      = "kube-system"
	DefaultLVNamePrefix   = "local"
	DefaultInterval       = 5 * time.Second
	DefaultLeaseInterval  = 10 * time.Second
	DefaultInitBackoff    = 5 * time.Second
	DefaultInitBackoffMax = 5 * time.Minute
	DefaultHostTimeout    = 2 * time.Minute
	DefaultOrphanGC       = OrphanGCReport
	DefaultOrphanInterval = 5 * time.Minute
	DefaultOrphanGrace    = time.Hour
	// MinOrphanGrace bounds OrphanGrace from below: the window between
	// lvcreate and the PersistentVolume's creation must never be hit, even
	// while the API server is slow.
	MinOrphanGrace = 5 * time.Minute
	// LeasePrefix starts the name of every agent's Lease.
	LeasePrefix = "open-local-agent-"
)

// Options configure the agent. The zero value of a field means its default.
type Options struct {
	// NodeName is the node the agent runs on; its NodeLocalStorage has that
	// name. Required.
	NodeName string
	// Namespace holds the agent's Lease (default kube-system).
	Namespace string
	// MountRoot is the directory whose mounted children are reported as
	// mount points (default /mnt/open-local).
	MountRoot string
	// LVNamePrefix marks Open-Local's LVs (default "local"); LVs that carry
	// neither it nor one of core.DefaultOwnedLVPrefixes reduce allocatable.
	LVNamePrefix string
	// DeviceRegexp, when set, limits the reported block devices to those
	// whose kernel name (vdb, nvme0n1p1) it matches in whole.
	DeviceRegexp string
	// Interval is the time between discovery passes (default 5s).
	Interval time.Duration
	// LeaseInterval is the time between Lease renewals (default 10s).
	LeaseInterval time.Duration
	// LeaseDuration is how long a renewal vouches for the agent (default
	// 4 × LeaseInterval). The Lease is not renewed while no discovery pass
	// has finished for Interval + HostTimeout: a command stuck beyond its
	// timeout (a process hung on a dead disk) shows as an expired Lease.
	LeaseDuration time.Duration
	// ForceCreateVG lets volume groups take devices that carry signatures.
	ForceCreateVG bool
	// CreateNLS makes the agent create its NodeLocalStorage (empty spec)
	// when none exists, instead of waiting for the controller to.
	CreateNLS bool
	// InitBackoff and InitBackoffMax bound the exponential delay between
	// failed attempts to initialise resourceToBeInited (default 5s, 5m).
	InitBackoff    time.Duration
	InitBackoffMax time.Duration
	// HostTimeout bounds one discovery pass or initialisation attempt
	// (default 2m).
	HostTimeout time.Duration
	// OrphanGC is what the agent does with orphan volumes: LVs the CSI
	// driver created for a PersistentVolume that is gone or never came
	// (default report; see orphans.go and docs/agent.md).
	OrphanGC OrphanMode
	// OrphanInterval is the time between orphan passes (default 5m).
	OrphanInterval time.Duration
	// OrphanGrace is how old a volume must be before it can be an orphan
	// (default 1h, at least MinOrphanGrace).
	OrphanGrace time.Duration
	// Registerer receives the agent's metrics; nil keeps them unexported.
	Registerer prometheus.Registerer
}

// DefaultOptions returns the options with every default filled in.
func DefaultOptions() Options {
	o := Options{}
	o.setDefaults()
	return o
}

func (o *Options) setDefaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.MountRoot == "" {
		o.MountRoot = discovery.DefaultMountRoot
	}
	if o.LVNamePrefix == "" {
		o.LVNamePrefix = DefaultLVNamePrefix
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.LeaseInterval == 0 {
		o.LeaseInterval = DefaultLeaseInterval
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 4 * o.LeaseInterval
	}
	if o.InitBackoff == 0 {
		o.InitBackoff = DefaultInitBackoff
	}
	if o.InitBackoffMax == 0 {
		o.InitBackoffMax = DefaultInitBackoffMax
	}
	if o.HostTimeout == 0 {
		o.HostTimeout = DefaultHostTimeout
	}
	if o.OrphanGC == "" {
		o.OrphanGC = DefaultOrphanGC
	}
	if o.OrphanInterval == 0 {
		o.OrphanInterval = DefaultOrphanInterval
	}
	if o.OrphanGrace == 0 {
		o.OrphanGrace = DefaultOrphanGrace
	}
}

// complete fills in defaults, checks the result and compiles the device
// regexp.
func (o *Options) complete() (*regexp.Regexp, error) {
	o.setDefaults()
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("the node name is not set"))
	}
	if err := hostexec.ValidatePath(o.MountRoot); err != nil {
		errs = append(errs, fmt.Errorf("mount root: %w", err))
	}
	for name, d := range map[string]time.Duration{"interval": o.Interval, "lease interval": o.LeaseInterval,
		"lease duration": o.LeaseDuration, "init backoff": o.InitBackoff, "init backoff maximum": o.InitBackoffMax,
		"host timeout": o.HostTimeout, "orphan interval": o.OrphanInterval} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v must be positive", name, d))
		}
	}
	if o.LeaseDuration > 0 && o.LeaseDuration <= o.LeaseInterval {
		errs = append(errs, fmt.Errorf("lease duration %v must exceed the lease interval %v", o.LeaseDuration, o.LeaseInterval))
	}
	if o.InitBackoffMax > 0 && o.InitBackoffMax < o.InitBackoff {
		errs = append(errs, fmt.Errorf("init backoff maximum %v is below the initial backoff %v", o.InitBackoffMax, o.InitBackoff))
	}
	if _, err := ParseOrphanMode(string(o.OrphanGC)); err != nil {
		errs = append(errs, err)
	}
	if o.OrphanGrace < MinOrphanGrace {
		errs = append(errs, fmt.Errorf("orphan grace %v is below the minimum %v: a volume that young may still be waiting for its PersistentVolume", o.OrphanGrace, MinOrphanGrace))
	}
	var re *regexp.Regexp
	if o.DeviceRegexp != "" {
		var err error
		if re, err = regexp.Compile(o.DeviceRegexp); err != nil {
			errs = append(errs, fmt.Errorf("device regexp %q: %w", o.DeviceRegexp, err))
		}
	}
	return re, errors.Join(errs...)
}

// ownedPrefixes is LVNamePrefix followed by core's defaults, without repeats.
func (o *Options) ownedPrefixes() []string {
	out := []string{o.LVNamePrefix}
	for _, p := range core.DefaultOwnedLVPrefixes {
		if p != o.LVNamePrefix {
			out = append(out, p)
		}
	}
	return out
}
