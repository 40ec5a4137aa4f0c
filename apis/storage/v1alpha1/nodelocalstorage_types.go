package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeLocalStorage is the storage of one node: the spec says what the agent
// must initialise there and which resources Open-Local may allocate; the
// status is what the agent found. It is named after its node.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=nls
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.nodeStorageInfo.state.type`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.nodeStorageInfo.phase`
// +kubebuilder:printcolumn:name="AgentUpdateAt",type=date,JSONPath=`.status.nodeStorageInfo.state.lastHeartbeatTime`
// +kubebuilder:printcolumn:name="Allocatable",type=integer,JSONPath=`.status.nodeStorageInfo.volumeGroups[0].allocatable`,description="Allocatable bytes of the first volume group"
// +kubebuilder:printcolumn:name="SchedulerUpdateAt",type=date,JSONPath=`.status.filteredStorageInfo.updateStatusInfo.lastUpdateTime`,priority=1
// +kubebuilder:printcolumn:name="SchedulerUpdateStatus",type=string,JSONPath=`.status.filteredStorageInfo.updateStatusInfo.updateStatus`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.nodeName) || self.spec.nodeName == self.metadata.name",message="spec.nodeName must equal metadata.name: a NodeLocalStorage is named after its node"
type NodeLocalStorage struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec NodeLocalStorageSpec `json:"spec,omitzero"`
	// +optional
	Status NodeLocalStorageStatus `json:"status,omitzero"`
}

// NodeLocalStorageList is a list of NodeLocalStorage.
//
// +kubebuilder:object:root=true
type NodeLocalStorageList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []NodeLocalStorage `json:"items"`
}

// NodeLocalStorageSpec is what a node must initialise and what may be allocated on it.
type NodeLocalStorageSpec struct {
	// NodeName is the node this object describes; it equals metadata.name.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	NodeName string `json:"nodeName,omitempty"`
	// SpdkConfig switches the node to the SPDK backend when deviceType is set.
	// +optional
	SpdkConfig SpdkConfig `json:"spdkConfig,omitzero"`
	// ListConfig says which resources of the node Open-Local may allocate.
	// +optional
	ListConfig ListConfig `json:"listConfig,omitzero"`
	// ResourceToBeInited lists the VGs and mount points the agent creates.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.vgs) || self.vgs.all(a, self.vgs.all(b, a.name == b.name || !a.devices.exists(d, d in b.devices)))",message="a device is listed in more than one volume group of resourceToBeInited.vgs"
	// +kubebuilder:validation:XValidation:rule="!has(self.vgs) || !has(self.mountpoints) || self.mountpoints.all(m, !self.vgs.exists(v, m.device in v.devices))",message="a device of resourceToBeInited.mountpoints is also listed in resourceToBeInited.vgs"
	// +kubebuilder:validation:XValidation:rule="!has(self.mountpoints) || self.mountpoints.all(a, self.mountpoints.exists_one(b, b.device == a.device))",message="a device is used by more than one mount point of resourceToBeInited.mountpoints"
	ResourceToBeInited ResourceToBeInited `json:"resourceToBeInited,omitzero"`
}

// SpdkConfig configures the SPDK backend of a node.
type SpdkConfig struct {
	// DeviceType is the SPDK device type; a non-empty value enables SPDK on the node.
	// +optional
	// +kubebuilder:validation:MaxLength=8
	DeviceType string `json:"deviceType,omitempty"`
	// RPCSocket is the path of the SPDK RPC socket.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	RPCSocket string `json:"rpcSocket,omitempty"`
}

// ListConfig holds the include/exclude lists of each resource kind. Only listed
// resources become schedulable.
type ListConfig struct {
	// VGs filters volume groups by name.
	// +optional
	VGs ListFilter `json:"vgs,omitzero"`
	// MountPoints filters mount points by path.
	// +optional
	MountPoints ListFilter `json:"mountPoints,omitzero"`
	// Devices filters block devices by path.
	// +optional
	Devices ListFilter `json:"devices,omitzero"`
}

// ListFilter is an include list and an exclude list of Go regular expressions,
// each of which must match a whole name. A name is listed when an include
// pattern matches it and no exclude pattern does.
type ListFilter struct {
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=1024
	Include []string `json:"include,omitempty"`
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=1024
	Exclude []string `json:"exclude,omitempty"`
}

// ResourceToBeInited is what the agent creates on the node when it is missing.
// An existing VG of the same name is left as it is.
//
// Devices may not be shared: a device in two VGs, or in a VG and a mount
// point, or under two mount points, is rejected on a NodeLocalStorage and in
// an init config's globalConfig. In nodesConfig entries these cross-list rules
// would exceed the apiserver's validation cost budget, so there they are
// enforced on the NodeLocalStorage the controller derives.
type ResourceToBeInited struct {
	// VGs are the volume groups to create, each from its devices.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=50
	VGs []VGToBeInited `json:"vgs,omitempty"`
	// MountPoints are the filesystems to create and mount.
	// +optional
	// +listType=map
	// +listMapKey=path
	// +kubebuilder:validation:MaxItems=50
	MountPoints []MountPointToBeInited `json:"mountpoints,omitempty"`
}

// VGToBeInited is a volume group to create.
type VGToBeInited struct {
	// Name is the VG name. LVM accepts letters, digits and "+_.-", not a
	// leading "-", not "." or "..", and at most 127 characters.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=127
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9+_.][a-zA-Z0-9+_.-]*$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="\".\" and \"..\" are not valid volume group names"
	Name string `json:"name"`
	// Devices are the block devices that become the VG's physical volumes.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^/dev/[^ ]+$`
	Devices []string `json:"devices"`
}

// FSType is a filesystem Open-Local can create.
// +kubebuilder:validation:Enum=ext4;ext3;xfs
type FSType string

// Filesystems Open-Local can create.
const (
	FSTypeExt4 FSType = "ext4"
	FSTypeExt3 FSType = "ext3"
	FSTypeXFS  FSType = "xfs"
)

// MountPointToBeInited is a filesystem to create on a device and mount at a path.
type MountPointToBeInited struct {
	// Path is the absolute path to mount at.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^(/[^/ ]*)+/?$`
	Path string `json:"path"`
	// Device is the block device to format.
	// +required
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/dev/[^ ]+$`
	Device string `json:"device"`
	// FsType is the filesystem to create.
	// +optional
	// +kubebuilder:default=ext4
	FsType FSType `json:"fsType,omitempty"`
	// Options are the mount options.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=256
	Options []string `json:"options,omitempty"`
}

// NodeLocalStorageStatus is what the agent found on the node and what it kept
// after filtering, plus the conditions of the object.
type NodeLocalStorageStatus struct {
	// NodeStorageInfo is every resource the agent discovered.
	// +optional
	NodeStorageInfo NodeStorageInfo `json:"nodeStorageInfo,omitzero"`
	// FilteredStorageInfo is what listConfig keeps: what the scheduler allocates from.
	// +optional
	FilteredStorageInfo FilteredStorageInfo `json:"filteredStorageInfo,omitzero"`
	// Conditions are ConfigValid, VolumeGroupReady and Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// MediaType is the medium of a device.
// +kubebuilder:validation:Enum=ssd;hdd
type MediaType string

// Media types.
const (
	MediaTypeSSD MediaType = "ssd"
	MediaTypeHDD MediaType = "hdd"
)

// StorageConditionType is the health of a device, VG, LV or mount point.
// +kubebuilder:validation:Enum=DiskReady;DiskFull;DiskFault
type StorageConditionType string

// Storage conditions.
const (
	StorageReady StorageConditionType = "DiskReady"
	// StorageFull is set when nothing is available any more.
	StorageFull  StorageConditionType = "DiskFull"
	StorageFault StorageConditionType = "DiskFault"
)

// StoragePhase is the life-cycle phase of the node's storage.
// +kubebuilder:validation:Enum=Pending;Running;Terminated
type StoragePhase string

// Storage phases.
const (
	StoragePending    StoragePhase = "Pending"
	StorageRunning    StoragePhase = "Running"
	StorageTerminated StoragePhase = "Terminated"
)

// NodeStorageInfo is every storage resource of the node as the agent found it.
type NodeStorageInfo struct {
	// +optional
	// +listType=atomic
	DeviceInfos []DeviceInfo `json:"deviceInfo,omitempty"`
	// +optional
	// +listType=atomic
	VolumeGroups []VolumeGroup `json:"volumeGroups,omitempty"`
	// +optional
	// +listType=atomic
	MountPoints []MountPoint `json:"mountPoints,omitempty"`
	// +optional
	Phase StoragePhase `json:"phase,omitempty"`
	// +optional
	State StorageState `json:"state,omitzero"`
}

// DeviceInfo is a block device (a disk or a partition).
type DeviceInfo struct {
	// Name is the device path, e.g. /dev/vdb.
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	MediaType MediaType `json:"mediaType,omitempty"`
	// Total is the size in bytes.
	// +optional
	Total uint64 `json:"total,omitempty"`
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
	// +optional
	Condition StorageConditionType `json:"condition,omitempty"`
	// Signatures are the filesystem, RAID, LVM and partition-table
	// signatures on the device, as wipefs lists them. A device with any is
	// not blank: the scheduler does not count it as free for a new Device
	// volume, as the CSI driver would refuse to hand it out. An Open-Local
	// addition: readers that do not know the field ignore it.
	// +optional
	// +listType=atomic
	Signatures []string `json:"signatures,omitempty"`
}

// VolumeGroup is an LVM volume group of the node.
type VolumeGroup struct {
	// +optional
	Name string `json:"name,omitempty"`
	// PhysicalVolumes are the devices of the VG.
	// +optional
	// +listType=atomic
	PhysicalVolumes []string `json:"physicalVolumes,omitempty"`
	// +optional
	// +listType=atomic
	LogicalVolumes []LogicalVolume `json:"logicalVolumes,omitempty"`
	// Total is the VG size in bytes.
	// +optional
	Total uint64 `json:"total,omitempty"`
	// Available is the free space of the VG in bytes.
	// +optional
	Available uint64 `json:"available,omitempty"`
	// Allocatable is what Open-Local may allocate in bytes: the total less
	// foreign LVs and any reservation.
	// +optional
	Allocatable uint64 `json:"allocatable,omitempty"`
	// +optional
	Condition StorageConditionType `json:"condition,omitempty"`
}

// LogicalVolume is an LVM logical volume.
type LogicalVolume struct {
	// +optional
	Name string `json:"name,omitempty"`
	// VGName is the volume group the LV belongs to.
	// +optional
	VGName string `json:"vgname,omitempty"`
	// Total is the LV size in bytes.
	// +optional
	Total uint64 `json:"total,omitempty"`
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
	// +optional
	Condition StorageConditionType `json:"condition,omitempty"`
}

// MountPoint is a mounted filesystem under the agent's mount root.
type MountPoint struct {
	// Name is the mount path.
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Total uint64 `json:"total,omitempty"`
	// +optional
	Available uint64 `json:"available,omitempty"`
	// +optional
	FsType string `json:"fsType,omitempty"`
	// IsBind tells whether a volume is bound to the mount point.
	// +optional
	IsBind bool `json:"isBind,omitempty"`
	// +optional
	// +listType=atomic
	Options []string `json:"options,omitempty"`
	// +optional
	Device string `json:"device,omitempty"`
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
	// +optional
	Condition StorageConditionType `json:"condition,omitempty"`
}

// StorageState is the overall state of the node's storage and the agent's heartbeat.
type StorageState struct {
	// +optional
	Type StorageConditionType `json:"type,omitempty"`
	// +optional
	// +kubebuilder:validation:Enum=True;False;Unknown
	Status metav1.ConditionStatus `json:"status,omitempty"`
	// LastHeartbeatTime is when the agent last reported.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// FilteredStorageInfo is what listConfig keeps of the node's resources.
type FilteredStorageInfo struct {
	// +optional
	// +listType=atomic
	VolumeGroups []string `json:"volumeGroups,omitempty"`
	// +optional
	// +listType=atomic
	MountPoints []string `json:"mountPoints,omitempty"`
	// +optional
	// +listType=atomic
	Devices []string `json:"devices,omitempty"`
	// +optional
	UpdateStatus UpdateStatusInfo `json:"updateStatusInfo,omitzero"`
}

// UpdateStatus is the outcome of the last status update of the filtered list.
// +kubebuilder:validation:Enum=pending;accepted;failed
type UpdateStatus string

// Update outcomes.
const (
	UpdateStatusPending  UpdateStatus = "pending"
	UpdateStatusAccepted UpdateStatus = "accepted"
	UpdateStatusFailed   UpdateStatus = "failed"
)

// UpdateStatusInfo records the last update of the filtered list.
type UpdateStatusInfo struct {
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`
	// +optional
	Status UpdateStatus `json:"updateStatus,omitempty"`
	// +optional
	Reason string `json:"reason,omitempty"`
}
