package alerts_test

import (
	"math"
	"testing"
	"time"

	"github.com/tollgate/tollgate/alerts"
)

// steady observes acme on pro at perHour from the day's start, one
// decision a minute from first to last (as offsets from the day's start),
// and returns the events of each minute that sent any, by offset.
func steady(t *testing.T, d *alerts.Detector, perHour float64, first, last time.Duration) map[time.Duration][]alerts.Event {
	t.Helper()
	p := detectPolicyT(t)
	out := map[time.Duration][]alerts.Event{}
	for at := first; at <= last; at += time.Minute {
		used := min(int64(math.Round(perHour*at.Hours())), 1000)
		if events := d.Observe(decision("acme", "pro", 1000, 1000-used), dayStart.Add(at), p); events != nil {
			out[at] = events
		}
	}
	return out
}

// TestForecastEvent checks the forecast event of a customer on course to
// run out at 10:00: sent once, after the warm-up, with the instant.
func TestForecastEvent(t *testing.T) {
	d := alerts.NewDetector(64)
	// 100 an hour from midnight; this process first sees it at 01:00.
	got := steady(t, d, 100, time.Hour, 4*time.Hour)
	var forecasts []time.Duration
	for at, events := range got {
		for _, e := range events {
			if e.Type == alerts.TypeForecast {
				forecasts = append(forecasts, at)
				want := dayStart.Add(10 * time.Hour)
				if e.Data.Exhaustion == nil || !e.Data.Exhaustion.Equal(want) || e.Data.Threshold != nil ||
					e.ID != alerts.EventID(alerts.TypeForecast, "acme", "pro", dayStart, 0) || e.Data.Used != 125 {
					t.Errorf("got %+v (exhaustion %v), want a forecast of 10:00 at 125 used", e, e.Data.Exhaustion)
				}
			}
		}
	}
	if len(forecasts) != 1 || forecasts[0] != time.Hour+alerts.WarmUp {
		t.Errorf("got forecasts at %v, want one at 01:15 (after the warm-up)", forecasts)
	}
	// The next day re-arms it.
	p := detectPolicyT(t)
	next := dayEnd.Add(alerts.WarmUp)
	d.Observe(decision("acme", "pro", 1000, 1000), dayEnd, p)
	if events := d.Observe(decision("acme", "pro", 1000, 900), next, p); kinds(events) != "forecast" {
		t.Errorf("next day: got [%s], want [forecast]", kinds(events))
	}
}

// TestForecastWarmUp checks that a burst in a period's first seconds does
// not send a forecast: the warm-up outlasts it.
func TestForecastWarmUp(t *testing.T) {
	p := detectPolicyT(t)
	d := alerts.NewDetector(64)
	for i := range 400 { // 400 requests in 40 s: 36,000 an hour at that pace
		now := dayStart.Add(time.Duration(i) * 100 * time.Millisecond)
		if events := d.Observe(decision("acme", "pro", 1000, 1000-int64(i+1)), now, p); kinds(events) == "forecast" {
			t.Fatalf("step %d: got a forecast during the warm-up", i)
		}
	}
	if rate, out := d.Forecast("acme", "pro", 400, 1000, dayStart, dayEnd, dayStart.Add(40*time.Second)); rate < 30000 || out == nil {
		t.Errorf("got %v/h, exhaustion %v, want the burst's pace and an exhaustion (the API shows the estimate)", rate, out)
	}
}

// TestForecastLastsThePeriod checks that a customer whose quota lasts the
// period at its rate gets no forecast, and that the API says null.
func TestForecastLastsThePeriod(t *testing.T) {
	d := alerts.NewDetector(64)
	for at, events := range steady(t, d, 40, time.Minute, 12*time.Hour) { // 960 a day
		for _, e := range events {
			if e.Type == alerts.TypeForecast {
				t.Errorf("%v: got a forecast %v, want none", at, e.Data.Exhaustion)
			}
		}
	}
	now := dayStart.Add(12 * time.Hour)
	rate, out := d.Forecast("acme", "pro", 480, 1000, dayStart, dayEnd, now)
	if math.Abs(rate-40) > 0.01 || out != nil { // whole requests: 2 or 1 a minute
		t.Errorf("got %v/h, exhaustion %v, want 40/h and null", rate, out)
	}
}

// TestForecastAPI checks Forecast: the estimate of a watched customer, the
// average since the period's start for one this process has not seen, and
// an exhausted quota.
func TestForecastAPI(t *testing.T) {
	d := alerts.NewDetector(64)
	noon := dayStart.Add(12 * time.Hour)
	cases := []struct {
		name        string
		used, limit int64
		now         time.Time
		rate        float64
		exhaustion  time.Time // zero: null
	}{
		{"not watched: the average", 600, 1000, noon, 50, dayStart.Add(20 * time.Hour)},
		{"not watched, lasts", 300, 1000, noon, 25, time.Time{}},
		{"exhausted", 1000, 1000, noon, 1000.0 / 12, noon},
		{"period start", 0, 1000, dayStart, 0, time.Time{}},
	}
	for i, c := range cases {
		rate, out := d.Forecast("initech", "pro", c.used, c.limit, dayStart, dayEnd, c.now)
		if math.Abs(rate-c.rate) > 1e-9 || (out == nil) != c.exhaustion.IsZero() || out != nil && !out.Equal(c.exhaustion) {
			t.Errorf("step %d (%s): got %v/h, %v, want %v/h, %v", i, c.name, rate, out, c.rate, c.exhaustion)
		}
	}

	// Watched: 60 an hour until 06:00, then 180 an hour. The average at
	// 08:00 is 90/h; the estimate leans to the new rate.
	steady(t, d, 60, time.Minute, 6*time.Hour)
	p := detectPolicyT(t)
	for at := time.Minute; at <= 2*time.Hour; at += time.Minute {
		used := 360 + int64(math.Round(180*at.Hours()))
		d.Observe(decision("acme", "pro", 1000, 1000-used), dayStart.Add(6*time.Hour+at), p)
	}
	now := dayStart.Add(8 * time.Hour)
	rate, out := d.Forecast("acme", "pro", 720, 1000, dayStart, dayEnd, now)
	want := (60*(1-math.Exp(-6))*math.Exp(-2) + 180*(1-math.Exp(-2))) / (1 - math.Exp(-8))
	if math.Abs(rate-want) > 1e-6 || out == nil || !out.Equal(now.Add(time.Duration(280/want*float64(time.Hour))).Round(time.Second)) {
		t.Errorf("watched: got %v/h, %v, want %v/h and 280 requests later", rate, out, want)
	}
	// Another period than the one watched: the average.
	if rate, _ := d.Forecast("acme", "pro", 240, 1000, dayEnd, dayEnd.Add(24*time.Hour), dayEnd.Add(2*time.Hour)); rate != 120 {
		t.Errorf("next period: got %v/h, want the average 120/h", rate)
	}
}
