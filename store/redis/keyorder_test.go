package redis

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
)

// pageAll reads every page of one of the orders.
func pageAll(t *testing.T, page func(after *policy.APIKey) ([]*policy.APIKey, error), size int) []string {
	t.Helper()
	var ids []string
	var last *policy.APIKey
	for {
		p, err := page(last)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range p {
			ids = append(ids, k.Customer+"/"+k.ID)
		}
		if len(p) < size {
			return ids
		}
		last = p[len(p)-1]
	}
}

// TestKeysAfterOrders: the id and customer orders follow saves (a change of
// customer too), imports and deletes; keys written without the orders (an
// older version) are indexed on the first page; a member left without its
// record is skipped and removed.
func TestKeysAfterOrders(t *testing.T) {
	s, _ := open(t, false)
	ctx := context.Background()
	key := func(id, customer string) *policy.APIKey {
		return &policy.APIKey{ID: id, Customer: customer, Hash: sha256.Sum256([]byte(id)), Plans: []string{"pro"}, Enabled: true, Created: t0}
	}
	for i := range 9 {
		if err := s.SaveKey(key(fmt.Sprintf("k%d", i), fmt.Sprintf("c%d", 8-i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ImportKeys([]*policy.APIKey{key("k9", "c0"), key("k10", "c0")}); err != nil {
		t.Fatal(err)
	}
	old, _ := s.RuntimeKey("k4")
	if err := s.SaveKey(key("k4", "zz"), old); err != nil { // another customer
		t.Fatal(err)
	}
	s.DeleteKey("k2")
	// A key of an older version: in the hash only.
	legacy := key("k11", "c5")
	rec := `{"id":"k11","customer":"c5","hash":"` + policy.KeyHashText(legacy.Hash) + `","plans":["pro"],"enabled":true,"created":"2026-11-21T12:00:00Z"}`
	s.c.HSet(ctx, s.keysKey, "k11", rec)
	// A member without a record.
	s.c.ZAdd(ctx, s.keyIDsKey, goredis.Z{Member: "k05"})
	s.c.ZAdd(ctx, s.keyCustomersKey, goredis.Z{Member: "c4\x00k05"})

	byID := pageAll(t, func(after *policy.APIKey) ([]*policy.APIKey, error) {
		a := ""
		if after != nil {
			a = after.ID
		}
		return s.KeysAfter(ctx, a, 3)
	}, 3)
	want := []string{"c8/k0", "c7/k1", "c0/k10", "c5/k11", "c5/k3", "zz/k4", "c3/k5", "c2/k6", "c1/k7", "c0/k8", "c0/k9"}
	if !slices.Equal(byID, want) {
		t.Fatalf("by id: got %v, want %v", byID, want)
	}
	byCustomer := pageAll(t, func(after *policy.APIKey) ([]*policy.APIKey, error) {
		if after == nil {
			return s.CustomerKeysAfter(ctx, "", "", 2)
		}
		return s.CustomerKeysAfter(ctx, after.Customer, after.ID, 2)
	}, 2)
	want = []string{"c0/k10", "c0/k8", "c0/k9", "c1/k7", "c2/k6", "c3/k5", "c5/k11", "c5/k3", "c7/k1", "c8/k0", "zz/k4"}
	if !slices.Equal(byCustomer, want) {
		t.Fatalf("by customer: got %v, want %v", byCustomer, want)
	}
	if n := s.c.ZCard(ctx, s.keyIDsKey).Val(); n != 11 {
		t.Fatalf("the id order holds %d members, want 11 (the stale one removed)", n)
	}
	// "\x7f" skips the rest of a customer.
	p, err := s.CustomerKeysAfter(ctx, "c0", "\x7f", 1)
	if err != nil || len(p) != 1 || p[0].ID != "k7" {
		t.Fatalf("after c0: got %v, %v, want k7", p, err)
	}
}

// TestCustomerScanIndexesLegacyKeys: a key written by a replica of an older
// version (in the hash only) is found by a scan of its customer's keys that
// starts in the middle of the order, before any whole listing has run: a
// grant or a ?customer= listing during a rolling upgrade must see it.
func TestCustomerScanIndexesLegacyKeys(t *testing.T) {
	s, _ := open(t, false)
	ctx := context.Background()
	for i, c := range []string{"a", "b", "c"} {
		k := &policy.APIKey{ID: fmt.Sprintf("k%d", i), Customer: c, Hash: sha256.Sum256([]byte(c)), Plans: []string{"pro"}, Enabled: true, Created: t0}
		if err := s.SaveKey(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	legacy := &policy.APIKey{ID: "old", Customer: "b", Hash: sha256.Sum256([]byte("old"))}
	rec := `{"id":"old","customer":"b","hash":"` + policy.KeyHashText(legacy.Hash) + `","plans":["pro"],"enabled":true,"created":"2026-11-21T12:00:00Z"}`
	s.c.HSet(ctx, s.keysKey, "old", rec)
	p, err := s.CustomerKeysAfter(ctx, "b", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range p {
		got = append(got, k.Customer+"/"+k.ID)
	}
	if want := []string{"b/k1", "b/old", "c/k2"}; !slices.Equal(got, want) {
		t.Fatalf("from customer b: got %v, want %v", got, want)
	}
}
