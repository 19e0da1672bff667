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

// sameHome reports whether two WAF counters have one home (appendHome): a
// counter without address or subject (a header sent empty) is at home on
// its limit.
func sameHome(x, y policy.Key) bool {
	if x.Addr.IsValid() || y.Addr.IsValid() {
		return x.Addr == y.Addr
	}
	if x.Subject != "" || y.Subject != "" {
		return x.Subject == y.Subject
	}
	return x.Limit == y.Limit
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

// isCustomer reports whether an op is its customer's (a plan bucket, a
// quota): neither a shared bucket nor a concurrency cap.
func isCustomer(o *policy.Op) bool {
	return !isShared(o) && o.Tier != policy.TierConcurrency
}

// applySpread makes the decision on a cluster (see the top of this file):
// in one call when every key it needs in Redis is on one node, else in a
// call for each home.
func (s *Store) applySpread(now time.Time, b *policy.Batch) error {
	sub := subBatches.Get().(*policy.Batch)
	defer subBatches.Put(sub)
	if n := len(b.Ops); n == 0 || b.Ops[n-1].Tier != policy.TierConcurrency {
		if done, err := s.applyOneNode(now, b, sub); done || err != nil {
			return err
		}
	}
	return s.applyByHome(now, b, sub)
}

// customerPart makes sub the batch of b's customer: its buckets, quota and
// usage (not the shared buckets, nor the concurrency slots).
func customerPart(b, sub *policy.Batch) {
	sub.Reset()
	sub.Deadline = b.Deadline
	sub.Usage = b.Usage
	for k := range b.Ops {
		if o := &b.Ops[k]; isCustomer(o) {
			sub.Ops = append(sub.Ops, *o)
		}
	}
}

// customerBack copies the results of the customer's batch sub into b.
func customerBack(b, sub *policy.Batch) {
	j := 0
	for k := range b.Ops {
		if o := &b.Ops[k]; isCustomer(o) {
			*o = sub.Ops[j]
			j++
		}
	}
}

// applyOneNode makes the decision in one call when the WAF counters and
// the customer's keys are all on one node (always, on a cluster of one
// primary): the shared buckets' leases first, then the call, with the
// hits and the customer's ops. done is false when the keys are on several
// nodes: nothing was taken, and the decision is to be made by home.
func (s *Store) applyOneNode(now time.Time, b, sub *policy.Batch) (done bool, err error) {
	customerPart(b, sub)
	sub.Hits = append(sub.Hits, b.Hits...)
	if len(sub.Hits) == 0 && len(sub.Ops) == 0 && sub.Usage.Limit == "" {
		return false, nil // only shared buckets: by home
	}
	owed := s.owedQuotas(sub)
	r, err := s.encode(now, sub, false, &owed)
	if err != nil {
		return false, err
	}
	if one, err := s.oneNode(r); err != nil || !one {
		r.free()
		return false, err
	}
	held, denied, err := s.takeLeases(now, b)
	if err != nil {
		r.free()
		return false, err
	}
	if denied {
		r.deny()
	}
	res, err := s.decide(r)
	if err == nil {
		err = s.read(res, sub, &owed)
	}
	if err != nil {
		s.giveBack(b, held)
		return false, err
	}
	copy(b.Hits, sub.Hits)
	if sub.Blocked >= 0 {
		b.Blocked = sub.Blocked
		s.giveBack(b, held)
		return true, nil
	}
	customerBack(b, sub)
	taken := !denied && (sub.Taken || len(sub.Ops) == 0)
	s.settle(b, held, taken, -1)
	return true, nil
}

// applyByHome makes the decision in a call for each home: the WAF counters,
// the leases, the concurrency slots, then the customer's state.
func (s *Store) applyByHome(now time.Time, b, sub *policy.Batch) error {
	if blocked, err := s.applyHits(now, b, sub); blocked || err != nil {
		return err
	}
	if len(b.Ops) == 0 && b.Usage.Limit == "" {
		return nil
	}
	held, denied, err := s.takeLeases(now, b)
	if err != nil {
		return err
	}
	// The route's concurrency slots, unless the request is denied.
	slot := -1
	if n := len(b.Ops); n > 0 && b.Ops[n-1].Tier == policy.TierConcurrency {
		o := &b.Ops[n-1]
		if denied {
			o.CheckSlot(0) // not asked: the request is denied already
		} else {
			sub.Reset()
			sub.Deadline = b.Deadline
			sub.Ops = append(sub.Ops, *o)
			if err := s.applyCall(now, sub, false); err != nil {
				s.giveBack(b, held)
				return err
			}
			*o = sub.Ops[0]
			if denied = !sub.Taken; !denied {
				slot = n - 1
			}
		}
	}
	// The customer's buckets, quota and usage, in one atomic step.
	taken := !denied
	customerPart(b, sub)
	if len(sub.Ops) > 0 || sub.Usage.Limit != "" {
		if err := s.applyCall(now, sub, denied); err != nil {
			s.settle(b, held, false, slot)
			return err
		}
		customerBack(b, sub)
		taken = !denied && (sub.Taken || len(sub.Ops) == 0)
	}
	s.settle(b, held, taken, slot)
	return nil
}

// applyHits counts b's WAF hits, each run of hits with one home in a call,
// in order, until one blocks.
func (s *Store) applyHits(now time.Time, b, sub *policy.Batch) (blocked bool, err error) {
	for i := 0; i < len(b.Hits); {
		j := i + 1
		for j < len(b.Hits) && sameHome(b.Hits[i].Key, b.Hits[j].Key) {
			j++
		}
		sub.Reset()
		sub.Deadline = b.Deadline
		sub.Hits = append(sub.Hits, b.Hits[i:j]...)
		if err := s.applyCall(now, sub, false); err != nil {
			return false, err
		}
		copy(b.Hits[i:j], sub.Hits)
		if sub.Blocked >= 0 {
			b.Blocked = i + sub.Blocked
			return true, nil
		}
		i = j
	}
	return false, nil
}

// takeLeases takes a token of each of b's shared buckets from this
// replica's pools (held[k] for the op k that got one); denied is set when
// an enforced one has none.
func (s *Store) takeLeases(now time.Time, b *policy.Batch) (held [policy.MaxLimits]bool, denied bool, err error) {
	for k := range b.Ops {
		o := &b.Ops[k]
		if !isShared(o) {
			continue
		}
		ok, err := s.leases.take(s, now, o, b.Deadline)
		if err != nil {
			s.giveBack(b, held)
			return held, false, err
		}
		held[k] = ok
		denied = denied || !ok && !o.Shadow
	}
	return held, denied, nil
}

// giveBack puts the leased tokens held for b back into their pools.
func (s *Store) giveBack(b *policy.Batch, held [policy.MaxLimits]bool) {
	for k := range b.Ops {
		if held[k] {
			s.leases.giveBack(b.Ops[k].Key)
		}
	}
}

// settle ends a decision on a cluster: taken, it keeps what it took;
// else its leased tokens go back to their pools (their reports corrected)
// and the concurrency slot it took (slot, -1: none) goes back to Redis.
func (s *Store) settle(b *policy.Batch, held [policy.MaxLimits]bool, taken bool, slot int) {
	b.Taken = taken && len(b.Ops) > 0
	if taken {
		return
	}
	s.giveBack(b, held)
	for k := range b.Ops {
		if held[k] {
			s.leases.untake(&b.Ops[k])
		}
	}
	if slot >= 0 {
		s.releaseLater(b.Ops[slot].Key, b.Ops[slot].Lease)
	}
}

// oneNode reports whether every key of r is on the node of its first
// (r.node: encode routed it).
func (s *Store) oneNode(r *request) (bool, error) {
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline)
	defer cancel()
	for _, k := range r.keys[1:] {
		n, err := s.cluster.MasterForKey(ctx, k)
		if err != nil {
			return false, err
		}
		if n != r.node {
			return false, nil
		}
	}
	return true, nil
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
