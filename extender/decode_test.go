package extender

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	fx "github.com/open-local/open-local/extender/fixture"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// argsSeeds are bodies the decoder must agree with encoding/json on.
func argsSeeds(t testing.TB) [][]byte {
	names := []string{"node-1", "node-2", "ünïcode", "quote\"d", "tab\there", "\u2028", "a<b>&c"}
	pod := fx.WithInline(fx.Pod("ns", "p", "a", "b"), "tmp", "pool", "1Gi")
	full, err := json.Marshal(extenderv1.ExtenderArgs{Pod: pod, NodeNames: &names})
	require.NoError(t, err)
	nodes, err := json.Marshal(extenderv1.ExtenderArgs{Pod: pod, Nodes: &corev1.NodeList{Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}}}})
	require.NoError(t, err)
	out := [][]byte{full, nodes}
	for _, s := range []string{
		`null`, `{}`, ` {"Pod":null} `, `{"pod":{"metadata":{"name":"x"}},"nodenames":["a","b"]}`,
		`{"NodeNames":["a","b","c"],"NodeNames":["x",null]}`, `{"NodeNames":["a","b","c"],"NodeNames":[],"NodeNames":[null,null]}`,
		`{"NodeNames":["a"],"NodeNames":null,"NodeNames":[null,"z"]}`, `{"NodeNames":[]}`, `{"NodeNames":null}`,
		`{"Pod":{"metadata":{"name":"a"}},"Pod":{"spec":{"nodeName":"n"}}}`, `{"Pod":{"metadata":{"name":"a"}},"Pod":null}`,
		`{"NODENAMES":["x"]}`, "{\"NodeNameſ\":[\"x\"]}", `{"Node\u0053ames":["esc\u0041ped","\ud83d\ude00","\ud800"]}`,
		`{"NodeNames":["a"],"Extra":{"deep":[1,2.5e3,-0,true,false,null,"s"]}}`, `{"NodeNames":[1]}`, `{"NodeNames":"a"}`,
		`{"NodeNames":{}}`, `{"Pod":[]}`, `{"Pod":1}`, `[]`, `"x"`, `1`, ``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`,
		`{"NodeNames":["a",]}`, `{"NodeNames":["a" "b"]}`, `{"a":01}`, `{"a":1.}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`,
		`{"a":"\x"}`, "{\"a\":\"\x01\"}", "{\"NodeNames\":[\"\xff\xfe\"]}", `{"a":"\u12"}`, `{} {}`, `{"a":1}x`,
		"\xef\xbb\xbf{}", `{"Nodes":{"items":[{"metadata":{"name":"n1"}}]},"Nodes":{"items":[]}}`,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`{"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
		`{"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// checkDecodeAgrees fails when decodeArgs and encoding/json disagree on data.
func checkDecodeAgrees(t *testing.T, data []byte, dirty []string) {
	var want extenderv1.ExtenderArgs
	werr := json.Unmarshal(data, &want)
	for _, buf := range [][]string{nil, dirty} {
		got, _, gerr := decodeArgs(data, buf)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("input %q: encoding/json error %v, decodeArgs error %v", data, werr, gerr)
		}
		if werr == nil && !reflect.DeepEqual(want, got) {
			t.Fatalf("input %q: encoding/json gives %#v, decodeArgs %#v", data, want, got)
		}
	}
}

func TestDecodeArgsAgreesWithEncodingJSON(t *testing.T) {
	dirty := []string{"stale-1", "stale-2", "stale-3", "stale-4", "stale-5", "stale-6", "stale-7", "stale-8"}
	for _, seed := range argsSeeds(t) {
		checkDecodeAgrees(t, seed, append([]string(nil), dirty...))
	}
}

func TestDecodeArgsSharesOneStringForPlainNames(t *testing.T) {
	names := make([]string, 5000)
	for i := range names {
		names[i] = fmt.Sprintf("node-%05d", i)
	}
	data, err := json.Marshal(extenderv1.ExtenderArgs{Pod: fx.Pod("ns", "p"), NodeNames: &names})
	require.NoError(t, err)
	buf := make([]string, 0, 5000)
	allocs := testing.AllocsPerRun(20, func() {
		_, _, err := decodeArgs(data, buf)
		if err != nil {
			t.Fatal(err)
		}
	})
	assert.Less(t, allocs, 200.0, "the names must not cost an allocation each")
	args, _, err := decodeArgs(data, buf)
	require.NoError(t, err)
	assert.Equal(t, names, *args.NodeNames)
}

func TestAppendJSONStringRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\`, "ctl\x00\x1f\n\r\t", "ünï", "\u2028\u2029", "\xff bad \xc3", "<&>", "😀"} {
		b := appendJSONString(nil, s)
		require.True(t, json.Valid(b), "%q -> %s", s, b)
		var back string
		require.NoError(t, json.Unmarshal(b, &back))
		// encoding/json's own round trip is the reference (invalid UTF-8 becomes U+FFFD).
		enc, err := json.Marshal(s)
		require.NoError(t, err)
		var want string
		require.NoError(t, json.Unmarshal(enc, &want))
		if utf8.ValidString(s) {
			require.Equal(t, s, want)
		}
		assert.Equal(t, want, back, "%q", s)
	}
}

func TestFilterResponseDecodesAsExtenderFilterResult(t *testing.T) {
	r := filterResponse{passed: []string{"a", "b\"c"}, unresolvable: []failedNode{{"x", "Insufficient LVM storage"}}, failed: []failedNode{{"y", "why"}}}
	var got extenderv1.ExtenderFilterResult
	require.NoError(t, json.Unmarshal(r.appendTo(nil), &got))
	assert.Equal(t, extenderv1.ExtenderFilterResult{
		NodeNames:                  &[]string{"a", "b\"c"},
		FailedNodes:                extenderv1.FailedNodesMap{"y": "why"},
		FailedAndUnresolvableNodes: extenderv1.FailedNodesMap{"x": "Insufficient LVM storage"},
	}, got)
	var prio extenderv1.HostPriorityList
	require.NoError(t, json.Unmarshal(appendPriorities(nil, []hostScore{{"a", 3}, {"b", 10}}), &prio))
	assert.Equal(t, extenderv1.HostPriorityList{{Host: "a", Score: 3}, {Host: "b", Score: 10}}, prio)
	require.NoError(t, json.Unmarshal(appendPriorities(nil, nil), &prio))
	assert.Empty(t, prio)
}

// fuzzHandler is a server over a small cluster for the fuzz targets.
func fuzzHandler(t testing.TB) http.Handler {
	c := cache.New(cache.Options{Strategy: core.Binpack})
	storageClasses(c)
	c.UpsertNLS(fx.NLS("node-1", []fx.VG{{Name: "a", Bytes: 100 * gi}}, []fx.Device{{Name: "/dev/vdc", Bytes: 100 * gi, Media: "ssd"}}, nil))
	c.UpsertPVC(fx.PVC("ns", "a", "lvm", 10*gi, 1))
	c.UpsertPVC(fx.PVC("ns", "b", "ssd", 10*gi, 1))
	c.UpsertPod(fx.Pod("ns", "p", "a", "b"))
	c.MarkSynced()
	return NewServer(c, NewMetrics(c), Config{MaxRequestBytes: 1 << 20}).Handler()
}

func serveFuzz(t *testing.T, h http.Handler, req *http.Request, allowed ...int) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, code := range allowed {
		if rec.Code == code {
			if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: invalid JSON answer %q", req.Method, req.URL, rec.Body.Bytes())
			}
			return
		}
	}
	t.Fatalf("%s %s: status %d (allowed %v): %s", req.Method, req.URL, rec.Code, allowed, rec.Body.Bytes())
}

func FuzzPredicatesRequest(f *testing.F) {
	for _, s := range argsSeeds(f) {
		f.Add(s)
	}
	h := fuzzHandler(f)
	dirty := []string{"stale-1", "stale-2", "stale-3"}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeAgrees(t, data, append([]string(nil), dirty...))
		serveFuzz(t, h, httptest.NewRequest(http.MethodPost, "/scheduler/predicates", bytes.NewReader(data)), http.StatusOK, http.StatusBadRequest)
	})
}

func FuzzPrioritiesRequest(f *testing.F) {
	for _, s := range argsSeeds(f) {
		f.Add(s)
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scheduler/priorities", bytes.NewReader(data)))
		switch rec.Code {
		case http.StatusOK:
			var list extenderv1.HostPriorityList
			if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
				t.Fatalf("answer is not a HostPriorityList: %v: %s", err, rec.Body.Bytes())
			}
			for _, hp := range list {
				if hp.Score < extenderv1.MinExtenderPriority || hp.Score > extenderv1.MaxExtenderPriority {
					t.Fatalf("score %d out of range", hp.Score)
				}
			}
		case http.StatusBadRequest:
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("error is not JSON: %s", rec.Body.Bytes())
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}

func FuzzReservationPath(f *testing.F) {
	for _, s := range [][3]string{
		{"ns", "a", "nodeName=node-1"}, {"ns", "b", "nodeName=node-1&volumeType=Device"}, {"ns", "a", ""},
		{"ns", "a", "nodeName="}, {"ns", "a", "nodeName=node-1&vgName=a&volumeType=LVM"}, {"ns", "missing", "nodeName=node-1"},
		{"ns", "a", "nodeName=other"}, {"", "", "nodeName=%zz"}, {"../..", "a%2Fb", "nodeName=node-1;x"},
		{"ns", "a", "nodeName=node-1&nodeName=node-2"}, {"ns", "a", "vgName=\x00"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, ns, name, query string) {
		h := fuzzHandler(t)
		target := "/apis/scheduling/" + ns + "/persistentvolumeclaims/" + name + "?" + query
		req, err := http.NewRequest(http.MethodPost, "http://extender"+target, nil)
		if err != nil {
			t.Skip("not a URL a client can send")
		}
		serveFuzz(t, h, req, http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusMovedPermanently, http.StatusTemporaryRedirect)
	})
}
