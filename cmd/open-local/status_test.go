package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-local/open-local/apis/storage/v1alpha1"
	"github.com/open-local/open-local/pkg/status"
)

// noCluster leaves the process no way to find a cluster: no kubeconfig in
// the environment or the home directory, and no in-cluster service.
func noCluster(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", filepath.Join(home, "absent"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
}

func TestStatusWithoutKubeconfig(t *testing.T) {
	noCluster(t)
	_, _, err := runCLI(t, "", "status")
	require.Error(t, err)
	assert.Equal(t, errNoKubeconfig, err)
	assert.Contains(t, err.Error(), "pass --kubeconfig FILE")
}

func TestStatusWithMissingKubeconfigFile(t *testing.T) {
	noCluster(t)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, _, err := runCLI(t, "", "status", "--kubeconfig", missing)
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)
}

func TestStatusRejectsUnknownOutput(t *testing.T) {
	noCluster(t)
	_, _, err := runCLI(t, "", "status", "-o", "yaml")
	require.Error(t, err)
	assert.Equal(t, `--output "yaml": accepted: table, json`, err.Error())
}

// fakeAPIServer serves the three lists status reads; withCRD false answers
// 404 for NodeLocalStorages, as a cluster without Open-Local's CRD does.
func fakeAPIServer(t *testing.T, withCRD bool) *httptest.Server {
	t.Helper()
	node := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{corev1.LabelHostname: "node-1"}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	now := metav1.Now()
	nls := v1alpha1.NodeLocalStorage{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec:       v1alpha1.NodeLocalStorageSpec{ListConfig: v1alpha1.ListConfig{VGs: v1alpha1.ListFilter{Include: []string{"pool"}}}},
		Status: v1alpha1.NodeLocalStorageStatus{NodeStorageInfo: v1alpha1.NodeStorageInfo{
			DeviceInfos:  []v1alpha1.DeviceInfo{{Name: "/dev/sdb", MediaType: v1alpha1.MediaTypeHDD, Total: 10 << 30}},
			VolumeGroups: []v1alpha1.VolumeGroup{{Name: "pool", PhysicalVolumes: []string{"/dev/sdb"}, Total: 10 << 30, Available: 7 << 30, Allocatable: 10 << 30, LogicalVolumes: []v1alpha1.LogicalVolume{{Name: "local-1", VGName: "pool", Total: 3 << 30}}}},
			State:        v1alpha1.StorageState{Type: v1alpha1.StorageReady, LastHeartbeatTime: &now},
		}},
	}
	pv := corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "local-1"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("3Gi")},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "local.csi.aliyun.com", VolumeHandle: "local-1", VolumeAttributes: map[string]string{"volumeType": "LVM", "vgName": "pool"}}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"node-1"}}}}}}},
		},
	}
	lists := map[string]any{
		"/api/v1/nodes":             corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}, Items: []corev1.Node{node}},
		"/api/v1/persistentvolumes": corev1.PersistentVolumeList{TypeMeta: metav1.TypeMeta{Kind: "PersistentVolumeList", APIVersion: "v1"}, Items: []corev1.PersistentVolume{pv}},
	}
	if withCRD {
		lists["/apis/csi.aliyun.com/v1alpha1/nodelocalstorages"] = v1alpha1.NodeLocalStorageList{
			TypeMeta: metav1.TypeMeta{Kind: "NodeLocalStorageList", APIVersion: "csi.aliyun.com/v1alpha1"}, Items: []v1alpha1.NodeLocalStorage{nls}}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		list, ok := lists[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound, Message: "the server could not find the requested resource"})
			return
		}
		_ = json.NewEncoder(w).Encode(list)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// kubeconfigFor writes a kubeconfig whose context "fake" is srv and whose
// current context "elsewhere" is a server that does not answer.
func kubeconfigFor(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: %q}
- name: elsewhere
  cluster: {server: "http://127.0.0.1:1"}
users:
- name: u
  user: {token: t}
contexts:
- name: fake
  context: {cluster: fake, user: u}
- name: elsewhere
  context: {cluster: elsewhere, user: u}
current-context: elsewhere
`, srv.URL)
	p := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

func TestStatusFromAnAPIServer(t *testing.T) {
	noCluster(t)
	kc := kubeconfigFor(t, fakeAPIServer(t, true))

	out, _, err := runCLI(t, "", "status", "--kubeconfig", kc, "--context", "fake")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^NODE\s+KIND\s+NAME\s+MEDIA\s+ALLOCATABLE\s+REQUESTED\s+FREE\s+HEALTH$`, out)
	assert.Regexp(t, `(?m)^node-1\s+VG\s+pool\s+hdd\s+10Gi\s+3Gi\s+7Gi\s+Ready$`, out)

	// KUBECONFIG is honoured as kubectl honours it.
	t.Setenv("KUBECONFIG", kc)
	out, _, err = runCLI(t, "", "status", "--context", "fake", "-o", "json", "--node", "node-1")
	require.NoError(t, err)
	var rep status.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Nodes, 1)
	assert.Equal(t, int64(3<<30), rep.Nodes[0].Resources[0].RequestedBytes)

	_, _, err = runCLI(t, "", "status", "--context", "nope")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--context "nope"`)

	_, _, err = runCLI(t, "", "status", "--context", "fake", "--node", "node-9")
	require.ErrorIs(t, err, status.ErrNoSuchNode)
}

func TestStatusWithoutTheCRD(t *testing.T) {
	noCluster(t)
	kc := kubeconfigFor(t, fakeAPIServer(t, false))
	_, _, err := runCLI(t, "", "status", "--kubeconfig", kc, "--context", "fake")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is Open-Local installed")
}

func TestKubectlPlugin(t *testing.T) {
	assert.True(t, isKubectlPlugin("/usr/local/bin/kubectl-open_local"))
	assert.True(t, isKubectlPlugin("kubectl-open_local.exe"))
	assert.False(t, isKubectlPlugin("/usr/local/bin/open-local"))

	noCluster(t)
	kc := kubeconfigFor(t, fakeAPIServer(t, true))
	root := newKubectlPluginRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"--kubeconfig", kc, "--context", "fake"})
	require.NoError(t, root.Execute())
	assert.Regexp(t, `(?m)^node-1\s+VG\s+pool\s+hdd\s+10Gi\s+3Gi\s+7Gi\s+Ready$`, out.String())
	assert.Equal(t, "kubectl open-local", root.Use)
}
