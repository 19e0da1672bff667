package server

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
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
				Plans: []string{"enterprise"}, Enabled: true}); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			r := c.req
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(ctx, &r)
			}
		})
	}
}
