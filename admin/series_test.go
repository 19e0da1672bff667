package admin

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
)

// pairs writes a series as text: "used/remaining" a day, "-" for no quota.
func pairs(s []UsagePair) string {
	out := ""
	for i, p := range s {
		if i > 0 {
			out += " "
		}
		rem := "-"
		if p[1] != nil {
			rem = fmt.Sprint(*p[1])
		}
		out += fmt.Sprintf("%d/%s", *p[0], rem)
	}
	return out
}

func TestSeries(t *testing.T) {
	days := func(used ...int64) []seriesDay {
		out := make([]seriesDay, len(used))
		for i, n := range used {
			out[i] = seriesDay{Used: n}
		}
		return out
	}
	for _, c := range []struct {
		name string
		days []seriesDay
		q    *seriesQuota
		want string
	}{
		{"no quota", days(3, 0, 7), nil, "3/- 0/- 7/-"},
		{"empty", nil, &seriesQuota{Limit: 10, Periods: []periodCounter{{}}}, ""},
		{"day periods", []seriesDay{{Used: 3, Period: 0}, {Used: 5, Period: 1}, {Used: 7, Period: 2}},
			&seriesQuota{Limit: 10, Periods: []periodCounter{{Used: 3}, {Used: 5, Granted: 2}, {Used: 7}}},
			"3/7 5/7 7/3"},
		{"one period runs on", days(1, 2, 3),
			&seriesQuota{Limit: 10, Periods: []periodCounter{{}}}, "1/9 2/7 3/4"},
		{"before the report counts", days(1, 2),
			&seriesQuota{Limit: 10, Before: 4, Periods: []periodCounter{{}}}, "1/5 2/3"},
		{"grant of the period", days(1, 2),
			&seriesQuota{Limit: 10, Periods: []periodCounter{{Granted: 5}}}, "1/14 2/12"},
		{"never below zero", days(8, 8),
			&seriesQuota{Limit: 10, Periods: []periodCounter{{}}}, "8/2 8/0"},
		{"a new period starts from zero, before not carried", []seriesDay{{Used: 4}, {Used: 4}, {Used: 1, Period: 1}},
			&seriesQuota{Limit: 10, Before: 1, Periods: []periodCounter{{}, {}}}, "4/5 4/1 1/9"},
		{"exact day: the period's counter", []seriesDay{{Used: 2}, {Used: 3, Exact: true}},
			&seriesQuota{Limit: 10, Periods: []periodCounter{{Used: 9, Granted: 1}}}, "2/9 3/2"},
		{"exact day over the limit", []seriesDay{{Used: 3, Exact: true}},
			&seriesQuota{Limit: 10, Periods: []periodCounter{{Used: 12}}}, "3/0"},
	} {
		if got := pairs(quotaSeries(c.days, c.q)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// counters is a fake Counters: a map of counters, and the keys read.
type counters struct {
	m    map[policy.Key][2]int64
	read int
	err  error
}

func (c *counters) Counter(k policy.Key) (int64, int64, error) {
	c.read++
	if c.err != nil {
		return 0, 0, c.err
	}
	v := c.m[k]
	return v[0], v[1], nil
}

// planOf returns plan "q" of a policy whose quota is quota.
func planOf(t *testing.T, quota string) *policy.Plan {
	t.Helper()
	text := `
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
    throttle: {rate: 1000, burst: 1000}
    quota: ` + quota + `
    stages: [shop/live]
  free:
    throttle: {rate: 1000, burst: 1000}
    stages: [shop/live]
`
	p, err := policyfile.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p.Plan("q")
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestUsageSeries(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, quota string
		start       string
		days        int
		usage       map[string]int64    // by UTC day
		periods     map[string][2]int64 // by the day that starts the period: used, granted
		want        string
	}{
		{"day quota", "{limit: 10, period: day}", "2026-11-18", 3,
			map[string]int64{"2026-11-18": 4, "2026-11-19": 12, "2026-11-20": 2},
			map[string][2]int64{"2026-11-19": {12, 3}, "2026-11-20": {6, 0}},
			// Today reads the quota counter (6), not the history (2).
			"4/6 12/1 2/4"},
		{"month quota, the days before the start count", "{limit: 100, period: month}", "2026-11-10", 2,
			map[string]int64{"2026-11-01": 30, "2026-11-09": 5, "2026-11-10": 1, "2026-11-11": 2, "2026-10-31": 1000},
			map[string][2]int64{"2026-11-01": {0, 10}},
			"1/74 2/72"},
		{"month quota across periods", "{limit: 100, period: month}", "2026-10-31", 2,
			map[string]int64{"2026-10-30": 7, "2026-10-31": 1, "2026-11-01": 2},
			nil,
			"1/92 2/98"},
	} {
		pl := planOf(t, c.quota)
		cs := &counters{m: map[policy.Key][2]int64{}}
		for d, n := range c.usage {
			cs.m[pl.UsageKey("acme", date(d))] = [2]int64{n, 0}
		}
		for d, v := range c.periods {
			k, _, _ := pl.QuotaKey("acme", date(d).Add(time.Hour))
			cs.m[k] = v
		}
		got, err := usageSeries(context.Background(), cs, pl, "acme", date(c.start), c.days, now)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if pairs(got) != c.want {
			t.Errorf("%s: got %q, want %q", c.name, pairs(got), c.want)
		}
	}
}

func TestUsageSeriesStops(t *testing.T) {
	pl := planOf(t, "{limit: 10, period: day}")
	start, now := date("2026-11-01"), date("2026-11-20")
	boom := errors.New("store down")
	if _, err := usageSeries(context.Background(), &counters{err: boom}, pl, "acme", start, 5, now); !errors.Is(err, boom) {
		t.Errorf("store error: got %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cs := &counters{}
	if _, err := usageSeries(ctx, cs, pl, "acme", start, 5, now); !errors.Is(err, context.Canceled) || cs.read != 0 {
		t.Errorf("cancelled: got %v after %d reads, want %v after none", err, cs.read, context.Canceled)
	}
}
