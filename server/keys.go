package server

import (
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/tollgate/tollgate/policy"
)

// Sizes of the key cache: it holds at most keyCacheSize entries (of about
// 150 bytes), half of them keys found and half hashes that are no key,
// spread over keyCacheShards shards.
const (
	keyCacheShards = 16
	keyCacheSize   = 16 << 10
	// keyCacheTTL bounds how long a cached answer is used. Changes made
	// through this process's admin API are seen on the next request, and
	// so are other replicas' when the store announces them (Redis); a
	// missed announcement is made up for after at most this long.
	keyCacheTTL = 10 * time.Second
)

// keyCache is the policy.Keys the decisions use: it answers from LRU caches
// in front of the store's run-time keys, one for keys found and one, the
// negative cache, for hashes that are no key, so that a flood of requests
// with unknown keys costs a cache lookup each, not a store lookup. Store
// errors are not cached; while the store fails, an expired answer (of the
// current generation) is used rather than none.
//
// The caches are sharded by the hash's first byte (the hash is a SHA-256,
// so shards fill evenly), each shard behind its own lock, so that keyed
// requests do not queue on one mutex.
type keyCache struct {
	store policy.Keys
	now   func() time.Time
	// direct: the store answers from its own memory (keysInMemory), so
	// lookups go straight to it. A cache in front would only add a second
	// copy of the keys in use and, with many customers, LRU churn on every
	// request: at 1,000,000 customers the cache cost 9% of the CPU.
	direct bool
	// gen counts invalidations. Each answer is cached with the generation
	// read before the store was asked, and used only while that is still
	// the generation: an answer read before a change is never used after
	// it, even when it went into the cache after the invalidation.
	gen    atomic.Uint64
	shards [keyCacheShards]keyShard
	// flights joins the lookups of one hash in one generation: a new
	// key's first requests, arriving together, make one store call, not
	// one each.
	flights singleflight.Group
}

type keyShard struct {
	found   *lru.Cache[[sha256.Size]byte, cached]
	missing *lru.Cache[[sha256.Size]byte, cached]
}

// cached is a store's answer (a key, or nil for none), when it was read and
// the cache's generation then.
type cached struct {
	key *policy.APIKey
	at  time.Time
	gen uint64
}

// fresh reports whether e may be used at now in generation gen.
func (e cached) fresh(now time.Time, gen uint64) bool {
	return e.gen == gen && !now.Before(e.at) && now.Sub(e.at) < keyCacheTTL
}

var _ policy.Keys = (*keyCache)(nil)

func newKeyCache(store policy.Keys, now func() time.Time) *keyCache {
	c := &keyCache{store: store, now: now}
	for i := range c.shards {
		// lru.New fails only for a size ≤ 0.
		c.shards[i].found, _ = lru.New[[sha256.Size]byte, cached](keyCacheSize / 2 / keyCacheShards)
		c.shards[i].missing, _ = lru.New[[sha256.Size]byte, cached](keyCacheSize / 2 / keyCacheShards)
	}
	return c
}

// LookupKey implements policy.Keys.
func (c *keyCache) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	if c.direct {
		return c.store.LookupKey(hash)
	}
	sh := &c.shards[hash[0]%keyCacheShards]
	now, gen := c.now(), c.gen.Load()
	found, inFound := sh.found.Get(hash)
	if inFound && found.fresh(now, gen) {
		return found.key, nil
	}
	missing, inMissing := sh.missing.Get(hash)
	if inMissing && missing.fresh(now, gen) {
		return nil, nil
	}
	k, err := c.lookup(hash, gen)
	if err != nil {
		// Stale if error: an answer of this generation whose TTL ran
		// out is still the best one there is while the store is away
		// (no change made through this process's admin API since).
		switch {
		case inFound && found.gen == gen:
			return found.key, nil
		case inMissing && missing.gen == gen:
			return nil, nil
		}
		return nil, err
	}
	e := cached{key: k, at: now, gen: gen}
	if k != nil {
		sh.found.Add(hash, e)
		sh.missing.Remove(hash)
	} else {
		sh.missing.Add(hash, e)
		sh.found.Remove(hash)
	}
	return k, nil
}

// lookup asks the store for the key with the hash, once for the callers
// that ask at the same time in the same generation (a caller of a later
// generation, after a change, never gets an answer read before it).
func (c *keyCache) lookup(hash [sha256.Size]byte, gen uint64) (*policy.APIKey, error) {
	var id [sha256.Size + 8]byte
	copy(id[:], hash[:])
	binary.LittleEndian.PutUint64(id[sha256.Size:], gen)
	v, err, _ := c.flights.Do(string(id[:]), func() (any, error) { return c.store.LookupKey(hash) })
	k, _ := v.(*policy.APIKey)
	return k, err
}

// keysInMemory reports whether the store looks keys up in its own memory
// (the memory and file stores), not over the network.
func keysInMemory(store policy.Keys) bool {
	m, ok := store.(interface{ KeysInMemory() bool })
	return ok && m.KeysInMemory()
}

// invalidate forgets every cached answer. The admin API calls it after each
// change to the run-time keys, so that the next request sees the change.
func (c *keyCache) invalidate() {
	c.gen.Add(1)
	for i := range c.shards {
		c.shards[i].found.Purge()
		c.shards[i].missing.Purge()
	}
}
