package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/open-local/open-local/extender"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

func BenchmarkTmpHandler(b *testing.B) {
	c, names := extenderCluster(b)
	h := extender.NewServer(c, extender.NewMetrics(c), extender.Config{}).Handler()
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i], _ = json.Marshal(extenderv1.ExtenderArgs{Pod: benchPod(fmt.Sprint("p", i)), NodeNames: &names})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scheduler/predicates", bytes.NewReader(bodies[i%64])))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
