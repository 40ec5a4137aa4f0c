package simhost

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInjected is the error of an injected failure (FailNth without an error,
// FailAfterEffect).
var ErrInjected = errors.New("simhost: injected failure")

type faultRule struct {
	op          string
	at          int // the call count at which the rule fires
	err         error
	afterEffect bool
}

// FailNth makes the nth call of op from now on (n=1: the next call) fail
// with err before it has any effect. op is the Host method name, e.g.
// "CreateLV". A nil err means ErrInjected.
func (h *Host) FailNth(op string, n int, err error) {
	if n < 1 {
		n = 1
	}
	if err == nil {
		err = ErrInjected
	}
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	h.rules = append(h.rules, &faultRule{op: op, at: h.counts[op] + n,
		err: fmt.Errorf("%s (injected, call %d): %w", op, h.counts[op]+n, err)})
}

// FailAfterEffect makes the nth call of op from now on take effect and then
// return an error wrapping ErrInjected, as when a command succeeds but its
// caller loses the answer (timeout, crash).
func (h *Host) FailAfterEffect(op string, n int) {
	if n < 1 {
		n = 1
	}
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	h.rules = append(h.rules, &faultRule{op: op, at: h.counts[op] + n, afterEffect: true,
		err: fmt.Errorf("%s (injected after its effect, call %d): %w", op, h.counts[op]+n, ErrInjected)})
}

// Delay makes every call of op wait d before acting; a cancelled context
// ends the wait with the context's error. d <= 0 removes the delay.
func (h *Host) Delay(op string, d time.Duration) {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	if d <= 0 {
		delete(h.delays, op)
		return
	}
	h.delays[op] = d
}

// ClearFaults removes every pending injected failure and delay.
func (h *Host) ClearFaults() {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	h.rules = nil
	h.delays = map[string]time.Duration{}
}

// Calls is the log of Host calls so far, one entry per call: the method
// name, then its main arguments, separated by spaces (e.g.
// "CreateLV open-local-pool-0/pv-1"). The first word of each entry is the op
// name FailNth and FailAfterEffect take, so a test can replay a scenario and
// fail each call in turn.
func (h *Host) Calls() []string {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	return append([]string(nil), h.calls...)
}

// CallCount is how many times op was called.
func (h *Host) CallCount(op string) int {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	return h.counts[op]
}

// ResetCalls empties the call log (counts used by pending rules are kept).
func (h *Host) ResetCalls() {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	h.calls = nil
}

// recordCall returns the delay for this call, the error that replaces it
// (failNow) and the error that follows its effect (failAfter).
func (h *Host) recordCall(op string, args []string) (delay time.Duration, failNow, failAfter error) {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	entry := op
	if len(args) > 0 {
		entry += " " + strings.Join(args, " ")
	}
	h.calls = append(h.calls, entry)
	h.counts[op]++
	n := h.counts[op]
	kept := h.rules[:0]
	for _, r := range h.rules {
		if r.op == op && r.at == n {
			if r.afterEffect {
				failAfter = r.err
			} else if failNow == nil {
				failNow = r.err
			}
			continue
		}
		kept = append(kept, r)
	}
	h.rules = kept
	return h.delays[op], failNow, failAfter
}
