package redis

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/policy"
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
