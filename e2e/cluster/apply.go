package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the server-side apply field manager of ApplyYAML.
const FieldManager = "open-local-e2e"

// applyTimeout bounds the wait for a kind to appear in discovery (a CRD
// applied just before) and for a CRD to become Established.
const applyTimeout = 30 * time.Second

// ApplyYAML server-side applies every object in the given manifest files
// (multi-document YAML or JSON, "List" kinds expanded) as cluster-admin, in
// order. A CustomResourceDefinition is waited for until Established, so a
// later document (or file) may create objects of its kind. Namespaced
// objects without a namespace go to "default".
func (c *Cluster) ApplyYAML(ctx context.Context, files ...string) error {
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		o, err := decodeManifest(f, data)
		if err != nil {
			return err
		}
		objs = append(objs, o...)
	}
	return c.ApplyObjects(ctx, objs...)
}

// ApplyManifest is ApplyYAML for a manifest in memory.
func (c *Cluster) ApplyManifest(ctx context.Context, manifest []byte) error {
	objs, err := decodeManifest("manifest", manifest)
	if err != nil {
		return err
	}
	return c.ApplyObjects(ctx, objs...)
}

// ApplyObjects server-side applies objects in order (see ApplyYAML).
func (c *Cluster) ApplyObjects(ctx context.Context, objs ...*unstructured.Unstructured) error {
	dyn, err := dynamic.NewForConfig(c.admin)
	if err != nil {
		return err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.admin)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	for _, obj := range objs {
		if err := applyOne(ctx, dyn, mapper, obj); err != nil {
			return fmt.Errorf("apply %s %s: %w", obj.GetKind(), objectName(obj), err)
		}
	}
	return nil
}

func applyOne(ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	var mapping *meta.RESTMapping
	// A kind defined by a CRD applied a moment ago reaches discovery with
	// a delay; reset the cached mapper until it shows up. A kind no CRD
	// defines fails at once.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, applyTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			defined, lerr := crdDefines(ctx, dyn, gvk)
			if lerr != nil || !defined {
				return false, errors.Join(err, lerr)
			}
			mapper.Reset()
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("find the resource for %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
		ri = dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
	}
	if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return err
	}
	if gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition" {
		return waitEstablished(ctx, ri, obj.GetName())
	}
	return nil
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crdDefines reports whether a CustomResourceDefinition serves gvk.
func crdDefines(ctx context.Context, dyn dynamic.Interface, gvk schema.GroupVersionKind) (bool, error) {
	if gvk.Group == "" || !strings.Contains(gvk.Group, ".") {
		return false, nil // built-in groups; a CRD group always has a dot
	}
	crds, err := dyn.Resource(crdResource).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, crd := range crds.Items {
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
		if group != gvk.Group || kind != gvk.Kind {
			continue
		}
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		for _, v := range versions {
			m, _ := v.(map[string]any)
			if m["name"] == gvk.Version && m["served"] == true {
				return true, nil
			}
		}
	}
	return false, nil
}

func waitEstablished(ctx context.Context, ri dynamic.ResourceInterface, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, applyTimeout, true, func(ctx context.Context) (bool, error) {
		crd, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for CustomResourceDefinition %s to be Established: %w", name, err)
	}
	return nil
}

// decodeManifest splits a YAML or JSON stream into objects. source names
// the input in errors.
func decodeManifest(source string, data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if len(m) == 0 {
			continue // empty document, e.g. a trailing "---"
		}
		obj := &unstructured.Unstructured{Object: m}
		if err := checkObject(obj); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", source, doc, err)
			}
			for i := range list.Items {
				item := &list.Items[i]
				if err := checkObject(item); err != nil {
					return nil, fmt.Errorf("%s: document %d, item %d: %w", source, doc, i, err)
				}
				if item.GetName() == "" {
					return nil, fmt.Errorf("%s: document %d, item %d: %s has no metadata.name", source, doc, i, item.GetKind())
				}
				objs = append(objs, item)
			}
			continue
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d: %s has no metadata.name (server-side apply needs one)", source, doc, obj.GetKind())
		}
		objs = append(objs, obj)
	}
}

func checkObject(obj *unstructured.Unstructured) error {
	if obj.GetKind() == "" {
		return errors.New("no kind")
	}
	if obj.GetAPIVersion() == "" {
		return fmt.Errorf("%s has no apiVersion", obj.GetKind())
	}
	if _, err := schema.ParseGroupVersion(obj.GetAPIVersion()); err != nil {
		return fmt.Errorf("%s: apiVersion %q: %w", obj.GetKind(), obj.GetAPIVersion(), err)
	}
	return nil
}

func objectName(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return ns + "/" + obj.GetName()
	}
	return obj.GetName()
}
