package memory

import (
	"testing"

	"github.com/tollgate/tollgate/policy"
)

// TestTableHashCollision puts keys that share one hash: each keeps its own
// value, through puts, sweeps and a freed slot.
func TestTableHashCollision(t *testing.T) {
	tb := newTable[int]()
	a, b, c := policy.Key{Limit: "a"}, policy.Key{Limit: "b"}, policy.Key{Limit: "c"}
	const h = 42
	tb.put(h, a, 1)
	tb.put(h, b, 2)
	tb.put(h, c, 3)
	steps := []struct {
		do   func()
		want map[policy.Key]int // absent keys: not found
	}{
		{func() {}, map[policy.Key]int{a: 1, b: 2, c: 3}},
		{func() { tb.put(h, b, 20) }, map[policy.Key]int{a: 1, b: 20, c: 3}},
		// a leaves the slot; b waits in overflow until its next put.
		{func() { tb.sweep(func(v int) bool { return v == 1 }) }, map[policy.Key]int{b: 20, c: 3}},
		{func() { tb.put(h, b, 21) }, map[policy.Key]int{b: 21, c: 3}},
		// b now holds the slot; dropping it must not bring back a stale b.
		{func() { tb.sweep(func(v int) bool { return v == 21 }) }, map[policy.Key]int{c: 3}},
		{func() { tb.put(h, a, 5) }, map[policy.Key]int{a: 5, c: 3}},
	}
	for i, s := range steps {
		s.do()
		for _, k := range []policy.Key{a, b, c} {
			v, ok := tb.get(h, k)
			want, wantOK := s.want[k]
			if v != want || ok != wantOK {
				t.Errorf("step %d: get(%s): got %d %v, want %d %v", i, k.Limit, v, ok, want, wantOK)
			}
		}
		if tb.len() != len(s.want) {
			t.Errorf("step %d: got len %d, want %d", i, tb.len(), len(s.want))
		}
	}
}
