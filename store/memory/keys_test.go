package memory

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

func testKey(i int) *policy.APIKey {
	at := time.Date(2026, 12, 1, 10, 0, 0, i, time.UTC)
	k := &policy.APIKey{
		ID: fmt.Sprintf("key-%d", i), Customer: fmt.Sprintf("cus-%d", i%7), Name: fmt.Sprintf("name %d", i),
		Hash: sha256.Sum256(fmt.Appendf(nil, "value-%d", i)), Plans: []string{"pro"}, Enabled: i%3 != 0, Created: at,
	}
	if i%2 == 0 {
		k.Expires = at.Add(time.Duration(i) * time.Hour)
		k.Plans = []string{"free", "pro"}
	}
	return k
}

// checkKeys asserts that the store holds exactly want, by id and by hash.
func checkKeys(t *testing.T, s *Store, want map[string]*policy.APIKey, gone []*policy.APIKey) {
	t.Helper()
	all, _ := s.RuntimeKeys()
	if len(all) != len(want) {
		t.Fatalf("RuntimeKeys: %d keys, want %d", len(all), len(want))
	}
	for _, k := range all {
		w := want[k.ID]
		if w == nil || !sameKey(k, w) {
			t.Fatalf("RuntimeKeys holds %+v, want %+v", k, w)
		}
	}
	for _, w := range want {
		if k, _ := s.LookupKey(w.Hash); k == nil || !sameKey(k, w) {
			t.Fatalf("LookupKey(%s) = %+v, want %+v", w.ID, k, w)
		}
		if k, _ := s.RuntimeKey(w.ID); k == nil || !sameKey(k, w) {
			t.Fatalf("RuntimeKey(%s) = %+v, want %+v", w.ID, k, w)
		}
	}
	for _, g := range gone {
		if want[g.ID] != nil {
			continue
		}
		if k, _ := s.LookupKey(g.Hash); k != nil {
			t.Fatalf("LookupKey of removed %s = %+v", g.ID, k)
		}
		if k, _ := s.RuntimeKey(g.ID); k != nil {
			t.Fatalf("RuntimeKey of removed %s = %+v", g.ID, k)
		}
	}
}

// TestKeyringChurn saves, replaces and deletes keys (enough to compact the
// text several times), with ids that all collide in byID or not, and checks
// every key after each round.
func TestKeyringChurn(t *testing.T) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collide=%v", collide), func(t *testing.T) {
			s := New()
			if collide {
				s.keys.hashID = func(string) uint64 { return 42 }
			}
			n := 3000
			if collide {
				n = 300 // the overflow map is walked on each removal
			}
			want := map[string]*policy.APIKey{}
			var gone []*policy.APIKey
			for round := range 6 {
				for i := range n {
					k := testKey(i)
					if round%2 == 1 {
						k.Name = fmt.Sprintf("renamed %d in round %d, a longer name to grow the text", i, round)
						k.Hash = sha256.Sum256(fmt.Appendf(nil, "value-%d-%d", i, round))
					}
					if (i+round)%5 == 0 {
						if _, err := s.DeleteKey(k.ID); err != nil {
							t.Fatal(err)
						}
						if w := want[k.ID]; w != nil {
							gone = append(gone, w)
						}
						delete(want, k.ID)
						continue
					}
					prev, _ := s.RuntimeKey(k.ID)
					if err := s.SaveKey(k, prev); err != nil {
						t.Fatal(err)
					}
					if w := want[k.ID]; w != nil && w.Hash != k.Hash {
						gone = append(gone, w)
					}
					want[k.ID] = k
				}
				checkKeys(t, s, want, gone)
			}
			if !collide && s.keys.garbage > len(s.keys.text)/2 && s.keys.garbage >= compactMin {
				t.Errorf("text not compacted: %d bytes of garbage in %d", s.keys.garbage, len(s.keys.text))
			}
		})
	}
}

// TestSaveKeyComparesValues: the version a caller read, as a new copy, is
// accepted; any field changed since is ErrKeyChanged.
func TestSaveKeyComparesValues(t *testing.T) {
	s := New()
	a := testKey(2)
	if err := s.SaveKey(a, nil); err != nil {
		t.Fatal(err)
	}
	read, _ := s.RuntimeKey(a.ID)
	for _, change := range []func(k *policy.APIKey){
		func(k *policy.APIKey) { k.Enabled = !k.Enabled },
		func(k *policy.APIKey) { k.Plans = []string{"free"} },
		func(k *policy.APIKey) { k.Name = "other" },
		func(k *policy.APIKey) { k.Expires = time.Time{} },
		func(k *policy.APIKey) { k.Created = k.Created.Add(time.Nanosecond) },
		func(k *policy.APIKey) { k.Hash[0]++ },
	} {
		stale := *read
		change(&stale)
		if err := s.SaveKey(testKey(2), &stale); !errors.Is(err, policy.ErrKeyChanged) {
			t.Errorf("save over a changed copy: %v, want ErrKeyChanged", err)
		}
	}
	next := *read
	next.Name = "next"
	if err := s.SaveKey(&next, read); err != nil {
		t.Fatalf("save over the key as read: %v", err)
	}
	if err := s.SaveKey(testKey(2), nil); !errors.Is(err, policy.ErrKeyChanged) {
		t.Errorf("create over an existing id: %v, want ErrKeyChanged", err)
	}
}

// TestKeyPlansShared: plan lists are stored once; appending to a looked-up
// key's list never changes the stored one.
func TestKeyPlansShared(t *testing.T) {
	s := New()
	for i := range 100 {
		s.PutKey(testKey(i))
	}
	if len(s.keys.plans) != 2 {
		t.Errorf("%d plan lists stored for 2 distinct ones", len(s.keys.plans))
	}
	k, _ := s.LookupKey(testKey(1).Hash)
	_ = append(k.Plans, "enterprise")
	k2, _ := s.LookupKey(testKey(3).Hash)
	if !slices.Equal(k2.Plans, []string{"pro"}) {
		t.Errorf("plans changed through another key: %q", k2.Plans)
	}
	nilPlans := &policy.APIKey{ID: "nil", Customer: "nil", Hash: sha256.Sum256([]byte("nil"))}
	empty := &policy.APIKey{ID: "empty", Customer: "empty", Hash: sha256.Sum256([]byte("empty")), Plans: []string{}}
	s.PutKey(nilPlans)
	s.PutKey(empty)
	if k, _ := s.RuntimeKey("nil"); k.Plans != nil {
		t.Errorf("nil plans came back as %#v", k.Plans)
	}
	if k, _ := s.RuntimeKey("empty"); k.Plans == nil {
		t.Error("empty plans came back nil")
	}
}

// TestKeyringHeapObjects: 100,000 keys are a few objects for the garbage
// collector to walk, not several per key.
func TestKeyringHeapObjects(t *testing.T) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New()
	for i := range n {
		s.PutKey(testKey(i)) // garbage once put
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	objects := int64(after.HeapObjects) - int64(before.HeapObjects)
	// The keys built above are garbage now: what is left is the store's,
	// its shards' tables included. A *policy.APIKey per key with its strings
	// and plan list would be 4 or more per key.
	if objects > n/20 {
		t.Errorf("%d heap objects for %d keys (want under %d)", objects, n, n/20)
	}
	t.Logf("%d keys: %d heap objects, %d bytes", n, objects, after.HeapAlloc-before.HeapAlloc)
	runtime.KeepAlive(s)
}
