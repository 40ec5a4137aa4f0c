package core

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// core must stay a pure, deterministic state machine: no host access, no
// clock, no randomness, no goroutines (and so no locks). These tests enforce
// it on the package's non-test sources.

// forbiddenDeps may not appear anywhere in core's transitive dependencies.
var forbiddenDeps = []string{"os/exec", "net", "net/http"}

// forbiddenImports may not be imported by core's own files.
var forbiddenImports = map[string]string{
	"os":           "host access",
	"os/exec":      "running programs",
	"net":          "network access",
	"net/http":     "network access",
	"sync":         "locks (a goroutine-free state machine needs none)",
	"sync/atomic":  "shared-memory concurrency",
	"math/rand":    "randomness",
	"math/rand/v2": "randomness",
	"crypto/rand":  "randomness",
	"unsafe":       "memory tricks",
}

// forbiddenCalls are package-level functions core may not call, by import
// path; "*" is every function of the package (the global random sources).
var forbiddenCalls = map[string][]string{
	"time":         {"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker"},
	"math/rand":    {"*"},
	"math/rand/v2": {"*"},
}

func TestCoreDependenciesHaveNoHostAccess(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH, so `go list -deps` cannot run: " + err.Error())
	}
	out, err := exec.Command(gotool, "list", "-deps", ".").Output()
	require.NoError(t, err, "go list -deps")
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/open-local/open-local/core", "go list ran on the core package")
	for _, bad := range forbiddenDeps {
		assert.NotContains(t, deps, bad, "core must not depend on %s, even indirectly", bad)
	}
}

func TestCoreSourcesArePure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		require.NoError(t, err)
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, v := range impurities(fset, f) {
			t.Errorf("%s", v)
		}
		checked++
	}
	require.GreaterOrEqual(t, checked, 6, "the core sources were found")
}

// The checker itself must catch what it is meant to catch.
func TestImpuritiesDetectsEachViolation(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"clean", `package p
import ("fmt"; "time")
func f() time.Duration { fmt.Println(); return time.Second }`, nil},
		{"go statement", `package p
func f() { go f() }`, []string{"go statement"}},
		{"clock", `package p
import "time"
func f() { _ = time.Now(); time.Sleep(1); _ = time.Since(time.Time{}) }`, []string{"time.Now", "time.Sleep", "time.Since"}},
		{"aliased clock", `package p
import tm "time"
func f() { <-tm.After(1); _ = tm.Tick(1) }`, []string{"time.After", "time.Tick"}},
		{"imports", `package p
import ("os"; "sync"; "math/rand"; r2 "math/rand/v2"; "net")
var _ = os.Args
var _ sync.Mutex
var _ = rand.Int
var _ = r2.Int
var _ = net.IPv4len`, []string{`import "os"`, `import "sync"`, `import "math/rand"`, `import "math/rand/v2"`, `import "net"`}},
		{"global random source", `package p
import "math/rand/v2"
func f() int { return rand.IntN(3) }`, []string{`import "math/rand/v2"`, "call to math/rand/v2.IntN"}},
		{"method named Now is fine", `package p
type c struct{}
func (c) Now() int { return 0 }
func f() { var x c; _ = x.Now() }`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x.go", tc.src, parser.SkipObjectResolution)
			require.NoError(t, err)
			got := impurities(fset, f)
			require.Len(t, got, len(tc.want), "%v", got)
			for i, w := range tc.want {
				assert.Contains(t, got[i], w)
			}
		})
	}
}

// impurities lists what makes a file impure, in source order.
func impurities(fset *token.FileSet, f *ast.File) []string {
	type hit struct {
		pos token.Pos
		msg string
	}
	var hits []hit
	local := map[string]string{} // local package name -> import path
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue
		}
		name := path[strings.LastIndex(path, "/")+1:]
		if strings.HasPrefix(name, "v") && strings.Contains(path, "/") {
			if _, err := strconv.Atoi(name[1:]); err == nil { // math/rand/v2 is "rand"
				p := strings.TrimSuffix(path, "/"+name)
				name = p[strings.LastIndex(p, "/")+1:]
			}
		}
		if imp.Name != nil {
			name = imp.Name.Name
		}
		local[name] = path
		if why, bad := forbiddenImports[path]; bad {
			hits = append(hits, hit{imp.Pos(), fmt.Sprintf("%s: import %q (%s)", fset.Position(imp.Pos()), path, why)})
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.GoStmt:
			hits = append(hits, hit{x.Pos(), fmt.Sprintf("%s: go statement", fset.Position(x.Pos()))})
		case *ast.CallExpr:
			sel, ok := x.Fun.(*ast.SelectorExpr)
			if !ok {
				break
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok {
				break
			}
			path, imported := local[pkg.Name]
			if !imported {
				break // a method call on a value, not a package function
			}
			for _, fn := range forbiddenCalls[path] {
				if sel.Sel.Name == fn || fn == "*" {
					hits = append(hits, hit{x.Pos(), fmt.Sprintf("%s: call to %s.%s", fset.Position(x.Pos()), path, sel.Sel.Name)})
				}
			}
		}
		return true
	})
	sort.SliceStable(hits, func(a, b int) bool { return hits[a].pos < hits[b].pos })
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.msg
	}
	return out
}
