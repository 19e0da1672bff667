package alerts_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
)

// detectPolicy has plans with alerts on day, month and week quotas, and
// plans without.
const detectPolicy = `
version: 1
apis:
  payments:
    stages:
      prod: {}
notifications:
  sinks:
    ops: {webhook: {url: "http://localhost:9099/hooks"}}
    sales: {webhook: {url: "https://hooks.example.com/sales"}}
usage_plans:
  pro:
    quota: {limit: 1000, period: day}
    alerts: {thresholds: [100, 50, 80], forecast: true, sinks: [ops, sales]}
  billing:
    quota: {limit: 1000, period: month, anchor_day: 31, timezone: Europe/Berlin}
    alerts: {thresholds: [80], sinks: [ops]}
  quiet:
    quota: {limit: 1000, period: day}
  unlimited:
    stages: [payments/prod]
  nothing:
    quota: {limit: 0, period: day}
    alerts: {thresholds: [100], sinks: [ops]}
`

// t0 is a fixed instant at noon UTC, on a whole second (Redis keeps the
// outbox's times in milliseconds).
var (
	t0       = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	dayStart = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	dayEnd   = dayStart.Add(24 * time.Hour)
)

func detectPolicyT(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policyfile.Parse("test.yaml", []byte(detectPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decision is an allowed decision of customer on plan that reports a
// quota of limit with remaining left, behind a plan bucket.
func decision(customer, plan string, limit, remaining int64) *policy.Decision {
	d := &policy.Decision{Status: 200, Customer: customer, KeyID: customer + "-key", Plan: plan, NLimits: 2}
	d.Limits[0] = policy.Limit{Tier: policy.TierPlan, Quota: 20, Remaining: 19}
	d.Limits[1] = policy.Limit{Tier: policy.TierQuota, Quota: limit, Remaining: remaining}
	if remaining == 0 {
		d.Verdict, d.Status, d.Reason = policy.Deny, 429, policy.ReasonQuota
	}
	return d
}

// kinds writes events as "threshold:80" and "forecast" items.
func kinds(events []alerts.Event) string {
	var out []string
	for _, e := range events {
		if e.Type == alerts.TypeForecast {
			out = append(out, "forecast")
		} else {
			out = append(out, fmt.Sprintf("threshold:%d", *e.Data.Threshold))
		}
	}
	return strings.Join(out, " ")
}

// TestDetectThresholdsOnce checks that each threshold is sent once, when
// use first reaches it, with the event's id and data.
func TestDetectThresholdsOnce(t *testing.T) {
	p := detectPolicyT(t)
	det := alerts.NewDetector(64)
	steps := []struct {
		used int64
		want string
	}{
		{1, ""}, {499, ""}, {500, "threshold:50"}, {501, ""}, {799, ""}, {800, "threshold:80"}, {800, ""},
		{999, ""}, {1000, "threshold:100"}, // the last request admitted
		{1000, ""}, {1000, ""}, // denied: quota
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i) * time.Second)
		got := det.Observe(decision("acme", "pro", 1000, 1000-s.used), now, p)
		if kinds(got) != s.want {
			t.Fatalf("step %d (used %d): got [%s], want [%s]", i, s.used, kinds(got), s.want)
		}
		for _, e := range got {
			th := *e.Data.Threshold
			wantID := alerts.EventID(alerts.TypeThreshold, "acme", "pro", dayStart, th)
			if e.ID != wantID || e.Type != alerts.TypeThreshold || !e.Time.Equal(now) || !slices.Equal(e.Sinks, []string{"ops", "sales"}) {
				t.Errorf("step %d: got event %+v, want id %s, type %s, time %v, sinks [ops sales]", i, e, wantID, alerts.TypeThreshold, now)
			}
			d := e.Data
			if d.Customer != "acme" || d.Plan != "pro" || d.Used != s.used || d.Limit != 1000 ||
				!d.PeriodStart.Equal(dayStart) || !d.PeriodEnd.Equal(dayEnd) {
				t.Errorf("step %d: got data %+v, want acme, pro, used %d of 1000 in [%v, %v)", i, d, s.used, dayStart, dayEnd)
			}
		}
	}
}

// TestDetectThresholdsJump checks that use passing several thresholds at
// once (a replica that saw none of the requests between) sends each, in
// order, and that a quota denial sends 100 when it was not sent.
func TestDetectThresholdsJump(t *testing.T) {
	p := detectPolicyT(t)
	det := alerts.NewDetector(64)
	if got := det.Observe(decision("acme", "pro", 1000, 150), t0, p); kinds(got) != "threshold:50 threshold:80" {
		t.Errorf("step 0: got [%s], want [threshold:50 threshold:80]", kinds(got))
	}
	if got := det.Observe(decision("acme", "pro", 1000, 0), t0.Add(time.Second), p); kinds(got) != "threshold:100" {
		t.Errorf("step 1: got [%s], want [threshold:100]", kinds(got))
	}
	if got := det.Observe(decision("initech", "pro", 1000, 0), t0, p); kinds(got) != "threshold:50 threshold:80 threshold:100" {
		t.Errorf("step 2: got [%s], want every threshold", kinds(got))
	}
}

// TestDetectUnfire: an event the caller could not hand on (Unfire) is made
// again, with the same id, by the next decision past its threshold, and
// only that one.
func TestDetectUnfire(t *testing.T) {
	p := detectPolicyT(t)
	det := alerts.NewDetector(64)
	got := det.Observe(decision("acme", "pro", 1000, 150), t0, p)
	if kinds(got) != "threshold:50 threshold:80" {
		t.Fatalf("step 0: got [%s], want [threshold:50 threshold:80]", kinds(got))
	}
	det.Unfire(got[1])
	again := det.Observe(decision("acme", "pro", 1000, 149), t0.Add(time.Second), p)
	if kinds(again) != "threshold:80" || again[0].ID != got[1].ID {
		t.Errorf("step 1: got [%s], want threshold:80 again with id %s", kinds(again), got[1].ID)
	}
	if got := det.Observe(decision("acme", "pro", 1000, 148), t0.Add(2*time.Second), p); len(got) != 0 {
		t.Errorf("step 2: got [%s], want none", kinds(got))
	}
}

// TestDetectGrantDoesNotRefire checks that thresholds are percents of the
// limit with its grants, and that a grant, which lowers the percent, does
// not send a threshold again when use climbs back to it.
func TestDetectGrantDoesNotRefire(t *testing.T) {
	p := detectPolicyT(t)
	det := alerts.NewDetector(64)
	steps := []struct {
		used, limit int64
		want        string
	}{
		{800, 1000, "threshold:50 threshold:80"},
		{801, 2000, ""},  // granted 1000: 40%
		{1600, 2000, ""}, // 80% again
		{1999, 2000, ""},
		{2000, 2000, "threshold:100"},
	}
	for i, s := range steps {
		got := det.Observe(decision("acme", "pro", s.limit, s.limit-s.used), t0.Add(time.Duration(i)*time.Minute), p)
		if kinds(got) != s.want {
			t.Errorf("step %d (%d of %d): got [%s], want [%s]", i, s.used, s.limit, kinds(got), s.want)
		}
		if len(got) > 0 && got[0].Data.Limit != s.limit {
			t.Errorf("step %d: got limit %d, want %d", i, got[0].Data.Limit, s.limit)
		}
	}
	// A grant before the threshold: 1000 of 2000 is 50%, not 100%.
	if got := det.Observe(decision("initech", "pro", 2000, 1000), t0, p); kinds(got) != "threshold:50" {
		t.Errorf("granted first: got [%s], want [threshold:50]", kinds(got))
	}
}

// TestDetectPeriodRearms checks that a new period sends the thresholds
// again, with new ids, and that a late decision of the old period neither
// sends nor forgets the new period's.
func TestDetectPeriodRearms(t *testing.T) {
	p := detectPolicyT(t)
	det := alerts.NewDetector(64)
	day1 := det.Observe(decision("acme", "pro", 1000, 200), t0, p)
	next := t0.Add(24 * time.Hour)
	day2 := det.Observe(decision("acme", "pro", 1000, 200), next, p)
	if kinds(day1) != "threshold:50 threshold:80" || kinds(day2) != "threshold:50 threshold:80" {
		t.Fatalf("got [%s] then [%s], want 50 and 80 each day", kinds(day1), kinds(day2))
	}
	if day1[1].ID == day2[1].ID || !day2[1].Data.PeriodStart.Equal(dayEnd) || !day2[1].Data.PeriodEnd.Equal(dayEnd.Add(24*time.Hour)) {
		t.Errorf("got day 2 %+v, want a new id and the period [%v, +24h)", day2[1], dayEnd)
	}
	if got := det.Observe(decision("acme", "pro", 1000, 0), dayEnd.Add(-time.Millisecond), p); got != nil {
		t.Errorf("late decision of day 1: got [%s], want none", kinds(got))
	}
	if got := det.Observe(decision("acme", "pro", 1000, 150), next.Add(time.Second), p); got != nil {
		t.Errorf("day 2 again: got [%s], want none (sent already)", kinds(got))
	}
}

// TestDetectMonthPeriod checks that a month quota's events carry the
// period the policy computes (anchor day 31 in February, Berlin time), the
// same on every replica.
func TestDetectMonthPeriod(t *testing.T) {
	p := detectPolicyT(t)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	now := time.Date(2027, 2, 15, 9, 30, 0, 0, time.UTC)
	got := alerts.NewDetector(64).Observe(decision("acme", "billing", 1000, 100), now, p)
	wantStart := time.Date(2027, 1, 31, 0, 0, 0, 0, berlin)
	wantEnd := time.Date(2027, 2, 28, 0, 0, 0, 0, berlin)
	if len(got) != 1 || !got[0].Data.PeriodStart.Equal(wantStart) || !got[0].Data.PeriodEnd.Equal(wantEnd) ||
		got[0].ID != alerts.EventID(alerts.TypeThreshold, "acme", "billing", wantStart, 80) {
		t.Errorf("got %+v, want one threshold event of the period [%v, %v)", got, wantStart, wantEnd)
	}
}

// TestDetectSkips checks the decisions that send nothing.
func TestDetectSkips(t *testing.T) {
	p := detectPolicyT(t)
	local := decision("acme", "pro", 1000, 0)
	local.Local = true
	noQuota := decision("acme", "pro", 1000, 0)
	noQuota.NLimits = 1 // denied before the quota was counted
	anonymous := decision("", "pro", 1000, 0)
	cases := []struct {
		name string
		d    *policy.Decision
	}{
		{"local share during a store outage", local},
		{"no quota limit", noQuota},
		{"no customer", anonymous},
		{"no plan", decision("acme", "", 1000, 0)},
		{"plan without alerts", decision("acme", "quiet", 1000, 0)},
		{"plan without quota", decision("acme", "unlimited", 1000, 0)},
		{"unknown plan", decision("acme", "gone", 1000, 0)},
		{"limit 0", decision("acme", "nothing", 0, 0)},
		{"store error", &policy.Decision{Verdict: policy.Deny, Status: 503, Reason: policy.ReasonStore, Customer: "acme", Plan: "pro"}},
	}
	d := alerts.NewDetector(64)
	for i, c := range cases {
		if got := d.Observe(c.d, t0, p); got != nil {
			t.Errorf("step %d (%s): got [%s], want none", i, c.name, kinds(got))
		}
	}
	if n := d.Len(); n != 0 {
		t.Errorf("got %d watched, want 0", n)
	}
	// The local decision did not mark 100 as sent.
	if got := d.Observe(decision("acme", "pro", 1000, 0), t0, p); kinds(got) != "threshold:50 threshold:80 threshold:100" {
		t.Errorf("after the skips: got [%s], want every threshold", kinds(got))
	}
}

// TestDetectLRUBound checks that the detector keeps at most its size of
// customer and plan pairs, and that a pair it forgot sends its events
// again, with the same ids (the outbox keeps the first).
func TestDetectLRUBound(t *testing.T) {
	p := detectPolicyT(t)
	d := alerts.NewDetector(32)
	first := d.Observe(decision("c0", "pro", 1000, 200), t0, p)
	for i := range 1000 {
		d.Observe(decision(fmt.Sprintf("c%d", i+1), "pro", 1000, 900), t0, p)
		if n := d.Len(); n > 32 {
			t.Fatalf("step %d: got %d watched, want at most 32", i, n)
		}
	}
	if n := d.Len(); n < 16 {
		t.Errorf("got %d watched, want the LRU in use (at least 16 of 32)", n)
	}
	again := d.Observe(decision("c0", "pro", 1000, 200), t0.Add(time.Second), p)
	if kinds(again) != "threshold:50 threshold:80" || again[0].ID != first[0].ID || again[1].ID != first[1].ID {
		t.Errorf("got [%s] %v, want the first events again with their ids", kinds(again), again)
	}
}

// TestDetectConcurrent observes one customer's rising use from many
// goroutines: every threshold is sent exactly once.
func TestDetectConcurrent(t *testing.T) {
	p := detectPolicyT(t)
	d := alerts.NewDetector(64)
	var mu sync.Mutex
	sent := map[string]int{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for used := int64(g); used <= 1000; used += 8 {
				for _, e := range d.Observe(decision("acme", "pro", 1000, 1000-used), t0.Add(time.Duration(used)*time.Second), p) {
					mu.Lock()
					sent[kinds([]alerts.Event{e})]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	want := map[string]int{"threshold:50": 1, "threshold:80": 1, "threshold:100": 1}
	for k, n := range want {
		if sent[k] != n {
			t.Errorf("%s: got %d events, want %d (all: %v)", k, sent[k], n, sent)
		}
	}
}

// TestObserveDoesNotAllocate guards the hot path: a decision of a plan
// without alerts, and one of a plan with alerts that sends nothing.
func TestObserveDoesNotAllocate(t *testing.T) {
	p := detectPolicyT(t)
	d := alerts.NewDetector(64)
	quiet := decision("acme", "quiet", 1000, 500)
	pro := decision("acme", "pro", 1000, 900)
	d.Observe(pro, t0, p)
	now := t0
	if n := testing.AllocsPerRun(200, func() {
		now = now.Add(time.Millisecond)
		d.Observe(quiet, now, p)
		d.Observe(pro, now, p)
	}); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	p := detectPolicyT(b)
	for _, c := range []struct {
		name string
		d    *policy.Decision
	}{
		{"no-alerts", decision("acme", "quiet", 1000, 500)},
		{"anonymous", &policy.Decision{Status: 200}},
		{"alerts", decision("acme", "pro", 1000, 900)},
	} {
		b.Run(c.name, func(b *testing.B) {
			d := alerts.NewDetector(alerts.DefaultDetectorSize)
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				d.Observe(c.d, now, p)
			}
		})
	}
}

func BenchmarkObserveParallel(b *testing.B) {
	p := detectPolicyT(b)
	d := alerts.NewDetector(alerts.DefaultDetectorSize)
	var n sync.Mutex
	next := 0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n.Lock()
		dec := decision(fmt.Sprintf("c%d", next), "pro", 1000, 900)
		next++
		n.Unlock()
		now := t0
		for pb.Next() {
			now = now.Add(time.Microsecond)
			d.Observe(dec, now, p)
		}
	})
}
