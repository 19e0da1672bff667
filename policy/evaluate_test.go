package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/memory"
)

// Demo key values of examples/payments/policy.yaml.
const (
	freeKey     = "tg_demo_free_0000000000000001"
	proKey      = "tg_demo_pro_00000000000000001"
	entKey      = "tg_demo_ent_00000000000000001"
	disabledKey = "tg_demo_disabled_000000000001"
	expiredKey  = "tg_demo_expired_0000000000001"
)

var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

func loadExample(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policyfile.Load("../examples/payments/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policyfile.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func partner(key string) *policy.Request {
	return &policy.Request{
		Method: "POST", Path: "/partners/p1/transactions", Host: "api.example.com",
		Peer: "198.51.100.7", Headers: map[string]string{"x-api-key": key},
	}
}

// counts evaluates n copies of r at now and counts the statuses.
func counts(t testing.TB, p *policy.Policy, st policy.State, r *policy.Request, n int, now time.Time) map[int]int {
	t.Helper()
	c := map[int]int{}
	for range n {
		d, err := p.Evaluate(now, r, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		c[d.Status]++
	}
	return c
}

// TestWorkedFreeKeyBurst is SPEC §3: a free key, 30 requests at t=0: 20
// allowed, 10 × 429; at t=1.0 a batch of 11: 10 allowed, 1 × 429.
func TestWorkedFreeKeyBurst(t *testing.T) {
	p, st := loadExample(t), memory.New()
	steps := []struct {
		at         time.Duration
		n          int
		allow, thr int
	}{
		{0, 30, 20, 10},
		{time.Second, 11, 10, 1},
	}
	for i, s := range steps {
		c := counts(t, p, st, partner(freeKey), s.n, t0.Add(s.at))
		if c[200] != s.allow || c[429] != s.thr {
			t.Errorf("step %d: got %d allowed, %d throttled; want %d, %d", i, c[200], c[429], s.allow, s.thr)
		}
	}
	d, _ := p.Evaluate(t0.Add(time.Second), partner(freeKey), st, nil)
	if d.Reason != policy.ReasonThrottlePlan || d.Body != policy.BodyTooManyRequests || d.RetryAfter != 100*time.Millisecond {
		t.Errorf("got reason %q body %q retry %v, want throttle:plan, Too Many Requests, 100ms", d.Reason, d.Body, d.RetryAfter)
	}
}

// TestWorkedAccountCeiling is SPEC §3: account 10,000/5,000: 5,000 at t=0
// then 5,000 at t=0.100 → exactly 6,000 allowed.
func TestWorkedAccountCeiling(t *testing.T) {
	p := mustParse(t, "version: 1\naccount:\n  throttle: {rate: 10000, burst: 5000}\n")
	st := memory.New()
	r := &policy.Request{Method: "GET", Path: "/anything", Peer: "192.0.2.1"}
	allowed := counts(t, p, st, r, 5000, t0)[200] + counts(t, p, st, r, 5000, t0.Add(100*time.Millisecond))[200]
	if allowed != 6000 {
		t.Errorf("got %d allowed, want 6000", allowed)
	}
	d, _ := p.Evaluate(t0.Add(100*time.Millisecond), r, st, nil)
	if d.Reason != policy.ReasonThrottleAccount || d.RetryAfter != 100*time.Microsecond {
		t.Errorf("got %q retry %v, want throttle:account retry 100µs", d.Reason, d.RetryAfter)
	}
}

// TestWorkedSlowRate is SPEC §3: rate 0.1, burst 1: allowed at t=0, 429 at
// t=5, allowed at t=10.
func TestWorkedSlowRate(t *testing.T) {
	p := mustParse(t, `version: 1
apis:
  a:
    stages:
      s:
        routes:
          - match: "GET /slow"
            throttle: {rate: 0.1, burst: 1}
default_stage: a/s
`)
	st := memory.New()
	r := &policy.Request{Method: "GET", Path: "/slow", Peer: "192.0.2.1"}
	steps := []struct {
		at     time.Duration
		status int
		retry  time.Duration
	}{
		{0, 200, 0},
		{5 * time.Second, 429, 5 * time.Second},
		{10 * time.Second, 200, 0},
		{10 * time.Second, 429, 10 * time.Second},
	}
	for i, s := range steps {
		d, err := p.Evaluate(t0.Add(s.at), r, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != s.status || d.RetryAfter != s.retry {
			t.Errorf("step %d: got %d retry %v, want %d retry %v", i, d.Status, d.RetryAfter, s.status, s.retry)
		}
	}
}

// TestWorkedProAt150rps is SPEC §3: a pro key at 150 rps for 60 s: about
// 100 allowed per second after the burst, and 429s use no quota.
func TestWorkedProAt150rps(t *testing.T) {
	p, st := loadExample(t), memory.New()
	r := partner(proKey)
	allowed, throttled := 0, 0
	var last policy.Decision
	for k := range 150 * 60 {
		d, err := p.Evaluate(t0.Add(time.Duration(k)*time.Second/150), r, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch d.Status {
		case 200:
			allowed++
			last = d
		case 429:
			throttled++
			if d.Reason != policy.ReasonThrottlePlan {
				t.Fatalf("request %d: got reason %q, want throttle:plan", k, d.Reason)
			}
		default:
			t.Fatalf("request %d: got status %d", k, d.Status)
		}
	}
	// 200 of burst, then 100 per second for 59.993 s.
	if allowed < 6190 || allowed > 6201 || allowed+throttled != 9000 {
		t.Errorf("got %d allowed, %d throttled; want ≈6,200 and ≈2,800", allowed, throttled)
	}
	var quota *policy.Limit
	for i := range last.AppliedLimits() {
		if last.Limits[i].Tier == policy.TierQuota {
			quota = &last.Limits[i]
		}
	}
	if quota == nil || quota.Remaining != int64(100000-allowed) {
		t.Errorf("got quota %+v, want %d remaining (only allowed requests use quota)", quota, 100000-allowed)
	}
}

// TestWorkedQuotaDayBoundary is SPEC §3: quota 5/day: 5 allowed at
// 23:59:58Z, the 6th 429 Limit Exceeded, allowed again at 00:00:00Z.
func TestWorkedQuotaDayBoundary(t *testing.T) {
	p := mustParse(t, quotaPolicy("{limit: 5, period: day}"))
	st := memory.New()
	r := partner(freeKey)
	late := time.Date(2026, 11, 20, 23, 59, 58, 0, time.UTC)
	if c := counts(t, p, st, r, 5, late); c[200] != 5 {
		t.Fatalf("got %v, want 5 allowed", c)
	}
	d, _ := p.Evaluate(late, r, st, nil)
	if d.Status != 429 || d.Reason != policy.ReasonQuota || d.Body != policy.BodyLimitExceeded || d.RetryAfter != 2*time.Second {
		t.Errorf("6th: got %d %q %q retry %v, want 429 quota Limit Exceeded retry 2s", d.Status, d.Reason, d.Body, d.RetryAfter)
	}
	d, _ = p.Evaluate(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), r, st, nil)
	if d.Status != 200 {
		t.Errorf("at 00:00:00Z: got %d %q, want 200", d.Status, d.Reason)
	}
}

// quotaPolicy is a one-route policy whose free plan has the given quota and
// no throttle, and whose key is freeKey.
func quotaPolicy(quota string) string {
	return fmt.Sprintf(`version: 1
apis:
  a:
    stages:
      s:
        routes:
          - match: "POST /partners/{id}/transactions"
            api_key: required
default_stage: a/s
usage_plans:
  free:
    quota: %s
    stages: [a/s]
api_keys:
  - id: k1
    customer: initech
    hash: "sha256:%s"
    plans: [free]
`, quota, sha(freeKey))
}

// TestQuotaPeriodsThroughEvaluate checks week and month periods with a
// time zone and an anchor day, end to end: the quota resets exactly at the
// local period start.
func TestQuotaPeriodsThroughEvaluate(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		quota         string
		before, reset time.Time
	}{
		{"week monday New York", "{limit: 2, period: week, timezone: America/New_York}",
			time.Date(2026, 11, 22, 23, 59, 59, 0, ny), time.Date(2026, 11, 23, 0, 0, 0, 0, ny)},
		{"week sunday UTC", "{limit: 2, period: week, week_start: sunday}",
			time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC), time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)},
		{"month anchor 31 in a 30-day month", "{limit: 2, period: month, anchor_day: 31}",
			time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{"month anchor 15 across DST end", "{limit: 2, period: month, anchor_day: 1, timezone: America/New_York}",
			time.Date(2026, 11, 30, 23, 0, 0, 0, ny), time.Date(2026, 12, 1, 0, 0, 0, 0, ny)},
		{"day across spring forward", "{limit: 2, period: day, timezone: America/New_York}",
			time.Date(2026, 3, 8, 23, 30, 0, 0, ny), time.Date(2026, 3, 9, 0, 0, 0, 0, ny)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, quotaPolicy(c.quota))
			st := memory.New()
			r := partner(freeKey)
			if got := counts(t, p, st, r, 3, c.before); got[200] != 2 || got[429] != 1 {
				t.Fatalf("before: got %v, want 2 allowed 1 throttled", got)
			}
			d, _ := p.Evaluate(c.before, r, st, nil)
			if want := c.reset.Sub(c.before); d.RetryAfter != want {
				t.Errorf("got Retry-After %v, want %v", d.RetryAfter, want)
			}
			if d, _ := p.Evaluate(c.reset.Add(-time.Nanosecond), r, st, nil); d.Status != 429 {
				t.Errorf("1ns before reset: got %d, want 429", d.Status)
			}
			if d, _ := p.Evaluate(c.reset, r, st, nil); d.Status != 200 {
				t.Errorf("at reset: got %d %q, want 200", d.Status, d.Reason)
			}
		})
	}
}
