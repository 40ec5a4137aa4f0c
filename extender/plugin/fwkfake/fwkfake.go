// Package fwkfake has the two scheduling-framework values the Open-Local
// plugin reads, for callers that run the plugin without kube-scheduler (the
// plugin's tests and the simulator): a CycleState that holds plugin data
// and a NodeInfo that knows only its node. The framework's other
// bookkeeping is not there: calling it panics on the nil embedded
// interface, which shows at once that the plugin started to rely on it.
package fwkfake

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
)

// CycleState is the state of one scheduling attempt.
type CycleState struct {
	fwk.CycleState
	mu   sync.Mutex
	data map[fwk.StateKey]fwk.StateData
}

// NewCycleState returns an empty CycleState.
func NewCycleState() *CycleState { return &CycleState{data: map[fwk.StateKey]fwk.StateData{}} }

func (s *CycleState) Read(k fwk.StateKey) (fwk.StateData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.data[k]; ok {
		return d, nil
	}
	return nil, fwk.ErrNotFound
}

func (s *CycleState) Write(k fwk.StateKey, d fwk.StateData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[k] = d
}

func (s *CycleState) Delete(k fwk.StateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, k)
}

// NodeInfo is a NodeInfo that knows only its node.
type NodeInfo struct {
	fwk.NodeInfo
	N *corev1.Node
}

func (n NodeInfo) Node() *corev1.Node { return n.N }
