package redis

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// t0 is a fixed instant on a whole minute.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// open starts a Redis and opens a store on it with the default options, on
// the caller's clock unless redisClock.
func open(t *testing.T, redisClock bool) (*Store, *redistest.Server) {
	t.Helper()
	return openWith(t, Options{CallerClock: !redisClock})
}

// heldBudget is the budget of the tests that hold calls in Redis
// (pauseScripts) to see how the decisions waiting meanwhile are batched: the
// calls they hold must outlast the test's steps. Tests of what a budget
// means use the default.
const heldBudget = time.Second

// openHeld opens a store, on the caller's clock, for a test that holds
// calls (heldBudget).
func openHeld(t *testing.T) (*Store, *redistest.Server) {
	t.Helper()
	return openWith(t, Options{CallerClock: true, Timeout: heldBudget})
}

// openWith starts a Redis and opens a store on it with o.
func openWith(t *testing.T, o Options) (*Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	s, err := Open(srv.URL(), o)
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

// shadow returns o in shadow mode.
func shadow(o policy.Op) policy.Op {
	o.Shadow = true
	return o
}

func hit(limit string, max int64, window time.Duration) policy.Hit {
	return policy.Hit{Key: policy.Key{Limit: limit, Addr: netip.MustParseAddr("198.51.100.7")}, Limit: max, Window: window}
}

// apply runs one batch at now. A decision that reached Redis past its
// deadline (a stall of a loaded machine) took nothing: it is made again, up
// to twice, which over fixed instants changes nothing.
func apply(t testing.TB, st policy.State, now time.Time, usage policy.Key, hits []policy.Hit, ops ...policy.Op) *policy.Batch {
	t.Helper()
	b := new(policy.Batch)
	for try := 0; ; try++ {
		b.Reset()
		b.Hits = append(b.Hits, hits...)
		b.Ops = append(b.Ops, ops...)
		b.Usage = usage
		err := st.Apply(now, b)
		if errors.Is(err, errLate) && try < 2 {
			t.Logf("Apply reached Redis past its deadline; made again")
			continue
		}
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		return b
	}
}

// TestBucketWorkedChecks: the bucket checks of package policy's doc through the script,
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
		// 10,000 calls in a row: on a loaded machine one may miss its
		// budget, and its take is then unknown; the case runs again on a
		// fresh bucket.
		exactRuns(t, func(run string) (missed int) {
			op := bucketOp(c.name+run, c.rate, c.burst)
			for i, st := range c.steps {
				allowed := 0
				last := new(policy.Batch)
				for range st.n {
					last.Reset()
					last.Ops = append(last.Ops, op)
					switch err := s.Apply(t0.Add(st.at), last); {
					case budgetMissed(err):
						return 1
					case err != nil:
						t.Fatalf("Apply: %v", err)
					case last.Taken:
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
			return 0
		})
	}
}

// TestMatchesMemory: random batches of WAF hits, buckets, quotas and usage
// counters, enforced and shadow ones, over microsecond instants, give the
// same results on Redis as on store/memory, step by step: the script and
// the Go arithmetic agree.
func TestMatchesMemory(t *testing.T) {
	s, _ := open(t, false)
	m := memory.New()
	rng := rand.New(rand.NewPCG(1, 2))
	watch := hit("waf-c", 5, 2*time.Second)
	watch.Watch = true // counted past its limit, never blocking
	hits := []policy.Hit{hit("waf-a", 40, 10*time.Second), watch, hit("waf-b", 25, 3*time.Second)}
	ops := []policy.Op{
		bucketOp("plan", 3.123457, 7), bucketOp("route", 0.333333, 2), bucketOp("stage", 120.123456, 30),
		bucketOp("big", 2_000_000, 8_000_000), bucketOp("off", 0, 0),
		quotaOp("quota", 400, t0.Add(-time.Hour), t0.Add(time.Hour)),
		shadow(bucketOp("shadow-plan", 1.5, 3)), shadow(quotaOp("shadow-quota", 150, t0.Add(-time.Hour), t0.Add(time.Hour))),
	}
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: t0.Truncate(24 * time.Hour).Unix()}
	taken, denied := matchMemory(t, s, m, rng, 3000, hits, ops, usage, func(o policy.Op) bool {
		return o.Key.Limit != "off" || rng.IntN(20) == 0
	})
	if taken < 300 || denied < 300 {
		t.Errorf("got %d batches taken and %d denied, want both often", taken, denied)
	}
	for _, k := range []policy.Key{ops[5].Key, ops[7].Key, usage} {
		gu, gg, err := s.Counter(k)
		wu, wg, _ := m.Counter(k)
		if err != nil || gu != wu || gg != wg {
			t.Errorf("counter %s: got %d, %d, %v, want %d, %d", k.Limit, gu, gg, err, wu, wg)
		}
	}
}

// matchMemory applies the same random steps to s and to the memory store
// m from t0 on: bursts of requests microseconds apart and pauses, each with
// a random part of the hits, of the ops (those that also pass keep) and of
// the usage counter; it fails at the first step whose results differ, and
// returns the batches taken and denied.
func matchMemory(t *testing.T, s, m policy.State, rng *rand.Rand, steps int, hits []policy.Hit, ops []policy.Op, usage policy.Key, keep func(policy.Op) bool) (taken, denied int) {
	t.Helper()
	now := t0
	for step := range steps {
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
			if rng.IntN(2) == 0 && keep(o) {
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
	return taken, denied
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
// hardly refills, on Redis's clock, at the default budget and with every
// core kept busy, take exactly 50; a shadow bucket of burst 20 beside it
// admits exactly 20 of those 50, and never denies.
func TestConcurrentBurstExact(t *testing.T) {
	s, _ := open(t, true)
	busyhost.Spin(t, time.Minute)
	exactRuns(t, func(run string) int {
		tight, wide := bucketOp("tight"+run, 0.0001, 50), bucketOp("wide"+run, 1e6, 1e6)
		shade := shadow(bucketOp("shade"+run, 0.0001, 20))
		var taken, shaded, missed atomic.Int64
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				for range 10 {
					b := new(policy.Batch)
					b.Reset()
					b.Ops = append(b.Ops, tight, shade, wide)
					switch err := s.Apply(time.Now(), b); {
					case budgetMissed(err):
						missed.Add(1)
					case err != nil:
						t.Errorf("Apply: %v", err)
					case b.Taken:
						taken.Add(1)
						if b.Ops[1].OK {
							shaded.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
		if n := missed.Load(); n > 0 {
			return int(n)
		}
		if n, m := taken.Load(), shaded.Load(); n != 50 || m != 20 {
			t.Errorf("got %d taken, %d of them with the shadow bucket admitting, want exactly 50 and 20", n, m)
		}
		return 0
	})
}

// budgetMissed reports whether err is a decision's budget running out (its
// call timed out, or Redis ran it past its deadline).
func budgetMissed(err error) bool { return timedOut(err) || errors.Is(err, errLate) }

// maxDisturbed is how many runs of an exactness test may be disturbed by a
// decision that missed its budget (a stall of a loaded machine: the
// decision's outcome in Redis is then unknown, and so is the count to
// expect) before the test fails: systematic misses fail it, a rare one
// does not.
const maxDisturbed = 2

// exactRuns runs a test of exactness under concurrency, on fresh keys named
// with run, until a run in which no decision missed its budget (run returns
// how many did; it checks exactness only when none did), at most
// maxDisturbed+1 times.
func exactRuns(t *testing.T, run func(run string) (missed int)) {
	t.Helper()
	for i := 0; i <= maxDisturbed; i++ {
		missed := run(fmt.Sprint("-run", i))
		if missed == 0 {
			return
		}
		t.Logf("run %d: %d decisions missed the default budget on this loaded machine; running again", i, missed)
	}
	t.Fatalf("in %d runs, decisions missed the default budget every time", maxDisturbed+1)
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

// TestOpenURLs: the schemes and tollgate's own parameters.
func TestOpenURLs(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"memcached://x:1", `unsupported scheme "memcached"`},
		{"redis://127.0.0.1:1/0?retention=soon", `retention="soon" is not a positive duration`},
		{"redis-sentinel://127.0.0.1:1", "needs master_name"},
		{"redis://127.0.0.1:1/0?frobnicate=1", "frobnicate"},
		{"redis://user:secret@127.0.0.1:1/0?frobnicate=1", "user:xxxxx@"},
		{"redis-cluster://127.0.0.1:1?layout=sideways", `layout="sideways" is not spread or one-slot`},
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
	if s.opts.Prefix != "t1:" || s.opts.Retention != 48*time.Hour || !s.open.Load() || s.opts.Timeout != DefaultTimeout {
		t.Fatalf("got prefix %q retention %v open %v budget %v", s.opts.Prefix, s.opts.Retention, s.open.Load(), s.opts.Timeout)
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
