package sim

import (
	"fmt"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// MaxGenerated is the most nodes Generate creates.
const MaxGenerated = 1000000

// hostnameLabel is set by the kubelet on every node; generated and implied
// nodes get it too so that pods can select them by name.
const hostnameLabel = "kubernetes.io/hostname"

// Generate adds n copies of every node of template (its Node and
// NodeLocalStorage), named <name>-<i> for i from 0 to n-1, ordered by i and
// then by the template's order. The template's other objects (StorageClasses,
// PVCs, pods) are added once.
func (s *Set) Generate(template *Set, n int) error {
	if n < 1 || n > MaxGenerated {
		return fmt.Errorf("--generate %d: must be from 1 to %d", n, MaxGenerated)
	}
	if len(template.nodes) == 0 {
		return fmt.Errorf("the template has no Node or NodeLocalStorage to clone")
	}
	scratch := s.clone()
	for i := 0; i < n; i++ {
		suffix := "-" + strconv.Itoa(i)
		for _, t := range template.nodes {
			name := t.name + suffix
			if _, taken := scratch.nodeIndex[name]; taken {
				return fmt.Errorf("generated node %s: a node of that name is already in the input", name)
			}
			e := scratch.entry(name)
			e.nls = t.nls // shared: storage is read-only once loaded
			e.template = t.name
			if t.template != "" {
				e.template = t.template
			}
			if t.node != nil {
				node := t.node.DeepCopy()
				node.Name = name
				if node.Labels == nil {
					node.Labels = map[string]string{}
				}
				node.Labels[hostnameLabel] = name
				e.node = node
			}
		}
	}
	for _, sc := range template.classes {
		scratch.addClass(sc, "template")
	}
	for _, key := range sortedKeys(template.pvcs) {
		p := template.pvcs[key]
		scratch.addPVC(p.pvc, p.from)
	}
	for _, p := range template.pods {
		scratch.addPod(p.pod, p.from)
	}
	scratch.notes = append(scratch.notes, template.notes...)
	*s = *scratch
	return nil
}

// implicitNode is the Node a NodeLocalStorage without one stands for.
func implicitNode(name string) *corev1.Node {
	n := &corev1.Node{}
	n.Name = name
	n.Labels = map[string]string{hostnameLabel: name}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
