// The SDK marks its classic dashboard type deprecated for dashboardv2,
// Grafana 12's new schema; the classic JSON is what every Grafana imports,
// so the kit ships it and reads it with the classic type.
//lint:file-ignore SA1019 dashboard.Dashboard is the classic schema the kit ships

package examples_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/internal/testserve"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server"
)

// The monitoring kit's files (examples/monitoring).
var (
	rulesFile     = filepath.Join("monitoring", "tollgate.rules.yml")
	rulesTestFile = filepath.Join("monitoring", "tollgate.rules_test.yml")
	dashboardFile = filepath.Join("monitoring", "dashboard.json")
)

// TestMonitoringRules checks the rules with Prometheus's own promtool and
// runs their unit tests (each alert firing and not firing).
func TestMonitoringRules(t *testing.T) {
	promtool := toolBinary(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(rulesFile)},
		{"test", "rules", filepath.Base(rulesTestFile)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(rulesFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestMonitoringDashboard decodes the dashboard with the Grafana Foundation
// SDK's strict decoder (an unknown or mistyped field is an error), and
// checks that encoding what it decoded gives the file back: the SDK
// decodes a panel's fieldConfig leniently, and the comparison catches what
// that lets through. Every query is a Prometheus one, on the data source
// the dashboard's variable picks.
func TestMonitoringDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.Uid == nil || d.Title == nil {
		t.Error("dashboard.json has no uid or no title")
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if v.Type == dashboard.VariableTypeDatasource &&
			(v.Name != "datasource" || v.Query == nil || v.Query.String == nil || *v.Query.String != "prometheus") {
			t.Errorf("data source variable %q: want name datasource, query prometheus", v.Name)
		}
	}
	if !slices.Contains(vars, "datasource") {
		t.Errorf("variables %v: no datasource variable", vars)
	}
	targets := 0
	for _, p := range dashboardPanels(d) {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", panelTitle(p))
		}
		for i, q := range p.Targets {
			targets++
			pq, ok := q.(*prometheus.Dataquery)
			if !ok {
				t.Errorf("panel %q target %d: a %T, not a Prometheus query (its datasource type must be prometheus)", panelTitle(p), i, q)
				continue
			}
			if pq.Datasource == nil || pq.Datasource.Uid == nil || *pq.Datasource.Uid != "${datasource}" {
				t.Errorf("panel %q target %d: not on the data source variable ${datasource}", panelTitle(p), i)
			}
			if pq.RefId == nil || *pq.RefId == "" {
				t.Errorf("panel %q target %d: no refId", panelTitle(p), i)
			}
		}
	}
	if targets == 0 {
		t.Error("dashboard.json has no queries")
	}
}

// loadDashboard decodes dashboard.json strictly and fails the test unless
// encoding the result gives the same JSON.
//
// The SDK's strict decoder (v0.0.22) reports every unknown, missing or
// mistyped field, panels and queries included, but returns its empty error
// list as a non-nil error, and where it decodes one of several types (a
// panel or a row, a query, panel options) it takes that for a failure and
// drops the value. So it only checks here, and the plain decoder, which
// keeps every value, makes the dashboard returned.
func loadDashboard(t *testing.T) *dashboard.Dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	// The SDK finds panel options and queries by plugin: register the
	// built-in ones (timeseries, stat, prometheus, ...).
	plugins.RegisterDefaultPlugins()
	var strict dashboard.Dashboard
	err = strict.UnmarshalJSONStrict(data)
	if build := (cog.BuildErrors)(nil); errors.As(err, &build) && len(build) == 0 {
		err = nil
	}
	if err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	again, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(again, &got); err != nil {
		t.Fatal(err)
	}
	if diff := jsonDiff(want, got, "$"); diff != "" {
		t.Fatalf("%s changes when decoded and encoded again (a field the SDK does not keep, or a default written differently):\n%s",
			dashboardFile, diff)
	}
	return &d
}

// jsonDiff returns the places, as JSON paths, where decoded JSON values a
// and b differ, each with the two values shortened.
func jsonDiff(a, b any, path string) string {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok {
			break
		}
		var out []string
		for k, av := range a {
			if bv, ok := bm[k]; !ok {
				out = append(out, path+"."+k+": dropped")
			} else if d := jsonDiff(av, bv, path+"."+k); d != "" {
				out = append(out, d)
			}
		}
		for k := range bm {
			if _, ok := a[k]; !ok {
				out = append(out, path+"."+k+": added")
			}
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			break
		}
		var out []string
		for i := range a {
			if d := jsonDiff(a[i], bs[i], fmt.Sprintf("%s[%d]", path, i)); d != "" {
				out = append(out, d)
			}
		}
		return strings.Join(out, "\n")
	}
	if reflect.DeepEqual(a, b) {
		return ""
	}
	short := func(v any) string {
		s, _ := json.Marshal(v)
		if len(s) > 80 {
			return string(s[:77]) + "..."
		}
		return string(s)
	}
	return fmt.Sprintf("%s: %s, then %s", path, short(a), short(b))
}

// dashboardPanels returns the dashboard's panels, those in rows included;
// a row is a panel of type row.
func dashboardPanels(d *dashboard.Dashboard) []dashboard.Panel {
	var out []dashboard.Panel
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			out = append(out, *p.Panel)
		case p.RowPanel != nil:
			out = append(out, dashboard.Panel{Type: "row", Title: p.RowPanel.Title})
			out = append(out, p.RowPanel.Panels...)
		}
	}
	return out
}

func panelTitle(p dashboard.Panel) string {
	if p.Title == nil {
		return ""
	}
	return *p.Title
}

// TestMonitoringMetricsExist checks that every metric the rules and the
// dashboard name is one a tollgate server exports: it serves the payments
// policy, makes decisions that create the labelled series (allowed with a
// quota, denied), scrapes /metrics and looks up each name that the PromQL
// parser finds in the queries. Names that the rules record are theirs, not
// the server's.
func TestMonitoringMetricsExist(t *testing.T) {
	exported := scrapeNames(t)
	recorded := map[string]bool{}
	uses := map[string][]string{} // metric name -> where it is used
	for _, r := range loadRules(t) {
		where := "rule " + r.Record + r.Alert
		if r.Record != "" {
			recorded[r.Record] = true
		}
		for _, name := range queryMetrics(t, where, r.Expr) {
			uses[name] = append(uses[name], where)
		}
	}
	d := loadDashboard(t)
	for _, p := range dashboardPanels(d) {
		for _, q := range p.Targets {
			if pq, ok := q.(*prometheus.Dataquery); ok && pq.RefId != nil {
				where := fmt.Sprintf("dashboard panel %q query %s", panelTitle(p), *pq.RefId)
				for _, name := range queryMetrics(t, where, pq.Expr) {
					uses[name] = append(uses[name], where)
				}
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != dashboard.VariableTypeQuery {
			continue
		}
		where := fmt.Sprintf("dashboard variable %q", v.Name)
		name := variableMetric(t, where, v.Query)
		uses[name] = append(uses[name], where)
	}
	if len(uses) == 0 {
		t.Fatal("the rules and the dashboard name no metric")
	}
	for _, name := range slices.Sorted(maps.Keys(uses)) {
		if !exported[name] && !recorded[name] {
			t.Errorf("%s is neither on tollgate's /metrics nor recorded by a rule; used in:\n  %s",
				name, strings.Join(uses[name], "\n  "))
		}
	}
}

// scrapeNames serves the payments policy (its trial quota in shadow mode),
// makes a few decisions and
// returns the names of the series on /metrics (a histogram's _bucket, _sum
// and _count). The clock is t0, before the pro key expires.
func scrapeNames(t *testing.T) map[string]bool {
	t.Helper()
	// The trial plan's quota is a shadow one that denies everything, so
	// that its request makes a shadow denial.
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(paymentsPolicy(t, "quota: {limit: 10, period: day}", "quota: {limit: 0, period: day, mode: shadow}",
		"    alerts: {thresholds: [80], sinks: [ops]}\n", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testserve.Start(t, server.Config{PolicyFile: file,
		GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: "memory:", Now: testclock.New(t0).Now})
	for _, r := range []struct {
		key  string
		want policy.Verdict
	}{
		{"tg_demo_pro_00000000000000001", policy.Allow}, // a plan with a quota
		{"tg_demo_trial_000000000000001", policy.Allow}, // a shadow denial
		{"", policy.Deny}, // key:missing
	} {
		req := &policy.Request{Method: "POST", Path: "/partners/p1/transactions", Host: "api.example.com",
			Headers: map[string]string{}, Peer: "192.0.2.10"}
		if r.key != "" {
			req.Headers["x-api-key"] = r.key
		}
		if d := s.Decide(context.Background(), req); d.Verdict != r.want {
			t.Fatalf("key %q: got %v (%s), want %v", r.key, d.Verdict, d.Reason, r.want)
		}
	}
	resp, err := http.Get("http://" + s.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	names := map[string]bool{}
	for name, f := range families {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"] = true
			names[name+"_sum"] = true
			names[name+"_count"] = true
		case dto.MetricType_SUMMARY:
			names[name] = true
			names[name+"_sum"] = true
			names[name+"_count"] = true
		default:
			names[name] = true
		}
	}
	return names
}

// rule is one rule of a Prometheus rule file, as far as these tests read
// it; decoding is strict, so a field they do not know fails them.
type rule struct {
	Record        string            `json:"record"`
	Alert         string            `json:"alert"`
	Expr          string            `json:"expr"`
	For           string            `json:"for"`
	KeepFiringFor string            `json:"keep_firing_for"`
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval"`
			Rules    []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []rule
	for _, g := range file.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return out
}

// grafanaInterval matches Grafana's interval variables ($__rate_interval,
// $__interval, $__range), which a query may use where PromQL takes a
// duration; other variables ($job) only appear in label values.
var grafanaInterval = regexp.MustCompile(`\$__[a-z_]+`)

// queryMetrics returns the metric names of a PromQL query's selectors; a
// query that does not parse, or selects series by anything but a name,
// fails the test.
func queryMetrics(t *testing.T, where, query string) []string {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaInterval.ReplaceAllString(query, "5m"))
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	var names []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("%s: %s selects no metric by name", where, vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	if len(names) == 0 {
		t.Errorf("%s: %q names no metric", where, query)
	}
	return names
}

// labelValues matches the query of a Grafana variable that lists a label's
// values on a metric's series: label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// variableMetric returns the metric whose series a query variable lists.
func variableMetric(t *testing.T, where string, q *dashboard.StringOrMap) string {
	t.Helper()
	var query string
	switch {
	case q == nil:
	case q.String != nil:
		query = *q.String
	default:
		query, _ = q.Map["query"].(string)
	}
	m := labelValues.FindStringSubmatch(query)
	if m == nil {
		t.Fatalf("%s: query %q is not label_values(metric, label)", where, query)
	}
	names := queryMetrics(t, where, m[1])
	if len(names) != 1 {
		t.Fatalf("%s: %q names %d metrics, want 1", where, m[1], len(names))
	}
	return names[0]
}

// TestReadmeListsMetrics: every tollgate_* series on /metrics is in the
// README's table of metrics (SPEC §8: the names are documented there).
func TestReadmeListsMetrics(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The names in the first cell of the table's rows.
	listed := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(line, "| `tollgate_") {
			for _, name := range strings.Split(cells[1], ",") {
				listed[strings.Trim(strings.TrimSpace(name), "`")] = true
			}
		}
	}
	for name := range scrapeNames(t) {
		if !strings.HasPrefix(name, "tollgate_") {
			continue
		}
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := strings.CutSuffix(name, suffix); ok && listed[f] {
				family = f
			}
		}
		if !listed[family] {
			t.Errorf("%s is on /metrics but not in README.md's table of metrics", family)
		}
	}
}
