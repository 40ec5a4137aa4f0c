package sim

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func load(t *testing.T, docs ...string) *Set {
	t.Helper()
	s := NewSet()
	require.NoError(t, s.Load("test.yaml", strings.NewReader(strings.Join(docs, "\n---\n"))))
	return s
}

func TestLoadMultiDocument(t *testing.T) {
	input := `# leading comment
---
apiVersion: v1
kind: Node
metadata: {name: a}
---
# only a comment

---
--- {apiVersion: v1, kind: Node, metadata: {name: b}}
...
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: c, image: busybox}]
`
	s := NewSet()
	require.NoError(t, s.Load("multi.yaml", strings.NewReader(input)))
	assert.Equal(t, 2, s.NumNodes())
	assert.Equal(t, 1, s.NumPods())
	assert.Equal(t, "a", s.nodes[0].name)
	assert.Equal(t, "b", s.nodes[1].name)
	assert.Equal(t, "default", s.pods[0].pod.Namespace)
	assert.Equal(t, "multi.yaml:12", s.pods[0].from)
}

func TestLoadLists(t *testing.T) {
	s := load(t, `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: a}
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Node, metadata: {name: b}}
`, `apiVersion: v1
kind: NodeList
items:
- metadata: {name: c}
`, `apiVersion: csi.aliyun.com/v1alpha1
kind: NodeLocalStorageList
items:
- metadata: {name: d}
`, `apiVersion: v1
kind: PodList
items: []
`)
	var names []string
	for _, n := range s.nodes {
		names = append(names, n.name)
	}
	assert.Equal(t, []string{"a", "b", "c", "d"}, names)
	assert.NotNil(t, s.nodes[2].node, "a NodeList's items are Nodes")
	assert.Nil(t, s.nodes[3].node)
	assert.NotNil(t, s.nodes[3].nls, "a NodeLocalStorageList's items are NodeLocalStorages")
}

func TestLoadJSONAndStdinName(t *testing.T) {
	s := NewSet()
	require.NoError(t, s.Load("-", strings.NewReader(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"j"}}`)))
	assert.Equal(t, 1, s.NumNodes())
	err := s.Load("-", strings.NewReader("kind: [unterminated"))
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "stdin: document 1 (line 1)"), err.Error())
}

func TestLoadMalformed(t *testing.T) {
	cases := []struct {
		name, input string
		want        []string
	}{
		{"bad yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\n\napiVersion: v1\nkind: Pod\n  bad: indent\n", []string{"f.yaml: document 2 (line 6)", "line 8"}},
		{"not an object", "- a\n- b\n", []string{"f.yaml: document 1 (line 1): not a Kubernetes object"}},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", []string{"document 1", "kind is missing"}},
		{"no name", "apiVersion: v1\nkind: Pod\nmetadata: {}\n", []string{"Pod: metadata.name is missing"}},
		{"wrong type", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n", []string{"Pod default/p", "spec.containers"}},
		{"bad size in NodeLocalStorage", "kind: NodeLocalStorage\nmetadata: {name: n1}\nstatus: {nodeStorageInfo: {deviceInfo: [{name: /dev/vdb, total: lots}]}}\n", []string{"NodeLocalStorage n1", `invalid size "lots"`}},
		{"negative size", "kind: NodeLocalStorage\nmetadata: {name: n1}\nstatus: {nodeStorageInfo: {volumeGroups: [{name: p, total: -5}]}}\n", []string{"NodeLocalStorage n1", "negative"}},
		{"bad list item", "kind: List\nitems:\n- {kind: Node, metadata: {name: a}}\n- {kind: Pod, metadata: {name: p}, spec: {volumes: {}}}\n", []string{"List item 2: Pod default/p"}},
		{"statefulset too big", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\nspec: {replicas: 100000000}\n", []string{"StatefulSet default/s", "spec.replicas 100000000"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := load(t, "apiVersion: v1\nkind: Node\nmetadata: {name: before}\n")
			err := s.Load("f.yaml", strings.NewReader(c.input))
			require.Error(t, err)
			var le *LoadError
			require.True(t, errors.As(err, &le), "want a *LoadError, got %T", err)
			assert.Equal(t, "f.yaml", le.File)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Equal(t, 1, s.NumNodes(), "a malformed file leaves the set as it was")
			assert.Equal(t, 0, s.NumPods())
		})
	}
}

func TestLoadNotes(t *testing.T) {
	s := load(t,
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
		"apiVersion: v1\nkind: Node\nmetadata: {name: a}\nspec: {unschedulabel: true}\n",
		"apiVersion: v1\nkind: Node\nmetadata: {name: a}\n",
		"apiVersion: csi.aliyun.com/v1alpha1\nkind: NodeLocalStorage\nmetadata: {name: a}\nspec: {nodeName: b}\n",
		"apiVersion: v1\nkind: Node\nmetadata: {name: first}\nmetadata: {name: last}\n",
	)
	assert.Equal(t, "last", s.nodes[1].name)
	notes := strings.Join(s.Notes(), "\n")
	assert.Contains(t, notes, "ignoring Deployment default/x (test.yaml:1): not used by the simulator")
	assert.Contains(t, notes, `Node a: unknown field "spec.unschedulabel"`)
	assert.Contains(t, notes, "duplicate Node a (test.yaml:12): keeping the first")
	assert.Contains(t, notes, `spec.nodeName "b" differs from its name`)
	assert.Contains(t, notes, `test.yaml:23: yaml: unmarshal errors: line 26: key "metadata" already set in map; the last value is used`)
}

func TestLoadStatefulSet(t *testing.T) {
	s := load(t, `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data-db-1, namespace: prod}
spec:
  storageClassName: kept
  resources: {requests: {storage: 1Gi}}
`, `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: prod}
spec:
  replicas: 3
  ordinals: {start: 1}
  template:
    spec:
      containers: [{name: c, image: x}]
      volumes:
      - name: data
        emptyDir: {}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      storageClassName: open-local-lvm
      resources: {requests: {storage: 5Gi}}
  - metadata: {name: logs}
    spec:
      storageClassName: open-local-lvm
      resources: {requests: {storage: 1Gi}}
`)
	require.Equal(t, 3, s.NumPods())
	for i, want := range []string{"db-1", "db-2", "db-3"} {
		p := s.pods[i].pod
		assert.Equal(t, want, p.Name)
		assert.Equal(t, "prod", p.Namespace)
		require.Len(t, p.Spec.Volumes, 2)
		assert.Equal(t, "data-"+want, p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName, "the template replaces the pod's volume of its name")
		assert.Nil(t, p.Spec.Volumes[0].EmptyDir)
		assert.Equal(t, "logs-"+want, p.Spec.Volumes[1].PersistentVolumeClaim.ClaimName)
		assert.Contains(t, s.pvcs, "prod/data-"+want)
		assert.Contains(t, s.pvcs, "prod/logs-"+want)
	}
	assert.Equal(t, "kept", *s.pvcs["prod/data-db-1"].pvc.Spec.StorageClassName, "an existing PVC is used as it is")
	assert.Equal(t, "open-local-lvm", *s.pvcs["prod/data-db-2"].pvc.Spec.StorageClassName)
}

func TestSplitDocumentsLines(t *testing.T) {
	docs := splitDocuments([]byte("a: 1\n---\n\n# c\nb: 2\r\n--- # comment\nc: 3\n...\n---\n"))
	require.Len(t, docs, 3)
	assert.Equal(t, []int{1, 5, 7}, []int{docs[0].line, docs[1].line, docs[2].line})
	assert.Equal(t, "b: 2\r\n", string(docs[1].text))
	assert.Empty(t, splitDocuments(nil))
	assert.Empty(t, splitDocuments([]byte("---\n# nothing\n---\n")))
}

func TestExampleFilesLoad(t *testing.T) {
	files := ExampleFiles()
	assert.Equal(t, []string{ExampleCluster, ExampleNodeTemplate, ExampleWorkload}, files)
	for _, f := range files {
		s := NewSet()
		require.NoError(t, s.LoadExample(f), f)
		assert.Empty(t, s.Notes(), "%s loads without remarks", f)
	}
}
