package agent

import (
	"fmt"
	"sort"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-local/open-local/agent/discovery"
	"github.com/open-local/open-local/agent/initres"
	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
)

// maxConditionMessage is the longest message metav1.Condition accepts.
const maxConditionMessage = 32768

// Messages of the ConfigValid condition. The controller writes the same
// condition from the same spec with the same words, so that two writers
// agree instead of taking turns.
const configValidMessage = "every listConfig pattern is a valid regular expression"

// Condition reasons the agent adds to those of v1alpha1.
const (
	// EventConfigInvalid is the reason of the Warning event for an invalid
	// listConfig (the controller uses the same one).
	EventConfigInvalid = "ConfigInvalid"
	// EventReservationInvalid is the reason of the Warning event for a
	// malformed storage-reserved annotation.
	EventReservationInvalid = "ReservationInvalid"
	// EventDiscoveryFailed is the reason of the Warning event for a failed
	// discovery pass.
	EventDiscoveryFailed = "DiscoveryFailed"
)

// statusInput is what the status of one pass is computed from.
type statusInput struct {
	// snap is the pass's result; nil when the pass failed (discoveryErr).
	snap         *discovery.Snapshot
	discoveryErr error
	// initProblems are what the last initialisation attempt could not do.
	initProblems []initres.Problem
	// initPending: the current generation's resources were not attempted yet.
	initPending bool
	owned       []string
}

// statusResult is the computed status and the config problems found.
type statusResult struct {
	status v1alpha1.NodeLocalStorageStatus
	// changed reports a difference from the current status other than times.
	changed bool
	// configProblem and reservationProblem say what is wrong with the
	// spec's listConfig and the reservation annotation ("" when fine).
	configProblem      string
	reservationProblem string
	// statusOptions sized the VGs (the metrics use the same).
	statusOptions discovery.StatusOptions
}

// computeStatus derives the status of nls from one pass. Lists come out
// sorted, so that the same host gives the same status; timestamps change
// only with something else.
func computeStatus(nls *v1alpha1.NodeLocalStorage, in statusInput, now metav1.Time) statusResult {
	old := nls.Status
	st := *old.DeepCopy()
	res := statusResult{}

	reservations, resErr := core.ParseReservations(nls.Annotations[core.ReservedAnnotation])
	if resErr != nil {
		res.reservationProblem = fmt.Sprintf("annotation %s: %v; every volume group reports allocatable 0 until it is fixed", core.ReservedAnnotation, resErr)
	}
	res.statusOptions = discovery.StatusOptions{OwnedLVPrefixes: in.owned, Reservations: reservations, HoldBackAll: resErr != nil}
	compiled, lcErr := core.CompileListConfig(coreListConfig(nls.Spec.ListConfig))
	if lcErr != nil {
		res.configProblem = truncate(configProblems(lcErr), maxConditionMessage)
	}

	if in.snap != nil {
		info := discovery.NodeStorageInfo(*in.snap, res.statusOptions)
		info.State.LastHeartbeatTime = old.NodeStorageInfo.State.LastHeartbeatTime
		info.State.LastTransitionTime = old.NodeStorageInfo.State.LastTransitionTime
		if info.State.Type != old.NodeStorageInfo.State.Type || info.State.Status != old.NodeStorageInfo.State.Status ||
			info.State.LastTransitionTime == nil {
			t := now
			info.State.LastTransitionTime = &t
		}
		st.NodeStorageInfo = info
	}
	switch {
	case lcErr != nil:
		// Nothing is offered from a node whose listConfig cannot be read:
		// keeping the old list would keep scheduling onto what the admin
		// may just have tried to exclude.
		st.FilteredStorageInfo = v1alpha1.FilteredStorageInfo{UpdateStatus: v1alpha1.UpdateStatusInfo{
			LastUpdateTime: old.FilteredStorageInfo.UpdateStatus.LastUpdateTime,
			Status:         v1alpha1.UpdateStatusFailed,
			Reason:         truncate("listConfig is invalid: "+res.configProblem, maxConditionMessage),
		}}
	case in.snap != nil:
		f := discovery.Filtered(*in.snap, compiled)
		f.UpdateStatus = v1alpha1.UpdateStatusInfo{
			LastUpdateTime: old.FilteredStorageInfo.UpdateStatus.LastUpdateTime,
			Status:         v1alpha1.UpdateStatusAccepted,
		}
		st.FilteredStorageInfo = f
	}

	setCondition(&st.Conditions, configValidCondition(nls.Generation, res.configProblem), now)
	if in.snap != nil {
		setCondition(&st.Conditions, volumeGroupReadyCondition(nls, in.snap, in.initProblems), now)
	}
	setCondition(&st.Conditions, readyCondition(nls.Generation, in, res), now)

	res.changed = !apiequality.Semantic.DeepEqual(withoutTimes(st), withoutTimes(old))
	if res.changed {
		t := now
		st.NodeStorageInfo.State.LastHeartbeatTime = &t
		if st.FilteredStorageInfo.UpdateStatus.LastUpdateTime == nil ||
			!apiequality.Semantic.DeepEqual(withoutTimes(v1alpha1.NodeLocalStorageStatus{FilteredStorageInfo: st.FilteredStorageInfo}),
				withoutTimes(v1alpha1.NodeLocalStorageStatus{FilteredStorageInfo: old.FilteredStorageInfo})) {
			st.FilteredStorageInfo.UpdateStatus.LastUpdateTime = &t
		}
	}
	res.status = st
	return res
}

// setCondition sets c, keeping the transition time when the status stays.
func setCondition(conds *[]metav1.Condition, c metav1.Condition, now metav1.Time) {
	c.LastTransitionTime = now
	meta.SetStatusCondition(conds, c)
}

func configValidCondition(generation int64, problem string) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionConfigValid, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonValid, Message: configValidMessage, ObservedGeneration: generation}
	if problem != "" {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalidRegexp, problem
	}
	return c
}

// volumeGroupReadyCondition is True when every VG of resourceToBeInited
// exists with every device listed for it.
func volumeGroupReadyCondition(nls *v1alpha1.NodeLocalStorage, snap *discovery.Snapshot, problems []initres.Problem) metav1.Condition {
	var missing []string
	for _, want := range nls.Spec.ResourceToBeInited.VGs {
		vg, ok := findVG(snap.Storage.VGs, want.Name)
		if !ok {
			missing = append(missing, fmt.Sprintf("volume group %s does not exist", want.Name))
			continue
		}
		pvs := map[string]bool{}
		for _, pv := range vg.PVs {
			pvs[pv.Name] = true
		}
		var absent []string
		for _, d := range want.Devices {
			if !pvs[d] {
				absent = append(absent, d)
			}
		}
		if len(absent) > 0 {
			missing = append(missing, fmt.Sprintf("volume group %s lacks %s", want.Name, strings.Join(absent, ", ")))
		}
	}
	c := metav1.Condition{Type: v1alpha1.ConditionVolumeGroupReady, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonVGCreated, ObservedGeneration: nls.Generation}
	if len(missing) == 0 {
		c.Message = fmt.Sprintf("all %d volume groups of resourceToBeInited exist", len(nls.Spec.ResourceToBeInited.VGs))
		return c
	}
	c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonSyncPending
	msg := strings.Join(missing, "; ")
	var why []string
	for _, p := range problems {
		if strings.HasPrefix(p.Resource, "volume group ") {
			why = append(why, p.Message)
		}
	}
	if len(why) > 0 {
		c.Reason = v1alpha1.ReasonVGCreateFailed
		msg += ": " + strings.Join(why, "; ")
	}
	c.Message = truncate(msg, maxConditionMessage)
	return c
}

// readyCondition sums up: True once the config is valid, the pass
// succeeded and every resource of resourceToBeInited exists.
func readyCondition(generation int64, in statusInput, res statusResult) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: generation}
	var msgs []string
	reason := ""
	add := func(r, m string) {
		if reason == "" {
			reason = r
		}
		msgs = append(msgs, m)
	}
	if res.configProblem != "" {
		add(v1alpha1.ReasonConfigInvalid, "listConfig is invalid: "+res.configProblem)
	}
	if res.reservationProblem != "" {
		add(v1alpha1.ReasonConfigInvalid, res.reservationProblem)
	}
	if in.discoveryErr != nil {
		add(v1alpha1.ReasonSyncFailed, "discovery failed: "+in.discoveryErr.Error())
	}
	if len(in.initProblems) > 0 {
		parts := make([]string, len(in.initProblems))
		for i, p := range in.initProblems {
			parts[i] = p.String()
		}
		add(v1alpha1.ReasonSyncFailed, "resourceToBeInited: "+strings.Join(parts, "; "))
	} else if in.initPending {
		add(v1alpha1.ReasonSyncPending, "resourceToBeInited is being initialised")
	}
	if reason == "" {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonSynced, "storage initialised and reported"
		return c
	}
	c.Status, c.Reason, c.Message = metav1.ConditionFalse, reason, truncate(strings.Join(msgs, "; "), maxConditionMessage)
	return c
}

// withoutTimes is a status with every timestamp cleared, for comparisons.
func withoutTimes(s v1alpha1.NodeLocalStorageStatus) v1alpha1.NodeLocalStorageStatus {
	c := s.DeepCopy()
	c.NodeStorageInfo.State.LastHeartbeatTime = nil
	c.NodeStorageInfo.State.LastTransitionTime = nil
	c.FilteredStorageInfo.UpdateStatus.LastUpdateTime = nil
	for i := range c.Conditions {
		c.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	sort.SliceStable(c.Conditions, func(i, j int) bool { return c.Conditions[i].Type < c.Conditions[j].Type })
	return *c
}

func findVG(vgs []core.VolumeGroup, name string) (core.VolumeGroup, bool) {
	for _, vg := range vgs {
		if vg.Name == name {
			return vg, true
		}
	}
	return core.VolumeGroup{}, false
}

func coreListConfig(lc v1alpha1.ListConfig) core.ListConfig {
	return core.ListConfig{
		VGs:         core.Filter{Include: lc.VGs.Include, Exclude: lc.VGs.Exclude},
		MountPoints: core.Filter{Include: lc.MountPoints.Include, Exclude: lc.MountPoints.Exclude},
		Devices:     core.Filter{Include: lc.Devices.Include, Exclude: lc.Devices.Exclude},
	}
}

// configProblems describes every invalid pattern as
// "spec.listConfig.<kind>.<include|exclude>[i]: invalid regular expression
// "<pattern>": <why>", joined by "; ".
func configProblems(err error) string {
	var parts []string
	for _, e := range flatten(err) {
		if pe, ok := e.(*core.PatternError); ok {
			parts = append(parts, fmt.Sprintf("spec.%s: invalid regular expression %q: %v", pe.Field, pe.Pattern, pe.Err))
			continue
		}
		parts = append(parts, "spec: "+e.Error())
	}
	return strings.Join(parts, "; ")
}

func flatten(err error) []error {
	if _, ok := err.(*core.PatternError); ok {
		return []error{err}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "..."
	cut := n - len(ellipsis)
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + ellipsis
}
