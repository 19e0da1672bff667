package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/file"
	"github.com/tollgate/tollgate/store/memory"
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

// TestKeyCacheNegative: a flood of one unknown key costs one store lookup;
// the negative cache stays bounded under many distinct unknown keys.
func TestKeyCacheNegative(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	clk := &clock{t: t0}
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
	clk := &clock{t: t0}
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
		{"after the TTL", func() { clk.Advance(keyCacheTTL) }, ptr(true)},
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

func ptr[T any](v T) *T { return &v }

// TestKeyCacheErrorsNotCached: a failed lookup is retried on the next
// request.
func TestKeyCacheErrorsNotCached(t *testing.T) {
	st := &countingStore{Store: memory.New()}
	c := newKeyCache(st, (&clock{t: t0}).Now)
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
	clk := &clock{t: t0}
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
	c := newKeyCache(st, (&clock{t: t0}).Now)
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

// TestStoreDownModes: while a store fails in a way it cannot decide on its
// own (a Redis store with --on-store-error local decides locally, and fails
// only on a fault of the data or while it closes), a run-time key that is not cached is 503 whatever
// the mode (never let through unchecked), a bad policy key is still 403, a
// good key is allowed without limits with allow and 503 with Retry-After
// with deny and local; keys the cache knows keep their answer.
func TestStoreDownModes(t *testing.T) {
	for _, mode := range []OnStoreError{OnErrorAllow, OnErrorDeny, OnErrorLocal} {
		var st *countingStore
		h := serveWrapped(t, testPolicy(t), func(c *Config) { c.OnStoreError = mode },
			func(s Store) Store { st = &countingStore{Store: s}; return st })
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
// (nothing cached, a change seen at once); a store over the network is not.
func TestKeyCacheDirect(t *testing.T) {
	fs, err := file.Open(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if !keysInMemory(memory.New()) || !keysInMemory(fs) {
		t.Fatal("the memory and file stores should be looked up directly")
	}
	if keysInMemory(struct{ policy.Keys }{memory.New()}) {
		t.Fatal("a store without KeysInMemory should be cached")
	}
	st := &countingStore{Store: memory.New()}
	c := newKeyCache(st, (&clock{t: t0}).Now)
	c.direct = true
	h := hashOf("tg_runtime_key_000000000000001")
	for range 3 {
		if k, _ := c.LookupKey(h); k != nil {
			t.Fatal("found a key before it was saved")
		}
	}
	putKey(st, &policy.APIKey{ID: "direct", Customer: "direct", Hash: h, Plans: []string{"free"}, Enabled: true})
	if k, _ := c.LookupKey(h); k == nil || k.ID != "direct" {
		t.Fatalf("got %v right after the save, want the key (no invalidation needed)", k)
	}
	if got := st.lookups.Load(); got != 4 {
		t.Errorf("%d store lookups for 4 lookups", got)
	}
	for i := range c.shards {
		if n := c.shards[i].found.Len() + c.shards[i].missing.Len(); n != 0 {
			t.Fatalf("shard %d holds %d entries", i, n)
		}
	}
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
