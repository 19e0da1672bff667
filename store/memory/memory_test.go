package memory

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// t0 is a fixed instant on a whole minute, so that WAF windows of 10s start
// on it.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func bucketOp(limit string, rate float64, burst int64) policy.Op {
	return policy.Op{Key: policy.Key{Limit: limit}, Tier: policy.TierRoute, Throttle: policy.NewThrottle(rate, burst)}
}

func quotaOp(limit string, q int64, start, end time.Time) policy.Op {
	return policy.Op{Key: policy.Key{Limit: limit, Subject: "acme", Period: start.Unix()}, Tier: policy.TierQuota, Quota: q, End: end}
}

func hit(limit string, max int64, window time.Duration) policy.Hit {
	return policy.Hit{Key: policy.Key{Limit: limit, Addr: netip.MustParseAddr("198.51.100.7")}, Limit: max, Window: window}
}

// apply runs one batch of ops and hits at now and returns it.
func apply(t testing.TB, s *Store, now time.Time, hits []policy.Hit, ops ...policy.Op) *policy.Batch {
	t.Helper()
	b := new(policy.Batch)
	b.Reset()
	b.Hits = append(b.Hits, hits...)
	b.Ops = append(b.Ops, ops...)
	if err := s.Apply(now, b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return b
}

// TestBucketWorkedChecks drives the bucket checks of package policy's doc through Apply
// with one op per request.
func TestBucketWorkedChecks(t *testing.T) {
	type step struct {
		at      time.Duration // after t0
		n       int           // requests
		allowed int
		wait    time.Duration // of the last request, when it was denied
	}
	tests := []struct {
		name  string
		rate  float64
		burst int64
		steps []step
	}{
		{"free 10/20", 10, 20, []step{{0, 30, 20, 100 * time.Millisecond}, {time.Second, 11, 10, 100 * time.Millisecond}}},
		{"account 10000/5000", 10000, 5000, []step{{0, 5000, 5000, 0}, {100 * time.Millisecond, 5000, 1000, 100 * time.Microsecond}}},
		{"rate 0.1 burst 1", 0.1, 1, []step{{0, 1, 1, 0}, {5 * time.Second, 1, 0, 5 * time.Second}, {10 * time.Second, 1, 1, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			for i, st := range tt.steps {
				allowed := 0
				var last policy.Op
				for range st.n {
					b := apply(t, s, t0.Add(st.at), nil, bucketOp("k", tt.rate, tt.burst))
					if b.Taken != b.Ops[0].OK {
						t.Fatalf("step %d: Taken %v, OK %v, want equal", i, b.Taken, b.Ops[0].OK)
					}
					if b.Taken {
						allowed++
					}
					last = b.Ops[0]
				}
				if allowed != st.allowed {
					t.Errorf("step %d: got %d allowed, want %d", i, allowed, st.allowed)
				}
				if !last.OK && last.Wait != st.wait {
					t.Errorf("step %d: got Wait %v, want %v", i, last.Wait, st.wait)
				}
				if !last.OK && last.Remaining != 0 {
					t.Errorf("step %d: got Remaining %d on a denial, want 0", i, last.Remaining)
				}
			}
		})
	}
}

// TestBucketReport checks what one op reports after a take.
func TestBucketReport(t *testing.T) {
	s := New()
	steps := []struct {
		at        time.Duration
		ok        bool
		remaining int64
		wait      time.Duration
		reset     time.Duration
	}{
		{0, true, 1, 0, 500 * time.Millisecond},                                            // full 2, takes one
		{0, true, 0, 0, time.Second},                                                       // takes the last
		{0, false, 0, 500 * time.Millisecond, time.Second},                                 // empty: nothing taken
		{250 * time.Millisecond, false, 0, 250 * time.Millisecond, 750 * time.Millisecond}, // half a token
		{500 * time.Millisecond, true, 0, 0, time.Second},                                  // one token, taken
	}
	for i, st := range steps {
		b := apply(t, s, t0.Add(st.at), nil, bucketOp("k", 2, 2))
		o := b.Ops[0]
		if o.OK != st.ok || b.Taken != st.ok || o.Remaining != st.remaining || o.Wait != st.wait || o.Reset != st.reset {
			t.Errorf("step %d: got OK %v Taken %v Remaining %d Wait %v Reset %v, want OK %v Remaining %d Wait %v Reset %v",
				i, o.OK, b.Taken, o.Remaining, o.Wait, o.Reset, st.ok, st.remaining, st.wait, st.reset)
		}
	}
}

// TestRejectedConsumesNothing checks that when one op refuses, no op takes,
// and every op reports the state before the take.
func TestRejectedConsumesNothing(t *testing.T) {
	s := New()
	end := t0.Add(time.Hour)
	// Empty the second bucket (burst 1, rate 0).
	if b := apply(t, s, t0, nil, bucketOp("empty", 0, 1)); !b.Taken {
		t.Fatalf("step 0: got Taken false, want true")
	}
	steps := []struct {
		name string
		ops  []policy.Op
	}{
		{"bucket then empty bucket", []policy.Op{bucketOp("a", 10, 20), bucketOp("empty", 0, 1)}},
		{"empty bucket then quota", []policy.Op{bucketOp("empty", 0, 1), quotaOp("q", 5, t0, end)}},
		{"bucket, 0/0 switch, quota", []policy.Op{bucketOp("a", 10, 20), bucketOp("stop", 0, 0), quotaOp("q", 5, t0, end)}},
	}
	for i, st := range steps {
		b := apply(t, s, t0.Add(time.Second), nil, st.ops...)
		if b.Taken {
			t.Errorf("step %d (%s): got Taken true, want false", i+1, st.name)
		}
		for j, o := range b.Ops {
			switch o.Key.Limit {
			case "a":
				if !o.OK || o.Remaining != 20 {
					t.Errorf("step %d (%s): op %d: got OK %v Remaining %d, want OK true Remaining 20", i+1, st.name, j, o.OK, o.Remaining)
				}
			case "q":
				if !o.OK || o.Remaining != 5 || o.Reset != 59*time.Minute+59*time.Second {
					t.Errorf("step %d (%s): op %d: got OK %v Remaining %d Reset %v, want OK true Remaining 5 Reset 59m59s", i+1, st.name, j, o.OK, o.Remaining, o.Reset)
				}
			default:
				if o.OK || o.Remaining != 0 {
					t.Errorf("step %d (%s): op %d: got OK %v Remaining %d, want OK false Remaining 0", i+1, st.name, j, o.OK, o.Remaining)
				}
			}
		}
	}
	// Nothing was stored for "a" and "q": only the emptied bucket is held.
	if got := s.Len(); got != 1 {
		t.Errorf("step 4: got Len %d, want 1", got)
	}
	if got := s.Used(quotaOp("q", 5, t0, end).Key); got != 0 {
		t.Errorf("step 5: got Used %d, want 0", got)
	}
	b := apply(t, s, t0.Add(time.Second), nil, bucketOp("a", 10, 20))
	if !b.Taken || b.Ops[0].Remaining != 19 {
		t.Errorf("step 6: got Taken %v Remaining %d, want true 19", b.Taken, b.Ops[0].Remaining)
	}
}

// TestQuotaLimitAndPeriod is the quota check of package policy's doc: 5/day, 5 allowed at
// 23:59:58Z, the 6th denied until the period ends, allowed again at 00:00Z.
func TestQuotaLimitAndPeriod(t *testing.T) {
	s := New()
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	next := day.AddDate(0, 0, 1)
	at := next.Add(-2 * time.Second)
	steps := []struct {
		now, start, end time.Time
		ok              bool
		remaining       int64
		wait, reset     time.Duration
		used            int64 // of the period after the step
	}{
		{at, day, next, true, 4, 0, 2 * time.Second, 1},
		{at, day, next, true, 3, 0, 2 * time.Second, 2},
		{at, day, next, true, 2, 0, 2 * time.Second, 3},
		{at, day, next, true, 1, 0, 2 * time.Second, 4},
		{at.Add(time.Second), day, next, true, 0, 0, time.Second, 5},
		{at.Add(time.Second), day, next, false, 0, time.Second, time.Second, 5},
		{next, next, next.AddDate(0, 0, 1), true, 4, 0, 24 * time.Hour, 1},
	}
	for i, st := range steps {
		op := quotaOp("q", 5, st.start, st.end)
		b := apply(t, s, st.now, nil, op)
		o := b.Ops[0]
		if o.OK != st.ok || b.Taken != st.ok || o.Remaining != st.remaining || o.Wait != st.wait || o.Reset != st.reset {
			t.Errorf("step %d: got OK %v Taken %v Remaining %d Wait %v Reset %v, want OK %v Remaining %d Wait %v Reset %v",
				i, o.OK, b.Taken, o.Remaining, o.Wait, o.Reset, st.ok, st.remaining, st.wait, st.reset)
		}
		if got := s.Used(op.Key); got != st.used {
			t.Errorf("step %d: got Used %d, want %d", i, got, st.used)
		}
	}
	if got := s.Used(quotaOp("q", 5, day, next).Key); got != 5 {
		t.Errorf("step 7: got Used of the ended day %d, want 5", got)
	}
}

// TestWAFHitCounting checks counting, blocking, the sliding estimate and
// that blocked hits still count.
func TestWAFHitCounting(t *testing.T) {
	s := New()
	const w = 10 * time.Second
	steps := []struct {
		at      time.Duration
		count   int64
		blocked bool
	}{
		{0, 1, false},
		{time.Second, 2, false},
		{9 * time.Second, 3, false},
		{9 * time.Second, 4, true}, // over the limit of 3
		{9 * time.Second, 5, true}, // blocked hits are counted
		// Next window, 5s in: 5 × 5/10 + 1 = 3.
		{15 * time.Second, 3, false},
		// 8s in: 5 × 2/10 (exactly 1) + 2 = 3.
		{18 * time.Second, 3, false},
		// 9s in: 5 × 1/10 (0.5, rounded down) + 3 = 3.
		{19 * time.Second, 3, false},
		// The window after, 0s in: 3 × 10/10 + 1 = 4, blocked.
		{20 * time.Second, 4, true},
		// Two windows later: both passed, exact again.
		{40 * time.Second, 1, false},
	}
	for i, st := range steps {
		b := apply(t, s, t0.Add(st.at), []policy.Hit{hit("rule", 3, w)})
		h := b.Hits[0]
		if h.Count != st.count || (b.Blocked == 0) != st.blocked {
			t.Errorf("step %d: got Count %d Blocked %d, want Count %d blocked %v", i, h.Count, b.Blocked, st.count, st.blocked)
		}
	}
}

// TestWAFStopsAtFirstBlockingHit checks that hits after the blocking one are
// not counted and that the ops are left untouched.
func TestWAFStopsAtFirstBlockingHit(t *testing.T) {
	s := New()
	hits := []policy.Hit{hit("first", 100, time.Minute), hit("strict", 1, time.Minute), hit("after", 100, time.Minute)}
	for i, want := range []int{-1, 1, 1} {
		b := apply(t, s, t0, hits, bucketOp("a", 10, 20))
		if b.Blocked != want {
			t.Errorf("step %d: got Blocked %d, want %d", i, b.Blocked, want)
		}
		if want >= 0 && (b.Taken || b.Ops[0].OK || b.Hits[2].Count != 0) {
			t.Errorf("step %d: got Taken %v OK %v Count of later hit %d, want false false 0", i, b.Taken, b.Ops[0].OK, b.Hits[2].Count)
		}
	}
	b := apply(t, s, t0, hits[:1])
	if b.Hits[0].Count != 4 {
		t.Errorf("step 3: got Count of first %d, want 4", b.Hits[0].Count)
	}
	b = apply(t, s, t0, hits[2:])
	if b.Hits[0].Count != 2 {
		t.Errorf("step 4: got Count of after %d, want 2", b.Hits[0].Count)
	}
	b = apply(t, s, t0, nil, bucketOp("a", 10, 20))
	if b.Ops[0].Remaining != 18 {
		t.Errorf("step 5: got Remaining %d, want 18 (one take while unblocked, one now)", b.Ops[0].Remaining)
	}
}

func TestWAFBadWindow(t *testing.T) {
	s := New()
	b := new(policy.Batch)
	b.Reset()
	b.Hits = append(b.Hits, hit("rule", 1, 0))
	if err := s.Apply(t0, b); err == nil {
		t.Errorf("step 0: got nil error for a zero window, want an error")
	}
}

// TestBucketClockGoesBackwards checks that an earlier instant refills
// nothing, loses nothing and does not move the bucket's clock back.
func TestBucketClockGoesBackwards(t *testing.T) {
	s := New()
	steps := []struct {
		at        time.Duration
		ok        bool
		remaining int64
		wait      time.Duration
	}{
		{0, true, 1, 0},
		{-10 * time.Second, true, 0, 0},
		{-5 * time.Second, false, 0, time.Second},
		{0, false, 0, time.Second},
		{time.Second, true, 0, 0},
	}
	for i, st := range steps {
		b := apply(t, s, t0.Add(st.at), nil, bucketOp("k", 1, 2))
		o := b.Ops[0]
		if o.OK != st.ok || o.Remaining != st.remaining || o.Wait != st.wait {
			t.Errorf("step %d: got OK %v Remaining %d Wait %v, want %v %d %v", i, o.OK, o.Remaining, o.Wait, st.ok, st.remaining, st.wait)
		}
	}
}

// TestWAFClockGoesBackwards checks that a hit at an earlier instant counts
// into the current window and weighs the previous one fully.
func TestWAFClockGoesBackwards(t *testing.T) {
	s := New()
	const w = 10 * time.Second
	for i, st := range []struct {
		at    time.Duration
		count int64
	}{
		{0, 1}, {0, 2}, {15 * time.Second, 2}, {5 * time.Second, 4}, {15 * time.Second, 4},
	} {
		b := apply(t, s, t0.Add(st.at), []policy.Hit{hit("rule", 100, w)})
		if b.Hits[0].Count != st.count {
			t.Errorf("step %d: got Count %d, want %d", i, b.Hits[0].Count, st.count)
		}
	}
}

// held returns the Key.Limit names of the entries s holds.
func held(s *Store) map[string]bool {
	m := make(map[string]bool)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.buckets.each(func(k policy.Key, _ bucket) { m[k.Limit] = true })
		for k := range sh.counters.addrs {
			m[sh.counters.rules[k.rule].name.limit] = true
		}
		for k := range sh.counters.other {
			m[sh.counters.rules[k.rule].name.limit] = true
		}
		sh.quotas.each(func(k policy.Key, _ quota) { m[k.Limit] = true })
		sh.mu.Unlock()
	}
	return m
}

// TestSweepKeepsPartialBucket checks that a sweep drops exactly the full
// buckets, the passed WAF counters and the ended quota counters.
func TestSweepKeepsPartialBucket(t *testing.T) {
	s := New()
	sweepAt := t0.Add(time.Hour)
	// Buckets.
	apply(t, s, t0, nil, bucketOp("full-earlier", 1, 1))                                          // full at t0+1s
	apply(t, s, sweepAt.Add(-time.Second), nil, bucketOp("full-exactly", 1, 1))                   // full at sweepAt
	apply(t, s, sweepAt.Add(-time.Second+time.Nanosecond), nil, bucketOp("partial-by-1ns", 1, 1)) // full 1ns after sweepAt
	apply(t, s, t0, nil, bucketOp("partial", 0.0001, 2))                                          // 1.36 tokens at sweepAt
	apply(t, s, t0, nil, bucketOp("never-full", 0, 5))                                            // rate 0
	// Quota counters.
	apply(t, s, t0, nil, quotaOp("quota-ended", 5, t0.Add(-time.Hour), t0.Add(time.Minute)))
	apply(t, s, t0, nil, quotaOp("quota-ends-now", 5, t0, sweepAt))
	apply(t, s, t0, nil, quotaOp("quota-running", 5, t0, sweepAt.Add(time.Nanosecond)))
	// WAF counters, 10 minute windows: t0+1h is a window start.
	w := 10 * time.Minute
	apply(t, s, t0.Add(40*time.Minute), []policy.Hit{hit("waf-passed", 100, w)})               // windows [40,50) and [50,60) both passed
	apply(t, s, t0.Add(50*time.Minute+time.Nanosecond), []policy.Hit{hit("waf-prev", 100, w)}) // still the previous window
	apply(t, s, sweepAt, []policy.Hit{hit("waf-current", 100, w)})

	if got := s.Len(); got != 11 {
		t.Fatalf("step 0: got Len %d before the sweep, want 11", got)
	}
	s.Sweep(sweepAt)
	want := map[string]bool{"partial": true, "partial-by-1ns": true, "never-full": true, "quota-running": true, "waf-prev": true, "waf-current": true}
	got := held(s)
	for k := range want {
		if !got[k] {
			t.Errorf("step 1: %s was dropped, want kept", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("step 1: %s was kept, want dropped", k)
		}
	}
	if n := s.Len(); n != len(want) {
		t.Errorf("step 2: got Len %d, want %d", n, len(want))
	}
	// The partial bucket kept its state: 1.36 tokens, 0.36 after a take
	// (a dropped bucket would be full: 1 after a take).
	b := apply(t, s, sweepAt, nil, bucketOp("partial", 0.0001, 2))
	if !b.Taken || b.Ops[0].Remaining != 0 {
		t.Errorf("step 3: got Taken %v Remaining %d, want true 0", b.Taken, b.Ops[0].Remaining)
	}
	b = apply(t, s, sweepAt, nil, bucketOp("never-full", 0, 5))
	if b.Ops[0].Remaining != 3 {
		t.Errorf("step 4: got Remaining %d of the rate-0 bucket, want 3", b.Ops[0].Remaining)
	}
}

// TestApplySweepsAsItGrows checks that Apply keeps memory bounded on its own
// when keys come and go.
func TestApplySweepsAsItGrows(t *testing.T) {
	s := New(WithShards(1))
	for i := range 10000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		// Full again 1ms after its take.
		apply(t, s, now, nil, bucketOp(fmt.Sprint("b", i), 1000, 1))
		if n := s.Len(); n > 2*sweepMin {
			t.Fatalf("step %d: got Len %d, want at most %d", i, n, 2*sweepMin)
		}
	}
	// Entries that carry information are never dropped, however many.
	s = New(WithShards(1))
	for i := range 1000 {
		apply(t, s, t0, nil, bucketOp(fmt.Sprint("b", i), 0, 2))
	}
	if n := s.Len(); n != 1000 {
		t.Errorf("step 1: got Len %d, want 1000", n)
	}
}

func TestWithShards(t *testing.T) {
	for i, st := range []struct{ n, want int }{{0, 1}, {1, 1}, {3, 4}, {256, 256}, {1000, 1024}, {1 << 20, 1 << 16}} {
		if got := len(New(WithShards(st.n)).shards); got != st.want {
			t.Errorf("step %d: WithShards(%d): got %d shards, want %d", i, st.n, got, st.want)
		}
	}
}

// TestApplyConcurrentBurst races 40 requests on one burst-20 bucket that
// does not refill: exactly 20 must pass, and a shadow bucket of burst 8
// beside it (another shard) admits exactly 8 of those and denies none.
func TestApplyConcurrentBurst(t *testing.T) {
	s := New()
	var wg sync.WaitGroup
	start := make(chan struct{})
	type result struct{ taken, shadowOK bool }
	results := make(chan result, 40)
	shade := bucketOp("shade", 0.000001, 8)
	shade.Shadow = true
	for range 40 {
		wg.Go(func() {
			b := new(policy.Batch)
			b.Reset()
			b.Ops = append(b.Ops, bucketOp("k", 0.000001, 20), shade)
			<-start
			if err := s.Apply(t0, b); err != nil {
				t.Errorf("Apply: %v", err)
			}
			results <- result{b.Taken, b.Taken && b.Ops[1].OK}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	n, m := 0, 0
	for r := range results {
		if r.taken {
			n++
		}
		if r.shadowOK {
			m++
		}
	}
	if n != 20 || m != 8 {
		t.Errorf("step 0: got %d admitted, %d of them by the shadow bucket, want 20 and 8", n, m)
	}
}

// TestApplyMultiShardAtomic races batches of three ops in three different
// shards: the burst-50 bucket admits 50 requests, and each of them took from
// all three ops, never some.
func TestApplyMultiShardAtomic(t *testing.T) {
	s := New()
	end := t0.Add(24 * time.Hour)
	small, big, q := bucketOp("small", 0, 50), bucketOp("big", 0, 1000), quotaOp("quota", 1000, t0, end)
	// Rename until the three keys are in three shards.
	for i := 0; s.shardOf(s.hash(small.Key)) == s.shardOf(s.hash(big.Key)) || s.shardOf(s.hash(small.Key)) == s.shardOf(s.hash(q.Key)) || s.shardOf(s.hash(big.Key)) == s.shardOf(s.hash(q.Key)); i++ {
		big.Key.Limit = fmt.Sprint("big", i)
		q.Key.Limit = fmt.Sprint("quota", i)
	}
	orders := [][]policy.Op{{small, big, q}, {q, big, small}, {big, q, small}}
	const n = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	taken := make(chan bool, n)
	for i := range n {
		wg.Go(func() {
			b := new(policy.Batch)
			b.Reset()
			b.Ops = append(b.Ops, orders[i%len(orders)]...)
			<-start
			if err := s.Apply(t0, b); err != nil {
				t.Errorf("Apply: %v", err)
			}
			if !b.Taken {
				for _, o := range b.Ops {
					if o.Key == small.Key && o.OK {
						t.Errorf("request %d: denied while the small bucket admitted it", i)
					}
				}
			}
			taken <- b.Taken
		})
	}
	// Readers and sweeps race with the batches too.
	wg.Go(func() {
		<-start
		for range 20 {
			s.Len()
			s.Used(q.Key)
			s.Sweep(t0)
		}
	})
	close(start)
	wg.Wait()
	close(taken)
	got := 0
	for ok := range taken {
		if ok {
			got++
		}
	}
	if got != 50 {
		t.Errorf("step 0: got %d admitted, want 50", got)
	}
	if u := s.Used(q.Key); u != 50 {
		t.Errorf("step 1: got quota Used %d, want 50", u)
	}
	b := apply(t, s, t0, nil, big)
	if r := b.Ops[0].Remaining; r != 1000-50-1 {
		t.Errorf("step 2: got big bucket Remaining %d after one more take, want %d", r, 1000-50-1)
	}
}

// benchBatch fills b with the ops and hit of a keyed request by customer c.
func benchBatch(b *policy.Batch, c int, customers []string, ips []netip.Addr, end time.Time) {
	b.Reset()
	b.Hits = append(b.Hits, policy.Hit{Key: policy.Key{Limit: "waf/transactions-per-ip", Addr: ips[c]}, Limit: 1 << 62, Window: 5 * time.Minute})
	b.Ops = append(b.Ops,
		policy.Op{Key: policy.Key{Limit: "plan/pro", Subject: customers[c]}, Tier: policy.TierPlan, Throttle: policy.NewThrottle(100, 200)},
		policy.Op{Key: policy.Key{Limit: "route/payments/prod/POST /partners/{id}/transactions"}, Tier: policy.TierRoute, Throttle: policy.NewThrottle(1e6, 1e9)},
		policy.Op{Key: policy.Key{Limit: "stage/payments/prod"}, Tier: policy.TierStage, Throttle: policy.NewThrottle(1e6, 1e9)},
		policy.Op{Key: policy.Key{Limit: "account"}, Tier: policy.TierAccount, Throttle: policy.NewThrottle(1e6, 1e9)},
		policy.Op{Key: policy.Key{Limit: "quota/pro", Subject: customers[c], Period: t0.Unix()}, Tier: policy.TierQuota, Quota: 1 << 40, End: end},
	)
}

func benchSetup(b *testing.B) (*Store, []string, []netip.Addr, time.Time) {
	const n = 10000
	customers := make([]string, n)
	ips := make([]netip.Addr, n)
	for i := range n {
		customers[i] = fmt.Sprintf("customer-%05d", i)
		ips[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	end := t0.Add(24 * time.Hour)
	s := New()
	var bt policy.Batch
	for i := range n {
		benchBatch(&bt, i, customers, ips, end)
		if err := s.Apply(t0, &bt); err != nil {
			b.Fatal(err)
		}
	}
	return s, customers, ips, end
}

// BenchmarkApply is one keyed request's batch (a WAF hit, four buckets and a
// quota) over 10,000 customers whose entries exist.
func BenchmarkApply(b *testing.B) {
	s, customers, ips, end := benchSetup(b)
	var bt policy.Batch
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		benchBatch(&bt, i%len(customers), customers, ips, end)
		if err := s.Apply(t0.Add(time.Duration(i)*time.Microsecond), &bt); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkApplyParallel is BenchmarkApply from every P at once; the route,
// stage and account buckets are shared by all.
func BenchmarkApplyParallel(b *testing.B) {
	s, customers, ips, end := benchSetup(b)
	var mu sync.Mutex
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		i := next * 7919
		next++
		mu.Unlock()
		var bt policy.Batch
		for pb.Next() {
			benchBatch(&bt, i%len(customers), customers, ips, end)
			if err := s.Apply(t0.Add(time.Duration(i)*time.Microsecond), &bt); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// TestConcurrencySlots: a cap of 2 admits two requests, the third is denied
// and takes nothing else; a release frees a slot; releasing a slot not held
// is an error.
func TestConcurrencySlots(t *testing.T) {
	s := New()
	slot := policy.Op{Key: policy.Key{Limit: "cc"}, Tier: policy.TierConcurrency, Quota: 2, Lease: "l"}
	q := quotaOp("q", 100, t0.Add(-time.Hour), t0.Add(time.Hour))
	for i, want := range []bool{true, true, false} {
		if got := apply(t, s, t0, nil, q, slot).Taken; got != want {
			t.Fatalf("step 1.%d: got taken %v, want %v", i, got, want)
		}
	}
	if used := s.Used(q.Key); used != 2 || s.Slots(slot.Key) != 2 {
		t.Fatalf("step 1: got %d quota used and %d slots, want 2 and 2", used, s.Slots(slot.Key))
	}
	for range 2 {
		if err := s.Release(slot.Key, "l"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Release(slot.Key, "l"); err == nil {
		t.Fatal("step 2: a third release of two slots: got no error")
	}
	if s.Slots(slot.Key) != 0 || s.Len() != 1 {
		t.Fatalf("step 2: got %d slots and %d entries, want 0 and 1 (the quota; none for slots)", s.Slots(slot.Key), s.Len())
	}
}
