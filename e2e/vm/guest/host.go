//go:build vmguest

package guest

import (
	"context"
	"testing"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/open-local/open-local/hostexec/realhost"
)

// NewHost returns the real host as the agent and the CSI node plugin use it
// on a node (hostexec/realhost with its defaults: /dev, /sys, /sys/fs/cgroup,
// the tools on PATH), and a context whose klog logger writes to the test's
// log. The context is not cancelled when the test ends, so cleanups can use
// it too.
func NewHost(t testing.TB) (*realhost.Host, context.Context) {
	t.Helper()
	h, err := realhost.New(realhost.Config{})
	if err != nil {
		t.Fatalf("realhost.New: %v", err)
	}
	// Verbosity 2: the Host's actions and changes, not every command it runs
	// (a failing command's error carries its argv and stderr anyway).
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	return h, klog.NewContext(context.Background(), logger)
}
