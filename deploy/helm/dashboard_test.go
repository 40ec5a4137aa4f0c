// Package helm_test checks the Grafana dashboard shipped with the Helm chart
// against the metrics the components really register.
package helm_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/open-local/open-local/agent"
	"github.com/open-local/open-local/controller"
	"github.com/open-local/open-local/csi"
	"github.com/open-local/open-local/extender"
	"github.com/open-local/open-local/extender/cache"
)

var dashboardPath = filepath.Join("open-local", "dashboards", "open-local.json")

// components are the registries of the components, as they register their
// metrics; each must show on the dashboard.
func components() map[string]*prometheus.Registry {
	return map[string]*prometheus.Registry{
		"agent":      agent.NewMetricsRegistry(),
		"controller": controller.NewMetricsRegistry(),
		"csi":        csi.NewMetricsRegistry(),
		"extender":   extender.NewMetrics(cache.New(cache.Options{})).Registry(),
	}
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// registered maps every metric name to its component. Describe lists
// vectors that have no sample yet, which Gather would leave out.
func registered(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for comp, reg := range components() {
		ch := make(chan *prometheus.Desc)
		go func() { reg.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqNameRE.FindStringSubmatch(d.String())
			require.NotNil(t, m, "no fqName in %s", d)
			require.NotContains(t, out, m[1], "%s registered by %s and %s", m[1], out[m[1]], comp)
			out[m[1]] = comp
		}
	}
	return out
}

// PromQL words that are never metric names.
var (
	// Followed by a parenthesised list of label names.
	labelListKeywords = set("by", "without", "on", "ignoring", "group_left", "group_right")
	// Aggregation operators may come before their "by" clause, so they are
	// not always followed by "(".
	promqlKeywords = set("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio",
		"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2")
)

func set(words ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range words {
		m[strings.ToLower(w)] = true
	}
	return m
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// skipBalanced returns the index after the close that matches the open at
// s[i], skipping strings inside.
func skipBalanced(s string, i int, open, close byte) (int, error) {
	depth := 0
	for i < len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return 0, err
			}
			i = j
			continue
		case c == open:
			depth++
		case c == close:
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		}
		i++
	}
	return 0, fmt.Errorf("unbalanced %q in %q", open, s)
}

// skipString returns the index after the string literal starting at s[i].
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string in %q", s)
}

// metricNames returns the metric names a PromQL expression selects: what is
// left once strings, label matchers, ranges, Grafana variables, numbers,
// label lists, functions and keywords are taken out.
func metricNames(expr string) ([]string, error) {
	var out []string
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			j, err := skipBalanced(s, i, '{', '}')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j, err := skipBalanced(s, i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				j, err := skipBalanced(s, i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = j
			}
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// Numbers (0.99, 1e3, 0x1f) and durations (5m) are one run.
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n') {
				k++
			}
			nextParen := k < len(s) && s[k] == '('
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				if nextParen {
					end, err := skipBalanced(s, k, '(', ')')
					if err != nil {
						return nil, err
					}
					j = end
				}
			case promqlKeywords[lower], nextParen:
				// a keyword, an aggregation or a function
			default:
				out = append(out, word)
			}
			i = j
		default:
			i++ // operators, parentheses, commas
		}
	}
	return out, nil
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`up`: {"up"},
		`sum by (instance, vg) (open_local_agent_vg_size_bytes{instance=~"$instance"})`:          {"open_local_agent_vg_size_bytes"},
		`histogram_quantile(0.99, sum by (le, verb) (rate(x_seconds_bucket[$__rate_interval])))`: {"x_seconds_bucket"},
		`1 - sum(a{l="}{"}) / sum without(l) (b)`:                                                {"a", "b"},
		`max(m and on (instance) (leader == 1))`:                                                 {"m", "leader"},
		`rate(a{code!="OK"}[5m] offset 1h) > bool 0`:                                             {"a"},
		`sum(x) by (job) or vector(0)`:                                                           {"x"},
		`a * on(x) group_left(y, z) b`:                                                           {"a", "b"},
		`topk(20, c) unless ${var:raw}`:                                                          {"c"},
		`sum(rate(h_sum[1m])) / sum(rate(h_count[1m:10s]))`:                                      {"h_sum", "h_count"},
		`count_values("v", d) + 1e3 + 0.5 + Inf`:                                                 {"d"},
		`ns:recording_rule:sum`:                                                                  {"ns:recording_rule:sum"},
	} {
		got, err := metricNames(expr)
		require.NoError(t, err, expr)
		assert.Equal(t, want, got, expr)
	}
	for _, bad := range []string{`a{l="x}`, `rate(a[5m)`, `sum(a{b="c"`} {
		_, err := metricNames(bad)
		assert.Error(t, err, bad)
	}
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

var labelValuesRE = regexp.MustCompile(`label_values\(\s*([^,\s)]+)\s*,`)

// checkDashboard lists what is wrong with a dashboard: unknown metrics,
// histogram series used outside histogram_quantile/_sum/_count, components
// without a panel, panels without queries, repeated ids, data sources that
// are not the dashboard's variable.
func checkDashboard(data []byte, names map[string]string) []string {
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.UID == "" || d.Title == "" {
		report("the dashboard needs a uid and a title")
	}
	resolve := func(name string) (string, bool) {
		if c, ok := names[name]; ok {
			return c, true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if c, ok := names[base]; ok {
					return c, true
				}
			}
		}
		return "", false
	}
	panelsOf := map[string]int{}
	ids := map[int]string{}
	for _, p := range flatten(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			report("panel %q has the id %d of panel %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			report("panel %q has no valid gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			report("panel %d has no title", p.ID)
		}
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			report("panel %q does not use the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 {
			report("panel %q has no query", p.Title)
		}
		comps := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				report("panel %q has an empty query", p.Title)
				continue
			}
			ms, err := metricNames(tg.Expr)
			if err != nil {
				report("panel %q: %v", p.Title, err)
				continue
			}
			if len(ms) == 0 {
				report("panel %q: query %q selects no metric", p.Title, tg.Expr)
			}
			for _, m := range ms {
				c, ok := resolve(m)
				if !ok {
					report("panel %q: metric %s is not registered by any component", p.Title, m)
					continue
				}
				if strings.HasSuffix(m, "_bucket") && !strings.Contains(tg.Expr, "histogram_quantile") {
					report("panel %q: histogram buckets %s used outside histogram_quantile", p.Title, m)
				}
				comps[c] = true
			}
		}
		for c := range comps {
			panelsOf[c]++
		}
	}
	for _, v := range d.Templating.List {
		for _, m := range labelValuesRE.FindAllStringSubmatch(string(v.Query), -1) {
			if _, ok := resolve(m[1]); !ok {
				report("variable %q: metric %s is not registered by any component", v.Name, m[1])
			}
		}
	}
	var comps []string
	for c := range components() {
		comps = append(comps, c)
	}
	sort.Strings(comps)
	for _, c := range comps {
		if panelsOf[c] == 0 {
			report("no panel shows a metric of the %s", c)
		}
	}
	return problems
}

// TestDashboardUsesRegisteredMetrics: every metric the dashboard queries is
// one a component registers, and every component has a panel.
func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	names := registered(t)
	for _, want := range []string{"open_local_agent_orphan_volumes", "open_local_extender_decisions_total",
		"open_local_csi_rpc_duration_seconds", "open_local_controller_leader"} {
		require.Contains(t, names, want, "the registries are not the components' own")
	}
	assert.Empty(t, checkDashboard(data, names))
}

// TestDashboardCheckCatchesMistakes: the check above can fail.
func TestDashboardCheckCatchesMistakes(t *testing.T) {
	names := map[string]string{
		"a_total": "agent", "c_seconds": "csi", "x_total": "extender", "k_total": "controller",
	}
	mk := func(exprs ...string) []byte {
		var ps []map[string]any
		for i, e := range exprs {
			ps = append(ps, map[string]any{"id": i + 1, "type": "timeseries", "title": fmt.Sprintf("p%d", i),
				"datasource": map[string]string{"uid": "${datasource}"},
				"gridPos":    map[string]int{"h": 8, "w": 12, "x": 0, "y": i * 8},
				"targets":    []map[string]string{{"expr": e}}})
		}
		b, err := json.Marshal(map[string]any{"uid": "u", "title": "t", "panels": ps})
		require.NoError(t, err)
		return b
	}
	good := []string{"rate(a_total[5m])", "histogram_quantile(0.9, rate(c_seconds_bucket[5m]))", "x_total", "k_total"}
	assert.Empty(t, checkDashboard(mk(good...), names))

	for name, tc := range map[string]struct {
		exprs []string
		want  string
	}{
		"unknown metric":      {append([]string{"rate(a_totl[5m])"}, good[1:]...), "metric a_totl is not registered"},
		"component missing":   {good[:3], "no panel shows a metric of the controller"},
		"buckets raw":         {append([]string{"c_seconds_bucket"}, good...), "used outside histogram_quantile"},
		"suffix on a counter": {append([]string{"a_total_sum2"}, good...), "a_total_sum2 is not registered"},
		"no metric":           {append([]string{"vector(1)"}, good...), "selects no metric"},
	} {
		t.Run(name, func(t *testing.T) {
			problems := checkDashboard(mk(tc.exprs...), names)
			assert.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}
