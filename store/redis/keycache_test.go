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

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/keyjson"
	"github.com/tollgate/tollgate/store/memory"
)

// The key cache's tests run it in front of a memory store (countingStore),
// on a clock of their own; the Store's use of it is tested with Redis in
// TestKeyCacheOfStore.

// countingStore is a memory store that counts key lookups and fails them
// while fail is set.
type countingStore struct {
	*memory.Store
	lookups atomic.Int64
	fail    atomic.Bool
}

var errDown = errors.New("store down")

func (s *countingStore) LookupKey(h [sha256.Size]byte) (*policy.APIKey, error) {
	s.lookups.Add(1)
	if s.fail.Load() {
		return nil, errDown
	}
	return s.Store.LookupKey(h)
}

// putKey saves k over whatever key has its id.
func putKey(st *countingStore, k *policy.APIKey) {
	prev, err := st.RuntimeKey(k.ID)
	if err != nil {
		panic(err)
	}
	if err := st.SaveKey(k, prev); err != nil {
		panic(err)
	}
}

func hashOf(v string) [sha256.Size]byte { return sha256.Sum256([]byte(v)) }

func ptr[T any](v T) *T { return &v }

// TestKeyCacheNegative: a flood of one unknown key costs one store lookup;
// the negative cache stays bounded under many distinct unknown keys.
func TestKeyCacheNegative(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	clk := testclock.New(t0)
	c := newKeyCache(st, clk.Now)
	for i := range 10000 {
		if k, err := c.LookupKey(hashOf("tg_unknown_00000000000000001")); k != nil || err != nil {
			t.Fatalf("%d: got %v %v, want no key", i, k, err)
		}
	}
	if got := st.lookups.Load(); got != 1 {
		t.Fatalf("got %d store lookups for one unknown key, want 1", got)
	}
	for i := range 3 * keyCacheSize {
		c.LookupKey(hashOf(fmt.Sprintf("tg_flood_%020d", i)))
	}
	n := 0
	for i := range c.shards {
		n += c.shards[i].missing.Len() + c.shards[i].found.Len()
	}
	if n > keyCacheSize {
		t.Fatalf("got %d cached entries, want at most %d", n, keyCacheSize)
	}
}

// TestKeyCacheInvalidate: a change followed by invalidate is seen on the
// next lookup; without it the cached answer stands until the TTL.
func TestKeyCacheInvalidate(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	clk := testclock.New(t0)
	c := newKeyCache(st, clk.Now)
	h := hashOf("tg_runtime_key_000000000000001")
	steps := []struct {
		name    string
		change  func()
		enabled *bool // nil: no key
	}{
		{"unknown", nil, nil},
		{"created", func() {
			putKey(st, &policy.APIKey{ID: "k", Customer: "k", Hash: h, Plans: []string{"pro"}, Enabled: true})
			c.invalidate()
		}, ptr(true)},
		{"disabled", func() {
			putKey(st, &policy.APIKey{ID: "k", Customer: "k", Hash: h, Plans: []string{"pro"}})
			c.invalidate()
		}, ptr(false)},
		{"changed behind the cache", func() {
			putKey(st, &policy.APIKey{ID: "k", Customer: "k", Hash: h, Plans: []string{"pro"}, Enabled: true})
		}, ptr(false)},
		{"after the TTL", func() { clk.Advance(KeyCacheTTL) }, ptr(true)},
		{"deleted", func() { st.DeleteKey("k"); c.invalidate() }, nil},
	}
	for i, s := range steps {
		if s.change != nil {
			s.change()
		}
		k, err := c.LookupKey(h)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case s.enabled == nil && k != nil:
			t.Fatalf("%d %s: got key %v, want none", i, s.name, k.ID)
		case s.enabled != nil && (k == nil || k.Enabled != *s.enabled):
			t.Fatalf("%d %s: got %+v, want enabled %v", i, s.name, k, *s.enabled)
		}
	}
}

// TestKeyCacheErrorsNotCached: a failed lookup is retried on the next
// request.
func TestKeyCacheErrorsNotCached(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	c := newKeyCache(st, testclock.New(t0).Now)
	h := hashOf("tg_runtime_key_000000000000001")
	putKey(st, &policy.APIKey{ID: "k", Customer: "k", Hash: h, Plans: []string{"pro"}, Enabled: true})
	st.fail.Store(true)
	if _, err := c.LookupKey(h); !errors.Is(err, errDown) {
		t.Fatalf("got %v, want %v", err, errDown)
	}
	st.fail.Store(false)
	if k, err := c.LookupKey(h); err != nil || k == nil {
		t.Fatalf("got %v %v, want the key", k, err)
	}
}

// TestKeyCacheStaleIfError: while the store fails, an answer whose TTL ran
// out is used (a key found, and a hash that is no key); an answer from
// before an invalidation is not.
func TestKeyCacheStaleIfError(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	clk := testclock.New(t0)
	c := newKeyCache(st, clk.Now)
	known, unknown := hashOf("tg_runtime_key_000000000000001"), hashOf("tg_not_a_key_00000000000000001")
	putKey(st, &policy.APIKey{ID: "k", Customer: "k", Hash: known, Plans: []string{"pro"}, Enabled: true})
	c.LookupKey(known)
	c.LookupKey(unknown)
	clk.Advance(time.Hour)
	st.fail.Store(true)
	if k, err := c.LookupKey(known); err != nil || k == nil || k.ID != "k" {
		t.Fatalf("step 1: got %v, %v, want the stale key", k, err)
	}
	if k, err := c.LookupKey(unknown); err != nil || k != nil {
		t.Fatalf("step 1: got %v, %v, want the stale no-key", k, err)
	}
	c.invalidate()
	if _, err := c.LookupKey(known); !errors.Is(err, errDown) {
		t.Fatalf("step 2: after an invalidation got %v, want %v", err, errDown)
	}
}

// TestKeyCacheRaceWithInvalidate: lookups racing with changes never keep an
// answer read before the last change (run with -race).
func TestKeyCacheRaceWithInvalidate(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	c := newKeyCache(st, testclock.New(t0).Now)
	h := hashOf("tg_runtime_key_000000000000001")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				c.LookupKey(h)
			}
		})
	}
	for i := range 2000 {
		k := &policy.APIKey{ID: "k", Customer: "k", Hash: h, Plans: []string{"pro"}, Enabled: i%2 == 0}
		putKey(st, k)
		c.invalidate()
		got, err := c.LookupKey(h)
		if err != nil || got == nil || got.Enabled != k.Enabled {
			cancel()
			wg.Wait()
			t.Fatalf("%d: got %+v %v, want enabled %v", i, got, err, k.Enabled)
		}
	}
	cancel()
	wg.Wait()
}

// heldKeys is a key store whose lookups wait for release, counting them.
type heldKeys struct {
	calls   atomic.Int64
	release chan struct{}
}

func (h *heldKeys) LookupKey([sha256.Size]byte) (*policy.APIKey, error) {
	h.calls.Add(1)
	<-h.release
	return nil, nil
}

// TestKeyCacheOneLookupAtATime: a new key's first requests, arriving
// together, make one store lookup, not one each; a change of the keys
// (invalidate) makes the requests after it ask again, never getting an
// answer read before it.
func TestKeyCacheOneLookupAtATime(t *testing.T) {
	st := &heldKeys{release: make(chan struct{})}
	c := newKeyCache(st, time.Now)
	h := sha256.Sum256([]byte("tg_a_new_key_000000000000001"))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { c.LookupKey(h) })
	}
	for st.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the others join the lookup in flight
	c.invalidate()
	wg.Go(func() { c.LookupKey(h) })
	for deadline := time.Now().Add(2 * time.Second); st.calls.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // a lookup of its own, or none if it joined the old one
	}
	close(st.release)
	wg.Wait()
	if n := st.calls.Load(); n != 2 {
		t.Errorf("got %d lookups, want 2: one for the 20 requests, one after the change", n)
	}
}

// TestKeyCacheOfStore: the Store answers LookupKey from its cache. A change
// made behind its back (no announcement) is not seen while the answer is
// cached; its own changes (SaveKey, DeleteKey, ImportKeys) are seen by its
// next lookup; another replica's as soon as the announcement arrives, well
// before the TTL; while Redis is away, the answers it holds stand and a
// hash it does not know is an error.
func TestKeyCacheOfStore(t *testing.T) {
	a, srv := open(t, false)
	b, err := Open(srv.URL(), Options{CallerClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h, h2 := hashOf("tg_runtime_key_000000000000001"), hashOf("tg_runtime_key_000000000000002")
	k := &policy.APIKey{ID: "k", Customer: "k", Hash: h, Plans: []string{"pro"}, Enabled: true, Created: t0}
	enabled := func(st *Store, h [sha256.Size]byte) *bool {
		t.Helper()
		got, err := st.LookupKey(h)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			return nil
		}
		return &got.Enabled
	}
	soon := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(KeyCacheTTL / 3); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited %v for %s", KeyCacheTTL/3, what)
			}
		}
	}

	if err := a.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	if got := enabled(a, h); got == nil || !*got {
		t.Fatalf("1: got %v right after a's save, want the enabled key", got)
	}
	off := *k
	off.Enabled = false
	rec, _ := keyjson.Encode(&off)
	if err := a.c.HSet(context.Background(), a.keysKey, k.ID, rec).Err(); err != nil {
		t.Fatal(err)
	}
	if got := enabled(a, h); got == nil || !*got {
		t.Fatalf("2: got %v after a change behind a's back, want the cached enabled key", got)
	}
	if got := enabled(b, h); got == nil || *got {
		t.Fatalf("2: got %v from b, which cached nothing, want the disabled key", got)
	}
	if ok, err := b.DeleteKey(k.ID); !ok || err != nil {
		t.Fatalf("3: b's delete: got %v, %v", ok, err)
	}
	soon("a to see b's delete", func() bool { return enabled(a, h) == nil })
	if enabled(a, h2) != nil {
		t.Fatal("4: found a key before its import")
	}
	k2 := &policy.APIKey{ID: "k2", Customer: "k", Hash: h2, Plans: []string{"pro"}, Enabled: true, Created: t0}
	if err := a.ImportKeys([]*policy.APIKey{k, k2}); err != nil {
		t.Fatal(err)
	}
	if enabled(a, h) == nil || enabled(a, h2) == nil {
		t.Fatal("4: a does not see its own import at once")
	}
	soon("b to see a's import", func() bool { return enabled(b, h) != nil && enabled(b, h2) != nil })
	if ok, err := a.DeleteKey(k2.ID); !ok || err != nil {
		t.Fatalf("5: a's delete: got %v, %v", ok, err)
	}
	if enabled(a, h2) != nil || enabled(a, h) == nil {
		t.Fatal("5: a does not see its own delete at once, or lost the other key")
	}
	srv.Stop()
	if got, err := a.LookupKey(h); err != nil || got == nil {
		t.Fatalf("6: Redis away: got %v, %v, want the cached key", got, err)
	}
	if got, err := a.LookupKey(hashOf("tg_never_seen_before_000000001")); err == nil {
		t.Fatalf("6: Redis away: got %v for a hash never looked up, want an error", got)
	}
}

// TestOwnChangesEnded: after a change of its own the Store clears its cache
// once, when the call returns, and skips the announcement; a call that
// failed clears it only if its announcement was heard meanwhile (the change
// was made), else leaves the announcement to be heard as another replica's.
func TestOwnChangesEnded(t *testing.T) {
	for i, c := range []struct {
		name          string
		changed       bool
		err           error
		heardBefore   bool // the announcement was heard before the call returned
		wantCleared   bool // by the call's end
		wantSkipLater bool // an announcement heard after the end is skipped
	}{
		{"changed", true, nil, false, true, true},
		{"changed, heard first", true, nil, true, true, false},
		{"nothing changed", false, nil, false, false, false},
		{"failed", false, errDown, false, false, false},
		{"failed, heard first", false, errDown, true, true, false},
	} {
		s := &Store{keys: newKeyCache(memory.New(), testclock.New(t0).Now)}
		s.mine.prefix, s.mine.tags = "r#", map[string]struct{}{}
		tag := s.mine.begin()
		if c.heardBefore && !s.mine.take(tag) {
			t.Fatalf("%d %s: the watcher did not skip the Store's own announcement", i, c.name)
		}
		s.ended(tag, c.changed, c.err)
		if got := s.keys.gen.Load() == 1; got != c.wantCleared {
			t.Errorf("%d %s: got cleared %v, want %v", i, c.name, got, c.wantCleared)
		}
		if got := s.mine.take(tag); got != c.wantSkipLater {
			t.Errorf("%d %s: got skipped later %v, want %v", i, c.name, got, c.wantSkipLater)
		}
	}
}

// TestOwnChangesBounded: tags whose announcement never comes back (a message
// dropped by a full channel) do not pile up.
func TestOwnChangesBounded(t *testing.T) {
	o := &ownChanges{prefix: "r#", tags: map[string]struct{}{}}
	for range 3 * maxOwnChanges {
		o.begin()
	}
	if n := len(o.tags); n > maxOwnChanges {
		t.Fatalf("got %d tags waiting, want at most %d", n, maxOwnChanges)
	}
}
