package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// The worked checks of the specification ("The decision" in the package doc), over fixed instants.

func TestWorkedFreeKeyBurstThenRefill(t *testing.T) {
	e := newEngine(example(t))
	r := partner(freeKey)
	steps := []struct {
		at        time.Time
		n         int
		allowed   int
		throttled int
	}{
		{t0, 30, 20, 10},
		{t0.Add(time.Second), 11, 10, 1},
	}
	for i, s := range steps {
		got := e.tally(t, s.at, r, s.n)
		if got[policy.ReasonNone] != s.allowed || got[policy.ReasonThrottlePlan] != s.throttled || len(got) > 2 {
			t.Errorf("step %d: got %v, want %d allowed and %d throttle:plan", i, got, s.allowed, s.throttled)
		}
	}
	// The bucket is empty: the next token comes in 1/10 s.
	d := e.do(t, t0.Add(time.Second), r)
	if d.Status != 429 || d.Body != policy.BodyTooManyRequests || d.RetryAfter != 100*time.Millisecond {
		t.Errorf("got %d %s retry %v, want 429 %s retry 100ms", d.Status, d.Body, d.RetryAfter, policy.BodyTooManyRequests)
	}
}

func TestWorkedAccountTwoBatches(t *testing.T) {
	// No apis: the request meets WAF and the account bucket only (package doc, "Stage and route").
	e := newEngine(parse(t, `
version: 1
account:
  throttle: {rate: 10000, burst: 5000}
`))
	r := anon("GET", "/anything", "198.51.100.7")
	allowed := 0
	for i, at := range []time.Time{t0, t0.Add(100 * time.Millisecond)} {
		got := e.tally(t, at, r, 5000)
		if got[policy.ReasonNone]+got[policy.ReasonThrottleAccount] != 5000 {
			t.Errorf("step %d: got %v, want only allowed and throttle:account", i, got)
		}
		allowed += got[policy.ReasonNone]
	}
	if allowed != 6000 {
		t.Errorf("got %d allowed, want 6000", allowed)
	}
}

func TestWorkedSlowRate(t *testing.T) {
	e := newEngine(parse(t, `
version: 1
account:
  throttle: {rate: 0.1, burst: 1}
`))
	r := anon("GET", "/", "198.51.100.7")
	steps := []struct {
		at     time.Duration
		status int
		retry  time.Duration
	}{
		{0, 200, 0},
		{5 * time.Second, 429, 5 * time.Second},
		// Buckets count in nano-tokens: at 0.1 rps the last one
		// takes 10 ns.
		{10*time.Second - time.Nanosecond, 429, 10 * time.Nanosecond},
		{10 * time.Second, 200, 0},
		{10 * time.Second, 429, 10 * time.Second},
	}
	for i, s := range steps {
		d := e.do(t, t0.Add(s.at), r)
		if d.Status != s.status || d.RetryAfter != s.retry {
			t.Errorf("step %d (t=%v): got %d retry %v, want %d retry %v", i, s.at, d.Status, d.RetryAfter, s.status, s.retry)
		}
	}
}

func TestWorkedProAt150RPS(t *testing.T) {
	p := example(t)
	e := newEngine(p)
	r := partner(proKey)
	allowed, throttled := 0, 0
	var last policy.Decision
	for i := range 150 * 60 {
		d := e.do(t, t0.Add(time.Duration(i)*time.Second/150), r)
		switch d.Reason {
		case policy.ReasonNone:
			allowed++
			last = d
		case policy.ReasonThrottlePlan:
			throttled++
		default:
			t.Fatalf("request %d: got %s, want allowed or throttle:plan", i, d.Reason)
		}
	}
	// 200 from the burst, then 100 per second over the 59.99 s from the
	// first request to the last.
	if allowed < 6195 || allowed > 6200 || allowed+throttled != 9000 {
		t.Errorf("got %d allowed, %d throttled, want about 6200 and 2800", allowed, throttled)
	}
	// 429s use no quota: the quota counter holds exactly the allowed ones.
	key, _, _ := p.Plan("pro").QuotaKey("acme", t0)
	if used := e.st.Used(key); used != int64(allowed) {
		t.Errorf("got quota used %d, want %d (the allowed requests)", used, allowed)
	}
	for _, l := range last.AppliedLimits() {
		if l.Tier == policy.TierQuota && l.Remaining != 100000-int64(allowed) {
			t.Errorf("got quota remaining %d, want %d", l.Remaining, 100000-allowed)
		}
	}
}

func TestWorkedQuotaDayBoundary(t *testing.T) {
	e := newEngine(parse(t, quotaPolicy("{limit: 5, period: day}")))
	r := quotaRequest()
	eve := time.Date(2026, 11, 20, 23, 59, 58, 0, time.UTC)
	midnight := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	if got := e.tally(t, eve, r, 5); got[policy.ReasonNone] != 5 {
		t.Fatalf("got %v, want 5 allowed", got)
	}
	d := e.do(t, eve, r)
	if d.Status != 429 || d.Reason != policy.ReasonQuota || d.Body != policy.BodyLimitExceeded || d.RetryAfter != 2*time.Second {
		t.Errorf("6th: got %d %s %s retry %v, want 429 quota %s retry 2s", d.Status, d.Reason, d.Body, d.RetryAfter, policy.BodyLimitExceeded)
	}
	if d := e.do(t, midnight.Add(-time.Nanosecond), r); d.Reason != policy.ReasonQuota {
		t.Errorf("1ns before midnight: got %q, want quota", d.Reason)
	}
	if d := e.do(t, midnight, r); d.Verdict != policy.Allow {
		t.Errorf("at midnight: got %s %s, want allowed", d.Verdict, d.Reason)
	}
}

// quotaPolicy is a one-route policy whose plan "q" has quota and a throttle
// that never binds; quotaRequest is its request with the key of customer c1.
func quotaPolicy(quota string) string {
	return fmt.Sprintf(`
version: 1
apis:
  shop:
    stages:
      live:
        routes:
          - {match: "POST /orders", api_key: required}
default_stage: shop/live
usage_plans:
  q:
    throttle: {rate: 1000000, burst: 1000000}
    quota: %s
    stages: [shop/live]
api_keys:
  - {id: k1, customer: c1, hash: "%s", plans: [q]}
`, quota, sha(quotaKey))
}

const quotaKey = "tg_test_quota_000000000000000001"

func quotaRequest() *policy.Request {
	return &policy.Request{Method: "POST", Path: "/orders", Headers: map[string]string{"x-api-key": quotaKey}, Peer: "198.51.100.7"}
}

// TestWorkedQuotaPeriods fills a quota of 3 just before a period ends and
// expects a 429 until the next period, whose first instant admits again.
func TestWorkedQuotaPeriods(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	cases := []struct {
		name   string
		quota  string
		fill   time.Time // 3 allowed here, then a 429
		next   time.Time // the next period's first instant
		window time.Duration
	}{
		{
			// Saturday night in New York; weeks start on Sunday at
			// local midnight (05:00Z in November).
			name:   "week sunday New York",
			quota:  "{limit: 3, period: week, week_start: sunday, timezone: America/New_York}",
			fill:   time.Date(2026, 11, 14, 23, 0, 0, 0, ny),
			next:   time.Date(2026, 11, 15, 0, 0, 0, 0, ny),
			window: 7 * 24 * time.Hour,
		},
		{
			// The week holding the fall-back of 2026-11-01 is 169 hours.
			name:   "week across DST",
			quota:  "{limit: 3, period: week, timezone: America/New_York}",
			fill:   time.Date(2026, 11, 1, 12, 0, 0, 0, ny),
			next:   time.Date(2026, 11, 2, 0, 0, 0, 0, ny),
			window: 7*24*time.Hour + time.Hour,
		},
		{
			// The fall-back day is 25 hours long.
			name:   "day of the fall-back",
			quota:  "{limit: 3, period: day, timezone: America/New_York}",
			fill:   time.Date(2026, 11, 1, 0, 30, 0, 0, ny),
			next:   time.Date(2026, 11, 2, 0, 0, 0, 0, ny),
			window: 25 * time.Hour,
		},
		{
			// Anchor 31 in November (30 days): the period starts on
			// the 30th, local midnight in Berlin (23:00Z on the 29th).
			name:   "month anchor 31 in a 30-day month",
			quota:  "{limit: 3, period: month, anchor_day: 31, timezone: Europe/Berlin}",
			fill:   time.Date(2026, 11, 29, 23, 30, 0, 0, berlin),
			next:   time.Date(2026, 11, 30, 0, 0, 0, 0, berlin),
			window: 30 * 24 * time.Hour, // Oct 31 to Nov 30
		},
		{
			// Anchor 31 in April: the period runs from March 31 to
			// April 30 (DST began on March 29, before it).
			name:   "month anchor 31 in April",
			quota:  "{limit: 3, period: month, anchor_day: 31, timezone: Europe/Berlin}",
			fill:   time.Date(2026, 4, 29, 23, 59, 59, 0, berlin),
			next:   time.Date(2026, 4, 30, 0, 0, 0, 0, berlin),
			window: 30 * 24 * time.Hour,
		},
		{
			// The month from 2026-03-01 holds the spring-forward: one
			// hour short of 31 days.
			name:   "month across spring-forward",
			quota:  "{limit: 3, period: month, timezone: Europe/Berlin}",
			fill:   time.Date(2026, 3, 31, 22, 0, 0, 0, berlin),
			next:   time.Date(2026, 4, 1, 0, 0, 0, 0, berlin),
			window: 31*24*time.Hour - time.Hour,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(parse(t, quotaPolicy(c.quota)))
			r := quotaRequest()
			for i := range 3 {
				d := e.do(t, c.fill, r)
				if d.Verdict != policy.Allow {
					t.Fatalf("step %d: got %s, want allowed", i, d.Reason)
				}
				q := limit(d, policy.TierQuota)
				if q.Window != c.window || q.Reset != c.next.Sub(c.fill) {
					t.Errorf("step %d: got quota limit %+v, want window %v reset %v", i, q, c.window, c.next.Sub(c.fill))
				}
			}
			d := e.do(t, c.fill, r)
			if d.Reason != policy.ReasonQuota || d.RetryAfter != c.next.Sub(c.fill) {
				t.Errorf("4th: got %q retry %v, want quota retry %v", d.Reason, d.RetryAfter, c.next.Sub(c.fill))
			}
			if d := e.do(t, c.next.Add(-time.Nanosecond), r); d.Reason != policy.ReasonQuota {
				t.Errorf("1ns before the period: got %q, want quota", d.Reason)
			}
			if d := e.do(t, c.next, r); d.Verdict != policy.Allow {
				t.Errorf("next period: got %q, want allowed", d.Reason)
			}
		})
	}
}

// TestStripKeyWhereNoKeyIsChecked: SPEC §1, "strip_api_key: true: the key
// header is removed before the request goes upstream", also for a request
// let through on an unknown route (unknown_routes: allow) and one of no
// stage, where no key is checked; a reviewer found the key went upstream.
func TestStripKeyWhereNoKeyIsChecked(t *testing.T) {
	p := parse(t, `
version: 1
clients:
  strip_api_key: true
apis:
  a:
    stages:
      prod:
        unknown_routes: allow
        routes:
          - match: "GET /status"
            api_key: optional
default_stage: a/prod
`)
	e := newEngine(p)
	r := &policy.Request{Method: "GET", Path: "/other", Headers: map[string]string{"x-api-key": freeKey}, Peer: "198.51.100.7"}
	d := e.do(t, t0, r)
	if d.Verdict != policy.Allow {
		t.Fatalf("got %v %s, want allow", d.Verdict, d.Reason)
	}
	if !d.StripKey {
		t.Errorf("unknown route allowed with strip_api_key: true: StripKey = false, the key value goes upstream")
	}
	// No stage: the api is chosen by host, and this host is none of its.
	p = parse(t, `
version: 1
clients:
  strip_api_key: true
apis:
  a:
    hosts: [api.example.com]
    stages:
      prod:
        routes:
          - match: "GET /status"
`)
	e = newEngine(p)
	r.Host = "other.example.com"
	if d := e.do(t, t0, r); d.Verdict != policy.Allow || d.Stage != "" || !d.StripKey {
		t.Errorf("a request of no stage: %v, stage %q, StripKey %v; want allowed, no stage, the key removed", d.Verdict, d.Stage, d.StripKey)
	}
}

// TestPlanOverrideIsItsOwnBucket: a plan's route override takes the plan
// bucket's place for its route (README, "Choices where the spec is
// silent"): the route's requests take from a bucket of the override's
// throttle, the plan's other routes from the plan bucket, neither from both.
func TestPlanOverrideIsItsOwnBucket(t *testing.T) {
	p := parse(t, `
version: 1
apis:
  a:
    stages:
      prod:
        routes:
          - match: "POST /partners/{id}/transactions"
            api_key: required
          - match: "POST /partners/{id}/refunds"
            api_key: required
default_stage: a/prod
usage_plans:
  pro:
    throttle: {rate: 100, burst: 200}
    stages:
      - stage: a/prod
        routes:
          "POST /partners/{id}/transactions": {rate: 1, burst: 5}
api_keys:
  - id: acme
    hash: "`+sha(proKey)+`"
    plans: [pro]
`)
	e := newEngine(p)
	for path, want := range map[string]int{"/partners/p1/transactions": 5, "/partners/p1/refunds": 200} {
		r := &policy.Request{Method: "POST", Path: path, Headers: map[string]string{"x-api-key": proKey}, Peer: "198.51.100.7"}
		allowed := 0
		for range 300 {
			if e.do(t, t0, r).Verdict == policy.Allow {
				allowed++
			}
		}
		if allowed != want {
			t.Errorf("POST %s, 300 requests at t=0: %d allowed, want %d", path, allowed, want)
		}
	}
}
