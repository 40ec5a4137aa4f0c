package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// FakeNode describes a Node object with no kubelet behind it.
type FakeNode struct {
	Name string
	// Labels are added to kubernetes.io/hostname=<Name> and
	// kubernetes.io/os=linux.
	Labels map[string]string
	// Capacity is also the allocatable amount. Missing cpu, memory and
	// pods default to 4, 8Gi and 110.
	Capacity corev1.ResourceList
	Taints   []corev1.Taint
}

// notReadyTaint is added to every new Node by the TaintNodesByCondition
// admission plugin and removed by the node lifecycle controller once the
// Node reports Ready.
const notReadyTaint = "node.kubernetes.io/not-ready"

// RegisterNode creates a Node and reports it Ready with the given capacity,
// as a kubelet would on registration. With the controller-manager running it
// waits until the node lifecycle controller has removed the not-ready taint
// (or removes it itself when that controller is disabled), so the Node is
// schedulable when RegisterNode returns. Nothing renews the status afterwards; see the
// package documentation for why the Node stays Ready.
func (c *Cluster) RegisterNode(ctx context.Context, spec FakeNode) (*corev1.Node, error) {
	if spec.Name == "" {
		return nil, fmt.Errorf("register node: FakeNode.Name is empty")
	}
	labels := map[string]string{"kubernetes.io/hostname": spec.Name, "kubernetes.io/os": "linux"}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	for k, v := range spec.Capacity {
		capacity[k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: spec.Taints},
	}
	nodes := c.client.CoreV1().Nodes()
	created, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create Node %s: %w", spec.Name, err)
	}
	now := metav1.NewTime(time.Now())
	status := corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity.DeepCopy(),
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionTrue,
			Reason:             "KubeletReady",
			Message:            "fake node registered by the test harness",
			LastHeartbeatTime:  now,
			LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: spec.Name},
		},
	}
	// A patch, not an update: controllers write to a new Node (annotations,
	// taints) right after it is created, so its resourceVersion moves on.
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, err
	}
	updated, err := nodes.Patch(ctx, created.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("set status of Node %s: %w", spec.Name, err)
	}
	if !c.opts.ControllerManager {
		return updated, nil // no TaintNodesByCondition, no taint
	}
	// With the node lifecycle controller disabled nothing else removes the
	// taint; do what it would do.
	removeTaint := !controllerEnabled(c.opts.Controllers, "node-lifecycle-controller", "nodelifecycle")
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := nodes.Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		updated = n
		kept := n.Spec.Taints[:0:0]
		for _, t := range n.Spec.Taints {
			if t.Key != notReadyTaint {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(n.Spec.Taints) {
			return true, nil
		}
		if removeTaint {
			n.Spec.Taints = kept
			if updated, err = nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
				return false, err
			}
			return err == nil, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the %s taint to leave Node %s: %w", notReadyTaint, spec.Name, err)
	}
	return updated, nil
}
