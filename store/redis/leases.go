package redis

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// Leases of the shared buckets on a cluster (spread.go).
//
// The bucket in Redis stays the one that refills: a replica takes tokens
// from it in a lease of up to leaseSize at a time (one call to the bucket's
// slot, the apply script's "nN" op), keeps them in a pool, and spends them
// on its decisions without a call. A pool asks for the next lease only when
// it is empty, one lease in flight at a time: the decision that asks takes
// the first token of the lease, and the decisions that find the pool empty
// meanwhile wait for that lease, then share the rest. A token of a request that is denied after all
// goes back to the pool; the tokens of a pool left unused for leaseIdle go
// back to Redis (their bucket, capped at full), and so do all of them when
// the Store closes. A lease that finds the bucket empty tells the pool when
// its next token comes (at most maxEmpty ahead): until then the pool denies
// without a call.
//
// The bound. Every token spent was taken from Redis's bucket, which refills
// at the limit's rate up to its burst; what a replica holds besides is at
// most leaseSize + c: a lease, made when its pool is empty, and a token for
// each of its decisions in flight, c at most at once (a decision whose
// customer's call denies puts its token back into the pool). So over any
// time T a shared bucket admits at most burst + rate×T +
// replicas×(leaseSize + c) requests (its exact limit plus what the replicas
// hold), and leaseSize is a quarter of the burst shared by the live
// replicas (at least 1): beyond the decisions in flight, at most burst/4
// over, or one token per replica when the burst is under 4 a replica. It
// may admit less than its limit while tokens sit in the pool of a replica
// that has no use for them, for at most leaseIdle; when a pool denies on
// what a lease told it (maxEmpty) while another replica gave tokens back;
// and when tokens are lost (a lease whose reply came after its decision's
// budget, a return that failed) until the bucket refills. The RateLimit headers of a leased bucket are estimates: what
// Redis held at this replica's last lease and what its pool holds.
const (
	// leaseIdle is how long a pool keeps tokens it does not spend.
	leaseIdle = 250 * time.Millisecond
	// maxEmpty bounds how long a pool denies on a lease that found the
	// bucket empty.
	maxEmpty = 100 * time.Millisecond
	// maxLease bounds a lease's size.
	maxLease = 1024
)

// leases are a Store's pools, by their bucket's limit (a shared bucket's
// key is its limit alone): read on every decision, added to rarely.
type leases struct {
	pools sync.Map // string → *pool
}

// pool is one shared bucket's tokens on this replica.
type pool struct {
	mu       sync.Mutex
	key      policy.Key
	throttle policy.Throttle
	tokens   int64         // held, to spend
	seen     policy.Bucket // the bucket in Redis after the last lease
	empty    time.Time     // a lease found the bucket empty: deny until then
	used     time.Time     // when a token was last taken or given back
	fill     chan struct{} // closed when the lease in flight ends; nil: none
}

// leaseSize returns the tokens a lease asks for: a quarter of the burst
// shared by the live replicas, at least 1.
func leaseSize(burst int64, replicas int) int64 {
	return min(max(burst/int64(4*max(replicas, 1)), 1), maxLease)
}

// pool returns the pool of the bucket k, made on first use.
func (l *leases) pool(k policy.Key, t policy.Throttle) *pool {
	if p, ok := l.pools.Load(k.Limit); ok {
		return p.(*pool)
	}
	p, _ := l.pools.LoadOrStore(k.Limit, &pool{throttle: t, key: k})
	return p.(*pool)
}

// take takes a token of o's shared bucket for a decision at now (the
// caller's instant; Redis's clock is used unless Options.CallerClock),
// leasing when the pool is empty, and reports on o. ok is false when the
// bucket has no token for the request; err, when the lease failed.
func (l *leases) take(s *Store, now time.Time, o *policy.Op, deadline time.Time) (ok bool, err error) {
	p := l.pool(o.Key, o.Throttle)
	for {
		at := s.clock(now)
		p.mu.Lock()
		if p.tokens > 0 {
			p.tokens--
			p.used = time.Now()
			p.report(o, at, true)
			p.mu.Unlock()
			return true, nil
		}
		if at.Before(p.empty) {
			p.report(o, at, false)
			p.mu.Unlock()
			return false, nil
		}
		if ch := p.fill; ch != nil {
			p.mu.Unlock()
			if err := waitFill(ch, deadline, s); err != nil {
				return false, err
			}
			continue
		}
		ch := make(chan struct{})
		p.fill = ch
		p.mu.Unlock()
		ok, err := s.lease(now, p, deadline)
		at = s.clock(now)
		p.mu.Lock()
		p.fill = nil
		if err == nil {
			p.report(o, at, ok)
		}
		p.mu.Unlock()
		close(ch)
		return ok, err
	}
}

// waitFill waits for the lease in flight, until the decision's deadline.
func waitFill(ch chan struct{}, deadline time.Time, s *Store) error {
	if deadline.IsZero() {
		deadline = time.Now().Add(s.opts.Timeout)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return s.errTimeout
	case <-s.done:
		return s.errClosed
	}
}

// report sets o's results: ok, and what is left as this replica knows it
// (Redis's bucket at the last lease, refilled to at, and the pool).
func (p *pool) report(o *policy.Op, at time.Time, ok bool) {
	cur := p.seen
	cur.Tokens += p.tokens * int64(time.Second)
	if ok {
		cur.Tokens += int64(time.Second) // the token just taken, then taken
	}
	cur = o.CheckBucket(cur, at)
	if ok {
		o.TakeBucket(cur)
		o.OK, o.Wait = true, 0
		return
	}
	o.OK = false
	o.Wait = max(o.Wait, p.empty.Sub(at), time.Millisecond)
}

// untake corrects the report of a token that went back to the pool.
func (l *leases) untake(o *policy.Op) {
	o.Remaining = min(o.Remaining+1, o.Throttle.Burst)
}

// giveBack returns a token taken for a request that was denied after all to
// the pool of the bucket k.
func (l *leases) giveBack(k policy.Key) {
	v, ok := l.pools.Load(k.Limit)
	if !ok {
		return
	}
	p := v.(*pool)
	p.mu.Lock()
	p.tokens++
	p.used = time.Now()
	p.mu.Unlock()
}

// lease takes up to leaseSize tokens from p's bucket into p, in one call,
// and one of them for its caller's decision: ok reports whether there was
// one (else the bucket is empty). The caller's token is taken under the
// lock that adds the others, before the decisions waiting for this lease
// wake: they cannot take them all and leave the caller denied while the
// bucket in Redis holds more.
func (s *Store) lease(now time.Time, p *pool, deadline time.Time) (ok bool, err error) {
	n := leaseSize(p.throttle.Burst, s.Replicas())
	res, at, err := s.leaseCall(now, s.key('b', p.key), p.throttle, n, deadline)
	if err != nil {
		return false, err
	}
	tokens, last := res[0], res[1]
	got := min(n, tokens/int64(time.Second))
	p.mu.Lock()
	defer p.mu.Unlock()
	if got > 0 {
		p.tokens += got - 1
	}
	p.used = time.Now()
	p.seen = policy.Bucket{Tokens: tokens - got*int64(time.Second), Last: last * int64(time.Microsecond)}
	if got < n {
		// The bucket is empty: ask again when a lease's worth of tokens
		// has come (at most maxEmpty ahead), not at each token, so
		// that an overrun bucket costs few calls; the tokens gather in
		// Redis meanwhile, so the bucket still admits its rate.
		worth := min(n, max(p.throttle.Burst, 1)) - 1 // tokens besides the next
		ahead := p.throttle.At(p.seen, at)
		ahead.Tokens -= worth * int64(time.Second)
		p.empty = at.Add(min(p.throttle.Wait(ahead), maxEmpty))
	}
	return got > 0, nil
}

// leaseCall runs the apply script's lease op ("nN": N tokens, or -N given
// back) on the bucket at key; it returns the bucket before the lease
// (nano-tokens, µs) and the instant of the call.
func (s *Store) leaseCall(now time.Time, key string, t policy.Throttle, n int64, deadline time.Time) (bucket [2]int64, at time.Time, err error) {
	if err := s.callsStopped(); err != nil {
		return bucket, at, err
	}
	r := newRequest(0, 1)
	r.start = time.Now()
	r.deadline = deadline
	if r.deadline.IsZero() {
		r.deadline = r.start.Add(s.opts.Timeout)
	}
	if s.opts.CallerClock {
		r.num(now.UnixMicro())
	} else {
		r.str("")
	}
	r.num(s.scriptDeadline(r.deadline))
	r.num(0)
	r.num(1)
	r.num(0)
	r.num(0)
	r.num(0)
	r.kbuf = append(r.kbuf, key...)
	r.ends = append(r.ends, len(r.kbuf))
	r.str("n" + strconv.FormatInt(n, 10))
	r.num(int64(t.RateMicro))
	r.num(t.Burst)
	r.sealKeys()
	if err := s.route(r); err != nil {
		r.free()
		return bucket, at, err
	}
	res, err := s.decide(r)
	if err != nil {
		return bucket, at, err
	}
	if len(res) != 5 || res[0] < 0 {
		if len(res) > 0 && res[0] < 0 {
			return bucket, at, errLate
		}
		return bucket, at, errBadReply
	}
	return [2]int64{res[3], res[4]}, time.UnixMicro(res[2]), nil
}

// clock returns the instant of a decision at now on Redis's clock, as this
// replica knows it (the caller's own with Options.CallerClock).
func (s *Store) clock(now time.Time) time.Time {
	if s.opts.CallerClock || !s.replicas.valid.Load() {
		return now
	}
	return time.Now().Add(time.Duration(s.replicas.offset.Load()) * time.Microsecond)
}

// returnIdle gives the tokens of the pools unused for leaseIdle back to
// Redis (all of them when all is set), and forgets the pools left empty
// and unused.
func (s *Store) returnIdle(all bool) {
	var back []*pool
	s.leases.pools.Range(func(limit, v any) bool {
		p := v.(*pool)
		p.mu.Lock()
		idle := time.Since(p.used) >= leaseIdle
		if p.tokens > 0 && (idle || all) && p.fill == nil {
			back = append(back, p)
		} else if p.tokens == 0 && p.fill == nil && time.Since(p.used) > time.Minute {
			s.leases.pools.Delete(limit)
		}
		p.mu.Unlock()
		return true
	})
	for _, p := range back {
		p.mu.Lock()
		n, last := p.tokens, p.seen.Last
		p.tokens = 0
		p.mu.Unlock()
		if n == 0 {
			continue
		}
		// A return that fails leaves the bucket short of n tokens until
		// it refills: under its limit, never over.
		// The instant of the bucket's last lease, for Options.CallerClock
		// (a test's fixed instants); Redis's own clock otherwise.
		s.leaseCall(time.Unix(0, last), s.key('b', p.key), p.throttle, -n, time.Now().Add(s.opts.Timeout))
	}
}

// returning returns idle leases every leaseIdle/2 until the Store closes,
// then all of them.
func (s *Store) returning(ctx context.Context) {
	t := time.NewTicker(leaseIdle / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.returnIdle(false)
		}
	}
}
