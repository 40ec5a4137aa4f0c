package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi"
	"github.com/open-local/open-local/csi/lvtag"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
)

// orphanNow is the collector's clock in these tests.
var orphanNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type orphanEnv struct {
	t      *testing.T
	host   *simhost.Host
	kube   *kubefake.Clientset
	m      *metrics
	c      *orphanCollector
	events []string // "<type> <reason> <message>"
}

func newOrphanEnv(t *testing.T, mode OrphanMode, objs ...runtime.Object) *orphanEnv {
	t.Helper()
	e := &orphanEnv{t: t, host: simhost.MustNew(simhost.Default()), kube: kubefake.NewClientset(objs...), m: newMetrics()}
	opts := DefaultOptions()
	opts.OrphanGC = mode
	e.c = newOrphanCollector(opts, e.host, e.kube, e.m, func(typ, reason, msg string) {
		e.events = append(e.events, typ+" "+reason+" "+msg)
	})
	e.c.now = func() time.Time { return orphanNow }
	return e
}

// prov is what external-provisioner would have named for volume pv.
func prov(pv string) lvtag.Provenance {
	return lvtag.Provenance{PVName: pv, PVCNamespace: "team-a", PVCName: "claim-of-" + pv}
}

// volume creates an LV as the CSI driver does, created age ago.
func (e *orphanEnv) volume(name string, age time.Duration, p lvtag.Provenance) {
	e.t.Helper()
	tags := append([]string{lvtag.Owner, lvtag.KindVolume, lvtag.CreatedTag(orphanNow.Add(-age))}, p.Tags()...)
	e.lv(name, tags...)
}

func (e *orphanEnv) lv(name string, tags ...string) {
	e.t.Helper()
	require.NoError(e.t, e.host.CreateLV(context.Background(), hostexec.LVSpec{VG: pool, Name: name, SizeBytes: core.GiB, Tags: tags}))
}

func (e *orphanEnv) pass() orphanPass {
	e.t.Helper()
	res, err := e.c.pass(context.Background())
	require.NoError(e.t, err)
	return res
}

func (e *orphanEnv) lvs() []string {
	e.t.Helper()
	st, err := e.host.LVMReport(context.Background())
	require.NoError(e.t, err)
	var out []string
	for _, vg := range st.VGs {
		for _, lv := range vg.LVs {
			out = append(out, lv.Name)
		}
	}
	return out
}

func (e *orphanEnv) reasons() []string {
	var out []string
	for _, ev := range e.events {
		f := strings.Fields(ev)
		out = append(out, f[0]+" "+f[1])
	}
	return out
}

func pv(name, handle string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
			CSI: &corev1.CSIPersistentVolumeSource{Driver: csi.DefaultDriverName, VolumeHandle: handle}}}}
}

func pvc(p lvtag.Provenance, boundTo string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: p.PVCNamespace, Name: p.PVCName},
		Spec: corev1.PersistentVolumeClaimSpec{VolumeName: boundTo}}
}

const (
	volOld   = "local-aaaa0000-0000-4000-8000-000000000001"
	volOther = "local-bbbb0000-0000-4000-8000-000000000002"
)

func TestOrphanRules(t *testing.T) {
	const hour = time.Hour
	cases := []struct {
		name  string
		objs  []runtime.Object
		setup func(e *orphanEnv)
		// orphan: the volume volOld must be found and removed; otherwise kept.
		orphan bool
	}{
		{name: "orphan after grace: no PV, no claim", setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }, orphan: true},
		{name: "claim bound to another volume", objs: []runtime.Object{pvc(prov(volOld), "local-elsewhere")},
			setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }, orphan: true},
		{name: "PV of another volume's handle does not hold it", objs: []runtime.Object{pv("pv-x", volOther)},
			setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }, orphan: true},

		{name: "younger than grace", setup: func(e *orphanEnv) { e.volume(volOld, 59*time.Minute, prov(volOld)) }},
		{name: "created in the future (clock skew)", setup: func(e *orphanEnv) { e.volume(volOld, -hour, prov(volOld)) }},
		{name: "PV of the recorded name exists", objs: []runtime.Object{pv(volOld, volOld)},
			setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }},
		{name: "PV of the recorded name exists, another driver", objs: []runtime.Object{&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: volOld}}},
			setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }},
		{name: "static PV has the LV as its handle", objs: []runtime.Object{pv("hand-made", volOld)},
			setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }},
		{name: "claim present and unbound (provisioning in progress)", objs: []runtime.Object{pvc(prov(volOld), "")},
			setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }},
		{name: "claim still bound to the recorded PV", objs: []runtime.Object{pvc(prov(volOld), volOld)},
			setup: func(e *orphanEnv) { e.volume(volOld, 2*hour, prov(volOld)) }},
		{name: "untagged LV (open-local v0.8 or by hand)", setup: func(e *orphanEnv) { e.lv(volOld) }},
		{name: "owner and kind but no provenance (no --extra-create-metadata)", setup: func(e *orphanEnv) {
			e.lv(volOld, lvtag.Owner, lvtag.KindVolume, lvtag.CreatedTag(orphanNow.Add(-2*hour)))
		}},
		{name: "provenance without owner", setup: func(e *orphanEnv) {
			e.lv(volOld, append([]string{lvtag.KindVolume, lvtag.CreatedTag(orphanNow.Add(-2 * hour))}, prov(volOld).Tags()...)...)
		}},
		{name: "no creation time", setup: func(e *orphanEnv) {
			e.lv(volOld, append([]string{lvtag.Owner, lvtag.KindVolume}, prov(volOld).Tags()...)...)
		}},
		{name: "malformed provenance", setup: func(e *orphanEnv) {
			e.lv(volOld, lvtag.Owner, lvtag.KindVolume, lvtag.CreatedTag(orphanNow.Add(-2*hour)), "ol.pv="+volOld, "ol.pvc=no-namespace")
		}},
		{name: "inline volume", setup: func(e *orphanEnv) {
			e.lv(volOld, append([]string{lvtag.Owner, "ol.kind=ephemeral", lvtag.CreatedTag(orphanNow.Add(-2 * hour))}, prov(volOld).Tags()...)...)
		}},
		{name: "mounted", setup: func(e *orphanEnv) {
			e.volume(volOld, 2*hour, prov(volOld))
			ctx := context.Background()
			dev := e.host.LVDevicePath(pool, volOld)
			require.NoError(t, e.host.Mkfs(ctx, dev, "ext4", nil))
			require.NoError(t, e.host.MakeDir(ctx, "/var/lib/kubelet/x"))
			require.NoError(t, e.host.Mount(ctx, dev, "/var/lib/kubelet/x", "ext4", nil))
		}},
		{name: "origin of a snapshot", setup: func(e *orphanEnv) {
			e.volume(volOld, 2*hour, prov(volOld))
			require.NoError(t, e.host.CreateSnapshot(context.Background(), hostexec.SnapshotSpec{VG: pool, Name: "snap-1", Origin: volOld, SizeBytes: core.GiB,
				Tags: []string{lvtag.Owner, "ol.kind=snapshot", lvtag.CreatedTag(orphanNow.Add(-2 * hour))}}))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newOrphanEnv(t, OrphanGCDelete, tc.objs...)
			tc.setup(e)
			res := e.pass()
			if tc.orphan {
				require.Len(t, res.removed, 1)
				assert.Equal(t, volOld, res.removed[0].lv)
				assert.NotContains(t, e.lvs(), volOld)
				assert.Equal(t, 1.0, testutil.ToFloat64(e.m.orphansRemoved))
				assert.Equal(t, []string{"Normal " + EventOrphanVolumeRemoved}, e.reasons())
				assert.Contains(t, e.events[0], "claim team-a/claim-of-"+volOld)
			} else {
				assert.Empty(t, res.removed)
				assert.Contains(t, e.lvs(), volOld)
				assert.Zero(t, testutil.ToFloat64(e.m.orphansRemoved))
				assert.Empty(t, e.events)
			}
			assert.Zero(t, testutil.ToFloat64(e.m.orphanVolumes), "nothing is left over")
			assert.Zero(t, testutil.CollectAndCount(e.m.orphanErrors))
		})
	}
}

// TestOrphanReportMode: report mode removes nothing, counts the orphans and
// gives each one event however many passes see it.
func TestOrphanReportMode(t *testing.T) {
	e := newOrphanEnv(t, OrphanGCReport, pv(volOther, volOther))
	e.volume(volOld, 3*time.Hour, prov(volOld))
	e.volume(volOther, 3*time.Hour, prov(volOther))
	e.volume("local-cccc", 3*time.Hour, prov("local-cccc"))
	for range 3 {
		res := e.pass()
		assert.Len(t, res.orphans, 2)
		assert.Empty(t, res.removed)
	}
	assert.Subset(t, e.lvs(), []string{volOld, volOther, "local-cccc"})
	assert.Equal(t, 2.0, testutil.ToFloat64(e.m.orphanVolumes))
	assert.Zero(t, testutil.ToFloat64(e.m.orphansRemoved))
	assert.Equal(t, []string{"Warning " + EventOrphanVolume, "Warning " + EventOrphanVolume}, e.reasons())
	assert.Contains(t, strings.Join(e.events, "\n"), "LV "+pool+"/"+volOld+" (1Gi, created ")

	// A PersistentVolume appears for one of them: it is no longer counted,
	// and becomes an orphan again (with a new event) once it goes.
	_, err := e.kube.CoreV1().PersistentVolumes().Create(context.Background(), pv(volOld, volOld), metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Len(t, e.pass().orphans, 1)
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.orphanVolumes))
	require.NoError(t, e.kube.CoreV1().PersistentVolumes().Delete(context.Background(), volOld, metav1.DeleteOptions{}))
	assert.Len(t, e.pass().orphans, 2)
	assert.Len(t, e.events, 3)
}

// TestOrphanRemoveFailureRetried: a failed lvremove is counted, keeps the
// volume in the gauge, gives one warning, and is retried at the next pass.
func TestOrphanRemoveFailureRetried(t *testing.T) {
	e := newOrphanEnv(t, OrphanGCDelete)
	e.volume(volOld, 2*time.Hour, prov(volOld))
	e.host.FailNth("RemoveLV", 1, hostexec.ErrInUse)
	res := e.pass()
	assert.Len(t, res.orphans, 1)
	assert.Empty(t, res.removed)
	assert.Contains(t, e.lvs(), volOld)
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.orphanErrors.WithLabelValues(orphanOpRemoveLV)))
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.commandErrors.WithLabelValues(orphanOpRemoveLV)))
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.orphanVolumes))
	assert.Equal(t, []string{"Warning " + EventOrphanVolumeRemoveFailed}, e.reasons())

	res = e.pass()
	require.Len(t, res.removed, 1)
	assert.NotContains(t, e.lvs(), volOld)
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.orphansRemoved))
	assert.Zero(t, testutil.ToFloat64(e.m.orphanVolumes))
	assert.Equal(t, []string{"Warning " + EventOrphanVolumeRemoveFailed, "Normal " + EventOrphanVolumeRemoved}, e.reasons())
}

// TestOrphanRemovedMeanwhile: an LV gone between the report and lvremove
// (DeleteVolume got there first) is neither removed nor an error.
func TestOrphanRemovedMeanwhile(t *testing.T) {
	e := newOrphanEnv(t, OrphanGCDelete)
	e.volume(volOld, 2*time.Hour, prov(volOld))
	e.host.FailNth("RemoveLV", 1, hostexec.ErrNotFound)
	res := e.pass()
	assert.Empty(t, res.orphans)
	assert.Empty(t, res.removed)
	assert.Zero(t, testutil.CollectAndCount(e.m.orphanErrors))
	assert.Empty(t, e.events)
}

// TestOrphanAPIErrorsKeepEverything: any failed read ends the pass with
// nothing removed, counted by operation; the gauge keeps its last figure.
func TestOrphanAPIErrorsKeepEverything(t *testing.T) {
	for _, tc := range []struct{ verb, resource, op string }{
		{"get", "persistentvolumes", orphanOpGetPV},
		{"get", "persistentvolumeclaims", orphanOpGetPVC},
		{"list", "persistentvolumes", orphanOpListPVs},
	} {
		t.Run(tc.op, func(t *testing.T) {
			e := newOrphanEnv(t, OrphanGCDelete)
			e.m.orphanVolumes.Set(7)
			e.volume(volOld, 2*time.Hour, prov(volOld))
			e.kube.PrependReactor(tc.verb, tc.resource, func(clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewServiceUnavailable("etcd is away")
			})
			_, err := e.c.pass(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.op)
			assert.Contains(t, e.lvs(), volOld)
			assert.Equal(t, 1.0, testutil.ToFloat64(e.m.orphanErrors.WithLabelValues(tc.op)))
			assert.Equal(t, 7.0, testutil.ToFloat64(e.m.orphanVolumes))
			assert.Empty(t, e.events)
		})
	}
	t.Run("LVM report", func(t *testing.T) {
		e := newOrphanEnv(t, OrphanGCDelete)
		e.volume(volOld, 2*time.Hour, prov(volOld))
		e.host.FailNth("LVMReport", 1, nil)
		_, err := e.c.pass(context.Background())
		require.ErrorIs(t, err, simhost.ErrInjected)
		assert.Equal(t, 1.0, testutil.ToFloat64(e.m.orphanErrors.WithLabelValues(orphanOpLVMReport)))
		assert.Contains(t, e.lvs(), volOld)
	})
}

// TestOrphanNoCandidatesNoAPICalls: a node whose volumes are all young, in
// use or untagged costs the API server nothing.
func TestOrphanNoCandidatesNoAPICalls(t *testing.T) {
	e := newOrphanEnv(t, OrphanGCDelete)
	e.volume(volOld, time.Minute, prov(volOld))
	e.lv("local-v08")
	e.pass()
	assert.Empty(t, e.kube.Actions())
	assert.NotContains(t, strings.Join(e.host.Calls(), "\n"), "ListMounts", "no candidate, no mount table read")
}

// TestOrphanListsPVsOnlyForSuspects: the full PersistentVolume list is read
// once per pass, and only when a volume survived the by-name checks.
func TestOrphanListsPVsOnlyForSuspects(t *testing.T) {
	e := newOrphanEnv(t, OrphanGCReport, pv(volOther, volOther))
	e.volume(volOther, 2*time.Hour, prov(volOther))
	e.pass()
	for _, a := range e.kube.Actions() {
		assert.NotEqual(t, "list", a.GetVerb(), "a volume whose PV exists needs no list")
	}
	e.volume(volOld, 2*time.Hour, prov(volOld))
	e.volume("local-cccc", 2*time.Hour, prov("local-cccc"))
	e.kube.ClearActions()
	e.pass()
	lists := 0
	for _, a := range e.kube.Actions() {
		if a.GetVerb() == "list" {
			lists++
		}
	}
	assert.Equal(t, 1, lists)
}

func TestMapperPath(t *testing.T) {
	assert.Equal(t, "/dev/mapper/open--local--pool--0-local--1", mapperPath("open-local-pool-0", "local-1"))
}

func TestOrphanMountedByMapperName(t *testing.T) {
	e := newOrphanEnv(t, OrphanGCDelete)
	cands := []orphanVolume{{vg: pool, lv: "a"}, {vg: pool, lv: "b"}, {vg: pool, lv: "c"}}
	left := e.c.unmounted(cands, []hostexec.MountInfo{{Source: mapperPath(pool, "a")}, {Source: e.host.LVDevicePath(pool, "b")}})
	require.Len(t, left, 1)
	assert.Equal(t, "c", left[0].lv)
}

func TestParseOrphanMode(t *testing.T) {
	for _, m := range OrphanModes {
		got, err := ParseOrphanMode(string(m))
		require.NoError(t, err)
		assert.Equal(t, m, got)
	}
	got, err := ParseOrphanMode("")
	require.NoError(t, err)
	assert.Equal(t, OrphanGCReport, got)
	_, err = ParseOrphanMode("Delete")
	assert.ErrorContains(t, err, "accepted: off, report, delete")
}

func TestOrphanOptions(t *testing.T) {
	o := Options{NodeName: "n"}
	_, err := o.complete()
	require.NoError(t, err)
	assert.Equal(t, OrphanGCReport, o.OrphanGC)
	assert.Equal(t, time.Hour, o.OrphanGrace)
	assert.Equal(t, 5*time.Minute, o.OrphanInterval)
	for _, bad := range []Options{
		{NodeName: "n", OrphanGC: "sometimes"},
		{NodeName: "n", OrphanGrace: time.Minute},
		{NodeName: "n", OrphanInterval: -time.Second},
	} {
		_, err := bad.complete()
		assert.Error(t, err, "%+v", bad)
	}
}

// TestAgentRemovesOrphans runs the whole agent in delete mode: the orphan is
// removed with an event on the NodeLocalStorage, the volume in use is kept,
// and the gauge and counter show it.
func TestAgentRemovesOrphans(t *testing.T) {
	host := defaultHost(t)
	old := lvtag.CreatedTag(time.Now().Add(-2 * time.Hour))
	for _, name := range []string{volOld, volOther} {
		require.NoError(t, host.CreateLV(context.Background(), hostexec.LVSpec{VG: pool, Name: name, SizeBytes: core.GiB,
			Tags: append([]string{lvtag.Owner, lvtag.KindVolume, old}, prov(name).Tags()...)}))
	}
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()}))
	opts := fastOptions()
	opts.OrphanGC = OrphanGCDelete
	opts.OrphanInterval = 20 * time.Millisecond
	h := run(t, host, opts, api, pv(volOther, volOther))
	ev := h.waitEvent(EventOrphanVolumeRemoved, corev1.EventTypeNormal, volOld)
	assert.Contains(t, ev.Message, "PersistentVolume "+volOld)
	h.eventually("the orphan gone, the other volume kept", func() (bool, string) {
		st, err := host.LVMReport(context.Background())
		require.NoError(t, err)
		vg, _ := st.FindVG(pool)
		_, orphan := vg.FindLV(volOld)
		_, kept := vg.FindLV(volOther)
		return !orphan && kept, fmt.Sprintf("orphan present %v, other present %v", orphan, kept)
	})
	h.eventually("metrics", func() (bool, string) {
		removed := gatherValue(t, h, "open_local_agent_orphan_volumes_removed_total")
		return removed == 1, fmt.Sprintf("removed %v", removed)
	})
	assert.Zero(t, gatherValue(t, h, "open_local_agent_orphan_volumes"))
}

// TestAgentOrphanGCOff: with --orphan-gc=off no pass reads the API server.
func TestAgentOrphanGCOff(t *testing.T) {
	host := defaultHost(t)
	require.NoError(t, host.CreateLV(context.Background(), hostexec.LVSpec{VG: pool, Name: volOld, SizeBytes: core.GiB,
		Tags: append([]string{lvtag.Owner, lvtag.KindVolume, lvtag.CreatedTag(time.Now().Add(-2 * time.Hour))}, prov(volOld).Tags()...)}))
	api := newFakeAPI(newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()}))
	opts := fastOptions()
	opts.OrphanGC = OrphanGCOff
	opts.OrphanInterval = 10 * time.Millisecond
	h := run(t, host, opts, api)
	h.waitStatus("status written", written)
	time.Sleep(100 * time.Millisecond) // several orphan intervals
	for _, a := range h.kube.Actions() {
		assert.NotContains(t, a.GetResource().Resource, "persistentvolume")
	}
	assert.Empty(t, h.events(EventOrphanVolumeRemoved))
}

// gatherValue reads one unlabelled sample from the agent's registry.
func gatherValue(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestNewMetricsRegistry: the exported registry describes every metric the
// agent registers, vectors without samples included.
func TestNewMetricsRegistry(t *testing.T) {
	ch := make(chan *prometheus.Desc, 64)
	NewMetricsRegistry().Describe(ch)
	close(ch)
	var names []string
	for d := range ch {
		names = append(names, d.String())
	}
	all := strings.Join(names, "\n")
	for _, want := range []string{"open_local_agent_orphan_volumes", "open_local_agent_orphan_volumes_removed_total",
		"open_local_agent_orphan_gc_errors_total", "open_local_agent_command_errors_total", "open_local_agent_lv_size_bytes"} {
		assert.Contains(t, all, `fqName: "`+want+`"`)
	}
	assert.Len(t, names, 12)
}
