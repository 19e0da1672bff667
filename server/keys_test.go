package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// countingStore is a memory store that counts key lookups and fails them,
// and its other calls, while fail is set.
type countingStore struct {
	Store
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

func (s *countingStore) Apply(now time.Time, b *policy.Batch) error {
	if s.fail.Load() {
		return errDown
	}
	return s.Store.Apply(now, b)
}

func (s *countingStore) Ready(ctx context.Context) error {
	if s.fail.Load() {
		return errDown
	}
	return s.Store.Ready(ctx)
}

// putKey saves k over whatever key has its id.
func putKey(st Store, k *policy.APIKey) {
	prev, err := st.RuntimeKey(k.ID)
	if err != nil {
		panic(err)
	}
	if err := st.SaveKey(k, prev); err != nil {
		panic(err)
	}
}

func hashOf(v string) [sha256.Size]byte { return sha256.Sum256([]byte(v)) }

// cachingStore is a countingStore whose key lookups, while it fails, keep
// the answers it gave before, as the Redis store's key cache does: a fake
// of that behaviour, so that the server's modes can be tested against it;
// the cache itself is tested in store/redis (TestKeyCacheStaleIfError,
// TestKeyCacheOfStore).
type cachingStore struct {
	*countingStore
	mu   sync.Mutex
	seen map[[sha256.Size]byte]*policy.APIKey
}

func (s *cachingStore) LookupKey(h [sha256.Size]byte) (*policy.APIKey, error) {
	k, err := s.countingStore.LookupKey(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if k, ok := s.seen[h]; ok {
			return k, nil
		}
		return nil, err
	}
	s.seen[h] = k
	return k, nil
}

// TestStoreDownModes: while a store fails in a way it cannot decide on its
// own (a Redis store with --on-store-error local decides locally, and fails
// only on a fault of the data or while it closes), a run-time key that is not cached is 503 whatever
// the mode (never let through unchecked), a bad policy key is still 403, a
// good key is allowed without limits with allow and 503 with Retry-After
// with deny and local; keys the cache knows keep their answer.
func TestStoreDownModes(t *testing.T) {
	for _, mode := range []OnStoreError{OnErrorAllow, OnErrorDeny, OnErrorLocal} {
		var st *countingStore
		h := serveWrapped(t, testPolicy(t), func(c *Config) { c.OnStoreError = mode }, func(s Store) Store {
			st = &countingStore{Store: s}
			return &cachingStore{countingStore: st, seen: map[[sha256.Size]byte]*policy.APIKey{}}
		})
		a := h.call("POST", "/v1/keys", `{"id":"rt","customer":"rt","plans":["pro"]}`).want(t, "create", 201, "")
		cached, _ := a.json["value"].(string)
		if h.check(cached).status != 200 {
			t.Fatal("up: the new key should pass")
		}
		st.fail.Store(true)
		d := h.check("tg_never_seen_before_000000001")
		if d.status != 503 || d.headers["x-tollgate-reason"] != "store:error" || d.headers["retry-after"] != "1" {
			t.Errorf("%s: uncached key: got %d %v, want 503 store:error, retry-after 1", mode, d.status, d.headers)
		}
		if d := h.check("tg_demo_disabled_000000000001"); d.status != 403 {
			t.Errorf("%s: disabled policy key: got %d, want 403", mode, d.status)
		}
		want := 503
		if mode == OnErrorAllow {
			want = 200
		}
		if d := h.check("tg_demo_pro_00000000000000001"); d.status != want {
			t.Errorf("%s: good policy key: got %d, want %d", mode, d.status, want)
		}
		if d := h.check(cached); d.status != want {
			t.Errorf("%s: cached run-time key: got %d, want %d", mode, d.status, want)
		}
	}
}

// TestStoreDownFailsOpen: with --on-store-error allow, while the store
// fails, requests are allowed, counted as store:error, and /readyz is 503;
// all of it clears when the store is back. (The degraded gauge follows a
// Redis store's circuit: TestRedisOutageVisible.)
func TestStoreDownFailsOpen(t *testing.T) {
	var st *countingStore
	h := serveWrapped(t, testPolicy(t), func(c *Config) { c.OnStoreError = OnErrorAllow },
		func(s Store) Store { st = &countingStore{Store: s}; return st })
	st.fail.Store(true)
	if d := h.check("tg_demo_pro_00000000000000001"); d.status != 200 {
		t.Fatalf("down: got %d, want 200 (fail open)", d.status)
	}
	// A request decided without the store (unreadable: 400) is no
	// store error.
	bad := request("")
	bad.Attributes.Request.Http.Method = ""
	if _, err := h.authz.Check(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	a := h.callWith("GET", "/readyz", "", nil)
	if a.status != 503 || !strings.Contains(a.raw, `"error": "store down"`) {
		t.Fatalf("down: readyz: got %d %s, want 503 with the store error", a.status, a.raw)
	}
	for series, want := range map[string]float64{
		`tollgate_decisions_total{api="payments",outcome="allow",plan="pro",reason="store:error",stage="prod"}`: 1,
		`tollgate_store_errors_total{op="decide"}`:                                                              1,
		`tollgate_store_errors_total{op="ready"}`:                                                               1,
	} {
		if got := h.metric(series); got != want {
			t.Errorf("down: %s: got %v, want %v", series, got, want)
		}
	}
	st.fail.Store(false)
	if d := h.check("tg_demo_pro_00000000000000001"); d.status != 200 {
		t.Fatalf("back: got %d, want 200", d.status)
	}
	h.callWith("GET", "/readyz", "", nil).want(t, "back: readyz", 200, "")
}

// TestKeyCacheDirect: the memory and file stores are asked on every lookup
// (nothing cached, a change seen at once); a store over the network caches
// its keys itself (store/redis: TestKeyCacheOfStore).
func TestKeyCacheDirect(t *testing.T) {
	for _, store := range []string{"memory:", "file:" + t.TempDir()} {
		var st *countingStore
		h := serveWrapped(t, testPolicy(t), func(c *Config) { c.Store = store },
			func(s Store) Store { st = &countingStore{Store: s}; return st })
		const value = "tg_runtime_key_000000000000001"
		for range 3 {
			if d := h.check(value); d.status != 403 {
				t.Fatalf("%s: got %d before the key was saved, want 403", store, d.status)
			}
		}
		putKey(st, &policy.APIKey{ID: "direct", Customer: "direct", Hash: hashOf(value), Plans: []string{"free"}, Enabled: true})
		if d := h.check(value); d.status != 200 {
			t.Fatalf("%s: got %d right after the save, want the key (no invalidation needed)", store, d.status)
		}
		if got := st.lookups.Load(); got != 4 {
			t.Errorf("%s: %d store lookups for 4 lookups", store, got)
		}
	}
}

// TestFlushFailureDegraded guards issue 13's disk-full finding: during the
// fault the degraded gauge and /readyz disagreed, and after it the gauge
// stayed at 1 until the next decision. Both now read one state, set by each
// write of the file store (which writes every flush interval, requests or
// not).
func TestFlushFailureDegraded(t *testing.T) {
	dir := t.TempDir()
	h := serve(t, testPolicy(t), func(c *Config) { c.Store = "file:" + dir; c.FlushInterval = time.Hour })
	degraded := func(step string, want bool) {
		t.Helper()
		var ready readyState
		a := h.callWith("GET", "/readyz", "", nil)
		if err := json.Unmarshal([]byte(a.raw), &ready); err != nil {
			t.Fatalf("%s: readyz: %v in %s", step, err, a.raw)
		}
		if ready.Store.Degraded != want || h.metric("tollgate_store_degraded") != b2f(want) {
			t.Errorf("%s: got readyz degraded %v and gauge %v, want %v for both", step, ready.Store.Degraded,
				h.metric("tollgate_store_degraded"), want)
		}
	}
	degraded("before", false)
	h.s.flushed(3, time.Millisecond, errors.New("write 3 counters: no space left on device"))
	degraded("fault", true)
	h.s.flushed(3, time.Millisecond, errors.New("write 3 counters: no space left on device"))
	degraded("fault again", true)
	h.s.flushed(0, time.Millisecond, nil) // a write, no decision in between
	degraded("after", false)
	if n := strings.Count(h.logs.String(), "counters not written"); n != 1 {
		t.Errorf("got %d error lines for one fault, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "counters written again") {
		t.Error("no log line for the end of the fault")
	}
}
