package memory

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// changes returns s.Changes as a map by key.
func changes(s *Store) map[policy.Key]Count {
	m := map[policy.Key]Count{}
	for _, c := range s.Changes(nil) {
		if _, dup := m[c.Key]; dup {
			panic("key listed twice: " + c.Key.Limit)
		}
		m[c.Key] = c.Count
	}
	return m
}

// TestJournalListsEachChangeOnce: takes, usage counts and grants list their
// counter once per Changes call, with its latest state; buckets, WAF
// counters and denied requests list nothing.
func TestJournalListsEachChangeOnce(t *testing.T) {
	s := New(WithJournal(), WithShards(4))
	end := t0.Add(12 * time.Hour)
	q := quotaOp("q", 3, t0.Add(-12*time.Hour), end)
	usage := policy.Key{Limit: "u", Subject: "acme", Period: t0.Truncate(24 * time.Hour).Unix()}
	for i := range 4 {
		b := new(policy.Batch)
		b.Reset()
		b.Ops = append(b.Ops, q, bucketOp("r", 10, 20))
		b.Usage = usage
		if err := s.Apply(t0, b); err != nil {
			t.Fatal(err)
		}
		if got, want := b.Taken, i < 3; got != want {
			t.Fatalf("request %d: got taken %v, want %v", i, got, want)
		}
	}
	apply(t, s, t0, []policy.Hit{hit("w", 10, time.Minute)})

	got := changes(s)
	if len(got) != 2 {
		t.Fatalf("step 1: got %d changes (%v), want 2: the quota and the usage counter", len(got), got)
	}
	if c := got[q.Key]; c.Used != 3 || c.Granted != 0 || !c.Until.Equal(end) {
		t.Errorf("step 1: quota: got %+v, want 3 used until %v", c, end)
	}
	if c := got[usage]; c.Used != 3 || !c.Until.Equal(t0.Truncate(24*time.Hour).Add(24*time.Hour+DefaultUsageRetention)) {
		t.Errorf("step 1: usage: got %+v, want 3 used, kept a retention past the day", c)
	}
	if got := changes(s); len(got) != 0 {
		t.Fatalf("step 2: nothing changed: got %v, want no changes", got)
	}

	// A denied request changes nothing; a grant changes the quota.
	apply(t, s, t0, nil, q)
	if got := changes(s); len(got) != 0 {
		t.Fatalf("step 3: a denial: got %v, want no changes", got)
	}
	s.Grant(q.Key, 5, end)
	if got := changes(s); len(got) != 1 || got[q.Key].Granted != 5 || got[q.Key].Used != 3 {
		t.Fatalf("step 4: a grant: got %v, want the quota with 5 granted and 3 used", got)
	}
}

// TestJournalOffListsNothing: without WithJournal, Changes is empty.
func TestJournalOffListsNothing(t *testing.T) {
	s := New()
	apply(t, s, t0, nil, quotaOp("q", 3, t0, t0.Add(time.Hour)))
	if got := s.Changes(nil); len(got) != 0 {
		t.Fatalf("got %v, want no changes", got)
	}
}

// TestSweepKeepsUnlistedChange: a quota counter whose period ended is
// dropped only after Changes handed out its last state.
func TestSweepKeepsUnlistedChange(t *testing.T) {
	s := New(WithJournal(), WithShards(1))
	q := quotaOp("q", 3, t0, t0.Add(time.Second))
	apply(t, s, t0, nil, q)
	s.Sweep(t0.Add(time.Hour))
	if _, ok := s.Lookup(q.Key); !ok {
		t.Fatal("the changed counter was swept before Changes listed it")
	}
	if got := changes(s); got[q.Key].Used != 1 {
		t.Fatalf("got %v, want the counter with 1 used", got)
	}
	s.Sweep(t0.Add(time.Hour))
	if _, ok := s.Lookup(q.Key); ok {
		t.Fatal("the ended counter was not swept after Changes listed it")
	}
}

// TestRestore: a restored counter counts on from its state, is not listed
// as changed, and Lookup reports it.
func TestRestore(t *testing.T) {
	s := New(WithJournal())
	q := quotaOp("q", 10, t0, t0.Add(time.Hour))
	s.Restore(q.Key, Count{Used: 7, Granted: 2, Until: t0.Add(time.Hour)})
	if got := s.Changes(nil); len(got) != 0 {
		t.Fatalf("step 1: got %v, want no changes after a restore", got)
	}
	n := 0
	for range 10 {
		if apply(t, s, t0, nil, q).Taken {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("step 2: got %d allowed, want 5 (limit 10 + 2 granted − 7 used)", n)
	}
	if c, ok := s.Lookup(q.Key); !ok || c.Used != 12 || c.Granted != 2 {
		t.Fatalf("step 3: got %+v %v, want 12 used, 2 granted", c, ok)
	}
	if _, ok := s.Lookup(policy.Key{Limit: "none"}); ok {
		t.Fatal("step 4: Lookup found a counter that was never set")
	}
}

// TestJournalConcurrent: under concurrent takes and Changes calls, the last
// state handed out for a counter is its final count (-race).
func TestJournalConcurrent(t *testing.T) {
	s := New(WithJournal())
	const workers, each = 8, 500
	q := quotaOp("q", workers*each, t0, t0.Add(time.Hour))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				apply(t, s, t0, nil, q)
			}
		})
	}
	var last int64 = -1
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		for _, c := range s.Changes(nil) {
			if c.Count.Used < last {
				t.Fatalf("counts went backwards: %d after %d", c.Count.Used, last)
			}
			last = c.Count.Used
		}
	}
	for _, c := range s.Changes(nil) {
		last = c.Count.Used
	}
	if last != workers*each {
		t.Fatalf("got a last state of %d used, want %d", last, workers*each)
	}
}

// TestSaveKeyComparesPrev: a key is saved only over the version the caller
// read; a create finds its id free.
func TestSaveKeyComparesPrev(t *testing.T) {
	s := New()
	a := &policy.APIKey{ID: "k", Customer: "k"}
	if err := s.SaveKey(a, nil); err != nil {
		t.Fatal(err)
	}
	b := &policy.APIKey{ID: "k", Customer: "k", Enabled: true}
	if err := s.SaveKey(b, nil); !errors.Is(err, policy.ErrKeyChanged) {
		t.Fatalf("a second create: got %v, want ErrKeyChanged", err)
	}
	if err := s.SaveKey(b, a); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveKey(a, a); !errors.Is(err, policy.ErrKeyChanged) {
		t.Fatalf("a save over a replaced version: got %v, want ErrKeyChanged", err)
	}
}
