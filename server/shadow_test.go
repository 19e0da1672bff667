package server

import (
	"strings"
	"testing"
	"time"
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
