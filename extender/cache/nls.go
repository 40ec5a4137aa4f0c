package cache

import (
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
	// err is why the node offers nothing (an invalid listConfig pattern or
	// storage-reserved annotation).
	err error
}

// nodeStorageOf converts what the agent reported into core's model.
func nodeStorageOf(nls *v1alpha1.NodeLocalStorage) core.NodeStorage {
	var ns core.NodeStorage
	info := &nls.Status.NodeStorageInfo
	for _, d := range info.DeviceInfos {
		ns.Devices = append(ns.Devices, core.BlockDevice{
			Name:      d.Name,
			SizeBytes: clampInt64(d.Total),
			Media:     mediaOf(string(d.MediaType)),
			ReadOnly:  d.ReadOnly,
		})
	}
	nodecap.LinkPartitions(ns.Devices)
	for _, vg := range info.VolumeGroups {
		cv := core.VolumeGroup{Name: vg.Name, TotalBytes: clampInt64(vg.Total), FreeBytes: clampInt64(vg.Available)}
		for _, pv := range vg.PhysicalVolumes {
			cv.PVs = append(cv.PVs, core.PhysicalVolume{Name: pv, VG: vg.Name})
		}
		for _, lv := range vg.LogicalVolumes {
			cv.LVs = append(cv.LVs, core.LogicalVolume{Name: lv.Name, VG: vg.Name, SizeBytes: clampInt64(lv.Total), Stripes: 1})
		}
		ns.VGs = append(ns.VGs, cv)
	}
	for _, mp := range info.MountPoints {
		ns.MountPoints = append(ns.MountPoints, core.MountPoint{
			Path: mp.Name, Device: mp.Device, FSType: mp.FsType, Options: mp.Options,
			TotalBytes: clampInt64(mp.Total), AvailableBytes: clampInt64(mp.Available), ReadOnly: mp.ReadOnly,
		})
	}
	return ns
}

// mediaOf accepts the media types open-local writes; anything else leaves
// the device without a medium (it then matches no StorageClass that names one).
func mediaOf(s string) core.MediaType {
	m, err := core.ParseMediaType(strings.ToLower(s))
	if err != nil {
		return ""
	}
	return m
}

func listConfigOf(nls *v1alpha1.NodeLocalStorage) core.ListConfig {
	lc := &nls.Spec.ListConfig
	return core.ListConfig{
		VGs:         core.Filter{Include: lc.VGs.Include, Exclude: lc.VGs.Exclude},
		MountPoints: core.Filter{Include: lc.MountPoints.Include, Exclude: lc.MountPoints.Exclude},
		Devices:     core.Filter{Include: lc.Devices.Include, Exclude: lc.Devices.Exclude},
	}
}

// parseNLS computes what a NodeLocalStorage offers with the same rules as
// the simulator and the CSI driver (pkg/nodecap).
func parseNLS(nls *v1alpha1.NodeLocalStorage, ownedPrefixes []string) *nlsRecord {
	res, err := nodecap.Compute(nodeStorageOf(nls), listConfigOf(nls), nls.Annotations[core.ReservedAnnotation], nodecap.Options{OwnedLVPrefixes: ownedPrefixes})
	if err != nil {
		return &nlsRecord{err: err}
	}
	return &nlsRecord{capacity: res.Capacity, existing: res.Existing, skipped: res.Skipped}
}
