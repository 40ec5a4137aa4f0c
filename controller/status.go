package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
)

// syncStatus writes the init config's status from the outcomes of the
// selected nodes: how many are synced, which failed and why, and the
// ConfigValid and Ready conditions.
func (c *Controller) syncStatus(ctx context.Context) (string, error) {
	cc, err := c.config()
	if err != nil {
		return resultError, err
	}
	if cc == nil {
		return resultSkipped, nil
	}
	cfg := cc.config
	nodes, err := c.nodes.List(c.opts.NodeSelector)
	if err != nil {
		return resultError, err
	}

	var synced, pending int32
	var failed []v1alpha1.FailedNode
	c.mu.Lock()
	for _, n := range nodes {
		o, ok := c.outcomes[n.Name]
		switch {
		case !ok || o.configHash != cc.specHash:
			pending++
		case o.synced:
			synced++
		default:
			failed = append(failed, v1alpha1.FailedNode{Node: n.Name, Reason: o.reason})
		}
	}
	c.mu.Unlock()
	sort.Slice(failed, func(i, j int) bool { return failed[i].Node < failed[j].Node })

	status := cfg.Status.DeepCopy()
	status.SelectedNodes = int32(len(nodes))
	status.SyncedNodes = synced
	status.FailedNodeCount = int32(len(failed))
	status.FailedNodes = failed[:min(len(failed), v1alpha1.MaxFailedNodes)]
	if len(status.FailedNodes) == 0 {
		status.FailedNodes = nil
	}
	if pending == 0 {
		status.ObservedGeneration = cfg.Generation
	}

	valid := metav1.Condition{
		Type: v1alpha1.ConditionConfigValid, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValid,
		Message: "every selector and listConfig pattern is valid", ObservedGeneration: cfg.Generation,
	}
	if len(cc.problems) > 0 {
		valid.Status = metav1.ConditionFalse
		valid.Reason = cc.problems[0].Reason
		if len(cc.selectorProblems()) > 0 {
			valid.Reason = v1alpha1.ReasonInvalidSelector
		}
		valid.Message = truncate(joinProblems(cc.problems), maxConditionMessage)
	}
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: cfg.Generation}
	total := len(nodes)
	switch {
	case len(cc.selectorProblems()) > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonConfigInvalid
		ready.Message = "the config is not applied to any node while a nodesConfig selector is invalid"
	case len(failed) > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonSyncFailed
		ready.Message = truncate(fmt.Sprintf("%d of %d selected nodes failed to sync: %s", len(failed), total, describeFailed(failed)), maxConditionMessage)
	case pending > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonSyncPending
		ready.Message = fmt.Sprintf("%d of %d selected nodes are not yet reconciled against this generation", pending, total)
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, v1alpha1.ReasonSynced
		ready.Message = fmt.Sprintf("all %d selected nodes are synced", total)
	}
	oldValid := meta.FindStatusCondition(cfg.Status.Conditions, v1alpha1.ConditionConfigValid)
	oldReady := meta.FindStatusCondition(cfg.Status.Conditions, v1alpha1.ConditionReady)
	meta.SetStatusCondition(&status.Conditions, valid)
	meta.SetStatusCondition(&status.Conditions, ready)

	if apiequality.Semantic.DeepEqual(*status, cfg.Status) {
		return resultUnchanged, nil
	}
	updated := cfg.DeepCopy()
	updated.Status = *status
	if _, err := c.client.CsiV1alpha1().NodeLocalStorageInitConfigs().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return resultError, fmt.Errorf("update status of NodeLocalStorageInitConfig %s: %w", cfg.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("Updated init config status", "selected", total, "synced", synced, "failed", len(failed), "pending", pending)

	if valid.Status == metav1.ConditionFalse && (oldValid == nil || oldValid.Status != valid.Status || oldValid.Message != valid.Message) {
		c.recorder.Event(cfg, corev1.EventTypeWarning, EventConfigInvalid, valid.Message)
	}
	if ready.Status == metav1.ConditionTrue && (oldReady == nil || oldReady.Status != ready.Status) {
		c.recorder.Event(cfg, corev1.EventTypeNormal, EventSynced, ready.Message)
	}
	return resultUpdated, nil
}

// describeFailed names the first failed nodes and their reasons.
func describeFailed(failed []v1alpha1.FailedNode) string {
	const shown = 3
	parts := make([]string, 0, shown+1)
	for i, f := range failed {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(failed)-shown))
			break
		}
		parts = append(parts, f.Node+": "+f.Reason)
	}
	return strings.Join(parts, "; ")
}
