package csi

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/simhost"
)

const (
	testNode     = "node-1"
	testStateDir = "/var/lib/open-local/csi"
	testPool     = "open-local-pool-0"
	kubeletDir   = "/var/lib/kubelet"
)

var testClock = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// tb is what the helpers need from *testing.T and *rapid.T.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	FailNow()
	Logf(format string, args ...any)
}

// env is a driver on a simulated node.
type env struct {
	t   tb
	h   *simhost.Host
	d   *Driver
	cfg Config
	ctx context.Context
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.NodeID = testNode
	cfg.StateDir = testStateDir
	cfg.Registry = prometheus.NewRegistry()
	return cfg
}

// newEnv starts a driver on a fresh simulated host (simhost.Default plus a
// MountPoint volume candidate when withMountPoint).
func newEnv(t tb, mod func(*Config)) *env {
	t.Helper()
	h := simhost.MustNew(simhost.Default())
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	e := &env{t: t, h: h, cfg: cfg, ctx: klog.NewContext(context.Background(), klog.Background())}
	e.start()
	return e
}

// start (re)starts the driver on the same host, as after a crash.
func (e *env) start() {
	e.t.Helper()
	cfg := e.cfg
	cfg.Registry = prometheus.NewRegistry()
	d, err := NewDriver(cfg, e.h)
	require.NoError(e.t, err)
	d.now = func() time.Time { return testClock }
	require.NoError(e.t, d.Start(e.ctx))
	e.d = d
}

// addMountPoint formats /dev/sdd and mounts it under the mount root.
func (e *env) addMountPoint(name string) string {
	e.t.Helper()
	p := path.Join(DefaultMountRoot, name)
	require.NoError(e.t, e.h.Mkfs(e.ctx, "/dev/sdd", "ext4", nil))
	require.NoError(e.t, e.h.MakeDir(e.ctx, p))
	require.NoError(e.t, e.h.Mount(e.ctx, "/dev/sdd", p, "ext4", nil))
	require.NoError(e.t, e.d.cap.resync(e.ctx, e.h, e.d.rec))
	return p
}

func mountCap(fs string, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}}}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
}

var rwo = mountCap("", csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

func createReq(name string, bytes int64, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes},
		VolumeCapabilities: []*csi.VolumeCapability{rwo}, Parameters: params}
}

func (e *env) mustCreate(req *csi.CreateVolumeRequest) *csi.Volume {
	e.t.Helper()
	resp, err := e.d.CreateVolume(e.ctx, req)
	require.NoError(e.t, err)
	return resp.Volume
}

func stagePath(id string) string {
	return kubeletDir + "/plugins/kubernetes.io/csi/" + id + "/globalmount"
}
func targetPath(pod, id string) string {
	return kubeletDir + "/pods/" + pod + "/volumes/kubernetes.io~csi/" + id + "/mount"
}

// mkParent creates a target's parent, as kubelet does.
func (e *env) mkParent(p string) {
	e.t.Helper()
	require.NoError(e.t, e.h.MakeDir(e.ctx, path.Dir(p)))
}

func (e *env) stage(v *csi.Volume, c *csi.VolumeCapability) string {
	e.t.Helper()
	sp := stagePath(v.VolumeId)
	require.NoError(e.t, e.h.MakeDir(e.ctx, sp))
	_, err := e.d.NodeStageVolume(e.ctx, &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: sp, VolumeCapability: c, VolumeContext: v.VolumeContext})
	require.NoError(e.t, err)
	return sp
}

func (e *env) publish(v *csi.Volume, c *csi.VolumeCapability, pod string, extra map[string]string) string {
	e.t.Helper()
	tp := targetPath(pod, v.VolumeId)
	e.mkParent(tp)
	vc := map[string]string{}
	for k, val := range v.VolumeContext {
		vc[k] = val
	}
	for k, val := range extra {
		vc[k] = val
	}
	_, err := e.d.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: stagePath(v.VolumeId), TargetPath: tp, VolumeCapability: c, VolumeContext: vc})
	require.NoError(e.t, err)
	return tp
}

// hostState is everything observable about the node, normalised so that two
// runs that reach the same state compare equal (device-mapper minors, which
// depend on how often an LV was activated, are left out).
type hostState struct {
	LVs      []string
	Mounts   []string
	Files    map[string]string
	IOLimits map[string]string
	Sigs     map[string]string
	Claims   []string
}

func (e *env) snapshot() hostState {
	e.t.Helper()
	ctx := e.ctx
	var s hostState
	st, err := e.h.LVMReport(ctx)
	require.NoError(e.t, err)
	devOf := map[string]string{}
	for _, vg := range st.VGs {
		for _, lv := range vg.LVs {
			s.LVs = append(s.LVs, fmt.Sprintf("%s/%s size=%d stripes=%d origin=%s attr=%s tags=%s", vg.Name, lv.Name, lv.SizeBytes, lv.Stripes, lv.Origin, lv.Attr, strings.Join(lv.Tags, ",")))
			if lv.Major >= 0 {
				devOf[fmt.Sprintf("%d:%d", lv.Major, lv.Minor)] = "/dev/" + vg.Name + "/" + lv.Name
			}
		}
	}
	mounts, err := e.h.ListMounts(ctx)
	require.NoError(e.t, err)
	for _, m := range mounts {
		s.Mounts = append(s.Mounts, fmt.Sprintf("%s %s %s %s", m.Source, m.Target, m.FSType, strings.Join(m.Options, ",")))
	}
	s.Files = map[string]string{}
	for _, root := range []string{testStateDir, kubeletDir, DefaultMountRoot} {
		e.walk(root, s.Files)
	}
	s.IOLimits = map[string]string{}
	for _, cg := range e.podCgroups() {
		lim, err := e.h.IOLimits(ctx, cg)
		require.NoError(e.t, err)
		for k, l := range lim {
			dev := devOf[k]
			if dev == "" {
				dev = k
			}
			s.IOLimits[cg+" "+dev] = fmt.Sprintf("%+v", l)
		}
	}
	s.Sigs = map[string]string{}
	devs, err := e.h.ListBlockDevices(ctx)
	require.NoError(e.t, err)
	for _, d := range devs {
		sigs, err := e.h.Signatures(ctx, d.Name)
		require.NoError(e.t, err)
		s.Sigs[d.Name] = strings.Join(sigs, ",")
	}
	for _, ci := range e.d.cap.claims() {
		s.Claims = append(s.Claims, fmt.Sprintf("%s %s vg=%s dev=%s charged=%d state=%d", ci.ID, ci.Kind, ci.VG, ci.Device, ci.Charged, ci.State))
	}
	return s
}

// podCgroups are the cgroups of the pods tests create.
func (e *env) podCgroups() []string {
	var out []string
	for _, uid := range []string{podA, podB} {
		cg, err := e.h.PodCgroupDir(e.ctx, uid)
		if err == nil {
			out = append(out, cg)
		}
	}
	return out
}

const (
	podA = "0a1b2c3d-0000-4000-8000-00000000000a"
	podB = "0a1b2c3d-0000-4000-8000-00000000000b"
)

func (e *env) walk(p string, out map[string]string) {
	ok, err := e.h.PathExists(e.ctx, p)
	require.NoError(e.t, err)
	if !ok {
		return
	}
	names, err := e.h.ListDir(e.ctx, p)
	if err != nil {
		data, rerr := e.h.ReadFile(e.ctx, p)
		if rerr != nil {
			out[p] = "?"
			return
		}
		out[p] = normaliseRecord(p, data)
		return
	}
	out[p+"/"] = ""
	for _, n := range names {
		e.walk(path.Join(p, n), out)
	}
}

// normaliseRecord drops device-mapper minors from publish records.
func normaliseRecord(p string, data []byte) string {
	if strings.Contains(p, "/"+dirPublish+"/") {
		var r PublishRecord
		if json.Unmarshal(data, &r) == nil && r.Throttle != nil {
			r.Throttle.Minor = 0
			b, _ := json.Marshal(r)
			return string(b)
		}
	}
	return string(data)
}

// checkLedgerMatchesHost: the ledger charges exactly the live volumes and
// snapshots, at their real sizes.
func (e *env) checkLedgerMatchesHost() {
	e.t.Helper()
	st, err := e.h.LVMReport(e.ctx)
	require.NoError(e.t, err)
	want := map[string]string{}
	for _, vg := range st.VGs {
		for _, lv := range vg.LVs {
			if isOwned(lv) {
				want[lv.Name] = fmt.Sprintf("LVM %s %d", vg.Name, lv.SizeBytes)
			}
		}
	}
	recs, err := e.d.rec.volumes(e.ctx)
	require.NoError(e.t, err)
	for _, r := range recs {
		res := r.Device
		kind := core.KindDevice
		if r.Type == TypeMountPoint {
			res, kind = r.MountPath, core.KindMountPoint
		}
		want[r.ID] = fmt.Sprintf("%s %s %d", kind, res, r.SizeBytes)
	}
	got := map[string]string{}
	for _, ci := range e.d.cap.claims() {
		res := ci.VG
		if ci.Kind != core.KindLVM {
			res = ci.Device
		}
		got[string(ci.ID)] = fmt.Sprintf("%s %s %d", ci.Kind, res, ci.Charged)
		require.Equal(e.t, core.Committed, ci.State, "claim %s is still only reserved", ci.ID)
	}
	require.Equal(e.t, want, got, "ledger claims vs host")
	require.Empty(e.t, e.d.cap.l.Overcommits())
}

// hostexecLV is a foreign LV: no owner tag, a name without open-local's prefixes.
func hostexecLV(vg, name string) hostexec.LVSpec {
	return hostexec.LVSpec{VG: vg, Name: name, SizeBytes: core.GiB}
}
