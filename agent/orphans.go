package agent

// Orphan volumes: LVs the CSI driver created for a PersistentVolume that
// never came (the claim was deleted while CreateVolume ran) or is gone (the
// PersistentVolume was removed while its node was away, so DeleteVolume never
// ran). Storage admins' data is on these LVs, so the rule is conservative:
// an LV is an orphan only when every check below says so, and any doubt (an
// LV without the driver's tags, an unreadable tag, an API error, a mount)
// keeps it. docs/agent.md, "Orphan volumes", explains the rule.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/csi/lvtag"
	"github.com/open-local/open-local/hostexec"
	"github.com/open-local/open-local/hostexec/lvmreport"
)

// OrphanMode is what the agent does with the orphan volumes it finds.
type OrphanMode string

const (
	// OrphanGCOff: no orphan passes at all.
	OrphanGCOff OrphanMode = "off"
	// OrphanGCReport: count orphans and give each an event; remove nothing.
	OrphanGCReport OrphanMode = "report"
	// OrphanGCDelete: remove orphans (lvremove), with an event each.
	OrphanGCDelete OrphanMode = "delete"
)

// OrphanModes are the accepted modes.
var OrphanModes = []OrphanMode{OrphanGCOff, OrphanGCReport, OrphanGCDelete}

// ParseOrphanMode checks a mode; "" is the default.
func ParseOrphanMode(s string) (OrphanMode, error) {
	if s == "" {
		return DefaultOrphanGC, nil
	}
	for _, m := range OrphanModes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("orphan GC mode %q: accepted: off, report, delete", s)
}

// Event reasons of the orphan passes.
const (
	EventOrphanVolume             = "OrphanVolume"
	EventOrphanVolumeRemoved      = "OrphanVolumeRemoved"
	EventOrphanVolumeRemoveFailed = "OrphanVolumeRemoveFailed"
)

// orphanListPageSize is the page size of the PersistentVolume list.
const orphanListPageSize = 500

// Operations, the "op" label of open_local_agent_orphan_gc_errors_total.
const (
	orphanOpLVMReport  = "LVMReport"
	orphanOpListMounts = "ListMounts"
	orphanOpRemoveLV   = "RemoveLV"
	orphanOpGetPV      = "GetPersistentVolume"
	orphanOpGetPVC     = "GetPersistentVolumeClaim"
	orphanOpListPVs    = "ListPersistentVolumes"
)

// orphanVolume is an LV that passed the host's checks (or all of them).
type orphanVolume struct {
	vg, lv  string
	size    int64
	created time.Time
	prov    lvtag.Provenance
}

func (o orphanVolume) key() string { return o.vg + "/" + o.lv }

func (o orphanVolume) describe() string {
	return fmt.Sprintf("LV %s/%s (%s, created %s for PersistentVolume %s of claim %s/%s)",
		o.vg, o.lv, core.FormatSize(o.size), o.created.UTC().Format(time.RFC3339), o.prov.PVName, o.prov.PVCNamespace, o.prov.PVCName)
}

// orphanCollector makes the orphan passes of one node. It is used by one
// goroutine (the agent's worker).
type orphanCollector struct {
	mode        OrphanMode
	grace       time.Duration
	hostTimeout time.Duration
	host        hostexec.Host
	kube        kubernetes.Interface
	metrics     *metrics
	now         func() time.Time
	// emit records an event on the node's NodeLocalStorage.
	emit func(eventType, reason, message string)

	// reported holds the orphans already given an event, so that a
	// standing orphan gives one event, not one per pass; failed the last
	// removal error of each.
	reported map[string]bool
	failed   map[string]string
}

func newOrphanCollector(opts Options, host hostexec.Host, kube kubernetes.Interface, m *metrics, emit func(eventType, reason, message string)) *orphanCollector {
	return &orphanCollector{
		mode: opts.OrphanGC, grace: opts.OrphanGrace, hostTimeout: opts.HostTimeout,
		host: host, kube: kube, metrics: m, now: time.Now, emit: emit,
		reported: map[string]bool{}, failed: map[string]string{},
	}
}

// orphanPass is what one pass found.
type orphanPass struct {
	// orphans are the orphans left on the node at the end of the pass.
	orphans []orphanVolume
	// removed are those the pass removed.
	removed []orphanVolume
}

// pass finds the node's orphan volumes and reports or removes them. An error
// ends the pass early and keeps every volume it had not yet cleared; the
// gauge then keeps the previous pass's figure.
func (c *orphanCollector) pass(ctx context.Context) (orphanPass, error) {
	var res orphanPass
	hctx, cancel := context.WithTimeout(ctx, c.hostTimeout)
	defer cancel()
	state, err := c.host.LVMReport(hctx)
	if err != nil {
		return res, c.failure(orphanOpLVMReport, err)
	}
	cands := hostCandidates(state, c.now(), c.grace)
	if len(cands) > 0 {
		mounts, err := c.host.ListMounts(hctx)
		if err != nil {
			return res, c.failure(orphanOpListMounts, err)
		}
		cands = c.unmounted(cands, mounts)
	}
	if len(cands) > 0 {
		if cands, err = c.unclaimed(ctx, cands); err != nil {
			return res, err
		}
	}
	res.orphans = cands
	if c.mode == OrphanGCDelete {
		res.orphans, res.removed = c.remove(hctx, cands)
	} else {
		for _, o := range cands {
			if !c.reported[o.key()] {
				c.reported[o.key()] = true
				klog.FromContext(ctx).Info("Orphan volume found; keeping it (--orphan-gc=report)", "vg", o.vg, "lv", o.lv,
					"pv", o.prov.PVName, "pvc", o.prov.PVCNamespace+"/"+o.prov.PVCName, "created", o.created)
				c.emit(corev1.EventTypeWarning, EventOrphanVolume, o.describe()+
					" is an orphan: no PersistentVolume uses it, its claim is gone or bound to another volume, and it is not open."+
					" Its data is kept; remove it with lvremove, or run the agent with --orphan-gc=delete")
			}
		}
	}
	c.forgetExcept(res.orphans)
	c.metrics.orphanVolumes.Set(float64(len(res.orphans)))
	return res, nil
}

// hostCandidates are the LVs the host's view alone cannot clear: the driver's
// volumes (owner and kind tags) with their PersistentVolume and claim
// recorded, a creation time older than grace, not open, and not the origin of
// a snapshot (a VolumeSnapshot may still need it).
func hostCandidates(state core.LVMState, now time.Time, grace time.Duration) []orphanVolume {
	var out []orphanVolume
	for _, vg := range state.VGs {
		origins := map[string]bool{}
		for _, lv := range vg.LVs {
			if lv.IsSnapshot() {
				origins[lv.Origin] = true
			}
		}
		for _, lv := range vg.LVs {
			if lv.IsSnapshot() || origins[lv.Name] || !lv.HasTag(lvtag.Owner) || !lv.HasTag(lvtag.KindVolume) {
				continue
			}
			prov, err := lvtag.ParseProvenance(lv.Tags)
			if err != nil || !prov.Complete() {
				continue
			}
			created, ok := lvtag.Created(lv.Tags)
			if !ok || now.Sub(created) < grace {
				continue // young, or a clock that went back: keep
			}
			attr, err := lvmreport.ParseLVAttr(lv.Attr)
			if err != nil || attr.Open != '-' {
				continue // open, or its state is unknown
			}
			out = append(out, orphanVolume{vg: vg.Name, lv: lv.Name, size: lv.SizeBytes, created: created, prov: prov})
		}
	}
	return out
}

// unmounted drops the candidates whose device is a mount's source. lv_attr
// already shows an open LV; the mount table also covers an LV mounted while
// the report ran.
func (c *orphanCollector) unmounted(cands []orphanVolume, mounts []hostexec.MountInfo) []orphanVolume {
	sources := make(map[string]bool, len(mounts))
	for _, m := range mounts {
		sources[m.Source] = true
	}
	out := cands[:0]
	for _, o := range cands {
		if sources[c.host.LVDevicePath(o.vg, o.lv)] || sources[mapperPath(o.vg, o.lv)] {
			continue
		}
		out = append(out, o)
	}
	return out
}

// mapperPath is the device-mapper node of an LV, as /proc/mounts shows it.
func mapperPath(vg, lv string) string {
	esc := func(s string) string { return strings.ReplaceAll(s, "-", "--") }
	return "/dev/mapper/" + esc(vg) + "-" + esc(lv)
}

// unclaimed keeps the candidates that no PersistentVolume or claim holds:
// no PersistentVolume of the recorded name exists; the recorded claim does
// not exist or is bound to another volume (an unbound claim may still be
// waiting for this very volume); and no CSI PersistentVolume, of any driver,
// has the LV's name as its volume handle (a static PV made for it by hand).
func (c *orphanCollector) unclaimed(ctx context.Context, cands []orphanVolume) ([]orphanVolume, error) {
	logger := klog.FromContext(ctx)
	var suspects []orphanVolume
	for _, o := range cands {
		why, err := c.heldByName(ctx, o)
		if err != nil {
			return nil, err
		}
		if why != "" {
			logger.V(4).Info("Volume is not an orphan", "vg", o.vg, "lv", o.lv, "because", why)
			continue
		}
		suspects = append(suspects, o)
	}
	if len(suspects) == 0 {
		return nil, nil
	}
	handles, err := c.csiVolumeHandles(ctx)
	if err != nil {
		return nil, err
	}
	out := suspects[:0]
	for _, o := range suspects {
		if pv, ok := handles[o.lv]; ok {
			logger.V(4).Info("Volume is not an orphan", "vg", o.vg, "lv", o.lv, "because", "PersistentVolume "+pv+" has it as its volume handle")
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

// heldByName says why the recorded PersistentVolume or claim holds the
// volume, "" when neither does.
func (c *orphanCollector) heldByName(ctx context.Context, o orphanVolume) (string, error) {
	_, err := c.kube.CoreV1().PersistentVolumes().Get(ctx, o.prov.PVName, metav1.GetOptions{})
	switch {
	case err == nil:
		return "PersistentVolume " + o.prov.PVName + " exists", nil
	case !apierrors.IsNotFound(err):
		return "", c.failure(orphanOpGetPV, fmt.Errorf("PersistentVolume %s: %w", o.prov.PVName, err))
	}
	pvc, err := c.kube.CoreV1().PersistentVolumeClaims(o.prov.PVCNamespace).Get(ctx, o.prov.PVCName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", c.failure(orphanOpGetPVC, fmt.Errorf("PersistentVolumeClaim %s/%s: %w", o.prov.PVCNamespace, o.prov.PVCName, err))
	case pvc.Spec.VolumeName == "":
		return "claim " + o.prov.PVCNamespace + "/" + o.prov.PVCName + " is not bound yet (provisioning may be in progress)", nil
	case pvc.Spec.VolumeName == o.prov.PVName:
		return "claim " + o.prov.PVCNamespace + "/" + o.prov.PVCName + " is bound to " + o.prov.PVName, nil
	}
	return "", nil
}

// csiVolumeHandles maps the volume handle of every CSI PersistentVolume to
// its name. It lists page by page and from etcd (no resourceVersion), not
// from a cache: a decision to remove data must not rest on a stale list.
func (c *orphanCollector) csiVolumeHandles(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	opts := metav1.ListOptions{Limit: orphanListPageSize}
	for {
		list, err := c.kube.CoreV1().PersistentVolumes().List(ctx, opts)
		if err != nil {
			return nil, c.failure(orphanOpListPVs, err)
		}
		for i := range list.Items {
			if src := list.Items[i].Spec.CSI; src != nil {
				out[src.VolumeHandle] = list.Items[i].Name
			}
		}
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// remove runs lvremove on each orphan; LVM itself refuses an LV that was
// opened since the report. It returns the orphans left and those removed.
func (c *orphanCollector) remove(ctx context.Context, orphans []orphanVolume) (left, removed []orphanVolume) {
	logger := klog.FromContext(ctx)
	for _, o := range orphans {
		err := c.host.RemoveLV(ctx, o.vg, o.lv)
		switch {
		case err == nil:
			removed = append(removed, o)
			c.metrics.orphansRemoved.Inc()
			logger.Info("Removed orphan volume", "vg", o.vg, "lv", o.lv, "pv", o.prov.PVName,
				"pvc", o.prov.PVCNamespace+"/"+o.prov.PVCName, "created", o.created, "size", o.size)
			c.emit(corev1.EventTypeNormal, EventOrphanVolumeRemoved, "Removed orphan "+o.describe()+
				": no PersistentVolume used it, its claim was gone or bound to another volume, and it was not open")
		case errors.Is(err, hostexec.ErrNotFound):
			// Removed meanwhile (DeleteVolume, or by hand): nothing left.
		default:
			left = append(left, o)
			c.metrics.orphanErrors.WithLabelValues(orphanOpRemoveLV).Inc()
			c.metrics.commandError(orphanOpRemoveLV)
			msg := "Cannot remove orphan " + o.describe() + ": " + err.Error() + "; retrying at the next pass"
			logger.Error(err, "Cannot remove orphan volume; retrying at the next pass", "vg", o.vg, "lv", o.lv)
			if c.failed[o.key()] != err.Error() {
				c.failed[o.key()] = err.Error()
				c.emit(corev1.EventTypeWarning, EventOrphanVolumeRemoveFailed, msg)
			}
		}
	}
	return left, removed
}

// forgetExcept drops the event memory of volumes that are no longer orphans.
func (c *orphanCollector) forgetExcept(orphans []orphanVolume) {
	now := make(map[string]bool, len(orphans))
	for _, o := range orphans {
		now[o.key()] = true
	}
	for k := range c.reported {
		if !now[k] {
			delete(c.reported, k)
		}
	}
	for k := range c.failed {
		if !now[k] {
			delete(c.failed, k)
		}
	}
}

// failure counts an error of op and returns it.
func (c *orphanCollector) failure(op string, err error) error {
	c.metrics.orphanErrors.WithLabelValues(op).Inc()
	switch op {
	case orphanOpLVMReport, orphanOpListMounts:
		c.metrics.commandError(op)
	}
	return fmt.Errorf("orphan pass: %s: %w", op, err)
}
