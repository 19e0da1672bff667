package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policy"
)

// TestKeysAfterPages: after random creations, replacements (same and other
// customer) and deletions, paging by id and by customer visits every key
// once, in order, and nothing else.
func TestKeysAfterPages(t *testing.T) {
	ctx := context.Background()
	s := New()
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]*policy.APIKey{}
	for step := range 3000 {
		i := rng.IntN(400)
		k := testKey(i)
		k.Customer = fmt.Sprintf("cus-%d", rng.IntN(9))
		switch op := rng.IntN(10); {
		case op < 2:
			s.DeleteKey(k.ID)
			delete(want, k.ID)
		case op < 4 && want[k.ID] != nil:
			k.Customer = want[k.ID].Customer // a change that keeps the customer
			k.Name = fmt.Sprintf("renamed %d", step)
			fallthrough
		default:
			s.PutKey(k)
			want[k.ID] = k
		}
		if step%250 != 0 {
			continue
		}
		ids := slices.Sorted(func(yield func(string) bool) {
			for id := range want {
				if !yield(id) {
					return
				}
			}
		})
		var got []string
		for after := ""; ; {
			page, _ := s.KeysAfter(ctx, after, 7)
			for _, k := range page {
				if !sameKey(k, want[k.ID]) {
					t.Fatalf("step %d: got %+v, want %+v", step, k, want[k.ID])
				}
				got = append(got, k.ID)
			}
			if len(page) < 7 {
				break
			}
			after = page[len(page)-1].ID
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("step %d: by id: got %v, want %v", step, got, ids)
		}
		byCustomer := slices.Clone(ids)
		slices.SortFunc(byCustomer, func(a, b string) int {
			return strings.Compare(want[a].Customer+"\x00"+a, want[b].Customer+"\x00"+b)
		})
		got = got[:0]
		for c, id := "", ""; ; {
			page, _ := s.CustomerKeysAfter(ctx, c, id, 5)
			for _, k := range page {
				got = append(got, k.ID)
			}
			if len(page) < 5 {
				break
			}
			c, id = page[len(page)-1].Customer, page[len(page)-1].ID
		}
		if !slices.Equal(got, byCustomer) {
			t.Fatalf("step %d: by customer: got %v, want %v", step, got, byCustomer)
		}
		// "\x7f" skips the rest of a customer.
		page, _ := s.CustomerKeysAfter(ctx, "cus-3", "\x7f", 1)
		if len(page) == 1 && page[0].Customer <= "cus-3" {
			t.Fatalf("step %d: after cus-3: got %s", step, page[0].Customer)
		}
	}
}

// TestKeysAfterAllocations: a page costs the keys it returns, not the keys
// the store holds (GET /v1/keys answered 69 MB in one piece at 200,000
// keys).
func TestKeysAfterAllocations(t *testing.T) {
	allocs := func(n int) float64 {
		s := New()
		for i := range n {
			s.PutKey(testKey(i))
		}
		s.KeysAfter(context.Background(), "", 1) // merges what was added
		return testing.AllocsPerRun(20, func() { s.KeysAfter(context.Background(), "key-5", 10) })
	}
	small, large := allocs(100), allocs(20_000)
	if large != small {
		t.Fatalf("a page of 10 made %v allocations at 20,000 keys, %v at 100: want the same", large, small)
	}
}
