package alerts

import (
	"math"
	"testing"
	"time"
)

// day is a period used by the rate tests: 2026-11-20 in UTC.
var (
	dayStart = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	dayEnd   = dayStart.Add(24 * time.Hour)
)

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

// TestRateSteady checks that a steady rate reads as itself, from the
// period's first minutes on, whatever the spacing of the observations.
func TestRateSteady(t *testing.T) {
	const perHour = 3600.0 // one a second: whole counts at every step
	for _, step := range []time.Duration{time.Second, 7 * time.Second, time.Minute, 13 * time.Minute} {
		r := newRate(dayStart, dayStart)
		for at := step; at <= 6*time.Hour; at += step {
			now := dayStart.Add(at)
			r.observe(int64(math.Round(perHour*at.Hours())), now)
			if got := r.perHour(); at >= 5*time.Minute && !near(got, perHour) {
				t.Fatalf("step %v, at %v: got %v/h, want %v/h", step, at, got, perHour)
			}
		}
	}
}

// TestRateFirstSeenLate checks that a process that first sees a customer
// late in a period (a restart) starts from the period's average.
func TestRateFirstSeenLate(t *testing.T) {
	now := dayStart.Add(10 * time.Hour)
	r := newRate(dayStart, now)
	r.observe(5000, now)
	if got := r.perHour(); !near(got, 500) {
		t.Errorf("got %v/h, want 500/h", got)
	}
}

// TestRateChangeDecaysWithTau checks the time constant: after a change from
// r1 to r2, the estimate is r2 + (r1 − r2)·exp(−t/Tau), normalized by the
// weight of the time since the period's start.
func TestRateChangeDecaysWithTau(t *testing.T) {
	const r1, r2 = 600.0, 1200.0
	r := newRate(dayStart, dayStart)
	used := 0.0
	for at := time.Minute; at <= 6*time.Hour; at += time.Minute {
		used += r1 / 60
		r.observe(int64(math.Round(used)), dayStart.Add(at))
	}
	for i, after := range []time.Duration{15 * time.Minute, time.Hour, 3 * time.Hour} {
		r := r // each step from the change
		u := used
		for at := time.Minute; at <= after; at += time.Minute {
			u += r2 / 60
			r.observe(int64(math.Round(u)), dayStart.Add(6*time.Hour+at))
		}
		x := after.Hours()
		want := (r1*(1-math.Exp(-6))*math.Exp(-x) + r2*(1-math.Exp(-x))) / (1 - math.Exp(-(6 + x)))
		if got := r.perHour(); !near(got, want) {
			t.Errorf("step %d (%v after the change): got %v/h, want %v/h", i, after, got, want)
		}
	}
}

// TestRateOutOfOrder checks that observations racing to the detector (an
// older instant, a smaller count, the same instant twice) neither move
// time or use back nor make the estimate NaN or infinite.
func TestRateOutOfOrder(t *testing.T) {
	r := newRate(dayStart, dayStart)
	r.observe(0, dayStart) // the period's first instant: nothing to measure yet
	if got := r.perHour(); got != 0 {
		t.Errorf("step 0: got %v/h, want 0", got)
	}
	steps := []struct {
		used int64
		at   time.Duration
	}{{100, time.Hour}, {90, 59 * time.Minute}, {110, time.Hour}, {110, time.Hour}, {200, 2 * time.Hour}}
	for i, s := range steps {
		r.observe(s.used, dayStart.Add(s.at))
		got := r.perHour()
		if math.IsNaN(got) || math.IsInf(got, 0) || got < 0 {
			t.Fatalf("step %d: got %v/h", i+1, got)
		}
	}
	if r.used != 200 || !r.last.Equal(dayStart.Add(2*time.Hour)) {
		t.Errorf("got used %d at %v, want 200 at 02:00", r.used, r.last)
	}
	// 100 in the first hour (10 of them at the same instant, taken as
	// the limit Δused/Tau), 90 in the second.
	if got := r.perHour(); got < 90 || got > 110 {
		t.Errorf("got %v/h, want about 100/h", got)
	}
}

func TestRunsOut(t *testing.T) {
	noon := dayStart.Add(12 * time.Hour)
	cases := []struct {
		used, limit int64
		perHour     float64
		now         time.Time
		want        time.Time // zero: lasts the period
	}{
		{500, 1000, 100, noon, noon.Add(5 * time.Hour)},
		{500, 1000, 41.7, noon, time.Date(2026, 11, 20, 23, 59, 25, 0, time.UTC)}, // 11.9904 h = 11:59:25.47, to the second
		{500, 1000, 500.0 / 12, noon, time.Time{}},                                // exactly at the period's end
		{500, 1000, 10, noon, time.Time{}},
		{500, 1000, 0, noon, time.Time{}},
		{1000, 1000, 0, noon, noon}, // ran out
		{1001, 1000, 5, noon, noon},
		{0, 1000, 1e-300, noon, time.Time{}},
		{999, 1000, 1e300, noon, noon},
		{10, 1000, 100, dayEnd, time.Time{}}, // the period is over
	}
	for i, c := range cases {
		got, ok := runsOut(c.used, c.limit, c.perHour, c.now, dayEnd)
		if ok != !c.want.IsZero() || ok && !got.Equal(c.want) {
			t.Errorf("step %d: got %v %v, want %v", i, got, ok, c.want)
		}
	}
}

func TestAveragePerHour(t *testing.T) {
	if got := averagePerHour(600, dayStart, dayStart.Add(6*time.Hour)); got != 100 {
		t.Errorf("got %v/h, want 100/h", got)
	}
	if got := averagePerHour(600, dayStart, dayStart); got != 0 {
		t.Errorf("at the period's start: got %v/h, want 0", got)
	}
}
