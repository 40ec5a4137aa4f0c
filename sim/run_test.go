package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const tib = 1 << 40

// fixedClock makes elapsed time (and so the output) reproducible.
func fixedClock() func() time.Time {
	t := time.Unix(0, 0)
	return func() time.Time { t = t.Add(time.Millisecond); return t }
}

func run(t *testing.T, s *Set, opt Options) *Result {
	t.Helper()
	if opt.Now == nil {
		opt.Now = fixedClock()
	}
	r, err := Run(s, opt)
	require.NoError(t, err)
	return r
}

// nls is a NodeLocalStorage with one VG "pool" of vgGi GiB on /dev/vdb, and
// extra YAML lines for the status (indented under nodeStorageInfo).
func nls(name string, vgGi int, extra string) string {
	return fmt.Sprintf(`apiVersion: csi.aliyun.com/v1alpha1
kind: NodeLocalStorage
metadata: {name: %s}
spec:
  nodeName: %s
  listConfig:
    vgs: {include: ["pool"]}
    devices: {include: ["/dev/vd[c-z]"]}
    mountPoints: {include: ["/mnt/open-local/.*"]}
status:
  nodeStorageInfo:
    volumeGroups:
    - {name: pool, physicalVolumes: [/dev/vdb], total: %dGi}
%s`, name, name, vgGi, extra)
}

const classes = `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: lvm}
provisioner: local.csi.aliyun.com
parameters: {volumeType: LVM}
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ssd}
provisioner: local.csi.aliyun.com
parameters: {volumeType: Device, mediaType: ssd}
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ebs}
provisioner: ebs.csi.aws.com
`

func pvc(name, class, size string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: %s}\nspec: {storageClassName: %s, resources: {requests: {storage: %s}}}\n", name, class, size)
}

// pod uses the named PVCs.
func pod(name string, claims ...string) string {
	var vols []string
	for i, c := range claims {
		vols = append(vols, fmt.Sprintf("  - {name: v%d, persistentVolumeClaim: {claimName: %s}}", i, c))
	}
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x}]\n  volumes:\n%s\n", name, strings.Join(vols, "\n"))
}

func placementsByPod(r *Result) map[string]Placement {
	m := map[string]Placement{}
	for _, p := range r.Placements {
		m[p.Pod] = p
	}
	return m
}

func reasons(r *Result) map[string]string {
	m := map[string]string{}
	for _, u := range r.Unschedulable {
		m[u.Pod] = u.Reason
	}
	return m
}

func TestRunBuiltInExample(t *testing.T) {
	s := NewSet()
	require.NoError(t, s.LoadExample(ExampleCluster))
	require.NoError(t, s.LoadExample(ExampleWorkload))
	r := run(t, s, Options{})
	assert.Equal(t, 4, r.Nodes)
	assert.Equal(t, 10, r.Pods)
	assert.Equal(t, 0, r.Overcommitted)
	assert.Equal(t, []string{"skipping Pod default/nginx: it has no Open-Local volume"}, r.Notes)
	require.Len(t, r.Unschedulable, 1)
	assert.Equal(t, Unschedulable{Pod: "default/analytics", Reason: "0/4 nodes are available: 4 Insufficient LVM storage; persistentvolumeclaim default/analytics-data requests 300Gi, more than any volume group offers (largest: 200Gi)"}, r.Unschedulable[0])
	got := placementsByPod(r)
	assert.Equal(t, "node-4", got["default/hdfs-datanode"].Node, "only node-4 has an 800Gi hdd")
	assert.Equal(t, "node-3", got["default/log-archiver"].Node, "only node-3 has a mount point")
	assert.Equal(t, []PlacedVolume{{Claim: "default/logs-archive", Device: "/mnt/open-local/disk-0", Bytes: tib}}, got["default/log-archiver"].Volumes)
	assert.Equal(t, "default/cache/scratch", got["default/cache"].Volumes[0].Claim)
	assert.Len(t, got["default/mysql"].Volumes, 2)
	for _, p := range []string{"default/kafka-0", "default/kafka-1"} {
		require.Len(t, got[p].Volumes, 1)
		assert.Equal(t, int64(100*core.GiB), got[p].Volumes[0].Bytes, "a device is charged whole")
	}
	// node-1's VG: 200Gi minus the foreign 10Gi LV; its 30Gi Open-Local LV is charged.
	var vg1 ResourceReport
	for _, rr := range r.Resources {
		if rr.Node == "node-1" && rr.Kind == core.KindLVM {
			vg1 = rr
		}
	}
	assert.Equal(t, 190*core.GiB, vg1.AllocatableBytes)
	assert.Equal(t, 1, vg1.ExistingVolumes)
	assert.GreaterOrEqual(t, vg1.RequestedBytes, 30*core.GiB)
}

func TestRunChargesRoundedExtents(t *testing.T) {
	s := load(t, nls("n1", 10, ""), classes, pvc("a", "lvm", "1073741825"), pod("p", "a"))
	r := run(t, s, Options{})
	require.Len(t, r.Placements, 1)
	assert.Equal(t, []PlacedVolume{{Claim: "default/a", VG: "pool", Bytes: core.GiB + 4*core.MiB}}, r.Placements[0].Volumes)
	assert.Equal(t, core.GiB+4*core.MiB, r.Resources[0].RequestedBytes)
}

func TestRunBadInputsStillPlaceTheRest(t *testing.T) {
	s := load(t,
		nls("good", 100, ""),
		`apiVersion: csi.aliyun.com/v1alpha1
kind: NodeLocalStorage
metadata: {name: broken}
spec:
  listConfig:
    vgs: {include: ["pool-("]}
status:
  nodeStorageInfo:
    volumeGroups: [{name: pool-(, total: 500Gi}]
`,
		`apiVersion: csi.aliyun.com/v1alpha1
kind: NodeLocalStorage
metadata:
  name: reserved
  annotations: {csi.aliyun.com/storage-reserved: '{"pool": "half"}'}
spec:
  listConfig:
    vgs: {include: ["pool"]}
status:
  nodeStorageInfo:
    volumeGroups: [{name: pool, total: 500Gi}]
`,
		classes,
		`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: typo}
provisioner: local.csi.aliyun.com
parameters: {volumeType: lvm}
volumeBindingMode: WaitForFirstConsumer
`,
		pvc("ok", "lvm", "10Gi"), pod("fine", "ok"),
		pvc("t", "typo", "1Gi"), pod("bad-type", "t"),
		pvc("m", "missing", "1Gi"), pod("bad-class", "m"),
		pod("bad-claim", "nope"),
		pvc("huge", "lvm", "400Gi"), pod("too-big", "huge"),
		pvc("ok2", "lvm", "10Gi"), pod("fine-too", "ok2"),
	)
	r := run(t, s, Options{})
	got := placementsByPod(r)
	assert.Equal(t, "good", got["default/fine"].Node)
	assert.Equal(t, "good", got["default/fine-too"].Node)
	why := reasons(r)
	assert.Equal(t, `volume v0: persistentvolumeclaim default/t: storageclass typo: invalid volumeType "lvm" (accepted: LVM, Device, MountPoint)`, why["default/bad-type"])
	assert.Equal(t, `volume v0: persistentvolumeclaim default/m: storageclass "missing" not found`, why["default/bad-class"])
	assert.Equal(t, `volume v0: persistentvolumeclaim default/nope not found`, why["default/bad-claim"])
	assert.Equal(t, "0/3 nodes are available: 3 Insufficient LVM storage; persistentvolumeclaim default/huge requests 400Gi, more than any volume group offers (largest: 100Gi)", why["default/too-big"])
	assert.Len(t, why, 4)

	notes := strings.Join(r.Notes, "\n")
	assert.Contains(t, notes, `node broken: NodeLocalStorage broken: listConfig.vgs.include[0]: invalid regular expression "pool-("`)
	assert.Contains(t, notes, "node broken: NodeLocalStorage broken")
	assert.Contains(t, notes, "the node offers no Open-Local storage")
	assert.Contains(t, notes, `node reserved: NodeLocalStorage reserved: csi.aliyun.com/storage-reserved: volume group "pool"`)
	assert.Contains(t, notes, `StorageClass typo: invalid volumeType "lvm"`)
	for _, rr := range r.Resources {
		if rr.Node == "broken" || rr.Node == "reserved" {
			assert.Equal(t, core.ResourceKind(0), rr.Kind, "%s offers nothing", rr.Node)
		}
	}
}

func TestRunExplainsRequestsThatNeverFit(t *testing.T) {
	s := load(t, nls("n1", 10, "    deviceInfo: [{name: /dev/vdc, mediaType: ssd, total: 50Gi}]\n"), classes,
		`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: pinned}
provisioner: local.csi.aliyun.com
parameters: {volumeType: LVM, vgName: elsewhere}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: hdd}
provisioner: local.csi.aliyun.com
parameters: {volumeType: Device, mediaType: hdd}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: mp}
provisioner: local.csi.aliyun.com
parameters: {volumeType: MountPoint, mediaType: ssd}
`, pvc("a", "pinned", "1Gi"), pvc("b", "ssd", "60Gi"), pvc("c", "hdd", "1Gi"), pvc("d", "mp", "1Gi"), pvc("e", "ssd", "10Gi"), pvc("f", "ssd", "10Gi"),
		pod("p", "a", "b", "c", "d"), pod("q", "e", "f"))
	why := reasons(run(t, s, Options{}))
	assert.Equal(t, "0/1 nodes are available: 1 volume group not found on node; "+
		"persistentvolumeclaim default/a needs volume group elsewhere, which no node offers; "+
		"persistentvolumeclaim default/b requests 60Gi, more than any ssd device offers (largest: 50Gi); "+
		"persistentvolumeclaim default/c needs an hdd device, and no node offers one; "+
		"persistentvolumeclaim default/d needs an ssd mount point, and no node offers one", why["default/p"])
	assert.Equal(t, "0/1 nodes are available: 1 Insufficient Device storage", why["default/q"], "each fits alone: no hint")
}

func TestRunPodsWithoutOpenLocalVolumesAreSkipped(t *testing.T) {
	s := load(t, nls("n1", 10, ""), classes, pvc("e", "ebs", "1Gi"),
		pod("ebs-only", "e"),
		"apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\nspec: {containers: [{name: c, image: x}]}\n")
	r := run(t, s, Options{})
	assert.Equal(t, 0, r.Pods)
	assert.Empty(t, r.Placements)
	assert.Empty(t, r.Unschedulable)
	assert.Contains(t, r.Notes, "skipping Pod default/ebs-only: it has no Open-Local volume")
	assert.Contains(t, r.Notes, "skipping Pod default/bare: it has no Open-Local volume")
}

func TestRunExistingVolumesAndDevicesInUse(t *testing.T) {
	s := load(t, `apiVersion: csi.aliyun.com/v1alpha1
kind: NodeLocalStorage
metadata: {name: n1}
spec:
  listConfig:
    vgs: {include: [pool]}
    devices: {include: ["/dev/vd[b-z]"]}
    mountPoints: {include: ["/mnt/open-local/.*"]}
status:
  nodeStorageInfo:
    deviceInfo:
    - {name: /dev/vdb, mediaType: ssd, total: 100Gi}
    - {name: /dev/vdc, mediaType: ssd, total: 500Gi}
    - {name: /dev/vdd, mediaType: ssd, total: 50Gi}
    - {name: /dev/vde, mediaType: ssd, total: 500Gi, readOnly: true}
    volumeGroups:
    - name: pool
      physicalVolumes: [/dev/vdb]
      total: 100Gi
      logicalVolumes:
      - {name: local-pv-1, vgname: pool, total: 60Gi}
      - {name: home, vgname: pool, total: 20Gi}
    mountPoints:
    - {name: /mnt/open-local/d0, device: /dev/vdd, fsType: ext4, total: 50Gi}
`, classes, pvc("a", "lvm", "21Gi"), pod("p", "a"), pvc("b", "lvm", "20Gi"), pod("fits", "b"), pvc("d", "ssd", "100Gi"), pod("q", "d"))
	r := run(t, s, Options{})
	assert.Equal(t, "0/1 nodes are available: 1 Insufficient LVM storage", reasons(r)["default/p"], "80Gi allocatable, 60Gi already used by local-pv-1")
	got := placementsByPod(r)
	assert.Equal(t, "n1", got["default/fits"].Node)
	assert.Equal(t, []PlacedVolume{{Claim: "default/d", Device: "/dev/vdc", Bytes: 500 * core.GiB}}, got["default/q"].Volumes, "vdb is a PV, vdd is mounted, vde is read-only")
	notes := strings.Join(r.Notes, "\n")
	assert.Contains(t, notes, "node n1: NodeLocalStorage n1: device /dev/vdb is not offered: physical volume of volume group pool")
	assert.Contains(t, notes, "device /dev/vdd is not offered: mounted at /mnt/open-local/d0")
	assert.Contains(t, notes, "device /dev/vde is not offered: read-only")
	require.Equal(t, core.KindLVM, r.Resources[0].Kind)
	assert.Equal(t, ResourceReport{Node: "n1", Kind: core.KindLVM, Name: "pool", AllocatableBytes: 80 * core.GiB, RequestedBytes: 80 * core.GiB, FreeBytes: 0, Pods: []string{"default/fits"}, ExistingVolumes: 1}, r.Resources[0])
}

func TestRunOvercommitIsRecounted(t *testing.T) {
	// 90% reserved leaves 10Gi, but Open-Local already holds a 30Gi LV there.
	s := load(t, `apiVersion: csi.aliyun.com/v1alpha1
kind: NodeLocalStorage
metadata:
  name: n1
  annotations: {csi.aliyun.com/storage-reserved: '{"pool": "90%"}'}
spec:
  listConfig: {vgs: {include: [pool]}}
status:
  nodeStorageInfo:
    volumeGroups:
    - name: pool
      total: 100Gi
      logicalVolumes: [{name: local-old, total: 30Gi}]
`, classes, pvc("a", "lvm", "1Gi"), pod("p", "a"))
	r := run(t, s, Options{})
	assert.Equal(t, 1, r.Overcommitted)
	require.Len(t, r.Overcommits, 1)
	assert.Equal(t, "pool", r.Overcommits[0].Resource)
	assert.Equal(t, 20*core.GiB, r.Overcommits[0].ExcessBytes)
	assert.Equal(t, "0/1 nodes are available: 1 Insufficient LVM storage", reasons(r)["default/p"], "nothing more goes on an over-committed VG")
	assert.Contains(t, strings.Join(r.Notes, "\n"), "volume group pool: Open-Local's existing volumes take 30Gi, more than the 10Gi it offers")
	var table bytes.Buffer
	require.NoError(t, r.WriteTable(&table))
	assert.Contains(t, table.String(), "OVER-COMMITTED")
	assert.Contains(t, table.String(), "existing:n1/pool/local-old")
}

func TestRunGeneratedCluster(t *testing.T) {
	tmpl := NewSet()
	require.NoError(t, tmpl.LoadExample(ExampleNodeTemplate))
	s := NewSet()
	require.NoError(t, s.Generate(tmpl, 250))
	require.NoError(t, s.LoadExample(ExampleWorkload))
	assert.Equal(t, 250, s.NumNodes())
	assert.Equal(t, "storage-node-0", s.nodes[0].name)
	assert.Equal(t, "storage-node-249", s.nodes[249].name)
	assert.Equal(t, "storage-node-7", s.nodes[7].node.Labels[hostnameLabel])
	assert.Equal(t, "storage-node", tmpl.nodes[0].node.Name, "the template is not modified")

	r := run(t, s, Options{})
	assert.Equal(t, 250, r.Nodes)
	assert.Equal(t, 10, r.Pods)
	assert.Empty(t, r.Unschedulable, "every pod fits on a large node")
	assert.Equal(t, 0, r.Overcommitted)
	assert.Equal(t, 120, r.Sample, "kube-scheduler's adaptive share: 48% of 250 nodes")

	assert.ErrorContains(t, s.Generate(tmpl, 1), "generated node storage-node-0: a node of that name is already in the input")
	assert.ErrorContains(t, NewSet().Generate(tmpl, 0), "must be from 1")
	assert.ErrorContains(t, NewSet().Generate(NewSet(), 3), "no Node or NodeLocalStorage")
}

func TestRunGeneratedNotesOnce(t *testing.T) {
	tmpl := load(t, nls("t", 10, "    deviceInfo: [{name: /dev/vdc, mediaType: fast, total: 1Gi}]\n"))
	s := NewSet()
	require.NoError(t, s.Generate(tmpl, 50))
	r := run(t, s, Options{})
	assert.Equal(t, []string{
		`nodes generated from t: NodeLocalStorage t: device /dev/vdc: unknown mediaType "fast" (accepted: ssd, hdd); it matches no StorageClass`,
	}, r.Notes)
}

func TestRunNodeConstraints(t *testing.T) {
	s := load(t,
		"apiVersion: v1\nkind: Node\nmetadata: {name: a, labels: {zone: zx}}\n", nls("a", 100, ""),
		"apiVersion: v1\nkind: Node\nmetadata: {name: b, labels: {zone: zy}}\n", nls("b", 100, ""),
		"apiVersion: v1\nkind: Node\nmetadata: {name: c, labels: {zone: zy}}\nspec:\n  taints: [{key: dedicated, value: db, effect: NoSchedule}]\n", nls("c", 100, ""),
		"apiVersion: v1\nkind: Node\nmetadata: {name: d}\nspec: {unschedulable: true}\n", nls("d", 100, ""),
		classes,
		pvc("c1", "lvm", "1Gi"), pvc("c2", "lvm", "1Gi"), pvc("c3", "lvm", "1Gi"), pvc("c4", "lvm", "1Gi"), pvc("c5", "lvm", "200Gi"),
	)
	extra := `apiVersion: v1
kind: Pod
metadata: {name: in-y}
spec:
  nodeSelector: {zone: zy}
  containers: [{name: c, image: x}]
  volumes: [{name: v, persistentVolumeClaim: {claimName: c1}}]
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [c]}]
  tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]
  containers: [{name: c, image: x}]
  volumes: [{name: v, persistentVolumeClaim: {claimName: c2}}]
---
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeName: d
  tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists}]
  containers: [{name: c, image: x}]
  volumes: [{name: v, persistentVolumeClaim: {claimName: c3}}]
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {zone: zy}
  containers: [{name: c, image: x}]
  volumes: [{name: v, persistentVolumeClaim: {claimName: c5}}]
`
	require.NoError(t, s.Load("pods.yaml", strings.NewReader(extra)))
	r := run(t, s, Options{})
	got := placementsByPod(r)
	assert.Equal(t, "b", got["default/in-y"].Node, "c is tainted")
	assert.Equal(t, "c", got["default/tolerant"].Node)
	assert.Equal(t, "d", got["default/pinned"].Node)
	assert.Equal(t, "0/4 nodes are available: 1 Insufficient LVM storage, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable; persistentvolumeclaim default/c5 requests 200Gi, more than any volume group offers (largest: 100Gi)", reasons(r)["default/nowhere"])
}

func TestRunSharedAndRepeatedClaims(t *testing.T) {
	s := load(t, nls("a", 100, ""), nls("b", 100, ""), classes, pvc("shared", "lvm", "10Gi"), pvc("big", "lvm", "95Gi"),
		pod("first", "shared", "shared"), pod("filler", "big"), pod("second", "shared"))
	r := run(t, s, Options{Strategy: core.Spread})
	got := placementsByPod(r)
	require.Len(t, got["default/first"].Volumes, 1, "a claim used twice by one pod is one volume")
	assert.Equal(t, got["default/first"].Node, got["default/second"].Node, "pods sharing a PVC share its node")
	assert.NotEqual(t, got["default/first"].Node, got["default/filler"].Node, "spread")
	assert.Equal(t, 0, r.Overcommitted)
}

func TestRunStrategies(t *testing.T) {
	docs := []string{nls("a", 100, ""), nls("b", 100, ""), classes}
	for i := 0; i < 4; i++ {
		docs = append(docs, pvc(fmt.Sprint("c", i), "lvm", "10Gi"), pod(fmt.Sprint("p", i), fmt.Sprint("c", i)))
	}
	count := func(strategy core.Strategy) map[string]int {
		n := map[string]int{}
		for _, p := range run(t, load(t, docs...), Options{Strategy: strategy}).Placements {
			n[p.Node]++
		}
		return n
	}
	assert.Equal(t, map[string]int{"a": 4}, count(core.Binpack))
	assert.Equal(t, map[string]int{"a": 2, "b": 2}, count(core.Spread))
}

func TestRunInlineAndEphemeralVolumes(t *testing.T) {
	s := load(t, nls("n1", 10, ""), classes, `apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns}
spec:
  containers: [{name: c, image: x}]
  volumes:
  - name: scratch
    csi: {driver: local.csi.aliyun.com, volumeAttributes: {vgName: pool, size: 2Gi}}
  - name: eph
    ephemeral:
      volumeClaimTemplate:
        spec: {storageClassName: lvm, resources: {requests: {storage: 3Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: q}
spec:
  containers: [{name: c, image: x}]
  volumes:
  - name: scratch
    csi: {driver: local.csi.aliyun.com, volumeAttributes: {size: 2Gi}}
`)
	r := run(t, s, Options{})
	require.Len(t, r.Placements, 1)
	assert.Equal(t, []PlacedVolume{
		{Claim: "ns/p/scratch", VG: "pool", Bytes: 2 * core.GiB},
		{Claim: "ns/p-eph", VG: "pool", Bytes: 3 * core.GiB},
	}, r.Placements[0].Volumes)
	assert.Equal(t, "volume scratch: pod default/q: inline volume scratch: volumeAttributes.vgName is required: invalid value", reasons(r)["default/q"])
}

func TestRunJSONShape(t *testing.T) {
	s := NewSet()
	require.NoError(t, s.LoadExample(ExampleCluster))
	require.NoError(t, s.LoadExample(ExampleWorkload))
	var buf bytes.Buffer
	require.NoError(t, run(t, s, Options{}).WriteJSON(&buf))

	var doc map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"placements", "unschedulable", "overcommitted", "pods", "nodes", "elapsedSeconds",
		"mode", "placementsPerSecond", "reschedules", "overcommitAttemptsCaught", "overcommittedBytes"}, keys)

	var out struct {
		Placements []struct {
			Pod     string                       `json:"pod"`
			Node    string                       `json:"node"`
			Volumes []map[string]json.RawMessage `json:"volumes"`
		} `json:"placements"`
		Unschedulable []map[string]string `json:"unschedulable"`
		Overcommitted *int                `json:"overcommitted"`
		Pods          *int                `json:"pods"`
		Nodes         *int                `json:"nodes"`
		Elapsed       *float64            `json:"elapsedSeconds"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &out))
	require.Len(t, out.Placements, 9)
	assert.Equal(t, "default/etcd-0", out.Placements[0].Pod, "file order")
	for _, p := range out.Placements {
		assert.NotEmpty(t, p.Node)
		for _, v := range p.Volumes {
			assert.Len(t, v, 4)
			for _, k := range []string{"claim", "vg", "device", "bytes"} {
				assert.Contains(t, v, k)
			}
			var b int64
			require.NoError(t, json.Unmarshal(v["bytes"], &b))
			assert.Positive(t, b)
		}
	}
	assert.Equal(t, []map[string]string{{"pod": "default/analytics", "reason": "0/4 nodes are available: 4 Insufficient LVM storage; persistentvolumeclaim default/analytics-data requests 300Gi, more than any volume group offers (largest: 200Gi)"}}, out.Unschedulable)
	assert.Equal(t, 0, *out.Overcommitted)
	assert.Equal(t, 10, *out.Pods)
	assert.Equal(t, 4, *out.Nodes)
	assert.Greater(t, *out.Elapsed, 0.0)

	// An empty run still prints lists, not null.
	buf.Reset()
	require.NoError(t, run(t, NewSet(), Options{}).WriteJSON(&buf))
	assert.Contains(t, buf.String(), `"placements": []`)
	assert.Contains(t, buf.String(), `"unschedulable": []`)
}

func TestRunIsDeterministic(t *testing.T) {
	render := func() (string, string) {
		tmpl := NewSet()
		require.NoError(t, tmpl.LoadExample(ExampleNodeTemplate))
		s := NewSet()
		require.NoError(t, s.LoadExample(ExampleCluster))
		require.NoError(t, s.Generate(tmpl, 150))
		require.NoError(t, s.LoadExample(ExampleWorkload))
		require.NoError(t, s.LoadExample(ExampleWorkload)) // duplicates: noted, kept once
		r := run(t, s, Options{Strategy: core.Spread, Sample: 7})
		var j, tab bytes.Buffer
		require.NoError(t, r.WriteJSON(&j))
		require.NoError(t, r.WriteTable(&tab))
		return j.String(), tab.String() + strings.Join(r.Notes, "\n")
	}
	j1, t1 := render()
	for i := 0; i < 3; i++ {
		j2, t2 := render()
		require.Equal(t, j1, j2)
		require.Equal(t, t1, t2)
	}
}

func TestRunOptions(t *testing.T) {
	_, err := Run(NewSet(), Options{Sample: -1})
	assert.ErrorContains(t, err, "sample -1")
	_, err = Run(NewSet(), Options{Strategy: 9})
	assert.ErrorContains(t, err, "unknown strategy")
	r := run(t, NewSet(), Options{})
	assert.Equal(t, core.Binpack, r.Strategy)
}

func TestHumanBytes(t *testing.T) {
	for b, want := range map[int64]string{0: "0", 512: "512", core.KiB: "1Ki", 1536: "1.5Ki", 100 * core.GiB: "100Gi", core.GiB + 4*core.MiB: "1.0Gi", tib: "1Ti", -2 * core.MiB: "-2Mi"} {
		assert.Equal(t, want, humanBytes(b))
	}
}

func TestWriteTable(t *testing.T) {
	s := NewSet()
	require.NoError(t, s.LoadExample(ExampleCluster))
	require.NoError(t, s.LoadExample(ExampleWorkload))
	var buf bytes.Buffer
	require.NoError(t, run(t, s, Options{}).WriteTable(&buf))
	out := buf.String()
	lines := strings.Split(out, "\n")
	assert.Regexp(t, `^NODE\s+RESOURCE\s+ALLOCATABLE\s+REQUESTED\s+FREE\s+PODS$`, lines[0])
	assert.Regexp(t, `node-1\s+vg open-local-pool-0\s+190Gi\s+\S+\s+\S+\s+.*\(1 existing volume\)`, out)
	assert.Regexp(t, `node-4\s+device /dev/vdc \(hdd\)\s+1Ti\s+1Ti\s+0\s+default/hdfs-datanode`, out)
	assert.Regexp(t, `default/analytics\s+0/4 nodes are available: 4 Insufficient LVM storage`, out)
	assert.Contains(t, out, "4 nodes, 10 pods: 9 placed, 1 unschedulable; 0 over-committed resources; strategy binpack, sample 4")
	assert.NotContains(t, out, "OVER-COMMITTED")

	rr := ResourceReport{Pods: []string{"a", "b", "c", "d", "e", "f"}, ExistingVolumes: 2}
	assert.Equal(t, "a, b, c, d (+2 more, 2 existing volumes)", podsCell(rr))
}

func TestRunSampleRotatesThroughNodes(t *testing.T) {
	for _, tainted := range []bool{false, true} {
		docs := []string{nls("a", 10, ""), nls("b", 10, ""), nls("c", 10, ""), classes}
		if tainted {
			// One tainted node sends every pod through the node filters.
			docs = append(docs, "apiVersion: v1\nkind: Node\nmetadata: {name: t}\nspec: {taints: [{key: k, effect: NoSchedule}]}\n", nls("t", 10, ""))
		}
		for i := 0; i < 3; i++ {
			docs = append(docs, pvc(fmt.Sprint("c", i), "lvm", "1Gi"), pod(fmt.Sprint("p", i), fmt.Sprint("c", i)))
		}
		r := run(t, load(t, docs...), Options{Sample: 1})
		var nodes []string
		for _, p := range r.Placements {
			nodes = append(nodes, p.Node)
		}
		assert.Equal(t, []string{"a", "b", "c"}, nodes, "tainted=%v: with a sample of one, each pod takes the next node", tainted)
	}
}

func TestRunDefaultStorageClass(t *testing.T) {
	noClass := "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: %s}\nspec: {%sresources: {requests: {storage: 1Gi}}}\n"
	workload := []string{
		fmt.Sprintf(noClass, "implicit", ""), pod("uses-default", "implicit"),
		fmt.Sprintf(noClass, "static", `storageClassName: "", `), pod("static-pv", "static"),
	}
	defaultLVM := `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: default-lvm
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: local.csi.aliyun.com
parameters: {volumeType: LVM}
volumeBindingMode: WaitForFirstConsumer
`
	r := run(t, load(t, append([]string{nls("n1", 10, ""), defaultLVM}, workload...)...), Options{})
	assert.Equal(t, "n1", placementsByPod(r)["default/uses-default"].Node)
	assert.Contains(t, r.Notes, "skipping Pod default/static-pv: it has no Open-Local volume")

	r = run(t, load(t, append([]string{nls("n1", 10, ""), classes}, workload...)...), Options{})
	assert.Equal(t, "volume v0: persistentvolumeclaim default/implicit names no storageClassName and no StorageClass is marked default", reasons(r)["default/uses-default"])
}

func TestRunTwiceOnOneSet(t *testing.T) {
	s := NewSet()
	require.NoError(t, s.LoadExample(ExampleCluster))
	require.NoError(t, s.LoadExample(ExampleWorkload))
	a, b := run(t, s, Options{}), run(t, s, Options{})
	assert.Equal(t, a.Placements, b.Placements, "Run does not change the set")
	assert.Equal(t, a.Notes, b.Notes)
}
