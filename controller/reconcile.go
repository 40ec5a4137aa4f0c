package controller

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
)

// Bounds of the API fields messages go into.
const (
	maxConditionMessage = 32768
	maxFailedReason     = 1024
)

func isManaged(nls *v1alpha1.NodeLocalStorage) bool {
	return nls.Labels[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByController
}

// syncNode brings the NodeLocalStorage of one node in line with the init
// config and records the node's outcome for the config's status.
func (c *Controller) syncNode(ctx context.Context, name string) (string, error) {
	logger := klog.FromContext(ctx)
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		node = nil
	} else if err != nil {
		return resultError, err
	}
	nls, err := c.nlses.Get(name)
	if apierrors.IsNotFound(err) {
		nls = nil
	} else if err != nil {
		return resultError, err
	}

	// Out of scope: the node is gone or not selected. Only what we created goes.
	if node == nil || !c.opts.NodeSelector.Matches(labels.Set(node.Labels)) {
		c.setOutcome(name, nil)
		if nls == nil {
			return resultSkipped, nil
		}
		why := "its node no longer exists"
		var about runtime.Object = nls
		if node != nil {
			why = fmt.Sprintf("its node no longer matches the node selector %q", c.opts.NodeSelector.String())
			about = node
		}
		if !isManaged(nls) {
			if node == nil && c.firstOrphanNotice(nls) {
				logger.Info("Keeping a NodeLocalStorage the controller did not create", "reason", why)
				c.recorder.Eventf(nls, corev1.EventTypeNormal, EventOrphanRetained,
					"NodeLocalStorage %s was not created by the controller and is kept although %s", nls.Name, why)
			}
			return resultSkipped, nil
		}
		if nls.DeletionTimestamp != nil {
			return resultSkipped, nil
		}
		err := c.client.CsiV1alpha1().NodeLocalStorages().Delete(ctx, nls.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &nls.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return resultError, fmt.Errorf("delete NodeLocalStorage %s: %w", nls.Name, err)
		}
		logger.Info("Deleted NodeLocalStorage", "reason", why)
		c.recorder.Eventf(about, corev1.EventTypeNormal, EventDeleted, "Deleted NodeLocalStorage %s: %s", nls.Name, why)
		return resultDeleted, nil
	}

	cc, err := c.config()
	if err != nil {
		return resultError, err
	}
	result, outcome, current, err := c.applyConfig(ctx, cc, node, nls)
	c.setOutcome(name, outcome)
	if err != nil {
		return result, err
	}
	// Whatever its origin, the spec the node has must be usable by its agent.
	if current != nil && current.DeletionTimestamp == nil {
		if err := c.syncConfigValid(ctx, current); err != nil {
			return resultError, err
		}
	}
	return result, nil
}

// firstOrphanNotice reports whether a retained NodeLocalStorage is seen for
// the first time, so that it is announced once rather than on every resync.
func (c *Controller) firstOrphanNotice(nls *v1alpha1.NodeLocalStorage) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.orphans[nls.Name] == nls.UID {
		return false
	}
	c.orphans[nls.Name] = nls.UID
	return true
}

// applyConfig creates or updates the NodeLocalStorage of a selected node (nls
// is nil when it does not exist). It returns the latest known object: the one
// it wrote, which the cache may not have yet, or nls.
func (c *Controller) applyConfig(ctx context.Context, cc *compiledConfig, node *corev1.Node, nls *v1alpha1.NodeLocalStorage) (string, *nodeOutcome, *v1alpha1.NodeLocalStorage, error) {
	logger := klog.FromContext(ctx)
	if cc == nil {
		// Without a config there is nothing to derive; existing objects stay.
		return resultSkipped, nil, nls, nil
	}
	failed := func(reason string) *nodeOutcome {
		return &nodeOutcome{configHash: cc.specHash, reason: truncate(reason, maxFailedReason)}
	}
	spec, err := cc.derive(node)
	if err != nil {
		// The config is at fault; its status and events say so. Retrying
		// cannot help: a change of the config requeues every node.
		logger.V(2).Info("Init config cannot be applied to the node", "err", err)
		return resultInvalid, failed(err.Error()), nls, nil
	}
	hash := hashOf(spec)
	cfg := cc.config
	nlsClient := c.client.CsiV1alpha1().NodeLocalStorages()

	if nls == nil {
		obj := &v1alpha1.NodeLocalStorage{
			ObjectMeta: metav1.ObjectMeta{
				Name:        node.Name,
				Labels:      map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByController},
				Annotations: derivationAnnotations(nil, cfg, hash),
			},
			Spec: spec,
		}
		created, err := nlsClient.Create(ctx, obj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Created meanwhile (by a previous attempt the cache has not
			// seen yet, or by someone else): reconcile the live object.
			live, gerr := nlsClient.Get(ctx, node.Name, metav1.GetOptions{})
			if gerr != nil {
				return resultError, failed(fmt.Sprintf("get NodeLocalStorage: %v", gerr)), nil, fmt.Errorf("get NodeLocalStorage %s: %w", node.Name, gerr)
			}
			return c.applyConfig(ctx, cc, node, live)
		}
		if apierrors.IsInvalid(err) {
			r, o := c.rejected(node, nil, cc, err)
			return r, o, nil, nil
		}
		if err != nil {
			c.recorder.Eventf(node, corev1.EventTypeWarning, EventSyncFailed, "Creating NodeLocalStorage %s failed: %v", node.Name, err)
			return resultError, failed(fmt.Sprintf("create NodeLocalStorage: %v", err)), nil, fmt.Errorf("create NodeLocalStorage %s: %w", node.Name, err)
		}
		logger.Info("Created NodeLocalStorage", "initConfig", cfg.Name, "generation", cfg.Generation)
		c.recorder.Eventf(created, corev1.EventTypeNormal, EventCreated,
			"Created from NodeLocalStorageInitConfig %s (generation %d)", cfg.Name, cfg.Generation)
		return resultCreated, &nodeOutcome{configHash: cc.specHash, synced: true}, created, nil
	}
	if nls.DeletionTimestamp != nil {
		// Its deletion event requeues the node, which then creates it anew.
		return resultSkipped, nil, nls, nil
	}

	recorded := nls.Annotations[v1alpha1.AnnotationDerivedSpecHash]
	sameSpec := apiequality.Semantic.DeepEqual(nls.Spec, spec)
	result := resultUnchanged
	rewrite := false
	switch {
	case sameSpec:
	case c.opts.OverwriteManualEdits:
		rewrite = true
	case recorded == hash:
		// The config has nothing new for this node: the difference is a
		// manual edit, and it stays.
		result = resultPreserved
	case recorded == "":
		// First contact (created by hand or by an older controller): adopt
		// the spec as it is; later changes of the config apply.
		result = resultPreserved
		c.recorder.Eventf(nls, corev1.EventTypeNormal, EventSpecPreserved,
			"Spec differs from what NodeLocalStorageInitConfig %s gives this node and is kept; it is replaced when the config changes for this node", cfg.Name)
	default:
		rewrite = true
	}
	annotations := derivationAnnotations(nls.Annotations, cfg, hash)
	if !rewrite && labels.Equals(annotations, nls.Annotations) {
		return result, &nodeOutcome{configHash: cc.specHash, synced: true}, nls, nil
	}

	updated := nls.DeepCopy()
	updated.Annotations = annotations
	if rewrite {
		updated.Spec = spec
		result = resultUpdated
	}
	written, err := nlsClient.Update(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsInvalid(err) {
		r, o := c.rejected(node, nls, cc, err)
		return r, o, nls, nil
	}
	if err != nil {
		c.recorder.Eventf(nls, corev1.EventTypeWarning, EventSyncFailed, "Updating from NodeLocalStorageInitConfig %s failed: %v", cfg.Name, err)
		return resultError, failed(fmt.Sprintf("update NodeLocalStorage: %v", err)), nls, fmt.Errorf("update NodeLocalStorage %s: %w", nls.Name, err)
	}
	if rewrite {
		edited := recorded != "" && hashOf(nls.Spec) != recorded
		note := ""
		if edited {
			note = "; manual edits of the spec were replaced"
		}
		logger.Info("Updated NodeLocalStorage spec", "initConfig", cfg.Name, "generation", cfg.Generation, "manualEditsReplaced", edited)
		c.recorder.Eventf(written, corev1.EventTypeNormal, EventUpdated,
			"Spec derived from NodeLocalStorageInitConfig %s (generation %d)%s", cfg.Name, cfg.Generation, note)
	}
	return result, &nodeOutcome{configHash: cc.specHash, synced: true}, written, nil
}

// rejected handles a derived spec the apiserver refuses: the config gives the
// node something invalid (in nodesConfig, e.g. a device in two VGs, which only
// the NodeLocalStorage schema checks). Retrying cannot help.
func (c *Controller) rejected(node *corev1.Node, nls *v1alpha1.NodeLocalStorage, cc *compiledConfig, err error) (string, *nodeOutcome) {
	var about runtime.Object = node
	if nls != nil {
		about = nls
	}
	msg := fmt.Sprintf("NodeLocalStorageInitConfig %s gives node %s a spec the apiserver rejects: %v", cc.config.Name, node.Name, err)
	c.recorder.Event(about, corev1.EventTypeWarning, EventConfigInvalid, truncate(msg, maxConditionMessage))
	return resultInvalid, &nodeOutcome{configHash: cc.specHash, reason: truncate(msg, maxFailedReason)}
}

// derivationAnnotations returns base with the derivation annotations set.
func derivationAnnotations(base map[string]string, cfg *v1alpha1.NodeLocalStorageInitConfig, hash string) map[string]string {
	out := make(map[string]string, len(base)+3)
	for k, v := range base {
		out[k] = v
	}
	out[v1alpha1.AnnotationInitConfig] = cfg.Name
	out[v1alpha1.AnnotationInitConfigGeneration] = strconv.FormatInt(cfg.Generation, 10)
	out[v1alpha1.AnnotationDerivedSpecHash] = hash
	return out
}

// syncConfigValid keeps the ConfigValid condition of a NodeLocalStorage in
// line with its own spec: False with reason InvalidRegexp, naming the field
// and the pattern, when a listConfig pattern does not compile.
func (c *Controller) syncConfigValid(ctx context.Context, nls *v1alpha1.NodeLocalStorage) error {
	cond := metav1.Condition{
		Type:               v1alpha1.ConditionConfigValid,
		Status:             metav1.ConditionTrue,
		Reason:             v1alpha1.ReasonValid,
		Message:            "every listConfig pattern is a valid regular expression",
		ObservedGeneration: nls.Generation,
	}
	if probs := listConfigProblems("spec", nls.Spec.ListConfig); len(probs) > 0 {
		cond.Status = metav1.ConditionFalse
		cond.Reason = v1alpha1.ReasonInvalidRegexp
		cond.Message = truncate(joinProblems(probs), maxConditionMessage)
	}
	old := meta.FindStatusCondition(nls.Status.Conditions, cond.Type)
	if old != nil && old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message &&
		old.ObservedGeneration == cond.ObservedGeneration {
		return nil
	}
	updated := nls.DeepCopy()
	meta.SetStatusCondition(&updated.Status.Conditions, cond)
	if _, err := c.client.CsiV1alpha1().NodeLocalStorages().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of NodeLocalStorage %s: %w", nls.Name, err)
	}
	if cond.Status == metav1.ConditionFalse && (old == nil || old.Status != cond.Status || old.Message != cond.Message) {
		c.recorder.Event(nls, corev1.EventTypeWarning, EventConfigInvalid, cond.Message)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "..."
	cut := n - len(ellipsis)
	// Do not split a UTF-8 sequence.
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + ellipsis
}
