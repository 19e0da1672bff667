package policy

import (
	"net/netip"
	"time"
)

// State keeps the mutable side of the limits: WAF rate counters, token
// buckets and quota counters. Implementations live outside this package
// (in memory, in an embedded file, in Redis) and must be safe for concurrent
// use.
type State interface {
	// Apply carries out one request's batch as one atomic step. It first
	// adds one hit to each of b.Hits in order and stops at the first whose
	// count is over its limit, unless that hit only Watches (b.Blocked). Then, only when no hit blocked
	// and b.Ops is not empty, it refills and checks every op; when all the
	// enforced ones (not Shadow) admit the request it takes one from each
	// of them and from each shadow op that admits, else it takes nothing.
	// It fills in the results of b. An error means the state could not be
	// reached; b's results are then undefined.
	Apply(now time.Time, b *Batch) error
	// Release gives back the concurrency slot k that an Apply took for
	// lease. Callers release each slot exactly once, and also release the
	// slot of an Apply that failed (it may have been taken); a store where
	// Apply can fail after taking must accept the release of a slot it
	// never took.
	Release(k Key, lease string) error
}

// Key identifies one counter or bucket. Limit is the identity of the limit's
// definition (precomputed by Compile); the other fields say whose it is.
type Key struct {
	Limit   string
	Subject string
	// Addr is the client's address, or for a WAF counter per API key the
	// first 128 bits of the key's SHA-256.
	Addr netip.Addr
	// Period is the start of a quota period in Unix seconds.
	Period int64
}

// Hit is one WAF rate-based rule's count for one aggregation key.
type Hit struct {
	Key    Key
	Limit  int64
	Window time.Duration
	// Watch marks the hit of a rule that counts but never blocks (action
	// count, or mode: shadow): Apply does not stop at it, however high
	// its count; Evaluate compares the count with Limit itself.
	Watch bool
	// Count is set by Apply: the count in the last Window, this hit
	// included.
	Count int64
}

// Op is one bucket or quota counter a request must pass.
type Op struct {
	Key  Key
	Tier Tier
	// Throttle is the bucket's limit (tiers other than TierQuota).
	Throttle Throttle
	// Quota is the counter's limit, and End the end of its period
	// (TierQuota); for TierConcurrency, Quota is the cap.
	Quota int64
	End   time.Time
	// Lease is the id a TierConcurrency op takes its slot under.
	Lease string
	// Shadow marks a limit in shadow mode (SPEC §10): it never denies
	// the request, and takes only when it admits and the enforced ops
	// take, so that its state follows what enforcing it would do.
	Shadow bool

	// Set by Apply.
	OK        bool          // the op admits the request
	Remaining int64         // left after the take (or now, when nothing was taken)
	Wait      time.Duration // until the op admits one request (0 when OK)
	Reset     time.Duration // until the bucket is full or the period ends
}

// Batch is the state work of one request. It is built by Evaluate and
// reused; its slices point into fixed arrays, so building one does not
// allocate.
type Batch struct {
	Hits    []Hit
	Ops     []Op
	Blocked int // index into Hits of the blocking hit, or -1
	// Taken is set when every enforced op admitted and one was taken from
	// each (and from the shadow ops that admitted).
	Taken bool
	// Deadline is the request's (Request.Deadline): when the answer of a
	// store shared by replicas is due.
	Deadline time.Time
	// Local is set by a store shared by replicas that could not reach
	// what it shares and carried out the batch on this replica's own
	// state, with its share of each limit (store/redis).
	Local bool

	// Usage, when its Limit is set, is the usage-history counter of the
	// key's customer and plan for the current UTC day (Period). Apply adds
	// one to it when the request is admitted: no hit blocked and every
	// enforced op admitted (or there were none). The counter is history, not a limit:
	// stores keep it past its day, for usage reports.
	Usage Key

	hits [maxHits]Hit
	ops  [MaxLimits]Op
}

// maxHits bounds the rate-based rules evaluated for one request.
const maxHits = 16

// Reset empties b for reuse.
func (b *Batch) Reset() {
	b.Hits = b.hits[:0]
	b.Ops = b.ops[:0]
	b.Blocked = -1
	b.Taken = false
	b.Local = false
	b.Deadline = time.Time{}
	b.Usage = Key{}
}

// CheckBucket refills, checks and reports one bucket op against its current
// state bucket, without taking. Stores share it so that the arithmetic lives
// in one place. It returns the refilled bucket.
func (o *Op) CheckBucket(cur Bucket, now time.Time) Bucket {
	t := o.Throttle
	b := t.At(cur, now)
	o.OK = t.Admits(b)
	o.Remaining = t.Remaining(b)
	o.Wait = t.Wait(b)
	o.Reset = t.Reset(b)
	return b
}

// TakeBucket takes one token from a bucket CheckBucket admitted and updates
// the op's report.
func (o *Op) TakeBucket(b Bucket) Bucket {
	b = o.Throttle.Take(b)
	o.Remaining = o.Throttle.Remaining(b)
	o.Reset = o.Throttle.Reset(b)
	return b
}

// CheckQuota checks a quota counter holding used requests, to which an
// operator granted granted more for this period, without taking. The op's
// Quota grows by the grant, so that the decision reports the limit the
// customer actually has.
func (o *Op) CheckQuota(used, granted int64, now time.Time) {
	o.Quota += granted
	o.OK = used < o.Quota
	o.Remaining = max(o.Quota-used, 0)
	o.Reset = max(o.End.Sub(now), 0)
	if o.OK {
		o.Wait = 0
	} else {
		o.Wait = o.Reset
	}
}

// TakeQuota records the take of one request on a quota CheckQuota admitted.
func (o *Op) TakeQuota() { o.Remaining-- }

// slotWait is the Wait of a concurrency op that does not admit: slots free
// up when requests end, which no clock predicts; a client is told to retry
// in a second.
const slotWait = time.Second

// CheckSlot checks a concurrency op against the slots held, without taking.
func (o *Op) CheckSlot(held int64) {
	o.OK = held < o.Quota
	o.Remaining = max(o.Quota-held, 0)
	o.Reset = 0
	if o.OK {
		o.Wait = 0
	} else {
		o.Wait = slotWait
	}
}

// TakeSlot records the take of a slot CheckSlot admitted.
func (o *Op) TakeSlot() { o.Remaining-- }
