package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Limits that keep a hostile or mistaken input from exhausting memory.
const (
	// MaxStatefulSetReplicas is the most pods one StatefulSet expands to.
	MaxStatefulSetReplicas = 100000
	// maxListDepth bounds Lists nested in Lists.
	maxListDepth = 8
)

// Set is the cluster and workload read from files: nodes (with their
// NodeLocalStorage), StorageClasses, PVCs and pods in file order. The first
// of two objects with the same kind and name is kept.
type Set struct {
	nodes     []*nodeEntry
	nodeIndex map[string]int
	classes   []*storagev1.StorageClass
	classIdx  map[string]int
	pvcs      map[string]*pvcEntry
	pods      []*podEntry
	podIndex  map[string]bool
	notes     []string
}

type nodeEntry struct {
	name string
	node *corev1.Node      // nil: implied by a NodeLocalStorage
	nls  *nodeLocalStorage // nil: the node has no Open-Local storage
	// template is the NodeLocalStorage name a generated node was cloned from.
	template string
}

type pvcEntry struct {
	pvc  *corev1.PersistentVolumeClaim
	from string
}

type podEntry struct {
	pod  *corev1.Pod
	from string
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{nodeIndex: map[string]int{}, classIdx: map[string]int{}, pvcs: map[string]*pvcEntry{}, podIndex: map[string]bool{}}
}

// Notes are remarks about the input (ignored kinds, duplicates, unknown
// fields) that do not stop the simulation.
func (s *Set) Notes() []string { return append([]string(nil), s.notes...) }

// NumNodes is the number of nodes read so far.
func (s *Set) NumNodes() int { return len(s.nodes) }

// NumPods is the number of pods read so far.
func (s *Set) NumPods() int { return len(s.pods) }

func (s *Set) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// LoadError is malformed input: it names the file, the document and, when
// known, the object.
type LoadError struct {
	File     string
	Document int // 1-based, counting non-empty documents
	Line     int // the document's first line
	Object   string
	Err      error
}

func (e *LoadError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: document %d (line %d)", e.File, e.Document, e.Line)
	if e.Object != "" {
		b.WriteString(": ")
		b.WriteString(e.Object)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *LoadError) Unwrap() error { return e.Err }

// Load reads Kubernetes YAML (or JSON) from r: any number of documents, each an
// object or a List of objects. name is used in messages ("-" for stdin is
// shown as "stdin"). Malformed input is a *LoadError and nothing of that
// stream is kept.
func (s *Set) Load(name string, r io.Reader) error {
	if name == "-" {
		name = "stdin"
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// Decode everything into a scratch set first so a malformed document
	// leaves s as it was.
	scratch := s.clone()
	for i, doc := range splitDocuments(data) {
		if err := scratch.loadDocument(name, i+1, doc); err != nil {
			return err
		}
	}
	*s = *scratch
	return nil
}

// clone copies the set's indexes so that loading into the copy does not touch s.
func (s *Set) clone() *Set {
	c := &Set{
		nodes:     append([]*nodeEntry(nil), s.nodes...),
		nodeIndex: make(map[string]int, len(s.nodeIndex)),
		classes:   append([]*storagev1.StorageClass(nil), s.classes...),
		classIdx:  make(map[string]int, len(s.classIdx)),
		pvcs:      make(map[string]*pvcEntry, len(s.pvcs)),
		pods:      append([]*podEntry(nil), s.pods...),
		podIndex:  make(map[string]bool, len(s.podIndex)),
		notes:     append([]string(nil), s.notes...),
	}
	for i, n := range c.nodes {
		cp := *n
		c.nodes[i] = &cp
	}
	for k, v := range s.nodeIndex {
		c.nodeIndex[k] = v
	}
	for k, v := range s.classIdx {
		c.classIdx[k] = v
	}
	for k, v := range s.pvcs {
		c.pvcs[k] = v
	}
	for k, v := range s.podIndex {
		c.podIndex[k] = v
	}
	return c
}

type document struct {
	line int
	text []byte
}

var separator = regexp.MustCompile(`^---(\s|$)`)

// splitDocuments cuts a YAML stream at "---" lines (and "..." end markers),
// remembering where each document starts, and drops documents that hold only
// blanks and comments.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur bytes.Buffer
	start, line := 1, 0
	flush := func(next int) {
		if hasContent(cur.Bytes()) {
			docs = append(docs, document{line: start, text: append([]byte(nil), cur.Bytes()...)})
		}
		cur.Reset()
		start = next
	}
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i+1], data[i+1:]
		} else {
			l, data = data, nil
		}
		trimmed := bytes.TrimRight(l, "\r\n")
		switch {
		case separator.Match(trimmed):
			flush(line)
			// Content may follow the marker on the same line ("--- {kind: Pod}").
			rest := bytes.TrimSpace(trimmed[3:])
			if len(rest) > 0 && rest[0] != '#' {
				cur.Write(rest)
				cur.WriteByte('\n')
			} else {
				start = line + 1
			}
		case bytes.Equal(bytes.TrimRight(trimmed, " \t"), []byte("...")):
			flush(line + 1)
		default:
			if cur.Len() == 0 && !hasContent(l) {
				// Leading blank or comment lines: the document starts later.
				start = line + 1
				continue
			}
			cur.Write(l)
		}
	}
	flush(line + 1)
	return docs
}

func hasContent(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(l)
		if len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlMessage is a YAML error on one line, with line numbers counted from the
// top of the file instead of the document.
func yamlMessage(err error, docLine int) string {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		n, convErr := strconv.Atoi(strings.TrimPrefix(m, "line "))
		if convErr != nil {
			return m
		}
		return "line " + strconv.Itoa(docLine+n-1)
	})
	fields := strings.Fields(strings.ReplaceAll(msg, "\n", " "))
	return strings.Join(fields, " ")
}

// typeMeta is what every object starts with.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

func (s *Set) loadDocument(file string, index int, doc document) error {
	fail := func(object string, err error) error {
		return &LoadError{File: file, Document: index, Line: doc.line, Object: object, Err: err}
	}
	j, err := yaml.YAMLToJSONStrict(doc.text)
	if err != nil {
		// Duplicate keys are the only thing strict conversion adds: accept
		// them as kubectl's older parsers do (the last value wins) but say so.
		lenient, lenientErr := yaml.YAMLToJSON(doc.text)
		if lenientErr != nil {
			return fail("", errors.New(yamlMessage(lenientErr, doc.line)))
		}
		s.note("%s:%d: %s; the last value is used", file, doc.line, yamlMessage(err, doc.line))
		j = lenient
	}
	j = bytes.TrimSpace(j)
	if len(j) == 0 || bytes.Equal(j, []byte("null")) {
		return nil
	}
	if j[0] != '{' {
		return fail("", errors.New("not a Kubernetes object (a mapping with apiVersion and kind)"))
	}
	where := fmt.Sprintf("%s:%d", file, doc.line)
	return s.loadObject(j, "", where, 0, fail)
}

// loadObject decodes one object; defaultKind is the kind of a typed List's items.
func (s *Set) loadObject(j []byte, defaultKind, where string, depth int, fail func(string, error) error) error {
	var tm typeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return fail("", fmt.Errorf("not a Kubernetes object: %w", decodeError(err)))
	}
	kind := tm.Kind
	if kind == "" {
		kind = defaultKind
	}
	if kind == "" {
		return fail("", errors.New("kind is missing"))
	}
	if kind == "List" || (strings.HasSuffix(kind, "List") && tm.Items != nil) {
		if depth >= maxListDepth {
			return fail(kind, fmt.Errorf("lists nested more than %d deep", maxListDepth))
		}
		itemKind := strings.TrimSuffix(kind, "List")
		for i, item := range tm.Items {
			itemFail := func(object string, err error) error {
				if object == "" {
					object = fmt.Sprintf("%s item %d", kind, i+1)
				} else {
					object = fmt.Sprintf("%s item %d: %s", kind, i+1, object)
				}
				return fail(object, err)
			}
			if err := s.loadObject(item, itemKind, fmt.Sprintf("%s (%s item %d)", where, kind, i+1), depth+1, itemFail); err != nil {
				return err
			}
		}
		return nil
	}
	ns := tm.Metadata.Namespace
	if ns == "" {
		ns = corev1.NamespaceDefault
	}
	object := kind + " " + tm.Metadata.Name
	switch kind {
	case "Node", "NodeLocalStorage", "StorageClass":
	default:
		object = kind + " " + ns + "/" + tm.Metadata.Name
	}
	switch kind {
	case "Node", "NodeLocalStorage", "StorageClass", "PersistentVolumeClaim", "Pod", "StatefulSet":
		if tm.Metadata.Name == "" {
			return fail(kind, errors.New("metadata.name is missing"))
		}
	}
	switch kind {
	case "Node":
		var n corev1.Node
		if err := s.decode(j, &n, object); err != nil {
			return fail(object, err)
		}
		s.addNode(&n, where)
	case "NodeLocalStorage":
		var n nodeLocalStorage
		if err := json.Unmarshal(j, &n); err != nil {
			return fail(object, decodeError(err))
		}
		s.addNLS(&n, where)
	case "StorageClass":
		var sc storagev1.StorageClass
		if err := s.decode(j, &sc, object); err != nil {
			return fail(object, err)
		}
		s.addClass(&sc, where)
	case "PersistentVolumeClaim":
		var pvc corev1.PersistentVolumeClaim
		if err := s.decode(j, &pvc, object); err != nil {
			return fail(object, err)
		}
		pvc.Namespace = ns
		s.addPVC(&pvc, where)
	case "Pod":
		var pod corev1.Pod
		if err := s.decode(j, &pod, object); err != nil {
			return fail(object, err)
		}
		pod.Namespace = ns
		s.addPod(&pod, where)
	case "StatefulSet":
		var sts appsv1.StatefulSet
		if err := s.decode(j, &sts, object); err != nil {
			return fail(object, err)
		}
		sts.Namespace = ns
		if err := s.addStatefulSet(&sts, where); err != nil {
			return fail(object, err)
		}
	default:
		s.note("ignoring %s (%s): not used by the simulator", object, where)
	}
	return nil
}

// decode fills a Kubernetes type; unknown and duplicate fields become notes
// (they are usually typos that change what is simulated).
func (s *Set) decode(j []byte, into any, object string) error {
	strict, err := kjson.UnmarshalStrict(j, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return decodeError(err)
	}
	for _, e := range strict {
		s.note("%s: %v", object, e)
	}
	return nil
}

// decodeError rewords encoding/json's messages, which name Go types, in terms of the YAML.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	field := te.Field
	if field == "" {
		field = "(top level)"
	}
	msg := fmt.Sprintf("field %s: cannot use a %s here", field, te.Value)
	if te.Value == "bool" && te.Type != nil && te.Type.Kind() == reflect.String {
		msg += " (YAML reads unquoted y, n, yes, no, on, off, true and false as booleans: quote the value)"
	}
	return errors.New(msg)
}

func (s *Set) entry(name string) *nodeEntry {
	if i, ok := s.nodeIndex[name]; ok {
		return s.nodes[i]
	}
	e := &nodeEntry{name: name}
	s.nodeIndex[name] = len(s.nodes)
	s.nodes = append(s.nodes, e)
	return e
}

func (s *Set) addNode(n *corev1.Node, where string) {
	e := s.entry(n.Name)
	if e.node != nil {
		s.note("duplicate Node %s (%s): keeping the first", n.Name, where)
		return
	}
	e.node = n
}

func (s *Set) addNLS(n *nodeLocalStorage, where string) {
	name := n.Metadata.Name
	if n.Spec.NodeName != "" && n.Spec.NodeName != name {
		s.note("NodeLocalStorage %s (%s): spec.nodeName %q differs from its name; open-local names it after its node, so it is used for node %s", name, where, n.Spec.NodeName, name)
	}
	e := s.entry(name)
	if e.nls != nil {
		s.note("duplicate NodeLocalStorage %s (%s): keeping the first", name, where)
		return
	}
	e.nls = n
}

func (s *Set) addClass(sc *storagev1.StorageClass, where string) {
	if _, ok := s.classIdx[sc.Name]; ok {
		s.note("duplicate StorageClass %s (%s): keeping the first", sc.Name, where)
		return
	}
	s.classIdx[sc.Name] = len(s.classes)
	s.classes = append(s.classes, sc)
}

func (s *Set) addPVC(pvc *corev1.PersistentVolumeClaim, where string) {
	key := pvc.Namespace + "/" + pvc.Name
	if old, ok := s.pvcs[key]; ok {
		s.note("duplicate PersistentVolumeClaim %s (%s): keeping the first (%s)", key, where, old.from)
		return
	}
	s.pvcs[key] = &pvcEntry{pvc: pvc, from: where}
}

func (s *Set) addPod(pod *corev1.Pod, where string) {
	key := pod.Namespace + "/" + pod.Name
	if s.podIndex[key] {
		s.note("duplicate Pod %s (%s): keeping the first", key, where)
		return
	}
	s.podIndex[key] = true
	s.pods = append(s.pods, &podEntry{pod: pod, from: where})
}

// addStatefulSet expands a StatefulSet as its controller would: replicas pods
// named <set>-<ordinal>, each with a PVC <template>-<set>-<ordinal> per volume
// claim template (a PVC of that name already in the input is used as it is).
func (s *Set) addStatefulSet(sts *appsv1.StatefulSet, where string) error {
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	if replicas < 0 || replicas > MaxStatefulSetReplicas {
		return fmt.Errorf("spec.replicas %d: the simulator expands from 0 to %d replicas", replicas, MaxStatefulSetReplicas)
	}
	start := int32(0)
	if sts.Spec.Ordinals != nil {
		start = sts.Spec.Ordinals.Start
	}
	for i := int32(0); i < replicas; i++ {
		ordinal := strconv.Itoa(int(start + i))
		pod := &corev1.Pod{}
		pod.Name = sts.Name + "-" + ordinal
		pod.Namespace = sts.Namespace
		pod.Labels = sts.Spec.Template.Labels
		pod.Annotations = sts.Spec.Template.Annotations
		pod.Spec = *sts.Spec.Template.Spec.DeepCopy()
		for _, t := range sts.Spec.VolumeClaimTemplates {
			claim := t.Name + "-" + pod.Name
			if _, ok := s.pvcs[sts.Namespace+"/"+claim]; !ok {
				pvc := &corev1.PersistentVolumeClaim{}
				pvc.Name = claim
				pvc.Namespace = sts.Namespace
				pvc.Labels = t.Labels
				pvc.Annotations = t.Annotations
				pvc.Spec = *t.Spec.DeepCopy()
				s.addPVC(pvc, where)
			}
			src := corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}
			replaced := false
			for k := range pod.Spec.Volumes {
				if pod.Spec.Volumes[k].Name == t.Name {
					pod.Spec.Volumes[k].VolumeSource = src
					replaced = true
				}
			}
			if !replaced {
				pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: t.Name, VolumeSource: src})
			}
		}
		s.addPod(pod, where)
	}
	return nil
}
