package cache

import (
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/nodecap"
)

// nlsRecord is what a NodeLocalStorage offers, computed once per update.
type nlsRecord struct {
	capacity core.NodeCapacity
	// existing are Open-Local's LVs the agent reports in the selected VGs.
	existing []nodecap.ExistingVolume
	skipped  []nodecap.Skipped
	// err is why the node offers nothing (an invalid listConfig pattern or
	// storage-reserved annotation).
	err error
}

// parseNLS computes what a NodeLocalStorage offers with the same rules as
// the simulator and the CSI driver (pkg/nodecap).
func parseNLS(nls *v1alpha1.NodeLocalStorage, ownedPrefixes []string) *nlsRecord {
	ns, lc := nodecap.FromNLS(nls)
	res, err := nodecap.Compute(ns, lc, nls.Annotations[core.ReservedAnnotation], nodecap.Options{OwnedLVPrefixes: ownedPrefixes})
	if err != nil {
		return &nlsRecord{err: err}
	}
	return &nlsRecord{capacity: res.Capacity, existing: res.Existing, skipped: res.Skipped}
}
