package envoy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
)

// BenchmarkCheck measures AuthzServer.Check without the network:
// translation, evaluation with a memory store, and the answer. The clock
// moves on between calls so that the allowed cases stay allowed.
func BenchmarkCheck(b *testing.B) {
	peer := socketAddr("198.51.100.7", 53124)
	blocked := socketAddr("203.0.113.9", 53124)
	envoyHeaders := func(extra ...string) map[string]string {
		h := map[string]string{":authority": "api.example.com", ":scheme": "https", "user-agent": "bench/1.0",
			"accept": "*/*", "x-forwarded-proto": "https", "x-request-id": "5f0c6e0e-6c51-4c8e-9d3b-000000000001"}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	cases := []struct {
		name   string
		policy string
		step   time.Duration
		req    *authv3.CheckRequest
	}{
		{"anonymous-allow", paymentsPolicy, 10 * time.Millisecond,
			checkRequest("GET", "/status", "api.example.com", envoyHeaders(), peer, nil)},
		{"keyed-allow", paymentsPolicy, time.Millisecond,
			checkRequest("POST", "/partners/p-17/transactions", "api.example.com",
				envoyHeaders("x-api-key", "tg_demo_ent_00000000000000001"), peer, nil)},
		{"waf-deny", paymentsPolicy, 0,
			checkRequest("POST", "/transactions", "api.example.com", envoyHeaders(), blocked, nil)},
		{"throttle-deny", tightPolicy, 0,
			checkRequest("POST", "/orders", "shop.example.com", envoyHeaders("x-api-key", "tg_test_tiny_000000000000000001"), peer, nil)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := newEngine(b, c.policy)
			e.step = c.step
			s := &envoy.AuthzServer{Decider: e}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Check(ctx, c.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discard is a ResponseWriter that keeps one header map, cleared per
// answer, and drops the body: what WriteDecision costs, not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkWriteDecision measures the HTTP answer of an allowance with a
// key and five limits, and of a 429.
func BenchmarkWriteDecision(b *testing.B) {
	e := newEngine(b, tightPolicy)
	r := &policy.Request{Method: "POST", Path: "/orders", Host: "shop.example.com", Peer: "198.51.100.7",
		Headers: map[string]string{"x-api-key": "tg_test_tiny_000000000000000001"}}
	allowed := e.Decide(context.Background(), r)
	var denied policy.Decision
	for denied.Verdict != policy.Deny {
		denied = e.Decide(context.Background(), r)
	}
	for name, d := range map[string]*policy.Decision{"allow": &allowed, "deny": &denied} {
		b.Run(name, func(b *testing.B) {
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				envoy.WriteDecision(w, d, false)
			}
		})
	}
}
