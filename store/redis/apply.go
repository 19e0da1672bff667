package redis

import (
	_ "embed"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
)

var (
	//go:embed apply.lua
	applySrc    string
	applyScript = goredis.NewScript(applySrc)
	applySHA    = applyScript.Hash()
)

// Apply implements policy.State: the batch is one decision of the apply
// script, within the decision budget. Decisions that arrive while calls are
// in flight wait and go together in the next call (batch.go); each is one
// atomic step and costs its caller one round trip either way.
//
// With Options.Local, a decision that Redis does not answer in time (or
// that finds the circuit open) is made locally (local.go) and Apply returns
// nil with b.Local set; without it, Apply returns the error.
//
// A decision's KEYS are the hits', the ops' and the usage counter's; its
// ARGV: the instant in µs ("" for Redis's clock), its caller's deadline on
// Redis's clock (µs; 0: none), the counts of hits and
// ops, its flags (flagUsage: there is a usage counter; flagDenied: take
// nothing) and the usage counter's expiry (Unix ms), the lease
// TTL (µs), then per hit its limit (negated for a hit that only
// watches: policy.Hit.Watch) and window (µs), per op "b", rate
// (µreq/s), burst or "q", limit, expiry (Unix ms) or "c", cap, lease
// ("B" and "Q" for shadow ops: policy.Op.Shadow; "nN" for a lease of up
// to N tokens of a bucket, given back when N is negative: spread.go). A
// call's KEYS are its decisions' KEYS one after another, and its ARGV their
// ARGV. The reply holds, per decision, the length of its part, then: the
// blocking hit (1-based, 0: none; -1: Redis ran it past its deadline and
// took nothing), whether the ops were taken, the instant
// (µs), each counted hit's count, and per op (when no hit blocked) the
// bucket refilled (nano-tokens, µs), the quota's used and granted, or the
// slots held, before the take.
func (s *Store) Apply(now time.Time, b *policy.Batch) error {
	b.Blocked, b.Taken = -1, false
	if len(b.Hits) == 0 && len(b.Ops) == 0 && b.Usage.Limit == "" {
		return nil
	}
	for i := range b.Hits {
		if w := b.Hits[i].Window; w < time.Microsecond {
			return fmt.Errorf("redis: hit %d: window %v is under 1µs", i, w)
		}
	}
	err := s.applyShared(now, b)
	if err == nil || s.local == nil || errors.Is(err, ErrClosed) || isDataError(err) {
		return err // a fault of the data is no outage: the server counts it
	}
	if !errors.Is(err, ErrUnavailable) {
		// The call may have reached Redis and taken a slot: it goes back
		// when Redis answers again.
		if n := len(b.Ops); n > 0 && b.Ops[n-1].Tier == policy.TierConcurrency {
			s.stray(b.Ops[n-1].Key, b.Ops[n-1].Lease)
		}
	}
	s.decideLocally(now, b)
	return nil
}

// errLate is the error of a decision Redis ran after its deadline, taking
// nothing; errBadReply, of a reply that does not fit the call.
var (
	errLate     = errors.New("redis: apply: reached Redis after its budget ended")
	errBadReply = errors.New("the reply does not fit")
)

// applyShared makes the decision on Redis: in one call, or on a cluster in
// a call for each home (spread.go).
func (s *Store) applyShared(now time.Time, b *policy.Batch) error {
	if s.spread {
		return s.applySpread(now, b)
	}
	return s.applyCall(now, b, false)
}

// applyCall makes the batch one decision of the apply script, and fills in
// its results. denied says that a limit checked elsewhere (a leased shared
// bucket) denies the request: the ops are checked, and nothing is taken.
func (s *Store) applyCall(now time.Time, b *policy.Batch, denied bool) error {
	if err := s.callsStopped(); err != nil {
		return err
	}
	owed := s.owedQuotas(b)
	r, err := s.encode(now, b, denied, &owed)
	if err != nil {
		return err
	}
	res, err := s.decide(r)
	if err != nil {
		return err
	}
	return s.read(res, b, &owed)
}

// Bits of a decision's flags argument.
const (
	flagUsage  = 1 // the last key is the usage counter
	flagDenied = 2 // take nothing (applyCall's denied)
)

// encode returns the request of the batch's decision; its quotas are
// checked with what they owe Redis counted as used (owedQuotas).
func (s *Store) encode(now time.Time, b *policy.Batch, denied bool, owed *quotaOwed) (*request, error) {
	usage := b.Usage.Limit != ""
	r := newRequest(len(b.Hits), len(b.Ops))
	r.start = time.Now()
	// The decision's budget, which a key lookup before may have spent in
	// part; else a whole one.
	r.deadline = b.Deadline
	if r.deadline.IsZero() {
		r.deadline = r.start.Add(s.opts.Timeout)
	} else if !r.start.Before(r.deadline) {
		r.free()
		return nil, s.errTimeout
	}
	if s.local != nil {
		r.note(b, owed)
		r.late.denied = denied
	}
	if s.opts.CallerClock {
		r.num(now.UnixMicro())
	} else {
		r.str("")
	}
	r.num(s.scriptDeadline(r.deadline))
	var usageAt int64
	if usage {
		usageAt = time.Unix(b.Usage.Period, 0).Add(24*time.Hour + s.opts.Retention).UnixMilli()
	}
	r.num(int64(len(b.Hits)))
	r.num(int64(len(b.Ops)))
	r.num(int64(b2i(usage)*flagUsage + b2i(denied)*flagDenied))
	r.num(usageAt)
	r.num(s.opts.LeaseTTL.Microseconds())
	for i := range b.Hits {
		h := &b.Hits[i]
		r.key(s, 'w', h.Key)
		if h.Watch {
			r.num(-h.Limit) // counted, never blocks
		} else {
			r.num(h.Limit)
		}
		r.num(h.Window.Microseconds())
	}
	for i := range b.Ops {
		o := &b.Ops[i]
		switch o.Tier {
		case policy.TierQuota:
			r.key(s, 'c', o.Key)
			r.str(kind(o.Shadow, "q", "Q"))
			r.num(o.Quota - owed.of(i))
			r.num(o.End.Add(s.opts.Retention).UnixMilli())
		case policy.TierConcurrency:
			r.key(s, 's', o.Key)
			r.str("c")
			r.num(o.Quota)
			r.str(o.Lease)
		default:
			r.key(s, 'b', o.Key)
			r.str(kind(o.Shadow, "b", "B"))
			r.num(int64(o.Throttle.RateMicro)) // under 2^53: see the package doc
			r.num(o.Throttle.Burst)
		}
	}
	if usage {
		r.key(s, 'c', b.Usage)
	}
	r.sealKeys()
	if err := s.route(r); err != nil {
		r.free()
		return nil, err
	}
	return r, nil
}

// read fills in b's results from the apply script's reply; owed is what
// encode counted as used.
func (s *Store) read(res []int64, b *policy.Batch, owed *quotaOwed) error {
	bad := func() error {
		return fmt.Errorf("redis %s: apply: a reply of %d values for the batch: %w", s.url, len(res), errBadReply)
	}
	if len(res) < 3 {
		return bad()
	}
	if res[0] < 0 {
		return errLate
	}
	blocked, taken, at := int(res[0]), res[1] == 1, res[2]
	counted := len(b.Hits)
	if blocked > 0 {
		counted = blocked
	}
	if len(res) < 3+counted || blocked > len(b.Hits) {
		return bad()
	}
	for i := range counted {
		b.Hits[i].Count = res[3+i]
	}
	if blocked > 0 {
		b.Blocked = blocked - 1
		return nil
	}
	ops := res[3+counted:]
	if len(ops) != 2*len(b.Ops) {
		return bad()
	}
	now := time.UnixMicro(at)
	for i := range b.Ops {
		o := &b.Ops[i]
		x, y := ops[2*i], ops[2*i+1]
		switch o.Tier {
		case policy.TierQuota:
			o.CheckQuota(x+owed.of(i), y, now) // as the script checked it
			if taken && o.OK {
				o.TakeQuota()
				x++
			}
			if s.local != nil {
				s.local.views.put(o.Key, x, y, o.End, now)
			}
			continue
		case policy.TierConcurrency:
			o.CheckSlot(x)
			if taken {
				o.TakeSlot()
			}
			continue
		}
		// The bucket as the script refilled it at its instant.
		cur := policy.Bucket{Tokens: x, Last: y * int64(time.Microsecond)}
		cur = o.CheckBucket(cur, time.Unix(0, cur.Last))
		if taken && o.OK {
			o.TakeBucket(cur)
		}
	}
	b.Taken = taken
	return nil
}

// kind returns an op's kind for the apply script: enforced, or
// shadowKind for a shadow op.
func kind(shadow bool, enforced, shadowKind string) string {
	if shadow {
		return shadowKind
	}
	return enforced
}

// b2i returns 1 for true, 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
