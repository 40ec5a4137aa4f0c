package agent

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
)

func snapshot() *discovery.Snapshot {
	return &discovery.Snapshot{Storage: core.NodeStorage{
		Devices: []core.BlockDevice{{Name: "/dev/sdb", SizeBytes: 10 * core.GiB, Media: core.MediaSSD}},
		VGs: []core.VolumeGroup{{Name: "pool", TotalBytes: 10 * core.GiB, FreeBytes: 8 * core.GiB,
			PVs: []core.PhysicalVolume{{Name: "/dev/sdb", VG: "pool"}},
			LVs: []core.LogicalVolume{{Name: "local-1", VG: "pool", SizeBytes: 2 * core.GiB, Attr: "-wi-a-----"}}}},
	}}
}

func at(sec int64) metav1.Time { return metav1.NewTime(time.Unix(sec, 0)) }

func TestComputeStatusTimes(t *testing.T) {
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: allListed()})
	nls.Generation = 3
	in := statusInput{snap: snapshot(), owned: core.DefaultOwnedLVPrefixes}

	r1 := computeStatus(nls, in, at(100))
	require.True(t, r1.changed)
	st := r1.status
	assert.Equal(t, at(100), *st.NodeStorageInfo.State.LastHeartbeatTime)
	assert.Equal(t, at(100), *st.NodeStorageInfo.State.LastTransitionTime)
	assert.Equal(t, at(100), *st.FilteredStorageInfo.UpdateStatus.LastUpdateTime)
	require.Len(t, st.Conditions, 3)
	for _, c := range st.Conditions {
		assert.Equal(t, int64(3), c.ObservedGeneration, c.Type)
		assert.Equal(t, at(100), c.LastTransitionTime, c.Type)
	}
	assert.Equal(t, []string{"pool"}, st.FilteredStorageInfo.VolumeGroups)

	// The same host later: no change, nothing moves.
	nls.Status = st
	r2 := computeStatus(nls, in, at(200))
	assert.False(t, r2.changed)
	assert.Equal(t, st, r2.status)

	// An LV more: the heartbeat moves, the state's transition does not,
	// and neither does the filtered list's update time.
	more := snapshot()
	more.Storage.VGs[0].LVs = append(more.Storage.VGs[0].LVs, core.LogicalVolume{Name: "local-2", VG: "pool", SizeBytes: core.GiB})
	more.Storage.VGs[0].FreeBytes -= core.GiB
	r3 := computeStatus(nls, statusInput{snap: more, owned: core.DefaultOwnedLVPrefixes}, at(300))
	require.True(t, r3.changed)
	assert.Equal(t, at(300), *r3.status.NodeStorageInfo.State.LastHeartbeatTime)
	assert.Equal(t, at(100), *r3.status.NodeStorageInfo.State.LastTransitionTime)
	assert.Equal(t, at(100), *r3.status.FilteredStorageInfo.UpdateStatus.LastUpdateTime)
	assert.Equal(t, at(100), r3.status.Conditions[2].LastTransitionTime, "Ready stayed True")

	// The VG full: the state changes type, so its transition time moves.
	nls.Status = r3.status
	full := snapshot()
	full.Storage.VGs[0].FreeBytes = 0
	r4 := computeStatus(nls, statusInput{snap: full, owned: core.DefaultOwnedLVPrefixes}, at(400))
	assert.Equal(t, v1alpha1.StorageFull, r4.status.NodeStorageInfo.State.Type)
	assert.Equal(t, at(400), *r4.status.NodeStorageInfo.State.LastTransitionTime)

	// Another VG listed: the filtered list's update time moves.
	nls.Status = r4.status
	two := snapshot()
	two.Storage.VGs = append(two.Storage.VGs, core.VolumeGroup{Name: "pool2", TotalBytes: core.GiB, FreeBytes: core.GiB})
	r5 := computeStatus(nls, statusInput{snap: two, owned: core.DefaultOwnedLVPrefixes}, at(500))
	assert.Equal(t, []string{"pool", "pool2"}, r5.status.FilteredStorageInfo.VolumeGroups)
	assert.Equal(t, at(500), *r5.status.FilteredStorageInfo.UpdateStatus.LastUpdateTime)
}

func TestComputeStatusIgnoresConditionOrder(t *testing.T) {
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{})
	first := computeStatus(nls, statusInput{snap: snapshot()}, at(1))
	nls.Status = first.status
	// Another writer reordered the conditions and added one.
	c := nls.Status.Conditions
	nls.Status.Conditions = []metav1.Condition{c[2], {Type: "Other", Status: metav1.ConditionTrue, Reason: "R", LastTransitionTime: at(1)}, c[0], c[1]}
	r := computeStatus(nls, statusInput{snap: snapshot()}, at(2))
	assert.False(t, r.changed)
	assert.Len(t, r.status.Conditions, 4, "another writer's condition is kept")
}

func TestComputeStatusConfigProblems(t *testing.T) {
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: v1alpha1.ListConfig{
		VGs:     v1alpha1.ListFilter{Include: []string{"("}},
		Devices: v1alpha1.ListFilter{Exclude: []string{"a[", ".*"}},
	}})
	r := computeStatus(nls, statusInput{snap: snapshot()}, at(1))
	// The controller writes the same condition with the same words.
	want := "spec.listConfig.vgs.include[0]: invalid regular expression \"(\": error parsing regexp: missing closing ): `(`; " +
		"spec.listConfig.devices.exclude[0]: invalid regular expression \"a[\": error parsing regexp: missing closing ]: `[`"
	assert.Equal(t, want, r.configProblem)
	cv := r.status.Conditions[0]
	assert.Equal(t, v1alpha1.ConditionConfigValid, cv.Type)
	assert.Equal(t, metav1.ConditionFalse, cv.Status)
	assert.Equal(t, want, cv.Message)
	assert.Empty(t, r.status.FilteredStorageInfo.VolumeGroups)
	assert.Equal(t, v1alpha1.UpdateStatusFailed, r.status.FilteredStorageInfo.UpdateStatus.Status)

	// A failed pass with a bad config still clears the filtered list.
	nls.Status.FilteredStorageInfo.VolumeGroups = []string{"pool"}
	r = computeStatus(nls, statusInput{discoveryErr: assert.AnError}, at(2))
	assert.Empty(t, r.status.FilteredStorageInfo.VolumeGroups)
	ready := r.status.Conditions[len(r.status.Conditions)-1]
	assert.Equal(t, v1alpha1.ReasonConfigInvalid, ready.Reason, "the first problem names the reason")
	assert.Contains(t, ready.Message, "discovery failed: ")
}

func TestReadyCondition(t *testing.T) {
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{ResourceToBeInited: v1alpha1.ResourceToBeInited{
		VGs: []v1alpha1.VGToBeInited{{Name: "pool", Devices: []string{"/dev/sdb", "/dev/sdc"}}, {Name: "missing", Devices: []string{"/dev/x"}}}}})
	r := computeStatus(nls, statusInput{snap: snapshot(), initPending: true}, at(1))
	vgr, ready := r.status.Conditions[1], r.status.Conditions[2]
	assert.Equal(t, metav1.ConditionFalse, vgr.Status)
	assert.Equal(t, v1alpha1.ReasonSyncPending, vgr.Reason)
	assert.Equal(t, "volume group pool lacks /dev/sdc; volume group missing does not exist", vgr.Message)
	assert.Equal(t, v1alpha1.ReasonSyncPending, ready.Reason)

	problems := []initres.Problem{{Resource: "volume group missing", Message: "device /dev/x not found"},
		{Resource: "mount point /mnt/open-local/a", Message: "device /dev/y not found"}}
	r = computeStatus(nls, statusInput{snap: snapshot(), initProblems: problems}, at(2))
	vgr, ready = r.status.Conditions[1], r.status.Conditions[2]
	assert.Equal(t, v1alpha1.ReasonVGCreateFailed, vgr.Reason)
	assert.True(t, strings.HasSuffix(vgr.Message, ": device /dev/x not found"), vgr.Message)
	assert.NotContains(t, vgr.Message, "/dev/y", "mount point problems are not the VGs'")
	assert.Equal(t, v1alpha1.ReasonSyncFailed, ready.Reason)
	assert.Equal(t, "resourceToBeInited: volume group missing: device /dev/x not found; mount point /mnt/open-local/a: device /dev/y not found", ready.Message)

	// The pass failed: the VG condition is left as it was.
	nls.Status = r.status
	r = computeStatus(nls, statusInput{discoveryErr: assert.AnError}, at(3))
	assert.Equal(t, vgr, r.status.Conditions[1])
}

func TestTruncate(t *testing.T) {
	assert.Equal(t, "abc", truncate("abc", 3))
	assert.Equal(t, "a...", truncate("abcdefg", 4))
	s := strings.Repeat("é", 10) // 2 bytes each
	got := truncate(s, 8)
	assert.True(t, utf8.ValidString(got), got)
	assert.LessOrEqual(t, len(got), 8)
	long := strings.Repeat("x", 40000)
	nls := newNLS(v1alpha1.NodeLocalStorageSpec{ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"(" + long}}}})
	r := computeStatus(nls, statusInput{snap: snapshot()}, at(1))
	for _, c := range r.status.Conditions {
		assert.LessOrEqual(t, len(c.Message), maxConditionMessage, c.Type)
	}
}
