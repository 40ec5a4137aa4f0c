package cache

import (
	"sort"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/pkg/volumereq"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The Upsert and Delete methods apply one object event each. They are what
// the informers call, and what tests and the simulator call directly.

// UpsertNLS records a NodeLocalStorage (named after its node).
func (c *Cache) UpsertNLS(nls *v1alpha1.NodeLocalStorage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setNLS(nls.Name, nls)
	c.flush()
}

// DeleteNLS forgets a node's storage; the charges on it go with it.
func (c *Cache) DeleteNLS(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setNLS(name, nil)
	c.flush()
}

// UpsertNode records a node's kubernetes.io/hostname label, which PVs name.
func (c *Cache) UpsertNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setHostname(node.Name, node.Labels[LabelHostname])
	c.flush()
}

// DeleteNode forgets a node's hostname label.
func (c *Cache) DeleteNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setHostname(name, "")
	c.flush()
}

func (c *Cache) setHostname(node, host string) {
	old, had := c.nodeHost[node]
	if had && old == host {
		return
	}
	if had {
		delete(c.nodeHost, node)
		if c.hostToNode[old] == node {
			delete(c.hostToNode, old)
		}
	}
	if host != "" {
		c.nodeHost[node] = host
		c.hostToNode[host] = node
	}
	// PVs naming either hostname (or the node's name) may now resolve elsewhere.
	for _, h := range []string{old, host, node} {
		for name := range c.pvByHost[h] {
			c.reindexPV(name, c.pvs[name])
		}
	}
	c.gen++
}

// reindexPV moves a PV's entry in the node index to where it now resolves.
func (c *Cache) reindexPV(name string, r *pvRecord) {
	n := ""
	if r != nil {
		n = c.nodeOfPV(r)
	}
	if was, ok := c.pvNode[name]; ok {
		if was == n {
			return
		}
		if x := c.byNode[was]; x != nil {
			delete(x.pvs, name)
			c.unindex(was)
		}
		c.markDirty(was)
		delete(c.pvNode, name)
	}
	if r != nil {
		c.index(n).pvs[name] = struct{}{}
		c.pvNode[name] = n
		c.markDirty(n)
	}
}

// UpsertPV records a PersistentVolume; another driver's is remembered by name only.
func (c *Cache) UpsertPV(pv *corev1.PersistentVolume) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setPV(pv.Name, pv)
	c.flush()
}

// DeletePV releases a PV's charge.
func (c *Cache) DeletePV(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setPV(name, nil)
	c.flush()
}

func (c *Cache) setPV(name string, pv *corev1.PersistentVolume) {
	var r *pvRecord
	if pv != nil {
		r = parsePV(pv)
	}
	delete(c.foreignPVs, name)
	if pv != nil && r == nil {
		c.foreignPVs[name] = struct{}{}
	}
	old := c.pvs[name]
	if old != nil {
		c.touchClaim(old.claim)
		c.markDirty(c.nodeOfPV(old))
		c.removeFromList(old.claim, name)
		if c.pvByHandle[old.handle] == name {
			delete(c.pvByHandle, old.handle)
		}
		if set := c.pvByHost[old.hostname]; set != nil {
			delete(set, name)
			if len(set) == 0 {
				delete(c.pvByHost, old.hostname)
			}
		}
		delete(c.pvs, name)
	}
	if r != nil {
		c.pvs[name] = r
		if r.claim != "" {
			list := append(c.pvByClaim[r.claim], name)
			sort.Strings(list)
			c.pvByClaim[r.claim] = list
		}
		if r.handle != "" {
			c.pvByHandle[r.handle] = name
		}
		set := c.pvByHost[r.hostname]
		if set == nil {
			set = map[string]struct{}{}
			c.pvByHost[r.hostname] = set
		}
		set[name] = struct{}{}
		if c.backingPV(r.claim) == r {
			// Provisioned: the PV's charge replaces what the reservation call promised.
			c.dropReservation(r.claim)
		}
		c.touchClaim(r.claim)
	}
	c.reindexPV(name, r)
	c.gen++
}

func (c *Cache) removeFromList(id core.ClaimID, name string) {
	list := c.pvByClaim[id]
	for i, x := range list {
		if x == name {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(c.pvByClaim, id)
	} else {
		c.pvByClaim[id] = list
	}
}

func (c *Cache) dropReservation(id core.ClaimID) {
	r, ok := c.reservations[id]
	if !ok {
		return
	}
	delete(c.reservations, id)
	if x := c.byNode[r.node]; x != nil {
		delete(x.reserved, id)
		c.unindex(r.node)
	}
	c.markDirty(r.node)
}

// UpsertPVC records a PersistentVolumeClaim.
func (c *Cache) UpsertPVC(pvc *corev1.PersistentVolumeClaim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setPVC(volumereq.ClaimForPVC(pvc.Namespace, pvc.Name), pvc)
	c.flush()
}

// DeletePVC releases a PVC's reservation (its PV, if any, keeps its charge
// until it is deleted too).
func (c *Cache) DeletePVC(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setPVC(volumereq.ClaimForPVC(namespace, name), nil)
	c.flush()
}

func (c *Cache) setPVC(id core.ClaimID, pvc *corev1.PersistentVolumeClaim) {
	old := c.pvcs[id]
	c.touchClaim(id)
	oldNode, newNode := "", ""
	if old != nil {
		oldNode = old.Annotations[AnnSelectedNode]
	}
	if pvc != nil {
		newNode = pvc.Annotations[AnnSelectedNode]
	}
	if r, ok := c.reservations[id]; ok {
		// A reservation lasts while its PVC does and while the annotation
		// does not name another node: the provisioner dropping it, or
		// kube-scheduler choosing elsewhere, gives the reservation up.
		recreated := old != nil && pvc != nil && old.UID != pvc.UID
		moved := newNode != r.node && (newNode != "" || oldNode == r.node)
		if pvc == nil || recreated || moved {
			c.dropReservation(id)
		}
	}
	if oldNode != "" && oldNode != newNode {
		if x := c.byNode[oldNode]; x != nil {
			delete(x.annotated, id)
			c.unindex(oldNode)
		}
	}
	if pvc == nil {
		delete(c.pvcs, id)
		delete(c.unplaced, id)
	} else {
		c.pvcs[id] = pvc
		if newNode != "" {
			c.index(newNode).annotated[id] = struct{}{}
		}
		if c.backingPV(id) != nil {
			c.dropReservation(id)
		}
	}
	c.touchClaim(id)
	c.gen++
}

// UpsertStorageClass records a StorageClass.
func (c *Cache) UpsertStorageClass(sc *storagev1.StorageClass) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scs[sc.Name] = sc
	c.touchClass()
	c.flush()
}

// DeleteStorageClass forgets a StorageClass.
func (c *Cache) DeleteStorageClass(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.scs, name)
	c.touchClass()
	c.flush()
}

// touchClass recomputes every node with annotated claims: which class a PVC
// uses (the default class included) and what it asks for may have changed.
func (c *Cache) touchClass() {
	for n, x := range c.byNode {
		if len(x.annotated) > 0 {
			c.markDirty(n)
		}
	}
	c.gen++
}

// UpsertPod records a pod: its inline volumes are charged once it is bound
// to a node, and its PVCs are what the reservation call reserves together.
func (c *Cache) UpsertPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setPod(pod.Namespace+"/"+pod.Name, parsePod(pod))
	c.flush()
}

// DeletePod releases a pod's inline volumes.
func (c *Cache) DeletePod(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setPod(namespace+"/"+name, nil)
	c.flush()
}

func (c *Cache) setPod(key string, r *podRecord) {
	old := c.pods[key]
	if old != nil {
		for _, id := range old.pvcs {
			if set := c.podsByPVC[id]; set != nil {
				delete(set, key)
				if len(set) == 0 {
					delete(c.podsByPVC, id)
				}
			}
		}
		delete(c.pods, key)
	}
	// A node is recomputed only when what the pod charges there changes.
	oldNode, newNode := inlineNode(old), inlineNode(r)
	if oldNode != newNode || (old != nil && r != nil && (old.terminal != r.terminal || old.uid != r.uid)) {
		if x := c.byNode[oldNode]; x != nil {
			delete(x.pods, key)
			c.unindex(oldNode)
		}
		c.markDirty(oldNode, newNode)
	}
	if r == nil {
		return
	}
	c.pods[key] = r
	for _, id := range r.pvcs {
		set := c.podsByPVC[id]
		if set == nil {
			set = map[string]struct{}{}
			c.podsByPVC[id] = set
		}
		set[key] = struct{}{}
	}
	if newNode != "" {
		c.index(newNode).pods[key] = struct{}{}
	}
	if r.unschedulable && c.opt.OnUnplaced != nil {
		for _, id := range r.pvcs {
			if _, waiting := c.unplaced[id]; waiting {
				c.opt.OnUnplaced(id)
			}
		}
	}
}

// inlineNode is the node a pod's inline volumes are charged on ("" for none).
func inlineNode(r *podRecord) string {
	if r == nil || len(r.inline) == 0 {
		return ""
	}
	return r.nodeName
}

// UpsertSnapshot records a VolumeSnapshot.
func (c *Cache) UpsertSnapshot(u *unstructured.Unstructured) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapshots[u.GetNamespace()+"/"+u.GetName()] = parseSnapshot(u)
	c.gen++
}

// DeleteSnapshot forgets a VolumeSnapshot.
func (c *Cache) DeleteSnapshot(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.snapshots, namespace+"/"+name)
	c.gen++
}

// UpsertSnapshotContent records a VolumeSnapshotContent.
func (c *Cache) UpsertSnapshotContent(u *unstructured.Unstructured) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.contents[u.GetName()] = parseContent(u)
	c.gen++
}

// DeleteSnapshotContent forgets a VolumeSnapshotContent.
func (c *Cache) DeleteSnapshotContent(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.contents, name)
	c.gen++
}
