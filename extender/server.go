// Package extender is Open-Local's kube-scheduler extender: an HTTP server
// answering kube-scheduler's filter and prioritize calls from the storage
// cache (extender/cache), CSI's reservation call, and /cache, /metrics,
// /healthz, /readyz and /version.
package extender

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/open-local/open-local/core"
	"github.com/open-local/open-local/extender/cache"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// DefaultMaxRequestBytes bounds a request body. ExtenderArgs with full Node
// objects (nodeCacheCapable false) for 5,000 nodes take a few megabytes.
const DefaultMaxRequestBytes = 16 << 20

// Config tunes the server.
type Config struct {
	// MaxRequestBytes bounds a request body (0 = DefaultMaxRequestBytes).
	MaxRequestBytes int64
	// Version is what GET /version answers.
	Version string
}

// Server answers the extender's HTTP calls.
type Server struct {
	cache   *cache.Cache
	metrics *Metrics
	cfg     Config
	states  sync.Pool // *requestState
}

// NewServer returns a server over c, counting in m.
func NewServer(c *cache.Cache, m *Metrics, cfg Config) *Server {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	s := &Server{cache: c, metrics: m, cfg: cfg}
	s.states.New = func() any { return &requestState{} }
	return s
}

// requestState holds one request's buffers; states are pooled so that a
// filter over thousands of nodes allocates nothing per node.
type requestState struct {
	body    []byte
	names   []string
	fromObj []string // node names taken from ExtenderArgs.Nodes
	results []core.NodeResult
	filter  filterResponse
	scores  []hostScore
	out     []byte
}

// Handler routes the extender's paths.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /scheduler/predicates", s.predicates)
	mux.HandleFunc("POST /scheduler/priorities", s.priorities)
	mux.HandleFunc("POST /apis/scheduling/{namespace}/persistentvolumeclaims/{name}", s.reserve)
	mux.HandleFunc("GET /cache", s.cacheView)
	mux.HandleFunc("POST /cache", s.cacheView) // open-local served it on POST
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry(), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, s.cfg.Version) })
	return recoverJSON(mux)
}

// recoverJSON turns a panic into a 500 with a JSON error, so that a bug
// costs one request and not the process.
func recoverJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			klog.ErrorS(fmt.Errorf("%v", v), "Extender: handler panicked", "method", r.Method, "path", r.URL.Path, "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("internal error: %v", v))
		}()
		next.ServeHTTP(w, r)
	})
}

type errorBody struct {
	// Error is also ExtenderFilterResult's Error field (JSON keys match
	// case-insensitively), so kube-scheduler reads the message either way.
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	writeBytes(w, code, "application/json", append(b, '\n'))
}

func writeText(w http.ResponseWriter, code int, s string) {
	writeBytes(w, code, "text/plain; charset=utf-8", []byte(s+"\n"))
}

func writeBytes(w http.ResponseWriter, code int, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// readBody reads the body into st.body, refusing more than the limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, st *requestState) error {
	limit := s.cfg.MaxRequestBytes
	if r.ContentLength > limit {
		return fmt.Errorf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	buf := st.body[:0]
	if r.ContentLength > 0 && int64(cap(buf)) < r.ContentLength {
		buf = make([]byte, 0, r.ContentLength)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			st.body = buf
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return fmt.Errorf("request body exceeds the limit of %d bytes", limit)
			}
			return fmt.Errorf("reading the request body: %w", err)
		}
	}
	st.body = buf
	return nil
}

func (s *Server) getState() *requestState   { return s.states.Get().(*requestState) }
func (s *Server) putState(st *requestState) { s.states.Put(st) }

// decodeRequest reads and decodes a filter or prioritize body.
func (s *Server) decodeRequest(w http.ResponseWriter, r *http.Request, st *requestState) (extenderv1.ExtenderArgs, []string, int, error) {
	if !s.cache.Synced() {
		return extenderv1.ExtenderArgs{}, nil, http.StatusServiceUnavailable, errors.New("the storage cache is not synced yet")
	}
	if err := s.readBody(w, r, st); err != nil {
		return extenderv1.ExtenderArgs{}, nil, http.StatusBadRequest, err
	}
	args, names, err := decodeArgs(st.body, st.names)
	st.names = names
	if err != nil {
		return args, nil, http.StatusBadRequest, fmt.Errorf("decoding ExtenderArgs: %w", err)
	}
	if args.Pod == nil {
		return args, nil, http.StatusBadRequest, errors.New("ExtenderArgs.Pod is required")
	}
	switch {
	case args.NodeNames != nil:
		return args, *args.NodeNames, 0, nil
	case args.Nodes != nil:
		st.fromObj = st.fromObj[:0]
		for i := range args.Nodes.Items {
			st.fromObj = append(st.fromObj, args.Nodes.Items[i].Name)
		}
		return args, st.fromObj, 0, nil
	}
	return args, nil, 0, nil
}

func (s *Server) predicates(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := s.getState()
	defer s.putState(st)
	args, nodes, code, err := s.decodeRequest(w, r, st)
	if err != nil {
		s.refuse(w, verbPredicates, code, err, start)
		return
	}
	results, o := s.cache.Evaluate(args.Pod, nodes, st.results[:0])
	st.results = results
	f := &st.filter
	f.reset()
	result := resultOK
	switch {
	case !o.Ours:
		f.passed = append(f.passed, nodes...)
		result = resultPassThrough
	case o.Err != nil:
		msg := o.Err.Error()
		for _, n := range nodes {
			f.unresolvable = append(f.unresolvable, failedNode{n, msg})
		}
	default:
		for i := range results {
			if results[i].Fits {
				f.passed = append(f.passed, results[i].Node)
			} else {
				// Preempting pods frees no PVC storage: the failure is
				// unresolvable, so kube-scheduler evicts no one for it.
				f.unresolvable = append(f.unresolvable, failedNode{results[i].Node, results[i].Reason.Reason})
			}
		}
	}
	if len(nodes) > 0 && len(f.passed) == 0 {
		result = resultNoFit
	}
	if args.NodeNames == nil && args.Nodes != nil {
		s.writeFilterNodes(w, args.Nodes, f)
	} else {
		st.out = f.appendTo(st.out[:0])
		writeBytes(w, http.StatusOK, "application/json", st.out)
	}
	s.metrics.observe(verbPredicates, result, start)
	if logger := klog.V(4); logger.Enabled() {
		logger.InfoS("Filter", "pod", klog.KObj(args.Pod), "nodes", len(nodes), "passed", len(f.passed), "openLocalVolumes", o.Volumes, "err", o.Err, "duration", time.Since(start))
	}
}

// writeFilterNodes answers a call that sent whole Node objects
// (nodeCacheCapable false) with the Node objects that passed.
func (s *Server) writeFilterNodes(w http.ResponseWriter, in *corev1.NodeList, f *filterResponse) {
	passed := make(map[string]bool, len(f.passed))
	for _, n := range f.passed {
		passed[n] = true
	}
	out := extenderv1.ExtenderFilterResult{
		Nodes:                      &corev1.NodeList{},
		FailedNodes:                extenderv1.FailedNodesMap{},
		FailedAndUnresolvableNodes: extenderv1.FailedNodesMap{},
	}
	for i := range in.Items {
		if passed[in.Items[i].Name] {
			out.Nodes.Items = append(out.Nodes.Items, in.Items[i])
		}
	}
	for _, x := range f.unresolvable {
		out.FailedAndUnresolvableNodes[x.node] = x.reason
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) priorities(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := s.getState()
	defer s.putState(st)
	args, nodes, code, err := s.decodeRequest(w, r, st)
	if err != nil {
		s.refuse(w, verbPriorities, code, err, start)
		return
	}
	results, o := s.cache.Evaluate(args.Pod, nodes, st.results[:0])
	st.results = results
	st.scores = st.scores[:0]
	result := resultOK
	if !o.Ours || o.Err != nil {
		// Every node alike: the extender has no preference.
		for _, n := range nodes {
			st.scores = append(st.scores, hostScore{host: n})
		}
		if !o.Ours {
			result = resultPassThrough
		}
	} else {
		for i := range results {
			var score int64
			if results[i].Fits {
				score = scaleScore(results[i].Score)
			}
			st.scores = append(st.scores, hostScore{host: results[i].Node, score: score})
		}
	}
	st.out = appendPriorities(st.out[:0], st.scores)
	writeBytes(w, http.StatusOK, "application/json", st.out)
	s.metrics.observe(verbPriorities, result, start)
	if logger := klog.V(4); logger.Enabled() {
		logger.InfoS("Prioritize", "pod", klog.KObj(args.Pod), "nodes", len(nodes), "openLocalVolumes", o.Volumes, "duration", time.Since(start))
	}
}

// scaleScore maps core's 0..100 onto the extender scale 0..10, rounding to
// the nearest step (kube-scheduler multiplies it by the extender's weight).
func scaleScore(score int) int64 {
	s := (int64(score)*extenderv1.MaxExtenderPriority + core.MaxScore/2) / core.MaxScore
	return min(max(s, extenderv1.MinExtenderPriority), extenderv1.MaxExtenderPriority)
}

func (s *Server) refuse(w http.ResponseWriter, verb string, code int, err error, start time.Time) {
	result := resultInvalid
	if code >= 500 {
		result = resultError
	}
	writeError(w, code, err.Error())
	s.metrics.observe(verb, result, start)
	klog.V(2).InfoS("Extender: request refused", "verb", verb, "code", code, "err", err)
}

func (s *Server) reserve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !s.cache.Synced() {
		s.refuse(w, verbReserve, http.StatusServiceUnavailable, errors.New("the storage cache is not synced yet"), start)
		return
	}
	q := r.URL.Query()
	req := cache.ReserveRequest{
		Namespace:  r.PathValue("namespace"),
		Name:       r.PathValue("name"),
		Node:       q.Get("nodeName"),
		VolumeType: q.Get("volumeType"),
		VGName:     q.Get("vgName"),
	}
	if req.Node == "" {
		s.refuse(w, verbReserve, http.StatusBadRequest, errors.New("query parameter nodeName is required"), start)
		return
	}
	b, err := s.cache.Reserve(req)
	if err != nil {
		code, result := http.StatusInternalServerError, resultError
		switch {
		case errors.Is(err, cache.ErrBadRequest):
			code, result = http.StatusBadRequest, resultInvalid
		case errors.Is(err, cache.ErrNotFound):
			code, result = http.StatusNotFound, resultNotFound
		case errors.Is(err, cache.ErrInsufficient):
			code, result = http.StatusConflict, resultNoFit
		case errors.Is(err, cache.ErrConflict):
			code, result = http.StatusConflict, resultConflict
		}
		body := errorBody{Error: err.Error()}
		var u *core.Unfit
		if errors.As(err, &u) {
			body.Reason = u.Reason
		}
		writeJSON(w, code, body)
		s.metrics.observe(verbReserve, result, start)
		klog.V(2).InfoS("Reservation refused", "pvc", req.Namespace+"/"+req.Name, "node", req.Node, "code", code, "err", err)
		return
	}
	writeJSON(w, http.StatusOK, b)
	s.metrics.observe(verbReserve, resultOK, start)
	klog.V(2).InfoS("Reserved", "pvc", b.PersistentVolumeClaim, "node", b.Node, "vg", b.VGName, "device", b.Device, "mountPoint", b.Disk)
}

func (s *Server) cacheView(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("nodeName")
	v, ok := s.cache.View(node)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %q has no NodeLocalStorage", node))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.cache.Synced() {
		writeText(w, http.StatusServiceUnavailable, "storage cache not synced")
		return
	}
	writeText(w, http.StatusOK, "ok")
}
