// Package lvtag is the part of the CSI driver's LV tag vocabulary that other
// components read: which LVs are the driver's volumes, when they were created
// and which PersistentVolume and claim they were created for. The driver
// writes these tags (package csi); the agent reads them to find volumes whose
// PersistentVolume never came or is gone.
//
// Tags are in LVM's charset (a-z A-Z 0-9 + _ . - / = ! : & #). Values that
// could hold anything else are escaped reversibly (EscapeValue).
package lvtag

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxLen is the longest tag LVM accepts.
const MaxLen = 1024

const (
	// Owner marks every LV the driver creates.
	Owner = "ol.owner=open-local"
	// KindVolume marks a persistent volume (not an inline volume or a snapshot).
	KindVolume = "ol.kind=volume"
	// CreatedPrefix starts the creation time, in Unix nanoseconds.
	CreatedPrefix = "ol.created="
	// PVPrefix starts the name of the PersistentVolume a volume was created
	// for (external-provisioner's csi.storage.k8s.io/pv/name).
	PVPrefix = "ol.pv="
	// PVCPrefix starts "<namespace>/<name>" of the claim a volume was created
	// for, each part escaped with EscapeValue.
	PVCPrefix = "ol.pvc="
)

// escape starts a "#XX" escape: it is in LVM's charset, and never in a
// Kubernetes object name, so real names are written as they are.
const escape = '#'

func verbatim(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

// EscapeValue maps s into LVM's tag charset reversibly: letters, digits and
// ". - _" stay, every other byte becomes "#" and two upper-case hex digits.
// Kubernetes names (DNS labels and subdomains) are therefore unchanged, and
// "/" is free to separate a namespace from a name.
func EscapeValue(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !verbatim(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if verbatim(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(escape)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// UnescapeValue reverses EscapeValue. Anything EscapeValue cannot have
// written is an error: a tag set by hand is not trusted.
func UnescapeValue(s string) (string, error) {
	if strings.IndexByte(s, escape) < 0 {
		for i := 0; i < len(s); i++ {
			if !verbatim(s[i]) {
				return "", fmt.Errorf("tag value %q: character %q is not escaped", s, s[i])
			}
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case verbatim(c):
			b.WriteByte(c)
		case c == escape && i+2 < len(s) && isUpperHex(s[i+1]) && isUpperHex(s[i+2]):
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if verbatim(byte(v)) {
				return "", fmt.Errorf("tag value %q: %q is escaped needlessly", s, s[i:i+3])
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", fmt.Errorf("tag value %q: malformed at byte %d", s, i)
		}
	}
	return b.String(), nil
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// Provenance is what a volume was created for.
type Provenance struct {
	PVName       string
	PVCNamespace string
	PVCName      string
}

// Complete reports whether every field is set: only then can a volume be
// matched against the cluster's objects.
func (p Provenance) Complete() bool {
	return p.PVName != "" && p.PVCNamespace != "" && p.PVCName != ""
}

// Tags returns the tags that record p; a field that is empty, or whose tag
// would exceed MaxLen, is left out (a volume then simply is not matched).
func (p Provenance) Tags() []string {
	var out []string
	if p.PVName != "" {
		if t := PVPrefix + EscapeValue(p.PVName); len(t) <= MaxLen {
			out = append(out, t)
		}
	}
	if p.PVCNamespace != "" && p.PVCName != "" {
		if t := PVCPrefix + EscapeValue(p.PVCNamespace) + "/" + EscapeValue(p.PVCName); len(t) <= MaxLen {
			out = append(out, t)
		}
	}
	return out
}

// ParseProvenance reads the provenance tags. A tag present more than once or
// malformed is an error; missing tags leave their fields empty.
func ParseProvenance(tags []string) (Provenance, error) {
	var p Provenance
	pv, okPV, err := single(tags, PVPrefix)
	if err != nil {
		return p, err
	}
	if okPV {
		if p.PVName, err = UnescapeValue(pv); err != nil {
			return Provenance{}, fmt.Errorf("tag %s: %w", PVPrefix, err)
		}
	}
	pvc, okPVC, err := single(tags, PVCPrefix)
	if err != nil {
		return Provenance{}, err
	}
	if okPVC {
		ns, name, found := strings.Cut(pvc, "/")
		if !found || ns == "" || name == "" {
			return Provenance{}, fmt.Errorf("tag %s%s: want <namespace>/<name>", PVCPrefix, pvc)
		}
		if p.PVCNamespace, err = UnescapeValue(ns); err != nil {
			return Provenance{}, fmt.Errorf("tag %s namespace: %w", PVCPrefix, err)
		}
		if p.PVCName, err = UnescapeValue(name); err != nil {
			return Provenance{}, fmt.Errorf("tag %s name: %w", PVCPrefix, err)
		}
	}
	return p, nil
}

// CreatedTag records a creation time.
func CreatedTag(t time.Time) string { return CreatedPrefix + strconv.FormatInt(t.UnixNano(), 10) }

// Created reads the creation time; ok is false without a (valid, single) tag.
func Created(tags []string) (time.Time, bool) {
	v, ok, err := single(tags, CreatedPrefix)
	if !ok || err != nil {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ns <= 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// Has reports whether tags hold t.
func Has(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// single returns the value of the one tag with prefix.
func single(tags []string, prefix string) (string, bool, error) {
	val, found := "", false
	for _, t := range tags {
		if !strings.HasPrefix(t, prefix) {
			continue
		}
		if found {
			return "", false, fmt.Errorf("tag %s appears more than once", prefix)
		}
		val, found = t[len(prefix):], true
	}
	return val, found, nil
}
