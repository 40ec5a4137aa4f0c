package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the control plane of one test binary: started by the first
// Shared call, stopped when Main's m.Run returns.
var shared struct {
	mu         sync.Mutex
	configured bool
	opts       Options
	started    bool
	cluster    *Cluster
	err        error
	dir        string
	cancel     context.CancelFunc
}

// Main runs the package's tests with a control plane shared by all of them;
// call it from TestMain. The control plane starts on the first Shared call
// (tests that never call Shared do not pay for it) and is stopped, and its
// directory removed, after the tests.
func Main(m *testing.M, opts Options) {
	shared.mu.Lock()
	shared.configured = true
	shared.opts = opts
	shared.mu.Unlock()
	code := m.Run()
	stopShared()
	os.Exit(code)
}

// Shared returns the package's shared control plane (see Main), starting it
// on first use. It skips t when the binaries are missing (see Start). On a
// failure of t, the component logs written during t are printed.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.configured {
		t.Fatal("cluster.Shared needs cluster.Main(m, opts) in the package's TestMain")
	}
	skipIfUnavailable(t, shared.opts)
	if !shared.started {
		shared.started = true
		shared.cluster, shared.err = startShared(shared.opts)
		if shared.err == nil {
			t.Logf("shared control plane at %s up: %s", shared.cluster.host, shared.cluster.times)
		}
	}
	if shared.err != nil {
		t.Fatalf("start the shared control plane: %v", shared.err)
	}
	c := shared.cluster
	select {
	case <-c.stopped:
		t.Fatal("the shared control plane has been stopped")
	default:
	}
	offsets := c.logOffsets()
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t, offsets)
		}
	})
	return c
}

func startShared(opts Options) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "open-local-cluster-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := start(ctx, dir, opts)
	if err != nil {
		cancel()
		return nil, errors.Join(err, removeDir(dir))
	}
	shared.dir, shared.cancel = dir, cancel
	return c, nil
}

func stopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster != nil {
		shared.cluster.Stop()
		shared.cancel()
		if err := removeDir(shared.dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		shared.cluster = nil
	}
}

func removeDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove control-plane directory: %w", err)
	}
	return nil
}
