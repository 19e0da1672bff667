package server

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// authzCall sends one forward-form subrequest for the example's keyed
// route to the HTTP authorization endpoint with client c.
func (h *harness) authzCall(c *http.Client, key string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequest("GET", "http://"+h.s.HTTPAddr().String()+"/forward_auth", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Method", "POST")
	req.Header.Set("X-Forwarded-Uri", "/partners/p-1/transactions")
	req.Header.Set("X-Forwarded-Host", "api.example.com")
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestHTTPAuthz: with --http-addr the server decides over HTTP with the
// same state as over gRPC (the free key's burst of 20 is shared: 10 over
// gRPC, 10 over HTTP/1.1 and HTTP/2 without TLS, then 429), counts the
// decisions like the others, and stops cleanly.
func TestHTTPAuthz(t *testing.T) {
	h := serve(t, testPolicy(t), func(c *Config) { c.HTTPAddr = "127.0.0.1:0" })
	const free = "tg_demo_free_0000000000000001"
	if n := h.checks(free, 10); n != 10 {
		t.Fatalf("gRPC: got %d allowed, want 10", n)
	}
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	clients := map[string]*http.Client{
		"HTTP/1.1": {Timeout: 10 * time.Second},
		"HTTP/2.0": {Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &h2}},
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		for range 5 {
			resp := h.authzCall(clients[proto], free)
			if resp.StatusCode != 200 || resp.Proto != proto || resp.Header.Get("X-Tollgate-Customer") != "initech" {
				t.Fatalf("%s: got %d %s customer %q, want 200 initech", proto, resp.StatusCode, resp.Proto, resp.Header.Get("X-Tollgate-Customer"))
			}
		}
	}
	resp := h.authzCall(clients["HTTP/1.1"], free)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Tollgate-Reason") != "throttle:plan" {
		t.Errorf("21st: got %d %v, want 429 throttle:plan, Retry-After 1", resp.StatusCode, resp.Header)
	}
	if resp := h.authzCall(clients["HTTP/1.1"], ""); resp.StatusCode != 403 {
		t.Errorf("no key: got %d, want 403", resp.StatusCode)
	}
	if got := h.metric(`tollgate_decisions_total{api="payments",outcome="deny",plan="free",reason="throttle:plan",stage="prod"}`); got != 1 {
		t.Errorf("throttle:plan denials: got %v, want 1", got)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPAuthzOff: without HTTPAddr there is no HTTP endpoint.
func TestHTTPAuthzOff(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	if a := h.s.HTTPAddr(); a != nil {
		t.Errorf("got an HTTP endpoint at %v, want none", a)
	}
}
