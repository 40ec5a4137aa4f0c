package simhost_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/hostexec/hostexectest"
	"github.com/open-local/open-local/hostexec/simhost"
)

// contractDeviceSize matches the real suite's loop devices.
const contractDeviceSize = 64 * core.MiB

func TestContract(t *testing.T) {
	hostexectest.Run(t, func(t *testing.T) hostexectest.Env {
		devs := []string{"/dev/vdb", "/dev/vdc", "/dev/vdd"}
		cfg := simhost.Config{}
		for _, d := range devs {
			cfg.Devices = append(cfg.Devices, simhost.DeviceConfig{Name: d, Size: "64Mi", Media: "ssd"})
		}
		h, err := simhost.New(cfg)
		require.NoError(t, err)
		dir := "/var/lib/open-local-contract"
		require.NoError(t, h.MakeDir(t.Context(), dir))
		return hostexectest.Env{
			Host:       h,
			Devices:    devs,
			DeviceSize: contractDeviceSize,
			ExtentSize: core.DefaultExtentSize,
			Dir:        dir,
			Caps: hostexectest.Capabilities{
				HasDeviceMapper: true,
				CanMount:        true,
				HasCgroupIO:     true,
				ResizableFS:     []string{"ext4", "xfs"},
			},
			AddPod: func(t *testing.T, uid string) string {
				d, err := h.AddPod(uid)
				require.NoError(t, err)
				return d
			},
			GrowDevice: func(t *testing.T, device string, newSize int64) {
				require.NoError(t, h.GrowDevice(device, newSize))
			},
		}
	})
}
