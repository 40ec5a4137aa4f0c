package lvmreport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// fullreport-nodm.json was printed by lvm2 2.03.16 (`lvm fullreport
// --driverloaded n` with FullReportArgs) over two loop devices in a VG and an
// orphan PV, holding an extended linear LV, a striped LV and a snapshot.
func TestParseRealReportWithoutDeviceMapper(t *testing.T) {
	st, err := Parse(readTestdata(t, "fullreport-nodm.json"))
	require.NoError(t, err)
	require.Len(t, st.VGs, 1)
	vg := st.VGs[0]
	assert.Equal(t, "open-local-pool-0", vg.Name)
	assert.Equal(t, 4*core.MiB, vg.ExtentSizeBytes)
	assert.Equal(t, int64(411041792), vg.TotalBytes)
	assert.Equal(t, int64(125829120), vg.FreeBytes)
	assert.Equal(t, []core.PhysicalVolume{
		{Name: "/dev/loop0", VG: "open-local-pool-0", SizeBytes: 205520896, FreeBytes: 0},
		{Name: "/dev/loop1", VG: "open-local-pool-0", SizeBytes: 205520896, FreeBytes: 125829120},
	}, vg.PVs)
	require.Len(t, vg.LVs, 3)
	origin, ok := vg.FindLV("local-pv-1")
	require.True(t, ok)
	assert.Equal(t, int64(200*core.MiB), origin.SizeBytes)
	assert.Equal(t, []string{"csi.aliyun.com/pvc=default.data-0"}, origin.Tags)
	assert.Equal(t, 1, origin.Stripes, "three linear segments are still linear")
	assert.Equal(t, int32(-1), origin.Major)
	assert.Equal(t, "owi-XXs---", origin.Attr)

	snap, _ := vg.FindLV("snap-1")
	assert.True(t, snap.IsSnapshot())
	assert.Equal(t, "local-pv-1", snap.Origin)
	assert.Equal(t, []string{"csi.aliyun.com/snapshot=snap-1", "ro"}, snap.Tags)

	striped, _ := vg.FindLV("striped")
	assert.Equal(t, 2, striped.Stripes)
	assert.Nil(t, striped.Tags)
	assert.Equal(t, int64(64*core.MiB), striped.SizeBytes)

	assert.Equal(t, []core.PhysicalVolume{{Name: "/dev/loop2", SizeBytes: 100 * core.MiB, FreeBytes: 100 * core.MiB}}, st.OrphanPVs)

	for _, lv := range vg.LVs {
		a, err := ParseLVAttr(lv.Attr)
		require.NoError(t, err, lv.Name)
		assert.True(t, a.StateUnknown(), lv.Name)
		assert.False(t, a.Condition().Abnormal, lv.Name)
	}
}

func TestParseActiveReport(t *testing.T) {
	st, err := Parse(readTestdata(t, "fullreport-active.json"))
	require.NoError(t, err)
	require.Len(t, st.VGs, 2)
	assert.Equal(t, "data", st.VGs[0].Name, "VGs are sorted by name")
	assert.Empty(t, st.VGs[0].LVs)
	assert.Equal(t, int64(32*core.MiB), st.VGs[0].ExtentSizeBytes)
	assert.Equal(t, "/dev/nvme0n1p2", st.VGs[0].PVs[0].Name)

	pool := st.VGs[1]
	lv, _ := pool.FindLV("local-0b7c9a1e")
	assert.Equal(t, int32(253), lv.Major)
	assert.Equal(t, int32(0), lv.Minor)
	a, err := ParseLVAttr(lv.Attr)
	require.NoError(t, err)
	assert.True(t, a.IsOrigin())
	assert.True(t, a.IsActive())
	assert.True(t, a.IsOpen())
	assert.Equal(t, Condition{Message: "LV is active and open"}, a.Condition())

	snap, _ := pool.FindLV("snap-1")
	assert.InDelta(t, 12.5, snap.DataPercent, 1e-9)
	bad, _ := pool.FindLV("snap-2")
	ba, err := ParseLVAttr(bad.Attr)
	require.NoError(t, err)
	assert.True(t, ba.IsInvalidSnapshot())
	c := ba.Condition()
	assert.True(t, c.Abnormal)
	assert.Contains(t, c.Message, "copy-on-write space overflowed")

	stopped, _ := pool.FindLV("stopped")
	sa, _ := ParseLVAttr(stopped.Attr)
	assert.False(t, sa.IsActive())
	assert.Equal(t, Condition{Message: "LV is not active"}, sa.Condition())
	assert.Empty(t, st.OrphanPVs)
}

func TestParseEmptyAndErrors(t *testing.T) {
	st, err := Parse([]byte(`{"report":[]}`))
	require.NoError(t, err)
	assert.Empty(t, st.VGs)

	cases := map[string]string{
		"not json":          `lvm: command not found`,
		"bad size":          `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"4194304","vg_size":"4.0g","vg_free":"0"}]}]}`,
		"negative free":     `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"4194304","vg_size":"8","vg_free":"-1"}]}]}`,
		"free > size":       `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"4194304","vg_size":"8","vg_free":"9"}]}]}`,
		"zero extent":       `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"0","vg_size":"8","vg_free":"0"}]}]}`,
		"empty vg name":     `{"report":[{"vg":[{"vg_name":"","vg_extent_size":"4194304","vg_size":"8","vg_free":"0"}]}]}`,
		"duplicate vg":      `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"1","vg_size":"8","vg_free":"0"}]},{"vg":[{"vg_name":"v","vg_extent_size":"1","vg_size":"8","vg_free":"0"}]}]}`,
		"two vgs in item":   `{"report":[{"vg":[{"vg_name":"a","vg_extent_size":"1","vg_size":"8","vg_free":"0"},{"vg_name":"b","vg_extent_size":"1","vg_size":"8","vg_free":"0"}]}]}`,
		"orphan lv":         `{"report":[{"lv":[{"lv_name":"x","lv_size":"1"}]}]}`,
		"bad pv size":       `{"report":[{"pv":[{"pv_name":"/dev/x","pv_size":"x","pv_free":"0"}]}]}`,
		"pv twice":          `{"report":[{"pv":[{"pv_name":"/dev/x","pv_size":"1","pv_free":"0"},{"pv_name":"/dev/x","pv_size":"1","pv_free":"0"}]}]}`,
		"bad lv size":       `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"1","vg_size":"8","vg_free":"0"}],"lv":[{"lv_name":"l","lv_size":"-5"}]}]}`,
		"bad percent":       `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"1","vg_size":"8","vg_free":"0"}],"lv":[{"lv_name":"l","lv_size":"5","data_percent":"NaN"}]}]}`,
		"bad major":         `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"1","vg_size":"8","vg_free":"0"}],"lv":[{"lv_name":"l","lv_size":"5","lv_kernel_major":"x"}]}]}`,
		"bad stripes":       `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"1","vg_size":"8","vg_free":"0"}],"seg":[{"lv_uuid":"u","stripes":"two"}]}]}`,
		"number not string": `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":4194304,"vg_size":"8","vg_free":"0"}]}]}`,
	}
	for name, in := range cases {
		_, err := Parse([]byte(in))
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, ErrMalformed), name)
	}
	_, err = Parse([]byte(`{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"1","vg_size":"8","vg_free":"9"}]}]}`))
	assert.Contains(t, err.Error(), `VG "v"`, "errors name the object")
}

func TestParseSkipsInternalLVsAndReadsMultiSegmentStripes(t *testing.T) {
	in := `{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"4194304","vg_size":"83886080","vg_free":"0"}],
	"lv":[{"lv_uuid":"a","lv_name":"s","lv_attr":"-wi-a-----","lv_size":"83886080","lv_tags":"b,a"},
	      {"lv_uuid":"b","lv_name":"[s_mimage_0]","lv_attr":"iwi-aom---","lv_size":"4194304"}],
	"seg":[{"lv_uuid":"a","segtype":"striped","stripes":"2"},{"lv_uuid":"a","segtype":"striped","stripes":"3"}]}]}`
	st, err := Parse([]byte(in))
	require.NoError(t, err)
	require.Len(t, st.VGs[0].LVs, 1)
	lv := st.VGs[0].LVs[0]
	assert.Equal(t, 3, lv.Stripes)
	assert.Equal(t, []string{"a", "b"}, lv.Tags)
}

func TestFullReportArgs(t *testing.T) {
	args := FullReportArgs()
	assert.Equal(t, "fullreport", args[0])
	joined := strings.Join(args, " ")
	for _, want := range []string{"--reportformat json", "--units b", "--nosuffix", "lv_attr", "lv_tags", "origin", "stripes", "data_percent", "lv_kernel_major", "lv_kernel_minor", "vg_extent_size"} {
		assert.Contains(t, joined, want)
	}
	for _, a := range args {
		assert.NotContains(t, a, " ", "one argv element per word")
	}
}

func FuzzParseReport(f *testing.F) {
	f.Add(readTestdata(f, "fullreport-nodm.json"))
	f.Add(readTestdata(f, "fullreport-active.json"))
	f.Add([]byte(`{"report":[]}`))
	f.Add([]byte(`{"report":[{"pv":[{"pv_name":"/dev/sdb","vg_name":"","pv_size":"107374182400","pv_free":"107374182400"}]}]}`))
	f.Add([]byte(`{"report":[{"vg":[{"vg_name":"v","vg_extent_size":"4194304","vg_size":"8","vg_free":"0"}],"lv":[{"lv_name":"l","lv_size":"5","data_percent":"1e400"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapped in ErrMalformed: %v", err)
			}
			return
		}
		// Whatever parses obeys the model's invariants.
		names := map[string]bool{}
		for _, vg := range st.VGs {
			if vg.Name == "" || names[vg.Name] || vg.FreeBytes > vg.TotalBytes || vg.ExtentSizeBytes <= 0 {
				t.Fatalf("bad VG %+v", vg)
			}
			names[vg.Name] = true
			for _, lv := range vg.LVs {
				if lv.SizeBytes < 0 || lv.Stripes < 1 || lv.VG != vg.Name {
					t.Fatalf("bad LV %+v", lv)
				}
			}
			for _, pv := range vg.PVs {
				if pv.FreeBytes > pv.SizeBytes || pv.VG != vg.Name {
					t.Fatalf("bad PV %+v", pv)
				}
			}
		}
		for _, pv := range st.OrphanPVs {
			if pv.VG != "" {
				t.Fatalf("orphan PV in a VG: %+v", pv)
			}
		}
	})
}
