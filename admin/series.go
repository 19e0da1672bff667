package admin

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// day is one UTC day.
const day = 24 * time.Hour

// seriesDay is one UTC day of a usage report as the store holds it.
type seriesDay struct {
	// Used is the customer's requests admitted on the plan during the day
	// (the usage-history counter).
	Used int64
	// Period numbers the quota period that the day's usage counts towards:
	// an index into seriesQuota.Periods.
	Period int
	// Exact is set for a day of the current quota period from today on:
	// the period's counter itself says what is consumed, exact in any
	// zone.
	Exact bool
}

// periodCounter is a quota period's counter: the requests counted, and
// those granted on top of the limit.
type periodCounter struct{ Used, Granted int64 }

// seriesQuota is what the remaining quota of a usage report is computed
// from.
type seriesQuota struct {
	Limit int64
	// Before is the usage of the first day's quota period on the days
	// before the report starts.
	Before int64
	// Periods are the counters of the periods that seriesDay.Period names.
	Periods []periodCounter
}

// quotaSeries returns the [used, remaining] pairs of a usage report's days.
// remaining is nil without a quota (q nil); else it is the limit, plus the
// requests granted in the day's period, less what the period consumed up to
// the end of the day: the usage of the period's days so far (Before
// included for the first day's), or the period's counter on an Exact day.
// It is never below zero.
func quotaSeries(days []seriesDay, q *seriesQuota) []UsagePair {
	out := make([]UsagePair, 0, len(days))
	var running int64
	for i, d := range days {
		used := d.Used
		if q == nil {
			out = append(out, UsagePair{&used, nil})
			continue
		}
		if i == 0 {
			running = q.Before
		} else if d.Period != days[i-1].Period {
			running = 0
		}
		running += d.Used
		pc := q.Periods[d.Period]
		consumed := running
		if d.Exact {
			consumed = pc.Used
		}
		remaining := max(q.Limit+pc.Granted-consumed, 0)
		out = append(out, UsagePair{&used, &remaining})
	}
	return out
}

// maxPeriodDays bounds the days of a quota period (a month).
const maxPeriodDays = 32

// readSeries reads from c what quotaSeries needs for customer's usage on plan pl
// over the days UTC days from start, at now. A day's usage counts towards
// the quota period that holds the end of that UTC day (now, for today), so
// remaining is exact for periods that start at UTC midnight (timezone UTC,
// the default) and for the current period from today on, and counts whole
// UTC days otherwise. It stops when ctx is done (the client left, the
// server stops).
func readSeries(ctx context.Context, c Counters, pl *policy.Plan, customer string, start time.Time, days int, now time.Time) ([]seriesDay, *seriesQuota, error) {
	used := func(d time.Time) (int64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, _, err := c.Counter(pl.UsageKey(customer, d))
		return n, err
	}
	out := make([]seriesDay, 0, days)
	quota, hasQuota := pl.Quota()
	var q *seriesQuota
	today := now.UTC().Truncate(day)
	var current policy.Key // the current quota period's counter
	if hasQuota {
		q = &seriesQuota{Limit: quota.Limit}
		current, _, _ = pl.QuotaKey(customer, now)
	}
	// endOf returns the instant whose quota period a day's usage counts
	// towards: the day's end, or now for today.
	endOf := func(d time.Time) time.Time {
		if d.Equal(today) {
			return now
		}
		return d.Add(day - time.Nanosecond)
	}
	var period policy.Key
	for i := range days {
		d := start.AddDate(0, 0, i)
		n, err := used(d)
		if err != nil {
			return nil, nil, err
		}
		sd := seriesDay{Used: n}
		if q != nil {
			k, _, _ := pl.QuotaKey(customer, endOf(d))
			if i == 0 || k != period {
				period = k
				var pc periodCounter
				if pc.Used, pc.Granted, err = c.Counter(k); err != nil {
					return nil, nil, err
				}
				q.Periods = append(q.Periods, pc)
			}
			sd.Period = len(q.Periods) - 1
			sd.Exact = k == current && !d.Before(today)
			if i == 0 {
				// The days of the period before the report starts.
				for back := d.AddDate(0, 0, -1); !back.Before(d.AddDate(0, 0, -maxPeriodDays)); back = back.AddDate(0, 0, -1) {
					if bk, _, _ := pl.QuotaKey(customer, endOf(back)); bk != k {
						break
					}
					m, err := used(back)
					if err != nil {
						return nil, nil, err
					}
					q.Before += m
				}
			}
		}
		out = append(out, sd)
	}
	return out, q, nil
}

// usageSeries returns customer's [used, remaining] pairs on plan pl for the
// days UTC days from start, at now, from the counters c (readSeries, then
// quotaSeries).
func usageSeries(ctx context.Context, c Counters, pl *policy.Plan, customer string, start time.Time, days int, now time.Time) ([]UsagePair, error) {
	sd, q, err := readSeries(ctx, c, pl, customer, start, days, now)
	if err != nil {
		return nil, err
	}
	return quotaSeries(sd, q), nil
}
