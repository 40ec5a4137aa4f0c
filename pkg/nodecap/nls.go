package nodecap

import (
	"math"
	"slices"
	"strings"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
)

// FromNLS converts what an agent reported in a NodeLocalStorage into
// core's model, and its spec's listConfig into core's filter: the one
// conversion the scheduler's cache and the status view share, so that both
// compute the same figures with Compute.
func FromNLS(nls *v1alpha1.NodeLocalStorage) (core.NodeStorage, core.ListConfig) {
	var ns core.NodeStorage
	info := &nls.Status.NodeStorageInfo
	for _, d := range info.DeviceInfos {
		ns.Devices = append(ns.Devices, core.BlockDevice{
			Name:       d.Name,
			SizeBytes:  clampBytes(d.Total),
			Media:      reportedMedia(string(d.MediaType)),
			ReadOnly:   d.ReadOnly,
			Signatures: slices.Clone(d.Signatures),
		})
	}
	LinkPartitions(ns.Devices)
	for _, vg := range info.VolumeGroups {
		cv := core.VolumeGroup{Name: vg.Name, TotalBytes: clampBytes(vg.Total), FreeBytes: clampBytes(vg.Available)}
		for _, pv := range vg.PhysicalVolumes {
			cv.PVs = append(cv.PVs, core.PhysicalVolume{Name: pv, VG: vg.Name})
		}
		for _, lv := range vg.LogicalVolumes {
			cv.LVs = append(cv.LVs, core.LogicalVolume{Name: lv.Name, VG: vg.Name, SizeBytes: clampBytes(lv.Total), Stripes: 1})
		}
		ns.VGs = append(ns.VGs, cv)
	}
	for _, mp := range info.MountPoints {
		ns.MountPoints = append(ns.MountPoints, core.MountPoint{
			Path: mp.Name, Device: mp.Device, FSType: mp.FsType, Options: mp.Options,
			TotalBytes: clampBytes(mp.Total), AvailableBytes: clampBytes(mp.Available), ReadOnly: mp.ReadOnly,
		})
	}
	lc := &nls.Spec.ListConfig
	return ns, core.ListConfig{
		VGs:         core.Filter{Include: lc.VGs.Include, Exclude: lc.VGs.Exclude},
		MountPoints: core.Filter{Include: lc.MountPoints.Include, Exclude: lc.MountPoints.Exclude},
		Devices:     core.Filter{Include: lc.Devices.Include, Exclude: lc.Devices.Exclude},
	}
}

// reportedMedia accepts the media types open-local writes (any case);
// anything else leaves the device without a medium, so it matches no
// StorageClass that names one.
func reportedMedia(s string) core.MediaType {
	m, err := core.ParseMediaType(strings.ToLower(s))
	if err != nil {
		return ""
	}
	return m
}

// clampBytes converts a reported uint64 byte count.
func clampBytes(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
