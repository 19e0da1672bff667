package server

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestShadowAdmin: a plan in shadow mode is the operator's trial, not the
// customer's contract: /v1/me does not show its limits, and the operator's
// quota views say "mode":"shadow" and count what the shadow quota took.
func TestShadowAdmin(t *testing.T) {
	h := serve(t, testPolicy(t, "  trial:                                           # small enough to see an alert by hand\n",
		"  trial:\n    mode: shadow\n", "    alerts: {thresholds: [80], sinks: [ops]}\n", ""), nil)
	const trial = "tg_demo_trial_000000000000001"
	// 25 requests: the plan's burst is 20 and its quota 10, both shadow.
	if n := h.checks(trial, 25); n != 25 {
		t.Fatalf("1: got %d allowed, want 25 (the plan is in shadow mode)", n)
	}
	a := h.callWith("GET", "/v1/me", "", map[string]string{"x-api-key": trial}).want(t, "2 me", 200, "")
	if got, want := jsonOf(t, a.json["plans"]), `[{"forecast":null,"plan":"trial","quota":null,"stages":["payments/prod"],"throttle":null}]`; got != want {
		t.Errorf("2: me: got %s, want %s", got, want)
	}
	a = h.call("POST", "/v1/usage/wayne/grant", `{"plan":"trial","requests":1}`).want(t, "3", 200, "")
	if got := jsonOf(t, a.json); !strings.Contains(got, `"mode":"shadow"`) || !strings.HasSuffix(got, `"used":10}`) {
		t.Errorf("3: got %s, want mode shadow and 10 used (the shadow quota took while it admitted)", got)
	}
}

// TestShadowUtilization: a route bucket in shadow mode has its
// tollgate_limit_utilization_ratio, counted from the requests it admitted
// (and took a token for): how close it is to denying, which is what an
// operator trialing it wants to see.
func TestShadowUtilization(t *testing.T) {
	text := strings.Replace(utilPolicy, "throttle: {rate: 20, burst: 20}", "throttle: {rate: 20, burst: 20, mode: shadow}", 1)
	h := serve(t, text, nil)
	items := utilSeries("route", "prod", "GET /items")
	for i := range 600 {
		h.clock.Set(t0.Add(time.Duration(i) * 100 * time.Millisecond))
		if st := h.checkRoute("GET", "/items"); st != 200 {
			t.Fatalf("request %d: got status %d, want 200", i, st)
		}
	}
	h.clock.Set(t0.Add(60 * time.Second))
	h.wantUtil("after the minute", map[string]float64{items: 0.5})
}

// TestShadowOnRedisThenEnforce: two replicas on a real Redis share a shadow
// quota of 3 a day (the trial plan's): all 6 requests of the trial key are
// allowed, the last 3 with x-tollgate-shadow: quota, and the quota took only
// the 3 it admitted. Switched to enforce by a reload, the quota starts from
// what it tracked: the next request is denied.
func TestShadowOnRedisThenEnforce(t *testing.T) {
	testclock.AwayFromMidnight(t)
	srv := redistest.Start(t)
	// The real clock: Redis expires keys on its own.
	onRedis := func(c *Config) { c.Store, c.Now = srv.URL(), nil }
	shadow := testPolicy(t, "quota: {limit: 10, period: day}", "quota: {limit: 3, period: day, mode: shadow}",
		"    alerts: {thresholds: [80], sinks: [ops]}\n", "")
	a, b := serve(t, shadow, onRedis), serve(t, shadow, onRedis)
	const trial = "tg_demo_trial_000000000000001"
	for i := range 6 {
		h := []*harness{a, b}[i%2]
		d := h.check(trial)
		want := ""
		if i >= 3 {
			want = "quota"
		}
		if d.status != 200 || d.upstream["x-tollgate-shadow"] != want {
			t.Errorf("1: request %d: got %d, x-tollgate-shadow %q, want 200, %q", i, d.status, d.upstream["x-tollgate-shadow"], want)
		}
		if strings.Contains(d.headers["ratelimit-policy"], "quota") {
			t.Errorf("1: request %d: a shadow quota in RateLimit-Policy %q", i, d.headers["ratelimit-policy"])
		}
	}
	a.call("POST", "/v1/usage/wayne/grant", `{"plan":"trial","requests":1}`).want(t, "2", 200, `"used":3}`)

	enforced := strings.Replace(shadow, "mode: shadow", "mode: enforce", 1)
	if err := os.WriteFile(b.policy, []byte(enforced), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.s.Reload(); err != nil {
		t.Fatal(err)
	}
	// 3 used of 3 + 1 granted: one more, then Limit Exceeded.
	if d := b.check(trial); d.status != 200 || !strings.Contains(d.headers["ratelimit"], `"quota";r=0`) {
		t.Errorf("3: got %d, RateLimit %q, want 200 with the quota's last request", d.status, d.headers["ratelimit"])
	}
	if d := b.check(trial); d.status != 429 || d.headers["x-tollgate-reason"] != "quota" {
		t.Errorf("3: got %d %q, want 429 quota", d.status, d.headers["x-tollgate-reason"])
	}
}
