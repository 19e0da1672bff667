package memory

import (
	"time"

	"github.com/tollgate/tollgate/policy"
)

// WithJournal makes the Store list the quota and usage counters that change
// (a take, a usage count, a grant), so that Changes can hand them to a store
// that keeps them elsewhere (store/file writes them to disk). Listing costs
// one append per counter per Changes call, under the shard's lock that the
// change holds anyway.
func WithJournal() Option {
	return func(s *Store) { s.journal = true }
}

// Count is the state of one quota or usage-history counter.
type Count struct {
	// Used is the requests counted.
	Used int64
	// Granted is the requests granted on top of a quota counter's limit.
	Granted int64
	// Until is when the Store may drop the counter: a quota counter's
	// period end, or a usage counter's day end plus the usage retention.
	Until time.Time
}

// Change is a counter that changed, with its state when Changes read it.
type Change struct {
	Key   policy.Key
	Count Count
}

// note lists the counter k, whose new state q is about to be put in sh, as
// changed. sh must be locked.
func (s *Store) note(sh *shard, k policy.Key, q *quota) {
	if s.journal && !q.changed {
		q.changed = true
		sh.changed = append(sh.changed, k)
	}
}

// Changes appends to dst every counter changed since the last call (with
// WithJournal; none without), each once and with its state at the time of
// the call, and returns dst. A counter that changes while Changes runs is
// either in this call's answer with its new state or in the next call's.
func (s *Store) Changes(dst []Change) []Change {
	if !s.journal {
		return dst
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, k := range sh.changed {
			h := s.hash(k)
			q, ok := sh.quotas.get(h, k)
			if !ok || !q.changed {
				continue
			}
			q.changed = false
			sh.quotas.put(h, k, q)
			dst = append(dst, Change{Key: k, Count: Count{Used: q.used, Granted: q.granted, Until: time.Unix(0, q.end)}})
		}
		clear(sh.changed)
		sh.changed = sh.changed[:0]
		sh.mu.Unlock()
	}
	return dst
}

// Lookup returns the state of the quota or usage counter k, and whether the
// Store holds it.
func (s *Store) Lookup(k policy.Key) (Count, bool) {
	h := s.hash(k)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q, ok := sh.quotas.get(h, k)
	if !ok {
		return Count{}, false
	}
	return Count{Used: q.used, Granted: q.granted, Until: time.Unix(0, q.end)}, true
}

// Restore sets the quota or usage counter k to c, as a store that keeps
// counters elsewhere does when it opens. The counter is not listed as
// changed.
func (s *Store) Restore(k policy.Key, c Count) {
	h := s.hash(k)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q, _ := sh.quotas.get(h, k)
	q.used, q.granted, q.end = c.Used, c.Granted, c.Until.UnixNano()
	sh.quotas.put(h, k, q)
}
