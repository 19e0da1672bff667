package redis

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestShareAddsUp: the replicas' shares of a limit add up to it, for every
// count of replicas, the largest limit included.
func TestShareAddsUp(t *testing.T) {
	for n := 1; n <= 7; n++ {
		for _, x := range []int64{0, 1, 2, 5, 6, 12, 13, 1000, 4000, math.MaxInt64} {
			var sum int64
			var rate uint64
			th := policy.Throttle{RateMicro: uint64(x), Burst: x}
			for i := range n {
				sum += share(x, i, n)
				st := shareThrottle(th, i, n)
				rate += st.RateMicro
				if st.Burst != share(x, i, n) {
					t.Fatalf("n=%d x=%d: the throttle's burst share %d is not the share %d", n, x, st.Burst, share(x, i, n))
				}
			}
			if sum != x || rate != uint64(x) {
				t.Errorf("n=%d x=%d: shares add up to %d (rates to %d), want %d", n, x, sum, rate, x)
			}
		}
	}
	if got := []int64{share(int64(12), 0, 3), share(int64(12), 1, 3), share(int64(12), 2, 3), share(int64(13), 0, 3), share(int64(13), 2, 3)}; got[0] != 4 || got[1] != 4 || got[2] != 4 || got[3] != 4 || got[4] != 5 {
		t.Errorf("got %v, want 12 = 4+4+4 and 13 = 4+4+5", got)
	}
}

// localStores opens n stores with Options.Local on one Redis, on the
// caller's clock, and waits until each counts n replicas.
func localStores(t *testing.T, n int) ([]*Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	var stores []*Store
	for range n {
		s, err := Open(srv.URL(), Options{Local: true, CallerClock: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	for _, s := range stores {
		s.beat() // the first beats saw fewer
		if got := s.Replicas(); got != n {
			t.Fatalf("a store counts %d replicas, want %d", got, n)
		}
	}
	return stores, srv
}

// TestLocalShares: three replicas with Redis gone each decide locally with
// a third of every limit, the thirds adding up to the limit: a burst of 12
// (4 each), a WAF rule of 7 an hour (2, 2 and 3), a concurrency cap of 5
// (1, 2 and 2). The decisions say they were made locally.
func TestLocalShares(t *testing.T) {
	stores, srv := localStores(t, 3)
	srv.Stop()
	var bursts, hits, slots int
	for _, s := range stores {
		for i := range 10 {
			b := apply(t, s, t0, policy.Key{}, nil, bucketOp("burst", 0.001, 12))
			if !b.Local {
				t.Fatalf("decision %d: not marked local", i)
			}
			if b.Taken {
				bursts++
			}
			if b := apply(t, s, t0, policy.Key{}, []policy.Hit{hit("waf", 7, time.Hour)}); b.Blocked < 0 {
				hits++
			}
			slot := policy.Op{Key: policy.Key{Limit: "cap"}, Tier: policy.TierConcurrency, Quota: 5, Lease: "l" + string(rune('a'+i))}
			if apply(t, s, t0, policy.Key{}, nil, slot).Taken {
				slots++
			}
		}
	}
	if bursts != 12 || hits != 7 || slots != 5 {
		t.Errorf("got %d of the burst, %d past the WAF rule and %d slots in all, want 12, 7 and 5", bursts, hits, slots)
	}
	// A slot taken locally is released locally.
	if err := stores[0].Release(policy.Key{Limit: "cap"}, "la"); err != nil {
		t.Errorf("releasing a local slot: %v", err)
	}
}

// TestLocalQuotaAddedBack: with Redis hanging, a replica gives out its
// share of what was left of a quota when Redis last answered it (here,
// alone: all of it), and no more; when Redis goes on, the local use is
// added to the quota and usage counters, and calls that reached Redis past
// their deadline took nothing.
func TestLocalQuotaAddedBack(t *testing.T) {
	stores, srv := localStores(t, 1)
	s := stores[0]
	now := time.Now()
	q := quotaOp("q", 10, now.Add(-time.Hour), now.Add(time.Hour))
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: now.UTC().Truncate(24 * time.Hour).Unix()}
	for range 7 {
		if b := apply(t, s, now, usage, nil, q); !b.Taken || b.Local {
			t.Fatalf("before: got taken %v local %v, want taken on Redis", b.Taken, b.Local)
		}
	}
	srv.Pause()
	defer srv.Resume()
	taken := 0
	for i := range 6 {
		b := apply(t, s, now, usage, nil, q)
		if !b.Local {
			t.Fatalf("during, decision %d: not local", i)
		}
		if b.Taken {
			taken++
			if o := b.Ops[0]; o.Quota != 10 || o.Remaining != int64(3-taken) {
				t.Errorf("during, decision %d: reported quota %d, %d left, want 10, %d", i, o.Quota, o.Remaining, 3-taken)
			}
		}
	}
	if taken != 3 {
		t.Fatalf("during: got %d taken, want the 3 left", taken)
	}
	srv.Resume()
	// The calls missed their budgets (the circuit may have stayed closed:
	// a few slow calls after many good ones): the local counts go to Redis
	// once a call succeeds.
	decideOnce(s)
	waitFor(t, "the local counts to reach Redis", func() bool {
		used, _, _ := s.Counter(q.Key)
		return used == 10
	})
	if used, _, err := s.Counter(usage); used != 10 || err != nil {
		t.Errorf("usage after: got %d, %v, want 10", used, err)
	}
	if b := apply(t, s, now, usage, nil, q); b.Taken || b.Local {
		t.Errorf("after: got taken %v local %v, want denied on Redis: the quota is used up", b.Taken, b.Local)
	}
}

// TestLateDecisionTakesNothing: a decision whose call reaches a Redis that
// hangs (SIGSTOP) is decided locally when its budget ends; when Redis goes
// on, it runs the call it was sent (the bytes wait in its socket), after the
// decision's deadline: the decision takes nothing there.
func TestLateDecisionTakesNothing(t *testing.T) {
	stores, srv := localStores(t, 1)
	s := stores[0]
	// On a loaded machine the decision's budget may end before its call is
	// written (say, while a connection is made): then there is nothing held
	// to run, and the step is made again.
	for attempt := range 5 {
		bucket := fmt.Sprint("late-", attempt)
		calls, sent := scriptCalls(t, s), s.calls.Load()
		srv.Pause()
		b := apply(t, s, t0, policy.Key{}, nil, bucketOp(bucket, 1, 10))
		srv.Resume()
		if !b.Local || !b.Taken {
			t.Fatalf("got local %v taken %v, want a local decision", b.Local, b.Taken)
		}
		// Redis reads what waited in its sockets before it answers
		// anything sent after (it writes replies once it has handled what
		// it read).
		if err := pingRedis(srv); err != nil {
			t.Fatal(err)
		}
		if s.calls.Load() == sent || scriptCalls(t, s) == calls {
			t.Logf("attempt %d: the call was not sent before the budget ended", attempt)
			continue
		}
		if n, err := s.c.Exists(context.Background(), s.key('b', policy.Key{Limit: bucket})).Result(); n != 0 || err != nil {
			t.Errorf("the late decision's bucket exists (%d, %v): Redis applied it", n, err)
		}
		return
	}
	t.Fatal("in 5 attempts, no call reached the hanging Redis")
}

// pingRedis makes a round trip to srv on a connection of its own.
func pingRedis(srv *redistest.Server) error {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	return c.Ping(context.Background()).Err()
}

// TestLateReplySettled: a reply that shows Redis took for a decision whose
// caller had given up and decided locally marks that take as held by Redis:
// a local take of the same request is not added again, and a take Redis
// made for a request answered locally as a denial is taken back.
func TestLateReplySettled(t *testing.T) {
	stores, _ := localStores(t, 1)
	s := stores[0]
	now := time.Now()
	end := now.Add(time.Hour)
	q := quotaOp("q", 100, now.Add(-time.Hour), end)
	usage := policy.Key{Limit: "usage", Subject: "acme", Period: now.UTC().Truncate(24 * time.Hour).Unix()}
	for range 5 {
		apply(t, s, now, usage, nil, q) // on Redis: 5 used
	}
	// Two requests whose callers gave up: Redis took for both; the first
	// was admitted locally too, the second denied locally.
	b := new(policy.Batch)
	b.Reset()
	b.Ops = append(b.Ops, q)
	b.Usage = usage
	s.local.mem.Apply(now, b) // the first's local take
	for range 2 {
		r := newRequest(0, 1)
		r.note(b, &quotaOwed{})
		s.settleLate(r, []int64{0, 1, now.UnixMicro(), 5, 0}) // not blocked, taken
		r.free()
	}
	if err := s.reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[policy.Key]int64{q.Key: 5 - 1, usage: 5 - 1} {
		if used, _, _ := s.Counter(k); used != want {
			t.Errorf("%s: got %d, want %d: the take of the request denied locally is taken back", k.Limit, used, want)
		}
	}
}

// TestPushAppliesOnce: a push made again with its token (its reply was
// lost) adds nothing the second time.
func TestPushAppliesOnce(t *testing.T) {
	stores, _ := localStores(t, 1)
	s := stores[0]
	q := quotaOp("q", 100, t0, t0.Add(time.Hour))
	s.local.mem.Apply(t0, &policy.Batch{Ops: []policy.Op{q}, Blocked: -1})
	s.local.mem.Apply(t0, &policy.Batch{Ops: []policy.Op{q}, Blocked: -1})
	changes := s.local.mem.Changes(nil)
	if len(changes) != 1 || changes[0].Count.Used != 2 {
		t.Fatalf("got the changes %+v, want one counter at 2", changes)
	}
	p := &push{token: newToken(), items: changes}
	for range 2 {
		if err := s.sendPush(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if used, _, _ := s.Counter(q.Key); used != 2 {
		t.Errorf("got %d, want 2 (a push applies once)", used)
	}
}

// TestReplicasCount: replicas count each other through their heartbeats;
// one that closes withdraws at once.
func TestReplicasCount(t *testing.T) {
	stores, _ := localStores(t, 3)
	stores[2].Close()
	stores[0].beat()
	if got := stores[0].Replicas(); got != 2 {
		t.Errorf("after one closed: got %d replicas, want 2", got)
	}
}

// TestLocalNotForDataErrors: a decision whose call fails because of the
// data (a key of the wrong type) is no outage: with Options.Local too, the
// error is returned (the server counts it and answers 503), not decided
// locally with a share of the limits.
func TestLocalNotForDataErrors(t *testing.T) {
	stores, _ := localStores(t, 1)
	s := stores[0]
	h := poisonedHit(t, s)
	b := new(policy.Batch)
	b.Reset()
	b.Hits = append(b.Hits, h)
	if err := s.Apply(t0, b); err == nil || b.Local {
		t.Fatalf("got %v (local %v), want the WRONGTYPE error", err, b.Local)
	}
}

// TestStraySlotsGivenBack: a decision with a concurrency cap whose call
// misses its budget is decided locally, and the slot Redis may have taken
// for it is given back when Redis answers again.
func TestStraySlotsGivenBack(t *testing.T) {
	stores, srv := localStores(t, 1)
	s := stores[0]
	slot := policy.Op{Key: policy.Key{Limit: "cap"}, Tier: policy.TierConcurrency, Quota: 5, Lease: "held"}
	// As if Redis had taken the slot of the decision below.
	ctx := context.Background()
	if err := s.c.ZAdd(ctx, s.key('s', slot.Key), goredis.Z{Score: 1e18, Member: "held"}).Err(); err != nil {
		t.Fatal(err)
	}
	resume := pauseScripts(t, srv)
	if b := apply(t, s, t0, policy.Key{}, nil, slot); !b.Local || !b.Taken {
		t.Fatalf("got local %v taken %v, want a local decision", b.Local, b.Taken)
	}
	resume()
	if err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.c.ZCard(ctx, s.key('s', slot.Key)).Result(); n != 0 || err != nil {
		t.Errorf("got %d slots held in Redis (%v), want the stray one given back", n, err)
	}
	if err := s.Release(slot.Key, "held"); err != nil {
		t.Errorf("releasing the local slot: %v", err)
	}
}

// TestBudgetSpentBeforeApply: a decision whose budget its key lookup spent
// makes no call: without Options.Local it fails with the timeout, with it it
// is decided locally.
func TestBudgetSpentBeforeApply(t *testing.T) {
	for _, local := range []bool{false, true} {
		s, _ := openWith(t, Options{CallerClock: true, Local: local})
		calls := s.calls.Load()
		b := new(policy.Batch)
		b.Reset()
		b.Deadline = time.Now().Add(-time.Millisecond)
		b.Ops = append(b.Ops, bucketOp("b", 1, 10))
		err := s.Apply(t0, b)
		if local && (err != nil || !b.Local) || !local && !timedOut(err) {
			t.Errorf("local=%v: got %v (local %v), want a timeout without local, a local decision with it", local, err, b.Local)
		}
		if s.calls.Load() != calls {
			t.Errorf("local=%v: a call was made", local)
		}
	}
}

// TestCloseWhileRedisHangs: a Store closes promptly while Redis hangs: its
// heartbeat's call and the last push end with it.
func TestCloseWhileRedisHangs(t *testing.T) {
	stores, srv := localStores(t, 1)
	s := stores[0]
	apply(t, s, t0, policy.Key{}, nil, quotaOp("q", 10, t0, t0.Add(time.Hour)))
	srv.Pause()
	defer srv.Resume()
	// A local decision leaves something to push.
	if b := apply(t, s, t0, policy.Key{}, nil, quotaOp("q", 10, t0, t0.Add(time.Hour))); !b.Local {
		t.Fatal("not decided locally")
	}
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > withdrawTimeout+time.Second {
		t.Errorf("Close took %v with Redis hanging, want at most %v and a margin", took, withdrawTimeout)
	}
}

// TestLocalWAFCountersBounded: the WAF counters of local decisions are
// bounded by Options.LocalMaxCounters.
func TestLocalWAFCountersBounded(t *testing.T) {
	s := &Store{local: newFallback(256)}
	for i := range 2000 {
		b := &policy.Batch{}
		b.Reset()
		b.Hits = append(b.Hits, policy.Hit{Key: policy.Key{Limit: "waf", Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})},
			Limit: 100, Window: time.Minute})
		if err := s.local.mem.Apply(time.Unix(1_800_000_000, 0), b); err != nil {
			t.Fatal(err)
		}
	}
	if held, dropped := s.WAFCounters(); held > 256 || held+int(dropped) != 2000 {
		t.Errorf("got %d held %d dropped, want at most 256 held and 2000 in all", held, dropped)
	}
	if held, dropped := (&Store{}).WAFCounters(); held != 0 || dropped != 0 {
		t.Errorf("without local decisions: got %d held %d dropped, want 0 0", held, dropped)
	}
}

// TestLateShadowQuota: Redis takes a shadow quota of a request it admits
// only when the quota admits too; settling a late reply reads which from
// the reply (the quota's used and granted, after the hits).
func TestLateShadowQuota(t *testing.T) {
	now := time.Now()
	b := new(policy.Batch)
	b.Reset()
	b.Hits = append(b.Hits, hit("waf", 100, time.Minute))
	b.Ops = append(b.Ops, bucketOp("plan", 1, 5), shadow(quotaOp("q", 5, now.Add(-time.Hour), now.Add(time.Hour))))
	r := newRequest(1, 2)
	defer r.free()
	r.note(b, &quotaOwed{})
	// Not blocked, taken; the hit's count; the bucket; the quota's used
	// and granted.
	for _, c := range []struct {
		used, granted int64
		want          bool
	}{{4, 0, true}, {5, 0, false}, {5, 1, true}, {9, 2, false}} {
		reply := []int64{0, 1, now.UnixMicro(), 1, 5e9, now.UnixMicro(), c.used, c.granted}
		if got := r.late.quotaTaken(reply); got != c.want {
			t.Errorf("used %d granted %d: got taken %v, want %v", c.used, c.granted, got, c.want)
		}
	}
	b.Ops[1].Shadow = false
	r.note(b, &quotaOwed{})
	if !r.late.quotaTaken([]int64{0, 1, now.UnixMicro(), 1, 5e9, now.UnixMicro(), 9, 0}) {
		t.Error("an enforced quota of a taken reply: got not taken, want taken")
	}
}

// TestSlowCallQuotaNotHandedOutTwice: one slow call (Redis stalls past the
// budget; the circuit stays closed) is decided locally with the quota's last
// unit. The next decision goes to Redis before the push of that take lands:
// it must count the take (owedQuotas) and deny, not hand the unit out again.
// A reviewer's find: one replica, quota 10, 11 admitted.
func TestSlowCallQuotaNotHandedOutTwice(t *testing.T) {
	srv := redistest.Start(t)
	s, err := Open(srv.URL(), Options{Local: true}) // serve's defaults: Redis's clock, the default budget
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.beat()
	now := time.Now()
	q := quotaOp("q", 10, now.Add(-time.Hour), now.Add(time.Hour))
	admitted := 0
	for range 9 {
		if b := apply(t, s, now, policy.Key{}, nil, q); b.Taken {
			admitted++
		}
	}
	srv.Pause()
	b := apply(t, s, now, policy.Key{}, nil, q) // misses its budget
	srv.Resume()
	if !b.Local || !b.Taken {
		t.Fatalf("the stalled decision: local %v, taken %v; want the last unit taken locally", b.Local, b.Taken)
	}
	admitted++
	if s.open.Load() {
		t.Fatalf("one slow call opened the circuit")
	}
	if err := pingRedis(srv); err != nil { // Redis ran what waited (the late call takes nothing)
		t.Fatal(err)
	}
	b = apply(t, s, now, policy.Key{}, nil, q)
	if b.Local {
		t.Fatalf("the decision after Redis answers again was local")
	}
	if b.Taken {
		admitted++
	}
	if o := b.Ops[0]; o.OK || o.Remaining != 0 {
		t.Errorf("the quota after its last unit was taken locally: ok %v, remaining %d; want a denial, 0 left", o.OK, o.Remaining)
	}
	var used int64
	waitFor(t, "the local take to reach Redis", func() bool {
		used, _, _ = s.Counter(q.Key)
		return used >= 10
	})
	if admitted != 10 || used != 10 {
		t.Errorf("quota 10, one replica: %d admitted, Redis holds %d used; want 10 and 10", admitted, used)
	}
	// Pushed: nothing is owed any more, and the quota reads from Redis alone.
	waitFor(t, "the push to be recorded", func() bool { return s.localTaken.Load() == s.pushedThrough.Load() })
	if o := s.owedQuotas(b); o[0] != 0 {
		t.Errorf("after the push, the quota still owes %d", o[0])
	}
}

// TestLocalBatchBeyondMaxLimits: a batch of more ops than policy.MaxLimits
// (TestMatchesMemory's holds shadow ops too), decided locally, does not
// panic; a reviewer found an index out of range.
func TestLocalBatchBeyondMaxLimits(t *testing.T) {
	s, err := Open("redis://127.0.0.1:1/0", Options{Local: true}) // nothing listens: the circuit opens
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	b := new(policy.Batch)
	b.Reset()
	for i := range 2*policy.MaxLimits + 1 {
		b.Ops = append(b.Ops, bucketOp(fmt.Sprintf("b%d", i), 1, 5))
	}
	b.Ops = append(b.Ops, quotaOp("q", 10, now.Add(-time.Hour), now.Add(time.Hour)))
	if err := s.Apply(now, b); err != nil {
		t.Fatal(err)
	}
	if !b.Local || !b.Taken {
		t.Fatalf("local %v, taken %v; want taken locally", b.Local, b.Taken)
	}
}
