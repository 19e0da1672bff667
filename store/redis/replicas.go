package redis

import (
	"context"
	"crypto/rand"
	_ "embed"
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
	// reapEvery is how often the lanes of primaries gone are dropped
	// (reapLanes).
	reapEvery  = time.Minute
	replicaTTL = 5 * time.Second
)

// heartbeatScript announces this replica and returns Redis's clock and the
// live replicas (heartbeat.lua).
var (
	//go:embed heartbeat.lua
	heartbeatSrc    string
	heartbeatScript = goredis.NewScript(heartbeatSrc)
)

// replicas is what this replica knows of the others.
type replicas struct {
	id string
	// seen packs the live replicas' count (high 32 bits) and this one's
	// place among their sorted ids (low 32 bits), as last seen.
	seen atomic.Uint64
	// offset is Redis's clock minus this host's, in µs, as estimated from
	// a heartbeat's reading, off by at most unc µs (half its round trip);
	// valid once set. offsetAt is when it was taken (heartbeat only).
	offset, unc atomic.Int64
	valid       atomic.Bool
	offsetAt    time.Time
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
	nextReap := time.Now().Add(reapEvery)
	for {
		select {
		case <-s.done:
			s.withdraw()
			return
		case <-s.kick:
		case <-t.C:
			s.beat()
		}
		if s.local != nil && !s.open.Load() && s.stop.Err() == nil {
			s.reconcile(s.stop) // an error is tried again on the next beat
		}
		if s.spread && !s.open.Load() {
			s.keyCopies() // an error is tried again on the next beat
			if now := time.Now(); now.After(nextReap) {
				// A reload of the slot map (CLUSTER SLOTS): as often as
				// go-redis drops the clients of nodes gone.
				ctx, cancel := context.WithTimeout(s.stop, s.opts.AdminTimeout)
				if s.reapLanes(ctx) == nil {
					nextReap = now.Add(reapEvery)
				}
				cancel()
			}
		}
	}
}

// withdraw adds what was counted locally to Redis and takes this replica
// off the list, when Redis answers, within withdrawTimeout: it is the
// Store's last word.
func (s *Store) withdraw() {
	if s.open.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
	defer cancel()
	if s.local != nil {
		s.reconcile(ctx)
	}
	s.c.ZRem(ctx, s.replicasKey, s.replicas.id)
}

// withdrawTimeout bounds the withdrawal of a replica that stops.
const withdrawTimeout = time.Second

// beat makes one heartbeat and records what it saw.
func (s *Store) beat() {
	if s.open.Load() {
		return // the count seen last stands
	}
	ctx, cancel := context.WithTimeout(s.stop, s.opts.AdminTimeout)
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
	if err1 == nil && err2 == nil {
		s.replicas.sample(sent, back, sec*1e6+usec)
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

// sample takes a reading of Redis's clock (µs) made between sent and back
// as the offset when it is the first, or no less certain than the one held,
// or when the one held is over offsetAge old (clocks drift) and this one is
// certain enough.
func (r *replicas) sample(sent, back time.Time, redisUS int64) {
	rtt := back.Sub(sent)
	unc := rtt.Microseconds()/2 + 1
	if r.valid.Load() && unc > r.unc.Load() && (time.Since(r.offsetAt) < offsetAge || rtt > maxOffsetRTT) {
		return
	}
	r.offset.Store(redisUS - sent.Add(rtt/2).UnixMicro())
	r.unc.Store(unc)
	r.offsetAt = back
	r.valid.Store(true)
}

// The offset is measured anew from a reading whose round trip was at most
// maxOffsetRTT once the one held is offsetAge old.
const (
	maxOffsetRTT = 20 * time.Millisecond
	offsetAge    = time.Minute
)

// scriptDeadline returns the latest instant on Redis's clock (µs) at which
// the script may still apply a decision due at deadline: early enough that
// its reply has replyMargin left to come back, and the offset's uncertainty
// on top. 0 (no deadline) while the offset is unknown or too uncertain (over
// half the margin) to tell.
func (s *Store) scriptDeadline(deadline time.Time) int64 {
	unc := s.replicas.unc.Load()
	margin := s.replyMargin()
	if !s.replicas.valid.Load() || unc > margin.Microseconds()/2 {
		return 0
	}
	return deadline.UnixMicro() + s.replicas.offset.Load() - margin.Microseconds() - unc
}

// replyMargin is the part of a decision's budget kept for its reply: Redis
// applies a decision only when there is this much of the budget left, so
// that a reply to a decision Redis took is seen by its caller unless this
// process is held up for that long. An offset less certain than half of it
// is not used (scriptDeadline): the budget a decision has in Redis is then at
// least the budget less twice the margin.
func (s *Store) replyMargin() time.Duration {
	return max(s.opts.Timeout/10, time.Millisecond)
}
