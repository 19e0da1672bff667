package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// benchRuntimeKey is the value of a key created at run time (in the store,
// not the policy file).
const benchRuntimeKey = "tg_bench_runtime_key_000000000001"

// BenchmarkDecide measures Server.Decide (evaluation with the memory store,
// key lookup, metrics and the denial log check) on the payments example,
// without the network. The clock moves on between calls so that the allowed
// cases stay allowed.
func BenchmarkDecide(b *testing.B) {
	headers := func(kv ...string) map[string]string {
		h := map[string]string{":authority": "api.example.com", "user-agent": "bench/1.0", "accept": "*/*"}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	cases := []struct {
		name string
		step time.Duration
		req  policy.Request
	}{
		{"anonymous-allow", 10 * time.Millisecond, policy.Request{Method: "GET", Path: "/status", Host: "api.example.com", Peer: "198.51.100.7:53124", Headers: headers()}},
		{"keyed-allow", time.Millisecond, policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com", Peer: "198.51.100.7:53124",
			Headers: headers("x-api-key", "tg_demo_ent_00000000000000001")}},
		{"waf-deny", 0, policy.Request{Method: "POST", Path: "/transactions", Host: "api.example.com", Peer: "203.0.113.9:53124", Headers: headers()}},
		{"runtime-key-allow", time.Millisecond, policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com", Peer: "198.51.100.7:53124",
			Headers: headers("x-api-key", benchRuntimeKey)}},
		// A plan with alerts (pro: thresholds and a forecast), so that the
		// Detector does its whole per-decision step; two seconds apart, the
		// customer stays under the plan's 100,000 a day and no event is due.
		{"alerts-plan-allow", 2 * time.Second, policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com", Peer: "198.51.100.7:53124",
			Headers: headers("x-api-key", "tg_demo_pro_00000000000000001")}},
		{"unknown-key-deny", 0, policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com", Peer: "198.51.100.7:53124",
			Headers: headers("x-api-key", "tg_not_a_known_key_000000000001")}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var mu sync.Mutex
			now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
			s, err := New(Config{PolicyFile: examplePolicy, GRPCAddr: "127.0.0.1:0", Store: "memory:", AdminAddr: "-",
				Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
				Now: func() time.Time {
					mu.Lock()
					defer mu.Unlock()
					now = now.Add(c.step)
					return now
				}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.lis.Close() })
			if err := s.store.SaveKey(&policy.APIKey{ID: "bench-rt", Customer: "bench", Hash: sha256.Sum256([]byte(benchRuntimeKey)),
				Plans: []string{"enterprise"}, Enabled: true}, nil); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			r := c.req
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(ctx, &r)
			}
			// The case measured what its name says.
			if d := s.Decide(ctx, &r); (d.Verdict == policy.Allow) != strings.HasSuffix(c.name, "-allow") {
				b.Fatalf("%s: got %s (%s)", c.name, d.Verdict, d.Reason)
			}
		})
	}
}

// BenchmarkUtilization measures what tollgate_limit_utilization_ratio adds
// to a decision: the count of an allowed keyed request of the payments
// example in its route, stage and account buckets (three windows), from one
// goroutine and from many (all in the same windows: the contended case).
func BenchmarkUtilization(b *testing.B) {
	data, err := os.ReadFile(examplePolicy)
	if err != nil {
		b.Fatal(err)
	}
	p, err := policyfile.Parse(examplePolicy, data)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	r := policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com", Peer: "198.51.100.7:53124",
		Headers: map[string]string{"x-api-key": "tg_demo_ent_00000000000000001"}}
	d, err := p.Evaluate(now, &r, memory.New(), nil)
	if err != nil || d.Verdict != policy.Allow || d.StageBucket == 0 || d.RouteBucket == 0 {
		b.Fatalf("got %+v, %v; want an allowed decision in a stage and a route bucket", d, err)
	}
	u := newUtilization(func() time.Time { return now })
	u.load(p)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u.admitted(p, &d, now)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				u.admitted(p, &d, now)
			}
		})
	})
}

// BenchmarkDecideStores runs keyed decisions from many goroutines (callers)
// through Server.Decide on each store, with limits high enough that they are
// all allowed, and reports decisions per second and latency percentiles (of
// Decide alone: no gRPC). The Redis store runs against a local redis-server
// started for the benchmark, on the real clock, at the default flags; it
// also reports the script calls per decision (evalsha/op, from INFO
// commandstats: under 1 when decisions that arrive together share a call;
// each decision still waits for one round trip, its call's), their inverse,
// the decisions per call, and the decisions made locally because Redis missed
// the budget (local/op; a healthy Redis should leave none).
func BenchmarkDecideStores(b *testing.B) {
	policyText := testPolicy(b,
		"throttle: {rate: 10000, burst: 5000}", "throttle: {rate: 10000000, burst: 10000000}",
		"throttle: {rate: 5000, burst: 10000}", "throttle: {rate: 10000000, burst: 10000000}",
		"throttle: {rate: 1000, burst: 2000}", "throttle: {rate: 10000000, burst: 10000000}",
		"enterprise:\n    throttle: {rate: 1000, burst: 2000}", "enterprise:\n    throttle: {rate: 10000000, burst: 10000000}")
	file := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(policyText), 0o644); err != nil {
		b.Fatal(err)
	}
	req := policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com", Peer: "198.51.100.7:53124",
		Headers: map[string]string{"x-api-key": "tg_demo_ent_00000000000000001", "user-agent": "bench/1.0"}}
	for _, c := range []struct {
		store       string
		parallelism int // goroutines per GOMAXPROCS
	}{{"memory", 25}, {"file", 25}, {"redis", 4}, {"redis", 25}} {
		store := c.store
		b.Run(fmt.Sprintf("%s/callers=%d", store, c.parallelism*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			url := "memory:"
			var redisSrv *redistest.Server
			switch store {
			case "file":
				url = "file:" + b.TempDir()
			case "redis":
				redisSrv = redistest.Start(b)
				url = redisSrv.URL()
			}
			s, err := New(Config{PolicyFile: file, GRPCAddr: "127.0.0.1:0", Store: url, AdminAddr: "-",
				Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.lis.Close(); s.store.Close() })
			// scriptCalls returns the calls of EVALSHA and EVAL: the
			// decisions' calls, each carrying one or more decisions.
			scriptCalls := func() int64 {
				if redisSrv == nil {
					return 0
				}
				n, err := redisSrv.ScriptCalls()
				if err != nil {
					b.Fatal(err)
				}
				return n
			}
			var mu sync.Mutex
			var lat []time.Duration
			var denied, local atomic.Int64
			ctx := context.Background()
			// redisCPU returns the CPU time Redis has used.
			redisCPU := func() time.Duration {
				if redisSrv == nil {
					return 0
				}
				d, err := redisSrv.CPU()
				if err != nil {
					b.Fatal(err)
				}
				return d
			}
			callsBefore, cpuBefore := scriptCalls(), redisCPU()
			start := time.Now()
			b.SetParallelism(c.parallelism)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := req
				mine := make([]time.Duration, 0, 1<<16)
				for pb.Next() {
					t := time.Now()
					if d := s.Decide(ctx, &r); d.Verdict != policy.Allow {
						denied.Add(1)
					} else if d.Local {
						local.Add(1)
					}
					mine = append(mine, time.Since(t))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			elapsed := time.Since(start)
			if redisSrv != nil {
				calls := float64(scriptCalls() - callsBefore)
				b.ReportMetric(calls/float64(len(lat)), "evalsha/op")
				b.ReportMetric(float64(len(lat))/calls, "decisions/call")
				b.ReportMetric(float64((redisCPU()-cpuBefore).Microseconds())/float64(len(lat)), "redis-cpu-µs/op")
			}
			b.ReportMetric(float64(local.Load())/float64(len(lat)), "local/op")
			if n := denied.Load(); n > 0 {
				b.Fatalf("%d of %d decisions denied, want all allowed", n, len(lat))
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) }
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "decisions/s")
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.90), "p90-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}

// BenchmarkDecideDecisionLog is what --decision-log adds to a keyed allowed
// decision: off, and on (a file in a temporary directory). A tight loop
// decides faster than the writer writes, so some lines are dropped
// (dropped/op), which costs the decision what a queued line costs.
func BenchmarkDecideDecisionLog(b *testing.B) {
	req := policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com", Peer: "198.51.100.7:53124",
		Headers: map[string]string{":authority": "api.example.com", "user-agent": "bench/1.0", "accept": "*/*",
			"x-api-key": "tg_demo_ent_00000000000000001"}}
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			var mu sync.Mutex
			now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
			cfg := Config{PolicyFile: examplePolicy, GRPCAddr: "127.0.0.1:0", Store: "memory:", AdminAddr: "-",
				Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
				Now: func() time.Time {
					mu.Lock()
					defer mu.Unlock()
					now = now.Add(time.Millisecond)
					return now
				}}
			if on {
				cfg.DecisionLog = filepath.Join(b.TempDir(), "decisions.log")
			}
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.lis.Close() })
			ctx := context.Background()
			r := req
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(ctx, &r)
			}
			if d := s.Decide(ctx, &r); d.Verdict != policy.Allow {
				b.Fatalf("got %s (%s), want allow", d.Verdict, d.Reason)
			}
			if err := s.closeDecisionLog(); err != nil {
				b.Fatal(err)
			}
			if s.dlog != nil {
				b.ReportMetric(float64(s.dlog.Dropped())/float64(b.N), "dropped/op")
			}
		})
	}
}
