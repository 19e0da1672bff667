package redis

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// TestViews: a counter's last answer is kept by its whole key, added to by
// pushes, and dropped once its period has ended and its shard grows.
func TestViews(t *testing.T) {
	v := newViews()
	k := policy.Key{Limit: "q", Subject: "acme", Period: t0.Unix()}
	if _, _, ok := v.get(k); ok {
		t.Fatal("a counter never seen has a view")
	}
	v.put(k, 7, 2, t0.Add(time.Hour), t0)
	v.add(k, 3)
	other := k
	other.Subject = "acme2"
	v.add(other, 5) // not held: nothing to add to
	if u, g, ok := v.get(k); !ok || u != 10 || g != 2 {
		t.Fatalf("got %d, %d, %v, want 10 used and 2 granted", u, g, ok)
	}
	if _, _, ok := v.get(other); ok {
		t.Fatal("another customer's counter has the view")
	}
	// Fill every shard past its first sweep, after the period ended.
	later := t0.Add(2 * time.Hour)
	for i := range viewShards * sweepMin * 2 {
		v.put(policy.Key{Limit: "q", Subject: fmt.Sprint("c", i), Period: later.Unix()}, 1, 0, later.Add(time.Hour), later)
	}
	if _, _, ok := v.get(k); ok {
		t.Error("a counter whose period ended is still held after the sweeps")
	}
	if u, _, ok := v.get(policy.Key{Limit: "q", Subject: "c0", Period: later.Unix()}); !ok || u != 1 {
		t.Error("a current counter was swept")
	}
}

// BenchmarkViewsPut: what keeping the last answer costs a decision with a
// quota (one per decision that has one), over 1,000 customers.
func BenchmarkViewsPut(b *testing.B) {
	v := newViews()
	keys := make([]policy.Key, 1000)
	for i := range keys {
		keys[i] = policy.Key{Limit: "plan|pro|quota", Subject: fmt.Sprint("customer-", i), Period: t0.Unix()}
	}
	end := t0.Add(24 * time.Hour)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			v.put(keys[i%len(keys)], int64(i), 0, end, t0)
			i++
		}
	})
}
