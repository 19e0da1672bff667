package redis

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
)

// On a Redis Cluster (redis-cluster://) the state spreads over the slots,
// so that more primaries carry more decisions (SPEC §5):
//
//   - a customer's plan buckets, quotas and usage counters live on the slot
//     of its customer, and a WAF counter on the slot of its client (its
//     address, or the key or header it counts by): each key's hash tag is
//     its home (appendHome);
//   - the buckets every request shares (account, stage, route) are leased:
//     a replica takes tokens from the bucket in Redis in small batches and
//     spends them itself (leases.go), so that few decisions touch their
//     slot;
//   - a decision makes a call for each home it needs, one after another:
//     its client's WAF counters (each run of hits with one home), the
//     route's concurrency slots, then its customer's buckets, quota and
//     usage in one atomic step. Calls to one node share an EVALSHA
//     (batch.go), whose script may touch the keys of several slots of that
//     node (allow-cross-slot-keys).
//
// What stays exact: each customer's buckets and quotas (one atomic step on
// one slot), the WAF counters (one slot each), the concurrency caps. What
// is bounded: a shared bucket (leases.go). A request that a WAF counter
// blocks, or that a leased bucket denies, takes nothing: the hits after the
// blocking one are not counted, the customer's call takes nothing, and the
// tokens leased for it go back to this replica's pool.

// clusterScript is the apply script for a cluster: the same script, whose
// call declares only the first key (Redis Cluster refuses a call whose
// declared keys are in several slots) and passes them all as arguments,
// after their count; it may touch keys of the several slots of its node.
var (
	clusterSrc = "#!lua flags=allow-cross-slot-keys\n" + strings.Replace(applySrc, "local KEYS, ARGV = KEYS, ARGV\n", `local ARGV_ = ARGV
local KEYS, ARGV = {}, {}
do
  local n = tonumber(ARGV_[1])
  for i = 1, n do KEYS[i] = ARGV_[1 + i] end
  for i = n + 2, #ARGV_ do ARGV[i - n - 1] = ARGV_[i] end
end
`, 1)
	clusterScript = goredis.NewScript(clusterSrc)
)

// appendHome appends the hash tag of k's home to b: the customer of a
// bucket or counter that has one (its Subject), else for a WAF counter
// ('w') its client (the address, else the subject), else the limit itself
// (a shared bucket, a concurrency cap). The tag is a hash, so that any
// string makes a valid tag.
func appendHome(b []byte, kind byte, k policy.Key) []byte {
	h := uint64(14695981039346656037) // FNV-1a
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
	}
	var class byte
	switch {
	case kind == 'w' && k.Addr.IsValid():
		class = 'a'
		a := k.Addr.As16()
		add(string(a[:]))
	case k.Subject != "":
		class = 'c'
		add(k.Subject)
	default:
		class = 'l'
		add(k.Limit)
	}
	b = append(b, '{', class)
	b = strconv.AppendUint(b, h, 36)
	return append(b, '}', ':')
}

// sameHome reports whether two WAF counters have one home.
func sameHome(x, y policy.Key) bool {
	if x.Addr.IsValid() || y.Addr.IsValid() {
		return x.Addr == y.Addr
	}
	return x.Subject == y.Subject
}

// route sets the node of r's call on a cluster: the primary of its first
// key's slot (every key of one call of a decision has one home).
func (s *Store) route(r *request) error {
	if !s.spread {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline)
	defer cancel()
	n, err := s.cluster.MasterForKey(ctx, r.keys[0])
	if err != nil {
		return err
	}
	r.node = n
	return nil
}

// subBatches reuses the batches of a decision's calls on a cluster.
var subBatches = sync.Pool{New: func() any { return new(policy.Batch) }}

// isShared reports whether an op is a shared bucket, leased on a cluster.
func isShared(o *policy.Op) bool {
	return o.Tier == policy.TierAccount || o.Tier == policy.TierStage || o.Tier == policy.TierRoute
}

// applySpread makes the decision on a cluster (see the top of this file).
func (s *Store) applySpread(now time.Time, b *policy.Batch) error {
	sub := subBatches.Get().(*policy.Batch)
	defer subBatches.Put(sub)
	// 1. The WAF counters: each run of hits with one home, in order,
	// until one blocks.
	for i := 0; i < len(b.Hits); {
		j := i + 1
		for j < len(b.Hits) && sameHome(b.Hits[i].Key, b.Hits[j].Key) {
			j++
		}
		sub.Reset()
		sub.Deadline = b.Deadline
		sub.Hits = append(sub.Hits, b.Hits[i:j]...)
		if err := s.applyCall(now, sub, false); err != nil {
			return err
		}
		for k := i; k < j; k++ {
			b.Hits[k].Count = sub.Hits[k-i].Count
		}
		if sub.Blocked >= 0 {
			b.Blocked = i + sub.Blocked
			return nil
		}
		i = j
	}
	if len(b.Ops) == 0 && b.Usage.Limit == "" {
		return nil
	}
	// 2. The shared buckets, from this replica's leases.
	var held [policy.MaxLimits]bool
	denied := false
	giveBack := func() {
		for k := range b.Ops {
			if held[k] {
				s.leases.giveBack(s.key('b', b.Ops[k].Key))
			}
		}
	}
	for k := range b.Ops {
		o := &b.Ops[k]
		if !isShared(o) {
			continue
		}
		ok, err := s.leases.take(s, now, o, b.Deadline)
		if err != nil {
			giveBack()
			return err
		}
		held[k] = ok
		denied = denied || !ok && !o.Shadow
	}
	// 3. The route's concurrency slots, unless the request is denied.
	slot := -1
	if n := len(b.Ops); n > 0 && b.Ops[n-1].Tier == policy.TierConcurrency {
		slot = n - 1
		o := &b.Ops[slot]
		if denied {
			o.CheckSlot(0) // not asked: the request is denied already
		} else {
			sub.Reset()
			sub.Deadline = b.Deadline
			sub.Ops = append(sub.Ops, *o)
			if err := s.applyCall(now, sub, false); err != nil {
				giveBack()
				return err
			}
			*o = sub.Ops[0]
			denied = !sub.Taken
			if denied {
				slot = -1 // not taken
			}
		}
	}
	// 4. The customer's buckets, quota and usage, in one atomic step.
	taken := !denied
	sub.Reset()
	sub.Deadline = b.Deadline
	sub.Usage = b.Usage
	for k := range b.Ops {
		if o := &b.Ops[k]; !isShared(o) && o.Tier != policy.TierConcurrency {
			sub.Ops = append(sub.Ops, *o)
		}
	}
	if len(sub.Ops) > 0 || sub.Usage.Limit != "" {
		err := s.applyCall(now, sub, denied)
		if err != nil {
			giveBack()
			if slot >= 0 {
				s.releaseLater(b.Ops[slot].Key, b.Ops[slot].Lease)
			}
			return err
		}
		j := 0
		for k := range b.Ops {
			if o := &b.Ops[k]; !isShared(o) && o.Tier != policy.TierConcurrency {
				*o = sub.Ops[j]
				j++
			}
		}
		taken = !denied && (sub.Taken || len(sub.Ops) == 0)
	}
	if !taken {
		giveBack()
		if slot >= 0 {
			s.releaseLater(b.Ops[slot].Key, b.Ops[slot].Lease)
		}
		for k := range b.Ops {
			if isShared(&b.Ops[k]) && held[k] {
				s.leases.untake(&b.Ops[k])
			}
		}
	}
	b.Taken = taken && len(b.Ops) > 0
	return nil
}

// releaseLater gives back, in the background, the concurrency slot a
// decision took on a cluster before another of its calls denied it or
// failed.
func (s *Store) releaseLater(k policy.Key, lease string) {
	key := s.key('s', k)
	s.background.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), max(s.opts.Timeout, releaseTimeout))
		defer cancel()
		s.c.ZRem(ctx, key, lease) // else the lease runs out
	})
}
