package redis

import (
	"context"
	"sync"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// Local decisions (Options.Local; tollgate's --on-store-error local): a
// decision whose call fails, misses its budget or finds the circuit open is
// made on this replica's own store, with every shared limit divided among the
// live replicas (replicas.go): each takes its share of a bucket's rate and
// burst, of a WAF rule's limit and of a concurrency cap, the shares adding up
// to the limit (share), so the fleet admits one limit in total; and of a
// quota, ⌊left/n⌋ of what was left of it when Redis last answered this
// replica (views.go), which never hands out more than was left when the
// replicas' last answers were the same. A replica that saw its last answer
// before other replicas' uses counts those uses as left: the fleet may then
// exceed the quota by at most the uses each replica had not seen, divided by
// n (none when the replicas took turns: each sees n−1 fewer uses than the
// next one, and ⌊(x)/n⌋+...+⌊(x+n−1)/n⌋ = x). A quota this replica never saw
// counts as unused.
//
// The local store keeps what the local decisions took. Its buckets, WAF
// counters and slots stand alone (a bucket refills, a window slides); its
// quota and usage counters are added to Redis when it answers again
// (reconcile.go).
type fallback struct {
	mem   *memory.Store
	views *views
	// leases holds the leases of the slots taken locally, which are
	// released locally.
	leases sync.Map
}

// localUsageRetention is how long the local store keeps a day's usage
// counter after the day ends: long enough for an outage to end and the count
// to reach Redis.
const localUsageRetention = 48 * time.Hour

func newFallback(maxCounters int) *fallback {
	if maxCounters <= 0 {
		maxCounters = memory.DefaultMaxCounters
	}
	return &fallback{
		mem:   memory.New(memory.WithJournal(), memory.WithUsageRetention(localUsageRetention), memory.WithMaxCounters(maxCounters)),
		views: newViews(),
	}
}

// share returns the share of x that falls to the replica at place i of n:
// ⌊(x+i)/n⌋ for x ≥ 0, so that the n shares add up to x (Hermite's
// identity), without overflow.
func share[T int64 | uint64](x T, i, n int) T {
	q, r := x/T(n), x%T(n)
	if T(i) >= T(n)-r {
		q++
	}
	return q
}

// shareThrottle returns a throttle's share: of its rate and of its burst.
func shareThrottle(t policy.Throttle, i, n int) policy.Throttle {
	return policy.Throttle{RateMicro: share(t.RateMicro, i, n), Burst: share(t.Burst, i, n), Shadow: t.Shadow}
}

// decideLocally carries out b on the local store, with this replica's
// share of every limit, and marks it Local.
func (s *Store) decideLocally(now time.Time, b *policy.Batch) {
	n, i := s.replicas.share()
	for j := range b.Hits {
		b.Hits[j].Limit = share(b.Hits[j].Limit, i, n)
	}
	// What each quota op looked like to Redis when it last answered.
	type quota struct{ limit, used, granted, share int64 }
	var room [2 * policy.MaxLimits]quota // enforced and shadow
	quotas := room[:]
	if len(b.Ops) > len(room) {
		quotas = make([]quota, len(b.Ops))
	}
	for j := range b.Ops {
		o := &b.Ops[j]
		switch o.Tier {
		case policy.TierQuota:
			q := &quotas[j]
			q.limit = o.Quota
			q.used, q.granted, _ = s.local.views.get(o.Key)
			q.share = max(o.Quota+q.granted-q.used, 0) / int64(n)
			o.Quota = q.share
		case policy.TierConcurrency:
			o.Quota = share(o.Quota, i, n)
		default:
			o.Throttle = shareThrottle(o.Throttle, i, n)
		}
	}
	s.local.mem.Apply(now, b) // memory never fails
	for j := range b.Ops {
		o := &b.Ops[j]
		switch o.Tier {
		case policy.TierQuota:
			// The quota as a whole: its limit with grants, and what is
			// left of it as this replica knows, but no more than this
			// replica may still give.
			q := &quotas[j]
			taken := q.share - o.Remaining // by this replica since Redis last answered
			o.Quota = q.limit + q.granted
			o.Remaining = max(min(o.Quota-q.used-taken, o.Remaining), 0)
		case policy.TierConcurrency:
			if b.Taken {
				s.local.leases.Store(o.Lease, struct{}{})
			}
		}
	}
	b.Local = true
	if counted := b.Taken || b.Blocked < 0 && len(b.Ops) == 0 && b.Usage.Limit != ""; counted {
		s.localTaken.Add(1)
		s.owed.Store(true) // quota or usage that Redis must be given
	}
}

// lateInfo is what a decision's reply that comes after its caller gave up
// (and decided locally) needs to settle: the counters Redis may have taken
// from.
type lateInfo struct {
	nops               int
	quota, usage, slot policy.Key
	quotaEnd, usageEnd time.Time
	lease              string
	// shadowQuota is set when the quota is a shadow op, which Redis took
	// only when it admitted: by its used and granted counts, at
	// quotaAt in the reply, against quotaLimit.
	shadowQuota bool
	quotaAt     int
	quotaLimit  int64
	// denied is set when the decision was sent with flagDenied: Redis
	// took nothing for it, usage included.
	denied bool
}

// note records in r what settling a late reply for b needs; owed is what
// the quotas were checked with as used.
func (r *request) note(b *policy.Batch, owed *quotaOwed) {
	r.late = lateInfo{nops: len(b.Ops)}
	for j := range b.Ops {
		switch o := &b.Ops[j]; o.Tier {
		case policy.TierQuota:
			r.late.quota, r.late.quotaEnd = o.Key, o.End
			r.late.shadowQuota, r.late.quotaLimit = o.Shadow, o.Quota-owed.of(j)
			r.late.quotaAt = 3 + len(b.Hits) + 2*j
		case policy.TierConcurrency:
			r.late.slot, r.late.lease = o.Key, o.Lease
		}
	}
	if b.Usage.Limit != "" {
		r.late.usage = b.Usage
		r.late.usageEnd = time.Unix(b.Usage.Period, 0).Add(24*time.Hour + localUsageRetention)
	}
}

// quotaTaken reports whether Redis, having taken the ops of a reply, took
// the quota: a shadow quota only when it admitted.
func (l *lateInfo) quotaTaken(reply []int64) bool {
	if !l.shadowQuota {
		return true
	}
	if l.quotaAt+1 >= len(reply) {
		return false
	}
	o := policy.Op{Quota: l.quotaLimit}
	o.CheckQuota(reply[l.quotaAt], reply[l.quotaAt+1], time.Time{})
	return o.OK
}

// settleLate takes account of the reply of a decision whose caller gave up
// on it and decided locally: what Redis took for it is marked in the local
// store as held by Redis (so that the push does not add it again, and takes
// it back when the local decision did not take it), and a slot Redis took
// is given back.
func (s *Store) settleLate(r *request, reply []int64) {
	if s.local == nil || len(reply) < 3 || reply[0] < 0 || r.late.denied {
		return // past its deadline, or denied: Redis took nothing
	}
	blocked, taken := reply[0] > 0, reply[1] == 1
	if taken && r.late.quota.Limit != "" && r.late.quotaTaken(reply) {
		s.local.mem.Grant(r.late.quota, 1, r.late.quotaEnd)
	}
	if !blocked && (r.late.nops == 0 || taken) && r.late.usage.Limit != "" {
		s.local.mem.Grant(r.late.usage, 1, r.late.usageEnd)
	}
	if taken && r.late.slot.Limit != "" {
		key, lease := s.key('s', r.late.slot), r.late.lease
		s.background.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), max(s.opts.Timeout, releaseTimeout))
			defer cancel()
			s.c.ZRem(ctx, key, lease) // else the lease runs out
		})
	}
}

// quotaOwed holds, per op of a batch, the takes of its quota that decisions made
// locally counted and that Redis does not hold yet (the push brings them).
// Room for each limit twice, enforced and shadow; were a batch to hold more
// ops, those beyond would be checked on Redis's count alone.
type quotaOwed [2 * policy.MaxLimits]int64

// of returns what op i owes.
func (o *quotaOwed) of(i int) int64 {
	if i < len(o) {
		return o[i]
	}
	return 0
}

// owedQuotas returns what b's quotas owe Redis. A decision made on Redis
// counts them as used: else the takes made locally during a slow call or an
// outage would be handed out again on Redis before the push lands (one
// replica, its last unit taken locally, then taken again on Redis). Checked
// against Redis's count plus the owed takes, a quota errs by denying, for
// the calls that the push overtakes, never by admitting.
func (s *Store) owedQuotas(b *policy.Batch) (o quotaOwed) {
	if s.local == nil || s.localTaken.Load() == s.pushedThrough.Load() {
		return o
	}
	for i := range min(len(b.Ops), len(o)) {
		if b.Ops[i].Tier == policy.TierQuota {
			used, granted, _ := s.local.mem.Counter(b.Ops[i].Key)
			o[i] = max(used-granted, 0)
		}
	}
	return o
}
