package cache

import (
	"slices"
	"strings"

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
	// formatted are devices not offered only because they carry
	// signatures; holding offers those a PersistentVolume holds.
	formatted []core.DeviceCapacity
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
	return &nlsRecord{capacity: res.Capacity, existing: res.Existing, skipped: res.Skipped, formatted: res.Formatted}
}

// holding is the record with the formatted devices that held names (the
// devices of the node's Device PersistentVolumes) offered too: a Device
// volume's device carries its filesystem, and its volume is charged within
// the node's capacity, not beyond it, as the CSI driver counts it.
func (r *nlsRecord) holding(held map[string]bool) *nlsRecord {
	var add []core.DeviceCapacity
	for _, d := range r.formatted {
		if held[d.Name] {
			add = append(add, d)
		}
	}
	if len(add) == 0 {
		return r
	}
	out := *r
	out.capacity.Devices = append(slices.Clone(r.capacity.Devices), add...)
	slices.SortFunc(out.capacity.Devices, func(a, b core.DeviceCapacity) int { return strings.Compare(a.Name, b.Name) })
	return &out
}
