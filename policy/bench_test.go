package policy_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// benchCustomers is the number of keys (one customer each) the benchmarks
// spread their requests over.
const benchCustomers = 1000

// benchPolicy is the payments example with limits high enough that every
// request passes: WAF (an IP set and a rate rule per key), route, plan with
// a quota, stage and account, so that a decision does all of its work. The
// buckets are huge and refill slowly, so that they are never full again
// once used: the store keeps every entry, as under real load, instead of
// dropping and re-creating them.
func benchPolicy(b testing.TB) (*policy.Policy, []*policy.Request) {
	b.Helper()
	var keys strings.Builder
	reqs := make([]*policy.Request, benchCustomers)
	for i := range reqs {
		key := fmt.Sprintf("tg_bench_%020d", i)
		fmt.Fprintf(&keys, "  - {id: k%d, customer: c%d, hash: %q, plans: [pro]}\n", i, i, sha(key))
		reqs[i] = &policy.Request{Method: "POST", Path: fmt.Sprintf("/partners/p%d/transactions", i), Host: "api.example.com",
			Headers: map[string]string{"x-api-key": key, "content-type": "application/json", "user-agent": "bench"},
			Peer:    fmt.Sprintf("198.51.%d.%d", i/250, i%250)} // as envoy/ passes it: no port
	}
	return parse(b, `
version: 1
account:
  throttle: {rate: 1, burst: 1000000000}
apis:
  payments:
    hosts: ["api.example.com"]
    stages:
      prod:
        throttle: {rate: 1, burst: 1000000000}
        route_defaults:
          throttle: {rate: 1, burst: 1000000000}
        routes:
          - {match: "POST /transactions", throttle: {rate: 2000, burst: 4000}}
          - {match: "POST /partners/{id}/transactions", api_key: required}
          - {match: "GET /status", throttle: {rate: 500, burst: 1000}, waf: skip}
default_stage: payments/prod
usage_plans:
  pro:
    throttle: {rate: 1, burst: 1000000000}
    quota: {limit: 1000000000000, period: day, timezone: America/New_York}
    stages: [payments/prod]
api_keys:
`+keys.String()+`
waf:
  ip_sets:
    blocklist: ["203.0.113.0/24", "2001:db8:bad::/48"]
  rules:
    - {name: blocked-networks, ip_set: blocklist, action: block}
    - name: per-key
      rate_based: {limit: 1000000000, window: 5m, key: api_key}
      scope: {routes: ["POST /partners/{id}/transactions"]}
      action: block
`), reqs
}

// BenchmarkEvaluate is one keyed decision that passes every tier, against
// the in-memory store, the clock advancing 1 µs a decision.
func BenchmarkEvaluate(b *testing.B) {
	p, reqs := benchPolicy(b)
	st := memory.New()
	now := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		d, err := p.Evaluate(now, reqs[i%len(reqs)], st, nil)
		if err != nil || d.Verdict != policy.Allow || d.NLimits != 5 {
			b.Fatalf("got %s %s (%d limits) %v, want allowed with 5 limits", d.Verdict, d.Reason, d.NLimits, err)
		}
		i++
	}
}

// BenchmarkEvaluateParallel is BenchmarkEvaluate from GOMAXPROCS goroutines
// sharing one store, each over its own share of the customers.
func BenchmarkEvaluateParallel(b *testing.B) {
	p, reqs := benchPolicy(b)
	st := memory.New()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 97
		now := t0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			d, err := p.Evaluate(now, reqs[i%len(reqs)], st, nil)
			if err != nil || d.Verdict != policy.Allow {
				b.Errorf("got %s %s %v, want allowed", d.Verdict, d.Reason, err)
				return
			}
			i++
		}
	})
}

// TestEvaluateDoesNotAllocate: a keyed decision through every tier, the
// per-key WAF counter included, allocates nothing once its counters exist.
func TestEvaluateDoesNotAllocate(t *testing.T) {
	p, reqs := benchPolicy(t)
	st := memory.New()
	now := t0
	for _, r := range reqs { // make every counter and bucket
		p.Evaluate(now, r, st, nil)
	}
	i := 0
	got := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		d, err := p.Evaluate(now, reqs[i%len(reqs)], st, nil)
		if err != nil || d.Verdict != policy.Allow || d.NLimits != 5 {
			t.Fatalf("got %s %s (%d limits) %v, want allowed with 5 limits", d.Verdict, d.Reason, d.NLimits, err)
		}
		i++
	})
	if got != 0 {
		t.Errorf("got %v allocations per decision, want 0", got)
	}
}
