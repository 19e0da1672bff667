package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// TestExampleAnswers walks every answer of the payments example: each step
// is a fresh engine unless it says warm (then the previous steps' state is
// kept).
func TestExampleAnswers(t *testing.T) {
	p := example(t)
	deny := example(t, "unknown_routes: allow", "unknown_routes: deny")
	type want struct {
		status int
		reason policy.Reason
		body   string
	}
	allowed := want{200, policy.ReasonNone, ""}
	forbidden := func(r policy.Reason) want { return want{403, r, policy.BodyForbidden} }
	cases := []struct {
		name string
		p    *policy.Policy
		r    *policy.Request
		want want
	}{
		{"public route", p, anon("POST", "/transactions", "198.51.100.7:40000"), allowed},
		{"status", p, anon("GET", "/status", "198.51.100.7"), allowed},
		{"unknown route allowed", p, anon("GET", "/nope", "198.51.100.7"), allowed},
		{"unknown route denied", deny, anon("GET", "/nope", "198.51.100.7"), want{403, policy.ReasonRouteUnknown, policy.BodyMissingToken}},
		{"wrong method is unknown", deny, anon("GET", "/transactions", "198.51.100.7"), want{403, policy.ReasonRouteUnknown, policy.BodyMissingToken}},
		{"blocklist v4", p, anon("POST", "/transactions", "203.0.113.9:5000"), forbidden("waf:blocked-networks")},
		{"blocklist v6", p, anon("POST", "/transactions", "[2001:db8:bad::1]:5000"), forbidden("waf:blocked-networks")},
		{"blocklist v4-mapped v6", p, anon("POST", "/transactions", "::ffff:203.0.113.9"), forbidden("waf:blocked-networks")},
		{"blocklist before unknown route", deny, anon("GET", "/nope", "203.0.113.9"), forbidden("waf:blocked-networks")},
		{"status skips waf", p, anon("GET", "/status", "203.0.113.9"), allowed},
		{"key missing", p, partner(""), forbidden(policy.ReasonKeyMissing)},
		{"key empty", p, &policy.Request{Method: "POST", Path: "/partners/1/transactions", Headers: map[string]string{"x-api-key": ""}, Peer: "198.51.100.7"}, forbidden(policy.ReasonKeyMissing)},
		{"key unknown", p, partner("tg_no_such_key_00000000000001"), forbidden(policy.ReasonKeyUnknown)},
		{"key malformed", p, partner("short"), forbidden(policy.ReasonKeyUnknown)},
		{"key disabled", p, partner(disabledKey), forbidden(policy.ReasonKeyDisabled)},
		{"key expired", p, partner(expiredKey), forbidden(policy.ReasonKeyExpired)},
		{"free", p, partner(freeKey), allowed},
		{"pro", p, partner(proKey), allowed},
		{"enterprise", p, partner(entKey), allowed},
		{"no method", p, anon("", "/status", "198.51.100.7"), want{400, policy.ReasonInvalid, policy.BodyBadRequest}},
		{"relative path", p, anon("GET", "status", "198.51.100.7"), want{400, policy.ReasonInvalid, policy.BodyBadRequest}},
		{"bad peer", p, anon("GET", "/status", "pipe"), want{400, policy.ReasonInvalid, policy.BodyBadRequest}},
		{"named unknown stage", p, &policy.Request{Method: "GET", Path: "/status", Peer: "198.51.100.7", API: "payments", Stage: "beta"}, want{403, policy.ReasonRouteUnknown, policy.BodyMissingToken}},
		{"named stage", p, &policy.Request{Method: "GET", Path: "/status", Peer: "198.51.100.7", API: "payments", Stage: "prod"}, allowed},
	}
	for _, c := range cases {
		d := newEngine(c.p).do(t, t0, c.r)
		if got := (want{d.Status, d.Reason, d.Body}); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
		if (d.Verdict == policy.Allow) != (c.want.status == 200) {
			t.Errorf("%s: got verdict %s with status %d", c.name, d.Verdict, d.Status)
		}
	}
}

func TestExampleKeyedAllowReportsEveryLimit(t *testing.T) {
	e := newEngine(example(t))
	d := e.do(t, t0, partner(proKey))
	if d.Customer != "acme" || d.KeyID != "acme-2026a" || d.Plan != "pro" || d.API != "payments" || d.Stage != "prod" ||
		d.Route != "POST /partners/{id}/transactions" {
		t.Errorf("got %+v, want acme / acme-2026a / pro on payments/prod", d)
	}
	const want = "plan:199/200 route:1999/2000 account:4999/5000 stage:9999/10000 quota:99999/100000"
	if got := limits(d); got != want {
		t.Errorf("got limits %s, want %s", got, want)
	}
	if q := limit(d, policy.TierQuota); q.Window != 24*time.Hour || q.Reset != 12*time.Hour {
		t.Errorf("got quota window %v reset %v, want 24h and 12h (noon UTC)", q.Window, q.Reset)
	}
	if pl := limit(d, policy.TierPlan); pl.Window != 2*time.Second || pl.Reset != 10*time.Millisecond {
		t.Errorf("got plan window %v reset %v, want 2s and 10ms", pl.Window, pl.Reset)
	}
	// The anonymous route meets no plan and no quota.
	d = e.do(t, t0, anon("GET", "/status", "198.51.100.7"))
	if got, want := limits(d), "route:999/1000 account:4998/5000 stage:9998/10000"; got != want {
		t.Errorf("status: got limits %s, want %s", got, want)
	}
}

// TestRejectedConsumesNothing: requests denied by a later bucket take no
// token from an earlier one, nor any quota.
func TestRejectedConsumesNothing(t *testing.T) {
	p := parse(t, `
version: 1
apis:
  shop:
    stages:
      live:
        routes:
          - match: "POST /orders"
            api_key: required
            throttle: {rate: 1, burst: 3}
default_stage: shop/live
usage_plans:
  q:
    throttle: {rate: 0.000001, burst: 5}
    quota: {limit: 4, period: day}
    stages: [shop/live]
api_keys:
  - {id: k1, customer: c1, hash: "`+sha(quotaKey)+`", plans: [q]}
`)
	e := newEngine(p)
	r := quotaRequest()
	if got := e.tally(t, t0, r, 3); got[policy.ReasonNone] != 3 {
		t.Fatalf("got %v, want 3 allowed", got)
	}
	if got := e.tally(t, t0, r, 100); got[policy.ReasonThrottleRoute] != 100 {
		t.Fatalf("got %v, want 100 throttle:route", got)
	}
	// Had the 100 429s taken plan tokens or quota, this would fail.
	d := e.do(t, t0.Add(time.Second), r)
	if d.Verdict != policy.Allow {
		t.Fatalf("after a second: got %s, want allowed", d.Reason)
	}
	if got, want := limits(d), "route:0/3 quota:0/4 plan:1/5"; got != want {
		t.Errorf("got limits %s, want %s", got, want)
	}
	// Now the quota is spent; a quota 429 takes no plan token.
	d = e.do(t, t0.Add(2*time.Second), r)
	if d.Reason != policy.ReasonQuota {
		t.Fatalf("got %q, want quota", d.Reason)
	}
	if got, want := limits(d), "quota:0/4 plan:1/5 route:1/3"; got != want {
		t.Errorf("denied: got limits %s, want %s (nothing taken)", got, want)
	}
	// When several limits fail, the reason is the first tier in the
	// order and Retry-After the longest wait.
	e2 := newEngine(p)
	e2.tally(t, t0, r, 3)
	d = e2.do(t, t0, r)
	if d.Reason != policy.ReasonThrottleRoute || d.RetryAfter != time.Second {
		t.Errorf("got %q retry %v, want throttle:route retry 1s", d.Reason, d.RetryAfter)
	}
}

func TestThrottleTiers(t *testing.T) {
	p := parse(t, `
version: 1
account:
  throttle: {rate: 1, burst: 6}
apis:
  shop:
    stages:
      live:
        throttle: {rate: 1, burst: 4}
        route_defaults:
          throttle: {rate: 1, burst: 2}
        routes:
          - {match: "GET /a"}
          - {match: "GET /b"}
          - {match: "GET /c"}
          - {match: "GET /d", throttle: {rate: 0, burst: 0}}
      other:
        routes:
          - {match: "GET /{any+}"}
default_stage: shop/live
`)
	e := newEngine(p)
	steps := []struct {
		r    *policy.Request
		n    int
		want map[policy.Reason]int
	}{
		{anon("GET", "/a", "198.51.100.7"), 3, map[policy.Reason]int{"": 2, policy.ReasonThrottleRoute: 1}},
		{anon("GET", "/b", "198.51.100.7"), 3, map[policy.Reason]int{"": 2, policy.ReasonThrottleRoute: 1}},
		// The stage bucket (4) is spent by /a and /b.
		{anon("GET", "/c", "198.51.100.7"), 1, map[policy.Reason]int{policy.ReasonThrottleStage: 1}},
		{&policy.Request{Method: "GET", Path: "/x", Peer: "198.51.100.7", API: "shop", Stage: "other"}, 3, map[policy.Reason]int{"": 2, policy.ReasonThrottleAccount: 1}},
	}
	for i, s := range steps {
		if got := e.tally(t, t0, s.r, s.n); !equalCounts(got, s.want) {
			t.Errorf("step %d: got %v, want %v", i, got, s.want)
		}
	}
	// The 0/0 switch stops everything and tells clients to come back in
	// an hour.
	d := newEngine(p).do(t, t0, anon("GET", "/d", "198.51.100.7"))
	if d.Reason != policy.ReasonThrottleRoute || d.RetryAfter != time.Hour {
		t.Errorf("0/0: got %q retry %v, want throttle:route retry 1h", d.Reason, d.RetryAfter)
	}
}

func equalCounts(a, b map[policy.Reason]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestQuotaOfExample(t *testing.T) {
	e := newEngine(example(t))
	r := partner(freeKey)
	// Free: 10 rps, 1,000 a day. At 10 per second the bucket never binds.
	for i := range 1000 {
		if d := e.do(t, t0.Add(time.Duration(i)*100*time.Millisecond), r); d.Verdict != policy.Allow {
			t.Fatalf("request %d: got %s, want allowed", i, d.Reason)
		}
	}
	at := t0.Add(100 * time.Second)
	d := e.do(t, at, r)
	if d.Status != 429 || d.Reason != policy.ReasonQuota || d.Body != policy.BodyLimitExceeded {
		t.Errorf("1001st: got %d %q %s, want 429 quota %s", d.Status, d.Reason, d.Body, policy.BodyLimitExceeded)
	}
	if want := 12*time.Hour - 100*time.Second; d.RetryAfter != want {
		t.Errorf("1001st: got retry %v, want %v (until midnight UTC)", d.RetryAfter, want)
	}
}

func TestWAFRateRule(t *testing.T) {
	e := newEngine(example(t))
	r := anon("POST", "/transactions", "198.51.100.7")
	other := anon("POST", "/transactions", "198.51.100.8")
	// 1,000 per 5 minutes per IP, spread so that no bucket binds.
	for i := range 1000 {
		if d := e.do(t, t0.Add(time.Duration(i)*time.Millisecond), r); d.Verdict != policy.Allow {
			t.Fatalf("request %d: got %s, want allowed", i, d.Reason)
		}
	}
	at := t0.Add(time.Second)
	if d := e.do(t, at, r); d.Status != 403 || d.Reason != "waf:transactions-per-ip" || d.Body != policy.BodyForbidden {
		t.Errorf("1001st: got %d %q %s, want 403 waf:transactions-per-ip", d.Status, d.Reason, d.Body)
	}
	if d := e.do(t, at, other); d.Verdict != policy.Allow {
		t.Errorf("another ip: got %s, want allowed", d.Reason)
	}
	// Out of scope: the rule counts only POST /transactions.
	if d := e.do(t, at, anon("GET", "/nope", "198.51.100.7")); d.Verdict != policy.Allow {
		t.Errorf("out of scope: got %s, want allowed", d.Reason)
	}
	// Blocked requests are counted too: the window slides, but the
	// blocked ones keep the count over the limit.
	for i := range 500 {
		e.do(t, at.Add(time.Duration(i)*time.Millisecond), r)
	}
	later := t0.Add(5*time.Minute + 600*time.Millisecond)
	if d := e.do(t, later, r); d.Reason != "waf:transactions-per-ip" {
		t.Errorf("5m later, blocked ones counted: got %q, want waf:transactions-per-ip", d.Reason)
	}
	if d := e.do(t, t0.Add(11*time.Minute), r); d.Verdict != policy.Allow {
		t.Errorf("two windows later: got %s, want allowed", d.Reason)
	}
}

func TestClientIPSources(t *testing.T) {
	base := `
version: 1
clients:
  ip: %s
waf:
  ip_sets: {bad: ["203.0.113.0/24"]}
  rules:
    - {name: bad, ip_set: bad, action: block}
`
	policyWith := func(ip string) *policy.Policy { return parse(t, strings.Replace(base, "%s", ip, 1)) }
	xff0 := policyWith("{source: xff}")
	xff1 := policyWith("{source: xff, xff_trusted_hops: 1}")
	hdr := policyWith("{source: header, header: x-real-ip}")
	req := func(headers map[string]string) *policy.Request {
		return &policy.Request{Method: "GET", Path: "/", Peer: "10.0.0.1:3000", Headers: headers}
	}
	cases := []struct {
		name  string
		p     *policy.Policy
		r     *policy.Request
		block bool
	}{
		{"xff right-most", xff0, req(map[string]string{"x-forwarded-for": "198.51.100.1, 203.0.113.9"}), true},
		{"xff right-most good", xff0, req(map[string]string{"x-forwarded-for": "203.0.113.9, 198.51.100.1"}), false},
		{"xff one trusted hop", xff1, req(map[string]string{"x-forwarded-for": "198.51.100.1,203.0.113.9, 10.1.1.1"}), true},
		{"xff too short falls back to peer", xff1, req(map[string]string{"x-forwarded-for": "203.0.113.9"}), false},
		{"xff missing falls back to peer", xff0, req(nil), false},
		{"header", hdr, req(map[string]string{"x-real-ip": "203.0.113.200"}), true},
		{"header ignores xff", hdr, req(map[string]string{"x-forwarded-for": "203.0.113.9"}), false},
	}
	for _, c := range cases {
		d := newEngine(c.p).do(t, t0, c.r)
		if got := d.Reason == "waf:bad"; got != c.block {
			t.Errorf("%s: got %q, want blocked %v", c.name, d.Reason, c.block)
		}
	}
	// A client address that cannot be parsed is a bad request.
	d := newEngine(xff0).do(t, t0, req(map[string]string{"x-forwarded-for": "not-an-ip"}))
	if d.Status != 400 || d.Reason != policy.ReasonInvalid {
		t.Errorf("bad xff: got %d %q, want 400 request:invalid", d.Status, d.Reason)
	}
}

func TestStageSelection(t *testing.T) {
	p := parse(t, `
version: 1
apis:
  a:
    hosts: ["a.example.com"]
    stages:
      only:
        routes: [{match: "GET /x"}]
  b:
    hosts: ["b.example.com"]
    stages:
      one:
        routes: [{match: "GET /x"}]
      two:
        routes: [{match: "GET /x"}]
default_stage: b/two
`)
	cases := []struct {
		r    policy.Request
		want string
	}{
		{policy.Request{Host: "a.example.com"}, "a/only"},
		{policy.Request{Host: "A.Example.com:8443"}, "a/only"},
		{policy.Request{Host: "a.example.com."}, "a/only"}, // fully qualified: it fell to default_stage
		{policy.Request{Host: "a.example.com.:443"}, "a/only"},
		{policy.Request{Host: "b.example.com"}, "b/two"}, // several stages: default_stage
		{policy.Request{Host: "c.example.com"}, "b/two"},
		{policy.Request{Host: "a.example.com", API: "b", Stage: "one"}, "b/one"},
		{policy.Request{Stage: "b/one"}, "b/one"},
		{policy.Request{API: "a"}, "a/only"},
	}
	for i, c := range cases {
		r := c.r
		r.Method, r.Path, r.Peer = "GET", "/x", "198.51.100.7"
		d := newEngine(p).do(t, t0, &r)
		if got := d.API + "/" + d.Stage; got != c.want || d.Verdict != policy.Allow {
			t.Errorf("step %d: got %s (%s), want %s", i, got, d.Reason, c.want)
		}
	}
}

// batchRecorder is a State that admits everything and keeps the last batch's
// usage key.
type batchRecorder struct{ usage policy.Key }

func (r *batchRecorder) Apply(now time.Time, b *policy.Batch) error {
	b.Blocked, b.Taken = -1, true
	for i := range b.Ops {
		b.Ops[i].OK = true
	}
	r.usage = b.Usage
	return nil
}

func (r *batchRecorder) Release(policy.Key, string) error { return nil }

func TestUsageKeyOfKeyedRequests(t *testing.T) {
	p := example(t)
	pro := p.Plan("pro")
	cases := []struct {
		r    *policy.Request
		want policy.Key
	}{
		{partner(proKey), pro.UsageKey("acme", t0)},
		{partner(entKey), p.Plan("enterprise").UsageKey("globex", t0)}, // no quota, still counted
		{anon("GET", "/status", "198.51.100.7"), policy.Key{}},
		{partner(disabledKey), policy.Key{}},
	}
	for i, c := range cases {
		var rec batchRecorder
		if _, err := p.Evaluate(t0, c.r, &rec, nil); err != nil {
			t.Fatal(err)
		}
		if rec.usage != c.want {
			t.Errorf("step %d: got usage key %+v, want %+v", i, rec.usage, c.want)
		}
	}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	if k := pro.UsageKey("acme", t0); k.Period != day.Unix() || k.Subject != "acme" || p.LimitName(k.Limit) != "usage|pro" {
		t.Errorf("got %+v (%s), want the UTC day %d of acme on usage|pro", k, p.LimitName(k.Limit), day.Unix())
	}
	if k := pro.UsageKey("acme", time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)); k.Period != -86400 {
		t.Errorf("before 1970: got period %d, want -86400", k.Period)
	}
}
