package demo

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/hostexec/simhost"
	"github.com/open-local/open-local/pkg/volumereq"
)

// The built-in cluster: what every simulated node has, what the init config
// makes of it, and the workload.
const (
	namespace      = "default"
	initConfigName = "open-local"
	poolName       = "open-local-pool-0"
	vgDevice       = "/dev/vdb"
	rawDevice      = "/dev/vdc"
	mountDevice    = "/dev/vdd"
	mountPath      = "/mnt/open-local/disk-0"
	lvmClass       = "open-local-lvm"
	deviceClass    = "open-local-device-ssd"
	snapshotClass  = "open-local-lvm"
	webSet         = "web"
	dbSet          = "db"
	dataTemplate   = "data"
	rawTemplate    = "raw"
	// Sizes: four 20Gi volumes fill a 100Gi VG (LVM keeps its first MiB),
	// so binpack visibly moves on to the next node with the fifth.
	webVolumeSize = "20Gi"
	dbVolumeSize  = "40Gi"
	expandedSize  = "30Gi"
	snapshotCOW   = "4Gi"

	annSelectedNode  = "volume.kubernetes.io/selected-node"
	annBindCompleted = "pv.kubernetes.io/bind-completed"
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
)

// Snapshot resources (snapshot.storage.k8s.io/v1), served by the dynamic fake.
var (
	snapshotGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	contentGVR  = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
)

// hostConfig is one simulated node's disks: a 100Gi ssd for the VG, a blank
// 50Gi ssd for Device volumes and a 200Gi hdd for a mount point. Nothing is
// initialised: the agent creates the VG and the mount point from the init
// config.
func hostConfig() simhost.Config {
	return simhost.Config{
		ExtentSize: "4Mi",
		Devices: []simhost.DeviceConfig{
			{Name: vgDevice, Size: "100Gi", Media: "ssd"},
			{Name: rawDevice, Size: "50Gi", Media: "ssd"},
			{Name: mountDevice, Size: "200Gi", Media: "hdd"},
		},
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%d", i+1) }

func newNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelOSStable: "linux",
		}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
			Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi")},
		},
	}
}

// initConfig is open-local's default NodeLocalStorageInitConfig extended to
// the demo's disks: the VG from /dev/vdb, an ext4 mount point on /dev/vdd,
// and /dev/vdc listed for Device volumes.
func initConfig() *v1alpha1.NodeLocalStorageInitConfig {
	return &v1alpha1.NodeLocalStorageInitConfig{
		ObjectMeta: metav1.ObjectMeta{Name: initConfigName},
		Spec: v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: v1alpha1.StorageConfig{
			ListConfig: v1alpha1.ListConfig{
				VGs:         v1alpha1.ListFilter{Include: []string{"open-local-pool-[0-9]+", "yoda-pool[0-9]+", "ackdistro-pool"}},
				Devices:     v1alpha1.ListFilter{Include: []string{rawDevice}},
				MountPoints: v1alpha1.ListFilter{Include: []string{"/mnt/open-local/disk-[0-9]+"}},
			},
			ResourceToBeInited: v1alpha1.ResourceToBeInited{
				VGs:         []v1alpha1.VGToBeInited{{Name: poolName, Devices: []string{vgDevice}}},
				MountPoints: []v1alpha1.MountPointToBeInited{{Path: mountPath, Device: mountDevice, FsType: v1alpha1.FSTypeExt4}},
			},
		}},
	}
}

// storageClasses are two of open-local's StorageClasses.
func storageClasses() []*storagev1.StorageClass {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	yes := true
	return []*storagev1.StorageClass{
		{
			ObjectMeta:    metav1.ObjectMeta{Name: lvmClass},
			Provisioner:   volumereq.DriverName,
			Parameters:    map[string]string{volumereq.ParamVolumeType: string(volumereq.VolumeTypeLVM), volumereq.ParamFSType: "ext4"},
			ReclaimPolicy: &del, VolumeBindingMode: &wffc, AllowVolumeExpansion: &yes,
		},
		{
			ObjectMeta:    metav1.ObjectMeta{Name: deviceClass},
			Provisioner:   volumereq.DriverName,
			Parameters:    map[string]string{volumereq.ParamVolumeType: string(volumereq.VolumeTypeDevice), volumereq.ParamMediaType: "ssd", volumereq.ParamFSType: "ext4"},
			ReclaimPolicy: &del, VolumeBindingMode: &wffc,
		},
	}
}

// snapshotClassParams are those of open-local's VolumeSnapshotClass.
func snapshotClassParams() map[string]string {
	return map[string]string{
		"csi.aliyun.com/readonly":                     "true",
		"csi.aliyun.com/snapshot-initial-size":        snapshotCOW,
		"csi.aliyun.com/snapshot-expansion-threshold": "50%",
		"csi.aliyun.com/snapshot-expansion-size":      "1Gi",
	}
}

// member is one pod of a StatefulSet with its claims, as the StatefulSet
// controller creates them: pod <set>-<i>, PVC <template>-<set>-<i>.
type member struct {
	pod  *corev1.Pod
	pvcs []*corev1.PersistentVolumeClaim
}

func newMember(set string, i int, template, class, size string) member {
	name := fmt.Sprintf("%s-%d", set, i)
	claim := template + "-" + name
	cls := class
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: namespace, Labels: map[string]string{"app": set}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &cls,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": set}},
		Spec: corev1.PodSpec{
			SchedulerName: corev1.DefaultSchedulerName,
			Containers: []corev1.Container{{Name: set, Image: "registry.k8s.io/pause:3.10",
				VolumeMounts: []corev1.VolumeMount{{Name: template, MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: template, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	return member{pod: pod, pvcs: []*corev1.PersistentVolumeClaim{pvc}}
}

// workload is the StatefulSet web (replicas pods with a 20Gi LVM volume
// each) followed by the StatefulSet db (one pod with a whole ssd).
func workload(replicas int) []member {
	out := make([]member, 0, replicas+1)
	for i := 0; i < replicas; i++ {
		out = append(out, newMember(webSet, i, dataTemplate, lvmClass, webVolumeSize))
	}
	return append(out, newMember(dbSet, 0, rawTemplate, deviceClass, dbVolumeSize))
}

// volumeSnapshot is a VolumeSnapshot of a PVC, as a user writes it.
func volumeSnapshot(name, claim string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1",
		"kind":       "VolumeSnapshot",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"volumeSnapshotClassName": snapshotClass,
			"source":                  map[string]any{"persistentVolumeClaimName": claim},
		},
	}}
	return u
}

// snapshotContent is the VolumeSnapshotContent the snapshot controller and
// csi-snapshotter make for a snapshot taken by the driver.
func snapshotContent(name, snapshot string, snapshotUID, volumeHandle, snapshotHandle string, size int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1",
		"kind":       "VolumeSnapshotContent",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"driver":                  volumereq.DriverName,
			"deletionPolicy":          "Delete",
			"volumeSnapshotClassName": snapshotClass,
			"source":                  map[string]any{"volumeHandle": volumeHandle},
			"volumeSnapshotRef":       map[string]any{"name": snapshot, "namespace": namespace, "uid": snapshotUID},
		},
		"status": map[string]any{
			"snapshotHandle": snapshotHandle,
			"readyToUse":     true,
			"restoreSize":    size,
		},
	}}
}
