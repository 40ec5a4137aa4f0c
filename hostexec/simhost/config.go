package simhost

import (
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec"
)

// Config describes a simulated node. It loads from YAML or JSON:
//
//	extentSize: 4Mi
//	devices:
//	- {name: /dev/sdb, size: 100Gi, media: ssd}
//	- {name: /dev/sdc, size: 50Gi, media: hdd, signatures: [gpt]}
//	- {name: /dev/sdc1, size: 20Gi, parent: /dev/sdc}
//	vgs:
//	- {name: open-local-pool-0, devices: [/dev/sdb]}
type Config struct {
	Devices []DeviceConfig `json:"devices"`
	VGs     []VGConfig     `json:"vgs,omitempty"`
	// ExtentSize is the physical extent size of every VG (default 4Mi).
	ExtentSize string `json:"extentSize,omitempty"`
	// NoCgroupIO makes SetIOLimits and IOLimits fail with ErrUnsupported, as
	// on a host without the cgroup v2 io controller.
	NoCgroupIO bool `json:"noCgroupIO,omitempty"`
}

// DeviceConfig is one disk or partition.
type DeviceConfig struct {
	Name string `json:"name"`
	// Size is a quantity ("100Gi", "500M", "1073741824").
	Size string `json:"size"`
	// Media is "ssd" or "hdd" (default "hdd", as sysfs reports rotational
	// when it does not know).
	Media    string `json:"media,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Signatures are foreign signatures already on the device (e.g. "ntfs",
	// "gpt"): such a device is in use and is not formatted or made a PV
	// without force.
	Signatures []string `json:"signatures,omitempty"`
	// Parent makes this device a partition of another configured device.
	Parent string `json:"parent,omitempty"`
}

// VGConfig is a VG that exists when the host starts.
type VGConfig struct {
	Name    string   `json:"name"`
	Devices []string `json:"devices"`
}

// Default is one VG open-local-pool-0 on a 100 GiB /dev/sdb plus two blank
// 50 GiB disks, /dev/sdc (ssd) and /dev/sdd (hdd).
func Default() Config {
	return Config{
		ExtentSize: "4Mi",
		Devices: []DeviceConfig{
			{Name: "/dev/sdb", Size: "100Gi", Media: "ssd"},
			{Name: "/dev/sdc", Size: "50Gi", Media: "ssd"},
			{Name: "/dev/sdd", Size: "50Gi", Media: "hdd"},
		},
		VGs: []VGConfig{{Name: "open-local-pool-0", Devices: []string{"/dev/sdb"}}},
	}
}

// LoadConfig parses a YAML or JSON Config; unknown fields are errors.
func LoadConfig(data []byte) (Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("simhost config: %w", err)
	}
	return c, nil
}

// parsedDevice is a validated DeviceConfig.
type parsedDevice struct {
	DeviceConfig
	size  int64
	media core.MediaType
}

func (c Config) parse() (extent int64, devs []parsedDevice, err error) {
	extent = core.DefaultExtentSize
	if c.ExtentSize != "" {
		if extent, err = core.ParseSize(c.ExtentSize); err != nil {
			return 0, nil, fmt.Errorf("simhost config: extentSize: %w", err)
		}
		if extent < 1024 || extent&(extent-1) != 0 {
			return 0, nil, fmt.Errorf("simhost config: extentSize %q must be a power of two of at least 1Ki: %w", c.ExtentSize, hostexec.ErrInvalidArgument)
		}
	}
	seen := map[string]int{}
	for i, d := range c.Devices {
		field := fmt.Sprintf("simhost config: devices[%d]", i)
		if err := hostexec.ValidateDevicePath(d.Name); err != nil {
			return 0, nil, fmt.Errorf("%s: %w", field, err)
		}
		if _, dup := seen[d.Name]; dup {
			return 0, nil, fmt.Errorf("%s: device %s listed twice: %w", field, d.Name, hostexec.ErrInvalidArgument)
		}
		size, err := core.ParseSize(d.Size)
		if err != nil {
			return 0, nil, fmt.Errorf("%s (%s): %w", field, d.Name, err)
		}
		if size <= 0 || size%core.SectorSize != 0 {
			return 0, nil, fmt.Errorf("%s (%s): size %q must be a positive multiple of 512 bytes: %w", field, d.Name, d.Size, hostexec.ErrInvalidArgument)
		}
		media := core.MediaHDD
		if d.Media != "" {
			if media, err = core.ParseMediaType(d.Media); err != nil {
				return 0, nil, fmt.Errorf("%s (%s): %w", field, d.Name, err)
			}
		}
		if d.Parent != "" {
			pi, ok := seen[d.Parent]
			if !ok {
				return 0, nil, fmt.Errorf("%s (%s): parent %s must be listed before its partitions: %w", field, d.Name, d.Parent, hostexec.ErrInvalidArgument)
			}
			if c.Devices[pi].Parent != "" {
				return 0, nil, fmt.Errorf("%s (%s): parent %s is itself a partition: %w", field, d.Name, d.Parent, hostexec.ErrInvalidArgument)
			}
		}
		seen[d.Name] = i
		devs = append(devs, parsedDevice{DeviceConfig: d, size: size, media: media})
	}
	// Partitions must fit in their disk.
	used := map[string]int64{}
	for _, d := range devs {
		if d.Parent != "" {
			used[d.Parent] += d.size
		}
	}
	for _, d := range devs {
		if used[d.Name] > d.size {
			return 0, nil, fmt.Errorf("simhost config: partitions of %s (%d bytes) exceed its size %d: %w", d.Name, used[d.Name], d.size, hostexec.ErrInvalidArgument)
		}
	}
	return extent, devs, nil
}
