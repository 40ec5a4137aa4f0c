package csi

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/open-local/open-local/core"
)

// TestLedgerFollowsHost drives random sequences of controller RPCs and
// restarts, and checks after every step that the ledger charges exactly the
// live LVs and devices, that nothing is over-committed, and that GetCapacity
// agrees with the VG's real free space.
func TestLedgerFollowsHost(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		e := newEnv(rt, nil)
		names := []string{"local-a", "local-b", "local-c", "local-d"}
		snaps := []string{"snap-a", "snap-b"}
		code := func(err error) codes.Code { return status.Code(err) }
		allowed := func(err error, ok ...codes.Code) {
			for _, c := range ok {
				if code(err) == c {
					return
				}
			}
			rt.Fatalf("unexpected error: %v", err)
		}
		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			name := rapid.SampledFrom(names).Draw(rt, "name")
			switch op := rapid.IntRange(0, 6).Draw(rt, "op"); op {
			case 0, 1:
				size := rapid.Int64Range(1, 40*core.GiB).Draw(rt, "size")
				var params map[string]string
				if op == 1 {
					params = map[string]string{"volumeType": "Device"}
				}
				_, err := e.d.CreateVolume(e.ctx, createReq(name, size, params))
				allowed(err, codes.OK, codes.AlreadyExists, codes.ResourceExhausted)
			case 2:
				_, err := e.d.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: name})
				allowed(err, codes.OK, codes.FailedPrecondition)
			case 3:
				_, err := e.d.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: rapid.SampledFrom(snaps).Draw(rt, "snap"), SourceVolumeId: name,
					Parameters: map[string]string{SnapParamInitialSize: fmt.Sprint(rapid.Int64Range(1, 8*core.GiB).Draw(rt, "cow"))}})
				allowed(err, codes.OK, codes.NotFound, codes.AlreadyExists, codes.ResourceExhausted, codes.InvalidArgument)
			case 4:
				_, err := e.d.DeleteSnapshot(e.ctx, &csi.DeleteSnapshotRequest{SnapshotId: rapid.SampledFrom(snaps).Draw(rt, "snap")})
				allowed(err, codes.OK)
			case 5:
				_, err := e.d.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{VolumeId: name,
					CapacityRange: &csi.CapacityRange{RequiredBytes: rapid.Int64Range(1, 60*core.GiB).Draw(rt, "to")}})
				allowed(err, codes.OK, codes.NotFound, codes.ResourceExhausted, codes.OutOfRange)
			case 6:
				e.start()
			}
			e.checkLedgerMatchesHost()
			st, err := e.h.LVMReport(e.ctx)
			require.NoError(rt, err)
			resp, err := e.d.GetCapacity(e.ctx, &csi.GetCapacityRequest{})
			require.NoError(rt, err)
			require.Equal(rt, st.VGs[0].FreeBytes, resp.AvailableCapacity, "GetCapacity is the VG's free space (no reservation, no foreign LVs)")
		}
	})
}

// TestParallelCreatesAndCapacityPolls creates volumes in parallel while
// GetCapacity resynchronises the ledger from the host: no reservation in
// flight may be lost, so the VG is never over-committed and every claim
// ends up backed by an LV.
func TestParallelCreatesAndCapacityPolls(t *testing.T) {
	e := newEnv(t, nil)
	e.h.Delay("CreateLV", time.Millisecond)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for p := 0; p < 2; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := e.d.GetCapacity(e.ctx, &csi.GetCapacityRequest{})
				if err != nil {
					t.Errorf("GetCapacity: %v", err)
					return
				}
			}
		}()
	}
	var cw sync.WaitGroup
	results := make([]error, 30)
	for i := range results {
		cw.Add(1)
		go func(i int) {
			defer cw.Done()
			_, results[i] = e.d.CreateVolume(e.ctx, createReq(fmt.Sprintf("local-%02d", i), 5*core.GiB, nil))
		}(i)
	}
	cw.Wait()
	close(stop)
	wg.Wait()
	ok := 0
	for _, err := range results {
		if err == nil {
			ok++
		} else {
			require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
		}
	}
	require.Equal(t, 19, ok, "(100 GiB - 4 MiB) holds nineteen 5 GiB volumes")
	e.checkLedgerMatchesHost()
}

// TestStaleHostReadIsDropped: two resyncs overlap; the one whose host read
// began first finishes last. Applied, its read (taken before an LV was
// created) would drop the LV's claim, as the later load already forgot
// that the claim changed since. It is dropped instead.
func TestStaleHostReadIsDropped(t *testing.T) {
	e := newEnv(t, nil)
	ctx := e.ctx
	c := e.d.cap
	before, err := readHostStorage(ctx, e.h, e.d.rec, c.filters.mountRoot)
	require.NoError(t, err)
	c.mu.Lock()
	early := c.gen
	c.mu.Unlock()

	e.mustCreate(createReq("local-late", 5*core.GiB, nil))
	require.NoError(t, c.resync(ctx, e.h, e.d.rec)) // the later read, applied first
	c.load(ctx, before, early)                      // the earlier read, finishing last

	_, charged := c.l.Claim(core.ClaimID("local-late"))
	require.True(t, charged, "the stale read must not drop the new volume's claim")
	e.checkLedgerMatchesHost()
}
