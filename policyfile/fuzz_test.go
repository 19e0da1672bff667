package policyfile

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// FuzzCompile feeds YAML to Parse: it must never panic, and a file that
// compiles must compile again to a policy that behaves the same.
func FuzzCompile(f *testing.F) {
	// The reference scenario and the product specification's example: every section.
	for _, file := range []string{"../examples/payments/policy.yaml", "testdata/spec_example.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Every golden bad file: each error path of the compiler.
	bad, _ := filepath.Glob("testdata/bad_*.yaml")
	for _, file := range bad {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// The smallest valid policy.
	f.Add([]byte("version: 1\n"))
	// Empty input and a bare scalar document.
	f.Add([]byte(""))
	f.Add([]byte("1"))
	// Non-string keys (a map[any]any tree).
	f.Add([]byte("version: 1\n7: x\n? [a]\n: b\n"))
	// Numbers at the edges of int64, uint64 and float64.
	f.Add([]byte("version: 1\naccount: {throttle: {rate: 9223372036854775808, burst: -9223372036854775809}}\n"))
	f.Add([]byte("version: 1\naccount: {throttle: {rate: .nan, burst: 1e400}}\n"))
	// Anchors, aliases and merge keys.
	f.Add([]byte("version: 1\naccount: {throttle: &t {rate: 1, burst: 1}}\napis: {a: {stages: {s: {throttle: *t, route_defaults: {throttle: {<<: *t}}}}}}\n"))
	// A timestamp where a string is wanted, and a string where a timestamp is.
	f.Add([]byte("version: 1\ndefault_stage: 2026-01-01\nusage_plans: {p: {}}\napi_keys: [{id: k, plans: [p], hash: \"sha256:" +
		strings.Repeat("0", 64) + "\", expires: \"soon\"}]\n"))
	// Routes and scopes that exercise the route table: params, greedy, ANY.
	f.Add([]byte("version: 1\napis: {a: {stages: {s: {routes: [{match: \"ANY /{p+}\"}, {match: \"GET /x/{id}\"}, {match: \"GET /x/y\"}]}}}}\n" +
		"waf: {rules: [{name: r, rate_based: {limit: 1, window: 1s, key: \"header:X-Client\"}, scope: {routes: [\"ANY /{p+}\"]}, action: count}]}\n"))
	// Null sections and a null throttle.
	f.Add([]byte("version: 1\napis:\nusage_plans:\napi_keys:\nwaf:\naccount: {throttle: }\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		p1, err1 := Parse("fuzz.yaml", data)
		p2, err2 := Parse("fuzz.yaml", data)
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("two parses differ: %v / %v", err1, err2)
		}
		if err1 != nil {
			if p1 != nil {
				t.Fatal("got a policy with an error")
			}
			return
		}
		if s1, s2 := summary(p1), summary(p2); s1 != s2 {
			t.Fatalf("two parses differ:\n%s\n%s", s1, s2)
		}
	})
}

// summary describes what a policy does, through its exported API and the
// decisions (and state operations) of a few requests.
func summary(p *policy.Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "header %s mode %d explain %v stages %v plans %v keys %v\n",
		p.KeyHeader(), p.Headers, p.Explain, p.StageNames(), p.PlanNames(), p.KeyIDs())
	for _, name := range p.PlanNames() {
		pl := p.Plan(name)
		th, tok := pl.Throttle()
		q, qok := pl.Quota()
		loc := ""
		if qok {
			loc = q.Location.String()
			q.Location = nil
		}
		fmt.Fprintf(&b, "plan %s %v %v %+v %v %s %v\n", name, th, tok, q, qok, loc, pl.StageNames())
	}
	for _, id := range p.KeyIDs() {
		fmt.Fprintf(&b, "key %+v\n", *p.KeyByID(id))
	}
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for _, stage := range append(p.StageNames(), "") {
		for _, r := range []policy.Request{
			{Method: "GET", Path: "/", Peer: "198.51.100.7"},
			{Method: "POST", Path: "/transactions", Peer: "203.0.113.9"},
			{Method: "POST", Path: "/transactions", Peer: "198.51.100.7"},
			{Method: "GET", Path: "/status", Peer: "2001:db8:bad::1", Host: "api.example.com"},
			{Method: "POST", Path: "/partners/p1/transactions", Peer: "198.51.100.7",
				Headers: map[string]string{p.KeyHeader(): "tg_demo_pro_00000000000000001", "x-client": "c"}},
		} {
			r.Stage = stage
			var st recorder
			d, err := p.Evaluate(at, &r, &st, nil)
			fmt.Fprintf(&b, "%s %s %s: %+v %v %s\n", stage, r.Method, r.Path, d, err, st.String())
		}
	}
	return b.String()
}

// recorder is a State that admits everything and records what it was asked.
type recorder struct{ batches []string }

func (s *recorder) Apply(now time.Time, b *policy.Batch) error {
	b.Blocked = -1
	for i := range b.Hits {
		b.Hits[i].Count = 1
	}
	for i := range b.Ops {
		b.Ops[i].OK = true
	}
	b.Taken = true
	s.batches = append(s.batches, fmt.Sprintf("%+v %+v", b.Hits, b.Ops))
	return nil
}

func (s *recorder) Release(policy.Key, string) error { return nil }

func (s *recorder) String() string { return strings.Join(s.batches, "; ") }

var _ policy.State = (*recorder)(nil)

// TestSummaryTellsPoliciesApart guards the fuzz target's comparison: two
// policies that differ only in a limit must not look the same.
func TestSummaryTellsPoliciesApart(t *testing.T) {
	data, err := os.ReadFile("../examples/payments/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse("a", data)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(data), "{rate: 2000, burst: 4000}", "{rate: 2000, burst: 4001}", 1)
	b, err := Parse("a", []byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	if summary(a) == summary(b) {
		t.Error("got the same summary for policies with different route bursts")
	}
	again, err := Parse("a", data)
	if err != nil {
		t.Fatal(err)
	}
	if summary(a) != summary(again) || !reflect.DeepEqual(a.StageNames(), b.StageNames()) {
		t.Error("summary is not stable")
	}
}
