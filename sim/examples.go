package sim

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// Examples holds the built-in example: cluster.yaml (nodes and their
// NodeLocalStorage), workload.yaml (StorageClasses, PVCs, pods) and
// node-template.yaml (one node to clone with --generate).
//
//go:embed examples/*.yaml
var Examples embed.FS

// Example file names inside Examples.
const (
	ExampleCluster      = "examples/cluster.yaml"
	ExampleWorkload     = "examples/workload.yaml"
	ExampleNodeTemplate = "examples/node-template.yaml"
)

// LoadExample loads one of the embedded example files.
func (s *Set) LoadExample(name string) error {
	f, err := Examples.Open(name)
	if err != nil {
		return fmt.Errorf("built-in example %s: %w", name, err)
	}
	defer f.Close()
	return s.Load("built-in "+name, f)
}

// ExampleFiles lists the embedded example files, sorted.
func ExampleFiles() []string {
	var out []string
	_ = fs.WalkDir(Examples, "examples", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			out = append(out, path)
		}
		return nil
	})
	sort.Strings(out)
	return out
}
