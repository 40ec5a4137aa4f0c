package system

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/open-local/open-local/pkg/volumereq"
)

// selectedNodeAnnotation is where kube-scheduler's VolumeBinding records the
// node chosen for a WaitForFirstConsumer claim.
const selectedNodeAnnotation = "volume.kubernetes.io/selected-node"

// newNamespace creates a namespace for one scenario; its pods, snapshots and
// claims are removed (and their volumes deleted) when the scenario ends.
func (s *system) newNamespace(t *testing.T, name string) string {
	t.Helper()
	require.NoError(t, s.c.CreateNamespace(context.Background(), name))
	t.Cleanup(func() { s.cleanupNamespace(t, name) })
	return name
}

func newPVC(ns, name, size string, source *corev1.TypedLocalObjectReference) *corev1.PersistentVolumeClaim {
	sc := storageClass
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &sc,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
			DataSource:       source,
		},
	}
}

// newPod is a pod mounting the given claims (no kubelet runs it: only its
// scheduling matters).
func (s *system) newPod(ns, name string, claims []string, nodeSelector map[string]string) *corev1.Pod {
	zero := int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "e2e"}},
		Spec: corev1.PodSpec{
			SchedulerName:                 s.schedulerName,
			NodeSelector:                  nodeSelector,
			TerminationGracePeriodSeconds: &zero,
			Containers:                    []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	for _, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
			Name:         c,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}},
		})
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: c, MountPath: "/data/" + c})
	}
	return pod
}

// createStatefulSetLike creates pods <prefix>-0..n-1, each with one claim
// "<claim>-<prefix>-<i>" per entry of sizes (claim name → size), as a
// StatefulSet's volumeClaimTemplates would.
func (s *system) createStatefulSetLike(t testing.TB, ns, prefix string, n int, sizes map[string]string, nodeSelector map[string]string) []string {
	t.Helper()
	ctx := context.Background()
	templates := make([]string, 0, len(sizes))
	for k := range sizes {
		templates = append(templates, k)
	}
	sort.Strings(templates)
	var pods []string
	for i := range n {
		pod := fmt.Sprintf("%s-%d", prefix, i)
		var claims []string
		for _, tmpl := range templates {
			claim := tmpl + "-" + pod
			_, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, newPVC(ns, claim, sizes[tmpl], nil), metav1.CreateOptions{})
			require.NoError(t, err)
			claims = append(claims, claim)
		}
		_, err := s.kube.CoreV1().Pods(ns).Create(ctx, s.newPod(ns, pod, claims, nodeSelector), metav1.CreateOptions{})
		require.NoError(t, err)
		pods = append(pods, pod)
	}
	return pods
}

// waitScheduled waits until every pod has a node, and returns pod → node.
// A pod left half-provisioned — one claim bound on a node that has no room
// for its other claims — can never be placed (its PV pins it there), so
// the wait ends as soon as one has been for a while.
func (s *system) waitScheduled(t testing.TB, ns string, pods []string, timeout time.Duration) map[string]string {
	t.Helper()
	nodes := map[string]string{}
	var pending []string
	halfSince := map[string]time.Time{}
	var stuck string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		have := map[string]*corev1.Pod{}
		for i := range list.Items {
			have[list.Items[i].Name] = &list.Items[i]
		}
		pending = pending[:0]
		for _, p := range pods {
			if pod := have[p]; pod == nil || pod.Spec.NodeName == "" {
				pending = append(pending, p)
			} else {
				nodes[p] = pod.Spec.NodeName
			}
		}
		for _, p := range pending {
			if pod := have[p]; pod != nil && s.halfProvisioned(ctx, pod) {
				if halfSince[p].IsZero() {
					halfSince[p] = time.Now()
				} else if time.Since(halfSince[p]) > 15*time.Second {
					stuck = p
					return false, errors.New("half-provisioned pod")
				}
			} else {
				delete(halfSince, p)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		what := fmt.Sprintf("after %v", timeout)
		if stuck != "" {
			what = fmt.Sprintf("and pod %s is half-provisioned: a claim of it is bound on a node without room for the others, where its PV pins it for good — the node was over-committed at scheduling", stuck)
		}
		t.Fatalf("%d of %d pods in %s not scheduled %s: %s%s\n  claims per selected node:%s", len(pending), len(pods), ns, what,
			strings.Join(pending, ", "), s.schedulingEvents(ns, pending), s.claimsPerNode(ns))
	}
	return nodes
}

// halfProvisioned reports whether some claims of a pod are bound and
// another is not.
func (s *system) halfProvisioned(ctx context.Context, pod *corev1.Pod) bool {
	bound, unbound := 0, 0
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := s.kube.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		if pvc.Status.Phase == corev1.ClaimBound {
			bound++
		} else {
			unbound++
		}
	}
	return bound > 0 && unbound > 0
}

// claimsPerNode sums a namespace's claims by the node they are bound or
// selected for, for a failure report.
func (s *system) claimsPerNode(ns string) string {
	ctx := context.Background()
	pvcs, err := s.kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return " " + err.Error()
	}
	sum := map[string]int64{}
	names := map[string][]string{}
	for _, pvc := range pvcs.Items {
		node := pvc.Annotations[selectedNodeAnnotation]
		if pvc.Spec.VolumeName != "" {
			if pv, err := s.kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{}); err == nil {
				node = pvNode(pv)
			}
		}
		if node == "" {
			continue
		}
		q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		sum[node] += q.Value()
		state := "selected"
		if pvc.Status.Phase == corev1.ClaimBound {
			state = "bound"
		}
		names[node] = append(names[node], pvc.Name+" ("+state+")")
	}
	var b strings.Builder
	for _, n := range sortedKeys(sum) {
		fmt.Fprintf(&b, "\n    %s: %d GiB of a %d GiB VG: %s", n, sum[n]>>30, vgSize>>30, strings.Join(names[n], ", "))
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// schedulingEvents are the FailedScheduling messages of pods, for a failure
// report.
func (s *system) schedulingEvents(ns string, pods []string) string {
	var b strings.Builder
	for i, p := range pods {
		if i == 5 {
			break
		}
		for _, e := range s.podEvents(context.Background(), ns, p, "FailedScheduling") {
			fmt.Fprintf(&b, "\n  %s: %s", p, e.Message)
		}
	}
	return b.String()
}

func (s *system) podEvents(ctx context.Context, ns, pod, reason string) []corev1.Event {
	list, err := s.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + pod})
	if err != nil {
		return nil
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if reason == "" || e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// boundPV returns the PV bound to a claim.
func (s *system) boundPV(ctx context.Context, ns, claim string) (*corev1.PersistentVolume, error) {
	pvc, err := s.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return nil, fmt.Errorf("PVC %s/%s is %s", ns, claim, pvc.Status.Phase)
	}
	return s.kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
}

// pvNode is the node a local PV's node affinity names ("" if none).
func pvNode(pv *corev1.PersistentVolume) string {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return ""
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, e := range term.MatchExpressions {
			if e.Key == topologyKey && e.Operator == corev1.NodeSelectorOpIn && len(e.Values) == 1 {
				return e.Values[0]
			}
		}
	}
	return ""
}

// nodeVolumes is what a node's driver lists: volume ID → capacity.
func nodeVolumes(ctx context.Context, n *simNode) (map[string]int64, error) {
	out := map[string]int64{}
	token := ""
	for {
		r, err := n.ctrl.ListVolumes(ctx, &csipb.ListVolumesRequest{StartingToken: token})
		if err != nil {
			return nil, fmt.Errorf("ListVolumes on %s: %w", n.name, err)
		}
		for _, e := range r.GetEntries() {
			out[e.GetVolume().GetVolumeId()] = e.GetVolume().GetCapacityBytes()
		}
		if token = r.GetNextToken(); token == "" {
			return out, nil
		}
	}
}

// nodeSnapshots is what a node's driver lists: snapshot ID → source volume.
func nodeSnapshots(ctx context.Context, n *simNode) (map[string]string, error) {
	out := map[string]string{}
	token := ""
	for {
		r, err := n.ctrl.ListSnapshots(ctx, &csipb.ListSnapshotsRequest{StartingToken: token})
		if err != nil {
			return nil, fmt.Errorf("ListSnapshots on %s: %w", n.name, err)
		}
		for _, e := range r.GetEntries() {
			out[e.GetSnapshot().GetSnapshotId()] = e.GetSnapshot().GetSourceVolumeId()
		}
		if token = r.GetNextToken(); token == "" {
			return out, nil
		}
	}
}

// forceDeletePods deletes pods at once (no kubelet would confirm a
// graceful deletion).
func (s *system) forceDeletePods(ctx context.Context, ns string, names ...string) error {
	zero := int64(0)
	if names == nil {
		list, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
	}
	var errs []error
	for _, n := range names {
		err := s.kube.CoreV1().Pods(ns).Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleanupNamespace removes a scenario's pods, snapshots and claims and waits
// until their PVs (and so their LVs) are gone, except those on nodes that
// no longer run (nothing can delete their volumes).
func (s *system) cleanupNamespace(t *testing.T, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	errs = append(errs, s.forceDeletePods(ctx, ns))
	snaps, err := s.unstructuredList(ctx, snapshotGVR, ns)
	errs = append(errs, err)
	for _, vs := range snaps {
		errs = append(errs, ignoreNotFound(s.dyn.Resource(snapshotGVR).Namespace(ns).Delete(ctx, vs.GetName(), metav1.DeleteOptions{})))
	}
	errs = append(errs, wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		contents, err := s.unstructuredList(ctx, snapshotContentGVR, "")
		if err != nil {
			return false, nil
		}
		for _, c := range contents {
			if ref, _, _ := unstructured.NestedString(c.Object, "spec", "volumeSnapshotRef", "namespace"); ref == ns {
				return false, nil
			}
		}
		return true, nil
	}))
	errs = append(errs, s.kube.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}))
	errs = append(errs, wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pvcs, err := s.kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pvcs.Items) > 0 {
			return false, nil
		}
		pvs, err := s.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, pv := range pvs.Items {
			if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns {
				if n := s.nodeByName(pvNode(&pv)); n != nil && !n.gone {
					return false, nil
				}
			}
		}
		return true, nil
	}))
	errs = append(errs, ignoreNotFound(s.kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})))
	if err := errors.Join(errs...); err != nil {
		t.Errorf("clean up namespace %s: %v", ns, err)
	}
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// consistent checks, for every running node, that the storage state agrees
// everywhere:
//   - the driver's volumes are exactly the PVs whose node affinity names the
//     node (no orphan, no duplicate, no PV without its LV), except ignored IDs;
//   - the driver's snapshots are exactly the VolumeSnapshotContents' handles
//     on that node;
//   - the agent's NodeLocalStorage status lists those LVs, and the VG's free
//     space is its size less theirs;
//   - the extender's cache has no over-commit, no conflict, each VG's
//     requests within its allocatable, and every bound PVC charged on its
//     PV's node with at least the PV's size.
func (s *system) consistent(ctx context.Context, ignore map[string]bool) error {
	pvs, err := s.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	wantVols := map[string]map[string]int64{}
	claims := map[string]string{} // claim ID → node
	claimBytes := map[string]int64{}
	for _, pv := range pvs.Items {
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
			continue
		}
		node := pvNode(&pv)
		if wantVols[node] == nil {
			wantVols[node] = map[string]int64{}
		}
		size := pv.Spec.Capacity[corev1.ResourceStorage]
		wantVols[node][pv.Spec.CSI.VolumeHandle] = size.Value()
		if pv.Spec.ClaimRef != nil && pv.Status.Phase == corev1.VolumeBound {
			id := string(volumereq.ClaimForPVC(pv.Spec.ClaimRef.Namespace, pv.Spec.ClaimRef.Name))
			claims[id] = node
			claimBytes[id] = size.Value()
		}
	}
	contents, err := s.unstructuredList(ctx, snapshotContentGVR, "")
	if err != nil {
		return err
	}
	snapHandles := map[string]bool{}
	for _, c := range contents {
		if h, _, _ := unstructured.NestedString(c.Object, "status", "snapshotHandle"); h != "" {
			snapHandles[h] = true
		}
	}
	var problems []string
	seenSnaps := map[string]string{}
	for _, n := range s.liveNodes() {
		vols, err := nodeVolumes(ctx, n)
		if err != nil {
			return err
		}
		for id, size := range vols {
			want, ok := wantVols[n.name][id]
			switch {
			case ignore[id]:
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: LV %s (%d bytes) belongs to no PV", n.name, id, size))
			case size < want:
				problems = append(problems, fmt.Sprintf("%s: LV %s has %d bytes, its PV %d", n.name, id, size, want))
			}
		}
		for id := range wantVols[n.name] {
			if _, ok := vols[id]; !ok {
				problems = append(problems, fmt.Sprintf("%s: PV's volume %s is not on the node", n.name, id))
			}
		}
		snaps, err := nodeSnapshots(ctx, n)
		if err != nil {
			return err
		}
		for id := range snaps {
			if !snapHandles[id] {
				problems = append(problems, fmt.Sprintf("%s: snapshot %s belongs to no VolumeSnapshotContent", n.name, id))
			}
			if other, dup := seenSnaps[id]; dup {
				problems = append(problems, fmt.Sprintf("snapshot %s on %s and %s", id, other, n.name))
			}
			seenSnaps[id] = n.name
		}
		nls, err := s.ol.CsiV1alpha1().NodeLocalStorages().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		vg, ok := nlsVG(nls)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: NodeLocalStorage status has no VG %s", n.name, vgName))
			continue
		}
		var lvSum uint64
		reported := map[string]bool{}
		for _, lv := range vg.LogicalVolumes {
			lvSum += lv.Total
			reported[lv.Name] = true
		}
		for id := range vols {
			if !reported[id] {
				problems = append(problems, fmt.Sprintf("%s: NodeLocalStorage status lacks LV %s", n.name, id))
			}
		}
		for id := range snaps {
			if !reported[id] {
				problems = append(problems, fmt.Sprintf("%s: NodeLocalStorage status lacks snapshot LV %s", n.name, id))
			}
		}
		if len(reported) != len(vols)+len(snaps) {
			problems = append(problems, fmt.Sprintf("%s: NodeLocalStorage status lists %d LVs, the driver %d volumes and %d snapshots", n.name, len(reported), len(vols), len(snaps)))
		}
		if vg.Total-vg.Available != lvSum {
			problems = append(problems, fmt.Sprintf("%s: VG %s of %d bytes has %d free, but its LVs take %d", n.name, vgName, vg.Total, vg.Available, lvSum))
		}
	}
	for h := range snapHandles {
		if _, ok := seenSnaps[h]; !ok {
			problems = append(problems, fmt.Sprintf("VolumeSnapshotContent handle %s is on no running node", h))
		}
	}

	v, err := s.cacheView(ctx)
	if err != nil {
		return err
	}
	if !v.Synced {
		problems = append(problems, "extender cache not synced")
	}
	for _, oc := range v.Overcommits {
		problems = append(problems, "extender over-commit: "+string(oc))
	}
	charged := map[string]string{}
	chargedBytes := map[string]int64{}
	for _, nv := range v.Nodes {
		for _, c := range nv.Conflicts {
			problems = append(problems, fmt.Sprintf("extender conflict on %s: %s", nv.Name, c))
		}
		for _, vg := range nv.VolumeGroups {
			if vg.Requested > vg.Allocatable {
				problems = append(problems, fmt.Sprintf("extender: %s VG %s requests %d of %d allocatable", nv.Name, vg.Name, vg.Requested, vg.Allocatable))
			}
		}
		for _, c := range nv.Claims {
			charged[c.Claim] = nv.Name
			chargedBytes[c.Claim] = c.Bytes
		}
	}
	for id, node := range claims {
		if n := s.nodeByName(node); n == nil || n.gone {
			continue
		}
		if charged[id] != node {
			problems = append(problems, fmt.Sprintf("extender: claim %s on %s is charged on %q", id, node, charged[id]))
		} else if chargedBytes[id] < claimBytes[id] {
			problems = append(problems, fmt.Sprintf("extender: claim %s charged %d bytes, its PV has %d", id, chargedBytes[id], claimBytes[id]))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New(strings.Join(problems, "\n  "))
	}
	return nil
}

// requireConsistent waits (agents report every second, informers lag) until
// consistent holds.
func (s *system) requireConsistent(t testing.TB, ignore map[string]bool) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 45*time.Second, true, func(ctx context.Context) (bool, error) {
		last = s.consistent(ctx, ignore)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("storage state not consistent after 45s:\n  %v", last)
	}
}

// parallel runs fn for 0..n-1 on a few goroutines and joins the errors.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}
