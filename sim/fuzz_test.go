package sim

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the loader and simulates whatever loads:
// neither may panic, a rejection is a *LoadError, and the result's counts agree.
func FuzzLoad(f *testing.F) {
	for _, name := range ExampleFiles() {
		data, err := Examples.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("kind: List\nitems:\n- kind: List\n  items: [{kind: Node, metadata: {name: a}}]\n"))
	f.Add([]byte("--- {kind: NodeLocalStorage, metadata: {name: n}, status: {nodeStorageInfo: {volumeGroups: [{name: p, total: 1Ti}]}}}\n"))
	f.Add([]byte("kind: Pod\nmetadata: {name: p}\nspec: {volumes: [{name: v, csi: {driver: local.csi.aliyun.com}}]}\n"))
	f.Add([]byte("kind: StatefulSet\nmetadata: {name: s}\nspec: {replicas: 2, volumeClaimTemplates: [{metadata: {name: d}}]}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("\xff\xfe---\n...\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewSet()
		if err := s.Load("fuzz.yaml", bytes.NewReader(data)); err != nil {
			var le *LoadError
			if !errors.As(err, &le) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("rejection is not a LoadError: %T %v", err, err)
			}
			return
		}
		r, err := Run(s, Options{Now: fixedClock()})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if r.Pods != len(r.Placements)+len(r.Unschedulable) || r.Nodes != s.NumNodes() {
			t.Fatalf("counts disagree: %+v", r)
		}
		if err := r.WriteTable(io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}
