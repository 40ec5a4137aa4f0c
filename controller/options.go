// Package controller derives one NodeLocalStorage per node from a
// NodeLocalStorageInitConfig and keeps them in line as nodes come and go and
// the config changes.
//
// A node's spec is the config's globalConfig, or the last nodesConfig entry
// whose selector matches the node's labels, which replaces the global config
// as a whole. Manual edits of a NodeLocalStorage spec are kept until the
// config gives that node something new (unless OverwriteManualEdits is set).
// Only NodeLocalStorages the controller created carry the managed-by label,
// and only those are ever deleted by it.
package controller

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
)

// Options configures the controller. The zero value of a field means its default.
type Options struct {
	// InitConfigName is the NodeLocalStorageInitConfig to apply (default "open-local").
	InitConfigName string
	// NodeSelector limits the nodes the controller manages (default: every node).
	// The NodeLocalStorage of a node that stops matching is deleted if the
	// controller created it.
	NodeSelector labels.Selector
	// OverwriteManualEdits restores the derived spec on every difference, as
	// open-local did; by default manual edits stay until the config changes
	// what it gives the node.
	OverwriteManualEdits bool
	// Workers is the number of concurrent reconciles (default 2).
	Workers int
	// ResyncPeriod is how often every node is re-checked (default 5m).
	ResyncPeriod time.Duration
	// StatusUpdateDelay batches init config status writes (default 500ms).
	StatusUpdateDelay time.Duration
	// LeaderElection makes one replica active at a time.
	LeaderElection LeaderElectionOptions
	// MetricsRegisterer receives the controller's metrics; nil keeps them unexported.
	MetricsRegisterer prometheus.Registerer
}

// LeaderElectionOptions configures leader election through a coordination.k8s.io Lease.
type LeaderElectionOptions struct {
	Enabled bool
	// Namespace of the Lease (default "kube-system").
	Namespace string
	// LeaseName is the name of the Lease (default "open-local-controller").
	LeaseName string
	// Identity of this replica (default: host name plus a random suffix).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod default to 15s, 10s and 2s.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Defaults.
const (
	DefaultInitConfigName    = "open-local"
	DefaultWorkers           = 2
	DefaultResyncPeriod      = 5 * time.Minute
	DefaultStatusUpdateDelay = 500 * time.Millisecond
	DefaultLeaseNamespace    = "kube-system"
	DefaultLeaseName         = "open-local-controller"
	DefaultLeaseDuration     = 15 * time.Second
	DefaultRenewDeadline     = 10 * time.Second
	DefaultRetryPeriod       = 2 * time.Second
)

// DefaultOptions returns the options with every default filled in, except
// the leader election identity, which is made unique when the controller runs.
func DefaultOptions() Options {
	o := Options{}
	o.setDefaults()
	return o
}

func (o *Options) setDefaults() {
	if o.InitConfigName == "" {
		o.InitConfigName = DefaultInitConfigName
	}
	if o.NodeSelector == nil {
		o.NodeSelector = labels.Everything()
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.ResyncPeriod == 0 {
		o.ResyncPeriod = DefaultResyncPeriod
	}
	if o.StatusUpdateDelay == 0 {
		o.StatusUpdateDelay = DefaultStatusUpdateDelay
	}
	le := &o.LeaderElection
	if le.Namespace == "" {
		le.Namespace = DefaultLeaseNamespace
	}
	if le.LeaseName == "" {
		le.LeaseName = DefaultLeaseName
	}
	if le.LeaseDuration == 0 {
		le.LeaseDuration = DefaultLeaseDuration
	}
	if le.RenewDeadline == 0 {
		le.RenewDeadline = DefaultRenewDeadline
	}
	if le.RetryPeriod == 0 {
		le.RetryPeriod = DefaultRetryPeriod
	}
}

// complete fills in defaults and checks the result.
func (o *Options) complete() error {
	o.setDefaults()
	le := &o.LeaderElection
	if le.Identity == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "open-local-controller"
		}
		le.Identity = host + "_" + uuid.NewString()
	}
	var errs []error
	if o.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers must be positive, got %d", o.Workers))
	}
	if o.ResyncPeriod < 0 || o.StatusUpdateDelay < 0 {
		errs = append(errs, errors.New("resync period and status update delay must not be negative"))
	}
	if le.Enabled {
		if le.LeaseDuration <= le.RenewDeadline {
			errs = append(errs, fmt.Errorf("leader election: lease duration %v must exceed the renew deadline %v", le.LeaseDuration, le.RenewDeadline))
		}
		if le.RetryPeriod <= 0 || le.RenewDeadline <= le.RetryPeriod {
			errs = append(errs, fmt.Errorf("leader election: renew deadline %v must exceed the retry period %v", le.RenewDeadline, le.RetryPeriod))
		}
	}
	return errors.Join(errs...)
}
