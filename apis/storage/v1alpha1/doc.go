// Package v1alpha1 is the csi.aliyun.com/v1alpha1 API of Open-Local.
//
// It holds the two cluster-scoped resources the storage control plane shares:
// NodeLocalStorage (one per node, named after it: what the node must
// initialise and may allocate, and what the agent found there) and
// NodeLocalStorageInitConfig (the cluster-wide template the controller derives
// every NodeLocalStorage spec from). The JSON field names are those of
// open-local v0.8, so existing manifests and objects decode unchanged; the
// additions (status.conditions, the NodeLocalStorageInitConfig status) are
// optional fields that older readers ignore.
//
// +k8s:deepcopy-gen=package
// +kubebuilder:object:generate=true
// +groupName=csi.aliyun.com
package v1alpha1
