package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCSIRejectsBadFlags(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"negative cache ttl": {[]string{"csi", "--host=sim", "--node-id=n", "--lvm-cache-ttl=-1s"}, "--lvm-cache-ttl -1s is negative"},
		"bad mode":           {[]string{"csi", "--host=sim", "--node-id=n", "--driver-mode=both"}, "driver-mode"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := runCLI(t, "", tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCSICacheTTLFlag(t *testing.T) {
	for _, tc := range []struct {
		flag time.Duration
		want time.Duration
	}{{30 * time.Second, 30 * time.Second}, {5 * time.Second, 5 * time.Second}, {0, -1}} {
		o := csiOptions{endpoint: "unix:///csi/csi.sock", nodeID: "n", mode: "all", host: "sim", strategy: "binpack", lvmCacheTTL: tc.flag}
		cfg, _, err := o.config()
		require.NoError(t, err)
		assert.Equal(t, tc.want, cfg.LVMCacheTTL, "--lvm-cache-ttl=%s", tc.flag)
	}
}
