package redis

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
)

// KeyCacheTTL bounds how long the Store's key cache uses an answer. Changes
// made through this Store (SaveKey, DeleteKey, ImportKeys) are seen on the
// next lookup, and so are other replicas' when their announcement arrives;
// a missed announcement is made up for after at most this long.
const KeyCacheTTL = 10 * time.Second

// keyCache answers LookupKey from LRU caches in front of the keys in Redis,
// one for keys found and one, the negative cache, for hashes that are no
// key, so that a flood of requests with unknown keys costs a cache lookup
// each, not a round trip. Errors are not cached; while Redis fails, an
// expired answer (of the current generation) is used rather than none.
//
// The caches are sharded by the hash's first byte (the hash is a SHA-256,
// so shards fill evenly), each shard behind its own lock, so that keyed
// requests do not queue on one mutex.
type keyCache struct {
	store policy.Keys
	now   func() time.Time
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
	return e.gen == gen && !now.Before(e.at) && now.Sub(e.at) < KeyCacheTTL
}

var _ policy.Keys = (*keyCache)(nil)

// newKeyCache returns a cache in front of store's lookups, on the clock now.
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
		// (no change made or announced since).
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

// invalidate forgets every cached answer. The Store calls it after each of
// its changes to the run-time keys and on each announcement of another
// replica's, so that the next lookup sees the change.
func (c *keyCache) invalidate() {
	c.gen.Add(1)
	for i := range c.shards {
		c.shards[i].found.Purge()
		c.shards[i].missing.Purge()
	}
}

// keysFunc is a function that looks keys up, as a policy.Keys.
type keysFunc func(hash [sha256.Size]byte) (*policy.APIKey, error)

// LookupKey implements policy.Keys.
func (f keysFunc) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) { return f(hash) }
