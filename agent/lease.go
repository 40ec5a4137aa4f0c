package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// maxNameLen is the longest object name (a DNS subdomain).
const maxNameLen = 253

// LeaseName is the name of a node's agent Lease: open-local-agent-<node>.
// A node name too long for the prefix is cut and given a hash suffix, so
// that the name stays unique and valid.
func LeaseName(node string) string {
	if len(LeasePrefix)+len(node) <= maxNameLen {
		return LeasePrefix + node
	}
	sum := sha256.Sum256([]byte(node))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	keep := maxNameLen - len(LeasePrefix) - len(suffix)
	head := node[:keep]
	// A name must end with an alphanumeric character before the suffix's dash.
	for len(head) > 0 && (head[len(head)-1] == '.' || head[len(head)-1] == '-') {
		head = head[:len(head)-1]
	}
	return LeasePrefix + head + suffix
}

// leaseKeeper renews the agent's Lease. The Lease says the agent is alive
// without rewriting the NodeLocalStorage: its status changes only when the
// storage does. It is owned by the Node, so it goes when the node does.
type leaseKeeper struct {
	client    kubernetes.Interface
	namespace string
	name      string
	node      string
	duration  time.Duration
	// lease is the last Lease written or read (nil: unknown).
	lease *coordinationv1.Lease
}

func newLeaseKeeper(client kubernetes.Interface, o *Options) *leaseKeeper {
	return &leaseKeeper{client: client, namespace: o.Namespace, name: LeaseName(o.NodeName), node: o.NodeName, duration: o.LeaseDuration}
}

// renew writes a fresh renewTime, creating the Lease when it is missing.
func (k *leaseKeeper) renew(ctx context.Context, now time.Time) error {
	leases := k.client.CoordinationV1().Leases(k.namespace)
	if k.lease == nil {
		l, err := leases.Get(ctx, k.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := leases.Create(ctx, k.newLease(ctx, now), metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create Lease %s/%s: %w", k.namespace, k.name, err)
			}
			k.lease = created
			return nil
		case err != nil:
			return fmt.Errorf("get Lease %s/%s: %w", k.namespace, k.name, err)
		}
		k.lease = l
	}
	l := k.lease.DeepCopy()
	k.fill(ctx, l, now)
	updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		// Read it again next time: it changed or went away.
		k.lease = nil
		return fmt.Errorf("renew Lease %s/%s: %w", k.namespace, k.name, err)
	}
	k.lease = updated
	return nil
}

func (k *leaseKeeper) newLease(ctx context.Context, now time.Time) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: k.name, Namespace: k.namespace,
		Labels: map[string]string{"app.kubernetes.io/name": "open-local", "app.kubernetes.io/component": "agent"}}}
	k.fill(ctx, l, now)
	return l
}

// fill sets the holder, duration and renew time, and the Node as owner when
// it is not yet (a Node that cannot be read is tried again next renewal).
func (k *leaseKeeper) fill(ctx context.Context, l *coordinationv1.Lease, now time.Time) {
	holder := k.node
	secs := int32(k.duration / time.Second)
	if secs < 1 {
		secs = 1
	}
	renew := metav1.NewMicroTime(now)
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &secs
	l.Spec.RenewTime = &renew
	if l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &renew
	}
	if len(l.OwnerReferences) > 0 {
		return
	}
	node, err := k.client.CoreV1().Nodes().Get(ctx, k.node, metav1.GetOptions{})
	if err != nil {
		klog.FromContext(ctx).V(4).Info("Cannot read the Node to own the Lease; trying again at the next renewal", "node", k.node, "err", err)
		return
	}
	l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
}
