package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeLocalStorageInitConfig is the template every NodeLocalStorage spec is
// derived from: the global config, replaced for the nodes that a nodesConfig
// entry selects (the last matching entry wins).
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=nlsc
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Selected",type=integer,JSONPath=`.status.selectedNodes`
// +kubebuilder:printcolumn:name="Synced",type=integer,JSONPath=`.status.syncedNodes`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failedNodeCount`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeLocalStorageInitConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec NodeLocalStorageInitConfigSpec `json:"spec,omitzero"`
	// +optional
	Status NodeLocalStorageInitConfigStatus `json:"status,omitzero"`
}

// NodeLocalStorageInitConfigList is a list of NodeLocalStorageInitConfig.
//
// +kubebuilder:object:root=true
type NodeLocalStorageInitConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []NodeLocalStorageInitConfig `json:"items"`
}

// NodeLocalStorageInitConfigSpec is the global config and the per-node overrides.
type NodeLocalStorageInitConfigSpec struct {
	// GlobalConfig applies to every node no nodesConfig entry selects.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.resourceToBeInited) || !has(self.resourceToBeInited.vgs) || self.resourceToBeInited.vgs.all(a, self.resourceToBeInited.vgs.all(b, a.name == b.name || !a.devices.exists(d, d in b.devices)))",message="a device is listed in more than one volume group of resourceToBeInited.vgs"
	// +kubebuilder:validation:XValidation:rule="!has(self.resourceToBeInited) || !has(self.resourceToBeInited.vgs) || !has(self.resourceToBeInited.mountpoints) || self.resourceToBeInited.mountpoints.all(m, !self.resourceToBeInited.vgs.exists(v, m.device in v.devices))",message="a device of resourceToBeInited.mountpoints is also listed in resourceToBeInited.vgs"
	// +kubebuilder:validation:XValidation:rule="!has(self.resourceToBeInited) || !has(self.resourceToBeInited.mountpoints) || self.resourceToBeInited.mountpoints.all(a, self.resourceToBeInited.mountpoints.exists_one(b, b.device == a.device))",message="a device is used by more than one mount point of resourceToBeInited.mountpoints"
	GlobalConfig StorageConfig `json:"globalConfig,omitzero"`
	// NodesConfig entries replace the global config, as a whole, on the nodes
	// their selector matches; when several match, the last one wins.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	NodesConfig []NodeConfig `json:"nodesConfig,omitempty"`
}

// StorageConfig is the part of a NodeLocalStorage spec an init config sets.
type StorageConfig struct {
	// +optional
	ListConfig ListConfig `json:"listConfig,omitzero"`
	// +optional
	ResourceToBeInited ResourceToBeInited `json:"resourceToBeInited,omitzero"`
	// +optional
	SpdkConfig SpdkConfig `json:"spdkConfig,omitzero"`
}

// NodeConfig is the config of the nodes a label selector matches. A missing
// selector matches no node, an empty one matches every node.
type NodeConfig struct {
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	StorageConfig `json:",inline"`
}

// MaxFailedNodes bounds status.failedNodes; failedNodeCount has the full count.
const MaxFailedNodes = 20

// NodeLocalStorageInitConfigStatus reports how the controller applied the config.
type NodeLocalStorageInitConfigStatus struct {
	// ObservedGeneration is the generation every selected node was last
	// reconciled against.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// SelectedNodes is the number of nodes the controller manages.
	// +optional
	SelectedNodes int32 `json:"selectedNodes"`
	// SyncedNodes is the number of selected nodes whose NodeLocalStorage is in
	// line with this config.
	// +optional
	SyncedNodes int32 `json:"syncedNodes"`
	// FailedNodeCount is the number of selected nodes the controller could not sync.
	// +optional
	FailedNodeCount int32 `json:"failedNodeCount"`
	// FailedNodes names some of the failed nodes (at most 20) and why they failed.
	// +optional
	// +listType=map
	// +listMapKey=node
	// +kubebuilder:validation:MaxItems=20
	FailedNodes []FailedNode `json:"failedNodes,omitempty"`
	// Conditions are ConfigValid and Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// FailedNode is a node whose NodeLocalStorage could not be brought in line.
type FailedNode struct {
	// +required
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
}
