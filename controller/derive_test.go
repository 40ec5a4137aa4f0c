package controller

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pgregory.net/rapid"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
)

func TestDeriveSpec(t *testing.T) {
	a := vgConfig("a", "a", "/dev/a")
	b := vgConfig("b", "b", "/dev/b")
	sel := func(m map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: m} }
	cfg := newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{
		GlobalConfig: global,
		NodesConfig: []v1alpha1.NodeConfig{
			{Selector: sel(map[string]string{"x": "1"}), StorageConfig: a},
			{Selector: sel(map[string]string{"y": "1"}), StorageConfig: b},
			{Selector: nil, StorageConfig: vgConfig("nil", "nil", "/dev/nil")},
		},
	})
	cases := []struct {
		labels map[string]string
		want   v1alpha1.StorageConfig
	}{
		{nil, global},
		{map[string]string{"x": "1"}, a},
		{map[string]string{"y": "1"}, b},
		{map[string]string{"x": "1", "y": "1"}, b}, // the last match wins
		{map[string]string{"x": "2"}, global},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.labels), func(t *testing.T) {
			spec, err := DeriveSpec(cfg, newNode("n1", tc.labels))
			require.NoError(t, err)
			assert.Equal(t, "n1", spec.NodeName)
			assert.Equal(t, tc.want.ListConfig, spec.ListConfig)
			assert.Equal(t, tc.want.ResourceToBeInited, spec.ResourceToBeInited)
			assert.Equal(t, tc.want.SpdkConfig, spec.SpdkConfig)
		})
	}

	t.Run("an empty selector matches every node", func(t *testing.T) {
		c := cfg.DeepCopy()
		c.Spec.NodesConfig = append(c.Spec.NodesConfig, v1alpha1.NodeConfig{Selector: &metav1.LabelSelector{}, StorageConfig: a})
		spec, err := DeriveSpec(c, newNode("n1", nil))
		require.NoError(t, err)
		assert.Equal(t, a.ResourceToBeInited, spec.ResourceToBeInited)
	})
	t.Run("the derived spec shares nothing with the config", func(t *testing.T) {
		spec, err := DeriveSpec(cfg, newNode("n1", nil))
		require.NoError(t, err)
		spec.ResourceToBeInited.VGs[0].Devices[0] = "/dev/changed"
		spec.ListConfig.VGs.Include[0] = "changed"
		assert.Equal(t, "/dev/vdb", cfg.Spec.GlobalConfig.ResourceToBeInited.VGs[0].Devices[0])
		assert.Equal(t, "open-local-pool-[0-9]+", cfg.Spec.GlobalConfig.ListConfig.VGs.Include[0])
	})
}

func TestValidateInitConfig(t *testing.T) {
	cfg := newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{
		GlobalConfig: v1alpha1.StorageConfig{ListConfig: v1alpha1.ListConfig{
			Devices: v1alpha1.ListFilter{Include: []string{"/dev/vd[a-", "/dev/ok"}, Exclude: []string{"(x"}},
		}},
		NodesConfig: []v1alpha1.NodeConfig{
			{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "v"}}},
			{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"ok": "v"}},
				StorageConfig: v1alpha1.StorageConfig{ListConfig: v1alpha1.ListConfig{MountPoints: v1alpha1.ListFilter{Include: []string{"*"}}}}},
		},
	})
	probs := ValidateInitConfig(cfg)
	fields := map[string]string{}
	for _, p := range probs {
		fields[p.Field] = p.Reason
	}
	assert.Equal(t, map[string]string{
		"spec.globalConfig.listConfig.devices.include[0]":       v1alpha1.ReasonInvalidRegexp,
		"spec.globalConfig.listConfig.devices.exclude[0]":       v1alpha1.ReasonInvalidRegexp,
		"spec.nodesConfig[0].selector":                          v1alpha1.ReasonInvalidSelector,
		"spec.nodesConfig[1].listConfig.mountPoints.include[0]": v1alpha1.ReasonInvalidRegexp,
	}, fields)
	for _, p := range probs {
		if p.Reason == v1alpha1.ReasonInvalidRegexp {
			assert.True(t, strings.HasPrefix(p.Message, "invalid regular expression "), p.Message)
		}
	}

	// An invalid selector stops every node: which entry matches last is unknown.
	_, err := DeriveSpec(cfg, newNode("n1", map[string]string{"ok": "v"}))
	require.ErrorIs(t, err, errInvalidConfig)
	assert.Contains(t, err.Error(), "spec.nodesConfig[0].selector")
}

func TestDeriveSpecRejectsOnlyTheBadPatternsANodeGets(t *testing.T) {
	cfg := newInitConfig(cfgName, v1alpha1.NodeLocalStorageInitConfigSpec{
		GlobalConfig: global,
		NodesConfig: []v1alpha1.NodeConfig{{
			Selector:      &metav1.LabelSelector{MatchLabels: map[string]string{"bad": "1"}},
			StorageConfig: vgConfig("[", "x", "/dev/x"),
		}},
	})
	_, err := DeriveSpec(cfg, newNode("fine", nil))
	require.NoError(t, err)
	_, err = DeriveSpec(cfg, newNode("hit", map[string]string{"bad": "1"}))
	require.ErrorIs(t, err, errInvalidConfig)
	assert.Contains(t, err.Error(), `spec.listConfig.vgs.include[0]: invalid regular expression "["`)
}

// Property: derivation is the last matching entry, whatever the entries and labels.
func TestDeriveSpecIsLastMatchProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		keys := []string{"a", "b", "c"}
		n := rapid.IntRange(0, 6).Draw(t, "entries")
		spec := v1alpha1.NodeLocalStorageInitConfigSpec{GlobalConfig: vgConfig("g", "g", "/dev/g")}
		for i := range n {
			m := map[string]string{}
			for _, k := range keys {
				if rapid.Bool().Draw(t, fmt.Sprintf("sel%d-%s", i, k)) {
					m[k] = "1"
				}
			}
			name := fmt.Sprintf("vg%d", i)
			spec.NodesConfig = append(spec.NodesConfig, v1alpha1.NodeConfig{
				Selector: &metav1.LabelSelector{MatchLabels: m}, StorageConfig: vgConfig(name, name, "/dev/"+name),
			})
		}
		lbls := map[string]string{}
		for _, k := range keys {
			if rapid.Bool().Draw(t, "label-"+k) {
				lbls[k] = "1"
			}
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: lbls}}
		got, err := DeriveSpec(newInitConfig(cfgName, spec), node)
		if err != nil {
			t.Fatalf("derive: %v", err)
		}
		want := "g"
		for i, nc := range spec.NodesConfig {
			match := true
			for k := range nc.Selector.MatchLabels {
				if lbls[k] != "1" {
					match = false
				}
			}
			if match {
				want = fmt.Sprintf("vg%d", i)
			}
		}
		if got.ResourceToBeInited.VGs[0].Name != want {
			t.Fatalf("labels %v: got %s, want %s", lbls, got.ResourceToBeInited.VGs[0].Name, want)
		}
	})
}

func TestHashOfIgnoresNilVersusEmpty(t *testing.T) {
	a := v1alpha1.NodeLocalStorageSpec{NodeName: "n", ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{}}}}
	b := v1alpha1.NodeLocalStorageSpec{NodeName: "n"}
	assert.Equal(t, hashOf(a), hashOf(b))
	b.ListConfig.VGs.Include = []string{"x"}
	assert.NotEqual(t, hashOf(a), hashOf(b))
}

func TestTruncate(t *testing.T) {
	assert.Equal(t, "short", truncate("short", 10))
	got := truncate(strings.Repeat("é", 20), 11)
	assert.LessOrEqual(t, len(got), 11)
	assert.True(t, utf8.ValidString(got), got)
	assert.True(t, strings.HasSuffix(got, "..."))
}
