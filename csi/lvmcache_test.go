package csi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
)

// lvmView is what the cache must keep true: per VG its free space and its
// LVs' names, sizes, stripes, origins and tags (not what only a report can
// tell: attributes, device numbers, COW usage).
func lvmView(st core.LVMState) []string {
	var out []string
	for _, vg := range st.VGs {
		out = append(out, fmt.Sprintf("vg %s free=%d pvs=%d", vg.Name, vg.FreeBytes, len(vg.PVs)))
		for _, lv := range vg.LVs {
			tags := slices.Clone(lv.Tags)
			slices.Sort(tags)
			out = append(out, fmt.Sprintf("lv %s/%s size=%d stripes=%d origin=%s tags=%s", vg.Name, lv.Name, lv.SizeBytes, lv.Stripes, lv.Origin, strings.Join(tags, ",")))
		}
	}
	slices.Sort(out)
	return out
}

// TestLVMCacheMatchesFreshReports: after any sequence of LVM changes made
// through the cache, the cached state (when there is one) shows what a fresh
// report shows.
func TestLVMCacheMatchesFreshReports(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		h := simhost.MustNew(simhost.Default())
		c := newLVMCache(h, time.Hour)
		_, err := c.LVMReport(ctx)
		require.NoError(rt, err)
		names := []string{"a", "b", "c", "d"}
		for i := range rapid.IntRange(1, 30).Draw(rt, "steps") {
			name := rapid.SampledFrom(names).Draw(rt, fmt.Sprintf("name%d", i))
			switch op := rapid.IntRange(0, 5).Draw(rt, fmt.Sprintf("op%d", i)); op {
			case 0, 1:
				size := int64(rapid.IntRange(1, 2000).Draw(rt, "mib")) * core.MiB
				_ = c.CreateLV(ctx, hostexec.LVSpec{VG: testPool, Name: name, SizeBytes: size, Tags: []string{tagOwner, "t-" + name}})
			case 2:
				_ = c.RemoveLV(ctx, testPool, name)
			case 3:
				_ = c.ChangeLV(ctx, testPool, name, hostexec.LVChange{AddTags: []string{"x"}, DelTags: []string{"t-" + name}})
			case 4:
				_ = c.CreateSnapshot(ctx, hostexec.SnapshotSpec{VG: testPool, Name: "s" + name, Origin: name, SizeBytes: 64 * core.MiB})
			case 5:
				_, _ = c.LVMReport(ctx)
			}
			got, cached, err := c.recent(ctx)
			require.NoError(rt, err)
			fresh, err := h.LVMReport(ctx)
			require.NoError(rt, err)
			if cached {
				require.Equal(rt, lvmView(fresh), lvmView(got), "step %d: the cached state differs from a fresh report", i)
			}
		}
	})
}

func TestLVMCacheTTLAndStaleReports(t *testing.T) {
	ctx := context.Background()
	h := simhost.MustNew(simhost.Default())
	now := time.Unix(1000, 0)
	c := newLVMCache(h, 30*time.Second)
	c.now = func() time.Time { return now }

	_, cached, err := c.recent(ctx)
	require.NoError(t, err)
	assert.False(t, cached, "nothing cached yet")
	_, cached, err = c.recent(ctx)
	require.NoError(t, err)
	assert.True(t, cached, "the report just read serves")

	now = now.Add(31 * time.Second)
	_, cached, err = c.recent(ctx)
	require.NoError(t, err)
	assert.False(t, cached, "past the TTL a fresh report is read")

	// A failed change drops the cache.
	require.Error(t, c.CreateLV(ctx, hostexec.LVSpec{VG: "no-such-vg", Name: "x", SizeBytes: core.MiB}))
	_, cached, err = c.recent(ctx)
	require.NoError(t, err)
	assert.False(t, cached)

	// A report that began before a change is not stored: the change happens
	// while the report runs, and the report does not show it.
	slow := &reportHook{Host: h}
	c2 := newLVMCache(slow, time.Hour)
	slow.during = func() {
		require.NoError(t, c2.CreateLV(ctx, hostexec.LVSpec{VG: testPool, Name: "during", SizeBytes: core.MiB}))
	}
	_, err = c2.LVMReport(ctx)
	require.NoError(t, err)
	_, cached, err = c2.recent(ctx)
	require.NoError(t, err)
	assert.False(t, cached, "a report older than a change is not kept")

	off := newLVMCache(h, -1)
	_, _ = off.LVMReport(ctx)
	_, cached, err = off.recent(ctx)
	require.NoError(t, err)
	assert.False(t, cached, "a negative TTL turns the cache off")
}

// reportHook runs during inside its first LVMReport, after the host was read.
type reportHook struct {
	hostexec.Host
	during func()
}

func (r *reportHook) LVMReport(ctx context.Context) (core.LVMState, error) {
	st, err := r.Host.LVMReport(ctx)
	if r.during != nil {
		f := r.during
		r.during = nil
		f()
	}
	return st, err
}
