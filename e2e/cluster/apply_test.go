package cluster

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeManifestSplitsDocumentsAndLists(t *testing.T) {
	objs, err := decodeManifest("m.yaml", []byte(`---
apiVersion: v1
kind: Namespace
metadata:
  name: a
---
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c1, namespace: a}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c2}
---
{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc"}, "provisioner": "x"}
`))
	require.NoError(t, err)
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+objectName(o))
	}
	assert.Equal(t, []string{"Namespace/a", "ConfigMap/a/c1", "ConfigMap/c2", "StorageClass/sc"}, got)
}

func TestDecodeManifestErrorsNameTheDocument(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"no kind":       {"apiVersion: v1\nmetadata: {name: x}\n", "m.yaml: document 1: no kind"},
		"no apiVersion": {"kind: Pod\nmetadata: {name: x}\n", "m.yaml: document 1: Pod has no apiVersion"},
		"bad version":   {"apiVersion: a/b/c\nkind: Pod\nmetadata: {name: x}\n", `apiVersion "a/b/c"`},
		"no name":       {"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\n", "m.yaml: document 2: Pod has no metadata.name"},
		"list item":     {"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n", "document 1, item 0: Pod has no metadata.name"},
		"not yaml":      {"apiVersion: [\n", "m.yaml: document 1"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeManifest("m.yaml", []byte(tc.in))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"))
	f.Add([]byte("---\n---\napiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Pod, metadata: {name: p}}]\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`))
	f.Add([]byte("kind: List\napiVersion: v1\nitems: 3\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := decodeManifest("fuzz", data)
		if err != nil {
			return
		}
		for _, o := range objs {
			if o.GetKind() == "" || o.GetAPIVersion() == "" || o.GetName() == "" {
				t.Fatalf("decoded an object that cannot be applied: %v", o.Object)
			}
		}
	})
}
