package csi

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/open-local/open-local/csi/lvtag"
	"github.com/open-local/open-local/hostexec"
)

// maxVerbatimName is the longest CO-given name used verbatim as an LV name.
// LVM limits a VG and LV name pair to hostexec.MaxVGLVNameLen characters, so
// a bound independent of the VG keeps the mapping from names to IDs a pure
// function (a retried CreateVolume lands on the same LV whatever VG it picks):
// provisioner names ("local-<uuid>", 42 characters), snapshotter names
// ("snap-<uuid>") and kubelet's inline-volume IDs ("csi-<sha256>", 68) fit.
const maxVerbatimName = 80

// volumeIDFor maps a CO-given volume or snapshot name to the ID the driver
// uses, which is also the LV name: the name itself when LVM accepts it,
// otherwise a stable digest of it with the given prefix.
func volumeIDFor(name, hashPrefix string) string {
	if len(name) <= maxVerbatimName && hostexec.ValidateLVName("vg", name) == nil {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return hashPrefix + hex.EncodeToString(sum[:20])
}

// validID reports whether an ID can name an LV and a record file. IDs come
// back from the CO in every RPC; anything else (a path, "..") cannot be ours.
func validID(id string) bool {
	return len(id) <= maxVerbatimName+8 && hostexec.ValidateLVName("vg", id) == nil
}

// LV tags. They carry what must survive even when the state directory is
// lost, in LVM's tag charset (a-z A-Z 0-9 + _ . - / = ! : & #). Those that
// other components read (owner, kind, creation time, the PersistentVolume and
// claim a volume was created for) are defined in package lvtag.
const (
	// tagOwner marks every LV the driver creates.
	tagOwner = lvtag.Owner
	// tagKindVolume and tagKindEphemeral tell persistent volumes from inline
	// ones; snapshots are recognised by LVM's origin field.
	tagKindVolume    = lvtag.KindVolume
	tagKindEphemeral = "ol.kind=ephemeral"
	tagKindSnapshot  = "ol.kind=snapshot"
	// tagPendingCopy is set while a restore or clone copies its data, and
	// removed when the copy is complete: a retry sees the copy was not.
	tagPendingCopy = "ol.pending=copy"

	tagPodPrefix        = "ol.pod="
	tagSourcePrefix     = "ol.source="
	tagSnapSourcePrefix = "ol.snapshot-source="
	// tagROVolumePrefix on a snapshot names a volume that uses it read-only.
	tagROVolumePrefix = "ol.ro-volume="
	tagCreatedPrefix  = lvtag.CreatedPrefix
	// tagThresholdPrefix and tagExpandPrefix drive the agent's auto-extension
	// of snapshot COW space: extend by <bytes> when data% exceeds <percent>.
	tagThresholdPrefix = "ol.snapshot-expansion-threshold="
	tagExpandPrefix    = "ol.snapshot-expansion-size="
)

// sanitizeTag maps a value into LVM's tag charset, replacing anything else
// with '_', and bounds its length.
func sanitizeTag(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < hostexec.MaxTagLen; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+_.-/=!:&#", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func tagValue(tags []string, prefix string) (string, bool) {
	for _, t := range tags {
		if strings.HasPrefix(t, prefix) {
			return t[len(prefix):], true
		}
	}
	return "", false
}

func tagValues(tags []string, prefix string) []string {
	var out []string
	for _, t := range tags {
		if strings.HasPrefix(t, prefix) {
			out = append(out, t[len(prefix):])
		}
	}
	return out
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

func int64Tag(prefix string, v int64) string { return prefix + strconv.FormatInt(v, 10) }
