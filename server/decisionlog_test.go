package server

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/decisionlog"
)

// TestDecisionLogLines sends 50 mixed requests over gRPC (allowed, no key,
// a disabled key, throttled, blocked by the WAF, unreadable, and allowed
// where a shadow limit would have denied) and finds one line per request,
// in order, whose status, reason and shadow reasons are what the client
// and the upstream got, with neither a key value nor a query string
// anywhere in the file; tollgate_shadow_denials_total counts the shadow
// reasons.
func TestDecisionLogLines(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	// explain: the key denials' reasons are sent to the client too. A
	// shadow WAF rule allows 10 requests a minute per key, and the trial
	// plan's quota, 3 a day, is a shadow one.
	h := serve(t, testPolicy(t, "explain: false", "explain: true",
		"  rules:                       # evaluated in the order written\n",
		"  rules:\n    - {name: per-key, rate_based: {limit: 10, window: 1m, key: api_key}, action: block, mode: shadow}\n",
		"quota: {limit: 10, period: day}", "quota: {limit: 3, period: day, mode: shadow}",
		"    alerts: {thresholds: [80], sinks: [ops]}\n", ""),
		func(c *Config) { c.DecisionLog = logFile })

	const secret = "s3cret"
	keyed := func(key string) *authv3.CheckRequest {
		req := request(key)
		req.Attributes.Request.Http.Path += "?token=" + secret + "&page=2"
		return req
	}
	kinds := []struct {
		name string
		n    int
		req  func() *authv3.CheckRequest
	}{
		{"free key", 25, func() *authv3.CheckRequest { return keyed(freeKey) }}, // burst 20: then 429
		{"trial key", 6, func() *authv3.CheckRequest { return keyed("tg_demo_trial_000000000000001") }},
		{"no key", 4, func() *authv3.CheckRequest { return keyed("") }},
		{"disabled key", 3, func() *authv3.CheckRequest { return keyed("tg_demo_disabled_000000000001") }},
		{"waf blocklist", 5, func() *authv3.CheckRequest {
			req := transactionsFrom(netip.MustParseAddr("203.0.113.9"))
			req.Attributes.Request.Http.Path += "?" + secret
			return req
		}},
		{"invalid path", 5, func() *authv3.CheckRequest {
			req := request("")
			req.Attributes.Request.Http.Path = "/a%2Fb?token=" + secret
			return req
		}},
		{"status", 2, func() *authv3.CheckRequest {
			req := request("")
			req.Attributes.Request.Http.Method, req.Attributes.Request.Http.Path = "GET", "/status?verbose="+secret
			return req
		}},
	}
	type sent struct {
		kind string
		nth  int // 1 for the kind's first request
		got  decision
	}
	var all []sent
	left := make([]int, len(kinds))
	for i, k := range kinds {
		left[i] = k.n
	}
	// Round robin over the kinds, so that the lines interleave.
	for len(all) < 50 {
		for i, k := range kinds {
			if left[i] > 0 {
				left[i]--
				all = append(all, sent{k.name, k.n - left[i], h.checkRequest(k.req())})
			}
		}
	}
	statuses := map[int]int{}
	for _, s := range all {
		statuses[s.got.status]++
	}
	if statuses[200] != 28 || statuses[429] != 5 || statuses[403] != 12 || statuses[400] != 5 {
		t.Fatalf("step 0: got statuses %v, want 28×200, 5×429, 12×403, 5×400", statuses)
	}
	if got := h.metric("tollgate_decision_log_dropped_total"); got != 0 {
		t.Fatalf("step 1: got %v lines dropped, want 0", got)
	}
	for series, want := range map[string]float64{
		`tollgate_shadow_denials_total{api="payments",plan="free",reason="waf:per-key",stage="prod"}`: 10,
		`tollgate_shadow_denials_total{api="payments",plan="trial",reason="quota",stage="prod"}`:      3,
	} {
		if got := h.metric(series); got != want {
			t.Errorf("step 1: %s: got %v, want %v", series, got, want)
		}
	}
	// Stopping writes what is queued.
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{secret, "?", "tg_demo_"} {
		if strings.Contains(string(raw), bad) {
			t.Fatalf("step 2: the log holds %q:\n%s", bad, raw)
		}
	}
	var lines []decisionlog.Line
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		var l decisionlog.Line
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("step 3: line %d %q: %v", len(lines), sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != len(all) {
		t.Fatalf("step 3: got %d lines, want %d", len(lines), len(all))
	}
	for i, l := range lines {
		s := all[i]
		if l.Status != s.got.status || l.Reason != s.got.headers["x-tollgate-reason"] {
			t.Errorf("line %d (%s): got status %d reason %q, want %d %q (what the client got)",
				i, s.kind, l.Status, l.Reason, s.got.status, s.got.headers["x-tollgate-reason"])
		}
		if ts, err := time.Parse(time.RFC3339Nano, l.TS); err != nil || !ts.Equal(t0) {
			t.Errorf("line %d: got ts %q, want %v", i, l.TS, t0)
		}
		if got, want := strings.Join(l.Shadow, ","), s.got.upstream["x-tollgate-shadow"]; l.Shadow == nil || got != want {
			t.Errorf("line %d (%s): got shadow %q, want %q (what the upstream got)", i, s.kind, l.Shadow, want)
		}
		if want := shadowWanted(s.kind, s.nth); strings.Join(l.Shadow, ",") != want {
			t.Errorf("line %d (%s %d): got shadow %q, want %q", i, s.kind, s.nth, l.Shadow, want)
		}
		switch s.kind {
		case "free key":
			if l.KeyID != "initech-free" || l.Customer != "initech" || l.Plan != "free" ||
				l.Path != "/partners/p-1/transactions" || l.Route != "POST /partners/{id}/transactions" ||
				l.Method != "POST" || l.IP != "198.51.100.7" || l.API != "payments" || l.Stage != "prod" {
				t.Errorf("line %d (%s): got %+v", i, s.kind, l)
			}
		case "invalid path":
			if l.Path != "" || l.Status != 400 || l.Reason != "request:invalid" {
				t.Errorf("line %d (%s): got %+v, want no path, 400 request:invalid", i, s.kind, l)
			}
		case "waf blocklist":
			if l.IP != "203.0.113.9" || l.Path != "/transactions" {
				t.Errorf("line %d (%s): got %+v", i, s.kind, l)
			}
		}
	}
}

// shadowWanted is the shadow reasons of TestDecisionLogLines's nth request
// of a kind: the free key's 11th to 20th pass the per-key rule's 10 (the
// 21st on are denied anyway), the trial key's 4th on its quota of 3.
func shadowWanted(kind string, nth int) string {
	switch {
	case kind == "free key" && nth > 10 && nth <= 20:
		return "waf:per-key"
	case kind == "trial key" && nth > 3:
		return "quota"
	}
	return ""
}

// TestDecisionLogFlags: a negative size is refused, not replaced by the
// default; a log that cannot be opened stops the start.
func TestDecisionLogFlags(t *testing.T) {
	_, err := New(Config{PolicyFile: examplePolicy, Store: "memory:", GRPCAddr: "127.0.0.1:0", AdminAddr: "-",
		DecisionLog: filepath.Join(t.TempDir(), "d.log"), DecisionLogMaxSize: -1})
	if err == nil || !strings.Contains(err.Error(), "decision-log-max-size -1") {
		t.Errorf("got error %v, want decision-log-max-size -1 refused", err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{PolicyFile: examplePolicy, Store: "memory:", GRPCAddr: "127.0.0.1:0", AdminAddr: "-",
		DecisionLog: filepath.Join(notDir, "d.log")})
	if err == nil || !strings.HasPrefix(err.Error(), "decision log: ") {
		t.Errorf("got error %v, want the decision log's", err)
	}
}
