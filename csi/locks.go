package csi

import (
	"sort"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// keyLocks is a set of per-key try-locks. A CO retries an RPC that is still
// running; the second call must not race the first, and must not queue behind
// it either (the CSI spec's answer is ABORTED, "operation pending").
type keyLocks struct {
	mu   sync.Mutex
	held map[string]string // key -> operation holding it
}

func newKeyLocks() *keyLocks { return &keyLocks{held: map[string]string{}} }

// tryLock takes every key or none. On conflict it returns an Aborted status
// naming the key and the operation that holds it.
func (k *keyLocks) tryLock(op string, keys ...string) (unlock func(), err error) {
	keys = dedupe(keys)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range keys {
		if holder, busy := k.held[key]; busy {
			return nil, status.Errorf(codes.Aborted, "an operation is pending for %s (%s); retry later", key, holder)
		}
	}
	for _, key := range keys {
		k.held[key] = op
	}
	return func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, key := range keys {
			delete(k.held, key)
		}
	}, nil
}

// isHeld reports whether an operation holds key (the ledger resync leaves
// such claims alone: they are in flight).
func (k *keyLocks) isHeld(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.held[key]
	return ok
}

func dedupe(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, key := range keys {
		if key != "" {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	n := 0
	for i, key := range out {
		if i == 0 || key != out[n-1] {
			out[n] = key
			n++
		}
	}
	return out[:n]
}
