package redis

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestKeyCopies: on a cluster, a key saved through one replica is found
// through another by its lookup copy, on its hash's slot (the copies of 30
// keys are on every primary); a disabled, re-hashed or deleted key is seen
// as such at once; a copy that was lost is made again by a heartbeat.
func TestKeyCopies(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	a, b := openCluster(t, c, Options{}), openCluster(t, c, Options{})
	nodes := map[string]bool{}
	for i := range 30 {
		k := &policy.APIKey{ID: fmt.Sprint("k-", i), Customer: "acme", Hash: sha256.Sum256(fmt.Appendf(nil, "value-%d", i)), Plans: []string{"pro"}, Enabled: true, Created: t0}
		if err := a.SaveKey(k, nil); err != nil {
			t.Fatal(err)
		}
		n, err := c.SlotOwner(a.copyKey(policy.KeyHashText(k.Hash)))
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Addr()] = true
		if got, err := b.LookupKey(k.Hash); err != nil || got == nil || got.ID != k.ID {
			t.Fatalf("key %d: the other replica found %+v, %v", i, got, err)
		}
	}
	if len(nodes) != 3 {
		t.Errorf("the copies of 30 keys are on %d primaries, want 3", len(nodes))
	}
	// A lookup reads the copy, not the keys hash on the prefix's slot.
	k2, _ := a.RuntimeKey("k-2")
	if err := a.c.Del(t.Context(), a.copyKey(policy.KeyHashText(k2.Hash))).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := a.lookupKey(k2.Hash); got != nil || err != nil {
		t.Fatalf("a lookup without the copy found %+v, %v: it reads the prefix's slot", got, err)
	}
	// Changes through a, seen through b at once (the announcement clears
	// b's cache after the copy is made).
	k, _ := a.RuntimeKey("k-0")
	off := *k
	off.Enabled = false
	if err := a.SaveKey(&off, k); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see k-0 disabled", func() bool {
		got, err := b.LookupKey(k.Hash)
		return err == nil && got != nil && !got.Enabled
	})
	moved := off
	moved.Hash = sha256.Sum256([]byte("rotated"))
	if err := a.SaveKey(&moved, &off); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see k-0 under its new hash only", func() bool {
		old, err1 := b.LookupKey(k.Hash)
		now, err2 := b.LookupKey(moved.Hash)
		return err1 == nil && err2 == nil && old == nil && now != nil && now.ID == "k-0"
	})
	if ok, err := a.DeleteKey("k-0"); !ok || err != nil {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	waitFor(t, "b to see k-0 gone", func() bool {
		got, err := b.LookupKey(moved.Hash)
		return err == nil && got == nil
	})
	if n, _ := a.c.Exists(t.Context(), a.copyKey(policy.KeyHashText(moved.Hash)), a.copyKey(policy.KeyHashText(k.Hash))).Result(); n != 0 {
		t.Errorf("a deleted key left %d copies", n)
	}
	// A copy lost after its change (the process stopped between the two):
	// its entry stays, and a heartbeat makes it.
	k1, _ := a.RuntimeKey("k-1")
	ctx := t.Context()
	if err := a.c.SAdd(ctx, a.copiesKey, "k-1\x00").Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Del(ctx, a.copyKey(policy.KeyHashText(k1.Hash))).Err(); err != nil {
		t.Fatal(err)
	}
	b.keyCopies()
	if got, err := a.lookupKey(k1.Hash); err != nil || got == nil {
		t.Fatalf("the heartbeat did not make the lost copy: %+v, %v", got, err)
	}
	if n, _ := a.c.SCard(ctx, a.copiesKey).Result(); n != 0 {
		t.Errorf("%d copies left to make, want none", n)
	}
}

// TestKeyCopiesMadeOnce: keys saved without copies (before this version,
// or on one Redis with the prefix of the cluster) get theirs when the first
// store on the cluster opens.
func TestKeyCopiesMadeOnce(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	a := openCluster(t, c, Options{})
	var keys []*policy.APIKey
	for i := range 2500 {
		keys = append(keys, &policy.APIKey{ID: fmt.Sprint("old-", i), Customer: "acme", Hash: sha256.Sum256(fmt.Appendf(nil, "old-%d", i)), Plans: []string{"pro"}, Enabled: true, Created: t0})
	}
	if err := a.ImportKeys(keys); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// Take the copies away, as if the keys predated them.
	for _, k := range keys {
		if err := a.c.Del(ctx, a.copyKey(policy.KeyHashText(k.Hash))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.c.Del(ctx, a.opts.Prefix+copiesMadeKey).Err(); err != nil {
		t.Fatal(err)
	}
	b := openCluster(t, c, Options{})
	for _, i := range []int{0, 999, 1000, 2499} {
		if got, err := b.lookupKey(keys[i].Hash); err != nil || got == nil || got.ID != keys[i].ID {
			t.Fatalf("key %d after the first open: %+v, %v", i, got, err)
		}
	}
	if got, err := b.LookupKey(sha256.Sum256([]byte("no such key"))); got != nil || err != nil {
		t.Errorf("an unknown key: %+v, %v", got, err)
	}
}
