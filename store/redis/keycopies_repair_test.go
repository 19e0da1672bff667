package redis

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// cmdHook runs before on each command a client sends, and beforePipe on
// each pipeline, before it goes: a test makes another change at that point
// (a race, made certain) or fails the command (an error it returns). after
// runs when a command's reply came.
type cmdHook struct {
	before     func(ctx context.Context, cmd goredis.Cmder) error
	beforePipe func(cmds []goredis.Cmder)
	after      func(cmd goredis.Cmder)
}

func (h *cmdHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *cmdHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if h.before != nil {
			if err := h.before(ctx, cmd); err != nil {
				cmd.SetErr(err)
				return err
			}
		}
		err := next(ctx, cmd)
		if h.after != nil {
			h.after(cmd)
		}
		return err
	}
}

func (h *cmdHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if h.beforePipe != nil {
			h.beforePipe(cmds)
		}
		return next(ctx, cmds)
	}
}

// isCmd reports whether cmd is the command name on the Redis key.
func isCmd(cmd goredis.Cmder, name, key string) bool {
	args := cmd.Args()
	return cmd.Name() == name && len(args) > 1 && args[1] == any(key)
}

// testKey returns a run-time key of acme with the id, whose value is
// value.
func testKey(id, value string) *policy.APIKey {
	return &policy.APIKey{ID: id, Customer: "acme", Hash: sha256.Sum256([]byte(value)), Plans: []string{"pro"}, Enabled: true, Created: t0}
}

// noCopy fails the test when the lookup copy of the hash finds a key, or
// when any copy is left to make.
func noCopy(t *testing.T, s *Store, hash [sha256.Size]byte, what string) {
	t.Helper()
	if got, err := s.lookupKey(hash); got != nil || err != nil {
		t.Errorf("%s: a lookup found %+v, %v; want none", what, got, err)
	}
	if n, err := s.c.Exists(t.Context(), s.copyKey(policy.KeyHashText(hash))).Result(); n != 0 || err != nil {
		t.Errorf("%s: the copy is there (%d, %v)", what, n, err)
	}
}

// TestKeyCopyDeletedWhileMade: a key deleted while its copy is being made
// (the record read, the copy not yet written; the delete's copy work done
// in between) leaves no copy: the copy made of the record read is removed
// when the maker sees the record changed. It used to stay, and the deleted
// key was found by its hash for good.
func TestKeyCopyDeletedWhileMade(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{})
	k := testKey("k", "value")
	copyKey := s.copyKey(policy.KeyHashText(k.Hash))
	var once sync.Once
	s.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
		if isCmd(cmd, "set", copyKey) {
			once.Do(func() {
				if ok, err := s.DeleteKey("k"); !ok || err != nil {
					t.Errorf("delete: %v, %v", ok, err)
				}
			})
		}
		return nil
	}})
	if err := s.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	noCopy(t, s, k.Hash, "after the save and the delete")
	s.keyCopies()
	noCopy(t, s, k.Hash, "after a heartbeat")
}

// TestKeyCopyChangedOnEveryTry: a key re-hashed through another replica
// each time its copy is about to be written, until the maker gives up,
// keeps no copy at any hash but its last: the copies the maker wrote of
// records that had changed are checked by the next heartbeat.
func TestKeyCopyChangedOnEveryTry(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s, b := openCluster(t, c, Options{}), openCluster(t, c, Options{})
	k := testKey("k", "value-0")
	var mu sync.Mutex
	hashes := [][sha256.Size]byte{k.Hash}
	s.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
		mu.Lock()
		defer mu.Unlock()
		if cmd.Name() != "set" || len(hashes) > maxCopyTries {
			return nil
		}
		cur, err := b.RuntimeKey("k")
		if err != nil || cur == nil {
			t.Errorf("read k: %+v, %v", cur, err)
			return nil
		}
		next := *cur
		next.Hash = sha256.Sum256(fmt.Appendf(nil, "value-%d", len(hashes)))
		if err := b.SaveKey(&next, cur); err != nil {
			t.Errorf("re-hash %d: %v", len(hashes), err)
		}
		hashes = append(hashes, next.Hash)
		return nil
	}})
	if err := s.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	s.keyCopies()
	mu.Lock()
	made := slices.Clone(hashes)
	mu.Unlock()
	if len(made) <= maxCopyTries {
		t.Fatalf("%d changes made, want %d", len(made)-1, maxCopyTries)
	}
	last := made[len(made)-1]
	for i, h := range made[:len(made)-1] {
		noCopy(t, s, h, fmt.Sprint("hash ", i))
	}
	if got, err := s.lookupKey(last); err != nil || got == nil || got.ID != "k" {
		t.Errorf("the last hash: %+v, %v; want k", got, err)
	}
}

// forgetCopies makes s's next copyAll copy every key again, as on the first
// start on a cluster.
func forgetCopies(t *testing.T, s *Store) {
	t.Helper()
	if err := s.c.Del(t.Context(), s.opts.Prefix+copiesMadeKey).Err(); err != nil {
		t.Fatal(err)
	}
	s.copiesMade.Store(false)
}

// TestCopyAllKeyDeletedMeanwhile: a key deleted after the first start's
// copy of every key read it, and before that copy was written, leaves no
// copy: the entry the copy notes names the hash it copies. It used to name
// none, and the deleted key was found by its hash for good.
func TestCopyAllKeyDeletedMeanwhile(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{})
	k := testKey("k", "value")
	if err := s.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	forgetCopies(t, s)
	copyKey := s.copyKey(policy.KeyHashText(k.Hash))
	var once sync.Once
	s.c.AddHook(&cmdHook{beforePipe: func(cmds []goredis.Cmder) {
		if len(cmds) > 0 && isCmd(cmds[0], "set", copyKey) {
			once.Do(func() {
				if ok, err := s.DeleteKey("k"); !ok || err != nil {
					t.Errorf("delete: %v, %v", ok, err)
				}
			})
		}
	}})
	if err := s.copyAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.keyCopies()
	noCopy(t, s, k.Hash, "after the copy of every key and a heartbeat")
}

// TestKeyCopiesPastAFailedOne: a copy that fails (here, of a record that
// does not decode) does not hold up the others, whatever order the set of
// copies to make lists them in. The first failure used to end the copy
// work, and a key deleted after it was found by its copy for good.
func TestKeyCopiesPastAFailedOne(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{})
	k := testKey("k", "value")
	if err := s.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.c.HSet(ctx, s.keysKey, "bad", "{}").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.c.SAdd(ctx, s.copiesKey, "bad\x00").Err(); err != nil {
		t.Fatal(err)
	}
	// The failing entry first, as Redis may list it.
	s.c.AddHook(&cmdHook{after: func(cmd goredis.Cmder) {
		if c, ok := cmd.(*goredis.StringSliceCmd); ok && isCmd(cmd, "smembers", s.copiesKey) {
			v := c.Val()
			if i := slices.Index(v, "bad\x00"); i > 0 {
				v[0], v[i] = v[i], v[0]
			}
			c.SetVal(v)
		}
	}})
	if ok, err := s.DeleteKey("k"); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	s.keyCopies()
	noCopy(t, s, k.Hash, "after the delete and a heartbeat")
	if n, err := s.c.SCard(ctx, s.copiesKey).Result(); n != 1 || err != nil {
		t.Errorf("copies left to make: %d, %v; want 1 (the one that fails)", n, err)
	}
}

// TestKeyCopiesRepairedBeforeAllCopied: the heartbeat makes the copies left
// by changes whatever becomes of the first start's copy of every key, and
// that copy gets past a record that does not decode. A record that did not
// decode used to fail it on every heartbeat, and the heartbeat then made
// no copy left: a key whose delete failed to remove its copy was found by
// it for good.
func TestKeyCopiesRepairedBeforeAllCopied(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{})
	k := testKey("k", "value")
	if err := s.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.c.HSet(t.Context(), s.keysKey, "bad", "{}").Err(); err != nil {
		t.Fatal(err)
	}
	forgetCopies(t, s)
	copyKey := s.copyKey(policy.KeyHashText(k.Hash))
	var refuse atomic.Bool
	refuse.Store(true)
	s.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
		if refuse.Load() && isCmd(cmd, "del", copyKey) {
			return errors.New("refused")
		}
		return nil
	}})
	if ok, err := s.DeleteKey("k"); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	refuse.Store(false)
	s.keyCopies()
	noCopy(t, s, k.Hash, "after the delete and a heartbeat")
	if !s.copiesMade.Load() {
		t.Error("the copy of every key did not get past a record that does not decode")
	}
}

// pageBudget is the context key of the pages of the keys hash a call of
// TestCopyAllGoesOn may read.
type pageBudget struct{}

// TestCopyAllGoesOn: the first start's copy of every key goes on, call
// after call, from the page where the last one ran out of time. Each call
// used to start again from the first page: a cluster whose keys took
// longer to copy than an admin call's time never had them all copied.
func TestCopyAllGoesOn(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := openCluster(t, c, Options{})
	var keys []*policy.APIKey
	for i := range 2500 {
		keys = append(keys, testKey(fmt.Sprint("old-", i), fmt.Sprint("old-", i)))
	}
	if err := s.ImportKeys(keys); err != nil {
		t.Fatal(err)
	}
	// A call reads as many pages as its budget says (the heartbeats'
	// none): the rest run out of time.
	s.c.AddHook(&cmdHook{before: func(ctx context.Context, cmd goredis.Cmder) error {
		if isCmd(cmd, "hscan", s.keysKey) {
			if b, _ := ctx.Value(pageBudget{}).(*atomic.Int32); b == nil || b.Add(-1) < 0 {
				return context.DeadlineExceeded
			}
		}
		return nil
	}})
	ctx := t.Context()
	for _, k := range keys {
		if err := s.c.Del(ctx, s.copyKey(policy.KeyHashText(k.Hash))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	forgetCopies(t, s)
	calls := 0
	for ; calls < 10 && !s.copiesMade.Load(); calls++ {
		var budget atomic.Int32
		budget.Store(1)
		s.copyAll(context.WithValue(ctx, pageBudget{}, &budget))
	}
	if !s.copiesMade.Load() {
		t.Fatalf("%d calls of a page each did not copy 2500 keys", calls)
	}
	for _, i := range []int{0, 999, 1000, 2499} {
		if got, err := s.lookupKey(keys[i].Hash); err != nil || got == nil || got.ID != keys[i].ID {
			t.Errorf("key %d after %d calls: %+v, %v", i, calls, got, err)
		}
	}
}

// TestKeyCopyRepairAnnounced: a copy that a change failed to make, made by
// a heartbeat, is announced, so that a replica that read the copy as it
// was after the change's announcement does not use it for up to
// KeyCacheTTL more. It used to be made unannounced: a deleted key was
// found through the other replica's cache after its copy was gone.
func TestKeyCopyRepairAnnounced(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	a, b := openCluster(t, c, Options{}), openCluster(t, c, Options{})
	k := testKey("k", "value")
	if err := a.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	copyKey := a.copyKey(policy.KeyHashText(k.Hash))
	var refuse atomic.Bool
	refuse.Store(true)
	for _, s := range []*Store{a, b} {
		s.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
			if refuse.Load() && isCmd(cmd, "del", copyKey) {
				return errors.New("refused")
			}
			return nil
		}})
	}
	if got, err := b.LookupKey(k.Hash); err != nil || got == nil {
		t.Fatalf("b before the delete: %+v, %v", got, err)
	}
	gen := b.keys.gen.Load()
	if ok, err := a.DeleteKey("k"); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	waitFor(t, "b to hear the delete", func() bool { return b.keys.gen.Load() > gen })
	if got, err := b.LookupKey(k.Hash); err != nil || got == nil {
		t.Fatalf("b after the delete, its copy left: %+v, %v (the copy as it is)", got, err)
	}
	gen = b.keys.gen.Load()
	refuse.Store(false)
	a.keyCopies()
	waitFor(t, "b to hear the copy made", func() bool { return b.keys.gen.Load() > gen })
	if got, err := b.LookupKey(k.Hash); got != nil || err != nil {
		t.Errorf("b after the copy was made: %+v, %v; want none", got, err)
	}
}

// TestKeyCopiesAcrossLayouts: the run-time keys carry over from one layout
// to the other and back (README): a key deleted, or made, while the
// cluster ran with layout=one-slot is seen as such by a store that spreads
// it again. layout=one-slot used to leave the copies as they were: the
// deleted key was found by its copy for good, the new one never.
func TestKeyCopiesAcrossLayouts(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	a := openCluster(t, c, Options{})
	k, k2 := testKey("k", "value"), testKey("k2", "value-2")
	if err := a.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	a.Close()
	o, err := Open(c.URL()+"&layout=one-slot", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := o.DeleteKey("k"); !ok || err != nil {
		t.Fatalf("delete on one slot: %v, %v", ok, err)
	}
	if err := o.SaveKey(k2, nil); err != nil {
		t.Fatal(err)
	}
	o.Close()
	b := openCluster(t, c, Options{})
	noCopy(t, b, k.Hash, "a key deleted on one slot")
	if n, err := b.c.SCard(t.Context(), b.copiesKey).Result(); n != 0 || err != nil {
		t.Errorf("copies left to make: %d, %v; want none", n, err)
	}
	if got, err := b.lookupKey(k2.Hash); err != nil || got == nil || got.ID != "k2" {
		t.Errorf("a key made on one slot: %+v, %v; want k2", got, err)
	}
}

// TestKeyCopyRepairAnnouncedOutOfTime: copies a heartbeat made are
// announced even when another copy then took the rest of its time. The
// announcement used that spent time, and failed.
func TestKeyCopyRepairAnnouncedOutOfTime(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	a, b := openCluster(t, c, Options{AdminTimeout: 300 * time.Millisecond}), openCluster(t, c, Options{})
	k1, k2 := testKey("k1", "value-1"), testKey("k2", "value-2")
	for _, k := range []*policy.APIKey{k1, k2} {
		if err := a.SaveKey(k, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := b.LookupKey(k.Hash); err != nil || got == nil {
			t.Fatalf("b before the delete: %+v, %v", got, err)
		}
	}
	copy1, copy2 := a.copyKey(policy.KeyHashText(k1.Hash)), a.copyKey(policy.KeyHashText(k2.Hash))
	// b never makes them; a makes k1's once allowed, then k2's takes the
	// rest of its time.
	var refuse atomic.Bool
	refuse.Store(true)
	b.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
		if isCmd(cmd, "del", copy1) || isCmd(cmd, "del", copy2) {
			return errors.New("refused")
		}
		return nil
	}})
	a.c.AddHook(&cmdHook{
		before: func(ctx context.Context, cmd goredis.Cmder) error {
			if refuse.Load() && (isCmd(cmd, "del", copy1) || isCmd(cmd, "del", copy2)) {
				return errors.New("refused")
			}
			if args := cmd.Args(); cmd.Name() == "evalsha" && len(args) > 5 && args[1] == any(copiedScript.Hash()) && args[5] == any("k2") {
				<-ctx.Done()
			}
			return nil
		},
		after: func(cmd goredis.Cmder) {
			if c, ok := cmd.(*goredis.StringSliceCmd); ok && isCmd(cmd, "smembers", a.copiesKey) {
				v := c.Val()
				slices.SortFunc(v, strings.Compare) // k1's first
				c.SetVal(v)
			}
		},
	})
	gen := b.keys.gen.Load()
	for _, id := range []string{"k1", "k2"} {
		if ok, err := a.DeleteKey(id); !ok || err != nil {
			t.Fatalf("delete %s: %v, %v", id, ok, err)
		}
	}
	waitFor(t, "b to hear the deletes", func() bool { return b.keys.gen.Load() >= gen+2 })
	if got, err := b.LookupKey(k1.Hash); err != nil || got == nil {
		t.Fatalf("b after the delete, its copy left: %+v, %v (the copy as it is)", got, err)
	}
	gen = b.keys.gen.Load()
	refuse.Store(false)
	a.keyCopies()
	waitFor(t, "b to hear k1's copy made", func() bool { return b.keys.gen.Load() > gen })
	if got, err := b.LookupKey(k1.Hash); got != nil || err != nil {
		t.Errorf("b after k1's copy was made: %+v, %v; want none", got, err)
	}
}

// TestKeyChangeAnnouncedOutOfTime: a change is announced even when the
// copies it makes (its own, and those others left) take the rest of its
// time. The announcement used that spent time, and failed: the other
// replicas used what they had cached for up to KeyCacheTTL.
func TestKeyChangeAnnouncedOutOfTime(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	a, b := openCluster(t, c, Options{AdminTimeout: 300 * time.Millisecond}), openCluster(t, c, Options{})
	k := testKey("k", "value")
	if err := a.SaveKey(k, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LookupKey(k.Hash); err != nil || got == nil {
		t.Fatalf("b before the delete: %+v, %v", got, err)
	}
	// A copy left to make that takes the rest of a's time, after k's,
	// and that b fails at once (b makes no copy, announces none).
	if err := a.c.SAdd(t.Context(), a.copiesKey, "slow\x00").Err(); err != nil {
		t.Fatal(err)
	}
	copyKey := a.copyKey(policy.KeyHashText(k.Hash))
	isSlow := func(cmd goredis.Cmder) bool {
		args := cmd.Args()
		return cmd.Name() == "evalsha" && len(args) > 5 && args[1] == any(copiedScript.Hash()) && args[5] == any("slow")
	}
	b.c.AddHook(&cmdHook{before: func(_ context.Context, cmd goredis.Cmder) error {
		if isSlow(cmd) || isCmd(cmd, "del", copyKey) {
			return errors.New("refused")
		}
		return nil
	}})
	a.c.AddHook(&cmdHook{
		before: func(ctx context.Context, cmd goredis.Cmder) error {
			if isSlow(cmd) {
				<-ctx.Done()
			}
			return nil
		},
		after: func(cmd goredis.Cmder) {
			if c, ok := cmd.(*goredis.StringSliceCmd); ok && isCmd(cmd, "smembers", a.copiesKey) {
				v := c.Val()
				slices.SortFunc(v, strings.Compare) // k's first
				c.SetVal(v)
			}
		},
	})
	gen := b.keys.gen.Load()
	if ok, err := a.DeleteKey("k"); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	waitFor(t, "b to hear the delete", func() bool { return b.keys.gen.Load() > gen })
	if got, err := b.LookupKey(k.Hash); got != nil || err != nil {
		t.Errorf("b after the delete: %+v, %v; want none", got, err)
	}
}

// TestOneSlotNotesNoCopies: a cluster that only ever ran with
// layout=one-slot, where no key has a copy, keeps no set of copies to make
// (it would grow with every key made).
func TestOneSlotNotesNoCopies(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	o, err := Open(c.URL()+"&layout=one-slot", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for i := range 10 {
		if err := o.SaveKey(testKey(fmt.Sprint("k-", i), fmt.Sprint("value-", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := o.DeleteKey("k-0"); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	if n, err := o.c.SCard(t.Context(), o.copiesKey).Result(); n != 0 || err != nil {
		t.Errorf("copies to make: %d, %v; want none", n, err)
	}
}
