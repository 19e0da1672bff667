package server

import (
	"crypto/sha256"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/policy"
)

// Sizes of the key cache. Each of keyCacheShards shards holds up to
// keyCacheSize/keyCacheShards keys found and as many hashes not found, so
// the cache holds at most 2 × keyCacheSize entries of about 150 bytes
// (about 5 MB).
const (
	keyCacheShards = 16
	keyCacheSize   = 16 << 10
	// keyCacheTTL bounds how long a cached answer is used: a change made
	// by another replica sharing the store is seen after at most this
	// long. Changes made through this process's admin API are seen on the
	// next request.
	keyCacheTTL = 10 * time.Second
)

// keyCache is the policy.Keys the decisions use: it answers from LRU caches
// in front of the store's run-time keys, one for keys found and one, the
// negative cache, for hashes that are no key, so that a flood of requests
// with unknown keys costs a cache lookup each, not a store lookup. Store
// errors are not cached.
//
// The caches are sharded by the hash's first byte (the hash is a SHA-256,
// so shards fill evenly), each shard behind its own lock, so that keyed
// requests do not queue on one mutex.
type keyCache struct {
	store policy.Keys
	now   func() time.Time
	// gen counts invalidations; a lookup that raced with one does not
	// keep what it read (see lookup).
	gen    atomic.Uint64
	shards [keyCacheShards]keyShard
}

type keyShard struct {
	found   *lru.Cache[[sha256.Size]byte, cachedKey]
	missing *lru.Cache[[sha256.Size]byte, time.Time]
}

// cachedKey is a key found and when it was read.
type cachedKey struct {
	key *policy.APIKey
	at  time.Time
}

var _ policy.Keys = (*keyCache)(nil)

func newKeyCache(store policy.Keys, now func() time.Time) *keyCache {
	c := &keyCache{store: store, now: now}
	for i := range c.shards {
		// lru.New fails only for a size ≤ 0.
		c.shards[i].found, _ = lru.New[[sha256.Size]byte, cachedKey](keyCacheSize / keyCacheShards)
		c.shards[i].missing, _ = lru.New[[sha256.Size]byte, time.Time](keyCacheSize / keyCacheShards)
	}
	return c
}

// LookupKey implements policy.Keys.
func (c *keyCache) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	sh := &c.shards[hash[0]%keyCacheShards]
	now := c.now()
	if e, ok := sh.found.Get(hash); ok && now.Sub(e.at) < keyCacheTTL && !now.Before(e.at) {
		return e.key, nil
	}
	if at, ok := sh.missing.Get(hash); ok && now.Sub(at) < keyCacheTTL && !now.Before(at) {
		return nil, nil
	}
	gen := c.gen.Load()
	k, err := c.store.LookupKey(hash)
	if err != nil {
		return nil, err
	}
	if k != nil {
		sh.found.Add(hash, cachedKey{key: k, at: now})
		sh.missing.Remove(hash)
	} else {
		sh.missing.Add(hash, now)
		sh.found.Remove(hash)
	}
	// An invalidation that ran since the store was read may have purged
	// the caches before the answer went in: drop it, so that a change is
	// never hidden by an answer read before it.
	if c.gen.Load() != gen {
		sh.found.Remove(hash)
		sh.missing.Remove(hash)
	}
	return k, nil
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
