package v1alpha1

// Condition types of status.conditions.
const (
	// ConditionConfigValid is False when the spec cannot be applied as written,
	// e.g. a listConfig pattern is not a valid regular expression (reason
	// InvalidRegexp, the message names the field and the pattern) or a
	// nodesConfig selector is invalid (reason InvalidSelector).
	ConditionConfigValid = "ConfigValid"
	// ConditionVolumeGroupReady is True when every VG of resourceToBeInited exists.
	ConditionVolumeGroupReady = "VolumeGroupReady"
	// ConditionReady is True when the object is fully applied: for a
	// NodeLocalStorage, the node's storage is initialised and reported; for a
	// NodeLocalStorageInitConfig, every selected node is synced.
	ConditionReady = "Ready"
)

// Condition reasons.
const (
	ReasonValid           = "Valid"
	ReasonInvalidRegexp   = "InvalidRegexp"
	ReasonInvalidSelector = "InvalidSelector"
	ReasonSynced          = "Synced"
	ReasonSyncFailed      = "SyncFailed"
	ReasonSyncPending     = "SyncPending"
	ReasonConfigInvalid   = "ConfigInvalid"
	ReasonVGCreated       = "VolumeGroupsCreated"
	ReasonVGCreateFailed  = "VolumeGroupCreateFailed"
)

// Labels and annotations Open-Local puts on its objects.
const (
	// LabelManagedBy marks a NodeLocalStorage the controller created; the
	// controller deletes only NodeLocalStorages that carry it.
	LabelManagedBy = "csi.aliyun.com/managed-by"
	// ManagedByController is the value of LabelManagedBy.
	ManagedByController = "open-local-controller"
	// AnnotationInitConfig names the NodeLocalStorageInitConfig the spec was derived from.
	AnnotationInitConfig = "csi.aliyun.com/init-config"
	// AnnotationInitConfigGeneration is the generation of that config at the last derivation.
	AnnotationInitConfigGeneration = "csi.aliyun.com/init-config-generation"
	// AnnotationDerivedSpecHash is the hash of the spec the config gave for this
	// node at the last derivation. While it still matches, the config has
	// nothing new for the node and manual edits of the spec are kept.
	AnnotationDerivedSpecHash = "csi.aliyun.com/derived-spec-hash"
	// AnnotationStorageReserved reserves VG capacity: JSON {"<vg>":"10Gi"|"20%"}.
	AnnotationStorageReserved = "csi.aliyun.com/storage-reserved"
)
