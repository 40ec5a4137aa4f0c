package lvtag

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/hostexec"
)

func TestEscapeKeepsKubernetesNames(t *testing.T) {
	for _, s := range []string{"default", "local-0b6a1c5e-7f0e-4c4b-9d55-3d3c2f0c1e2a", "my.claim-0", "a_b"} {
		assert.Equal(t, s, EscapeValue(s))
	}
}

func TestEscapeTable(t *testing.T) {
	for in, want := range map[string]string{
		"a/b":   "a#2Fb",
		"#":     "#23",
		"x y":   "x#20y",
		"=":     "#3D",
		"é":     "#C3#A9",
		"":      "",
		"-lead": "-lead",
	} {
		got := EscapeValue(in)
		assert.Equal(t, want, got, in)
		back, err := UnescapeValue(got)
		require.NoError(t, err, in)
		assert.Equal(t, in, back)
	}
}

func TestUnescapeRefusesWhatEscapeCannotWrite(t *testing.T) {
	for _, s := range []string{"#", "#2", "#2f", "#41", "a/b", "a#ZZ", "x=y"} {
		_, err := UnescapeValue(s)
		assert.Error(t, err, s)
	}
}

func TestProvenanceRoundTrip(t *testing.T) {
	p := Provenance{PVName: "local-1234", PVCNamespace: "team-a", PVCName: "data-db-0"}
	tags := p.Tags()
	assert.Equal(t, []string{"ol.pv=local-1234", "ol.pvc=team-a/data-db-0"}, tags)
	require.NoError(t, hostexec.ValidateTags(tags))
	got, err := ParseProvenance(append([]string{Owner, KindVolume}, tags...))
	require.NoError(t, err)
	assert.Equal(t, p, got)
	assert.True(t, got.Complete())
}

func TestProvenancePartial(t *testing.T) {
	assert.Empty(t, Provenance{}.Tags())
	assert.Equal(t, []string{"ol.pv=pv-1"}, Provenance{PVName: "pv-1", PVCName: "only-name"}.Tags())
	got, err := ParseProvenance([]string{"ol.pv=pv-1"})
	require.NoError(t, err)
	assert.False(t, got.Complete())
	// A tag that would exceed LVM's limit is left out, not cut.
	long := strings.Repeat("/", MaxLen)
	assert.Empty(t, Provenance{PVName: long}.Tags())
}

func TestParseProvenanceErrors(t *testing.T) {
	for _, tags := range [][]string{
		{"ol.pv=a", "ol.pv=b"},
		{"ol.pvc=noslash"},
		{"ol.pvc=/name"},
		{"ol.pvc=ns/"},
		{"ol.pvc=ns/a#2"},
		{"ol.pv=bad#zz"},
	} {
		_, err := ParseProvenance(tags)
		assert.Error(t, err, tags)
	}
}

func TestCreated(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	got, ok := Created([]string{Owner, CreatedTag(at)})
	require.True(t, ok)
	assert.True(t, at.Equal(got))
	for _, tags := range [][]string{nil, {"ol.created=x"}, {"ol.created=-5"}, {"ol.created=1", "ol.created=2"}} {
		_, ok := Created(tags)
		assert.False(t, ok, tags)
	}
}

// FuzzEscapeRoundTrip: every string survives escaping, and the escaped form
// is a valid LVM tag value.
func FuzzEscapeRoundTrip(f *testing.F) {
	for _, s := range []string{"", "ns/name", "#23", "\x00\xff", "é/ü", "a b=c", strings.Repeat("\xfe", 400)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapeValue(s)
		back, err := UnescapeValue(e)
		if err != nil {
			t.Fatalf("UnescapeValue(EscapeValue(%q)) = %v", s, err)
		}
		if back != s {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
		if tag := PVPrefix + e; len(tag) <= MaxLen {
			if err := hostexec.ValidateTag(tag); err != nil {
				t.Fatalf("tag for %q: %v", s, err)
			}
		}
		if strings.Contains(e, "/") {
			t.Fatalf("escaped %q contains the separator: %q", s, e)
		}
	})
}

// FuzzUnescapeCanonical: what UnescapeValue accepts, EscapeValue writes back
// identically, so one value has one tag.
func FuzzUnescapeCanonical(f *testing.F) {
	for _, s := range []string{"abc", "a#2Fb", "#C3#A9", "#41", "#2f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := UnescapeValue(s)
		if err != nil {
			return
		}
		if e := EscapeValue(v); e != s {
			t.Fatalf("UnescapeValue(%q) = %q, which escapes to %q", s, v, e)
		}
	})
}
