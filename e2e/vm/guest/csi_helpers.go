//go:build vmguest && vmcsi

package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// csiVG is the volume group the CSI tests create on Disks.VG: the first name
// of the driver's default VG include list.
const csiVG = "open-local-pool-0"

// sanityVG is the volume group of csi-sanity's driver, on Disks.Sanity. Its
// name is outside the default VG include list, so the other tests' drivers
// never allocate from it while csi-sanity runs next to them.
const sanityVG = "open-local-sanity"

// csiDriver is the production binary serving all CSI services on the real
// host, and a gRPC client to it.
type csiDriver struct {
	t        testing.TB
	dir      string // root of the test's target and staging directories
	sock     string
	stateDir string
	env      []string
	args     []string
	proc     *Process
	conn     *grpc.ClientConn

	ident csi.IdentityClient
	ctl   csi.ControllerClient
	node  csi.NodeClient
}

// startCSIDriver creates csiVG on the VM's VG disk (wiped again at cleanup)
// and starts `open-local csi --driver-mode all --host real` on it, with the
// default VG include list. Device volumes may take only Disks.Device. Its
// LVM commands do not see Disks.Sanity, where csi-sanity's driver may be
// working at the same time.
func startCSIDriver(t *testing.T) *csiDriver {
	t.Helper()
	disks := RequireDisks(t)
	env := lvmView(t, `"r|^`+disks.Sanity.Path+`$|", "a|.*|"`)
	return startCSIDriverOn(t, disks.VG, csiVG, env, "--device-include", "^"+disks.Device.Path+"$")
}

// startCSIDriverOn creates VG vg on disk (wiped again at cleanup) and starts
// the driver with env and args added. At cleanup it checks that the test left
// no LV in the VG and no mount under its directories.
func startCSIDriverOn(t *testing.T, disk Disk, vg string, env []string, args ...string) *csiDriver {
	t.Helper()
	pv := ClaimDisk(t, disk)
	h, ctx := NewHost(t)
	require.NoError(t, h.CreateVG(ctx, vg, []string{pv}, false))

	// Not t.TempDir: that one is removed before ClaimDisk's cleanup runs, and
	// a leftover mount in it would make the removal fail with a less clear
	// message than the check below.
	dir, err := os.MkdirTemp("/var/lib", "ol-csi-")
	require.NoError(t, err)
	d := &csiDriver{t: t, dir: dir, sock: filepath.Join(dir, "csi.sock"), stateDir: filepath.Join(dir, "state"), env: env}
	d.args = append([]string{"csi", "--driver-mode", "all", "--host", "real",
		"--endpoint", "unix://" + d.sock, "--node-id", "vm-node", "--state-dir", d.stateDir}, args...)
	t.Cleanup(func() {
		// Runs after the driver was stopped (cleanups run last-in first-out).
		requireNoMountsUnder(t, dir)
		requireNoLVs(t, vg)
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
	d.start()
	return d
}

// lvmView is the environment that gives a driver's LVM commands a device
// filter of their own: LVM_SYSTEM_DIR names a copy of the guest's lvm.conf
// with global_filter set to filter (LVM's list syntax, without the brackets).
// Two drivers on one host would each take the other's LVs for their own
// volumes (ListVolumes lists every Open-Local LV the node has); on a real
// node there is one driver, so this exists only for the tests that run side
// by side.
func lvmView(t *testing.T, filter string) []string {
	t.Helper()
	base, err := os.ReadFile("/etc/lvm/lvm.conf")
	require.NoError(t, err)
	conf := strings.Replace(string(base), "devices {", "devices { global_filter = [ "+filter+" ]", 1)
	require.NotEqual(t, string(base), conf, "/etc/lvm/lvm.conf has a devices section to add the filter to")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o644))
	return []string{"LVM_SYSTEM_DIR=" + dir}
}

// start (re)starts the plugin process and connects to it.
func (d *csiDriver) start() {
	d.t.Helper()
	d.proc = StartOpenLocal(d.t, append([]string{"KUBE_NODE_NAME=vm-node"}, d.env...), d.args...)
	d.proc.WaitForSocket(d.t, d.sock, 60*time.Second)
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(d.t, err)
	d.conn = conn
	d.t.Cleanup(func() { _ = conn.Close() })
	d.ident = csi.NewIdentityClient(conn)
	d.ctl = csi.NewControllerClient(conn)
	d.node = csi.NewNodeClient(conn)
}

// kill ends the plugin with SIGKILL, as a crash or an OOM kill would, and
// starts it again.
func (d *csiDriver) restart() {
	d.t.Helper()
	_ = d.conn.Close()
	_ = syscall.Kill(-d.proc.cmd.Process.Pid, syscall.SIGKILL)
	require.Error(d.t, d.proc.Wait(30*time.Second), "the killed plugin ends")
	_ = os.Remove(d.sock) // a killed server leaves its socket file behind
	d.start()
}

func rpcCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	t.Cleanup(cancel)
	return c
}

func mountCap(fs string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// csiVolume is a volume created through the driver, with its paths.
type csiVolume struct {
	id      string
	ctx     map[string]string
	cap     *csi.VolumeCapability
	staging string
	target  string
	gone    bool // torn down by the test itself
}

// create calls CreateVolume and registers a DeleteVolume at cleanup (a no-op
// when the test deleted it already: DeleteVolume is idempotent).
func (d *csiDriver) create(t *testing.T, name string, size int64, cap *csi.VolumeCapability, params map[string]string, src *csi.VolumeContentSource) *csiVolume {
	t.Helper()
	resp, err := d.ctl.CreateVolume(rpcCtx(t), &csi.CreateVolumeRequest{
		Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{cap}, Parameters: params, VolumeContentSource: src,
	})
	require.NoError(t, err, "CreateVolume %s", name)
	v := &csiVolume{
		id: resp.Volume.VolumeId, ctx: resp.Volume.VolumeContext, cap: cap,
		staging: filepath.Join(d.dir, "staging", name),
		target:  filepath.Join(d.dir, "pods", name, "mount"),
	}
	require.NoError(t, os.MkdirAll(v.staging, 0o750))
	require.NoError(t, os.MkdirAll(filepath.Dir(v.target), 0o750))
	t.Cleanup(func() {
		if !v.gone {
			d.teardown(t, v)
		}
	})
	return v
}

// stage and publish run NodeStageVolume and NodePublishVolume; extra volume
// context entries (the pod UID) go to publish.
func (d *csiDriver) stage(t *testing.T, v *csiVolume) {
	t.Helper()
	_, err := d.node.NodeStageVolume(rpcCtx(t), &csi.NodeStageVolumeRequest{
		VolumeId: v.id, StagingTargetPath: v.staging, VolumeCapability: v.cap, VolumeContext: v.ctx,
	})
	require.NoError(t, err, "NodeStageVolume %s", v.id)
}

func (d *csiDriver) publish(t *testing.T, v *csiVolume, readonly bool, extra map[string]string) {
	t.Helper()
	vc := map[string]string{}
	for k, val := range v.ctx {
		vc[k] = val
	}
	for k, val := range extra {
		vc[k] = val
	}
	_, err := d.node.NodePublishVolume(rpcCtx(t), &csi.NodePublishVolumeRequest{
		VolumeId: v.id, StagingTargetPath: v.staging, TargetPath: v.target,
		VolumeCapability: v.cap, VolumeContext: vc, Readonly: readonly,
	})
	require.NoError(t, err, "NodePublishVolume %s", v.id)
}

func (d *csiDriver) unpublish(t testing.TB, v *csiVolume) {
	t.Helper()
	_, err := d.node.NodeUnpublishVolume(rpcCtx(t), &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target})
	require.NoError(t, err, "NodeUnpublishVolume %s", v.id)
}

func (d *csiDriver) unstage(t testing.TB, v *csiVolume) {
	t.Helper()
	_, err := d.node.NodeUnstageVolume(rpcCtx(t), &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging})
	require.NoError(t, err, "NodeUnstageVolume %s", v.id)
}

func (d *csiDriver) delete(t testing.TB, v *csiVolume) {
	t.Helper()
	_, err := d.ctl.DeleteVolume(rpcCtx(t), &csi.DeleteVolumeRequest{VolumeId: v.id})
	require.NoError(t, err, "DeleteVolume %s", v.id)
}

// teardown is the CO's order at pod and PVC deletion; every call is
// idempotent, so it also runs after a test that did it already.
func (d *csiDriver) teardown(t testing.TB, v *csiVolume) {
	t.Helper()
	v.gone = true
	d.unpublish(t, v)
	d.unstage(t, v)
	d.delete(t, v)
}

// requireNoLVs fails when vg still holds an LV.
func requireNoLVs(t testing.TB, vg string) {
	t.Helper()
	out, err := Tool("lvm", "lvs", "--noheadings", "-o", "lv_name", vg)
	if err != nil {
		t.Errorf("listing the LVs of %s: %v", vg, err)
		return
	}
	if lvs := strings.Fields(out); len(lvs) > 0 {
		t.Errorf("LVs left in %s: %v", vg, lvs)
	}
}

// lvNames lists the LVs of csiVG.
func lvNames(t testing.TB) []string {
	t.Helper()
	return strings.Fields(Run(t, "lvm", "lvs", "--noheadings", "-o", "lv_name", csiVG))
}

// requireNoMountsUnder fails when a mount is left at or below dir.
func requireNoMountsUnder(t testing.TB, dir string) {
	t.Helper()
	mounts, err := Mounts()
	if err != nil {
		t.Errorf("reading the mount table: %v", err)
		return
	}
	for _, m := range mounts {
		if m.Target == dir || strings.HasPrefix(m.Target, dir+"/") {
			t.Errorf("mount left behind: %s on %s (%s)", m.Source, m.Target, m.FSType)
		}
	}
}

// fsSize is the size statfs reports for the filesystem at path.
func fsSize(t testing.TB, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(path, &st))
	return int64(st.Blocks) * st.Bsize
}
