package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/pkg/generated/clientset/versioned"
	localinformers "github.com/open-local/open-local/pkg/generated/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Clients are what Run watches through.
type Clients struct {
	Kube  kubernetes.Interface
	Local versioned.Interface
	// Dynamic reads VolumeSnapshots and VolumeSnapshotContents; nil, or a
	// cluster without snapshot.storage.k8s.io/v1, disables restores.
	Dynamic dynamic.Interface
}

// Snapshot resources, read through the dynamic client so that the
// extender needs no snapshot client module.
var (
	snapshotGVR = schema.GroupVersionResource{Group: SnapshotGroup, Version: "v1", Resource: "volumesnapshots"}
	contentGVR  = schema.GroupVersionResource{Group: SnapshotGroup, Version: "v1", Resource: "volumesnapshotcontents"}
)

// Run starts the informers, feeds the cache from them and returns once
// their initial lists are in (the cache is then Synced). The informers stop
// with ctx.
func (c *Cache) Run(ctx context.Context, cl Clients) error {
	logger := klog.FromContext(ctx)
	kf := informers.NewSharedInformerFactoryWithOptions(cl.Kube, 0, informers.WithTransform(stripKube))
	var synced []toolscache.InformerSynced
	lf := localinformers.NewSharedInformerFactoryWithOptions(cl.Local, 0, localinformers.WithTransform(stripNLS))

	if err := watch(kf.Core().V1().Nodes().Informer(), c.UpsertNode, func(n *corev1.Node) { c.DeleteNode(n.Name) }, &synced); err != nil {
		return err
	}
	if err := watch(kf.Core().V1().PersistentVolumes().Informer(), c.UpsertPV, func(pv *corev1.PersistentVolume) { c.DeletePV(pv.Name) }, &synced); err != nil {
		return err
	}
	if err := watch(kf.Core().V1().PersistentVolumeClaims().Informer(), c.UpsertPVC, func(p *corev1.PersistentVolumeClaim) { c.DeletePVC(p.Namespace, p.Name) }, &synced); err != nil {
		return err
	}
	if err := watch(kf.Storage().V1().StorageClasses().Informer(), c.UpsertStorageClass, func(sc *storagev1.StorageClass) { c.DeleteStorageClass(sc.Name) }, &synced); err != nil {
		return err
	}
	if err := watch(kf.Core().V1().Pods().Informer(), c.UpsertPod, func(p *corev1.Pod) { c.DeletePod(p.Namespace, p.Name) }, &synced); err != nil {
		return err
	}
	if err := watch(lf.Csi().V1alpha1().NodeLocalStorages().Informer(), c.UpsertNLS, func(n *v1alpha1.NodeLocalStorage) { c.DeleteNLS(n.Name) }, &synced); err != nil {
		return err
	}

	var df dynamicinformer.DynamicSharedInformerFactory
	if cl.Dynamic != nil && snapshotsServed(ctx, cl.Kube) {
		df = dynamicinformer.NewFilteredDynamicSharedInformerFactory(cl.Dynamic, 0, metav1.NamespaceAll, nil)
		if err := watch(df.ForResource(snapshotGVR).Informer(), c.UpsertSnapshot, func(u *unstructured.Unstructured) { c.DeleteSnapshot(u.GetNamespace(), u.GetName()) }, &synced); err != nil {
			return err
		}
		if err := watch(df.ForResource(contentGVR).Informer(), c.UpsertSnapshotContent, func(u *unstructured.Unstructured) { c.DeleteSnapshotContent(u.GetName()) }, &synced); err != nil {
			return err
		}
		for _, inf := range []toolscache.SharedIndexInformer{df.ForResource(snapshotGVR).Informer(), df.ForResource(contentGVR).Informer()} {
			if err := inf.SetTransform(stripSnapshot); err != nil {
				return err
			}
		}
	} else {
		logger.Info("Cache: snapshot.storage.k8s.io/v1 is not served; PVCs restored from snapshots will not be scheduled")
		c.SetSnapshotAPI(false)
	}

	kf.Start(ctx.Done())
	lf.Start(ctx.Done())
	if df != nil {
		df.Start(ctx.Done())
	}
	for typ, ok := range kf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync: %w", typ, context.Cause(ctx))
		}
	}
	for typ, ok := range lf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync (is the NodeLocalStorage CRD installed?): %w", typ, context.Cause(ctx))
		}
	}
	if df != nil {
		for gvr, ok := range df.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("informer for %v did not sync: %w", gvr, context.Cause(ctx))
			}
		}
	}
	// The stores are complete; wait for the handlers to have applied them.
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("the cache did not sync: %w", context.Cause(ctx))
	}
	c.MarkSynced()
	logger.Info("Cache synced", "nodes", c.Totals().Nodes, "claims", c.NumClaims())
	return nil
}

// watch routes an informer's events to upsert and del, unwrapping
// tombstones; synced tells when the handler has seen the initial list.
func watch[T any](inf toolscache.SharedIndexInformer, upsert func(T), del func(T), synced *[]toolscache.InformerSynced) error {
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { withObject(obj, upsert) },
		UpdateFunc: func(_, obj any) { withObject(obj, upsert) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			withObject(obj, del)
		},
	})
	if err != nil {
		return err
	}
	*synced = append(*synced, reg.HasSynced)
	return nil
}

func withObject[T any](obj any, fn func(T)) {
	if t, ok := obj.(T); ok {
		fn(t)
	}
}

// snapshotsServed asks discovery whether the snapshot API exists. An API
// server that does not answer yet is asked again: giving up would disable
// restores for the life of the process.
func snapshotsServed(ctx context.Context, kube kubernetes.Interface) bool {
	for delay := 500 * time.Millisecond; ; delay = min(2*delay, 30*time.Second) {
		list, err := kube.Discovery().ServerResourcesForGroupVersion(SnapshotGroup + "/v1")
		switch {
		case err == nil:
			want := map[string]bool{snapshotGVR.Resource: false, contentGVR.Resource: false}
			for _, r := range list.APIResources {
				if _, ok := want[r.Name]; ok {
					want[r.Name] = true
				}
			}
			return want[snapshotGVR.Resource] && want[contentGVR.Resource]
		case apierrors.IsNotFound(err):
			return false
		}
		klog.FromContext(ctx).Error(err, "Cache: cannot discover snapshot.storage.k8s.io/v1; retrying", "after", delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}

// The transforms keep only what the cache reads: at 5,000 nodes a full
// Node (images, conditions) or Pod costs kilobytes each in the informer store.

func stripMeta(m *metav1.ObjectMeta, keepAnnotations ...string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}
	for _, k := range keepAnnotations {
		if v, ok := m.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	return out
}

func stripKube(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Node:
		n := &corev1.Node{ObjectMeta: stripMeta(&o.ObjectMeta)}
		if h, ok := o.Labels[LabelHostname]; ok {
			n.Labels = map[string]string{LabelHostname: h}
		}
		return n, nil
	case *corev1.Pod:
		p := &corev1.Pod{ObjectMeta: stripMeta(&o.ObjectMeta)}
		p.Spec.NodeName = o.Spec.NodeName
		for _, v := range o.Spec.Volumes {
			if v.PersistentVolumeClaim != nil || v.Ephemeral != nil || v.CSI != nil {
				if v.Ephemeral != nil {
					v.Ephemeral = &corev1.EphemeralVolumeSource{} // the template is not read
				}
				p.Spec.Volumes = append(p.Spec.Volumes, v)
			}
		}
		p.Status.Phase = o.Status.Phase
		for _, c := range o.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				p.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status, Reason: c.Reason}}
			}
		}
		return p, nil
	case *corev1.PersistentVolume:
		pv := o.DeepCopy()
		pv.ObjectMeta = stripMeta(&o.ObjectMeta, annPVAllocated)
		return pv, nil
	case *corev1.PersistentVolumeClaim:
		pvc := o.DeepCopy()
		pvc.ObjectMeta = stripMeta(&o.ObjectMeta, AnnSelectedNode, "volume.beta.kubernetes.io/storage-class")
		pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: o.Status.Phase}
		return pvc, nil
	case *storagev1.StorageClass:
		sc := o.DeepCopy()
		sc.ObjectMeta = stripMeta(&o.ObjectMeta, "storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")
		return sc, nil
	}
	return obj, nil
}

func stripNLS(obj any) (any, error) {
	o, ok := obj.(*v1alpha1.NodeLocalStorage)
	if !ok {
		return obj, nil
	}
	n := &v1alpha1.NodeLocalStorage{ObjectMeta: stripMeta(&o.ObjectMeta, v1alpha1.AnnotationStorageReserved)}
	n.Spec.NodeName = o.Spec.NodeName
	n.Spec.ListConfig = o.Spec.ListConfig
	n.Status.NodeStorageInfo = v1alpha1.NodeStorageInfo{
		DeviceInfos:  o.Status.NodeStorageInfo.DeviceInfos,
		VolumeGroups: o.Status.NodeStorageInfo.VolumeGroups,
		MountPoints:  o.Status.NodeStorageInfo.MountPoints,
	}
	return n, nil
}

func stripSnapshot(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetName(u.GetName())
	out.SetNamespace(u.GetNamespace())
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	for _, path := range [][]string{
		{"spec", "source", "volumeHandle"}, {"spec", "source", "snapshotHandle"}, {"spec", "source", "volumeSnapshotContentName"},
		{"status", "boundVolumeSnapshotContentName"}, {"status", "snapshotHandle"},
	} {
		if v, found, _ := unstructured.NestedString(u.Object, path...); found {
			_ = unstructured.SetNestedField(out.Object, v, path...)
		}
	}
	return out, nil
}
