package examples_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Keys of the payments policy's demo customers (policy.yaml's comment).
const (
	freeKey = "tg_demo_free_0000000000000001"
	proKey  = "tg_demo_pro_00000000000000001"
)

// tollgateHeaders are the headers tollgate tells the upstream who called.
var tollgateHeaders = []string{"X-Tollgate-Customer", "X-Tollgate-Key-Id", "X-Tollgate-Plan", "X-Tollgate-Shadow"}

// TestProxiesPayments runs nginx and Caddy with their kits
// (examples/payments/nginx.conf and Caddyfile) in front of an upstream,
// asking a real tollgate over its HTTP port with the payments policy, and
// drives them with Go's HTTP client. tollgate's clock stands still, so the
// free key's burst is exactly 20.
func TestProxiesPayments(t *testing.T) {
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			tollgate, _ := startTollgate(t, paymentsPolicy(t))
			up := startUpstream(t)
			c := newClient(t, p.start(t, tollgate, up.addr()), "")

			t.Run("free key: 20 then 429", func(t *testing.T) { freeKeyBurst(t, c, up) })
			t.Run("no key: 403", func(t *testing.T) { noKey(t, c, up) })
			t.Run("x-tollgate-* only from tollgate", func(t *testing.T) { spoofedHeaders(t, c, up) })
			t.Run("the request checked is the client's", func(t *testing.T) { forgedRequest(t, c, up) })
		})
	}
}

// freeKeyBurst: the free plan's burst of 20 goes through, each answer with
// the rate-limit headers and each request upstream with the key's
// customer, id and plan; the 21st is tollgate's 429, which never reaches
// the upstream.
func freeKeyBurst(t *testing.T, c *client, up *upstream) {
	before := len(up.requests())
	for i := range 20 {
		a := c.do("POST", "/partners/p-1/transactions", "x-api-key", freeKey)
		if a.status != 200 || a.header.Get("X-Upstream") != "echo" {
			t.Fatalf("request %d: got\n%s\nwant 200 from the upstream", i, a)
		}
		policy, limits := a.header.Get("RateLimit-Policy"), a.header.Get("RateLimit")
		if !strings.HasPrefix(policy, `"plan";q=20;w=2, "quota";q=1000;w=86400, `) ||
			!strings.HasPrefix(limits, fmt.Sprintf(`"plan";r=%d;t=`, 19-i)) {
			t.Errorf("request %d: got RateLimit-Policy %q, RateLimit %q, want the plan first, %d left", i, policy, limits, 19-i)
		}
	}
	got := up.requests()[before:]
	if len(got) != 20 {
		t.Fatalf("the upstream got %d requests, want 20", len(got))
	}
	for i, h := range got {
		for name, want := range map[string]string{"X-Tollgate-Customer": "initech", "X-Tollgate-Key-Id": "initech-free", "X-Tollgate-Plan": "free"} {
			if v := h.Values(name); len(v) != 1 || v[0] != want {
				t.Errorf("upstream request %d: got %s %q, want %q", i, name, v, want)
			}
		}
	}

	a := c.do("POST", "/partners/p-1/transactions", "x-api-key", freeKey)
	t.Logf("the 21st request's answer:\n%s", a)
	wantDenial(t, a, 429, `{"message":"Too Many Requests"}`, "throttle:plan")
	if v := a.header.Get("Retry-After"); v != "1" {
		t.Errorf("Retry-After: got %q, want 1 (a token in 0.1s, rounded up)", v)
	}
	if v := a.header.Get("RateLimit"); !strings.HasPrefix(v, `"plan";r=0;t=2, `) {
		t.Errorf("RateLimit: got %q, want the plan first, empty", v)
	}
	if v := a.header.Get("RateLimit-Policy"); !strings.HasPrefix(v, `"plan";q=20;w=2, `) {
		t.Errorf("RateLimit-Policy: got %q, want the plan first", v)
	}
	if n := len(up.requests()) - before; n != 20 {
		t.Errorf("the upstream got %d requests, want the 20 allowed only", n)
	}
}

// noKey: the partner route without a key is tollgate's 403, its reason
// kept from the client (explain: false).
func noKey(t *testing.T, c *client, up *upstream) {
	before := len(up.requests())
	a := c.do("POST", "/partners/p-1/transactions")
	t.Logf("the answer without a key:\n%s", a)
	wantDenial(t, a, 403, `{"message":"Forbidden"}`, "")
	for _, name := range []string{"Retry-After", "RateLimit", "RateLimit-Policy"} {
		if v := a.header.Values(name); len(v) > 0 {
			t.Errorf("%s: got %q, want none", name, v)
		}
	}
	if n := len(up.requests()) - before; n != 0 {
		t.Errorf("the upstream got %d requests, want none", n)
	}
}

// wantDenial checks a denial's status, JSON body and reason ("": none).
func wantDenial(t *testing.T, a answer, status int, body, reason string) {
	t.Helper()
	if a.status != status || a.body != body {
		t.Errorf("got\n%s\nwant %d %s", a, status, body)
	}
	if v := a.header.Get("Content-Type"); v != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", v)
	}
	if v := a.header.Values("X-Tollgate-Reason"); (reason == "" && len(v) > 0) || (reason != "" && (len(v) != 1 || v[0] != reason)) {
		t.Errorf("X-Tollgate-Reason: got %q, want %q", v, reason)
	}
}

// spoofedHeaders: a client's own x-tollgate-* never reach the upstream:
// without a key, none at all (not even empty); with a key, only tollgate's.
func spoofedHeaders(t *testing.T, c *client, up *upstream) {
	spoof := []string{"X-Tollgate-Customer", "evil", "X-Tollgate-Key-Id", "evil-key", "X-Tollgate-Plan", "enterprise",
		"X-Tollgate-Shadow", "waf:evil"}
	before := len(up.requests())
	if a := c.do("GET", "/status", spoof...); a.status != 200 {
		t.Fatalf("GET /status: got\n%s\nwant 200", a)
	}
	if a := c.do("POST", "/partners/p-1/transactions", append(spoof, "x-api-key", proKey)...); a.status != 200 {
		t.Fatalf("the pro key: got\n%s\nwant 200", a)
	}
	got := up.requests()[before:]
	if len(got) != 2 {
		t.Fatalf("the upstream got %d requests, want 2", len(got))
	}
	for _, name := range tollgateHeaders {
		if v, ok := got[0][http.CanonicalHeaderKey(name)]; ok {
			t.Errorf("anonymous: the upstream got %s %q, want none", name, v)
		}
	}
	for name, want := range map[string]string{"X-Tollgate-Customer": "acme", "X-Tollgate-Key-Id": "acme-2026a", "X-Tollgate-Plan": "pro"} {
		if v := got[1].Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("the pro key: the upstream got %s %q, want %q", name, v, want)
		}
	}
	if v, ok := got[1]["X-Tollgate-Shadow"]; ok {
		t.Errorf("the pro key: the upstream got X-Tollgate-Shadow %q, want none", v)
	}
}

// TestProxiesShadow: a shadow WAF rule (SPEC §10) that matches every
// loopback client lets the requests through, and the upstream learns from
// x-tollgate-shadow, from tollgate only, that the rule would have blocked
// them; the client's own x-tollgate-shadow is dropped.
func TestProxiesShadow(t *testing.T) {
	policy := paymentsPolicy(t,
		`blocklist: ["203.0.113.0/24", `, `loopback: ["127.0.0.0/8"]
    blocklist: ["203.0.113.0/24", `,
		`  rules:                       # evaluated in the order written
`, `  rules:                       # evaluated in the order written
    - {name: watch-loopback, ip_set: loopback, action: block, mode: shadow}
`)
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			tollgate, _ := startTollgate(t, policy)
			up := startUpstream(t)
			c := newClient(t, p.start(t, tollgate, up.addr()), "")
			for _, path := range []string{"/transactions", "/partners/p-1/transactions"} {
				if a := c.do("POST", path, "x-api-key", freeKey, "X-Tollgate-Shadow", "waf:evil"); a.status != 200 {
					t.Fatalf("POST %s: got\n%s\nwant 200", path, a)
				}
			}
			got := up.requests()
			if len(got) != 2 {
				t.Fatalf("the upstream got %d requests, want 2", len(got))
			}
			for i, h := range got {
				if v := h.Values("X-Tollgate-Shadow"); len(v) != 1 || v[0] != "waf:watch-loopback" {
					t.Errorf("request %d: the upstream got X-Tollgate-Shadow %q, want [waf:watch-loopback]", i, v)
				}
			}
		})
	}
}

// forgedRequest: the headers that carry the original request to tollgate
// (either convention), the stage and the client's address, when a client
// sends them, change nothing: the proxy sets or removes them.
func forgedRequest(t *testing.T, c *client, up *upstream) {
	forged := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/status", "X-Original-Method", "GET",
		"X-Original-URI", "/status", "X-Tollgate-Stage", "other/stage"}
	a := c.do("POST", "/partners/p-1/transactions", forged...)
	wantDenial(t, a, 403, `{"message":"Forbidden"}`, "")

	// 203.0.113.0/24 is on the blocklist: a client cannot have tollgate
	// take it for that address (nor for another: the proxy appends the
	// address it sees, the right-most entry, which tollgate takes).
	before := len(up.requests())
	a = c.do("POST", "/transactions", "X-Forwarded-For", "203.0.113.9", "X-Real-IP", "203.0.113.9")
	if a.status != 200 || len(up.requests()) != before+1 {
		t.Errorf("POST /transactions claiming 203.0.113.9: got\n%s\nwant 200 from the upstream", a)
	}
}

// TestProxiesClientAddress: the client's address tollgate checks is the one
// the proxy sees, whatever X-Forwarded-For or X-Real-IP the client sends.
// Loopback clients cannot come from the payments blocklist's networks
// (documentation addresses), so 127.0.0.2 joins the blocklist here and the
// client connects from it.
func TestProxiesClientAddress(t *testing.T) {
	policy := paymentsPolicy(t, `blocklist: ["203.0.113.0/24", `, `blocklist: ["127.0.0.2/32", "203.0.113.0/24", `)
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			tollgate, _ := startTollgate(t, policy)
			up := startUpstream(t)
			base := p.start(t, tollgate, up.addr())
			blocked, other := newClient(t, base, "127.0.0.2"), newClient(t, base, "127.0.0.1")

			a := blocked.do("POST", "/transactions")
			t.Logf("the answer to 127.0.0.2:\n%s", a)
			wantDenial(t, a, 403, `{"message":"Forbidden"}`, "waf:blocked-networks")
			a = blocked.do("POST", "/transactions", "X-Forwarded-For", "127.0.0.1", "X-Real-IP", "127.0.0.1")
			wantDenial(t, a, 403, `{"message":"Forbidden"}`, "waf:blocked-networks")
			if a = other.do("POST", "/transactions", "X-Forwarded-For", "127.0.0.2", "X-Real-IP", "127.0.0.2"); a.status != 200 {
				t.Errorf("127.0.0.1 claiming 127.0.0.2: got\n%s\nwant 200", a)
			}
			if n := len(up.requests()); n != 1 {
				t.Errorf("the upstream got %d requests, want 1", n)
			}
		})
	}
}

// TestProxiesFailClosed: with tollgate unreachable, a proxy lets nothing
// through. nginx answers 503 with the JSON body, as Envoy's kit does
// (status_on_error); Caddy answers its own 502.
func TestProxiesFailClosed(t *testing.T) {
	want := map[string]struct {
		status int
		body   string
	}{"nginx": {503, `{"message":"Service Unavailable"}`}, "caddy": {502, ""}}
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			up := startUpstream(t)
			a := newClient(t, p.start(t, closedPort(t), up.addr()), "").do("GET", "/status")
			if w := want[p.name]; a.status != w.status || a.body != w.body {
				t.Errorf("got\n%s\nwant %d %s", a, w.status, w.body)
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("the upstream got %d requests, want none", n)
			}
		})
	}
}

// TestProxiesFailClosedOnHungTollgate: a tollgate that takes the
// connection and never answers (a stopped process, a wedged host) fails the
// request within about a second, as the Envoy kits' 0.25s timeout does,
// not when the client gives up; a reviewer found the Caddy kit waited for
// ever.
func TestProxiesFailClosedOnHungTollgate(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			held <- c // never answered
		}
	}()
	t.Cleanup(func() {
		hung.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			up := startUpstream(t)
			base := p.start(t, hung.Addr().String(), up.addr())
			// The kits give up after 1s; the client, which stands for
			// one that would wait for ever, after 10.
			c := &http.Client{Timeout: 10 * time.Second}
			start := time.Now()
			resp, err := c.Get(base + "/status")
			if err != nil {
				t.Fatalf("no answer after %v: %v", time.Since(start).Round(time.Millisecond), err)
			}
			resp.Body.Close()
			if resp.StatusCode < 500 {
				t.Errorf("got %d after %v, want a 5xx", resp.StatusCode, time.Since(start).Round(time.Millisecond))
			}
			if n := len(up.requests()); n != 0 {
				t.Errorf("the upstream got %d requests, want none", n)
			}
		})
	}
}

// TestProxiesDenials: every denial of the policy reaches the client with
// tollgate's status, reason and body, those nginx rebuilds (it cannot read
// the body of an auth request) as those Caddy passes on. The payments
// policy here denies unknown routes, and the free plan's quota is 8 a day.
func TestProxiesDenials(t *testing.T) {
	policy := paymentsPolicy(t, "unknown_routes: allow", "unknown_routes: deny",
		"quota: {limit: 1000, period: day}", "quota: {limit: 8, period: day}")
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			tollgate, _ := startTollgate(t, policy)
			up := startUpstream(t)
			c := newClient(t, p.start(t, tollgate, up.addr()), "")

			wantDenial(t, c.do("GET", "/nowhere"), 403, `{"message":"Missing Authentication Token"}`, "route:unknown")
			// An escaped slash: tollgate cannot tell which route the
			// upstream will see.
			wantDenial(t, c.do("POST", "/partners%2Fp-1/transactions"), 400, `{"message":"Bad Request"}`, "request:invalid")
			for i := range 8 {
				if a := c.do("POST", "/partners/p-1/transactions", "x-api-key", freeKey); a.status != 200 {
					t.Fatalf("request %d: got\n%s\nwant 200", i, a)
				}
			}
			a := c.do("POST", "/partners/p-1/transactions", "x-api-key", freeKey)
			wantDenial(t, a, 429, `{"message":"Limit Exceeded"}`, "quota")
			if v := a.header.Get("Retry-After"); v != "43200" {
				t.Errorf("Retry-After: got %q, want 43200 (noon to midnight)", v)
			}
			if n := len(up.requests()); n != 8 {
				t.Errorf("the upstream got %d requests, want 8", n)
			}
		})
	}
}
