package redis

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// views keeps each quota counter as Redis last answered it to this replica
// (used and granted), so that a decision made locally knows how much of the
// quota was left when Redis went away (local.go). One entry per counter of a
// current period, kept in maps without pointers (the GC does not walk them),
// by two independent hashes of the key: one picks the slot, the other must
// match, so that two counters would have to agree on 128 bits to share an
// entry.
type views struct {
	seed1, seed2 maphash.Seed
	shards       [viewShards]viewShard
}

const viewShards = 64

type viewShard struct {
	mu   sync.Mutex
	m    map[uint64]view
	next int // the size at which the shard is swept of ended periods
	_    [40]byte
}

// view is one quota counter as last seen.
type view struct {
	check         uint64
	used, granted int64
	end           int64 // the period's end, Unix nanoseconds: dropped after it
}

func newViews() *views {
	v := &views{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	for i := range v.shards {
		v.shards[i].m = map[uint64]view{}
		v.shards[i].next = sweepMin
	}
	return v
}

// sweepMin is the size of a shard before it is first swept.
const sweepMin = 256

// hash returns a key's two hashes.
func (v *views) hash(k policy.Key) (h1, h2 uint64) {
	return maphash.Comparable(v.seed1, k), maphash.Comparable(v.seed2, k)
}

// put records the counter k, whose period ends at end, as used and granted.
func (v *views) put(k policy.Key, used, granted int64, end time.Time, now time.Time) {
	h1, h2 := v.hash(k)
	sh := &v.shards[h1%viewShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.m[h1] = view{check: h2, used: used, granted: granted, end: end.UnixNano()}
	if len(sh.m) >= sh.next {
		n := now.UnixNano()
		for h, e := range sh.m {
			if e.end <= n {
				delete(sh.m, h)
			}
		}
		sh.next = max(2*len(sh.m), sweepMin)
	}
}

// get returns the counter k as last seen; ok is false when it was never
// seen (or its entry went with its period).
func (v *views) get(k policy.Key) (used, granted int64, ok bool) {
	h1, h2 := v.hash(k)
	sh := &v.shards[h1%viewShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[h1]
	if !ok || e.check != h2 {
		return 0, 0, false
	}
	return e.used, e.granted, true
}

// add adds n to the counter k's used, when it is held: what this replica
// gave Redis itself (reconcile).
func (v *views) add(k policy.Key, n int64) {
	h1, h2 := v.hash(k)
	sh := &v.shards[h1%viewShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[h1]; ok && e.check == h2 {
		e.used += n
		sh.m[h1] = e
	}
}
