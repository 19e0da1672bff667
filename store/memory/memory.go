package memory

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"

	"github.com/tollgate/tollgate/policy"
)

var _ policy.State = (*Store)(nil)

// DefaultShards is the number of shards of a Store made without WithShards.
const DefaultShards = 256

// maxShards bounds WithShards.
const maxShards = 1 << 16

// sweepMin is the number of entries a shard holds before Apply first sweeps
// it. After a sweep, the shard is swept again when it has grown to twice what
// the sweep kept (and at least sweepMin), so sweeping costs O(1) amortized
// per new entry.
const sweepMin = 64

// Store is an in-memory policy.State. The zero Store is not usable; call New.
type Store struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
	// usageRetention is how long a usage-history counter is kept after
	// its day ends.
	usageRetention time.Duration
	// journal is set by WithJournal: changed counters are listed for
	// Changes.
	journal bool
	// maxCounters bounds the WAF rate counters held (WithMaxCounters).
	maxCounters int

	keys keyring
}

// DefaultUsageRetention is how long a Store made without
// WithUsageRetention keeps a day's usage counters after the day ends.
const DefaultUsageRetention = 31 * 24 * time.Hour

// WithUsageRetention sets how long usage-history counters are kept after
// their day ends (at least 0: until the day ends).
func WithUsageRetention(d time.Duration) Option {
	return func(s *Store) { s.usageRetention = max(d, 0) }
}

// shard holds the entries whose key hashes to it, behind its own mutex.
type shard struct {
	mu       sync.Mutex
	buckets  table[bucket]
	counters counters
	quotas   table[quota]
	// slots counts the concurrency slots held per route; an entry goes
	// when its count drops to 0.
	slots table[int64]
	// next is the entry count at which Apply sweeps the shard.
	next int
	// changed lists the keys of the quota and usage counters changed
	// since the last Changes (WithJournal only); each is listed once, by
	// its quota.changed flag.
	changed []policy.Key
	// pad keeps two shards' mutexes off one cache line.
	_ [64]byte
}

// bucket is a stored token bucket with the throttle it was last used with,
// so that a sweep can tell whether it is full.
type bucket struct {
	b policy.Bucket
	t policy.Throttle
}

// quota is a quota or usage-history counter: used requests, and granted
// requests on top of the limit (quota counters), kept until end (Unix
// nanoseconds): a quota counter's period end, a usage counter's day end plus
// the usage retention.
type quota struct {
	used    int64
	granted int64
	end     int64
	// changed: the counter is listed in its shard's changed list.
	changed bool
}

// Option configures a Store.
type Option func(*Store)

// WithShards sets the number of shards, rounded up to a power of two
// between 1 and 65536.
func WithShards(n int) Option {
	return func(s *Store) {
		n = min(max(n, 1), maxShards)
		p := 1 << bits.Len(uint(n-1))
		s.shards = make([]shard, p)
		s.mask = uint64(p - 1)
	}
}

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{seed: maphash.MakeSeed(), usageRetention: DefaultUsageRetention, maxCounters: DefaultMaxCounters}
	s.keys.init()
	WithShards(DefaultShards)(s)
	for _, o := range opts {
		o(s)
	}
	perShard := (s.maxCounters + len(s.shards) - 1) / len(s.shards)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.buckets = newTable[bucket]()
		sh.counters = newCounters(perShard)
		sh.quotas = newTable[quota]()
		sh.slots = newTable[int64]()
		sh.next = sweepMin
	}
	return s
}

// hash returns the hash of k, which picks its shard and its table slot.
// It hashes the two strings with the store's seed and mixes in the rest,
// at a fraction of the cost of maphash.Comparable's generic walk; a
// collision costs a table's overflow lookup, never a wrong answer.
func (s *Store) hash(k policy.Key) uint64 {
	h := maphash.String(s.seed, k.Limit)
	if k.Subject != "" {
		h = mix(h ^ maphash.String(s.seed, k.Subject))
	}
	if k.Addr.IsValid() {
		a := k.Addr.As16()
		h = mix(h ^ binary.LittleEndian.Uint64(a[:8]))
		h = mix(h ^ binary.LittleEndian.Uint64(a[8:]) ^ uint64(k.Addr.BitLen()))
	}
	return mix(h ^ uint64(k.Period))
}

// mix is the finalizer of SplitMix64: every input bit affects every output
// bit.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// shardOf returns the index of the shard of the key whose hash is h; the
// table maps use the hash's other bits.
func (s *Store) shardOf(h uint64) int { return int(h >> 48 & s.mask) }

// Apply implements policy.State. Each hit is counted under its own shard's
// lock, one after the other; the ops are checked and taken as one atomic
// step under the locks of all their shards. The keys of b.Ops must be
// distinct.
func (s *Store) Apply(now time.Time, b *policy.Batch) error {
	b.Blocked = -1
	b.Taken = false
	n := now.UnixNano()
	for i := range b.Hits {
		h := &b.Hits[i]
		if h.Window <= 0 {
			return fmt.Errorf("memory: hit %d: window %v is not positive", i, h.Window)
		}
		sh := &s.shards[s.shardOf(s.hash(h.Key))]
		sh.mu.Lock()
		h.Count = sh.counters.hit(h, n)
		sh.grown(n)
		sh.mu.Unlock()
		if h.Count > h.Limit && !h.Watch {
			b.Blocked = i
			return nil
		}
	}
	admitted := true
	if len(b.Ops) > 0 {
		b.Taken = s.apply(now, b.Ops)
		admitted = b.Taken
	}
	if admitted && b.Usage.Limit != "" {
		s.countUsage(b.Usage, n)
	}
	return nil
}

// Release implements policy.State: the route's count of slots held drops
// by one. The memory store counts slots and does not need the lease.
func (s *Store) Release(k policy.Key, lease string) error {
	h := s.hash(k)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	held, ok := sh.slots.get(h, k)
	switch {
	case !ok || held <= 0:
		return fmt.Errorf("memory: release of %s/%s: no slot is held", k.Limit, lease)
	case held == 1:
		sh.slots.remove(h, k)
	default:
		sh.slots.put(h, k, held-1)
	}
	return nil
}

// Slots returns the concurrency slots held under k.
func (s *Store) Slots(k policy.Key) int64 {
	h := s.hash(k)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	held, _ := sh.slots.get(h, k)
	return held
}

// countUsage adds one to the usage-history counter k at n.
func (s *Store) countUsage(k policy.Key, n int64) {
	h := s.hash(k)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	q, _ := sh.quotas.get(h, k)
	q.used++
	q.end = time.Unix(k.Period, 0).Add(24*time.Hour + s.usageRetention).UnixNano()
	s.note(sh, k, &q)
	sh.quotas.put(h, k, q)
	sh.grown(n)
	sh.mu.Unlock()
}

// apply checks every op and, when all the enforced ones admit, takes one
// from each of them and from each shadow op that admits, under the locks of
// the ops' shards taken in ascending order. It reports whether it took.
func (s *Store) apply(now time.Time, ops []policy.Op) bool {
	var idxBuf, lockBuf [policy.MaxLimits]int
	var hashBuf [policy.MaxLimits]uint64
	var bktBuf [policy.MaxLimits]policy.Bucket
	idx, locked, hashes, bkt := idxBuf[:0], lockBuf[:0], hashBuf[:0], bktBuf[:0]
	for i := range ops {
		h := s.hash(ops[i].Key)
		x := s.shardOf(h)
		hashes = append(hashes, h)
		idx = append(idx, x)
		locked = insertSorted(locked, x)
	}
	for _, x := range locked {
		s.shards[x].mu.Lock()
	}

	all := true
	for i := range ops {
		o, sh := &ops[i], &s.shards[idx[i]]
		var cur policy.Bucket
		switch o.Tier {
		case policy.TierQuota:
			q, _ := sh.quotas.get(hashes[i], o.Key)
			o.CheckQuota(q.used, q.granted, now)
		case policy.TierConcurrency:
			held, _ := sh.slots.get(hashes[i], o.Key)
			o.CheckSlot(held)
		default:
			b, _ := sh.buckets.get(hashes[i], o.Key)
			cur = o.CheckBucket(b.b, now)
		}
		bkt = append(bkt, cur)
		all = all && (o.OK || o.Shadow)
	}
	if all {
		n := now.UnixNano()
		for i := range ops {
			o, sh := &ops[i], &s.shards[idx[i]]
			if !o.OK {
				continue // a shadow op that would deny
			}
			switch o.Tier {
			case policy.TierQuota:
				q, _ := sh.quotas.get(hashes[i], o.Key)
				q.used++
				q.end = o.End.UnixNano()
				s.note(sh, o.Key, &q)
				sh.quotas.put(hashes[i], o.Key, q)
				o.TakeQuota()
			case policy.TierConcurrency:
				held, _ := sh.slots.get(hashes[i], o.Key)
				sh.slots.put(hashes[i], o.Key, held+1)
				o.TakeSlot()
			default:
				sh.buckets.put(hashes[i], o.Key, bucket{b: o.TakeBucket(bkt[i]), t: o.Throttle})
			}
		}
		for _, x := range locked {
			s.shards[x].grown(n)
		}
	}

	for _, x := range locked {
		s.shards[x].mu.Unlock()
	}
	return all
}

// insertSorted adds x to the ascending set xs.
func insertSorted(xs []int, x int) []int {
	i := 0
	for i < len(xs) && xs[i] < x {
		i++
	}
	if i < len(xs) && xs[i] == x {
		return xs
	}
	xs = append(xs, 0)
	copy(xs[i+1:], xs[i:])
	xs[i] = x
	return xs
}

// size returns the number of entries in sh.
func (sh *shard) size() int { return sh.buckets.len() + sh.counters.len() + sh.quotas.len() }

// grown sweeps sh at n when it has grown past its threshold. sh must be
// locked.
func (sh *shard) grown(n int64) {
	if sh.size() < sh.next {
		return
	}
	sh.sweep(n)
	sh.next = max(sweepMin, 2*sh.size())
}

// sweep drops the entries of sh that carry no information at n: full
// buckets, WAF counters whose two windows have both passed and quota
// counters whose period has ended. sh must be locked.
func (sh *shard) sweep(n int64) {
	now := time.Unix(0, n)
	sh.buckets.sweep(func(e bucket) bool { return e.t.Full(e.b, now) })
	sh.counters.sweep(n)
	// A changed counter waits for Changes to hand it out first.
	sh.quotas.sweep(func(q quota) bool { return q.end <= n && !q.changed })
}

// Sweep drops, in every shard, the entries that carry no information at now:
// buckets that are full, WAF counters whose current and previous windows have
// both passed, and quota counters whose period has ended. Apply sweeps a
// shard on its own as it grows; Sweep is for tests and operators.
func (s *Store) Sweep(now time.Time) {
	n := now.UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.sweep(n)
		sh.next = max(sweepMin, 2*sh.size())
		sh.mu.Unlock()
	}
}

// WAFCounters returns the number of WAF rate counters held and the number
// dropped so far before their windows had passed, or not kept, to stay
// within WithMaxCounters.
func (s *Store) WAFCounters() (held int, dropped uint64) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		held += sh.counters.len()
		dropped += sh.counters.dropped
		sh.mu.Unlock()
	}
	return held, dropped
}

// Len returns the number of entries held: buckets, WAF counters and quota
// counters.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.size()
		sh.mu.Unlock()
	}
	return n
}

// Used returns the requests counted by the quota or usage counter key (zero
// when there is none).
func (s *Store) Used(key policy.Key) int64 {
	used, _, _ := s.Counter(key)
	return used
}

// Counter returns the requests counted by the quota or usage counter k and,
// for a quota counter, the requests granted on top of its limit. It never
// fails.
func (s *Store) Counter(k policy.Key) (used, granted int64, err error) {
	h := s.hash(k)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q, _ := sh.quotas.get(h, k)
	return q.used, q.granted, nil
}

// Grant adds n requests to the quota counter k, whose period ends at end:
// the limit of that period grows by n. It never fails.
func (s *Store) Grant(k policy.Key, n int64, end time.Time) error {
	h := s.hash(k)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q, _ := sh.quotas.get(h, k)
	q.granted += n
	q.end = max(q.end, end.UnixNano())
	s.note(sh, k, &q)
	sh.quotas.put(h, k, q)
	return nil
}

// Ready implements the server's readiness check: memory is always there.
func (s *Store) Ready(ctx context.Context) error { return nil }

// Close releases nothing: a Store holds only memory.
func (s *Store) Close() error { return nil }
