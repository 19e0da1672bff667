package server

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// transactionsFrom is a CheckRequest for the example's public POST
// /transactions from the address a.
func transactionsFrom(a netip.Addr) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: a.String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/transactions", Host: "api.example.com"}},
	}}
}

// status sends req and returns the HTTP status Envoy would answer.
func (h *harness) status(req *authv3.CheckRequest) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.authz.Check(ctx, req)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.GetStatus().GetCode() == 0 {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

// TestWAFCounterFloodBounded is issue 13 through the gRPC Check path: a
// flood of distinct client addresses at the per-IP rule keeps the counters
// within --waf-counters, counts the drops in the metrics, and the address
// that was blocked before the flood is still blocked after it.
func TestWAFCounterFloodBounded(t *testing.T) {
	const bound, flood = 512, 3000
	h := serve(t, testPolicy(t, "rate_based: {limit: 1000, window: 5m", "rate_based: {limit: 5, window: 5m"),
		func(c *Config) { c.WAFCounters = bound })
	attacker := netip.MustParseAddr("192.0.2.66")
	for i := range 6 {
		want := 200
		if i == 5 {
			want = 403
		}
		if got := h.status(transactionsFrom(attacker)); got != want {
			t.Fatalf("step 0: request %d: got %d, want %d", i, got, want)
		}
	}
	for i := range flood {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if got := h.status(transactionsFrom(a)); got != 200 {
			t.Fatalf("step 1: %v: got %d, want 200", a, got)
		}
	}
	held := h.metric("tollgate_waf_counters")
	dropped := h.metric("tollgate_waf_counters_dropped_total")
	if held < 1 || held > bound {
		t.Errorf("step 2: got tollgate_waf_counters %v, want 1 to %d", held, bound)
	}
	if held+dropped != flood+1 {
		t.Errorf("step 2: got %v held + %v dropped, want %d (nothing expired)", held, dropped, flood+1)
	}
	if got := h.status(transactionsFrom(attacker)); got != 403 {
		t.Errorf("step 3: got %d for the blocked address after the flood, want 403", got)
	}
}

// TestWAFCountersFlag: a bound below 1 is refused, not replaced by the
// default.
func TestWAFCountersFlag(t *testing.T) {
	_, err := New(Config{PolicyFile: examplePolicy, Store: "memory:", GRPCAddr: "127.0.0.1:0", AdminAddr: "-", WAFCounters: -1})
	if want := "waf-counters -1: want at least 1"; err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
}
