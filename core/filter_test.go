package core

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFilterMatch(t *testing.T) {
	cases := []struct {
		name   string
		filter Filter
		in     []string
		out    []string
	}{
		{
			name:   "example devices: include then exclude",
			filter: Filter{Include: []string{"/dev/vd[a-d]+"}, Exclude: []string{"/dev/vda", "/dev/vdb"}},
			in:     []string{"/dev/vdc", "/dev/vdd", "/dev/vdab"},
			out:    []string{"/dev/vda", "/dev/vdb", "/dev/vda1", "/dev/vdb3", "/dev/vde", "/dev/sda", "x/dev/vdc", "/dev/vdc "},
		},
		{
			name:   "example vgs",
			filter: Filter{Include: []string{"share", "paas[0-9]*", "open-local-pool-[0-9]+"}},
			in:     []string{"share", "paas", "paas12", "open-local-pool-0", "open-local-pool-17"},
			out:    []string{"shared", "myshare", "paasx", "open-local-pool-", "open-local-pool-0x", "vg0"},
		},
		{
			name:   "no include: nothing is allocatable",
			filter: Filter{Exclude: []string{"a"}},
			out:    []string{"a", "b", ""},
		},
		{
			name:   "an alternation matches whole names only",
			filter: Filter{Include: []string{"a|b"}},
			in:     []string{"a", "b"},
			out:    []string{"ab", "ba", "xa"},
		},
		{
			name:   "leftmost-first would miss the longer branch",
			filter: Filter{Include: []string{"a|ab"}},
			in:     []string{"a", "ab"},
			out:    []string{"abc"},
		},
		{
			name:   "an unterminated quote stays inside the pattern",
			filter: Filter{Include: []string{`\Qvg.0`}},
			in:     []string{"vg.0"},
			out:    []string{"vgx0", "vg.0)$"},
		},
		{
			name:   "anchors written by the user are harmless",
			filter: Filter{Include: []string{"^vg[0-9]$"}},
			in:     []string{"vg1"},
			out:    []string{"vg10"},
		},
		{
			name:   "case-insensitive flag applies to the pattern",
			filter: Filter{Include: []string{"(?i)SHARE"}},
			in:     []string{"share", "Share"},
			out:    []string{"shares"},
		},
		{
			name:   "exclude wins",
			filter: Filter{Include: []string{".*"}, Exclude: []string{"/dev/sd[a-z]", ".*p[0-9]+"}},
			in:     []string{"/dev/nvme0n1", "/dev/vdb"},
			out:    []string{"/dev/sda", "/dev/nvme0n1p1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CompileFilter("listConfig.vgs", tc.filter)
			require.NoError(t, err)
			for _, n := range tc.in {
				assert.True(t, c.Match(n), "%q should match", n)
			}
			for _, n := range tc.out {
				assert.False(t, c.Match(n), "%q should not match", n)
			}
		})
	}
	var nilFilter *CompiledFilter
	assert.False(t, nilFilter.Match("x"), "a nil filter allows nothing")
}

func TestCompileListConfigInvalidPatterns(t *testing.T) {
	lc := ListConfig{
		VGs:     Filter{Include: []string{"ok", "pool-[0-9"}},
		Devices: Filter{Include: []string{"/dev/vd.*"}, Exclude: []string{"(", "a)|(b"}},
	}
	c, err := CompileListConfig(lc)
	require.Nil(t, c)
	require.Error(t, err, "an invalid pattern is an error, never a panic")
	assert.ErrorIs(t, err, ErrInvalid)
	msg := err.Error()
	assert.NotContains(t, msg, "\n", "one line, fit for a status condition")
	for _, want := range []string{
		`listConfig.vgs.include[1]: invalid regular expression "pool-[0-9"`,
		`listConfig.devices.exclude[0]: invalid regular expression "("`,
		`listConfig.devices.exclude[1]: invalid regular expression "a)|(b"`,
	} {
		assert.Contains(t, msg, want)
	}
	// Every bad pattern is reachable as a *PatternError with the parser's error.
	var fields []string
	var walk func(error)
	walk = func(e error) {
		if pe, ok := e.(*PatternError); ok {
			fields = append(fields, pe.Field)
			var se *syntax.Error
			assert.True(t, errors.As(pe.Err, &se), "the regexp syntax error is kept")
			return
		}
		if m, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range m.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	assert.Equal(t, []string{"listConfig.vgs.include[1]", "listConfig.devices.exclude[0]", "listConfig.devices.exclude[1]"}, fields)
	var pe *PatternError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "pool-[0-9", pe.Pattern)
}

// exampleNLS is the part of a NodeLocalStorage the example exercises.
type exampleNLS struct {
	Spec struct {
		ListConfig struct {
			Devices, VGs, MountPoints struct{ Include, Exclude []string }
		} `json:"listConfig"`
	} `json:"spec"`
	Status struct {
		NodeStorageInfo struct {
			DeviceInfo []struct {
				Name      string `json:"name"`
				MediaType string `json:"mediaType"`
				Total     int64  `json:"total"`
			} `json:"deviceInfo"`
			VolumeGroups []struct {
				Name        string   `json:"name"`
				Allocatable int64    `json:"allocatable"`
				Available   int64    `json:"available"`
				Total       int64    `json:"total"`
				PVs         []string `json:"physicalVolumes"`
				LVs         []struct {
					Name  string `json:"name"`
					Total int64  `json:"total"`
				} `json:"logicalVolumes"`
			} `json:"volumeGroups"`
		} `json:"nodeStorageInfo"`
		Filtered struct {
			VolumeGroups []string `json:"volumeGroups"`
			Devices      []string `json:"devices"`
		} `json:"filteredStorageInfo"`
	} `json:"status"`
}

// The documented NodeLocalStorage example: its listConfig applied to its
// nodeStorageInfo gives its filteredStorageInfo, and its VG's allocatable.
func TestListConfigDocumentedExample(t *testing.T) {
	raw, err := os.ReadFile("testdata/nodelocalstorage-example.json")
	require.NoError(t, err)
	var nls exampleNLS
	require.NoError(t, json.Unmarshal(raw, &nls))
	lcIn := nls.Spec.ListConfig
	lc := ListConfig{
		VGs:     Filter{Include: lcIn.VGs.Include, Exclude: lcIn.VGs.Exclude},
		Devices: Filter{Include: lcIn.Devices.Include, Exclude: lcIn.Devices.Exclude},
	}
	c, err := CompileListConfig(lc)
	require.NoError(t, err)

	var ns NodeStorage
	for _, d := range nls.Status.NodeStorageInfo.DeviceInfo {
		ns.Devices = append(ns.Devices, BlockDevice{Name: d.Name, SizeBytes: d.Total, Media: MediaType(d.MediaType)})
	}
	for _, vg := range nls.Status.NodeStorageInfo.VolumeGroups {
		v := VolumeGroup{Name: vg.Name, TotalBytes: vg.Total}
		for _, lv := range vg.LVs {
			v.LVs = append(v.LVs, LogicalVolume{Name: lv.Name, VG: vg.Name, SizeBytes: lv.Total})
		}
		ns.VGs = append(ns.VGs, v)
		assert.Equal(t, vg.Allocatable, Allocatable(v, DefaultOwnedLVPrefixes, Reservation{}),
			"the example's allocatable: every LV is Open-Local's")
		assert.Equal(t, vg.Available, vg.Total-OwnedUsage(v, DefaultOwnedLVPrefixes), "available is total minus the LVs")
	}
	got := c.Apply(ns)
	assert.Equal(t, nls.Status.Filtered.VolumeGroups, got.VGs)
	assert.Equal(t, nls.Status.Filtered.Devices, got.Devices)
	assert.Empty(t, got.MountPoints)
}

func TestApplySortsAndFilters(t *testing.T) {
	c, err := CompileListConfig(ListConfig{
		VGs:         Filter{Include: []string{"vg[0-9]"}},
		MountPoints: Filter{Include: []string{"/mnt/disk[0-9]+"}},
		Devices:     Filter{Include: []string{"/dev/sd[a-z]"}, Exclude: []string{"/dev/sda"}},
	})
	require.NoError(t, err)
	ns := NodeStorage{
		VGs:         []VolumeGroup{{Name: "vg2"}, {Name: "other"}, {Name: "vg1"}},
		MountPoints: []MountPoint{{Path: "/mnt/disk10"}, {Path: "/mnt/disk2"}, {Path: "/"}},
		Devices:     []BlockDevice{{Name: "/dev/sdc"}, {Name: "/dev/sda"}, {Name: "/dev/sdb"}, {Name: "/dev/nvme0n1"}},
	}
	got := c.Apply(ns)
	assert.Equal(t, FilteredStorage{
		VGs:         []string{"vg1", "vg2"},
		MountPoints: []string{"/mnt/disk10", "/mnt/disk2"},
		Devices:     []string{"/dev/sdb", "/dev/sdc"},
	}, got)
}

// wholeMatchOracle decides "p matches all of name" independently of the
// implementation: leftmost-longest from position 0 reaches the end exactly
// when some match covers the whole name.
func wholeMatchOracle(p, name string) bool {
	re := regexp.MustCompile(p)
	re.Longest()
	loc := re.FindStringIndex(name)
	return loc != nil && loc[0] == 0 && loc[1] == len(name)
}

// FuzzCompileListConfig: compiling never panics; a pattern that does not
// compile is a *PatternError naming its field and pattern; one that compiles
// matches exactly the names it matches as a whole, and exclude removes.
func FuzzCompileListConfig(f *testing.F) {
	seeds := [][3]string{
		{"/dev/vd[a-d]+", "/dev/vda", "/dev/vdc"},
		{"open-local-pool-[0-9]+", "", "open-local-pool-0"},
		{"a|ab", "", "ab"},
		{`\Qa)|(b`, "", "a)|(b"},
		{"a)|(b", "", "ab"},
		{"(", "x", "("},
		{"(?i)vg", "VG", "vG"},
		{"^$", "", ""},
		{`\b`, "", ""},
		{"x*", "xx", "xxx"},
		{"[[:alpha:]]+", "[0-9]", "abc"},
		{"(a+)+$", "", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"},
		{`\pL+`, "", "日本"},
		{"a{1001}", "", "a"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, include, exclude, name string) {
		if len(include) > 200 || len(exclude) > 200 || len(name) > 200 {
			t.Skip("long patterns only slow the regexp compiler down")
		}
		lc := ListConfig{VGs: Filter{Include: []string{include}, Exclude: []string{exclude}}}
		c, err := CompileListConfig(lc)
		_, incErr := regexp.Compile(include)
		_, excErr := regexp.Compile(exclude)
		if incErr != nil || excErr != nil {
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalid)
			var pe *PatternError
			require.ErrorAs(t, err, &pe)
			if incErr != nil {
				require.Equal(t, "listConfig.vgs.include[0]", pe.Field)
				require.Equal(t, include, pe.Pattern)
			} else {
				require.Equal(t, "listConfig.vgs.exclude[0]", pe.Field)
				require.Equal(t, exclude, pe.Pattern)
			}
			require.True(t, strings.Contains(err.Error(), pe.Field))
			return
		}
		require.NoError(t, err)
		want := wholeMatchOracle(include, name) && !wholeMatchOracle(exclude, name)
		require.Equal(t, want, c.VGs.Match(name), "include %q exclude %q name %q", include, exclude, name)
		require.False(t, c.Devices.Match(name), "an empty filter allows nothing")
	})
}
