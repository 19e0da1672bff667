package redis

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// t0 is a fixed instant on a whole minute.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// open starts a Redis and opens a store on it, on the caller's clock unless
// redisClock.
func open(t *testing.T, redisClock bool) (*Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	s, err := Open(srv.URL(), Options{CallerClock: !redisClock, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, srv
}

func bucketOp(limit string, rate float64, burst int64) policy.Op {
	return policy.Op{Key: policy.Key{Limit: limit}, Tier: policy.TierRoute, Throttle: policy.NewThrottle(rate, burst)}
}

func quotaOp(limit string, q int64, start, end time.Time) policy.Op {
	return policy.Op{Key: policy.Key{Limit: limit, Subject: "acme", Period: start.Unix()}, Tier: policy.TierQuota, Quota: q, End: end}
}

func hit(limit string, max int64, window time.Duration) policy.Hit {
	return policy.Hit{Key: policy.Key{Limit: limit, Addr: netip.MustParseAddr("198.51.100.7")}, Limit: max, Window: window}
}

// apply runs one batch at now.
func apply(t testing.TB, st policy.State, now time.Time, usage policy.Key, hits []policy.Hit, ops ...policy.Op) *policy.Batch {
	t.Helper()
	b := new(policy.Batch)
	b.Reset()
	b.Hits = append(b.Hits, hits...)
	b.Ops = append(b.Ops, ops...)
	b.Usage = usage
	if err := st.Apply(now, b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return b
}

// TestBucketWorkedChecks: the bucket checks of SPEC §3 through the script,
// over fixed instants.
func TestBucketWorkedChecks(t *testing.T) {
	s, _ := open(t, false)
	type step struct {
		at      time.Duration
		n       int
		allowed int
	}
	for _, c := range []struct {
		name        string
		rate        float64
		burst       int64
		steps       []step
		lastWait    time.Duration
		lastWaitNth int
	}{
		{"free 10/20", 10, 20, []step{{0, 30, 20}, {time.Second, 11, 10}}, 0, 0},
		{"account 10000/5000", 10000, 5000, []step{{0, 5000, 5000}, {100 * time.Millisecond, 5000, 1000}}, 0, 0},
		{"rate 0.1 burst 1", 0.1, 1, []step{{0, 1, 1}, {5 * time.Second, 1, 0}, {10 * time.Second, 1, 1}}, 0, 0},
	} {
		op := bucketOp(c.name, c.rate, c.burst)
		for i, st := range c.steps {
			allowed := 0
			var last *policy.Batch
			for range st.n {
				last = apply(t, s, t0.Add(st.at), policy.Key{}, nil, op)
				if last.Taken {
					allowed++
				}
			}
			if allowed != st.allowed {
				t.Errorf("%s step %d: got %d allowed, want %d", c.name, i, allowed, st.allowed)
			}
			if c.name == "free 10/20" && i == 0 {
				if o := last.Ops[0]; o.OK || o.Wait != 100*time.Millisecond || o.Remaining != 0 || o.Reset != 2*time.Second {
					t.Errorf("%s step %d: last report got ok %v wait %v remaining %d reset %v, want false 100ms 0 2s",
						c.name, i, o.OK, o.Wait, o.Remaining, o.Reset)
				}
			}
		}
	}
}

// TestMatchesMemory: random batches of WAF hits, buckets, quotas and usage
// counters, over microsecond instants, give the same results on Redis as on
// store/memory, step by step: the script and the Go arithmetic agree.
func TestMatchesMemory(t *testing.T) {
	s, _ := open(t, false)
	m := memory.New()
	rng := rand.New(rand.NewPCG(1, 2))
	hits := []policy.Hit{hit("waf-a", 40, 10*time.Second), hit("waf-b", 25, 3*time.Second)}
	ops := []policy.Op{
		bucketOp("plan", 3.123457, 7), bucketOp("route", 0.333333, 2), bucketOp("stage", 120.123456, 30),
		bucketOp("big", 2_000_000, 8_000_000), bucketOp("off", 0, 0),
		quotaOp("quota", 400, t0.Add(-time.Hour), t0.Add(time.Hour)),
	}
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: t0.Truncate(24 * time.Hour).Unix()}
	now := t0
	taken, denied := 0, 0
	for step := range 3000 {
		// Bursts of requests microseconds apart, and pauses.
		gap := rng.IntN(2_000)
		if rng.IntN(10) == 0 {
			gap = rng.IntN(2_000_000)
		}
		now = now.Add(time.Duration(gap) * time.Microsecond)
		var hs []policy.Hit
		for _, h := range hits {
			if rng.IntN(3) == 0 {
				hs = append(hs, h)
			}
		}
		var os []policy.Op
		for _, o := range ops {
			if rng.IntN(2) == 0 && (o.Key.Limit != "off" || rng.IntN(20) == 0) {
				os = append(os, o)
			}
		}
		u := policy.Key{}
		if rng.IntN(2) == 0 {
			u = usage
		}
		got, want := apply(t, s, now, u, hs, os...), apply(t, m, now, u, hs, os...)
		if len(os) > 0 && got.Blocked < 0 {
			if got.Taken {
				taken++
			} else {
				denied++
			}
		}
		if g, w := fmt.Sprintf("%+v %v %+v", got.Hits, got.Blocked, got.Taken), fmt.Sprintf("%+v %v %+v", want.Hits, want.Blocked, want.Taken); g != w {
			t.Fatalf("step %d at %v: hits: got %s, want %s", step, now.Sub(t0), g, w)
		}
		for i := range got.Ops {
			g, w := got.Ops[i], want.Ops[i]
			if g.OK != w.OK || g.Remaining != w.Remaining || g.Wait != w.Wait || g.Reset != w.Reset || g.Quota != w.Quota {
				t.Fatalf("step %d at %v: op %s: got ok %v remaining %d wait %v reset %v, want %v %d %v %v",
					step, now.Sub(t0), g.Key.Limit, g.OK, g.Remaining, g.Wait, g.Reset, w.OK, w.Remaining, w.Wait, w.Reset)
			}
		}
	}
	if taken < 300 || denied < 300 {
		t.Errorf("got %d batches taken and %d denied, want both often", taken, denied)
	}
	for _, k := range []policy.Key{ops[5].Key, usage} {
		gu, gg, err := s.Counter(k)
		wu, wg, _ := m.Counter(k)
		if err != nil || gu != wu || gg != wg {
			t.Errorf("counter %s: got %d, %d, %v, want %d, %d", k.Limit, gu, gg, err, wu, wg)
		}
	}
}

// TestQuotaAndGrant: a quota admits its limit plus the grant, and rejected
// requests use none of it.
func TestQuotaAndGrant(t *testing.T) {
	s, _ := open(t, false)
	q := quotaOp("quota", 5, t0.Add(-time.Hour), t0.Add(time.Hour))
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: t0.Truncate(24 * time.Hour).Unix()}
	n := 0
	for range 8 {
		if apply(t, s, t0, usage, nil, q, bucketOp("b", 1000, 1000)).Taken {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("step 1: got %d allowed, want 5", n)
	}
	if err := s.Grant(q.Key, 2, q.End); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if apply(t, s, t0, usage, nil, q).Taken {
			n++
		}
	}
	if n != 7 {
		t.Fatalf("step 2: got %d allowed in all, want 7 (5 + 2 granted)", n)
	}
	if used, granted, err := s.Counter(q.Key); used != 7 || granted != 2 || err != nil {
		t.Fatalf("step 3: quota: got %d used, %d granted, %v; want 7, 2", used, granted, err)
	}
	if used, _, _ := s.Counter(usage); used != 7 {
		t.Fatalf("step 3: usage: got %d, want 7 (denied requests are not counted)", used)
	}
	// A denied request (the bucket) takes nothing, not even the quota.
	apply(t, s, t0, usage, nil, quotaOp("quota2", 5, t0, t0.Add(time.Hour)), bucketOp("stop", 0, 0))
	if used, _, _ := s.Counter(quotaOp("quota2", 5, t0, t0).Key); used != 0 {
		t.Fatalf("step 4: got %d used after a denial, want 0", used)
	}
}

// TestWAFBlocksAndStops: hits count in order, blocked ones included, and the
// first over its limit stops the batch before any op.
func TestWAFBlocksAndStops(t *testing.T) {
	s, _ := open(t, false)
	h := hit("waf", 3, time.Minute)
	for i := range 5 {
		b := apply(t, s, t0.Add(time.Duration(i)*time.Second), policy.Key{}, []policy.Hit{h, hit("after", 100, time.Minute)}, bucketOp("b", 1, 100))
		wantBlocked := -1
		if i >= 3 {
			wantBlocked = 0
		}
		if b.Blocked != wantBlocked || b.Hits[0].Count != int64(i+1) || b.Taken == (wantBlocked == 0) {
			t.Fatalf("request %d: got blocked %d count %d taken %v, want %d, %d, %v", i, b.Blocked, b.Hits[0].Count, b.Taken, wantBlocked, i+1, wantBlocked < 0)
		}
	}
}

// TestKeys: run-time keys are saved, found by hash, replaced (the old hash
// no longer finds them) and deleted.
func TestKeys(t *testing.T) {
	s, _ := open(t, false)
	k := &policy.APIKey{ID: "acme-rt", Customer: "acme", Hash: sha256.Sum256([]byte("one")), Plans: []string{"pro"}, Enabled: true, Created: t0}
	if err := s.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupKey(k.Hash); err != nil || got == nil || got.ID != "acme-rt" || !got.Enabled {
		t.Fatalf("step 1: got %+v, %v", got, err)
	}
	k2 := *k
	k2.Hash, k2.Enabled = sha256.Sum256([]byte("two")), false
	if err := s.SaveKey(&k2, nil); !errors.Is(err, policy.ErrKeyChanged) {
		t.Fatalf("step 2: a save over a key not read: got %v, want ErrKeyChanged", err)
	}
	read, _ := s.RuntimeKeys()
	if err := s.SaveKey(&k2, read[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveKey(k, read[0]); !errors.Is(err, policy.ErrKeyChanged) {
		t.Fatalf("step 2: a save over a version replaced since: got %v, want ErrKeyChanged", err)
	}
	if got, _ := s.LookupKey(k.Hash); got != nil {
		t.Fatalf("step 2: the replaced hash still finds %+v", got)
	}
	if got, _ := s.LookupKey(k2.Hash); got == nil || got.Enabled {
		t.Fatalf("step 2: got %+v, want the disabled key", got)
	}
	other := &policy.APIKey{ID: "b-key", Customer: "b", Hash: sha256.Sum256([]byte("three")), Plans: []string{"free"}, Created: t0}
	s.SaveKey(other, nil)
	keys, err := s.RuntimeKeys()
	if err != nil || len(keys) != 2 || keys[0].ID != "acme-rt" || keys[1].ID != "b-key" {
		t.Fatalf("step 3: got %v, %v, want acme-rt and b-key", keys, err)
	}
	if ok, err := s.DeleteKey("acme-rt"); !ok || err != nil {
		t.Fatalf("step 4: got %v, %v", ok, err)
	}
	if ok, _ := s.DeleteKey("acme-rt"); ok {
		t.Fatal("step 4: deleted twice")
	}
	if got, _ := s.LookupKey(k2.Hash); got != nil {
		t.Fatalf("step 4: a deleted key is found: %+v", got)
	}
}

// TestConcurrentBurstExact: 200 concurrent requests on a burst-50 bucket that
// hardly refills, on Redis's clock, take exactly 50.
func TestConcurrentBurstExact(t *testing.T) {
	s, _ := open(t, true)
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 10 {
				if apply(t, s, time.Now(), policy.Key{}, nil, bucketOp("tight", 0.0001, 50), bucketOp("wide", 1e6, 1e6)).Taken {
					taken.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := taken.Load(); n != 50 {
		t.Fatalf("got %d taken, want exactly 50", n)
	}
}

// TestKeysExpire: a bucket expires when it would be full, a WAF counter
// after two windows, a quota counter a retention after its period.
func TestKeysExpire(t *testing.T) {
	s, _ := open(t, true)
	now := time.Now()
	q := quotaOp("q", 10, now.Add(-time.Hour), now.Add(time.Hour))
	apply(t, s, now, policy.Key{}, []policy.Hit{hit("w", 10, 10*time.Second)}, bucketOp("b", 2, 10), q)
	ctx := context.Background()
	for _, c := range []struct {
		key      string
		min, max time.Duration
	}{
		{s.key('b', policy.Key{Limit: "b"}), 500 * time.Millisecond, 1600 * time.Millisecond}, // 1 token at 2/s, + 1s
		{s.key('w', hit("w", 0, 0).Key), 20 * time.Second, 21 * time.Second},
		{s.key('c', q.Key), time.Hour + DefaultRetention - time.Minute, time.Hour + DefaultRetention},
	} {
		ttl, err := s.c.PTTL(ctx, c.key).Result()
		if err != nil || ttl < c.min || ttl > c.max {
			t.Errorf("%s: got ttl %v, %v, want between %v and %v", c.key, ttl, err, c.min, c.max)
		}
	}
}

// TestCircuitBreaker: with Redis gone, calls fail within the budget, then at
// once; when Redis is back, the store recovers on its own.
func TestCircuitBreaker(t *testing.T) {
	srv := redistest.Start(t)
	s, err := Open(srv.URL(), Options{Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := new(policy.Batch)
	run := func() error {
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("b", 1, 1000))
		return s.Apply(time.Now(), b)
	}
	if err := run(); err != nil {
		t.Fatalf("step 1: %v", err)
	}
	srv.Stop()
	for i := range breakAfter {
		if err := run(); err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("step 2.%d: got %v, want a call that failed", i, err)
		}
	}
	if err := run(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("step 3: got %v, want ErrUnavailable", err)
	}
	if err := s.Ready(context.Background()); err == nil {
		t.Fatal("step 3: ready while Redis is gone")
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("step 4: no recovery within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("step 4: %v", err)
	}
}

// TestOpenURLs: the schemes and tollgate's own parameters.
func TestOpenURLs(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"memcached://x:1", `unsupported scheme "memcached"`},
		{"redis://127.0.0.1:1/0?retention=soon", `retention="soon" is not a positive duration`},
		{"redis-sentinel://127.0.0.1:1", "needs master_name"},
		{"redis://127.0.0.1:1/0?frobnicate=1", "frobnicate"},
		{"redis://user:secret@127.0.0.1:1/0?frobnicate=1", "user:xxxxx@"},
	} {
		_, err := Open(c.url, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want it to hold %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", c.url, err)
		}
	}
	// An unreachable Redis opens, with its circuit open.
	s, err := Open("redis://127.0.0.1:1/0?prefix=t1:&retention=48h", Options{AdminTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.opts.Prefix != "t1:" || s.opts.Retention != 48*time.Hour || !s.open.Load() {
		t.Fatalf("got prefix %q retention %v open %v", s.opts.Prefix, s.opts.Retention, s.open.Load())
	}
}

// TestConcurrencySlots: a cap of 2 admits two leases, the third is denied
// and takes nothing else; a release frees a slot; a lease whose holder never
// released runs out after the lease TTL.
func TestConcurrencySlots(t *testing.T) {
	s, _ := open(t, false)
	slot := func(lease string) policy.Op {
		return policy.Op{Key: policy.Key{Limit: "cc"}, Tier: policy.TierConcurrency, Quota: 2, Lease: lease}
	}
	q := quotaOp("q", 100, t0.Add(-time.Hour), t0.Add(time.Hour))
	for i, want := range []bool{true, true, false} {
		b := apply(t, s, t0, policy.Key{}, nil, q, slot(fmt.Sprint("lease-", i)))
		if b.Taken != want {
			t.Fatalf("step 1.%d: got taken %v, want %v", i, b.Taken, want)
		}
		if !want && (b.Ops[1].OK || b.Ops[1].Wait != time.Second || b.Ops[1].Remaining != 0) {
			t.Fatalf("step 1.%d: got %+v, want a denial with wait 1s", i, b.Ops[1])
		}
	}
	if used, _, _ := s.Counter(q.Key); used != 2 {
		t.Fatalf("step 1: got %d quota used, want 2 (the denied request took none)", used)
	}
	if err := s.Release(slot("").Key, "lease-0"); err != nil {
		t.Fatal(err)
	}
	if !apply(t, s, t0, policy.Key{}, nil, slot("lease-3")).Taken {
		t.Fatal("step 2: no slot after a release")
	}
	if apply(t, s, t0, policy.Key{}, nil, slot("lease-4")).Taken {
		t.Fatal("step 2: a third slot")
	}
	// lease-1 and lease-3 are never released: they run out.
	if !apply(t, s, t0.Add(DefaultLeaseTTL+time.Second), policy.Key{}, nil, slot("lease-5")).Taken {
		t.Fatal("step 3: the run-out leases still hold their slots")
	}
}

// TestOpenRefusedByRedis: a Redis that answers and refuses (here: a
// password is needed) fails Open, rather than starting a store that never
// works.
func TestOpenRefusedByRedis(t *testing.T) {
	s, srv := open(t, false)
	if err := s.c.ConfigSet(context.Background(), "requirepass", "sekrit").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(srv.URL(), Options{})
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("got %v, want NOAUTH", err)
	}
	ok, err := Open("redis://:sekrit@"+srv.Addr()+"/0", Options{})
	if err != nil {
		t.Fatalf("with the password: %v", err)
	}
	ok.Close()
}

// scriptCalls returns the calls of EVALSHA and EVAL Redis has run, from INFO
// commandstats: the apply script's calls (the tests make no others while
// they count).
func scriptCalls(t *testing.T, s *Store) int64 {
	t.Helper()
	text, err := s.c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(text, "\r\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if v, ok := strings.CutPrefix(line, cmd); ok {
				c, _ := strconv.ParseInt(v[:strings.IndexByte(v, ',')], 10, 64)
				n += c
			}
		}
	}
	return n
}

// pauseScripts makes Redis hold every script call (CLIENT PAUSE WRITE: INFO
// and the like still answer) until resume, or for at most 30s.
func pauseScripts(t *testing.T, srv *redistest.Server) (resume func()) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	if err := c.Do(context.Background(), "CLIENT", "PAUSE", 30000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			c.Do(context.Background(), "CLIENT", "UNPAUSE")
			c.Close()
		})
	}
	t.Cleanup(resume)
	return resume
}

// inFlight is the number of calls in flight at most: one made by a caller
// that found none in flight, and the senders'.
const inFlight = 1 + senders

// occupySenders starts inFlight decisions, each on a bucket of its own, and
// returns once each is in a call (held by pauseScripts): the first made by
// its caller, the others by the senders. Decisions made from then on wait
// on the queue. wait returns the occupying decisions' errors.
func occupySenders(t *testing.T, s *Store) (wait func() []error) {
	t.Helper()
	base := s.calls.Load()
	errs := make([]error, inFlight)
	var wg sync.WaitGroup
	for i := range inFlight {
		// One after another: decisions that come together go in one call.
		wg.Go(func() {
			b := new(policy.Batch)
			b.Reset()
			b.Ops = append(b.Ops, bucketOp(fmt.Sprint("occupy-", i), 1, 10))
			errs[i] = s.Apply(t0, b)
		})
		waitFor(t, fmt.Sprintf("call %d to be in flight", i), func() bool { return s.calls.Load() == base+int64(i)+1 })
	}
	return func() []error { wg.Wait(); return errs }
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchesConcurrentCallers: decisions of many concurrent callers share
// calls (fewer EVALSHA calls than decisions), and the limits stay exact:
// a burst of 1,000 that hardly refills admits exactly 1,000, a quota of
// 700 exactly 700, and the usage counter counts exactly the admitted.
func TestBatchesConcurrentCallers(t *testing.T) {
	s, _ := open(t, true)
	const callers, each = 64, 40
	q := quotaOp("quota", 700, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: time.Now().UTC().Truncate(24 * time.Hour).Unix()}
	before := scriptCalls(t, s)
	var bucketTaken, quotaTaken atomic.Int64
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			b := new(policy.Batch)
			for i := range each {
				b.Reset()
				onQuota := (c+i)%2 == 0
				if onQuota {
					b.Ops = append(b.Ops, bucketOp("wide", 1e6, 1e6), q)
					b.Usage = usage
				} else {
					b.Ops = append(b.Ops, bucketOp("tight", 0.0001, 1000), bucketOp("wide", 1e6, 1e6))
				}
				if err := s.Apply(time.Now(), b); err != nil {
					t.Errorf("caller %d decision %d: %v", c, i, err)
					return
				}
				switch {
				case b.Taken && onQuota:
					quotaTaken.Add(1)
				case b.Taken:
					bucketTaken.Add(1)
				}
			}
		})
	}
	wg.Wait()
	decisions, calls := int64(callers*each), scriptCalls(t, s)-before
	t.Logf("%d decisions in %d calls (%.1f decisions per call)", decisions, calls, float64(decisions)/float64(calls))
	if calls >= decisions {
		t.Errorf("got %d calls for %d decisions, want fewer: decisions arriving together share a call", calls, decisions)
	}
	if n := bucketTaken.Load(); n != 1000 {
		t.Errorf("bucket: got %d taken, want exactly the burst, 1000", n)
	}
	if n := quotaTaken.Load(); n != 700 {
		t.Errorf("quota: got %d taken, want exactly 700", n)
	}
	if used, _, err := s.Counter(q.Key); used != 700 || err != nil {
		t.Errorf("quota counter: got %d, %v, want 700", used, err)
	}
	if used, _, err := s.Counter(usage); used != 700 || err != nil {
		t.Errorf("usage counter: got %d, %v, want 700 (the admitted)", used, err)
	}
}

// TestBatchInOrder: decisions queued while every sender's call is in flight
// go in one call, and run in the order they came: on a bucket of 5 that
// never refills, the first five that ask for it are admitted (with 4, 3, 2,
// 1, 0 left) and the later ones denied; the decisions between them, denied
// by another bucket, take nothing from it.
func TestBatchInOrder(t *testing.T) {
	s, srv := open(t, false)
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, s)
	before := s.calls.Load()
	const n = 14
	batches := make([]*policy.Batch, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("five", 0, 5))
		if i%2 == 1 {
			b.Ops = append(b.Ops, bucketOp("stop", 0, 0))
		}
		batches[i] = b
		wg.Go(func() { errs[i] = s.Apply(t0, b) })
		waitFor(t, fmt.Sprintf("decision %d to be queued", i), func() bool { return len(s.queue) == i+1 })
	}
	callsBefore := scriptCalls(t, s)
	resume()
	wg.Wait()
	for i, err := range wait() {
		if err != nil {
			t.Fatalf("occupying decision %d: %v", i, err)
		}
	}
	if got := s.calls.Load() - before; got != 1 {
		t.Errorf("the %d queued decisions went in %d calls, want 1", n, got)
	}
	if got := scriptCalls(t, s) - callsBefore; got != inFlight+1 {
		t.Errorf("Redis ran %d script calls, want %d (the occupying ones and the batch's)", got, inFlight+1)
	}
	left := int64(4)
	for i, b := range batches {
		if errs[i] != nil {
			t.Fatalf("decision %d: %v", i, errs[i])
		}
		wantTaken := i%2 == 0 && i < 10
		if b.Taken != wantTaken {
			t.Errorf("decision %d: got taken %v, want %v", i, b.Taken, wantTaken)
			continue
		}
		if wantTaken {
			if b.Ops[0].Remaining != left {
				t.Errorf("decision %d: got %d left, want %d", i, b.Ops[0].Remaining, left)
			}
			left--
		}
	}
}

// TestQueuedBudget: a decision that waits on the queue longer than its
// budget fails with the timeout error when the budget ends, not when a
// sender is free, and is then dropped unsent.
func TestQueuedBudget(t *testing.T) {
	s, srv := open(t, false) // a budget of 1s for the occupying calls
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, s)
	// The senders are held for as long as Redis is paused: a shorter
	// budget for what follows (the occupying calls keep theirs).
	const budget = 100 * time.Millisecond
	s.opts.Timeout = budget
	b := new(policy.Batch)
	b.Reset()
	b.Ops = append(b.Ops, bucketOp("late", 1, 10))
	start := time.Now()
	err := s.Apply(t0, b)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "apply") {
		t.Fatalf("got %v, want the apply timeout (context deadline exceeded)", err)
	}
	if took < budget || took > budget+400*time.Millisecond {
		t.Errorf("failed after %v, want just after the budget of %v (Redis is held for 1s)", took, budget)
	}
	calls := s.calls.Load()
	resume()
	wait()
	time.Sleep(50 * time.Millisecond) // for a sender to take the dropped decision, were it sent
	if got := s.calls.Load(); got != calls {
		t.Errorf("got %d calls after the timeout, want none: the decision given up on is not sent", got-calls)
	}
	if n, err := s.c.Exists(context.Background(), s.key('b', policy.Key{Limit: "late"})).Result(); n != 0 || err != nil {
		t.Errorf("the bucket of the decision given up on exists (%d, %v): it was applied", n, err)
	}
}

// poisonedHit returns a WAF hit whose counter key holds a hash: the script's
// GET of it fails (WRONGTYPE), and with it the call.
func poisonedHit(t *testing.T, s *Store) policy.Hit {
	t.Helper()
	h := hit("poisoned", 100, time.Minute)
	if err := s.c.HSet(context.Background(), s.key('w', h.Key), "x", 1).Err(); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBatchFailureCountsOnce: a call that fails fails each of its
// decisions, and counts at most once for the circuit breaker (an error
// reply, as here, not at all: TestScriptErrorsKeepCircuitClosed): ten
// decisions failed in one call leave the circuit closed, and the next
// decision runs.
func TestBatchFailureCountsOnce(t *testing.T) {
	s, srv := open(t, false)
	h := poisonedHit(t, s)
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, s)
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("fine", 1, 100))
		if i == n-1 {
			b.Hits = append(b.Hits, h)
		}
		wg.Go(func() { errs[i] = s.Apply(t0, b) })
		waitFor(t, fmt.Sprintf("decision %d to be queued", i), func() bool { return len(s.queue) == i+1 })
	}
	resume()
	wg.Wait()
	wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Errorf("decision %d: got %v, want the call's WRONGTYPE error", i, err)
		}
	}
	// 1, or 0 when an occupying call's success was counted last.
	if f, open := s.fails.Load(), s.open.Load(); f > 1 || open {
		t.Fatalf("got %d failures counted (circuit open: %v), want 1 for the one call", f, open)
	}
	if !apply(t, s, t0, policy.Key{}, nil, bucketOp("fine", 1, 100)).Taken {
		t.Fatal("the next decision was not taken")
	}
	if f := s.fails.Load(); f != 0 {
		t.Fatalf("got %d failures after a call succeeded, want 0", f)
	}
}

// TestCloseWithWaiters: Close while decisions are in calls and on the
// queue answers every one of them with an error at once, stops the senders
// (no goroutine is left) and does not wait for Redis; decisions after it
// fail with ErrClosed.
func TestCloseWithWaiters(t *testing.T) {
	srv := redistest.Start(t)
	goroutines := runtime.NumGoroutine()
	s, err := Open(srv.URL(), Options{CallerClock: true, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, s)
	const n = 5
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("waiting", 1, 100))
		wg.Go(func() { errs[i] = s.Apply(t0, b) })
		waitFor(t, fmt.Sprintf("decision %d to be queued", i), func() bool { return len(s.queue) == i+1 })
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	occupied := wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close and the answers took %v, want them at once (Redis is held for 30s)", took)
	}
	for i, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("queued decision %d: got %v, want ErrClosed", i, err)
		}
	}
	for i, err := range occupied {
		if err == nil {
			t.Errorf("decision %d in a call: no error, want the closed client's", i)
		}
	}
	resume()
	b := new(policy.Batch)
	b.Reset()
	b.Ops = append(b.Ops, bucketOp("after", 1, 100))
	if err := s.Apply(t0, b); !errors.Is(err, ErrClosed) {
		t.Errorf("a decision after Close: got %v, want ErrClosed", err)
	}
	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines })
}

// TestTimedOutCallCounted: a call that a sender makes for a decision and
// that runs out of its budget is counted once by the circuit breaker.
func TestTimedOutCallCounted(t *testing.T) {
	s, srv := open(t, false)
	resume := pauseScripts(t, srv)
	// A call in flight (its caller's own), so that the decisions below go
	// to the senders, with a shorter budget (the first call keeps its).
	s.opts.Timeout = 10 * time.Second
	var wg sync.WaitGroup
	wg.Go(func() {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("first", 1, 10))
		s.Apply(t0, b)
	})
	defer wg.Wait()
	defer resume()
	waitFor(t, "a call in flight", func() bool { return s.calls.Load() == 1 })
	s.opts.Timeout = 50 * time.Millisecond
	for i := range 10 {
		s.fails.Store(0)
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("held", 1, 10))
		if err := s.Apply(t0, b); err == nil {
			t.Fatalf("decision %d: no error while Redis holds the call", i)
		}
		// The call has a whole budget from when it was sent, so it ends
		// just after its decision gave up, and is counted then.
		waitFor(t, fmt.Sprintf("decision %d's call counted", i), func() bool { return s.fails.Load() == 1 })
		time.Sleep(5 * time.Millisecond)
		if f := s.fails.Load(); f != 1 {
			t.Fatalf("decision %d: got %d failures counted, want 1 (its call's)", i, f)
		}
	}
}

// TestScriptReloaded: a Redis that lost the script (SCRIPT FLUSH, as a
// restart does) gets it again from the next call (EVAL), and later calls
// name it by its hash again.
func TestScriptReloaded(t *testing.T) {
	s, _ := open(t, false)
	op := bucketOp("b", 1, 10)
	apply(t, s, t0, policy.Key{}, nil, op)
	if err := s.c.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if b := apply(t, s, t0, policy.Key{}, nil, op); !b.Taken || b.Ops[0].Remaining != 8 {
		t.Fatalf("after SCRIPT FLUSH: got taken %v, %d left, want true, 8", b.Taken, b.Ops[0].Remaining)
	}
	ok, err := s.c.ScriptExists(context.Background(), applySHA).Result()
	if err != nil || !ok[0] {
		t.Fatalf("the script is not loaded again: %v, %v", ok, err)
	}
}

// TestBatchMatchesOneByOne: decisions on shared WAF counters, buckets, a
// quota and a usage counter, made in one call, give each the results they
// give made one by one, and leave the same state in Redis: the same values
// and the same expiries (the script reads each key once per call and writes
// it once, at the end).
func TestBatchMatchesOneByOne(t *testing.T) {
	const n = 24
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 150 * time.Millisecond) }
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: t0.Truncate(24 * time.Hour).Unix()}
	decisions := func() []*policy.Batch {
		bs := make([]*policy.Batch, n)
		for i := range bs {
			b := new(policy.Batch)
			b.Reset()
			b.Hits = append(b.Hits, hit("waf-all", 100, 10*time.Second))
			if i%3 == 0 {
				b.Hits = append(b.Hits, hit("waf", 4, time.Minute))
			}
			b.Ops = append(b.Ops, bucketOp("a", 2, 5))
			if i%2 == 0 {
				b.Ops = append(b.Ops, bucketOp("b", 0.5, 3))
			}
			if i%4 != 3 {
				b.Ops = append(b.Ops, quotaOp("q", 6, t0.Add(-time.Hour), t0.Add(time.Hour)))
			}
			if i%2 == 1 {
				b.Usage = usage
			}
			bs[i] = b
		}
		return bs
	}

	one, _ := open(t, false)
	seq := decisions()
	for i, b := range seq {
		if err := one.Apply(at(i), b); err != nil {
			t.Fatalf("one by one, decision %d: %v", i, err)
		}
	}

	all, srv := open(t, false)
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, all)
	before := all.calls.Load()
	bat := decisions()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, b := range bat {
		wg.Go(func() { errs[i] = all.Apply(at(i), b) })
		waitFor(t, fmt.Sprintf("decision %d to be queued", i), func() bool { return len(all.queue) == i+1 })
	}
	resume()
	wg.Wait()
	wait()
	if got := all.calls.Load() - before; got != 1 {
		t.Fatalf("the %d decisions went in %d calls, want 1", n, got)
	}

	taken, blocked := 0, 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("in one call, decision %d: %v", i, errs[i])
		}
		g, w := bat[i], seq[i]
		if gs, ws := fmt.Sprintf("%+v %v %v", g.Hits, g.Blocked, g.Taken), fmt.Sprintf("%+v %v %v", w.Hits, w.Blocked, w.Taken); gs != ws {
			t.Errorf("decision %d: in one call %s, one by one %s", i, gs, ws)
		}
		for j := range g.Ops {
			if g, w := g.Ops[j], w.Ops[j]; g.OK != w.OK || g.Remaining != w.Remaining || g.Wait != w.Wait || g.Reset != w.Reset {
				t.Errorf("decision %d op %s: in one call ok %v remaining %d wait %v reset %v, one by one %v %d %v %v",
					i, g.Key.Limit, g.OK, g.Remaining, g.Wait, g.Reset, w.OK, w.Remaining, w.Wait, w.Reset)
			}
		}
		if g.Taken {
			taken++
		}
		if g.Blocked >= 0 {
			blocked++
		}
	}
	if taken < 5 || taken > n-5 || blocked == 0 {
		t.Errorf("got %d of %d taken and %d blocked, want a mix", taken, n, blocked)
	}

	// The state: every key but the occupying decisions' buckets.
	ctx := context.Background()
	type entry struct {
		v   string
		ttl time.Duration // -1: none
	}
	state := func(s *Store) map[string]entry {
		keys, err := s.c.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]entry{}
		for _, k := range keys {
			if strings.Contains(k, "occupy-") {
				continue
			}
			var v any
			switch typ := s.c.Type(ctx, k).Val(); typ {
			case "string":
				v = s.c.Get(ctx, k).Val()
			case "hash":
				v = s.c.HGetAll(ctx, k).Val()
			default:
				v = typ
			}
			m[k] = entry{fmt.Sprint(v), s.c.PTTL(ctx, k).Val()}
		}
		return m
	}
	got, want := state(all), state(one)
	if len(want) != 6 {
		t.Fatalf("one by one left %d keys %v, want 6: two WAF counters, two buckets, the quota and usage", len(want), want)
	}
	for k, w := range want {
		g, ok := got[k]
		// Expiries within a second: the stores wrote them moments apart.
		if d := g.ttl - w.ttl; !ok || g.v != w.v || (g.ttl < 0) != (w.ttl < 0) || d < -time.Second || d > time.Second {
			t.Errorf("key %s: in one call %+v (%v), one by one %+v", k, g, ok, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("key %s: in one call %+v, one by one none", k, g)
		}
	}
}

// TestScriptErrorsKeepCircuitClosed: error replies (a key of the wrong type)
// fail their decisions but are no sign that Redis is down: however many in a
// row, the circuit stays closed for the other decisions.
func TestScriptErrorsKeepCircuitClosed(t *testing.T) {
	s, _ := open(t, false)
	h := poisonedHit(t, s)
	for i := range 2 * breakAfter {
		b := new(policy.Batch)
		b.Reset()
		b.Hits = append(b.Hits, h)
		if err := s.Apply(t0, b); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("decision %d: got %v, want WRONGTYPE", i, err)
		}
	}
	if f, open := s.fails.Load(), s.open.Load(); f != 0 || open {
		t.Fatalf("got %d failures counted (circuit open: %v), want none", f, open)
	}
	if !apply(t, s, t0, policy.Key{}, nil, bucketOp("fine", 1, 100)).Taken {
		t.Fatal("a decision without the bad key was not taken")
	}
}
