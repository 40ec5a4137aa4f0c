package demo

import (
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
)

// apiServer gives fake clientsets the API server behaviour the components
// rely on, which the fakes' object tracker lacks: resource versions with
// optimistic concurrency (a stale update is a Conflict), UIDs and creation
// times, generation bumps on spec changes, and the status subresource (an
// update of the main resource keeps the stored status, a status update
// changes only the status). Without it the controller's spec updates would
// overwrite the agents' status with a stale copy.
type apiServer struct {
	rv atomic.Int64
	// mu makes read-compare-write of an update atomic, as etcd's
	// compare-and-swap does.
	mu sync.Mutex
}

func newAPIServer() *apiServer {
	a := &apiServer{}
	a.rv.Store(100)
	return a
}

func (a *apiServer) nextRV() string { return strconv.FormatInt(a.rv.Add(1), 10) }

// install prepends the reactors to a fake clientset.
func (a *apiServer) install(fake *clienttesting.Fake, tracker clienttesting.ObjectTracker) {
	fake.PrependReactor("create", "*", func(action clienttesting.Action) (bool, runtime.Object, error) {
		ca, ok := action.(clienttesting.CreateActionImpl)
		if !ok || ca.GetSubresource() != "" {
			return false, nil, nil
		}
		return a.create(tracker, ca)
	})
	fake.PrependReactor("update", "*", func(action clienttesting.Action) (bool, runtime.Object, error) {
		ua, ok := action.(clienttesting.UpdateActionImpl)
		if !ok || (ua.GetSubresource() != "" && ua.GetSubresource() != "status") {
			return false, nil, nil
		}
		return a.update(tracker, ua)
	})
}

func (a *apiServer) create(tracker clienttesting.ObjectTracker, ca clienttesting.CreateActionImpl) (bool, runtime.Object, error) {
	obj := ca.GetObject().DeepCopyObject()
	m, err := meta.Accessor(obj)
	if err != nil {
		return true, nil, err
	}
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(m.GetGenerateName() + uuid.NewString()[:5])
	}
	if m.GetName() == "" {
		return true, nil, apierrors.NewBadRequest("metadata.name or metadata.generateName is required")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m.SetResourceVersion(a.nextRV())
	m.SetGeneration(1)
	m.SetUID(types.UID(uuid.NewString()))
	m.SetCreationTimestamp(metav1.Now())
	if err := tracker.Create(ca.GetResource(), obj, ca.GetNamespace()); err != nil {
		return true, nil, err
	}
	return true, obj.DeepCopyObject(), nil
}

func (a *apiServer) update(tracker clienttesting.ObjectTracker, ua clienttesting.UpdateActionImpl) (bool, runtime.Object, error) {
	in := ua.GetObject()
	inMeta, err := meta.Accessor(in)
	if err != nil {
		return true, nil, err
	}
	gvr, ns := ua.GetResource(), ua.GetNamespace()
	a.mu.Lock()
	defer a.mu.Unlock()
	existing, err := tracker.Get(gvr, ns, inMeta.GetName())
	if err != nil {
		return true, nil, err
	}
	oldMeta, err := meta.Accessor(existing)
	if err != nil {
		return true, nil, err
	}
	if rv := inMeta.GetResourceVersion(); rv != "" && rv != oldMeta.GetResourceVersion() {
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), inMeta.GetName(),
			fmt.Errorf("the object has been modified (resource version %s, stored %s); please apply your changes to the latest version and try again", rv, oldMeta.GetResourceVersion()))
	}
	inU, err := runtime.DefaultUnstructuredConverter.ToUnstructured(in)
	if err != nil {
		return true, nil, err
	}
	oldU, err := runtime.DefaultUnstructuredConverter.ToUnstructured(existing)
	if err != nil {
		return true, nil, err
	}
	var outU map[string]any
	bump := false
	if ua.GetSubresource() == "status" {
		outU = oldU
		setOrDelete(outU, "status", inU["status"])
	} else {
		outU = inU
		setOrDelete(outU, "status", oldU["status"])
		bump = !apiequality.Semantic.DeepEqual(inU["spec"], oldU["spec"])
	}
	out := reflect.New(reflect.TypeOf(existing).Elem()).Interface().(runtime.Object)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(outU, out); err != nil {
		return true, nil, err
	}
	m, err := meta.Accessor(out)
	if err != nil {
		return true, nil, err
	}
	// What the server owns is never taken from the request.
	m.SetUID(oldMeta.GetUID())
	m.SetCreationTimestamp(oldMeta.GetCreationTimestamp())
	m.SetGeneration(oldMeta.GetGeneration())
	if bump {
		m.SetGeneration(oldMeta.GetGeneration() + 1)
	}
	m.SetResourceVersion(a.nextRV())
	if err := tracker.Update(gvr, out, ns); err != nil {
		return true, nil, err
	}
	return true, out.DeepCopyObject(), nil
}

func setOrDelete(m map[string]any, key string, v any) {
	if v == nil {
		delete(m, key)
		return
	}
	m[key] = v
}
