package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	csiapi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/agent"
	"github.com/open-local/open-local/controller"
	"github.com/open-local/open-local/csi"
	"github.com/open-local/open-local/extender"
	"github.com/open-local/open-local/extender/cache"
	"github.com/open-local/open-local/hostexec/simhost"
	olfake "github.com/open-local/open-local/pkg/generated/clientset/versioned/fake"
)

// Component timings: fast enough for a run of seconds, slow enough not to
// spin. The agent's interval is how soon its status shows a new LV.
const (
	agentInterval      = 50 * time.Millisecond
	agentLeaseInterval = time.Second
	pollInterval       = 5 * time.Millisecond
	stopTimeout        = 10 * time.Second
)

// simNode is one simulated node: its host, shared by its agent and its CSI
// driver, and the gRPC clients of that driver.
type simNode struct {
	name   string
	host   *simhost.Host
	conn   *grpc.ClientConn
	ctrl   csiapi.ControllerClient
	node   csiapi.NodeClient
	socket string
}

// cluster is the in-memory API and the components running on it.
type cluster struct {
	opt     Options
	kube    *kubefake.Clientset
	local   *olfake.Clientset
	dyn     *dynamicfake.FakeDynamicClient
	cache   *cache.Cache
	handler http.Handler
	nodes   []*simNode
	byName  map[string]*simNode
	dir     string

	ctx    context.Context // the components' context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	failed []error // components that returned an error
}

// startCluster creates the API objects and starts the controller and one
// agent per node.
func startCluster(ctx context.Context, opt Options) (*cluster, error) {
	dir, err := os.MkdirTemp("", "open-local-demo-")
	if err != nil {
		return nil, fmt.Errorf("creating the directory of the CSI sockets: %w", err)
	}
	cl := &cluster{opt: opt, dir: dir, byName: map[string]*simNode{}}
	cl.ctx, cl.cancel = context.WithCancel(ctx)

	var kubeObjs []runtime.Object
	for i := 0; i < opt.Nodes; i++ {
		name := nodeName(i)
		host, err := simhost.New(hostConfig())
		if err != nil {
			_ = cl.stop()
			return nil, fmt.Errorf("simulated host of %s: %w", name, err)
		}
		sn := &simNode{name: name, host: host, socket: filepath.Join(dir, name+".sock")}
		cl.nodes = append(cl.nodes, sn)
		cl.byName[name] = sn
		kubeObjs = append(kubeObjs, newNode(name))
	}
	for _, sc := range storageClasses() {
		kubeObjs = append(kubeObjs, sc)
	}
	api := newAPIServer()
	cl.kube = kubefake.NewClientset()
	api.install(&cl.kube.Fake, cl.kube.Tracker())
	// The snapshot API is served: the extender watches VolumeSnapshots.
	cl.kube.Resources = []*metav1.APIResourceList{{
		GroupVersion: snapshotGVR.GroupVersion().String(),
		APIResources: []metav1.APIResource{
			{Name: snapshotGVR.Resource, Namespaced: true, Kind: "VolumeSnapshot"},
			{Name: contentGVR.Resource, Kind: "VolumeSnapshotContent"},
		},
	}}
	cl.local = olfake.NewSimpleClientset()
	api.install(&cl.local.Fake, cl.local.Tracker())
	cl.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		snapshotGVR: "VolumeSnapshotList", contentGVR: "VolumeSnapshotContentList",
	})
	for _, o := range kubeObjs {
		if err := cl.create(ctx, o); err != nil {
			_ = cl.stop()
			return nil, err
		}
	}
	if _, err := cl.local.CsiV1alpha1().NodeLocalStorageInitConfigs().Create(ctx, initConfig(), metav1.CreateOptions{}); err != nil {
		_ = cl.stop()
		return nil, fmt.Errorf("creating the NodeLocalStorageInitConfig: %w", err)
	}

	copts := controller.DefaultOptions()
	copts.InitConfigName = initConfigName
	copts.LeaderElection.Enabled = false
	cl.goRun("controller", func(ctx context.Context) error { return controller.Run(ctx, copts, cl.kube, cl.local) })
	for _, sn := range cl.nodes {
		aopts := agent.Options{
			NodeName:       sn.name,
			Interval:       agentInterval,
			LeaseInterval:  agentLeaseInterval,
			InitBackoff:    20 * time.Millisecond,
			InitBackoffMax: time.Second,
			HostTimeout:    10 * time.Second,
		}
		cl.goRun("agent of "+sn.name, func(ctx context.Context) error { return agent.Run(ctx, aopts, sn.host, cl.kube, cl.local) })
	}
	return cl, nil
}

// create stores a Kubernetes object through the clientset.
func (cl *cluster) create(ctx context.Context, obj runtime.Object) error {
	var err error
	switch o := obj.(type) {
	case *corev1.Node:
		_, err = cl.kube.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
	case *storagev1.StorageClass:
		_, err = cl.kube.StorageV1().StorageClasses().Create(ctx, o, metav1.CreateOptions{})
	default:
		return fmt.Errorf("demo: cannot create %T", obj)
	}
	if err != nil {
		return fmt.Errorf("creating %T: %w", obj, err)
	}
	return nil
}

// goRun runs a component until the cluster stops; an error it returns is a
// failure of the run.
func (cl *cluster) goRun(what string, run func(context.Context) error) {
	cl.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		if err := run(cl.ctx); err != nil && cl.ctx.Err() == nil {
			cl.mu.Lock()
			cl.failed = append(cl.failed, fmt.Errorf("%s stopped: %w", what, err))
			cl.mu.Unlock()
		}
	}()
}

// componentErr is the first component failure, if any.
func (cl *cluster) componentErr() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return errors.Join(cl.failed...)
}

// startScheduling starts the extender's cache and builds its HTTP handler.
func (cl *cluster) startScheduling(ctx context.Context) error {
	cl.cache = cache.New(cache.Options{Strategy: cl.opt.Strategy})
	runCtx := klog.NewContext(cl.ctx, klog.FromContext(ctx).WithName("extender"))
	if err := cl.cache.Run(runCtx, cache.Clients{Kube: cl.kube, Local: cl.local, Dynamic: cl.dyn}); err != nil {
		return fmt.Errorf("starting the extender's cache: %w", err)
	}
	cl.handler = extender.NewServer(cl.cache, extender.NewMetrics(cl.cache), extender.Config{Version: "demo"}).Handler()
	return nil
}

// call sends one request to the extender's handler and decodes its answer.
func (cl *cluster) call(method, target string, body, out any) error {
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return err
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, &buf)
	req.Header.Set("Content-Type", "application/json")
	cl.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		var eb struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &eb)
		return fmt.Errorf("%s %s: HTTP %d: %s", method, target, rec.Code, eb.Error)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, target, err)
		}
	}
	return nil
}

// startDrivers starts each node's CSI driver on its host and connects to it.
func (cl *cluster) startDrivers(ctx context.Context) error {
	for _, sn := range cl.nodes {
		cfg := csi.DefaultConfig()
		cfg.NodeID = sn.name
		cfg.Version = "demo"
		cfg.Strategy = cl.opt.Strategy
		d, err := csi.NewDriver(cfg, sn.host)
		if err != nil {
			return fmt.Errorf("CSI driver of %s: %w", sn.name, err)
		}
		dctx := klog.NewContext(cl.ctx, klog.FromContext(ctx).WithName("csi").WithValues("node", sn.name))
		if err := d.Start(dctx); err != nil {
			return fmt.Errorf("starting the CSI driver of %s: %w", sn.name, err)
		}
		ln, err := net.Listen("unix", sn.socket)
		if err != nil {
			return fmt.Errorf("CSI socket of %s: %w", sn.name, err)
		}
		cl.goRun("CSI driver of "+sn.name, func(context.Context) error { return d.Serve(dctx, ln) })
		conn, err := grpc.NewClient("unix://"+sn.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("connecting to the CSI driver of %s: %w", sn.name, err)
		}
		sn.conn = conn
		sn.ctrl = csiapi.NewControllerClient(conn)
		sn.node = csiapi.NewNodeClient(conn)
		probe, err := csiapi.NewIdentityClient(conn).Probe(ctx, &csiapi.ProbeRequest{})
		if err != nil {
			return fmt.Errorf("probing the CSI driver of %s: %w", sn.name, err)
		}
		if r := probe.GetReady(); r != nil && !r.GetValue() {
			return fmt.Errorf("the CSI driver of %s is not ready", sn.name)
		}
	}
	return nil
}

// stop ends every component and waits for them.
func (cl *cluster) stop() error {
	cl.cancel()
	for _, sn := range cl.nodes {
		if sn.conn != nil {
			_ = sn.conn.Close()
		}
	}
	done := make(chan struct{})
	go func() { cl.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-time.After(stopTimeout):
		err = fmt.Errorf("components did not stop within %s", stopTimeout)
	}
	if rerr := os.RemoveAll(cl.dir); rerr != nil && err == nil {
		err = rerr
	}
	return errors.Join(err, cl.componentErr())
}

// waitFor polls cond until it holds, ctx ends or a component fails.
func (cl *cluster) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if err := cl.componentErr(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		case <-t.C:
		}
	}
}
