package server

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/policy"
)

// utilizationSeconds is the window of tollgate_limit_utilization_ratio: the
// whole seconds before the scrape's.
const utilizationSeconds = 60

// windowSlots is the number of seconds a window holds: the ones summed and
// the one being counted, rounded up to a power of two.
const windowSlots = 64

// utilization counts, per account, stage and route bucket of the policy
// served, the requests each admitted in each of the last seconds, and
// exports tollgate_limit_utilization_ratio when scraped: the requests of
// the last 60 whole seconds, over 60, over the bucket's rate.
//
// A decision costs one atomic load and an atomic add per bucket it passed
// (at most three), in counters found by the positions the decision carries
// (policy.Decision.StageBucket, RouteBucket): no label set is looked up on
// the hot path, and the series are the policy's buckets, so their number
// is bounded by the policy.
type utilization struct {
	now   func() time.Time
	desc  *prometheus.Desc
	table atomic.Pointer[utilTable]
}

var _ prometheus.Collector = (*utilization)(nil)

// utilTable is the windows of one policy's buckets.
type utilTable struct {
	p       *policy.Policy
	buckets []policy.RateBucket // p.RateBuckets()
	windows []*window           // by position in buckets
	account int                 // 1 + the account bucket's position; 0: none
}

// bucketID names a bucket across reloads: its rate may change, its window
// goes on.
type bucketID struct {
	tier              policy.Tier
	api, stage, route string
}

func newUtilization(now func() time.Time) *utilization {
	u := &utilization{now: now, desc: prometheus.NewDesc("tollgate_limit_utilization_ratio",
		"Requests the account, a stage's or a route's bucket admitted over the last 60 whole seconds, per second, over the bucket's rate (this process's share: sum over replicas that share Redis).",
		[]string{"tier", "api", "stage", "route"}, nil)}
	u.table.Store(&utilTable{})
	return u
}

// load makes p's buckets the ones counted: a bucket that the previous
// policy had too (same tier, stage and route) keeps its window, whatever
// its rate; the others' windows are dropped. Its callers serialize it
// (Server.reload).
func (u *utilization) load(p *policy.Policy) {
	prev := u.table.Load()
	kept := make(map[bucketID]*window, len(prev.buckets))
	for i, b := range prev.buckets {
		kept[idOf(b)] = prev.windows[i]
	}
	t := &utilTable{p: p, buckets: p.RateBuckets(), windows: make([]*window, len(p.RateBuckets()))}
	for i, b := range t.buckets {
		if t.windows[i] = kept[idOf(b)]; t.windows[i] == nil {
			t.windows[i] = new(window)
		}
		if b.Tier == policy.TierAccount {
			t.account = i + 1
		}
	}
	u.table.Store(t)
}

func idOf(b policy.RateBucket) bucketID { return bucketID{b.Tier, b.API, b.Stage, b.Route} }

// admitted counts d, decided by p at now, in the buckets that admitted it:
// those among its limits when it was allowed, and the shadow ones that
// took (a shadow bucket's utilization is what enforcing it would show). A
// denied request took no token (policy: all or none), and one allowed
// without the store met no bucket. A decision made with a policy that a
// reload has just replaced is not counted: its positions are the old
// policy's.
func (u *utilization) admitted(p *policy.Policy, d *policy.Decision, now time.Time) {
	if d.Verdict != policy.Allow || d.NLimits == 0 && d.ShadowTook == 0 {
		return
	}
	t := u.table.Load()
	if t.p != p {
		return
	}
	sec := uint32(now.Unix())
	took := d.ShadowTook
	for _, l := range d.AppliedLimits() {
		took |= 1 << l.Tier
	}
	for tier, at := range [...]int{policy.TierAccount: t.account, policy.TierStage: d.StageBucket, policy.TierRoute: d.RouteBucket} {
		if at > 0 && took&(1<<tier) != 0 {
			t.windows[at-1].add(sec)
		}
	}
}

// Describe implements prometheus.Collector.
func (u *utilization) Describe(ch chan<- *prometheus.Desc) { ch <- u.desc }

// Collect implements prometheus.Collector: one series per bucket of the
// policy served, at the server's clock.
func (u *utilization) Collect(ch chan<- prometheus.Metric) {
	t := u.table.Load()
	sec := uint32(u.now().Unix())
	for i, b := range t.buckets {
		ch <- prometheus.MustNewConstMetric(u.desc, prometheus.GaugeValue, ratio(t.windows[i].sum(sec), b.Throttle),
			b.Tier.String(), b.API, b.Stage, b.Route)
	}
}

// ratio is n requests in utilizationSeconds over th's rate; a bucket of
// rate 0 (a stop switch) is at 0 until it admits a request (its burst),
// then at +Inf.
func ratio(n uint64, th policy.Throttle) float64 {
	switch {
	case n == 0:
		return 0
	case th.RateMicro == 0:
		return math.Inf(1)
	}
	return float64(n) / utilizationSeconds / th.Rate()
}

// window is one bucket's admitted requests per second. Slot s%windowSlots
// holds second s's count in its low 32 bits and s (Unix seconds, modulo
// 2^32) in its high ones, so that a slot moves to a new second in one
// compare-and-swap, and a count is never added to a second it is not of.
type window struct{ slots [windowSlots]atomic.Uint64 }

// add counts one request in second sec. The common case is one atomic
// add: the slot already holds sec. Else the add went to a second that has
// left the window (or, after the clock went back a minute, one ahead), and
// the slot starts anew at sec with this request, unless another request
// of sec has started it first.
func (w *window) add(sec uint32) {
	slot := &w.slots[sec%windowSlots]
	if uint32(slot.Add(1)>>32) == sec {
		return
	}
	for {
		v := slot.Load()
		if uint32(v>>32) == sec {
			slot.Add(1)
			return
		}
		if slot.CompareAndSwap(v, uint64(sec)<<32|1) {
			return
		}
	}
}

// sum returns the requests counted in the utilizationSeconds whole seconds
// before second now.
func (w *window) sum(now uint32) uint64 {
	var n uint64
	for i := range w.slots {
		v := w.slots[i].Load()
		if age := int32(now - uint32(v>>32)); age >= 1 && age <= utilizationSeconds {
			n += v & math.MaxUint32
		}
	}
	return n
}
