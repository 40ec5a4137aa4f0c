package csi

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi/lvtag"
	"github.com/open-local/open-local/hostexec"
)

func (e *env) lvTags(name string) []string {
	e.t.Helper()
	st, err := e.h.LVMReport(e.ctx)
	require.NoError(e.t, err)
	_, lv := findLV(st, name)
	require.NotNil(e.t, lv, "LV %s", name)
	return lv.Tags
}

// TestCreateVolumeRecordsProvenance: the PersistentVolume and claim that
// external-provisioner names (--extra-create-metadata) and the creation time
// end up on the LV, where the agent's orphan collection reads them.
func TestCreateVolumeRecordsProvenance(t *testing.T) {
	e := newEnv(t, nil)
	meta := map[string]string{ParamPVName: volA, ParamPVCNamespace: "team-a", ParamPVCName: "data-db-0"}
	e.mustCreate(createReq(volA, core.GiB, meta))
	tags := e.lvTags(volA)
	require.NoError(t, hostexec.ValidateTags(tags))
	assert.Contains(t, tags, "ol.pv="+volA)
	assert.Contains(t, tags, "ol.pvc=team-a/data-db-0")
	assert.Contains(t, tags, lvtag.Owner)
	assert.Contains(t, tags, lvtag.KindVolume)
	p, err := lvtag.ParseProvenance(tags)
	require.NoError(t, err)
	assert.Equal(t, lvtag.Provenance{PVName: volA, PVCNamespace: "team-a", PVCName: "data-db-0"}, p)
	created, ok := lvtag.Created(tags)
	require.True(t, ok)
	assert.True(t, testClock.Equal(created))

	// A repeated request returns the volume and leaves its tags alone.
	again := e.mustCreate(createReq(volA, core.GiB, meta))
	assert.Equal(t, volA, again.VolumeId)
	assert.Equal(t, tags, e.lvTags(volA))

	// A clone records its own claim, beside its source.
	clone := createReq(volB, core.GiB, map[string]string{ParamPVName: volB, ParamPVCNamespace: "team-a", ParamPVCName: "copy"})
	clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: volA}}}
	e.mustCreate(clone)
	ct := e.lvTags(volB)
	assert.Contains(t, ct, "ol.pvc=team-a/copy")
	assert.Contains(t, ct, "ol.source=volume:"+volA)
}

// TestCreateVolumeWithoutMetadata: without --extra-create-metadata a volume
// carries its creation time only, so nothing will ever match it as an orphan.
func TestCreateVolumeWithoutMetadata(t *testing.T) {
	e := newEnv(t, nil)
	e.mustCreate(createReq(volA, core.GiB, map[string]string{ParamPVCName: "name-only"}))
	tags := e.lvTags(volA)
	p, err := lvtag.ParseProvenance(tags)
	require.NoError(t, err)
	assert.False(t, p.Complete())
	assert.Empty(t, p.PVName)
	assert.Empty(t, p.PVCName, "a claim name without its namespace is not recorded")
	_, ok := lvtag.Created(tags)
	assert.True(t, ok)
}
