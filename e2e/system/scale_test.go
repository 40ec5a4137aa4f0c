package system

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/e2e/cluster"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
)

const (
	scaleNodes = 1000
	scalePods  = 1000
)

// TestSchedulingTimeAtScale measures how long kube-scheduler takes to place
// 1,000 pods on 1,000 nodes, without and then with the Open-Local extender:
// from the creation of the first pod until every pod has spec.nodeName. It
// logs the figures and their ratio; it asserts only that every pod is
// placed (timing on a shared machine is not a pass criterion).
//
// Nodes and NodeLocalStorages are API objects only (no agents). Each pod has
// one CSI inline (ephemeral) volume of the Open-Local driver: the extender
// judges it like a claim, and kube-scheduler binds the pod at once, with no
// PV to provision or bind, so the figure is the scheduler's and the
// extender's work and nothing else's (a PVC would add a binder's latency to
// both runs).
func TestSchedulingTimeAtScale(t *testing.T) {
	requireBinaries(t, cluster.BinEtcd, cluster.BinAPIServer, cluster.BinScheduler)
	bin := openLocalBinary(t)
	ctx := context.Background()
	c, err := cluster.Start(ctx, t, cluster.Options{})
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "artefacts")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	root := repoRoot()
	require.NoError(t, c.ApplyYAML(ctx,
		filepath.Join(root, "deploy/crds/csi.aliyun.com_nodelocalstorages.yaml"),
		filepath.Join(root, "deploy/scheduler/rbac.yaml")))
	no := false
	_, err = c.Client().StorageV1().CSIDrivers().Create(ctx, &storagev1.CSIDriver{
		ObjectMeta: metav1.ObjectMeta{Name: driverName},
		Spec: storagev1.CSIDriverSpec{AttachRequired: &no, StorageCapacity: &no,
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecycleEphemeral}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	start := time.Now()
	cfg := c.AdminConfig()
	cfg.QPS, cfg.Burst = 2000, 2000
	kube := kubernetes.NewForConfigOrDie(cfg)
	ol := versioned.NewForConfigOrDie(cfg)
	require.NoError(t, parallel(scaleNodes, 32, func(i int) error {
		name := fmt.Sprintf("scale-%04d", i)
		if _, err := c.RegisterNode(ctx, cluster.FakeNode{Name: name}); err != nil {
			return err
		}
		return createScaleNLS(ctx, ol, name)
	}))
	t.Logf("%d Nodes and NodeLocalStorages created in %v", scaleNodes, time.Since(start).Round(time.Millisecond))

	kc, err := c.ServiceAccountKubeconfig(ctx, systemNS, "open-local-scheduler-extender")
	require.NoError(t, err)
	ext := readYAMLMap(t, filepath.Join(repoRoot(), "deploy/scheduler/kube-scheduler-config-extender.yaml"))["extenders"].([]any)[0].(map[string]any)

	// Rounds of the three runs, interleaved, so that a slow moment of the
	// machine does not fall on one configuration only; the medians are
	// reported. The extender runs only during its own runs.
	var plain, noBatch, withExt []time.Duration
	for r := 1; r <= scaleRounds; r++ {
		plain = append(plain, measureScheduling(t, c, kube, dir, fmt.Sprintf("plain-%d", r), nil))
		// kube-scheduler turns opportunistic batching (identical pods
		// reuse one filtering result) off for a profile with extenders;
		// this run separates that from the extender's own cost.
		noBatch = append(noBatch, measureScheduling(t, c, kube, dir, fmt.Sprintf("nobatch-%d", r), nil, "--feature-gates=OpportunisticBatching=false"))

		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		p, err := c.StartProcess("open-local-extender", bin, "scheduler", "--kubeconfig="+kc, "--listen="+addr, "--strategy=binpack", "-v=1")
		require.NoError(t, err)
		s := &system{extenderURL: "http://" + addr}
		waitFor(t, "the extender's cache holding every node", 2*time.Minute, func(ctx context.Context) (bool, error) {
			if _, err := httpGet(ctx, s.extenderURL+"/readyz"); err != nil {
				return false, nil
			}
			v, err := s.cacheView(ctx)
			return err == nil && v.Synced && len(v.Nodes) == scaleNodes, nil
		})
		ext["urlPrefix"] = s.extenderURL + "/scheduler"
		withExt = append(withExt, measureScheduling(t, c, kube, dir, fmt.Sprintf("extender-%d", r), []any{ext}))
		for _, verb := range []string{"predicates", "priorities"} {
			sel := `verb="` + verb + `"`
			sum, err1 := metricMatching(ctx, addr, "open_local_extender_request_duration_seconds_sum", sel)
			n, err2 := metricMatching(ctx, addr, "open_local_extender_request_duration_seconds_count", sel)
			require.NoError(t, errors.Join(err1, err2))
			if n > 0 {
				t.Logf("extender-%d %s: %.0f calls, %.2f ms each in the handler (%.2f s in all)", r, verb, n, 1000*sum/n, sum)
			}
		}
		p.Stop()
	}

	mp, mn, me := median(plain), median(noBatch), median(withExt)
	rate := func(d time.Duration) float64 { return float64(scalePods) / d.Seconds() }
	t.Logf("SCHEDULING %d pods on %d nodes, median of %d: without extender %v (%.0f pods/s; runs %v); without extender or opportunistic batching %v (%.0f pods/s; runs %v); with extender %v (%.0f pods/s; runs %v)",
		scalePods, scaleNodes, scaleRounds, mp, rate(mp), plain, mn, rate(mn), noBatch, me, rate(me), withExt)
	t.Logf("SCHEDULING added by the extender: %+.0f%% against the default scheduler, %+.0f%% against it without opportunistic batching",
		100*(me.Seconds()/mp.Seconds()-1), 100*(me.Seconds()/mn.Seconds()-1))
}

// scaleRounds is how many times each configuration is measured.
const scaleRounds = 3

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond)
}

// createScaleNLS is a NodeLocalStorage as an agent would report it: one
// 100Gi VG open-local-pool-0, empty.
func createScaleNLS(ctx context.Context, ol versioned.Interface, name string) error {
	nls, err := ol.CsiV1alpha1().NodeLocalStorages().Create(ctx, &v1alpha1.NodeLocalStorage{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.NodeLocalStorageSpec{
			NodeName:   name,
			ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+"}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	nls.Status.NodeStorageInfo.VolumeGroups = []v1alpha1.VolumeGroup{{
		Name: vgName, PhysicalVolumes: []string{vgDevice},
		Total: vgSize, Available: vgSize, Allocatable: vgSize,
	}}
	nls.Status.FilteredStorageInfo.VolumeGroups = []string{vgName}
	_, err = ol.CsiV1alpha1().NodeLocalStorages().UpdateStatus(ctx, nls, metav1.UpdateOptions{})
	return err
}

// measureScheduling starts kube-scheduler (with extenders, if any), creates
// scalePods pods with one Open-Local inline volume each, and returns the
// time until all are bound. The scheduler is stopped and the pods deleted
// afterwards.
func measureScheduling(t *testing.T, c *cluster.Cluster, kube kubernetes.Interface, dir, name string, extenders []any, schedulerArgs ...string) time.Duration {
	t.Helper()
	ctx := context.Background()
	cfg := map[string]any{
		"apiVersion": "kubescheduler.config.k8s.io/v1",
		"kind":       "KubeSchedulerConfiguration",
		// The same for both runs, and high enough that the client's rate
		// limit (default 50 QPS: 20s for 1,000 bindings) does not hide
		// the scheduling work.
		"clientConnection": map[string]any{"qps": 1000, "burst": 1000},
	}
	if extenders != nil {
		cfg["extenders"] = extenders
	}
	sched := startScheduler(t, c, dir, "kube-scheduler-"+name, c.Binary(cluster.BinScheduler), cfg, schedulerArgs...)
	defer sched.proc.Stop()

	ns := "scale-" + name
	require.NoError(t, c.CreateNamespace(ctx, ns))
	bound := map[string]bool{}
	// watchFrom (re)starts the watch; the API server may close a watch that
	// falls behind a burst, so a closed watch resumes from a fresh list.
	watchFrom := func() watch.Interface {
		list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				bound[p.Name] = true
			}
		}
		w, err := kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		require.NoError(t, err)
		return w
	}
	w := watchFrom()
	defer func() { w.Stop() }()

	start := time.Now()
	type creation struct {
		took time.Duration
		err  error
	}
	created := make(chan creation, 1)
	go func() {
		err := parallel(scalePods, 32, func(i int) error {
			_, err := kube.CoreV1().Pods(ns).Create(ctx, scalePod(ns, fmt.Sprintf("pod-%04d", i)), metav1.CreateOptions{})
			return err
		})
		created <- creation{time.Since(start), err}
	}()
	timeout := time.After(5 * time.Minute)
	var createdIn time.Duration
	rewatches := 0
	for len(bound) < scalePods {
		select {
		case c := <-created:
			require.NoError(t, c.err)
			createdIn = c.took
			created = nil
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				w.Stop()
				w = watchFrom()
				rewatches++
				continue
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				bound[p.Name] = true
			}
		case <-timeout:
			t.Fatalf("%s: %d of %d pods bound after 5 minutes", name, len(bound), scalePods)
		}
	}
	elapsed := time.Since(start).Round(time.Millisecond)
	if created != nil {
		c := <-created
		require.NoError(t, c.err)
		createdIn = c.took
	}
	t.Logf("%s: %d pods created in %v, all bound after %v, %v after the last creation (watch restarted %d times)",
		name, scalePods, createdIn.Round(time.Millisecond), elapsed, (elapsed - createdIn).Round(time.Millisecond), rewatches)
	sched.proc.Stop()
	zero := int64(0)
	require.NoError(t, kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}))
	waitFor(t, "the pods of "+name+" deleted", 2*time.Minute, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil && len(l.Items) == 0, nil
	})
	return elapsed
}

func scalePod(ns, name string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers:                    []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
				Driver:           driverName,
				VolumeAttributes: map[string]string{"vgName": vgName, "size": "1Gi"},
			}}}},
		},
	}
}
