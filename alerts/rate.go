package alerts

import (
	"math"
	"time"
)

// Tau is the time constant of the rate estimate: an observation's weight
// falls to 1/e after an hour, so the estimate is "the rate over about the
// last hour".
const Tau = time.Hour

// WarmUp is how long this process must have watched a customer's use of a
// plan in a period before it sends a forecast event. Before it, the
// estimate rests on a few minutes of traffic, and a burst in a period's
// first seconds would forecast its own pace for the whole period; after
// it, a burst weighs what it lasted, seconds out of a quarter hour or more.
// A quarter of Tau is still early enough to warn of a day's quota running
// out hours ahead. A customer who stops after a burst sends no decision
// that could fire a forecast at all.
const WarmUp = 15 * time.Minute

// rate is an exponentially weighted estimate of how fast a quota's use
// grows in one period, kept at O(1) cost per observation.
//
// It observes the global use of the quota (the store's count, which every
// replica's requests raise) at the instants of this process's decisions,
// and averages Δused/Δt over the intervals between them, the newest with
// weight α = 1 − exp(−Δt/Tau) (the EWMA of irregularly spaced samples).
// The use at the period's start is 0, so the first interval runs from the
// period's start: observed first late in a period (after a restart), the
// estimate is the period's average. The average is normalized by the
// weight of the time since the period's start, 1 − exp(−T/Tau), so that a
// steady rate reads as itself from the start of a period on rather than
// growing towards it over hours; past the first hours of a period this is
// the plain EWMA.
type rate struct {
	// start is the period's start, last the instant of the newest
	// observation (start before the first), used the use then.
	start, last time.Time
	used        int64
	// ewma is the (unnormalized) average at last, in requests per hour,
	// and weight the weight of the time since start, 1 − exp(−T/Tau),
	// kept with the same α so that an observation costs one exponential.
	ewma, weight float64
	// since is this process's first observation in the period.
	since time.Time
}

// newRate starts the estimate of the period that starts at start, first
// observed at now.
func newRate(start, now time.Time) rate { return rate{start: start, last: start, since: now} }

// observe folds in the use seen at now. Observations may arrive out of
// order (decisions race to the detector): time and use never go back.
func (r *rate) observe(used int64, now time.Time) {
	r.ewma, r.weight = r.next(used, now)
	if now.After(r.last) {
		r.last = now
	}
	r.used = max(r.used, used)
}

// next returns the unnormalized average and the weight with used at now
// folded in.
func (r *rate) next(used int64, now time.Time) (ewma, weight float64) {
	du := float64(max(used-r.used, 0))
	dt := now.Sub(r.last)
	if dt <= 0 {
		// The limit of α·Δused/Δt as Δt → 0: concurrent decisions see
		// the same instant.
		return r.ewma + du/Tau.Hours(), r.weight
	}
	alpha := -math.Expm1(-float64(dt) / float64(Tau))
	return r.ewma + alpha*(du/dt.Hours()-r.ewma), r.weight + alpha*(1-r.weight)
}

// perHour returns the estimate, in requests per hour, at the newest
// observation.
func (r *rate) perHour() float64 { return normalize(r.ewma, r.weight) }

// perHourAt returns the estimate that observing used at now would give,
// without recording it.
func (r *rate) perHourAt(used int64, now time.Time) float64 { return normalize(r.next(used, now)) }

// normalize divides an average by the weight of the time it covers; 0 at a
// period's start, where no time has passed to measure a rate over.
func normalize(ewma, weight float64) float64 {
	if weight <= 0 {
		return 0
	}
	return ewma / weight
}

// runsOut returns when a quota with limit, used at now, runs out at
// perHour requests per hour, to the second: now when it has; ok is false
// when it lasts until end (the period's end) or nothing is used.
func runsOut(used, limit int64, perHour float64, now, end time.Time) (at time.Time, ok bool) {
	if used >= limit {
		return now, true
	}
	left := end.Sub(now).Hours()
	if perHour <= 0 || left <= 0 {
		return time.Time{}, false
	}
	hours := float64(limit-used) / perHour
	if hours >= left {
		return time.Time{}, false
	}
	at = now.Add(time.Duration(hours * float64(time.Hour))).Round(time.Second)
	return at, at.Before(end)
}

// orNil returns &t when ok, else nil.
func orNil(t time.Time, ok bool) *time.Time {
	if !ok {
		return nil
	}
	return &t
}

// averagePerHour is the use per hour since the period's start: the
// estimate of a process that has not watched the customer.
func averagePerHour(used int64, start, now time.Time) float64 {
	elapsed := now.Sub(start).Hours()
	if elapsed <= 0 {
		return 0
	}
	return float64(used) / elapsed
}
