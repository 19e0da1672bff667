package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Replicas announce themselves in Redis: every heartbeatEvery, each puts its
// id in the sorted set <prefix>replicas, scored by when the entry runs out
// (replicaTTL later, on Redis's clock), and drops the entries that ran out.
// The ids left are the live replicas; a replica that stops cleanly removes
// its own at once. While Redis cannot be reached, a replica keeps the count it
// saw last: each takes its share of every shared limit (local.go).
const (
	heartbeatEvery = time.Second
	replicaTTL     = 5 * time.Second
)

// heartbeatScript announces ARGV[1] in the set KEYS[1] for ARGV[2] ms, drops
// the entries that ran out and returns Redis's clock (seconds and µs) and
// the live ids.
var heartbeatScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
local out = {t[1], t[2]}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = id
end
return out`)

// replicas is what this replica knows of the others.
type replicas struct {
	id string
	// seen packs the live replicas' count (high 32 bits) and this one's
	// place among their sorted ids (low 32 bits), as last seen.
	seen atomic.Uint64
	// offset is Redis's clock minus this host's, in µs, as estimated from
	// the last heartbeat that answered quickly; valid once set.
	offset atomic.Int64
	valid  atomic.Bool
}

// newReplicaID returns an id unique to this process: host, pid and random
// bits (a restarted process is a new replica).
func newReplicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// share returns the live replicas' count (at least 1) and this one's place
// among them, as last seen.
func (r *replicas) share() (n, i int) {
	v := r.seen.Load()
	n, i = int(v>>32), int(uint32(v))
	if n < 1 {
		return 1, 0
	}
	return n, i
}

// Replicas returns the number of live replicas sharing the store, as last
// seen (1 before any heartbeat answered).
func (s *Store) Replicas() int {
	n, _ := s.replicas.share()
	return n
}

// heartbeat announces this replica every heartbeatEvery until the Store
// closes, then withdraws it. With Options.Local it also adds to Redis what
// was counted locally while the circuit was closed (decisions that missed
// their budget): as soon as a call succeeds after them (kick), and on every
// beat (a push that failed is tried again).
func (s *Store) heartbeat() {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			s.withdraw()
			return
		case <-s.kick:
		case <-t.C:
			s.beat()
		}
		if s.local != nil && !s.open.Load() {
			s.reconcile()
		}
	}
}

// withdraw adds what was counted locally to Redis and takes this replica
// off the list, when Redis answers; it is the Store's last word.
func (s *Store) withdraw() {
	if s.open.Load() {
		return
	}
	if s.local != nil {
		s.reconcile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
	defer cancel()
	s.c.ZRem(ctx, s.replicasKey, s.replicas.id)
}

// withdrawTimeout bounds the withdrawal of a replica that stops.
const withdrawTimeout = 500 * time.Millisecond

// beat makes one heartbeat and records what it saw.
func (s *Store) beat() {
	if s.open.Load() {
		return // the count seen last stands
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.AdminTimeout)
	defer cancel()
	sent := time.Now()
	res, err := heartbeatScript.Run(ctx, s.c, []string{s.replicasKey}, s.replicas.id, replicaTTL.Milliseconds()).StringSlice()
	back := time.Now()
	if err != nil || len(res) < 2 {
		return
	}
	sec, err1 := strconv.ParseInt(res[0], 10, 64)
	usec, err2 := strconv.ParseInt(res[1], 10, 64)
	// The first reading is taken whatever its round trip (the estimate is
	// off by at most half of it); later ones only when they are close.
	if rtt := back.Sub(sent); err1 == nil && err2 == nil && (rtt < maxOffsetRTT || !s.replicas.valid.Load()) {
		mid := sent.Add(back.Sub(sent) / 2)
		s.replicas.offset.Store(sec*1e6 + usec - mid.UnixMicro())
		s.replicas.valid.Store(true)
	}
	ids := res[2:]
	slices.Sort(ids)
	i, found := slices.BinarySearch(ids, s.replicas.id)
	n := len(ids)
	if !found {
		n++ // not yet listed: it is live all the same
	}
	s.replicas.seen.Store(uint64(n)<<32 | uint64(i))
}

// maxOffsetRTT bounds the round trip of a heartbeat whose clock reading sets
// the offset: the estimate is off by at most half of it.
const maxOffsetRTT = 20 * time.Millisecond

// redisTime returns t on Redis's clock in µs, or 0 before the offset is
// known.
func (s *Store) redisTime(t time.Time) int64 {
	if !s.replicas.valid.Load() {
		return 0
	}
	return t.UnixMicro() + s.replicas.offset.Load()
}
