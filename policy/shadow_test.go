package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/memory"
)

// shadowPolicy has shadow limits next to enforced ones. Rates are 0, so
// that the buckets hold exactly their burst at a fixed instant. The keys:
// trial-key (plan trial, all shadow), basic-key (plan basic: enforced
// throttle, shadow quota), mixed-key (plan mixed: shadow plan whose quota
// is enforced).
const shadowPolicy = `
version: 1
apis:
  shop:
    stages:
      prod:
        routes:
          - match: "GET /items"
            api_key: required
            throttle: {rate: 0, burst: 5}
          - match: "GET /open"
          - match: "GET /shadowed"
            throttle: {rate: 0, burst: 2, mode: shadow}
default_stage: shop/prod
usage_plans:
  trial:
    mode: shadow
    throttle: {rate: 0, burst: 2}
    quota: {limit: 3, period: day}
    stages: [shop/prod]
  basic:
    throttle: {rate: 0, burst: 4}
    quota: {limit: 10, period: day, mode: shadow}
    stages: [shop/prod]
  mixed:
    mode: shadow
    throttle: {rate: 0, burst: 1}
    quota: {limit: 2, period: day, mode: enforce}
    stages: [shop/prod]
api_keys:
  - {id: trial-key, hash: "` + "%TRIAL%" + `", plans: [trial]}
  - {id: basic-key, hash: "` + "%BASIC%" + `", plans: [basic]}
  - {id: mixed-key, hash: "` + "%MIXED%" + `", plans: [mixed]}
waf:
  ip_sets:
    watch: ["203.0.113.0/24"]
    bad: ["203.0.113.128/25"]
  rules:
    - {name: watch-net, ip_set: watch, action: block, mode: shadow}
    - {name: bad-net, ip_set: bad, action: block}
    - {name: per-ip, rate_based: {limit: 3, window: 1m, key: ip}, scope: {routes: ["GET /open"]}, action: block, mode: shadow}
`

const (
	trialKey = "tg_shadow_trial_000000000001"
	basicKey = "tg_shadow_basic_000000000001"
	mixedKey = "tg_shadow_mixed_000000000001"
)

// shadowPolicies returns shadowPolicy, and the same policy with every
// limit enforced (whose state keys are the same: a limit switched between
// modes keeps its state).
func shadowPolicies(t *testing.T) (shadow, enforced *policy.Policy) {
	t.Helper()
	text := strings.NewReplacer("%TRIAL%", sha(trialKey), "%BASIC%", sha(basicKey), "%MIXED%", sha(mixedKey)).Replace(shadowPolicy)
	return parse(t, text), parse(t, strings.ReplaceAll(text, "mode: shadow", "mode: enforce"))
}

// items is a request on the keyed route from ip.
func items(key, ip string) *policy.Request {
	return &policy.Request{Method: "GET", Path: "/items", Headers: map[string]string{"x-api-key": key}, Peer: ip}
}

// TestShadowOps: shadow limits next to enforcing ones, request by request
// at one instant: a shadow limit never denies, names itself in
// Decision.Shadow when it would have, takes only when it would admit and
// the enforced limits admit; the enforced limits keep "a rejected request
// consumes nothing". After each sequence the same store is read through
// the enforced twin of the policy, which sees what the shadow limits took.
func TestShadowOps(t *testing.T) {
	sp, ep := shadowPolicies(t)
	type step struct {
		status int
		reason policy.Reason
		shadow string
		limits string // the enforced limits, as the headers report them
	}
	ok := func(shadow, limits string) step { return step{200, "", shadow, limits} }
	cases := []struct {
		name  string
		r     *policy.Request
		steps []step
		// then is the first answer of the enforced twin on the same state.
		then step
	}{
		{"shadow plan next to an enforced route bucket", items(trialKey, "198.51.100.7"), []step{
			ok("", "route:4/5"),
			ok("", "route:3/5"),
			ok("throttle:plan", "route:2/5"),                   // the plan bucket is empty
			ok("throttle:plan,quota", "route:1/5"),             // and the quota used up (3)
			ok("throttle:plan,quota", "route:0/5"),             //
			{429, policy.ReasonThrottleRoute, "", "route:0/5"}, // denied anyway: no shadow reason
			{429, policy.ReasonThrottleRoute, "", "route:0/5"}, //
		}, step{429, policy.ReasonThrottlePlan, "", "plan:0/2 route:0/5 quota:0/3"}},
		{"shadow quota: a rejected request consumes nothing", items(basicKey, "198.51.100.7"), []step{
			ok("", "plan:3/4 route:4/5"),
			ok("", "plan:2/4 route:3/5"),
			ok("", "plan:1/4 route:2/5"),
			ok("", "plan:0/4 route:1/5"),
			{429, policy.ReasonThrottlePlan, "", "plan:0/4 route:1/5"},
			{429, policy.ReasonThrottlePlan, "", "plan:0/4 route:1/5"},
		}, step{429, policy.ReasonThrottlePlan, "", "plan:0/4 route:1/5 quota:6/10"}},
		{"a limit's own mode beats its plan's", items(mixedKey, "198.51.100.7"), []step{
			ok("", "quota:1/2 route:4/5"),
			ok("throttle:plan", "quota:0/2 route:3/5"),
			{429, policy.ReasonQuota, "", "quota:0/2 route:3/5"},
		}, step{429, policy.ReasonThrottlePlan, "", "plan:0/1 quota:0/2 route:3/5"}},
		{"shadow route bucket", anon("GET", "/shadowed", "198.51.100.7"), []step{
			ok("", ""), ok("", ""), ok("throttle:route", ""), ok("throttle:route", ""),
		}, step{429, policy.ReasonThrottleRoute, "", "route:0/2"}},
		{"shadow ip_set rule before an enforced one", anon("GET", "/open", "203.0.113.7"), []step{
			ok("waf:watch-net", ""), ok("waf:watch-net", ""),
		}, step{403, "waf:watch-net", "", ""}},
		{"an enforced rule still blocks", anon("GET", "/open", "203.0.113.200"), []step{
			{403, "waf:bad-net", "", ""},
		}, step{403, "waf:watch-net", "", ""}},
		{"shadow rate rule", anon("GET", "/open", "198.51.100.9"), []step{
			ok("", ""), ok("", ""), ok("", ""), ok("waf:per-ip", ""), ok("waf:per-ip", ""),
		}, step{403, "waf:per-ip", "", ""}},
		{"shadow WAF rules and a shadow plan together", items(trialKey, "203.0.113.9"), []step{
			ok("waf:watch-net", "route:4/5"),
			ok("waf:watch-net", "route:3/5"),
			ok("waf:watch-net,throttle:plan", "route:2/5"),
			ok("waf:watch-net,throttle:plan,quota", "route:1/5"),
		}, step{403, "waf:watch-net", "", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(sp)
			check := func(i int, d policy.Decision, want step) {
				t.Helper()
				got := step{d.Status, d.Reason, d.Shadow, limits(d)}
				if got != want {
					t.Errorf("request %d: got %+v, want %+v", i, got, want)
				}
			}
			for i, want := range c.steps {
				check(i+1, e.do(t, t0, c.r), want)
			}
			e.p = ep
			check(len(c.steps)+1, e.do(t, t0, c.r), c.then)
		})
	}
}

// TestShadowUsage: a request a shadow limit would have denied is admitted,
// so it counts in the customer's usage history.
func TestShadowUsage(t *testing.T) {
	sp, _ := shadowPolicies(t)
	e := newEngine(sp)
	for range 4 {
		e.do(t, t0, items(trialKey, "198.51.100.7"))
	}
	k := sp.Plan("trial").UsageKey("trial-key", t0)
	if used, _, err := e.st.Counter(k); err != nil || used != 4 {
		t.Errorf("usage: got %d, %v, want 4", used, err)
	}
}

// TestShadowModeErrors: mode is enforce or shadow, and shadow is for
// limits that deny.
func TestShadowModeErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"bad mode", `
version: 1
account: {throttle: {rate: 1, burst: 1, mode: dry-run}}`, `test.yaml: account.throttle.mode: "dry-run" is not one of enforce, shadow`},
		{"bad plan mode", `
version: 1
usage_plans: {p: {mode: 1}}`, `test.yaml: usage_plans.p.mode: 1 is not one of enforce, shadow`},
		{"allow rule", `
version: 1
waf: {ip_sets: {s: ["192.0.2.0/24"]}, rules: [{name: r, ip_set: s, action: allow, mode: shadow}]}`,
			`test.yaml: waf.rules[0].mode: "shadow" is only allowed with action: block (allow and count rules never deny)`},
		{"alerts on a shadow quota", `
version: 1
notifications: {sinks: {ops: {webhook: {url: "http://hooks.example/x"}}}}
usage_plans: {p: {mode: shadow, quota: {limit: 5, period: day}, alerts: {thresholds: [80], sinks: [ops]}}}`,
			`test.yaml: usage_plans.p.alerts: needs an enforced quota: usage_plans.p.quota is in shadow mode, so its alerts would never fire`},
		{"count rule", `
version: 1
waf: {rules: [{name: r, rate_based: {limit: 1, window: 1m, key: ip}, action: count, mode: shadow}]}`,
			`test.yaml: waf.rules[0].mode: "shadow" is only allowed with action: block (allow and count rules never deny)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := policyfile.Parse("test.yaml", []byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestShadowLimits: the policy lists its shadow limits by field path, a
// plan's mode counting for each of its limits that has no mode of its own.
func TestShadowLimits(t *testing.T) {
	sp, ep := shadowPolicies(t)
	want := "apis.shop.stages.prod.routes[2].throttle usage_plans.basic.quota usage_plans.trial.throttle usage_plans.trial.quota usage_plans.mixed.throttle waf.rules[0] waf.rules[2]"
	got := strings.Join(sp.ShadowLimits(), " ")
	if fields := strings.Fields(got); len(fields) != 7 || !sameSet(fields, strings.Fields(want)) {
		t.Errorf("got %q, want %q", got, want)
	}
	if n := len(ep.ShadowLimits()); n != 0 {
		t.Errorf("the enforced twin: got %d shadow limits, want none", n)
	}
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// wafPressurePolicy: one rate rule, 3 a minute per IP, on an open route;
// mode is filled in.
const wafPressurePolicy = `
version: 1
apis:
  shop:
    stages:
      prod:
        routes:
          - match: "GET /open"
default_stage: shop/prod
waf:
  rules:
    - {name: per-ip, rate_based: {limit: 3, window: 1m, key: ip}, action: block, mode: %s}
`

// TestShadowRateRuleUnderCounterPressure: a client over a shadow rate
// rule's limit stays "would be blocked" when the store is short of WAF
// counters, as it stays blocked under the enforced rule: the store keeps
// the counters closest to their limits, and a shadow rule's hits carry
// the rule's limit (Hit.Watch), not one that is never reached.
func TestShadowRateRuleUnderCounterPressure(t *testing.T) {
	for _, mode := range []string{"enforce", "shadow"} {
		t.Run(mode, func(t *testing.T) {
			p := parse(t, fmt.Sprintf(wafPressurePolicy, mode))
			e := &engine{p: p, st: memory.New(memory.WithShards(1), memory.WithMaxCounters(8))}
			heavy := anon("GET", "/open", "198.51.100.1")
			for range 5 {
				e.do(t, t0, heavy) // over the limit of 3
			}
			// Other clients, one request each: the shard fills up.
			for i := range 20 {
				e.do(t, t0, anon("GET", "/open", fmt.Sprintf("192.0.2.%d", i+1)))
			}
			d := e.do(t, t0, heavy)
			blocked := d.Reason == "waf:per-ip" || d.Shadow == "waf:per-ip"
			if !blocked {
				t.Errorf("heavy client after pressure: got status %d reason %q shadow %q, want waf:per-ip (blocked or would be)", d.Status, d.Reason, d.Shadow)
			}
		})
	}
}
