package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// Options selects what runs besides etcd and kube-apiserver. The zero value
// is the minimal control plane: etcd and kube-apiserver only.
type Options struct {
	// ControllerManager starts kube-controller-manager.
	ControllerManager bool
	// Controllers is the --controllers list; empty means "*" (all enabled
	// by default).
	Controllers []string
	// ControllerManagerArgs are extra flags; a flag given here overrides
	// the default of the same name.
	ControllerManagerArgs []string

	// Scheduler starts kube-scheduler.
	Scheduler bool
	// SchedulerConfig is the path of a KubeSchedulerConfiguration file
	// (e.g. with extenders or plugin settings). clientConnection.kubeconfig
	// is set to the scheduler's own kubeconfig, and leader election is
	// turned off unless the file sets it. Empty means the default profile.
	SchedulerConfig string
	// SchedulerArgs are extra kube-scheduler flags; a flag given here
	// overrides the default of the same name.
	SchedulerArgs []string

	// APIServerArgs are extra kube-apiserver flags; a flag given here
	// overrides the default of the same name.
	APIServerArgs []string

	// BinDir overrides where the binaries are taken from (see BinDir).
	BinDir string
	// ReadyTimeout bounds the start of each component; default 60s.
	ReadyTimeout time.Duration
}

// StartupTimes records how long each component took to become ready.
type StartupTimes struct {
	PKI               time.Duration
	Etcd              time.Duration
	APIServer         time.Duration
	ControllerManager time.Duration
	Scheduler         time.Duration
	Total             time.Duration
}

func (s StartupTimes) String() string {
	return fmt.Sprintf("total %s (pki %s, etcd %s, kube-apiserver %s, kube-controller-manager %s, kube-scheduler %s)",
		s.Total.Round(time.Millisecond), s.PKI.Round(time.Millisecond), s.Etcd.Round(time.Millisecond),
		s.APIServer.Round(time.Millisecond), s.ControllerManager.Round(time.Millisecond), s.Scheduler.Round(time.Millisecond))
}

// Cluster is a running control plane.
type Cluster struct {
	opts   Options
	dir    string
	logDir string
	bin    string
	pki    *pki

	host       string // https://127.0.0.1:port
	kubeconfig string
	admin      *rest.Config
	client     kubernetes.Interface
	times      StartupTimes

	mu        sync.Mutex
	processes []*Process // start order; stopped in reverse
	stopped   chan struct{}
	stopOnce  sync.Once
}

// Start runs a control plane for one test: state lives in t.TempDir(), the
// processes are stopped in t.Cleanup (and when ctx is cancelled), and on
// failure the tail of every component's log is printed. Without binaries the
// test is skipped (see ErrNotBuilt).
func Start(ctx context.Context, t testing.TB, opts Options) (*Cluster, error) {
	t.Helper()
	skipIfUnavailable(t, opts)
	c, err := start(ctx, t.TempDir(), opts)
	if err != nil {
		return nil, err
	}
	t.Logf("control plane at %s up: %s", c.host, c.times)
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t, nil)
		}
		c.Stop()
	})
	return c, nil
}

// skipIfUnavailable skips t when the control plane cannot run here, unless
// OPEN_LOCAL_REQUIRE_CLUSTER=1 asks for a failure instead.
func skipIfUnavailable(t testing.TB, opts Options) {
	t.Helper()
	if testing.Short() && !requireCluster() {
		t.Skip("control-plane tests need a few seconds to start etcd and kube-apiserver; skipped in -short mode")
	}
	_, err := resolveBinaries(opts)
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotBuilt) && !requireCluster() {
		t.Skip(err.Error())
	}
	if errors.Is(err, ErrNotBuilt) {
		t.Fatalf("%v (%s=1 makes this a failure)", err, EnvRequire)
	}
	t.Fatalf("locate control-plane binaries: %v", err)
}

// resolveBinaries returns the bin directory and checks it holds what opts
// needs.
func resolveBinaries(opts Options) (string, error) {
	dir := opts.BinDir
	if dir == "" {
		var err error
		if dir, err = BinDir(); err != nil {
			return "", err
		}
	}
	names := []string{BinEtcd, BinAPIServer}
	if opts.ControllerManager {
		names = append(names, BinControllerManager)
	}
	if opts.Scheduler {
		names = append(names, BinScheduler)
	}
	return dir, checkBinaries(dir, names...)
}

// start brings up the control plane with its state in dir. On error every
// process it started is stopped again.
func start(ctx context.Context, dir string, opts Options) (_ *Cluster, err error) {
	begin := time.Now()
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	bin, err := resolveBinaries(opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, dir: dir, logDir: filepath.Join(dir, "logs"), bin: bin, stopped: make(chan struct{})}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := os.MkdirAll(c.logDir, 0o700); err != nil {
		return nil, err
	}

	t0 := time.Now()
	if c.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, fmt.Errorf("generate certificates: %w", err)
	}
	c.times.PKI = time.Since(t0)

	t0 = time.Now()
	etcdURL, err := c.startEtcd(ctx)
	if err != nil {
		return nil, err
	}
	c.times.Etcd = time.Since(t0)

	t0 = time.Now()
	if err := c.startAPIServer(ctx, etcdURL); err != nil {
		return nil, err
	}
	c.times.APIServer = time.Since(t0)

	if opts.ControllerManager {
		t0 = time.Now()
		if err := c.startControllerManager(ctx); err != nil {
			return nil, err
		}
		c.times.ControllerManager = time.Since(t0)
	}
	if opts.Scheduler {
		t0 = time.Now()
		if err := c.startScheduler(ctx); err != nil {
			return nil, err
		}
		c.times.Scheduler = time.Since(t0)
	}
	c.times.Total = time.Since(begin)

	go func() {
		select {
		case <-ctx.Done():
			c.Stop()
		case <-c.stopped:
		}
	}()
	return c, nil
}

// launch starts a component on fresh ports and waits for probe, trying new
// ports when the chosen ones were taken between choosing and binding.
func (c *Cluster) launch(ctx context.Context, name, bin string, nports int,
	build func(ports []int) (args []string, probe func(context.Context) error)) ([]int, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var ports []int
		if ports, err = freePorts(nports); err != nil {
			return nil, err
		}
		args, probe := build(ports)
		var p *Process
		if p, err = startProcess(name, filepath.Join(c.bin, bin), args, c.logDir); err != nil {
			return nil, err
		}
		c.track(p)
		if err = waitReady(ctx, p, c.opts.ReadyTimeout, probe); err == nil {
			return ports, nil
		}
		p.Stop()
		if !portConflict(err) {
			break
		}
	}
	return nil, err
}

func (c *Cluster) track(p *Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.processes = append(c.processes, p)
}

func (c *Cluster) startEtcd(ctx context.Context) (string, error) {
	var clientURL string
	_, err := c.launch(ctx, "etcd", BinEtcd, 2, func(ports []int) ([]string, func(context.Context) error) {
		clientURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		args := []string{
			"--name=test",
			"--data-dir=" + filepath.Join(c.dir, "etcd"),
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=test=" + peerURL,
			// Test state is thrown away: no need to wait for the disk.
			"--unsafe-no-fsync",
			"--quota-backend-bytes=4294967296",
			"--log-level=warn",
		}
		probe := func(ctx context.Context) error {
			body, err := httpGet(ctx, http.DefaultClient, clientURL+"/health", "")
			if err == nil && !strings.Contains(body, `"health":"true"`) {
				err = fmt.Errorf("unhealthy: %s", body)
			}
			return err
		}
		return args, probe
	})
	return clientURL, err
}

func (c *Cluster) startAPIServer(ctx context.Context, etcdURL string) error {
	caPool := x509.NewCertPool()
	caPool.AppendCertsFromPEM(c.pki.CAPEM)
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}
	defer httpClient.CloseIdleConnections()
	adminToken := c.pki.Tokens[userAdmin]

	var admission []string
	if !c.opts.ControllerManager {
		// Nothing would remove the not-ready taint or create "default"
		// ServiceAccounts; see the package documentation.
		admission = append(admission, "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition")
	}
	ports, err := c.launch(ctx, "kube-apiserver", BinAPIServer, 1, func(ports []int) ([]string, func(context.Context) error) {
		host := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
		args := mergeFlags(append([]string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			// The endpoint reconciler refuses a loopback advertise address.
			"--endpoint-reconciler-type=none",
			"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
			"--tls-cert-file=" + c.pki.ServingCert,
			"--tls-private-key-file=" + c.pki.ServingKey,
			"--client-ca-file=" + c.pki.CACert,
			// Without a request-header CA the controller-manager and the
			// scheduler log an error about it on every start.
			"--requestheader-client-ca-file=" + c.pki.FrontProxyCA,
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--token-auth-file=" + c.pki.TokenFile,
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + c.pki.SAPub,
			"--service-account-signing-key-file=" + c.pki.SAKey,
			// Only a configuration value: no traffic goes to this range.
			"--service-cluster-ip-range=10.0.0.0/24",
			"--allow-privileged=true",
			"--profiling=false",
		}, admission...), c.opts.APIServerArgs)
		probe := func(ctx context.Context) error {
			body, err := httpGet(ctx, httpClient, host+"/readyz", adminToken)
			if err == nil && strings.TrimSpace(body) != "ok" {
				err = fmt.Errorf("readyz: %s", body)
			}
			return err
		}
		return args, probe
	})
	if err != nil {
		return err
	}
	c.host = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	c.admin = c.tokenConfig(adminToken)
	if c.client, err = kubernetes.NewForConfig(c.admin); err != nil {
		return err
	}
	c.kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	return writeKubeconfig(c.kubeconfig, c.admin)
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	kubeconfig := filepath.Join(c.dir, "kube-controller-manager.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.tokenConfig(c.pki.Tokens[userControllerManager])); err != nil {
		return err
	}
	controllers := "*"
	if len(c.opts.Controllers) > 0 {
		controllers = strings.Join(c.opts.Controllers, ",")
	}
	_, err := c.launch(ctx, "kube-controller-manager", BinControllerManager, 1, func(ports []int) ([]string, func(context.Context) error) {
		args := mergeFlags([]string{
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--tls-cert-file=" + c.pki.LoopbackCert,
			"--tls-private-key-file=" + c.pki.LoopbackKey,
			"--leader-elect=false",
			"--controllers=" + controllers,
			// Each controller under its own ServiceAccount, as on a real
			// cluster; the shared identity cannot, for one, update taints.
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + c.pki.SAKey,
			"--root-ca-file=" + c.pki.CACert,
			"--cluster-signing-cert-file=" + c.pki.CACert,
			"--cluster-signing-key-file=" + c.pki.CAKey,
			// No kubelet renews Node status or Leases: keep the node
			// lifecycle controller from timing Nodes out (package doc).
			"--node-monitor-grace-period=24h",
			"--node-startup-grace-period=24h",
			// Check Nodes every second (default 5s): the not-ready taint
			// of a new Node goes that much sooner.
			"--node-monitor-period=1s",
		}, c.opts.ControllerManagerArgs)
		return args, c.loopbackProbe(ports[0], "/healthz")
	})
	if err != nil || !controllerEnabled(c.opts.Controllers, "serviceaccount-controller", "serviceaccount") {
		return err
	}
	// /healthz answers long before the controllers run: they start
	// together once each has its own ServiceAccount token, seconds later.
	// The "default" ServiceAccount of "default" is their first visible work.
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("kube-controller-manager: controllers did not start within %s; log tail:\n%s",
			c.opts.ReadyTimeout, tailFile(filepath.Join(c.logDir, "kube-controller-manager.log"), 0, 40))
	}
	return nil
}

// controllerEnabled reports whether a --controllers list enables a
// controller known by any of names.
func controllerEnabled(list []string, names ...string) bool {
	if len(list) == 0 {
		list = []string{"*"}
	}
	star := false
	for _, item := range list {
		for _, n := range names {
			switch item {
			case n:
				return true
			case "-" + n:
				return false
			}
		}
		star = star || item == "*"
	}
	return star
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	kubeconfig := filepath.Join(c.dir, "kube-scheduler.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.tokenConfig(c.pki.Tokens[userScheduler])); err != nil {
		return err
	}
	config := filepath.Join(c.dir, "kube-scheduler-config.yaml")
	if err := writeSchedulerConfig(c.opts.SchedulerConfig, kubeconfig, config); err != nil {
		return err
	}
	_, err := c.launch(ctx, "kube-scheduler", BinScheduler, 1, func(ports []int) ([]string, func(context.Context) error) {
		args := mergeFlags([]string{
			"--config=" + config,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--tls-cert-file=" + c.pki.LoopbackCert,
			"--tls-private-key-file=" + c.pki.LoopbackKey,
		}, c.opts.SchedulerArgs)
		return args, c.loopbackProbe(ports[0], "/readyz")
	})
	return err
}

// loopbackProbe checks a controller-manager or scheduler health endpoint,
// which they serve with the loopback certificate and without authentication.
func (c *Cluster) loopbackProbe(port int, path string) func(context.Context) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.CAPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, path)
	return func(ctx context.Context) error {
		body, err := httpGet(ctx, client, url, "")
		if err == nil && strings.TrimSpace(body) != "ok" {
			err = fmt.Errorf("%s: %s", path, body)
		}
		return err
	}
}

// writeSchedulerConfig copies the user's KubeSchedulerConfiguration (or an
// empty one) to dst with the connection settings this cluster needs.
func writeSchedulerConfig(src, kubeconfig, dst string) error {
	cfg := map[string]any{
		"apiVersion": "kubescheduler.config.k8s.io/v1",
		"kind":       "KubeSchedulerConfiguration",
	}
	if src != "" {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("scheduler config: %w", err)
		}
		cfg = nil
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("scheduler config %s: %w", src, err)
		}
		if cfg["kind"] != "KubeSchedulerConfiguration" {
			return fmt.Errorf("scheduler config %s: kind is %v, want KubeSchedulerConfiguration", src, cfg["kind"])
		}
	}
	conn, _ := cfg["clientConnection"].(map[string]any)
	if conn == nil {
		conn = map[string]any{}
	}
	conn["kubeconfig"] = kubeconfig
	cfg["clientConnection"] = conn
	if _, set := cfg["leaderElection"]; !set {
		cfg["leaderElection"] = map[string]any{"leaderElect": false}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o600)
}

// mergeFlags appends extra to base; a --flag in extra replaces the base
// entry of the same name.
func mergeFlags(base, extra []string) []string {
	name := func(arg string) string {
		n, _, _ := strings.Cut(arg, "=")
		return n
	}
	override := map[string]bool{}
	for _, a := range extra {
		override[name(a)] = true
	}
	var out []string
	for _, a := range base {
		if !override[name(a)] {
			out = append(out, a)
		}
	}
	return append(out, extra...)
}

func httpGet(ctx context.Context, client *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// tokenConfig is a client config for this apiserver with a bearer token.
// The rate limits are raised: tests create objects in bursts and the
// client-side default (5 QPS) would dominate their run time.
func (c *Cluster) tokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.CAPEM},
		QPS:             200,
		Burst:           400,
	}
}

// writeKubeconfig writes a kubeconfig for a token-authenticated config.
func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "user"}
	kc.CurrentContext = "test"
	return clientcmd.WriteToFile(*kc, path)
}

// AdminConfig is a client config with cluster-admin rights (system:masters).
// Each call returns a new copy.
func (c *Cluster) AdminConfig() *rest.Config { return rest.CopyConfig(c.admin) }

// Client is a clientset with cluster-admin rights.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Kubeconfig is the path of a kubeconfig file with cluster-admin rights.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Host is the apiserver URL, https://127.0.0.1:<port>.
func (c *Cluster) Host() string { return c.host }

// CAFile is the path of the CA certificate that signed the serving
// certificates; CAData is its PEM.
func (c *Cluster) CAFile() string { return c.pki.CACert }

// CAData is the PEM of the cluster CA certificate.
func (c *Cluster) CAData() []byte { return append([]byte(nil), c.pki.CAPEM...) }

// Dir is the directory holding the cluster's state, certificates and logs.
func (c *Cluster) Dir() string { return c.dir }

// Binary is the path of a binary from the bin directory, e.g. BinCSIProvisioner.
func (c *Cluster) Binary(name string) string { return filepath.Join(c.bin, name) }

// StartupTimes reports how long the components took to become ready.
func (c *Cluster) StartupTimes() StartupTimes { return c.times }

// HasControllerManager reports whether kube-controller-manager runs.
func (c *Cluster) HasControllerManager() bool { return c.opts.ControllerManager }

// StartProcess runs another program (a CSI sidecar, a driver under test)
// alongside the control plane: its output goes to <Dir>/logs/<name>.log,
// which is printed with the component logs on failure, and it is stopped by
// Stop if not before. bin is a path, or a name from the bin directory.
func (c *Cluster) StartProcess(name, bin string, args ...string) (*Process, error) {
	if !strings.ContainsRune(bin, os.PathSeparator) {
		bin = c.Binary(bin)
	}
	select {
	case <-c.stopped:
		return nil, errors.New("cluster is stopped")
	default:
	}
	p, err := startProcess(name, bin, args, c.logDir)
	if err != nil {
		return nil, err
	}
	c.track(p)
	return p, nil
}

// Processes lists every process the cluster started (components first, in
// start order, then those of StartProcess), including any that have ended.
func (c *Cluster) Processes() []*Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Process(nil), c.processes...)
}

// Stop ends every process the cluster started, the most recently started
// first (the apiserver before etcd, so it does not hang on shutdown), and
// waits until all are gone. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		close(c.stopped)
		c.mu.Lock()
		procs := append([]*Process(nil), c.processes...)
		c.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop()
		}
	})
}

// logTails prints each process's log (from the given offsets on) to t.
func (c *Cluster) logTails(t testing.TB, from map[string]int64) {
	t.Helper()
	c.mu.Lock()
	procs := append([]*Process(nil), c.processes...)
	c.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range procs {
		if seen[p.logPath] {
			continue // a component restarted on new ports shares its log
		}
		seen[p.logPath] = true
		state := "running"
		if done, err := p.Exited(); done {
			state = fmt.Sprintf("exited: %v", err)
		}
		t.Logf("---- %s (%s), last lines of its log:\n%s", p.name, state, p.tail(from[p.logPath], 150))
	}
}

// logOffsets records the current size of every log, so that a later
// failure prints only what was written since.
func (c *Cluster) logOffsets() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	off := map[string]int64{}
	for _, p := range c.processes {
		off[p.logPath] = p.logSize()
	}
	return off
}
