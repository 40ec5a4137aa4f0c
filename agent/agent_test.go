package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
)

const pool = "open-local-pool-0"

// defaultHost is simhost's default node (pool on /dev/sdb, blank /dev/sdc
// and /dev/sdd) with an Open-Local LV and a foreign one.
func defaultHost(t *testing.T) *simhost.Host {
	t.Helper()
	h := simhost.MustNew(simhost.Default())
	require.NoError(t, h.CreateLV(context.Background(), hostexec.LVSpec{VG: pool, Name: "local-pv-1", SizeBytes: 10 * core.GiB}))
	require.NoError(t, h.CreateLV(context.Background(), hostexec.LVSpec{VG: pool, Name: "foreign", SizeBytes: 5 * core.GiB}))
	return h
}

func written(n *v1alpha1.NodeLocalStorage) bool {
	return n.Status.NodeStorageInfo.State.LastHeartbeatTime != nil
}

func TestStatusFromDiscovery(t *testing.T) {
	host := defaultHost(t)
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: v1alpha1.ListConfig{
		VGs:     v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+"}},
		Devices: v1alpha1.ListFilter{Include: []string{"/dev/sd[cd]"}, Exclude: []string{"/dev/sdd"}},
	}})
	nls.Annotations = map[string]string{core.ReservedAnnotation: `{"open-local-pool-0":"10%"}`}
	api := newFakeAPI(nls)
	h := run(t, host, fastOptions(), api)
	n := h.waitStatus("status written", func(n *v1alpha1.NodeLocalStorage) bool {
		return conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})

	st := n.Status
	info := st.NodeStorageInfo
	assert.Equal(t, v1alpha1.StorageRunning, info.Phase)
	assert.Equal(t, v1alpha1.StorageReady, info.State.Type)
	assert.Equal(t, metav1.ConditionTrue, info.State.Status)
	require.NotNil(t, info.State.LastHeartbeatTime)
	require.NotNil(t, info.State.LastTransitionTime)
	require.Len(t, info.DeviceInfos, 3)
	assert.Equal(t, "/dev/sdb", info.DeviceInfos[0].Name)
	vg := vgInStatus(n, pool)
	require.NotNil(t, vg)
	total := int64(100*core.GiB - 4*core.MiB)
	assert.Equal(t, uint64(total), vg.Total)
	assert.Equal(t, uint64(total-15*core.GiB), vg.Available)
	assert.Equal(t, uint64(total-5*core.GiB-total/10), vg.Allocatable, "foreign LV and the 10% reservation are held back")
	assert.Equal(t, []string{"/dev/sdb"}, vg.PhysicalVolumes)
	require.Len(t, vg.LogicalVolumes, 2)
	assert.Equal(t, "foreign", vg.LogicalVolumes[0].Name)

	f := st.FilteredStorageInfo
	assert.Equal(t, []string{pool}, f.VolumeGroups)
	assert.Equal(t, []string{"/dev/sdc"}, f.Devices)
	assert.Empty(t, f.MountPoints)
	assert.Equal(t, v1alpha1.UpdateStatusAccepted, f.UpdateStatus.Status)
	require.NotNil(t, f.UpdateStatus.LastUpdateTime)

	cv := condition(n, v1alpha1.ConditionConfigValid)
	require.NotNil(t, cv)
	assert.Equal(t, metav1.ConditionTrue, cv.Status)
	assert.Equal(t, "every listConfig pattern is a valid regular expression", cv.Message, "the same words as the controller's")
	assert.Equal(t, n.Generation, cv.ObservedGeneration)
	assert.True(t, conditionIs(n, v1alpha1.ConditionVolumeGroupReady, metav1.ConditionTrue))
}

func TestStatusWrittenOnlyOnChange(t *testing.T) {
	host := defaultHost(t)
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()}))
	h := run(t, host, fastOptions(), api)
	first := h.waitStatus("first status", written)
	heartbeat := *first.Status.NodeStorageInfo.State.LastHeartbeatTime

	// Let the informer settle, then count: passes go on, writes do not.
	time.Sleep(100 * time.Millisecond)
	before := api.statusWrites.Load()
	passes := histogramCount(t, h.reg, "open_local_agent_discovery_duration_seconds")
	time.Sleep(20 * h.opts.Interval)
	assert.Equal(t, before, api.statusWrites.Load(), "no status write while nothing changes")
	assert.GreaterOrEqual(t, histogramCount(t, h.reg, "open_local_agent_discovery_duration_seconds")-passes, uint64(5), "discovery kept running")
	assert.Equal(t, heartbeat, *api.get(t).Status.NodeStorageInfo.State.LastHeartbeatTime, "the heartbeat moves only with a change")
	require.Equal(t, int64(1), before, "one write for the first status")

	// Out of band: an LV removed by hand shows at the next pass, in one write.
	require.NoError(t, host.RemoveLV(context.Background(), pool, "foreign"))
	n := h.waitStatus("LV gone from the status", func(n *v1alpha1.NodeLocalStorage) bool {
		vg := vgInStatus(n, pool)
		return vg != nil && len(vg.LogicalVolumes) == 1
	})
	assert.Equal(t, "local-pv-1", vgInStatus(n, pool).LogicalVolumes[0].Name)
	assert.True(t, n.Status.NodeStorageInfo.State.LastHeartbeatTime.After(heartbeat.Time), "a real change moves the heartbeat")
	time.Sleep(10 * h.opts.Interval)
	assert.Equal(t, before+1, api.statusWrites.Load())

	// Out of band: the VG grown by hand.
	require.NoError(t, host.ExtendVG(context.Background(), pool, []string{"/dev/sdd"}))
	h.waitStatus("VG grown", func(n *v1alpha1.NodeLocalStorage) bool {
		vg := vgInStatus(n, pool)
		return vg != nil && len(vg.PhysicalVolumes) == 2 && vg.Total > uint64(140*core.GiB)
	})

	// A reservation annotation changes allocatable right away.
	api.update(t, func(n *v1alpha1.NodeLocalStorage) {
		n.Annotations = map[string]string{core.ReservedAnnotation: `{"open-local-pool-0":"20Gi"}`}
	})
	h.waitStatus("reservation applied", func(n *v1alpha1.NodeLocalStorage) bool {
		vg := vgInStatus(n, pool)
		return vg != nil && vg.Allocatable == vg.Total-uint64(20*core.GiB)
	})
}

func TestBadRegexp(t *testing.T) {
	host := defaultHost(t)
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()}))
	h := run(t, host, fastOptions(), api)
	h.waitStatus("filtered list", func(n *v1alpha1.NodeLocalStorage) bool {
		return len(n.Status.FilteredStorageInfo.VolumeGroups) == 1
	})

	api.update(t, func(n *v1alpha1.NodeLocalStorage) {
		n.Spec.ListConfig.VGs.Include = []string{"open-local-pool-[0-9]+", "pool-("}
	})
	n := h.waitStatus("ConfigValid=False", func(n *v1alpha1.NodeLocalStorage) bool {
		return conditionIs(n, v1alpha1.ConditionConfigValid, metav1.ConditionFalse)
	})
	cv := condition(n, v1alpha1.ConditionConfigValid)
	assert.Equal(t, v1alpha1.ReasonInvalidRegexp, cv.Reason)
	assert.Equal(t, "spec.listConfig.vgs.include[1]: invalid regular expression \"pool-(\": error parsing regexp: missing closing ): `pool-(`", cv.Message)
	assert.Equal(t, n.Generation, cv.ObservedGeneration)
	f := n.Status.FilteredStorageInfo
	assert.Empty(t, f.VolumeGroups, "nothing new is scheduled on a misconfigured node")
	assert.Empty(t, f.Devices)
	assert.Equal(t, v1alpha1.UpdateStatusFailed, f.UpdateStatus.Status)
	assert.Contains(t, f.UpdateStatus.Reason, `"pool-("`)
	assert.NotEmpty(t, n.Status.NodeStorageInfo.VolumeGroups, "discovery is still reported")
	ready := condition(n, v1alpha1.ConditionReady)
	assert.Equal(t, metav1.ConditionFalse, ready.Status)
	assert.Equal(t, v1alpha1.ReasonConfigInvalid, ready.Reason)

	ev := h.waitEvent(EventConfigInvalid, corev1.EventTypeWarning, `"pool-("`)
	assert.Equal(t, EventSource, ev.Source.Component)
	time.Sleep(10 * h.opts.Interval)
	assert.Len(t, h.events(EventConfigInvalid), 1, "one event for a standing problem")
	var count int32
	for _, e := range h.events(EventConfigInvalid) {
		count += e.Count
	}
	assert.LessOrEqual(t, count, int32(1))

	api.update(t, func(n *v1alpha1.NodeLocalStorage) { n.Spec.ListConfig.VGs.Include = []string{"open-local-pool-[0-9]+"} })
	n = h.waitStatus("ConfigValid=True again", func(n *v1alpha1.NodeLocalStorage) bool {
		return conditionIs(n, v1alpha1.ConditionConfigValid, metav1.ConditionTrue) && conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	assert.Equal(t, []string{pool}, n.Status.FilteredStorageInfo.VolumeGroups)
	assert.Equal(t, v1alpha1.UpdateStatusAccepted, n.Status.FilteredStorageInfo.UpdateStatus.Status)
}

func TestBadReservation(t *testing.T) {
	host := defaultHost(t)
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()})
	nls.Annotations = map[string]string{core.ReservedAnnotation: `{"open-local-pool-0":"lots"}`}
	api := newFakeAPI(nls)
	h := run(t, host, fastOptions(), api)
	n := h.waitStatus("Ready=False", func(n *v1alpha1.NodeLocalStorage) bool {
		return conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionFalse) && written(n)
	})
	assert.Equal(t, v1alpha1.ReasonConfigInvalid, condition(n, v1alpha1.ConditionReady).Reason)
	assert.Contains(t, condition(n, v1alpha1.ConditionReady).Message, core.ReservedAnnotation)
	assert.True(t, conditionIs(n, v1alpha1.ConditionConfigValid, metav1.ConditionTrue), "ConfigValid is about listConfig only, as the controller has it")
	assert.Zero(t, vgInStatus(n, pool).Allocatable, "what the admin meant to hold back is unknown: hold back everything")
	h.waitEvent(EventReservationInvalid, corev1.EventTypeWarning, `"lots"`)
}

func TestCreateAndGrowVG(t *testing.T) {
	host := defaultHost(t)
	spec := v1alpha1.NodeLocalStorageSpec{ListConfig: allListed(), ResourceToBeInited: v1alpha1.ResourceToBeInited{
		VGs: []v1alpha1.VGToBeInited{{Name: "pool-1", Devices: []string{"/dev/sdc"}}}}}
	api := newFakeAPI(newNLS(spec))
	h := run(t, host, fastOptions(), api)
	n := h.waitStatus("VG created", func(n *v1alpha1.NodeLocalStorage) bool {
		return vgInStatus(n, "pool-1") != nil && conditionIs(n, v1alpha1.ConditionVolumeGroupReady, metav1.ConditionTrue)
	})
	assert.Equal(t, []string{"/dev/sdc"}, vgInStatus(n, "pool-1").PhysicalVolumes)
	assert.Contains(t, n.Status.FilteredStorageInfo.VolumeGroups, "pool-1")
	h.waitEvent(initres.ReasonVGCreated, corev1.EventTypeNormal, "created volume group pool-1 from /dev/sdc")

	// A device added to the list grows the VG (vgextend).
	api.update(t, func(n *v1alpha1.NodeLocalStorage) {
		n.Spec.ResourceToBeInited.VGs[0].Devices = []string{"/dev/sdc", "/dev/sdd"}
	})
	n = h.waitStatus("VG grown", func(n *v1alpha1.NodeLocalStorage) bool {
		vg := vgInStatus(n, "pool-1")
		return vg != nil && len(vg.PhysicalVolumes) == 2 && conditionIs(n, v1alpha1.ConditionVolumeGroupReady, metav1.ConditionTrue) &&
			condition(n, v1alpha1.ConditionVolumeGroupReady).ObservedGeneration == n.Generation
	})
	assert.Equal(t, []string{"/dev/sdc", "/dev/sdd"}, vgInStatus(n, "pool-1").PhysicalVolumes)
	h.waitEvent(initres.ReasonVGExtended, corev1.EventTypeNormal, "extended volume group pool-1 with /dev/sdd")
	assert.Equal(t, 1, host.CallCount("CreateVG"), "created once")
	assert.Equal(t, 1, host.CallCount("ExtendVG"), "extended once")
}

func TestSignatureRefusedUnlessForced(t *testing.T) {
	cfg := simhost.Default()
	cfg.Devices[1].Signatures = []string{"ntfs"} // /dev/sdc
	spec := v1alpha1.NodeLocalStorageSpec{ResourceToBeInited: v1alpha1.ResourceToBeInited{
		VGs: []v1alpha1.VGToBeInited{{Name: "pool-1", Devices: []string{"/dev/sdc"}}}}}

	t.Run("refused", func(t *testing.T) {
		host := simhost.MustNew(cfg)
		api := newFakeAPI(newNLS(spec))
		h := run(t, host, fastOptions(), api)
		ev := h.waitEvent(initres.ReasonCreateVGFailed, corev1.EventTypeWarning, "device /dev/sdc carries ntfs signatures")
		assert.Contains(t, ev.Message, "Force_Create_VG=true")
		n := h.waitStatus("VolumeGroupReady=False", func(n *v1alpha1.NodeLocalStorage) bool {
			return conditionIs(n, v1alpha1.ConditionVolumeGroupReady, metav1.ConditionFalse) &&
				condition(n, v1alpha1.ConditionVolumeGroupReady).Reason == v1alpha1.ReasonVGCreateFailed
		})
		vgr := condition(n, v1alpha1.ConditionVolumeGroupReady)
		assert.Contains(t, vgr.Message, "volume group pool-1 does not exist")
		assert.Contains(t, vgr.Message, "ntfs")
		ready := condition(n, v1alpha1.ConditionReady)
		assert.Equal(t, metav1.ConditionFalse, ready.Status)
		assert.Equal(t, v1alpha1.ReasonSyncFailed, ready.Reason)
		assert.Zero(t, host.CallCount("CreateVG"), "LVM was never asked")
		assert.Nil(t, vgInStatus(n, "pool-1"))
	})
	t.Run("forced", func(t *testing.T) {
		host := simhost.MustNew(cfg)
		api := newFakeAPI(newNLS(spec))
		opts := fastOptions()
		opts.ForceCreateVG = true
		h := run(t, host, opts, api)
		h.waitEvent(initres.ReasonVGCreated, corev1.EventTypeNormal, "forced over existing signatures on /dev/sdc (ntfs)")
		h.waitStatus("VG created", func(n *v1alpha1.NodeLocalStorage) bool {
			return vgInStatus(n, "pool-1") != nil && conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
		})
	})
}

func TestDeviceOfAnotherVGRefused(t *testing.T) {
	host := defaultHost(t)
	spec := v1alpha1.NodeLocalStorageSpec{ResourceToBeInited: v1alpha1.ResourceToBeInited{
		VGs: []v1alpha1.VGToBeInited{{Name: "pool-1", Devices: []string{"/dev/sdc", "/dev/sdb"}}}}}
	api := newFakeAPI(newNLS(spec))
	opts := fastOptions()
	opts.ForceCreateVG = true
	h := run(t, host, opts, api)
	h.waitEvent(initres.ReasonCreateVGFailed, corev1.EventTypeWarning, "device /dev/sdb is a physical volume of volume group "+pool)
	assert.Zero(t, host.CallCount("CreateVG"))
}

// gatedHost fails CreateVG until opened, recording when it was called.
type gatedHost struct {
	*simhost.Host
	mu    sync.Mutex
	open  bool
	calls []time.Time
}

func (g *gatedHost) CreateVG(ctx context.Context, name string, devices []string, force bool) error {
	g.mu.Lock()
	g.calls = append(g.calls, time.Now())
	open := g.open
	g.mu.Unlock()
	if !open {
		return errors.New("vgcreate: injected failure")
	}
	return g.Host.CreateVG(ctx, name, devices, force)
}

func (g *gatedHost) attempts() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]time.Time(nil), g.calls...)
}

func TestInitRetriedWithBackoff(t *testing.T) {
	host := &gatedHost{Host: defaultHost(t)}
	spec := v1alpha1.NodeLocalStorageSpec{ResourceToBeInited: v1alpha1.ResourceToBeInited{
		VGs: []v1alpha1.VGToBeInited{{Name: "pool-1", Devices: []string{"/dev/sdc"}}}}}
	api := newFakeAPI(newNLS(spec))
	opts := fastOptions()
	opts.InitBackoff = 20 * time.Millisecond
	opts.InitBackoffMax = 400 * time.Millisecond
	h := run(t, host, opts, api)
	time.Sleep(1200 * time.Millisecond)
	at := host.attempts()
	// 20, 40, 80, 160, 320, 400 ms apart: about 7 attempts in 1.2 s, where a
	// fixed timer at the first delay would have made 60.
	require.GreaterOrEqual(t, len(at), 4, "failed attempts are retried")
	assert.LessOrEqual(t, len(at), 10, "retries back off")
	first, last := at[1].Sub(at[0]), at[len(at)-1].Sub(at[len(at)-2])
	assert.Greater(t, last, 3*first, "the delay grows: first gap %v, last gap %v", first, last)
	ev := h.waitEvent(initres.ReasonCreateVGFailed, corev1.EventTypeWarning, "injected failure")
	assert.NotEmpty(t, ev.Message)
	assert.Positive(t, counterValue(t, h.reg, "open_local_agent_command_errors_total", map[string]string{"op": initres.OpCreateVG}))

	host.mu.Lock()
	host.open = true
	host.mu.Unlock()
	h.waitStatus("VG created on a retry", func(n *v1alpha1.NodeLocalStorage) bool {
		return vgInStatus(n, "pool-1") != nil && conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	n := len(host.attempts())
	time.Sleep(20 * opts.Interval)
	assert.Equal(t, n, len(host.attempts()), "no attempt once it succeeded")
}

func TestMountPointInit(t *testing.T) {
	host := defaultHost(t)
	spec := v1alpha1.NodeLocalStorageSpec{ListConfig: allListed(), ResourceToBeInited: v1alpha1.ResourceToBeInited{
		MountPoints: []v1alpha1.MountPointToBeInited{{Path: "/mnt/open-local/disk0", Device: "/dev/sdc", FsType: v1alpha1.FSTypeExt4}}}}
	api := newFakeAPI(newNLS(spec))
	h := run(t, host, fastOptions(), api)
	n := h.waitStatus("mount point reported", func(n *v1alpha1.NodeLocalStorage) bool {
		return len(n.Status.NodeStorageInfo.MountPoints) == 1 && conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	mp := n.Status.NodeStorageInfo.MountPoints[0]
	assert.Equal(t, "/mnt/open-local/disk0", mp.Name)
	assert.Equal(t, "/dev/sdc", mp.Device)
	assert.Equal(t, "ext4", mp.FsType)
	assert.Equal(t, uint64(50*core.GiB), mp.Total)
	assert.Equal(t, []string{"/mnt/open-local/disk0"}, n.Status.FilteredStorageInfo.MountPoints)
	h.waitEvent(initres.ReasonMountPointReady, corev1.EventTypeNormal, "/dev/sdc formatted as ext4 and mounted on /mnt/open-local/disk0")
}

// brokenLVM fails every LVM report while broken is set.
type brokenLVM struct {
	*simhost.Host
	broken atomic.Bool
}

func (b *brokenLVM) LVMReport(ctx context.Context) (core.LVMState, error) {
	if b.broken.Load() {
		return core.LVMState{}, errors.New("lvm: cannot lock")
	}
	return b.Host.LVMReport(ctx)
}

func TestDiscoveryFailure(t *testing.T) {
	host := &brokenLVM{Host: defaultHost(t)}
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()}))
	h := run(t, host, fastOptions(), api)
	good := h.waitStatus("first status", func(n *v1alpha1.NodeLocalStorage) bool {
		return conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	host.broken.Store(true)
	n := h.waitStatus("Ready=False", func(n *v1alpha1.NodeLocalStorage) bool {
		return conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionFalse)
	})
	ready := condition(n, v1alpha1.ConditionReady)
	assert.Equal(t, v1alpha1.ReasonSyncFailed, ready.Reason)
	assert.Contains(t, ready.Message, "discovery failed: LVMReport")
	assert.Equal(t, good.Status.NodeStorageInfo.VolumeGroups, n.Status.NodeStorageInfo.VolumeGroups, "the last good picture is kept")
	assert.Equal(t, good.Status.FilteredStorageInfo.VolumeGroups, n.Status.FilteredStorageInfo.VolumeGroups)
	host.broken.Store(false)
	h.waitStatus("Ready=True again", func(n *v1alpha1.NodeLocalStorage) bool {
		return conditionIs(n, v1alpha1.ConditionReady, metav1.ConditionTrue)
	})
	h.waitEvent(EventDiscoveryFailed, corev1.EventTypeWarning, "LVMReport: lvm: cannot lock")
	assert.Positive(t, counterValue(t, h.reg, "open_local_agent_command_errors_total", map[string]string{"op": "LVMReport"}))
}

func TestStatusWriteErrorRetried(t *testing.T) {
	host := defaultHost(t)
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{}))
	api.failStatus = 2
	h := run(t, host, fastOptions(), api)
	h.waitStatus("status written after errors", written)
	assert.GreaterOrEqual(t, api.statusWrites.Load(), int64(3))
	assert.Positive(t, counterValue(t, h.reg, "open_local_agent_status_updates_total", map[string]string{"result": "error"}))
}

func TestConflictingWriter(t *testing.T) {
	// Another writer (the controller) updates the status between the
	// agent's passes: the agent keeps its own conditions and theirs.
	host := defaultHost(t)
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{}))
	h := run(t, host, fastOptions(), api)
	h.waitStatus("first status", written)
	n := api.get(t)
	n.Status.Conditions = append(n.Status.Conditions, metav1.Condition{Type: "Other", Status: metav1.ConditionTrue, Reason: "Test", LastTransitionTime: metav1.Now()})
	_, err := api.cs.CsiV1alpha1().NodeLocalStorages().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, host.RemoveLV(context.Background(), pool, "foreign"))
	n = h.waitStatus("LV removal written", func(n *v1alpha1.NodeLocalStorage) bool {
		vg := vgInStatus(n, pool)
		return vg != nil && len(vg.LogicalVolumes) == 1
	})
	assert.NotNil(t, condition(n, "Other"), "conditions of other writers are kept")
}

func TestWaitsForNLS(t *testing.T) {
	host := defaultHost(t)
	api := newFakeAPI()
	h := run(t, host, fastOptions(), api)
	time.Sleep(10 * h.opts.Interval)
	list, err := api.cs.CsiV1alpha1().NodeLocalStorages().List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, list.Items, "the agent does not create it by default")
	assert.Zero(t, api.statusWrites.Load())
	assert.Positive(t, gaugeValue(t, h.reg, "open_local_agent_vg_size_bytes", map[string]string{"vg": pool}), "metrics do not wait")

	_, err = api.cs.CsiV1alpha1().NodeLocalStorages().Create(context.Background(), newNLS(v1alpha1.NodeLocalStorageSpec{}), metav1.CreateOptions{})
	require.NoError(t, err)
	h.waitStatus("status once the controller created it", written)
}

func TestCreateNLS(t *testing.T) {
	host := defaultHost(t)
	api := newFakeAPI()
	opts := fastOptions()
	opts.CreateNLS = true
	h := run(t, host, opts, api)
	n := h.waitStatus("created and reported", written)
	assert.Equal(t, testNode, n.Spec.NodeName)
	assert.Empty(t, n.Spec.ListConfig.VGs.Include)
	assert.Empty(t, n.Status.FilteredStorageInfo.VolumeGroups, "an empty spec lists nothing")
}

func TestLease(t *testing.T) {
	host := defaultHost(t)
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{}))
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: types.UID("uid-1")}}
	h := run(t, host, fastOptions(), api, node)
	get := func() (*coordinationv1.Lease, error) {
		return h.kube.CoordinationV1().Leases("kube-system").Get(context.Background(), "open-local-agent-"+testNode, metav1.GetOptions{})
	}
	var first *coordinationv1.Lease
	h.eventually("Lease created", func() (bool, string) {
		l, err := get()
		if err != nil {
			return false, err.Error()
		}
		first = l
		return true, ""
	})
	require.NotNil(t, first.Spec.HolderIdentity)
	assert.Equal(t, testNode, *first.Spec.HolderIdentity)
	assert.Equal(t, int32(1), *first.Spec.LeaseDurationSeconds, "4 × 30 ms, at least a second")
	require.Len(t, first.OwnerReferences, 1)
	assert.Equal(t, metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: testNode, UID: "uid-1"}, first.OwnerReferences[0], "the Lease goes with its Node")
	h.waitStatus("status", written)
	writes := api.statusWrites.Load()
	h.eventually("Lease renewed", func() (bool, string) {
		l, err := get()
		if err != nil {
			return false, err.Error()
		}
		return l.Spec.RenewTime.After(first.Spec.RenewTime.Time), l.Spec.RenewTime.String()
	})
	h.eventually("renewals counted", func() (bool, string) {
		return counterValue(t, h.reg, "open_local_agent_lease_renewals_total", map[string]string{"result": "ok"}) >= 2, ""
	})
	assert.Equal(t, writes, api.statusWrites.Load(), "renewals do not touch the NodeLocalStorage")

	// Someone deletes the Lease: it is recreated.
	require.NoError(t, h.kube.CoordinationV1().Leases("kube-system").Delete(context.Background(), "open-local-agent-"+testNode, metav1.DeleteOptions{}))
	h.eventually("Lease recreated", func() (bool, string) {
		_, err := get()
		return err == nil, ""
	})
}

// stuckLVM blocks LVM reports, ignoring their context, while stuck is
// set: a process in uninterruptible sleep on a dead disk.
type stuckLVM struct {
	*simhost.Host
	stuck   atomic.Bool
	release chan struct{}
}

func (s *stuckLVM) LVMReport(ctx context.Context) (core.LVMState, error) {
	if s.stuck.Load() {
		<-s.release
	}
	return s.Host.LVMReport(ctx)
}

func TestLeaseStopsWhenDiscoveryHangs(t *testing.T) {
	host := &stuckLVM{Host: defaultHost(t), release: make(chan struct{})}
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{}))
	opts := fastOptions()
	opts.HostTimeout = time.Second
	h := run(t, host, opts, api)
	// Runs before the agent is stopped: the stuck command lets go.
	t.Cleanup(func() { close(host.release) })
	h.waitStatus("status", written)
	h.eventually("renewals", func() (bool, string) {
		return counterValue(t, h.reg, "open_local_agent_lease_renewals_total", map[string]string{"result": "ok"}) > 0, ""
	})
	assert.Zero(t, counterValue(t, h.reg, "open_local_agent_lease_renewals_total", map[string]string{"result": "skipped"}),
		"passes that finish keep the Lease")
	host.stuck.Store(true)
	h.eventually("renewals skipped", func() (bool, string) {
		return counterValue(t, h.reg, "open_local_agent_lease_renewals_total", map[string]string{"result": "skipped"}) > 0, ""
	})
}

func TestMetrics(t *testing.T) {
	host := defaultHost(t)
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()})
	nls.Annotations = map[string]string{core.ReservedAnnotation: `{"open-local-pool-0":"10Gi"}`}
	api := newFakeAPI(nls)
	h := run(t, host, fastOptions(), api)
	h.waitStatus("status", written)
	total := float64(100*core.GiB - 4*core.MiB)
	h.eventually("allocatable metric", func() (bool, string) {
		v := gaugeValue(t, h.reg, "open_local_agent_vg_allocatable_bytes", map[string]string{"vg": pool})
		return v == total-float64(15*core.GiB), ""
	})
	assert.Equal(t, total, gaugeValue(t, h.reg, "open_local_agent_vg_size_bytes", map[string]string{"vg": pool}))
	assert.Equal(t, total-float64(15*core.GiB), gaugeValue(t, h.reg, "open_local_agent_vg_free_bytes", map[string]string{"vg": pool}))
	assert.Equal(t, float64(50*core.GiB), gaugeValue(t, h.reg, "open_local_agent_device_size_bytes", map[string]string{"device": "/dev/sdd", "media": "hdd"}))
	assert.Equal(t, float64(5*core.GiB), gaugeValue(t, h.reg, "open_local_agent_lv_size_bytes", map[string]string{"vg": pool, "lv": "foreign"}))
	assert.Positive(t, histogramCount(t, h.reg, "open_local_agent_discovery_duration_seconds"))

	require.NoError(t, host.RemoveLV(context.Background(), pool, "foreign"))
	h.eventually("removed LV gone from the metrics", func() (bool, string) {
		return !hasSeries(t, h.reg, "open_local_agent_lv_size_bytes", map[string]string{"vg": pool, "lv": "foreign"}), ""
	})
	host.FailNth("ListBlockDevices", 1, nil)
	h.eventually("command error counted", func() (bool, string) {
		return counterValue(t, h.reg, "open_local_agent_command_errors_total", map[string]string{"op": "ListBlockDevices"}) == 1, ""
	})
}

func TestRunRejectsBadOptions(t *testing.T) {
	host := defaultHost(t)
	api := newFakeAPI()
	for name, o := range map[string]Options{
		"no node":        {},
		"bad regexp":     {NodeName: testNode, DeviceRegexp: "("},
		"bad root":       {NodeName: testNode, MountRoot: "mnt"},
		"negative":       {NodeName: testNode, Interval: -time.Second},
		"short lease":    {NodeName: testNode, LeaseInterval: time.Second, LeaseDuration: time.Second},
		"backoff":        {NodeName: testNode, InitBackoff: time.Minute, InitBackoffMax: time.Second},
		"lease interval": {NodeName: testNode, LeaseInterval: -1},
	} {
		err := Run(context.Background(), o, host, nil, api.cs)
		assert.Error(t, err, name)
	}
	assert.ErrorContains(t, Run(context.Background(), fastOptions(), host, nil, api.cs), "client")
	reg := prometheus.NewRegistry()
	require.NoError(t, newMetrics().register(reg))
	opts := fastOptions()
	opts.Registerer = reg
	err := Run(context.Background(), opts, host, kubefake.NewClientset(), api.cs)
	assert.ErrorContains(t, err, "agent metrics", "metrics registered twice")
}

func TestOptionsDefaults(t *testing.T) {
	o := DefaultOptions()
	assert.Equal(t, 5*time.Second, o.Interval, "out-of-band changes show within 10 s")
	assert.Equal(t, 10*time.Second, o.LeaseInterval)
	assert.Equal(t, 40*time.Second, o.LeaseDuration)
	assert.Equal(t, "/mnt/open-local", o.MountRoot)
	assert.Equal(t, "kube-system", o.Namespace)
	assert.Equal(t, 5*time.Second, o.InitBackoff)
	assert.Equal(t, 5*time.Minute, o.InitBackoffMax)
	assert.Equal(t, []string{"local", "csi-", "snap"}, o.ownedPrefixes())
	o.LVNamePrefix = "yoda"
	assert.Equal(t, []string{"yoda", "local", "csi-", "snap"}, o.ownedPrefixes())
}

func TestLeaseName(t *testing.T) {
	assert.Equal(t, "open-local-agent-node-1", LeaseName("node-1"))
	long := strings.Repeat("a", 240) + "." + strings.Repeat("b", 12)
	n := LeaseName(long)
	assert.LessOrEqual(t, len(n), 253)
	assert.True(t, strings.HasPrefix(n, "open-local-agent-aaaa"))
	assert.NotEqual(t, n, LeaseName(strings.Repeat("a", 240)+"."+strings.Repeat("c", 12)), "cut names stay unique")
	dotted := strings.Repeat("a", 225) + "." + strings.Repeat("b", 30)
	assert.NotContains(t, LeaseName(dotted), ".-", "no label ends with a dot")
}

// Prometheus helpers.

func find(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func hasSeries(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) bool {
	return find(t, reg, name, labels) != nil
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	m := find(t, reg, name, labels)
	if m == nil {
		return 0
	}
	return m.GetGauge().GetValue()
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	m := find(t, reg, name, labels)
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	m := find(t, reg, name, nil)
	if m == nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}
