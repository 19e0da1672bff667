package memory

import (
	"math/bits"
	"net/netip"
	"strings"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// DefaultMaxCounters is the bound on the WAF rate counters of a Store made
// without WithMaxCounters: 262,144 counters, 1,024 a shard. A counter of a
// client address costs about 75 bytes (BenchmarkWAFCounterBytes), and a
// shard's maps are kept sized for a full shard, so a flood of distinct
// addresses costs at most about 28 MB (BenchmarkWAFFlood). It holds every
// client of a busy edge over a 5-minute window many times over.
const DefaultMaxCounters = 1 << 18

// WithMaxCounters bounds the number of WAF rate counters held to n (at
// least 1), split evenly over the shards: each shard holds at most n divided
// by the number of shards, rounded up, so the store holds at most n rounded
// up to a multiple of the shard count.
//
// A shard that is full makes room for a new counter in one pass that drops
// the counters whose windows have passed, then the counters furthest below
// their limit (the count in the sliding window over the limit, lowest
// first), until a quarter of the shard is free; a counter over its limit
// (blocking) is never dropped. Between two passes that could not free a
// quarter of the shard, new counters are not kept (their hit counts as the
// client's first). Every counter dropped before its windows passed, and
// every new counter not kept, is counted (WAFCounters).
func WithMaxCounters(n int) Option {
	return func(s *Store) { s.maxCounters = max(n, 1) }
}

// ruleID is a WAF rule's (Key.Limit, window) interned in a shard.
type ruleID uint32

// ruleName is what a ruleID stands for.
type ruleName struct {
	limit  string
	window time.Duration
}

// ruleInfo is an interned rule: its name, the limit its hits last came
// with (Hit.Limit; a counter over it is blocking) and the number of
// counters held under it. A sweep frees the rules without counters: their
// name becomes the zero ruleName (no hit has a zero window).
type ruleInfo struct {
	name  ruleName
	limit int64
	held  int
}

// addrKey is the key of the counter of a client address (Key.Addr only,
// without a zone), held inline: no pointer for the collector to follow.
type addrKey struct {
	addr [16]byte
	rule ruleID
	kind uint8 // the address's length in bytes: 0 (no address), 4 (IPv4) or 16 (IPv6)
}

// otherKey is the key of any other counter: with a Subject (a header
// value, a path), a zone or a Period.
type otherKey struct {
	subject string
	addr    netip.Addr
	period  int64
	rule    ruleID
}

// window is a WAF sliding-window counter: two fixed windows of the rule's
// length, the current one (index win, count cur) and the one before it
// (prev).
type window struct{ win, cur, prev int64 }

// counters holds a shard's WAF rate counters, at most max of them.
type counters struct {
	rules []ruleInfo
	ids   map[ruleName]ruleID
	addrs map[addrKey]window
	other map[otherKey]window
	max   int
	// quiet is the number of new counters still to refuse before the next
	// pass that makes room: the part of its quarter that the last pass
	// could not free.
	quiet int
	// dropped counts the counters dropped before their windows passed and
	// the new counters not kept.
	dropped uint64
	// passes counts the passes that made room (tests check they stay
	// amortized).
	passes int
}

func newCounters(max int) counters {
	return counters{ids: make(map[ruleName]ruleID), addrs: make(map[addrKey]window), other: make(map[otherKey]window), max: max}
}

// len returns the number of counters held.
func (c *counters) len() int { return len(c.addrs) + len(c.other) }

// intern returns the id of the rule of h, noting the limit it came with.
func (c *counters) intern(h *policy.Hit) ruleID {
	name := ruleName{h.Key.Limit, h.Window}
	id, ok := ruleID(0), false
	if len(c.rules) <= 8 { // a scan of a few rules is cheaper than hashing
		for i := range c.rules {
			if c.rules[i].name == name {
				id, ok = ruleID(i), true
				break
			}
		}
	} else {
		id, ok = c.ids[name]
	}
	if !ok {
		name.limit = strings.Clone(name.limit)
		id = ruleID(len(c.rules))
		for i := range c.rules {
			if c.rules[i].name == (ruleName{}) { // free
				id = ruleID(i)
				break
			}
		}
		if int(id) == len(c.rules) {
			c.rules = append(c.rules, ruleInfo{})
		}
		c.rules[id] = ruleInfo{name: name}
		c.ids[name] = id
	}
	c.rules[id].limit = h.Limit
	return id
}

// hit adds one to h's counter at n (Unix nanoseconds) and returns the
// estimated count in the last h.Window. The estimate is Cloudflare's sliding
// window counter: the previous fixed window's count weighted by the part of
// it still inside the sliding window, plus the current window's count,
// rounded down. A clock that goes backwards counts into the current window
// and weighs the previous one fully.
func (c *counters) hit(h *policy.Hit, n int64) int64 {
	id := c.intern(h)
	k := h.Key
	if k.Subject == "" && k.Period == 0 && k.Addr.Zone() == "" {
		ak := addrKey{rule: id}
		if k.Addr.IsValid() {
			ak.addr, ak.kind = k.Addr.As16(), uint8(k.Addr.BitLen()/8)
		}
		return count(c, &c.addrs, ak, id, int64(h.Window), n, identity)
	}
	ok := otherKey{subject: k.Subject, addr: k.Addr, period: k.Period, rule: id}
	return count(c, &c.other, ok, id, int64(h.Window), n, ownSubject)
}

func identity(k addrKey) addrKey { return k }

// ownSubject returns k with a copy of its subject, which may point into a
// request's memory.
func ownSubject(k otherKey) otherKey {
	k.subject = strings.Clone(k.subject)
	return k
}

// count adds one to the counter k of *m (rule id, window w) at n and
// returns the estimated count. A new counter is kept with own(k), when there
// is room for it (making room makes *m anew).
func count[K comparable](c *counters, m *map[K]window, k K, id ruleID, w, n int64, own func(K) K) int64 {
	idx := floorDiv(n, w)
	elapsed := n - idx*w
	cw, ok := (*m)[k]
	if !ok {
		cw = window{win: idx}
	}
	switch {
	case idx == cw.win+1:
		cw.prev, cw.cur, cw.win = cw.cur, 0, idx
	case idx > cw.win+1:
		cw.prev, cw.cur, cw.win = 0, 0, idx
	case idx < cw.win:
		elapsed = 0
	}
	cw.cur++
	est := cw.cur + weigh(cw.prev, w-elapsed, w)
	if ok {
		(*m)[k] = cw
		return est
	}
	if c.len() >= c.max && !c.makeRoom(n) {
		c.dropped++
		return est
	}
	(*m)[own(k)] = cw
	c.rules[id].held++
	return est
}

// countAt returns the estimated count of cw (window w) at n, without a hit,
// and whether both its windows have passed.
func countAt(cw window, w, n int64) (int64, bool) {
	idx := floorDiv(n, w)
	elapsed := n - idx*w
	switch {
	case idx == cw.win:
		return cw.cur + weigh(cw.prev, w-elapsed, w), false
	case idx == cw.win+1:
		return weigh(cw.cur, w-elapsed, w), false
	case idx > cw.win+1:
		return 0, true
	default: // the clock went back
		return cw.cur + cw.prev, false
	}
}

// weigh returns prev*part/w rounded down, without overflow; part <= w.
func weigh(prev, part, w int64) int64 {
	hi, lo := bits.Mul64(uint64(prev), uint64(part))
	q, _ := bits.Div64(hi, lo, uint64(w))
	return int64(q)
}

// floorDiv returns n/w rounded towards minus infinity; w > 0.
func floorDiv(n, w int64) int64 {
	q := n / w
	if n%w < 0 {
		q--
	}
	return q
}

// histBuckets is the resolution of the ranks a pass that makes room sorts
// counters by: 1/64 of the limit.
const histBuckets = 64

// keyed is a counter key: it knows its rule.
type keyed interface {
	comparable
	ruleOf() ruleID
}

func (k addrKey) ruleOf() ruleID  { return k.rule }
func (k otherKey) ruleOf() ruleID { return k.rule }

// makeRoom makes room for a new counter in a full shard at n and reports
// whether there is room. Unless the last pass fell short (quiet), it drops
// the counters whose windows have passed, then the lowest ranked (rank)
// until a quarter of the shard is free. A pass costs O(max) and follows at
// least max/4 new counters, kept or not: O(1) amortized per new counter.
func (c *counters) makeRoom(n int64) bool {
	if c.quiet > 0 {
		c.quiet--
		return false
	}
	c.passes++
	quarter := max(c.max/4, 1)
	freed := c.evict(n, c.len()-(c.max-quarter))
	c.quiet = max(quarter-freed, 0)
	if freed > 0 {
		c.remake(c.max - c.len()) // the shard fills up again
	}
	return c.len() < c.max
}

// evict drops the counters whose windows have passed at n and, when that
// frees fewer than need, the need−expired lowest ranked counters that are
// not blocking. It returns the number of counters dropped.
func (c *counters) evict(n int64, need int) int {
	var hist [histBuckets]int
	expired := rankAll(c, c.addrs, n, &hist) + rankAll(c, c.other, n, &hist)
	need -= expired
	if need <= 0 {
		return expired
	}
	// The threshold rank t: every counter ranked below it goes, and
	// atT of those ranked t.
	t, below := 0, 0
	for t < histBuckets && below+hist[t] < need {
		below += hist[t]
		t++
	}
	atT := need - below
	dropped := dropBelow(c, c.addrs, n, t, &atT) + dropBelow(c, c.other, n, t, &atT)
	c.dropped += uint64(dropped)
	return expired + dropped
}

// rank returns the rank of a counter with count cnt under limit: the
// count over the limit in 64ths, rounded down; ok is false for a blocking
// counter (cnt > limit), which has no rank.
func rank(cnt, limit int64) (int, bool) {
	if cnt > limit {
		return 0, false
	}
	hi, lo := bits.Mul64(uint64(cnt), histBuckets)
	q, _ := bits.Div64(hi, lo, uint64(limit)+1)
	return int(q), true
}

// rankAll drops the counters of m whose windows have passed at n, adds
// the others' ranks to hist and returns the number dropped.
func rankAll[K keyed](c *counters, m map[K]window, n int64, hist *[histBuckets]int) int {
	expired := 0
	for k, cw := range m {
		r := &c.rules[k.ruleOf()]
		cnt, gone := countAt(cw, int64(r.name.window), n)
		if gone {
			delete(m, k)
			r.held--
			expired++
			continue
		}
		if b, ok := rank(cnt, r.limit); ok {
			hist[b]++
		}
	}
	return expired
}

// dropBelow drops the counters of m ranked below t at n, and those ranked
// t while *atT > 0 (counting them down). It returns the number dropped.
func dropBelow[K keyed](c *counters, m map[K]window, n int64, t int, atT *int) int {
	dropped := 0
	for k, cw := range m {
		r := &c.rules[k.ruleOf()]
		cnt, _ := countAt(cw, int64(r.name.window), n)
		b, ok := rank(cnt, r.limit)
		if !ok || b > t || (b == t && *atT <= 0) {
			continue
		}
		if b == t {
			*atT--
		}
		delete(m, k)
		r.held--
		dropped++
	}
	return dropped
}

// sweep drops the counters whose windows have both passed at n, frees the
// rules without counters and, when it dropped any, makes the maps anew.
func (c *counters) sweep(n int64) {
	var hist [histBuckets]int
	if rankAll(c, c.addrs, n, &hist)+rankAll(c, c.other, n, &hist) > 0 {
		c.remake(0)
	}
	c.freeRules()
}

// remake copies the counters into new maps, with room for extra more
// address counters. Go maps never give back memory: a deleted entry leaves a
// tombstone that counts towards growing the map, so that a map whose
// entries come and go keeps growing (measured: 30 MB, then 65 MB after 4M
// entries came and went through 256 maps of at most 1,024). Copying after
// each pass or sweep that deleted costs O(counters), like the pass itself.
func (c *counters) remake(extra int) {
	c.addrs = clone(c.addrs, len(c.addrs)+extra)
	c.other = clone(c.other, len(c.other))
}

// clone returns a copy of m with room for size entries.
func clone[K comparable](m map[K]window, size int) map[K]window {
	m2 := make(map[K]window, size)
	for k, v := range m {
		m2[k] = v
	}
	return m2
}

// freeRules forgets the rules without counters, whose ids intern reuses.
func (c *counters) freeRules() {
	for i := range c.rules {
		r := &c.rules[i]
		if r.held == 0 && r.name != (ruleName{}) {
			delete(c.ids, r.name)
			r.name = ruleName{}
		}
	}
}
