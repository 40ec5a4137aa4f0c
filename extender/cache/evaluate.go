package cache

import (
	"sync"

	"github.com/open-local/open-local/core"
	corev1 "k8s.io/api/core/v1"
)

// Outcome is what Evaluate found out about the pod as a whole.
type Outcome struct {
	// Ours is false when the pod has no Open-Local volume: every node passes
	// with the same score, and no results are produced.
	Ours bool
	// Err, when set, is why every node fails (no results are produced).
	Err error
	// Volumes is how many Open-Local volumes the pod has.
	Volumes int
}

// Evaluate judges pod on each named node, in order, and appends one result
// per node to out. kube-scheduler asks filter and then prioritize for the
// same pod over the same nodes; while nothing changed in between, the second
// call reuses the first call's results instead of placing the pod again.
func (c *Cache) Evaluate(pod *corev1.Pod, nodes []string, out []core.NodeResult) ([]core.NodeResult, Outcome) {
	var buf [8]core.VolumeRequest
	c.mu.RLock()
	defer c.mu.RUnlock()
	req := c.podRequest(pod, buf[:0])
	o := Outcome{Ours: req.Ours, Err: req.Err, Volumes: len(req.Volumes)}
	if !req.Ours || req.Err != nil {
		return out, o
	}
	key := memoKey{pod: string(pod.UID), gen: c.gen}
	if key.pod == "" {
		key.pod = pod.Namespace + "/" + pod.Name
	}
	if res, ok := c.memo.lookup(key, nodes, out); ok {
		return res, o
	}
	e := c.evals.Get().(*core.Evaluator)
	start := len(out)
	out = e.FilterAndScore(nodes, req.PodRequest, c.opt.Strategy, out)
	c.evals.Put(e)
	c.memo.store(key, nodes, out[start:])
	return out, o
}

// Request returns what the pod asks of Open-Local (for logs and tests).
func (c *Cache) Request(pod *corev1.Pod) PodRequest {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.podRequest(pod, nil)
}

// memoMinNodes: below this many nodes placing again costs less than the lookup.
const memoMinNodes = 64

type memoKey struct {
	pod string
	gen uint64
}

type memoEntry struct {
	key     memoKey
	names   []string
	results []core.NodeResult
}

// memo keeps the last few evaluations. An entry answers a later call for
// the same pod and cache generation whose nodes are the entry's nodes or a
// subsequence of them in the same order (prioritize gets the nodes that
// passed every filter, in the order filter returned them).
type memo struct {
	mu      sync.Mutex
	entries [4]memoEntry
	next    int
}

func (m *memo) lookup(key memoKey, nodes []string, out []core.NodeResult) ([]core.NodeResult, bool) {
	if len(nodes) < memoMinNodes {
		return out, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.entries {
		e := &m.entries[i]
		if e.key != key {
			continue
		}
		start, j := len(out), 0
		for _, name := range nodes {
			for j < len(e.names) && e.names[j] != name {
				j++
			}
			if j == len(e.names) {
				return out[:start], false
			}
			out = append(out, e.results[j])
			j++
		}
		return out, true
	}
	return out, false
}

func (m *memo) store(key memoKey, nodes []string, results []core.NodeResult) {
	if len(nodes) < memoMinNodes {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := &m.entries[m.next]
	m.next = (m.next + 1) % len(m.entries)
	e.key = key
	e.names = append(e.names[:0], nodes...)
	e.results = append(e.results[:0], results...)
}
