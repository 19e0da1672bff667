package alerts

import (
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/tollgate/tollgate/policy"
)

// DefaultDetectorSize is a Detector's size for a server: the customer and
// plan pairs it watches at once, a few hundred bytes each.
const DefaultDetectorSize = 1 << 16

// detectorShards splits a Detector's state by customer and plan, each
// shard behind its own mutex, so that decisions of different customers do
// not wait for one another.
const detectorShards = 16

// Detector turns decisions into quota events: a threshold of a plan's
// alerts reached, a forecast that the quota runs out before its period
// ends. The server shows it every decision; Observe is cheap, and for a
// decision of a plan without alerts free.
//
// It keeps, per customer and plan, what this process has sent in the
// current period and the rate estimate, in a bounded LRU: a pair evicted
// and seen again, or a restarted process, sends its events again with the
// same ids, and the Outbox's Add keeps only the first of each id (across
// replicas too).
//
// A Detector is safe for concurrent use.
type Detector struct {
	seed   maphash.Seed
	shards [detectorShards]shard
}

type shard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[watchKey, *watch]
}

type watchKey struct{ customer, plan string }

// watch is what a Detector knows of one customer's use of one plan in the
// period that starts at start.
type watch struct {
	start time.Time
	// fired holds the thresholds sent.
	fired percents
	// forecast is set when the forecast was sent.
	forecast bool
	rate     rate
}

// NewDetector returns a Detector that watches up to about size customer
// and plan pairs (size rounded up to a multiple of 16; at least 16).
func NewDetector(size int) *Detector {
	d := &Detector{seed: maphash.MakeSeed()}
	per := max(1, (size+detectorShards-1)/detectorShards)
	for i := range d.shards {
		// NewLRU fails only for a size below 1.
		d.shards[i].lru, _ = simplelru.NewLRU[watchKey, *watch](per, nil)
	}
	return d
}

func (d *Detector) shard(k watchKey) *shard {
	h := maphash.String(d.seed, k.customer) ^ bits.RotateLeft64(maphash.String(d.seed, k.plan), 1)
	return &d.shards[h%detectorShards]
}

// Len returns how many customer and plan pairs the Detector watches.
func (d *Detector) Len() int {
	n := 0
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// Observe looks at dec, decided at now with p, and returns the events it
// makes due: the thresholds of the plan's alerts that the customer's use
// reached and this process has not sent in the period, and the forecast.
// Most decisions return none, without allocating.
//
// Only decisions of a keyed customer whose plan has alerts and that report
// the quota count; use is Quota − Remaining of the quota limit (the global
// count after this request's take; on a quota denial, the whole limit).
// Decisions made on this replica's local share during a store outage
// (Decision.Local) are skipped: their Remaining is of the share, not of
// the quota.
func (d *Detector) Observe(dec *policy.Decision, now time.Time, p *policy.Policy) []Event {
	// A request denied by a limit other than the quota took nothing (a
	// rejected request consumes nothing): the count and its rate are as
	// the last decision left them.
	if dec.Plan == "" || dec.Customer == "" || dec.Local || (dec.Verdict == policy.Deny && dec.Reason != policy.ReasonQuota) {
		return nil
	}
	pl := p.Plan(dec.Plan)
	if pl == nil {
		return nil
	}
	a, ok := pl.Alerts()
	if !ok {
		return nil
	}
	q, ok := quotaLimit(dec)
	if !ok || q.Quota <= 0 {
		return nil // a limit of 0 admits nothing: no percent of it
	}
	start, end, ok := pl.QuotaWindow(now)
	if !ok {
		return nil
	}
	used := min(max(q.Quota-q.Remaining, 0), q.Quota)

	k := watchKey{dec.Customer, dec.Plan}
	s := d.shard(k)
	s.mu.Lock()
	w := s.watch(k, start, end, now)
	if w == nil {
		s.mu.Unlock()
		return nil
	}
	w.rate.observe(used, now)
	due, forecast, perHour := w.due(a, used, q.Quota, now, end)
	s.mu.Unlock()

	if due == (percents{}) && !forecast {
		return nil
	}
	data := Data{Customer: dec.Customer, Plan: dec.Plan, Used: used, Limit: q.Quota, PeriodStart: start, PeriodEnd: end,
		Exhaustion: orNil(runsOut(used, q.Quota, perHour, now, end))}
	var events []Event
	for _, t := range a.Thresholds {
		if due.has(t) {
			events = append(events, newEvent(TypeThreshold, data, t, now, a.Sinks))
		}
	}
	if forecast {
		events = append(events, newEvent(TypeForecast, data, 0, now, a.Sinks))
	}
	return events
}

// watch returns the watch of k in the period [start, end) that holds now,
// starting one for a pair or period not watched yet; nil for a decision
// of a period that ended before the one watched (it came late). s.mu is
// held.
func (s *shard) watch(k watchKey, start, end, now time.Time) *watch {
	w, ok := s.lru.Get(k)
	switch {
	case !ok:
		w = &watch{start: start, rate: newRate(start, now)}
		s.lru.Add(k, w)
	case start.Equal(w.start):
	case !end.After(w.start):
		return nil
	default:
		// A new period (or a reload changed the plan's period).
		*w = watch{start: start, rate: newRate(start, now)}
	}
	return w
}

// due marks as sent and returns the thresholds of a that used of limit
// reached and were not sent, and whether the forecast is due; perHour is
// the rate estimate. The forecast is due once per period, after WarmUp,
// when the quota is not yet used up and runs out before end.
func (w *watch) due(a policy.Alerts, used, limit int64, now, end time.Time) (due percents, forecast bool, perHour float64) {
	for _, t := range a.Thresholds {
		if reached(used, limit, t) && !w.fired.has(t) {
			w.fired.set(t)
			due.set(t)
		}
	}
	perHour = w.rate.perHour()
	if a.Forecast && !w.forecast && used < limit && now.Sub(w.rate.since) >= WarmUp {
		_, forecast = runsOut(used, limit, perHour, now, end)
		w.forecast = forecast
	}
	return due, forecast, perHour
}

// Unfire forgets that this process made e, so that the next decision at or
// above its threshold (or, for a forecast, the next that forecasts it)
// makes it again: the caller could not hand it on (a full queue). An event
// of a period no longer watched is left alone.
func (d *Detector) Unfire(e Event) {
	k := watchKey{e.Data.Customer, e.Data.Plan}
	s := d.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.lru.Peek(k)
	if !ok || !w.start.Equal(e.Data.PeriodStart) {
		return
	}
	if e.Data.Threshold != nil {
		w.fired.clear(*e.Data.Threshold)
	} else {
		w.forecast = false
	}
}

// percents is a set of thresholds, 1..100.
type percents [2]uint64

func (p *percents) set(t int)     { p[t/64] |= 1 << (t % 64) }
func (p *percents) clear(t int)   { p[t/64] &^= 1 << (t % 64) }
func (p percents) has(t int) bool { return p[t/64]&(1<<(t%64)) != 0 }

// Forecast returns the rate of a customer's use of a plan's quota, in
// requests per hour, and the instant its limit is reached at that rate (nil
// when it lasts until periodEnd; now when it is reached), given its use now
// and the period [periodStart, periodEnd). The rate is this process's
// estimate (Tau) when it watches the customer in that period, else the
// average since the period's start. Forecast records nothing.
func (d *Detector) Forecast(customer, plan string, used, limit int64, periodStart, periodEnd, now time.Time) (ratePerHour float64, exhaustion *time.Time) {
	k := watchKey{customer, plan}
	s := d.shard(k)
	s.mu.Lock()
	w, ok := s.lru.Peek(k)
	if ok && w.start.Equal(periodStart) {
		ratePerHour = w.rate.perHourAt(used, now)
	} else {
		ratePerHour = averagePerHour(used, periodStart, now)
	}
	s.mu.Unlock()
	return ratePerHour, orNil(runsOut(used, limit, ratePerHour, now, periodEnd))
}

// quotaLimit returns the decision's quota limit.
func quotaLimit(dec *policy.Decision) (policy.Limit, bool) {
	for _, l := range dec.AppliedLimits() {
		if l.Tier == policy.TierQuota {
			return l, true
		}
	}
	return policy.Limit{}, false
}

// reached reports whether used is at least pct percent of limit:
// used·100 ≥ pct·limit, in 128 bits so that no limit overflows it.
func reached(used, limit int64, pct int) bool {
	uh, ul := bits.Mul64(uint64(used), 100)
	lh, ll := bits.Mul64(uint64(pct), uint64(limit))
	return uh > lh || uh == lh && ul >= ll
}

func newEvent(typ string, data Data, threshold int, now time.Time, sinks []string) Event {
	if typ == TypeThreshold {
		data.Threshold = &threshold
	}
	// One zone for every instant of an event, whatever the plan's quota
	// period is counted in.
	data.PeriodStart, data.PeriodEnd = data.PeriodStart.UTC(), data.PeriodEnd.UTC()
	if data.Exhaustion != nil {
		t := data.Exhaustion.UTC()
		data.Exhaustion = &t
	}
	return Event{
		ID:    EventID(typ, data.Customer, data.Plan, data.PeriodStart, threshold),
		Type:  typ,
		Time:  now,
		Sinks: slices.Clone(sinks),
		Data:  data,
	}
}
