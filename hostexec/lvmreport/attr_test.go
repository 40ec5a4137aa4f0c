package lvmreport

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseLVAttr(t *testing.T) {
	a, err := ParseLVAttr("-wi-ao----")
	require.NoError(t, err)
	assert.Equal(t, Attr{
		VolumeType: '-', Permissions: 'w', AllocationPolicy: 'i', State: 'a', Open: 'o',
		TargetType: '-', Health: '-',
	}, a)
	assert.True(t, a.IsActive())
	assert.True(t, a.IsOpen())
	assert.False(t, a.IsSnapshot())
	assert.Equal(t, "-wi-ao----", a.String())

	s, err := ParseLVAttr("swi-a-s---")
	require.NoError(t, err)
	assert.True(t, s.IsSnapshot())
	assert.Equal(t, byte('s'), s.TargetType)

	full, err := ParseLVAttr("Vwimaotzpk")
	require.NoError(t, err)
	assert.True(t, full.FixedMinor)
	assert.True(t, full.ZeroNewBlocks)
	assert.True(t, full.SkipActivation)
	assert.Equal(t, "Vwimaotzpk", full.String())
}

func TestParseLVAttrErrors(t *testing.T) {
	for _, bad := range []string{"", "-wi-ao---", "-wi-ao-----", "?wi-ao----", "-xi-ao----", "-wi-Qo----"} {
		_, err := ParseLVAttr(bad)
		require.Error(t, err, bad)
		assert.True(t, errors.Is(err, ErrMalformed), bad)
	}
	_, err := ParseLVAttr("-wi-Qo----")
	assert.Contains(t, err.Error(), "position 5 (state)")
}

func TestConditions(t *testing.T) {
	cases := []struct {
		attr     string
		abnormal bool
		contains string
	}{
		{"-wi-a-----", false, "LV is active"},
		{"-wi-------", false, "not active"},
		{"-wi-XX----", false, "unknown"},
		{"swi-I-s---", true, "overflowed"},
		{"swi-S-s---", true, "suspended"},
		{"-wi-s-----", true, "suspended"},
		{"-wi-a---p-", true, "partial"},
		{"rwi-a-r-r-", true, "refresh"},
		{"rwi-a-r-m-", true, "mismatches"},
		{"twi-a-tzD-", true, "out of data space"},
		{"Vwi-a-tzF-", true, "failed"},
		{"owi-m-s---", true, "merge failed"},
		{"-wi-d-----", true, "without tables"},
		{"-wi-s---p-", true, "blocks; LV is partial"},
		{"-wi-h-----", false, "history"},
		{"rwi-a-r-w-", false, "active"},
	}
	for _, c := range cases {
		a, err := ParseLVAttr(c.attr)
		require.NoError(t, err, c.attr)
		cond := a.Condition()
		assert.Equal(t, c.abnormal, cond.Abnormal, c.attr)
		assert.Contains(t, cond.Message, c.contains, c.attr)
	}
}

func FuzzParseLVAttr(f *testing.F) {
	for _, s := range []string{"-wi-ao----", "-wi-a-----", "-wi-------", "-wi-XX----", "owi-aos---", "swi-a-s---",
		"swi-I-s---", "owi-XXs---", "swi-XXs---", "Vwi-aotz--", "twi-aotz--", "rwi-a-r-p-", "", "-wi-ao---", "\xff\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseLVAttr(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapped: %v", err)
			}
			return
		}
		if a.String() != s {
			t.Fatalf("round trip: %q -> %q", s, a.String())
		}
		c := a.Condition()
		if c.Message == "" {
			t.Fatalf("empty condition message for %q", s)
		}
		if a.IsInvalidSnapshot() && !c.Abnormal {
			t.Fatalf("invalid snapshot %q not abnormal", s)
		}
	})
}
