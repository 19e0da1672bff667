package redis

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/busyhost"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

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

// queueDecisions starts the decisions of the batches, the i-th at at(i),
// one after another, each once the one before is on the queue (the senders
// being occupied), and returns a function that waits for them and returns
// their errors.
func queueDecisions(t *testing.T, s *Store, batches []*policy.Batch, at func(i int) time.Time) (wait func() []error) {
	t.Helper()
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	for i, b := range batches {
		wg.Go(func() { errs[i] = s.Apply(at(i), b) })
		waitFor(t, fmt.Sprintf("decision %d to be queued", i), func() bool { return len(s.main.queue) == i+1 })
	}
	return func() []error { wg.Wait(); return errs }
}

// atT0 is every decision's instant for queueDecisions: t0.
func atT0(int) time.Time { return t0 }

// TestBatchesConcurrentCallers: decisions of many concurrent callers share
// calls (fewer EVALSHA calls than decisions), and the limits stay exact at
// the default budget while every core is kept busy: a burst of 1,000 that
// hardly refills admits exactly 1,000, a quota of 700 exactly 700, and the
// usage counter counts exactly the admitted.
func TestBatchesConcurrentCallers(t *testing.T) {
	s, _ := open(t, true)
	busyhost.Spin(t, time.Minute)
	exactRuns(t, func(run string) int {
		const callers, each = 64, 40
		q := quotaOp("quota"+run, 700, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		usage := policy.Key{Limit: "usage" + run, Subject: "acme", Period: time.Now().UTC().Truncate(24 * time.Hour).Unix()}
		tight, wide := bucketOp("tight"+run, 0.0001, 1000), bucketOp("wide"+run, 1e6, 1e6)
		before := scriptCalls(t, s)
		var bucketTaken, quotaTaken, missed atomic.Int64
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				b := new(policy.Batch)
				for i := range each {
					b.Reset()
					onQuota := (c+i)%2 == 0
					if onQuota {
						b.Ops = append(b.Ops, wide, q)
						b.Usage = usage
					} else {
						b.Ops = append(b.Ops, tight, wide)
					}
					err := s.Apply(time.Now(), b)
					switch {
					case budgetMissed(err):
						missed.Add(1)
						continue
					case err != nil:
						t.Errorf("caller %d decision %d: %v", c, i, err)
						return
					case b.Taken && onQuota:
						quotaTaken.Add(1)
					case b.Taken:
						bucketTaken.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n := missed.Load(); n > 0 {
			return int(n)
		}
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
		return 0
	})
}

// TestBatchInOrder: decisions queued while every sender's call is in flight
// go in one call, and run in the order they came: on a bucket of 5 that
// never refills, the first five that ask for it are admitted (with 4, 3, 2,
// 1, 0 left) and the later ones denied; the decisions between them, denied
// by another bucket, take nothing from it.
func TestBatchInOrder(t *testing.T) {
	s, srv := openHeld(t)
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, s)
	before := s.calls.Load()
	const n = 14
	batches := make([]*policy.Batch, n)
	for i := range n {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("five", 0, 5))
		if i%2 == 1 {
			b.Ops = append(b.Ops, bucketOp("stop", 0, 0))
		}
		batches[i] = b
	}
	queued := queueDecisions(t, s, batches, atT0)
	callsBefore := scriptCalls(t, s)
	resume()
	errs := queued()
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
	s, srv := openHeld(t) // the occupying calls are held
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
// decisions, and an error reply, as here, counts for the circuit breaker not
// at all (TestScriptErrorsKeepCircuitClosed): ten decisions failed in one
// call leave the circuit closed, and the next decision runs.
func TestBatchFailureCountsOnce(t *testing.T) {
	s, srv := openHeld(t)
	h := poisonedHit(t, s)
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, s)
	const n = 10
	batches := make([]*policy.Batch, n)
	for i := range n {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("fine", 1, 100))
		if i == n-1 {
			b.Hits = append(b.Hits, h)
		}
		batches[i] = b
	}
	queued := queueDecisions(t, s, batches, atT0)
	resume()
	errs := queued()
	wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Errorf("decision %d: got %v, want the call's WRONGTYPE error", i, err)
		}
	}
	if _, f, _ := s.window.counts(time.Now()); f != 0 || s.open.Load() {
		t.Fatalf("got %d failures counted (circuit open: %v), want none: the call had an error reply", f, s.open.Load())
	}
	if !apply(t, s, t0, policy.Key{}, nil, bucketOp("fine", 1, 100)).Taken {
		t.Fatal("the next decision was not taken")
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
	batches := make([]*policy.Batch, n)
	for i := range n {
		batches[i] = new(policy.Batch)
		batches[i].Reset()
		batches[i].Ops = append(batches[i].Ops, bucketOp("waiting", 1, 100))
	}
	queued := queueDecisions(t, s, batches, atT0)
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	errs := queued()
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
	s, srv := openHeld(t)
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
		s.window.reset()
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, bucketOp("held", 1, 10))
		if err := s.Apply(t0, b); err == nil {
			t.Fatalf("decision %d: no error while Redis holds the call", i)
		}
		// The call has a whole budget from when it was sent, so it ends
		// just after its decision gave up, and is counted then.
		failed := func() int64 { _, f, _ := s.window.counts(time.Now()); return f }
		waitFor(t, fmt.Sprintf("decision %d's call counted", i), func() bool { return failed() == 1 })
		time.Sleep(5 * time.Millisecond)
		if f := failed(); f != 1 {
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

	all, srv := openHeld(t)
	resume := pauseScripts(t, srv)
	wait := occupySenders(t, all)
	before := all.calls.Load()
	bat := decisions()
	queued := queueDecisions(t, all, bat, at)
	resume()
	errs := queued()
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

	// The state: every key but the occupying decisions' buckets and the
	// replicas' heartbeats.
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
			if strings.Contains(k, "occupy-") || k == s.replicasKey {
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
	for i := range 2 * breakMin {
		b := new(policy.Batch)
		b.Reset()
		b.Hits = append(b.Hits, h)
		if err := s.Apply(t0, b); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("decision %d: got %v, want WRONGTYPE", i, err)
		}
	}
	if _, f, _ := s.window.counts(time.Now()); f != 0 || s.open.Load() {
		t.Fatalf("got %d failures counted (circuit open: %v), want none", f, s.open.Load())
	}
	if !apply(t, s, t0, policy.Key{}, nil, bucketOp("fine", 1, 100)).Taken {
		t.Fatal("a decision without the bad key was not taken")
	}
}

// TestBatchedEqualsOneByOne: decisions in one call of the apply script answer
// as they do in calls of their own, whatever state an earlier decision of the
// call left in its cache; here a state no key can hold, left by decisions on
// a caller's clock before 1970 (which a key's string reads back as none).
func TestBatchedEqualsOneByOne(t *testing.T) {
	srv := redistest.Start(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	// One WAF hit (limit 1 a minute) and a bucket of burst 2 that never
	// refills, at an instant before 1970.
	dec := []any{"-1000000000", "0", "1", "1", "0", "0", "0", "1", "60000000", "b", "0", "2"}
	keys := []string{"w:x", "b:x"}
	run := func(keys []string, argv ...any) []any {
		t.Helper()
		res, err := c.Eval(ctx, applySrc, keys, argv...).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res.([]any)
	}
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	one := append(run(keys, dec...), run(keys, dec...)...)
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	batched := run(append(keys, keys...), append(append([]any{}, dec...), dec...)...)
	if !reflect.DeepEqual(batched, one) {
		t.Fatalf("batched %v, one by one %v", batched, one)
	}
}
