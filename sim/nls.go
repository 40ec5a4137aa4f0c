package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/nodecap"
)

// nodeLocalStorage is the part of open-local's NodeLocalStorage the simulator
// reads. Its own small schema keeps the simulator independent of the CRD's Go
// types; fields it does not need (phase, state, spdkConfig, resourceToBeInited,
// filteredStorageInfo, which is recomputed from listConfig) are ignored.
type nodeLocalStorage struct {
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		NodeName   string `json:"nodeName"`
		ListConfig struct {
			VGs         nlsFilter `json:"vgs"`
			MountPoints nlsFilter `json:"mountPoints"`
			Devices     nlsFilter `json:"devices"`
		} `json:"listConfig"`
	} `json:"spec"`
	Status struct {
		NodeStorageInfo struct {
			DeviceInfo []struct {
				Name      string  `json:"name"`
				MediaType string  `json:"mediaType"`
				Total     nlsSize `json:"total"`
				ReadOnly  bool    `json:"readOnly"`
			} `json:"deviceInfo"`
			VolumeGroups []struct {
				Name            string   `json:"name"`
				PhysicalVolumes []string `json:"physicalVolumes"`
				LogicalVolumes  []struct {
					Name  string  `json:"name"`
					Total nlsSize `json:"total"`
				} `json:"logicalVolumes"`
				Total     nlsSize  `json:"total"`
				Available *nlsSize `json:"available"`
			} `json:"volumeGroups"`
			MountPoints []struct {
				Name      string  `json:"name"`
				Total     nlsSize `json:"total"`
				Available nlsSize `json:"available"`
				FSType    string  `json:"fsType"`
				ReadOnly  bool    `json:"readOnly"`
				Device    string  `json:"device"`
			} `json:"mountPoints"`
		} `json:"nodeStorageInfo"`
	} `json:"status"`
}

type nlsFilter struct {
	Include []string `json:"include"`
	Exclude []string `json:"exclude"`
}

// nlsSize is a byte count as the agent writes it (an integer) or as a person
// writes it (a quantity such as "100Gi").
type nlsSize int64

func (s *nlsSize) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = 0
		return nil
	}
	var text string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
	} else {
		text = string(b)
	}
	v, err := core.ParseSize(text)
	if err != nil {
		return err
	}
	*s = nlsSize(v)
	return nil
}

// storage converts the reported status into core's model. Unknown media
// types are reported in notes and leave the device without a medium.
func (n *nodeLocalStorage) storage() (core.NodeStorage, []string) {
	var ns core.NodeStorage
	var notes []string
	info := &n.Status.NodeStorageInfo
	for _, d := range info.DeviceInfo {
		media := core.MediaType(strings.ToLower(d.MediaType))
		if d.MediaType != "" && media != core.MediaSSD && media != core.MediaHDD {
			notes = append(notes, fmt.Sprintf("device %s: unknown mediaType %q (accepted: ssd, hdd); it matches no StorageClass", d.Name, d.MediaType))
			media = ""
		}
		ns.Devices = append(ns.Devices, core.BlockDevice{Name: d.Name, SizeBytes: int64(d.Total), Media: media, ReadOnly: d.ReadOnly})
	}
	nodecap.LinkPartitions(ns.Devices)
	for _, vg := range info.VolumeGroups {
		cv := core.VolumeGroup{Name: vg.Name, TotalBytes: int64(vg.Total)}
		var used int64
		for _, pv := range vg.PhysicalVolumes {
			cv.PVs = append(cv.PVs, core.PhysicalVolume{Name: pv, VG: vg.Name})
		}
		for _, lv := range vg.LogicalVolumes {
			cv.LVs = append(cv.LVs, core.LogicalVolume{Name: lv.Name, VG: vg.Name, SizeBytes: int64(lv.Total), Stripes: 1})
			used += int64(lv.Total)
		}
		if vg.Available != nil {
			cv.FreeBytes = int64(*vg.Available)
		} else {
			// A hand-written report may leave "available" out: what the LVs leave.
			cv.FreeBytes = max(0, cv.TotalBytes-used)
		}
		ns.VGs = append(ns.VGs, cv)
	}
	for _, mp := range info.MountPoints {
		ns.MountPoints = append(ns.MountPoints, core.MountPoint{
			Path: mp.Name, Device: mp.Device, FSType: mp.FSType,
			TotalBytes: int64(mp.Total), AvailableBytes: int64(mp.Available), ReadOnly: mp.ReadOnly,
		})
	}
	return ns, notes
}

func (n *nodeLocalStorage) listConfig() core.ListConfig {
	lc := &n.Spec.ListConfig
	return core.ListConfig{
		VGs:         core.Filter{Include: lc.VGs.Include, Exclude: lc.VGs.Exclude},
		MountPoints: core.Filter{Include: lc.MountPoints.Include, Exclude: lc.MountPoints.Exclude},
		Devices:     core.Filter{Include: lc.Devices.Include, Exclude: lc.Devices.Exclude},
	}
}
