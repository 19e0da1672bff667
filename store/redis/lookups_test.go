package redis

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestLookupsBatched: the lookups that arrive while one is in flight share
// the next call, and each gets its own key's answer: 21 lookups of distinct
// hashes, held by a paused Redis, make 3 calls (the first caller's, the
// sender's first, and one for the 19 that waited).
func TestLookupsBatched(t *testing.T) {
	s, srv := openHeld(t)
	var keys []*policy.APIKey
	for i := range 10 {
		k := &policy.APIKey{ID: fmt.Sprint("k-", i), Customer: "acme", Hash: sha256.Sum256(fmt.Appendf(nil, "value-%d", i)), Plans: []string{"pro"}, Enabled: true, Created: t0}
		if err := s.SaveKey(k, nil); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	hashes := make([][sha256.Size]byte, 21)
	for i := range hashes {
		hashes[i] = sha256.Sum256(fmt.Appendf(nil, "value-%d", i)) // 0-9 are keys
	}
	before := scriptCalls(t, s)
	resume := pauseScripts(t, srv)
	got := make([]*policy.APIKey, len(hashes))
	errs := make([]error, len(hashes))
	var wg sync.WaitGroup
	start := func(i int) { wg.Go(func() { got[i], errs[i] = s.lookupKey(hashes[i]) }) }
	start(0)
	waitFor(t, "the first lookup in its call", func() bool { return s.lookups.inflight.Load() == 1 })
	start(1)
	waitFor(t, "the sender's first call", func() bool { return s.lookups.inflight.Load() == 2 })
	for i := 2; i < len(hashes); i++ {
		start(i)
	}
	waitFor(t, "19 lookups queued", func() bool { return len(s.lookups.queue) == 19 })
	resume()
	wg.Wait()
	for i := range hashes {
		switch {
		case errs[i] != nil:
			t.Errorf("lookup %d: %v", i, errs[i])
		case i < 10 && (got[i] == nil || got[i].ID != keys[i].ID):
			t.Errorf("lookup %d: got %+v, want key %s", i, got[i], keys[i].ID)
		case i >= 10 && got[i] != nil:
			t.Errorf("lookup %d: got %+v, want none", i, got[i])
		}
	}
	if n := scriptCalls(t, s) - before; n != 3 {
		t.Errorf("21 lookups made %d calls, want 3", n)
	}
}

// TestLookupBatchErrorReply: on a cluster, a lookup whose copy's node
// answers an error (as a node loading its data after a restart answers
// LOADING; here the copy's key holds a list) fails, whatever the other
// lookups of its call got; it is never reported as no key, which the key
// cache would keep for KeyCacheTTL in place of the key. It used to be when
// a lookup before it in the call found none: the pipeline's first error,
// the one looked at, was that none.
func TestLookupBatchErrorReply(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{})
	k := testKey("k", "value")
	copyKey := s.copyKey(policy.KeyHashText(k.Hash))
	if err := s.c.RPush(t.Context(), copyKey, "not a record").Err(); err != nil {
		t.Fatal(err)
	}
	node, err := c.SlotOwner(copyKey)
	if err != nil {
		t.Fatal(err)
	}
	// A made-up key whose copy is on another node, looked up first.
	var none [sha256.Size]byte
	for i := 0; ; i++ {
		none = sha256.Sum256(fmt.Appendf(nil, "made-up-%d", i))
		n, err := c.SlotOwner(s.copyKey(policy.KeyHashText(none)))
		if err != nil {
			t.Fatal(err)
		}
		if n != node {
			break
		}
	}
	ls := []*lookup{{hash: none}, {hash: k.Hash}}
	s.lookupMany(ls)
	if ls[0].key != nil || ls[0].err != nil {
		t.Errorf("the made-up key: %+v, %v; want none", ls[0].key, ls[0].err)
	}
	if ls[1].key != nil || ls[1].err == nil {
		t.Errorf("the key whose node answered an error: %+v, %v; want an error", ls[1].key, ls[1].err)
	}
}

// TestLookupsGivenUpNotSent: lookups whose callers gave up while they
// waited for the sender are not sent: with the first call and the sender's
// held until more lookups than a call takes have queued and run out of
// time, no call is made for those. They used to be: a sender behind its
// queue (a flood of made-up keys) spent its calls on lookups nobody waited
// for, and the live ones queued behind them ran out of time too.
func TestLookupsGivenUpNotSent(t *testing.T) {
	s, _ := openWith(t, Options{CallerClock: true})
	var sent atomic.Int64
	release := make(chan struct{})
	s.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
		if args := cmd.Args(); cmd.Name() == "evalsha" && len(args) > 1 && args[1] == any(lookupKeyScript.Hash()) {
			sent.Add(1)
			<-release
		}
		return nil
	}})
	var first, waiting sync.WaitGroup
	lookup := func(i int) { s.lookupKey(sha256.Sum256(fmt.Appendf(nil, "made-up-%d", i))) }
	first.Go(func() { lookup(0) })
	waitFor(t, "the first lookup in its call", func() bool { return s.lookups.inflight.Load() == 1 })
	waiting.Go(func() { lookup(1) })
	waitFor(t, "the sender's first call", func() bool { return s.lookups.inflight.Load() == 2 })
	queued := maxLookups + 19
	for i := range queued {
		waiting.Go(func() { lookup(2 + i) })
	}
	waiting.Wait() // every caller that waited for the sender ran out of time
	before := sent.Load()
	close(release)
	first.Wait()
	waitFor(t, "the sender to be done", func() bool { return len(s.lookups.queue) == 0 && s.lookups.inflight.Load() == 0 })
	if n := sent.Load() - before; n != 0 {
		t.Errorf("%d calls made for lookups whose callers were gone, want 0", n)
	}
}

// TestLookupsQueuedWhenCircuitOpens: lookups that wait for the sender when
// the circuit opens get ErrUnavailable without a call, as decisions do
// (batch.go). They used to be sent to the Redis the circuit had given up
// on, and to wait out their budget there.
func TestLookupsQueuedWhenCircuitOpens(t *testing.T) {
	s, _ := openWith(t, Options{CallerClock: true, Timeout: 5 * time.Second})
	var sent atomic.Int64
	release := make(chan struct{})
	s.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
		if cmd.Name() == "ping" {
			return errors.New("refused") // the circuit stays open
		}
		if args := cmd.Args(); cmd.Name() == "evalsha" && len(args) > 1 && args[1] == any(lookupKeyScript.Hash()) {
			sent.Add(1)
			<-release
		}
		return nil
	}})
	var wg sync.WaitGroup
	lookup := func(i int) error {
		_, err := s.lookupKey(sha256.Sum256(fmt.Appendf(nil, "made-up-%d", i)))
		return err
	}
	wg.Go(func() { lookup(0) })
	waitFor(t, "the first lookup in its call", func() bool { return s.lookups.inflight.Load() == 1 })
	wg.Go(func() { lookup(1) })
	waitFor(t, "the sender's first call", func() bool { return s.lookups.inflight.Load() == 2 })
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { errs[i] = lookup(2 + i) })
	}
	waitFor(t, "the lookups queued", func() bool { return len(s.lookups.queue) == len(errs) })
	s.trip(errors.New("test"))
	before := sent.Load()
	close(release)
	wg.Wait()
	if n := sent.Load() - before; n != 0 {
		t.Errorf("%d calls made with the circuit open, want 0", n)
	}
	for i, err := range errs {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("lookup %d: %v, want ErrUnavailable", i, err)
		}
	}
}
