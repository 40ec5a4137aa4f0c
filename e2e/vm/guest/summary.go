//go:build vmguest

package guest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childEnv marks the process that runs the tests; its parent only relays and
// summarises their output.
const childEnv = "OPEN_LOCAL_VM_TEST_CHILD"

// Main is the suite's TestMain body. It refuses to run outside the VM (the
// tests wipe disks), then runs the tests in a child process and relays its
// output line by line. Because the parent outlives the child, the summary is
// printed even when a test panics or hits -test.timeout, and it names the test
// that was running then. A run in which no test ran fails.
func Main(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(m.Run())
	}
	if os.Getenv("OPEN_LOCAL_VM_GUEST") != "1" {
		fmt.Fprintln(os.Stderr, "refusing to run: this suite wipes disks and runs only inside the VM that e2e/vm/run.sh boots (OPEN_LOCAL_VM_GUEST=1)")
		os.Exit(2)
	}
	os.Exit(runChild())
}

func runChild() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest suite: cannot find its own binary:", err)
		return 2
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest suite:", err)
		return 2
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdout, cmd.Stderr = w, w // one pipe keeps stdout and stderr in order
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "guest suite: starting the tests:", err)
		return 2
	}
	_ = w.Close()
	s := newSummary()
	relay(r, os.Stdout, s)
	code := 0
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "guest suite:", err)
			return 2
		}
		code = ee.ExitCode()
		if code < 0 { // killed by a signal
			code = 2
		}
	}
	if code == 0 && s.total() == 0 {
		fmt.Println("guest suite: no test ran (does OPEN_LOCAL_VM_RUN match any test?)")
		code = 1
	}
	if missing := s.withoutOutcome(); code == 0 && len(missing) > 0 {
		// The binary says all passed, yet the output lacks some outcome:
		// the run is not trusted rather than reported as a pass.
		fmt.Printf("guest suite: exit status 0 but no outcome was seen for %s\n", strings.Join(missing, ", "))
		code = 1
	}
	s.print(os.Stdout, code, time.Since(start))
	return code
}

func relay(r io.Reader, w io.Writer, s *summary) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			_, _ = io.WriteString(w, line)
			s.observe(strings.TrimRight(line, "\n"))
		}
		if err != nil {
			return
		}
	}
}

// summary follows `go test -v` output: which tests started, how each ended.
type summary struct {
	order    []string          // top-level tests in start order
	outcome  map[string]string // test or subtest name -> PASS/FAIL/SKIP
	duration map[string]float64
	subtests map[string]int // top-level test -> number of subtests with an outcome
	running  map[string]bool
	problem  string // first "panic:" or timeout line
}

// The markers are found anywhere in a line, not only at its start: tests
// running in parallel share the output, and a test that writes a partial
// line (csi-sanity's progress dots) leaves the next marker in mid-line.
var (
	runLine    = regexp.MustCompile(`=== RUN\s+(\S+)`)
	resultLine = regexp.MustCompile(`--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)
)

func newSummary() *summary {
	return &summary{outcome: map[string]string{}, duration: map[string]float64{}, subtests: map[string]int{}, running: map[string]bool{}}
}

func (s *summary) observe(line string) {
	if m := runLine.FindStringSubmatch(line); m != nil {
		name := m[1]
		s.running[name] = true
		if !strings.Contains(name, "/") && !s.seen(name) {
			s.order = append(s.order, name)
		}
		return
	}
	if m := resultLine.FindStringSubmatch(line); m != nil {
		name := m[2]
		s.outcome[name] = m[1]
		s.duration[name], _ = strconv.ParseFloat(m[3], 64)
		delete(s.running, name)
		if top, _, isSub := strings.Cut(name, "/"); isSub {
			s.subtests[top]++
		}
		return
	}
	if s.problem == "" && (strings.HasPrefix(line, "panic: ") || strings.Contains(line, "test timed out after")) {
		s.problem = line
	}
}

func (s *summary) seen(name string) bool {
	for _, n := range s.order {
		if n == name {
			return true
		}
	}
	return false
}

func (s *summary) count(outcome string) int {
	n := 0
	for _, o := range s.outcome {
		if o == outcome {
			n++
		}
	}
	return n
}

func (s *summary) total() int { return len(s.outcome) }

// withoutOutcome lists the top-level tests that started and never ended.
func (s *summary) withoutOutcome() []string {
	var out []string
	for _, name := range s.order {
		if _, ok := s.outcome[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

func (s *summary) print(w io.Writer, code int, elapsed time.Duration) {
	_, _ = fmt.Fprintf(w, "open-local-vm summary: %d tests and subtests: %d passed, %d failed, %d skipped; exit status %d after %.1fs\n",
		s.total(), s.count("PASS"), s.count("FAIL"), s.count("SKIP"), code, elapsed.Seconds())
	for _, name := range s.order {
		outcome, ok := s.outcome[name]
		if !ok {
			outcome = "DIED"
		}
		_, _ = fmt.Fprintf(w, "  %-4s %-40s %8.2fs  %d subtests\n", outcome, name, s.duration[name], s.subtests[name])
		for _, sub := range sortedKeys(s.outcome) {
			if strings.HasPrefix(sub, name+"/") && s.outcome[sub] == "FAIL" {
				_, _ = fmt.Fprintf(w, "       FAIL %s\n", sub)
			}
		}
	}
	if code != 0 {
		for _, name := range sortedKeys(s.running) {
			_, _ = fmt.Fprintf(w, "  interrupted while running: %s\n", name)
		}
		if s.problem != "" {
			_, _ = fmt.Fprintf(w, "  %s\n", s.problem)
		}
	}
	_, _ = fmt.Fprintln(w, "open-local-vm end of summary")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
