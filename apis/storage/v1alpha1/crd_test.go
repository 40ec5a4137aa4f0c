package v1alpha1

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// crdValidator validates custom resources the way the apiserver does: prune
// unknown fields, apply defaults, then OpenAPI schema, list-type invariants
// and CEL rules (k8s.io/apiextensions-apiserver's own code, offline).
type crdValidator struct {
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

// loadCRD reads a generated CRD, checks that the apiserver would accept it
// (structural schema, CEL compilation and estimated cost within the limits)
// and returns a validator for its objects.
func loadCRD(t *testing.T, file string) *crdValidator {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "crds", file))
	require.NoError(t, err)
	var v1crd apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.UnmarshalStrict(data, &v1crd))
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1crd)

	var crd apiextensions.CustomResourceDefinition
	require.NoError(t, apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1crd, &crd, nil))
	errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), &crd)
	require.Empty(t, errs, "the apiserver would reject %s: %v", file, errs.ToAggregate())

	require.Len(t, crd.Spec.Versions, 1)
	props := crd.Spec.Validation
	if v := crd.Spec.Versions[0].Schema; v != nil {
		props = v
	}
	require.NotNil(t, props)
	structural, err := structuralschema.NewStructural(props.OpenAPIV3Schema)
	require.NoError(t, err)
	sv, _, err := apiservervalidation.NewSchemaValidator(props.OpenAPIV3Schema)
	require.NoError(t, err)
	return &crdValidator{
		structural: structural,
		schema:     sv,
		cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
	}
}

// validate returns the pruned field paths and the validation errors of obj
// after defaulting it in place.
func (v *crdValidator) validate(t *testing.T, obj map[string]any) (pruned []string, errs field.ErrorList) {
	t.Helper()
	pruned = pruning.PruneWithOptions(obj, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	defaulting.Default(obj, v.structural)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj, v.schema)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	// As the apiserver does, CEL rules run only on objects without the
	// schema errors that would make them fail to evaluate.
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return pruned, errs
		}
	}
	celErrs, _ := v.cel.Validate(context.Background(), nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return pruned, append(errs, celErrs...)
}

func toMap(t *testing.T, obj any) map[string]any {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	require.NoError(t, err)
	return m
}

func TestExamplesAreValidAndFullyCoveredBySchema(t *testing.T) {
	for crd, example := range map[string]string{
		"csi.aliyun.com_nodelocalstorages.yaml":           "nodelocalstorage.yaml",
		"csi.aliyun.com_nodelocalstorageinitconfigs.yaml": "nodelocalstorageinitconfig.yaml",
	} {
		t.Run(example, func(t *testing.T) {
			v := loadCRD(t, crd)
			obj := yamlToMap(t, readTestdata(t, example))
			pruned, errs := v.validate(t, obj)
			assert.Empty(t, pruned, "the schema drops fields of the example")
			assert.Empty(t, errs)
		})
	}
}

// nlsWith returns a valid NodeLocalStorage changed by mutate.
func nlsWith(mutate func(*NodeLocalStorage)) *NodeLocalStorage {
	nls := &NodeLocalStorage{
		Spec: NodeLocalStorageSpec{
			NodeName: "node-1",
			ListConfig: ListConfig{
				VGs: ListFilter{Include: []string{"open-local-pool-[0-9]+"}},
			},
			ResourceToBeInited: ResourceToBeInited{
				VGs: []VGToBeInited{
					{Name: "open-local-pool-0", Devices: []string{"/dev/vdb", "/dev/vdc"}},
					{Name: "open-local-pool-1", Devices: []string{"/dev/vdd"}},
				},
				MountPoints: []MountPointToBeInited{
					{Path: "/mnt/open-local/disk-0", Device: "/dev/vde", FsType: FSTypeExt4},
				},
			},
		},
	}
	nls.APIVersion = SchemeGroupVersion.String()
	nls.Kind = "NodeLocalStorage"
	nls.Name = "node-1"
	if mutate != nil {
		mutate(nls)
	}
	return nls
}

func TestNodeLocalStorageValidation(t *testing.T) {
	v := loadCRD(t, "csi.aliyun.com_nodelocalstorages.yaml")
	rtbi := func(nls *NodeLocalStorage) *ResourceToBeInited { return &nls.Spec.ResourceToBeInited }
	cases := []struct {
		name   string
		mutate func(*NodeLocalStorage)
		// want are substrings of the error list; none means valid.
		want []string
	}{
		{name: "valid", mutate: nil},
		{name: "nodeName differs from name", mutate: func(n *NodeLocalStorage) { n.Spec.NodeName = "node-2" },
			want: []string{"spec.nodeName must equal metadata.name"}},
		{name: "nodeName too long", mutate: func(n *NodeLocalStorage) {
			n.Name = strings.Repeat("n", 129)
			n.Spec.NodeName = n.Name
		}, want: []string{"spec.nodeName: Too long"}},
		{name: "too many include patterns", mutate: func(n *NodeLocalStorage) {
			for i := range 51 {
				n.Spec.ListConfig.Devices.Include = append(n.Spec.ListConfig.Devices.Include, fmt.Sprintf("/dev/vd%d", i))
			}
		}, want: []string{"spec.listConfig.devices.include: Too many: 51"}},
		{name: "relative mount path", mutate: func(n *NodeLocalStorage) { rtbi(n).MountPoints[0].Path = "mnt/disk" },
			want: []string{"spec.resourceToBeInited.mountpoints[0].path", "should match"}},
		{name: "mount path with a space", mutate: func(n *NodeLocalStorage) { rtbi(n).MountPoints[0].Path = "/mnt/my disk" },
			want: []string{"spec.resourceToBeInited.mountpoints[0].path"}},
		{name: "unsupported fsType", mutate: func(n *NodeLocalStorage) { rtbi(n).MountPoints[0].FsType = "btrfs" },
			want: []string{`spec.resourceToBeInited.mountpoints[0].fsType: Unsupported value: "btrfs"`}},
		{name: "device in two VGs", mutate: func(n *NodeLocalStorage) {
			rtbi(n).VGs[1].Devices = append(rtbi(n).VGs[1].Devices, "/dev/vdc")
		}, want: []string{"spec.resourceToBeInited: Invalid value", "a device is listed in more than one volume group"}},
		{name: "duplicate VG name", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Name = "open-local-pool-0" },
			want: []string{"spec.resourceToBeInited.vgs[1]: Duplicate value"}},
		{name: "device twice in a VG", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[0].Devices = []string{"/dev/vdb", "/dev/vdb"} },
			want: []string{`spec.resourceToBeInited.vgs[0].devices[1]: Duplicate value: "/dev/vdb"`}},
		{name: "VG with an empty device list", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Devices = []string{} },
			want: []string{"spec.resourceToBeInited.vgs[1].devices: Invalid value", "should have at least 1 items"}},
		{name: "device not under /dev", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Devices = []string{"vdd"} },
			want: []string{"spec.resourceToBeInited.vgs[1].devices[0]"}},
		{name: "VG name with a leading hyphen", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Name = "-pool" },
			want: []string{"spec.resourceToBeInited.vgs[1].name", "should match"}},
		{name: "VG name with a slash", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Name = "pool/1" },
			want: []string{"spec.resourceToBeInited.vgs[1].name"}},
		{name: "VG name dot-dot", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Name = ".." },
			want: []string{`"." and ".." are not valid volume group names`}},
		{name: "VG name too long for LVM", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Name = strings.Repeat("v", 128) },
			want: []string{"spec.resourceToBeInited.vgs[1].name: Too long"}},
		{name: "VG name LVM accepts", mutate: func(n *NodeLocalStorage) { rtbi(n).VGs[1].Name = "Pool_1.a+b-c" }},
		{name: "mount point device also in a VG", mutate: func(n *NodeLocalStorage) { rtbi(n).MountPoints[0].Device = "/dev/vdd" },
			want: []string{"a device of resourceToBeInited.mountpoints is also listed in resourceToBeInited.vgs"}},
		{name: "two mount points on one device", mutate: func(n *NodeLocalStorage) {
			rtbi(n).MountPoints = append(rtbi(n).MountPoints, MountPointToBeInited{Path: "/mnt/open-local/disk-1", Device: "/dev/vde"})
		}, want: []string{"a device is used by more than one mount point"}},
		{name: "duplicate mount path", mutate: func(n *NodeLocalStorage) {
			rtbi(n).MountPoints = append(rtbi(n).MountPoints, MountPointToBeInited{Path: "/mnt/open-local/disk-0", Device: "/dev/vdf"})
		}, want: []string{"spec.resourceToBeInited.mountpoints[1]: Duplicate value"}},
		{name: "unknown media type", mutate: func(n *NodeLocalStorage) {
			n.Status.NodeStorageInfo.DeviceInfos = []DeviceInfo{{Name: "/dev/vdb", MediaType: "nvme"}}
		}, want: []string{`status.nodeStorageInfo.deviceInfo[0].mediaType: Unsupported value: "nvme"`}},
		{name: "deviceType too long", mutate: func(n *NodeLocalStorage) { n.Spec.SpdkConfig.DeviceType = "123456789" },
			want: []string{"spec.spdkConfig.deviceType: Too long"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := v.validate(t, toMap(t, nlsWith(tc.mutate)))
			if len(tc.want) == 0 {
				assert.Empty(t, errs)
				return
			}
			require.NotEmpty(t, errs)
			msg := errs.ToAggregate().Error()
			for _, w := range tc.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

func TestVGDevicesAreRequired(t *testing.T) {
	v := loadCRD(t, "csi.aliyun.com_nodelocalstorages.yaml")
	obj := toMap(t, nlsWith(nil))
	vgs := obj["spec"].(map[string]any)["resourceToBeInited"].(map[string]any)["vgs"].([]any)
	delete(vgs[1].(map[string]any), "devices")
	_, errs := v.validate(t, obj)
	require.NotEmpty(t, errs)
	assert.Contains(t, errs.ToAggregate().Error(), "spec.resourceToBeInited.vgs[1].devices: Required value")
}

func TestFsTypeDefaultsToExt4(t *testing.T) {
	v := loadCRD(t, "csi.aliyun.com_nodelocalstorages.yaml")
	obj := toMap(t, nlsWith(func(n *NodeLocalStorage) { n.Spec.ResourceToBeInited.MountPoints[0].FsType = "" }))
	_, errs := v.validate(t, obj)
	require.Empty(t, errs)
	var nls NodeLocalStorage
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &nls))
	assert.Equal(t, FSTypeExt4, nls.Spec.ResourceToBeInited.MountPoints[0].FsType)
}

func TestNodeLocalStorageInitConfigValidation(t *testing.T) {
	v := loadCRD(t, "csi.aliyun.com_nodelocalstorageinitconfigs.yaml")
	base := func() map[string]any { return yamlToMap(t, readTestdata(t, "nodelocalstorageinitconfig.yaml")) }

	t.Run("device in two VGs of the global config", func(t *testing.T) {
		var nlsc NodeLocalStorageInitConfig
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(base(), &nlsc))
		g := &nlsc.Spec.GlobalConfig.ResourceToBeInited
		g.VGs = append(g.VGs, VGToBeInited{Name: "open-local-pool-1", Devices: []string{"/dev/vdb"}})
		_, errs := v.validate(t, toMap(t, &nlsc))
		require.NotEmpty(t, errs)
		msg := errs.ToAggregate().Error()
		assert.Contains(t, msg, "spec.globalConfig: Invalid value")
		assert.Contains(t, msg, "a device is listed in more than one volume group")
	})
	t.Run("mount point device in a VG of the global config", func(t *testing.T) {
		var nlsc NodeLocalStorageInitConfig
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(base(), &nlsc))
		g := &nlsc.Spec.GlobalConfig.ResourceToBeInited
		g.MountPoints = []MountPointToBeInited{{Path: "/mnt/open-local/a", Device: "/dev/vdb"}}
		_, errs := v.validate(t, toMap(t, &nlsc))
		require.NotEmpty(t, errs)
		assert.Contains(t, errs.ToAggregate().Error(), "a device of resourceToBeInited.mountpoints is also listed in resourceToBeInited.vgs")
	})
	t.Run("cross-list rules of nodesConfig entries are left to the derived NodeLocalStorage", func(t *testing.T) {
		// Within the cost budget the apiserver allows for 100 entries these
		// rules do not fit; the NodeLocalStorage CRD enforces them instead.
		var nlsc NodeLocalStorageInitConfig
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(base(), &nlsc))
		nc := &nlsc.Spec.NodesConfig[0].ResourceToBeInited
		nc.VGs = append(nc.VGs, VGToBeInited{Name: "open-local-pool-1", Devices: []string{"/dev/nvme1n1"}})
		_, errs := v.validate(t, toMap(t, &nlsc))
		assert.Empty(t, errs)

		nlsV := loadCRD(t, "csi.aliyun.com_nodelocalstorages.yaml")
		derived := nlsWith(func(n *NodeLocalStorage) { n.Spec.ResourceToBeInited = *nc.DeepCopy() })
		_, errs = nlsV.validate(t, toMap(t, derived))
		require.NotEmpty(t, errs)
		assert.Contains(t, errs.ToAggregate().Error(), "a device is listed in more than one volume group")
	})
	t.Run("schema rules of nodesConfig entries still apply", func(t *testing.T) {
		var nlsc NodeLocalStorageInitConfig
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(base(), &nlsc))
		nlsc.Spec.NodesConfig[0].ResourceToBeInited.VGs[0].Name = "bad name"
		nlsc.Spec.NodesConfig[0].ResourceToBeInited.MountPoints[0].FsType = "ntfs"
		_, errs := v.validate(t, toMap(t, &nlsc))
		msg := errs.ToAggregate().Error()
		assert.Contains(t, msg, "spec.nodesConfig[0].resourceToBeInited.vgs[0].name")
		assert.Contains(t, msg, `spec.nodesConfig[0].resourceToBeInited.mountpoints[0].fsType: Unsupported value: "ntfs"`)
	})
	t.Run("duplicate VG in the global config", func(t *testing.T) {
		var nlsc NodeLocalStorageInitConfig
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(base(), &nlsc))
		g := &nlsc.Spec.GlobalConfig.ResourceToBeInited
		g.VGs = append(g.VGs, VGToBeInited{Name: g.VGs[0].Name, Devices: []string{"/dev/vdz"}})
		_, errs := v.validate(t, toMap(t, &nlsc))
		require.NotEmpty(t, errs)
		assert.Contains(t, errs.ToAggregate().Error(), "spec.globalConfig.resourceToBeInited.vgs[1]: Duplicate value")
	})
	t.Run("failedNodes is bounded", func(t *testing.T) {
		var nlsc NodeLocalStorageInitConfig
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(base(), &nlsc))
		nlsc.Status.FailedNodes = nil
		for i := range MaxFailedNodes + 1 {
			nlsc.Status.FailedNodes = append(nlsc.Status.FailedNodes, FailedNode{Node: fmt.Sprintf("node-%d", i), Reason: "x"})
		}
		_, errs := v.validate(t, toMap(t, &nlsc))
		require.NotEmpty(t, errs)
		assert.Contains(t, errs.ToAggregate().Error(), "status.failedNodes: Too many: 21")
	})
	t.Run("too many nodesConfig entries", func(t *testing.T) {
		var nlsc NodeLocalStorageInitConfig
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(base(), &nlsc))
		for len(nlsc.Spec.NodesConfig) <= 100 {
			nlsc.Spec.NodesConfig = append(nlsc.Spec.NodesConfig, NodeConfig{})
		}
		_, errs := v.validate(t, toMap(t, &nlsc))
		require.NotEmpty(t, errs)
		assert.Contains(t, errs.ToAggregate().Error(), "spec.nodesConfig: Too many")
	})
}
