//go:build vmguest

package guest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSummaryFindsOutcomesMidLine feeds the summary the output of two tests
// that ran side by side, one of them writing progress dots without a line
// end, as csi-sanity does.
func TestSummaryFindsOutcomesMidLine(t *testing.T) {
	out := strings.Join([]string{
		"=== RUN   TestA",
		"=== PAUSE TestA",
		"=== RUN   TestB",
		"=== PAUSE TestB",
		"=== CONT  TestA",
		"=== CONT  TestB",
		"=== RUN   TestA/sub",
		"\x1b[38;5;10m•\x1b[0m\x1b[38;5;10m•\x1b[0m--- PASS: TestA (191.65s)",
		"    --- PASS: TestA/sub (83.72s)",
		"•••--- FAIL: TestB (3.00s)",
		"=== RUN   TestC",
	}, "\n")
	s := newSummary()
	for _, line := range strings.Split(out, "\n") {
		s.observe(line)
	}
	assert.Equal(t, []string{"TestA", "TestB", "TestC"}, s.order)
	assert.Equal(t, "PASS", s.outcome["TestA"])
	assert.Equal(t, "PASS", s.outcome["TestA/sub"])
	assert.Equal(t, "FAIL", s.outcome["TestB"])
	assert.InDelta(t, 191.65, s.duration["TestA"], 1e-9)
	assert.Equal(t, 1, s.subtests["TestA"])
	assert.Equal(t, []string{"TestC"}, s.withoutOutcome(), "a test that started and never ended")
}
