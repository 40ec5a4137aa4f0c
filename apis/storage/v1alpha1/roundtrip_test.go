package v1alpha1

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"sigs.k8s.io/yaml"
)

// readTestdata returns a file of testdata/.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

// yamlToMap decodes YAML into the generic form the apiserver works on.
func yamlToMap(t testing.TB, data []byte) map[string]any {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(js, &m))
	return m
}

// dropZero removes the values a reader cannot tell from absent ones (false,
// 0, "", empty lists and maps), recursively, so that two encodings that say the
// same thing compare equal whatever their omitempty choices.
func dropZero(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if e = dropZero(e); e != nil {
				out[k] = e
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = dropZero(e)
			if out[i] == nil {
				// Keep the position: an empty element is still an element.
				out[i] = map[string]any{}
			}
		}
		return out
	case bool:
		if !x {
			return nil
		}
	case float64:
		if x == 0 {
			return nil
		}
	case string:
		if x == "" {
			return nil
		}
	}
	return v
}

// assertRoundTrip decodes data strictly into obj, encodes it again and checks
// that the encoding says what the input said.
func assertRoundTrip(t *testing.T, data []byte, obj any) {
	t.Helper()
	// Strict: an unknown or duplicated field is an error, so every field of
	// the input has a home in the Go type.
	require.NoError(t, yaml.UnmarshalStrict(data, obj))
	out, err := json.Marshal(obj)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(out, &got))
	assert.Equal(t, dropZero(yamlToMap(t, data)), dropZero(got))
}

func TestNodeLocalStorageExampleRoundTrips(t *testing.T) {
	data := readTestdata(t, "nodelocalstorage.yaml")
	var nls NodeLocalStorage
	assertRoundTrip(t, data, &nls)

	// Spot-check the fields the other components read, sizes in particular:
	// they are plain JSON integers in bytes.
	assert.Equal(t, "node-1", nls.Spec.NodeName)
	assert.Equal(t, []string{"share", "paas[0-9]*", "open-local-pool-[0-9]+"}, nls.Spec.ListConfig.VGs.Include)
	assert.Equal(t, []VGToBeInited{{Name: "open-local-pool-0", Devices: []string{"/dev/vdb3"}}}, nls.Spec.ResourceToBeInited.VGs)
	require.Len(t, nls.Status.NodeStorageInfo.DeviceInfos, 7)
	assert.Equal(t, uint64(53685353984), nls.Status.NodeStorageInfo.DeviceInfos[0].Total)
	assert.Equal(t, MediaTypeHDD, nls.Status.NodeStorageInfo.DeviceInfos[0].MediaType)
	assert.Equal(t, StorageReady, nls.Status.NodeStorageInfo.DeviceInfos[0].Condition)
	require.Len(t, nls.Status.NodeStorageInfo.VolumeGroups, 1)
	vg := nls.Status.NodeStorageInfo.VolumeGroups[0]
	assert.Equal(t, uint64(860063006720), vg.Allocatable)
	assert.Equal(t, uint64(800298369024), vg.Available)
	require.Len(t, vg.LogicalVolumes, 3)
	assert.Equal(t, "open-local-pool-0", vg.LogicalVolumes[2].VGName)
	assert.Equal(t, []string{"/dev/vdc"}, nls.Status.FilteredStorageInfo.Devices)

	// The deep copy is equal and independent.
	cp := nls.DeepCopy()
	assert.Equal(t, &nls, cp)
	cp.Status.NodeStorageInfo.VolumeGroups[0].LogicalVolumes[0].Name = "changed"
	assert.NotEqual(t, "changed", nls.Status.NodeStorageInfo.VolumeGroups[0].LogicalVolumes[0].Name)
}

func TestNodeLocalStorageInitConfigExampleRoundTrips(t *testing.T) {
	data := readTestdata(t, "nodelocalstorageinitconfig.yaml")
	var nlsc NodeLocalStorageInitConfig
	assertRoundTrip(t, data, &nlsc)

	require.Len(t, nlsc.Spec.NodesConfig, 2)
	nc := nlsc.Spec.NodesConfig[0]
	require.NotNil(t, nc.Selector)
	assert.Equal(t, map[string]string{"storage.example.com/disks": "nvme"}, nc.Selector.MatchLabels)
	// The per-node config is inline, as in open-local: listConfig sits next to selector.
	assert.Equal(t, []string{"/mnt/open-local/disk-[0-9]+"}, nc.ListConfig.MountPoints.Include)
	assert.Equal(t, FSTypeXFS, nc.ResourceToBeInited.MountPoints[0].FsType)
	assert.Equal(t, "nvme", nlsc.Spec.NodesConfig[1].SpdkConfig.DeviceType)
	assert.Equal(t, int32(1), nlsc.Status.FailedNodeCount)
	assert.Equal(t, "node-3", nlsc.Status.FailedNodes[0].Node)
}

func TestUnknownFieldsAreRejected(t *testing.T) {
	// open-local's own docs once showed "resourceInit: vg: - vgName:", which
	// are not field names; a strict decode must say so rather than drop them.
	bad := []byte(`
apiVersion: csi.aliyun.com/v1alpha1
kind: NodeLocalStorageInitConfig
metadata: {name: open-local}
spec:
  globalConfig:
    resourceInit:
      vg:
      - vgName: pool
`)
	var nlsc NodeLocalStorageInitConfig
	err := yaml.UnmarshalStrict(bad, &nlsc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "resourceInit")
}

func TestEmptyObjectsEncodeWithoutEmptyStructs(t *testing.T) {
	// omitzero keeps unset sub-structs out of the encoding, so a freshly
	// created object does not show "spdkConfig: {}" and the like.
	out, err := json.Marshal(&NodeLocalStorage{Spec: NodeLocalStorageSpec{NodeName: "n"}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"metadata":{},"spec":{"nodeName":"n"}}`, string(out))
}

// sameToTheAPI is equality as the API server keeps objects: an empty list is
// no list (DeepEqual's own rule), and times have whole seconds (metav1.Time's
// encoding).
var sameToTheAPI = conversion.EqualitiesOrDie(func(a, b metav1.Time) bool {
	return a.Truncate(time.Second).Equal(b.Truncate(time.Second))
})

// FuzzNodeLocalStorageJSON checks that whatever decodes re-encodes to the
// same object, so no field is lost or changed by a read-modify-write. Equal
// is semantic, as the API server sees it: an empty list is no list (the
// encoding drops "mountpoints: []", and then an empty parent with it), so the
// encoding is compared once it is normalised by one round trip.
func FuzzNodeLocalStorageJSON(f *testing.F) {
	js, err := yaml.YAMLToJSON(readTestdata(f, "nodelocalstorage.yaml"))
	require.NoError(f, err)
	f.Add(js)
	js, err = yaml.YAMLToJSON(readTestdata(f, "nodelocalstorageinitconfig.yaml"))
	require.NoError(f, err)
	f.Add(js)
	f.Add([]byte(`{"spec":{"resourceToBeInited":{"mountpoints":[{"path":"/mnt/a","device":"/dev/vdc","options":["ro"]}]}}}`))
	f.Add([]byte(`{"status":{"nodeStorageInfo":{"state":{"type":"DiskFull","status":"True","lastHeartbeatTime":"2024-01-02T03:04:05Z"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, obj := range []func() any{
			func() any { return &NodeLocalStorage{} },
			func() any { return &NodeLocalStorageInitConfig{} },
		} {
			first := obj()
			if json.Unmarshal(data, first) != nil {
				continue
			}
			enc, err := json.Marshal(first)
			require.NoError(t, err)
			second := obj()
			require.NoError(t, json.Unmarshal(enc, second))
			require.True(t, sameToTheAPI.DeepEqual(first, second), "a round trip changed the object:\n%#v\n%#v", first, second)
			enc2, err := json.Marshal(second)
			require.NoError(t, err)
			third := obj()
			require.NoError(t, json.Unmarshal(enc2, third))
			enc3, err := json.Marshal(third)
			require.NoError(t, err)
			assert.JSONEq(t, string(enc2), string(enc3), "the encoding is stable after one round trip")
		}
	})
}
