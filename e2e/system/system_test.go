package system

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/e2e/cluster"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
)

// Names shared by the scenarios.
const (
	driverName          = "local.csi.aliyun.com"
	storageClass        = "open-local-lvm"
	snapshotClass       = "open-local-lvm"
	vgName              = "open-local-pool-0"
	systemNS            = "kube-system"
	topologyKey         = "kubernetes.io/hostname"
	pluginSchedulerName = "open-local-scheduler"
	// vgDevice backs every simulated node's VG (created by the agent from
	// the NodeLocalStorageInitConfig).
	vgDevice = "/dev/sdb"
	vgSize   = 100 << 30
)

var (
	snapshotGVR        = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	snapshotContentGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
)

// simConfig is every simulated node's storage: one disk for the VG the
// agent creates, one blank disk.
const simConfig = `devices:
- {name: /dev/sdb, size: 100Gi, media: ssd}
- {name: /dev/sdc, size: 50Gi, media: hdd}
`

// mode is how pods are scheduled.
type mode int

const (
	// modeExtender: kube-scheduler with the Open-Local extender.
	modeExtender mode = iota
	// modePlugin: open-local-scheduler (kube-scheduler with the framework
	// plugin); pods name it in spec.schedulerName.
	modePlugin
)

func (m mode) String() string {
	if m == modePlugin {
		return "plugin"
	}
	return "extender"
}

// component is a process the system started and may restart.
type component struct {
	name string
	bin  string
	args []string
	proc *cluster.Process
}

// simNode is one simulated node: its processes and a CSI connection to its
// driver (the test plays kubelet on it).
type simNode struct {
	name    string
	sock    string
	metrics string
	procs   []*component
	conn    *grpc.ClientConn
	ctrl    csipb.ControllerClient
	node    csipb.NodeClient
	gone    bool
}

// system is one complete installation on its own control plane.
type system struct {
	mode          mode
	c             *cluster.Cluster
	dir           string // artefacts: configs, kubeconfigs, sockets
	bin           string // open-local
	kube          kubernetes.Interface
	ol            versioned.Interface
	dyn           dynamic.Interface
	extenderURL   string
	schedulerName string
	extender      *component
	controller    *component
	scheduler     *component // open-local-scheduler (plugin mode)
	nodes         []*simNode
	agentKC       string
	extenderKC    string
	controllerKC  string
	simnodeFlags  map[string]bool
}

// startSystem brings up the control plane and every component for mode
// with n simulated nodes.
func startSystem(t *testing.T, m mode, n int) *system {
	t.Helper()
	requireBinaries(t, sidecars...)
	var pluginBin string
	if m == modePlugin {
		pluginBin = pluginScheduler(t)
	}
	bin := openLocalBinary(t)
	begin := time.Now()
	ctx := context.Background()
	s := &system{mode: m, bin: bin, dir: filepath.Join(t.TempDir(), "artefacts"), schedulerName: corev1.DefaultSchedulerName}
	require.NoError(t, os.MkdirAll(s.dir, 0o700))
	s.simnodeFlags = helpFlags(t, bin, "simnode")

	extPort := freePort(t)
	s.extenderURL = fmt.Sprintf("http://127.0.0.1:%d", extPort)
	opts := cluster.Options{ControllerManager: true}
	if m == modeExtender {
		opts.Scheduler = true
		opts.SchedulerConfig = s.writeExtenderSchedulerConfig(t)
	}
	c, err := cluster.Start(ctx, t, opts)
	require.NoError(t, err)
	s.c = c
	s.kube = c.Client()
	s.ol = versioned.NewForConfigOrDie(c.AdminConfig())
	s.dyn = dynamic.NewForConfigOrDie(c.AdminConfig())
	t.Cleanup(func() { s.keepArtefacts(t) })

	root := repoRoot()
	snapCRDs := snapshotCRDs(t)
	require.NoError(t, c.ApplyYAML(ctx, append([]string{
		filepath.Join(root, "deploy/crds/csi.aliyun.com_nodelocalstorages.yaml"),
		filepath.Join(root, "deploy/crds/csi.aliyun.com_nodelocalstorageinitconfigs.yaml"),
	}, snapCRDs...)...))
	require.NoError(t, c.ApplyYAML(ctx,
		filepath.Join(root, "deploy/rbac/agent.yaml"),
		filepath.Join(root, "deploy/rbac/controller.yaml"),
		filepath.Join(root, "deploy/scheduler/rbac.yaml")))
	s.agentKC = s.saKubeconfig(t, "open-local-agent")
	s.controllerKC = s.saKubeconfig(t, "open-local-controller")
	s.extenderKC = s.saKubeconfig(t, "open-local-scheduler-extender")
	s.applyStorageObjects(t)

	s.controller = s.start(t, "open-local-controller", bin, "controller",
		"--kubeconfig="+s.controllerKC, "--leader-elect-namespace="+systemNS,
		"--metrics-address=127.0.0.1:"+strconv.Itoa(freePort(t)), "-v=2")
	s.extender = s.start(t, "open-local-extender", bin, "scheduler",
		"--kubeconfig="+s.extenderKC, fmt.Sprintf("--listen=127.0.0.1:%d", extPort), "--strategy=binpack", "-v=2")
	s.start(t, "snapshot-controller", c.Binary(cluster.BinSnapshotController),
		"--kubeconfig="+c.Kubeconfig(), "--enable-distributed-snapshotting", "--leader-election=false", "-v=3")
	if m == modePlugin {
		s.schedulerName = pluginSchedulerName
		s.scheduler = s.startPluginScheduler(t, pluginBin)
	}
	for i := range n {
		s.addNode(t, fmt.Sprintf("node-%d", i))
	}
	s.waitStorage(t)
	for _, node := range s.nodes {
		s.registerDriver(t, node)
	}
	// One resizer for the cluster (see docs/design/e2e.md): against the
	// first node's socket, whose driver advertises node expansion only.
	s.start(t, "csi-resizer", c.Binary(cluster.BinCSIResizer),
		"--csi-address="+s.nodes[0].sock, "--kubeconfig="+c.Kubeconfig(),
		"--leader-election=false", "--timeout=30s", "-v=3")
	s.waitReady(t)
	t.Logf("%s-mode system with %d simulated nodes up in %v", m, n, time.Since(begin).Round(time.Millisecond))
	return s
}

// helpFlags lists the long flags a subcommand's help shows, so scenarios
// can use a flag only once the binary has it.
func helpFlags(t *testing.T, bin, sub string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, sub, "--help").CombinedOutput()
	require.NoError(t, err, "%s %s --help: %s", bin, sub, out)
	flags := map[string]bool{}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "--") {
			name, _, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			flags[strings.TrimRight(name, ",")] = true
		}
	}
	return flags
}

// writeExtenderSchedulerConfig is deploy/scheduler/kube-scheduler-config-extender.yaml
// pointed at this system's extender, without leader election.
func (s *system) writeExtenderSchedulerConfig(t *testing.T) string {
	t.Helper()
	cfg := readYAMLMap(t, filepath.Join(repoRoot(), "deploy/scheduler/kube-scheduler-config-extender.yaml"))
	exts, _ := cfg["extenders"].([]any)
	require.Len(t, exts, 1, "the deployed scheduler configuration has one extender")
	ext := exts[0].(map[string]any)
	ext["urlPrefix"] = s.extenderURL + "/scheduler"
	cfg["leaderElection"] = map[string]any{"leaderElect": false}
	delete(cfg, "clientConnection") // the harness sets its own
	path := filepath.Join(s.dir, "kube-scheduler-config.yaml")
	writeYAML(t, path, cfg)
	return path
}

func readYAMLMap(t testing.TB, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(data, &m), path)
	return m
}

func writeYAML(t testing.TB, path string, v any) {
	t.Helper()
	data, err := yaml.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
}

// snapshotCRDs are the VolumeSnapshot CRDs of the external-snapshotter
// client module that tools/k8s pins (the snapshot-controller's version).
func snapshotCRDs(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/kubernetes-csi/external-snapshotter/client/v8")
	cmd.Dir = filepath.Join(repoRoot(), "tools", "k8s")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	require.NoError(t, err, "go mod download external-snapshotter/client in tools/k8s")
	var mod struct{ Dir, Error string }
	require.NoError(t, json.Unmarshal(out, &mod))
	require.Empty(t, mod.Error)
	var files []string
	for _, kind := range []string{"volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshots"} {
		files = append(files, filepath.Join(mod.Dir, "config", "crd", "snapshot.storage.k8s.io_"+kind+".yaml"))
	}
	return files
}

func (s *system) saKubeconfig(t *testing.T, name string) string {
	t.Helper()
	kc, err := s.c.ServiceAccountKubeconfig(context.Background(), systemNS, name)
	require.NoError(t, err)
	return kc
}

// applyStorageObjects creates what an installation ships besides the
// components: CSIDriver, StorageClass, VolumeSnapshotClass and the
// NodeLocalStorageInitConfig.
func (s *system) applyStorageObjects(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	yes, no := true, false
	_, err := s.kube.StorageV1().CSIDrivers().Create(ctx, &storagev1.CSIDriver{
		ObjectMeta: metav1.ObjectMeta{Name: driverName},
		Spec: storagev1.CSIDriverSpec{
			AttachRequired: &no,
			PodInfoOnMount: &yes,
			// The extender is the capacity authority here: with capacity
			// tracking on, VolumeBinding would reject too-large claims
			// before the extender is asked (see docs/design/e2e.md).
			StorageCapacity:      &no,
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent, storagev1.VolumeLifecycleEphemeral},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	_, err = s.kube.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: storageClass},
		Provisioner:          driverName,
		Parameters:           map[string]string{"volumeType": "LVM", "csi.storage.k8s.io/fstype": "ext4"},
		ReclaimPolicy:        &del,
		VolumeBindingMode:    &wffc,
		AllowVolumeExpansion: &yes,
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, s.c.ApplyManifest(ctx, []byte(`apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: `+snapshotClass+`
driver: `+driverName+`
deletionPolicy: Delete
parameters:
  csi.aliyun.com/snapshot-initial-size: 2Gi
`)))
	_, err = s.ol.CsiV1alpha1().NodeLocalStorageInitConfigs().Create(ctx, &v1alpha1.NodeLocalStorageInitConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "open-local"},
		Spec: v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: v1alpha1.StorageConfig{
			ListConfig:         v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+"}}},
			ResourceToBeInited: v1alpha1.ResourceToBeInited{VGs: []v1alpha1.VGToBeInited{{Name: vgName, Devices: []string{vgDevice}}}},
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// start runs a component alongside the control plane.
func (s *system) start(t testing.TB, name, bin string, args ...string) *component {
	t.Helper()
	c := &component{name: name, bin: bin, args: args}
	s.launch(t, c)
	return c
}

func (s *system) launch(t testing.TB, c *component) {
	t.Helper()
	p, err := s.c.StartProcess(c.name, c.bin, c.args...)
	require.NoError(t, err)
	c.proc = p
}

// restart stops a component (SIGTERM, then SIGKILL after a grace) and
// starts it again with the same arguments; its log continues.
func (s *system) restart(t testing.TB, c *component) {
	t.Helper()
	c.proc.Stop()
	s.launch(t, c)
}

// withEnv runs bin through env(1) with extra environment variables: the CSI
// sidecars read NODE_NAME and NAMESPACE from the environment only.
func withEnv(t testing.TB, bin string, env []string, args ...string) (string, []string) {
	t.Helper()
	envBin, err := exec.LookPath("env")
	require.NoError(t, err)
	return envBin, append(append(append([]string{}, env...), bin), args...)
}

// addNode registers a Node and starts its simnode (kubelet's registration
// of the driver comes later, in registerDriver).
func (s *system) addNode(t *testing.T, name string) *simNode {
	t.Helper()
	ctx := context.Background()
	_, err := s.c.RegisterNode(ctx, cluster.FakeNode{Name: name})
	require.NoError(t, err)
	dir := filepath.Join(s.dir, name)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	cfg := filepath.Join(dir, "sim.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(simConfig), 0o600))
	n := &simNode{name: name, sock: filepath.Join(dir, "csi.sock"), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	args := []string{
		"simnode", "--nodename=" + name, "--kubeconfig=" + s.agentKC, "--namespace=" + systemNS,
		"--sim-config=" + cfg, "--csi-endpoint=unix://" + n.sock, "--metrics-address=" + n.metrics,
		"--interval=1s", "--lease-interval=2s", "--init-backoff=1s",
		// Node expansion only: the central resizer then never needs the
		// volume's own node (docs/design/provisioning.md §7).
		"--controller-expansion=false",
		"--state-dir=/var/lib/open-local/csi", "-v=2",
	}
	args = append(args, s.orphanGCArgs()...)
	n.procs = append(n.procs, s.start(t, "simnode-"+name, s.bin, args...))
	conn, err := grpc.NewClient("unix://"+n.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	n.conn, n.ctrl, n.node = conn, csipb.NewControllerClient(conn), csipb.NewNodeClient(conn)
	ident := csipb.NewIdentityClient(conn)
	waitFor(t, "the CSI driver of "+name+" serving", 60*time.Second, func(ctx context.Context) (bool, error) {
		r, err := ident.Probe(ctx, &csipb.ProbeRequest{})
		return err == nil && r.GetReady().GetValue(), nil
	})
	s.nodes = append(s.nodes, n)
	return n
}

// registerDriver does kubelet's plugin registration — a CSINode from
// NodeGetInfo, owned by the Node — and starts the node's provisioner and
// snapshotter. It runs once the node's VG exists: the driver derives its
// volume limit from its capacity, and kubelet reads it only at registration
// (docs/design/e2e.md).
func (s *system) registerDriver(t *testing.T, n *simNode) {
	t.Helper()
	ctx := context.Background()
	name := n.name
	info, err := n.node.NodeGetInfo(ctx, &csipb.NodeGetInfoRequest{})
	require.NoError(t, err)
	var keys []string
	for k := range info.GetAccessibleTopology().GetSegments() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	count := int32(info.GetMaxVolumesPerNode())
	node, err := s.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	_, err = s.kube.StorageV1().CSINodes().Create(ctx, &storagev1.CSINode{
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Node", Name: name, UID: node.UID,
		}}},
		Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{
			Name: driverName, NodeID: info.GetNodeId(), TopologyKeys: keys,
			Allocatable: &storagev1.VolumeNodeResources{Count: &count},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	env := []string{"NODE_NAME=" + name, "NAMESPACE=" + systemNS, "POD_NAME=csi-provisioner-" + name}
	b, a := withEnv(t, s.c.Binary(cluster.BinCSIProvisioner), env,
		"--csi-address="+n.sock, "--kubeconfig="+s.c.Kubeconfig(),
		"--node-deployment", "--enable-capacity", "--capacity-ownerref-level=-1",
		"--extra-create-metadata", "--strict-topology", "--volume-name-prefix=local",
		"--leader-election=false", "--timeout=30s", "--retry-interval-max=5s", "-v=3")
	n.procs = append(n.procs, s.start(t, "csi-provisioner-"+name, b, a...))
	b, a = withEnv(t, s.c.Binary(cluster.BinCSISnapshotter), []string{"NODE_NAME=" + name},
		"--csi-address="+n.sock, "--kubeconfig="+s.c.Kubeconfig(),
		"--node-deployment", "--snapshot-name-prefix=snap", "--extra-create-metadata",
		"--leader-election=false", "--timeout=30s", "--retry-interval-max=5s", "-v=3")
	n.procs = append(n.procs, s.start(t, "csi-snapshotter-"+name, b, a...))
}

// orphanGCArgs are the agent's orphan-collection flags, when the binary has
// them: delete at the shortest grace, checked often.
func (s *system) orphanGCArgs() []string {
	if !s.simnodeFlags["orphan-gc"] {
		return nil
	}
	args := []string{"--orphan-gc=delete"}
	if s.simnodeFlags["orphan-grace"] {
		args = append(args, "--orphan-grace="+orphanGrace.String())
	}
	if s.simnodeFlags["orphan-interval"] {
		args = append(args, "--orphan-interval=5s")
	}
	return args
}

// orphanGrace is the shortest grace the agent accepts (agent.MinOrphanGrace).
const orphanGrace = 5 * time.Minute

// waitStorage waits until every node's VG exists (the agent created it
// from the init config), shows in its NodeLocalStorage, and the node's
// driver sees it (the agent and the driver share the simulated host).
func (s *system) waitStorage(t *testing.T) {
	t.Helper()
	for _, n := range s.liveNodes() {
		waitFor(t, n.name+"'s VG in its NodeLocalStorage", 90*time.Second, func(ctx context.Context) (bool, error) {
			nls, err := s.ol.CsiV1alpha1().NodeLocalStorages().Get(ctx, n.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			vg, ok := nlsVG(nls)
			return ok && vg.Total > 0, nil
		})
		waitFor(t, n.name+"'s driver seeing the agent's VG", 30*time.Second, func(ctx context.Context) (bool, error) {
			r, err := n.ctrl.GetCapacity(ctx, &csipb.GetCapacityRequest{
				AccessibleTopology: &csipb.Topology{Segments: map[string]string{topologyKey: n.name}},
			})
			return err == nil && r.GetAvailableCapacity() > 50<<30, nil
		})
	}
}

// waitReady waits until the extender's cache holds every node's VG.
func (s *system) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, "the extender's cache holding every node's VG", 60*time.Second, func(ctx context.Context) (bool, error) {
		v, err := s.cacheView(ctx)
		if err != nil || !v.Synced {
			return false, nil
		}
		have := 0
		for _, nv := range v.Nodes {
			for _, vg := range nv.VolumeGroups {
				if vg.Name == vgName && vg.Allocatable > 0 {
					have++
				}
			}
		}
		return have == len(s.liveNodes()), nil
	})
}

func (s *system) liveNodes() []*simNode {
	var out []*simNode
	for _, n := range s.nodes {
		if !n.gone {
			out = append(out, n)
		}
	}
	return out
}

func (s *system) nodeByName(name string) *simNode {
	for _, n := range s.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func nlsVG(nls *v1alpha1.NodeLocalStorage) (v1alpha1.VolumeGroup, bool) {
	for _, vg := range nls.Status.NodeStorageInfo.VolumeGroups {
		if vg.Name == vgName {
			return vg, true
		}
	}
	return v1alpha1.VolumeGroup{}, false
}

// cacheView is the extender's GET /cache.
type cacheView struct {
	Synced bool `json:"synced"`
	Nodes  []struct {
		Name         string `json:"name"`
		Error        string `json:"error"`
		VolumeGroups []struct {
			Name        string `json:"name"`
			Allocatable int64  `json:"allocatable"`
			Requested   int64  `json:"requested"`
			Free        int64  `json:"free"`
		} `json:"volumeGroups"`
		Claims []struct {
			Claim  string `json:"claim"`
			VG     string `json:"vgName"`
			Bytes  int64  `json:"bytes"`
			State  string `json:"state"`
			Source string `json:"source"`
		} `json:"claims"`
		Conflicts []string `json:"conflicts"`
	} `json:"nodes"`
	Overcommits []json.RawMessage `json:"overcommits"`
}

func (s *system) cacheView(ctx context.Context) (cacheView, error) {
	var v cacheView
	body, err := httpGet(ctx, s.extenderURL+"/cache")
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal(body, &v)
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// metricValue sums the samples of a metric on a Prometheus text endpoint
// (0 when the metric is absent).
func metricValue(ctx context.Context, addr, name string) (float64, error) {
	return metricMatching(ctx, addr, name, "")
}

// metricMatching is metricValue over the samples whose line contains
// labels (e.g. `verb="predicates"`).
func metricMatching(ctx context.Context, addr, name, labels string) (float64, error) {
	body, err := httpGet(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, labels) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// startPluginScheduler runs open-local-scheduler with the deployed plugin
// configuration, as kube-scheduler's identity, with the plugin's own
// clients under the extender's ServiceAccount.
func (s *system) startPluginScheduler(t *testing.T, bin string) *component {
	t.Helper()
	cfg := readYAMLMap(t, filepath.Join(repoRoot(), "deploy/scheduler/kube-scheduler-config-plugin.yaml"))
	profiles, _ := cfg["profiles"].([]any)
	require.Len(t, profiles, 1)
	pcs, _ := profiles[0].(map[string]any)["pluginConfig"].([]any)
	require.Len(t, pcs, 1)
	args, _ := pcs[0].(map[string]any)["args"].(map[string]any)
	if args == nil {
		args = map[string]any{}
		pcs[0].(map[string]any)["args"] = args
	}
	args["kubeconfig"] = s.extenderKC
	return startScheduler(t, s.c, s.dir, "open-local-scheduler", bin, cfg)
}

// startScheduler runs a kube-scheduler build (bin) with the given
// KubeSchedulerConfiguration as the system:kube-scheduler user, serving
// /readyz on a loopback port, and waits until it is ready. extraArgs are
// added to its command line.
func startScheduler(t *testing.T, c *cluster.Cluster, dir, name, bin string, cfg map[string]any, extraArgs ...string) *component {
	t.Helper()
	userCfg, err := c.UserConfig("system:kube-scheduler")
	require.NoError(t, err)
	userCfg.QPS, userCfg.Burst = 0, 0
	kc := filepath.Join(dir, name+".kubeconfig")
	writeCertKubeconfig(t, kc, userCfg)
	conn, _ := cfg["clientConnection"].(map[string]any)
	if conn == nil {
		conn = map[string]any{}
	}
	conn["kubeconfig"] = kc
	cfg["clientConnection"] = conn
	cfg["leaderElection"] = map[string]any{"leaderElect": false}
	cfgPath := filepath.Join(dir, name+"-config.yaml")
	writeYAML(t, cfgPath, cfg)
	certDir := filepath.Join(dir, name+"-certs")
	require.NoError(t, os.MkdirAll(certDir, 0o700))
	port := freePort(t)
	comp := &component{name: name, bin: bin, args: []string{
		"--config=" + cfgPath,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"-v=2",
	}}
	comp.args = append(comp.args, extraArgs...)
	p, err := c.StartProcess(comp.name, comp.bin, comp.args...)
	require.NoError(t, err)
	comp.proc = p
	// A self-signed serving certificate on loopback: only readiness is read.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", port)
	waitFor(t, name+" ready", 90*time.Second, func(ctx context.Context) (bool, error) {
		if done, err := p.Exited(); done {
			return false, fmt.Errorf("%s exited: %v; log tail:\n%s", name, err, tailFile(p.LogPath(), 0, 40))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok", nil
	})
	return comp
}

// writeCertKubeconfig writes a kubeconfig for a client-certificate config.
func writeCertKubeconfig(t testing.TB, path string, cfg *rest.Config) {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "user"}
	kc.CurrentContext = "test"
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
}

// freePort is a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 200ms until it holds; a returned error ends the
// wait at once.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	start := time.Now()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		last = err
		return ok, err
	})
	if err != nil {
		if last != nil && last != err {
			t.Fatalf("waiting for %s: %v (after %v; last: %v)", what, err, time.Since(start).Round(time.Millisecond), last)
		}
		t.Fatalf("waiting for %s: %v (after %v)", what, err, time.Since(start).Round(time.Millisecond))
	}
}

// scenario prints, when t fails, the tail of every log written while it ran.
func (s *system) scenario(t *testing.T) {
	t.Helper()
	offsets := map[string]int64{}
	for _, p := range s.c.Processes() {
		if st, err := os.Stat(p.LogPath()); err == nil {
			offsets[p.LogPath()] = st.Size()
		}
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		seen := map[string]bool{}
		for _, p := range s.c.Processes() {
			if seen[p.LogPath()] {
				continue
			}
			seen[p.LogPath()] = true
			state := "running"
			if done, err := p.Exited(); done {
				state = fmt.Sprintf("exited: %v", err)
			}
			t.Logf("---- %s (%s), log during %s:\n%s", p.Name(), state, t.Name(), tailFile(p.LogPath(), offsets[p.LogPath()], 60))
		}
	})
}

func tailFile(path string, from int64, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if from > 0 && from <= int64(len(data)) {
		data = data[from:]
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = append([][]byte{[]byte(fmt.Sprintf("... (%d earlier lines)", len(lines)-n))}, lines[len(lines)-n:]...)
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// keepArtefacts copies the logs and configuration to
// $OPEN_LOCAL_E2E_ARTEFACTS/<test>, when set.
func (s *system) keepArtefacts(t *testing.T) {
	dst := os.Getenv("OPEN_LOCAL_E2E_ARTEFACTS")
	if dst == "" {
		return
	}
	dst = filepath.Join(dst, strings.ReplaceAll(t.Name(), "/", "_"))
	for _, src := range []string{filepath.Join(s.c.Dir(), "logs"), s.dir} {
		_ = filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
			if err != nil || !info.Mode().IsRegular() {
				return nil
			}
			rel, _ := filepath.Rel(filepath.Dir(src), path)
			out := filepath.Join(dst, rel)
			if os.MkdirAll(filepath.Dir(out), 0o700) != nil {
				return nil
			}
			if data, err := os.ReadFile(path); err == nil {
				_ = os.WriteFile(out, data, 0o600)
			}
			return nil
		})
	}
	t.Logf("logs and configuration copied to %s", dst)
}

// unstructuredList lists objects of gvr in namespace ("" for all).
func (s *system) unstructuredList(ctx context.Context, gvr schema.GroupVersionResource, namespace string) ([]unstructured.Unstructured, error) {
	l, err := s.dyn.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}
