package memory

import "github.com/tollgate/tollgate/policy"

// table maps state keys to values by their 64-bit hash, which the store
// computes once per key and uses for the shard too: a lookup and an update
// then hash an integer, not the key's strings again. Each entry keeps its
// key, so a lookup is exact; a key whose hash another key already holds goes
// to overflow (with a 64-bit hash, practically never).
type table[V any] struct {
	m        map[uint64]entry[V]
	overflow map[policy.Key]V
}

type entry[V any] struct {
	key policy.Key
	v   V
}

func newTable[V any]() table[V] {
	return table[V]{m: make(map[uint64]entry[V]), overflow: make(map[policy.Key]V)}
}

// get returns the value of k, whose hash is h.
func (t *table[V]) get(h uint64, k policy.Key) (V, bool) {
	if e, ok := t.m[h]; ok && e.key == k {
		return e.v, true
	}
	if len(t.overflow) > 0 {
		v, ok := t.overflow[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// put sets the value of k, whose hash is h.
func (t *table[V]) put(h uint64, k policy.Key, v V) {
	if e, ok := t.m[h]; ok && e.key != k {
		t.overflow[k] = v
		return
	}
	t.m[h] = entry[V]{key: k, v: v}
	if len(t.overflow) > 0 {
		delete(t.overflow, k) // it may have waited there for the slot
	}
}

// remove deletes the entry of k, whose hash is h.
func (t *table[V]) remove(h uint64, k policy.Key) {
	if e, ok := t.m[h]; ok && e.key == k {
		delete(t.m, h)
		return
	}
	delete(t.overflow, k)
}

// len returns the number of entries.
func (t *table[V]) len() int { return len(t.m) + len(t.overflow) }

// sweep deletes the entries for which drop reports true. A key in overflow
// whose slot frees up stays in overflow, where get still finds it, until a
// put moves it to the slot.
func (t *table[V]) sweep(drop func(V) bool) {
	for h, e := range t.m {
		if drop(e.v) {
			delete(t.m, h)
		}
	}
	for k, v := range t.overflow {
		if drop(v) {
			delete(t.overflow, k)
		}
	}
}

// each calls f with every entry.
func (t *table[V]) each(f func(policy.Key, V)) {
	for _, e := range t.m {
		f(e.key, e.v)
	}
	for k, v := range t.overflow {
		f(k, v)
	}
}
