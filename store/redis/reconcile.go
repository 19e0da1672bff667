package redis

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// Reconciliation: the quota and usage counts that decisions made locally
// took (local.go) are added to Redis when it answers again, so that no quota
// is handed out twice and usage reports miss nothing. Buckets and WAF
// counters need none: they refill and slide on their own.
//
// The local store counts each counter's takes in Used; Granted counts what
// Redis already holds of them: what a push added, and the takes Redis made
// for a decision whose reply came after its caller had decided locally. So a
// counter owes Redis Used − Granted (negative when Redis counted a request
// that was answered locally as a denial). A push sends every counter that
// owes something in one call of pushScript, which applies it once only: it
// carries a token that Redis keeps for pushTokenTTL, so a push retried after
// a reply that was lost is not added twice.
const (
	pushTokenTTL = time.Hour
	// pushMax bounds the counters of one call; more go in several.
	pushMax = 1000
)

// pushScript adds the counts made locally to Redis's counters, once per
// token (push.lua).
var (
	//go:embed push.lua
	pushSrc    string
	pushScript = goredis.NewScript(pushSrc)
)

// push is a push that was tried and may or may not have applied: it is
// tried again as it is, with its token.
type push struct {
	token string
	items []memory.Change // Count.Used is what the counter owes
}

// reconcile adds to Redis what the local store counted that Redis does not
// hold, as far as the store's journal shows at the call, and gives back the
// slots Redis may hold for decisions answered locally. A push that failed
// stays pending and goes first next time, as it was.
func (s *Store) reconcile(ctx context.Context) error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	through := int64(-1) // -1: this call takes no changes
	if len(s.pending) == 0 {
		// Read first: a take counted after it may be missing from the
		// changes, and is owed until a later push.
		through = s.localTaken.Load()
		s.changes = s.local.mem.Changes(s.changes[:0])
		for start := 0; start < len(s.changes); start += pushMax {
			p := &push{token: newToken()}
			for _, c := range s.changes[start:min(start+pushMax, len(s.changes))] {
				if owed := c.Count.Used - c.Count.Granted; owed != 0 {
					c.Count.Used = owed
					p.items = append(p.items, c)
				}
			}
			if len(p.items) > 0 {
				s.pending = append(s.pending, p)
			}
		}
		clear(s.changes)
	}
	for len(s.pending) > 0 {
		if err := s.sendPush(ctx, s.pending[0]); err != nil {
			return err
		}
		s.pending[0] = nil
		s.pending = s.pending[1:]
	}
	if through >= 0 {
		s.pushedThrough.Store(through)
	}
	return s.releaseStrays(ctx)
}

// sendPush makes one push call and, when it applied (now or before), records
// in the local store that Redis holds what it carried, and in the views what
// Redis holds now.
func (s *Store) sendPush(ctx context.Context, p *push) error {
	if s.spread {
		// A call for each counter, on its slot, with a token there:
		// the counters of a push are on several slots. One applied is
		// off the push, so that a push tried again adds it once.
		for len(p.items) > 0 {
			one := &push{token: p.token, items: p.items[:1]}
			if err := s.sendPushOn(ctx, one, s.spreadPushKey(p.token, one.items[0].Key)); err != nil {
				return err
			}
			p.items = p.items[1:]
		}
		return nil
	}
	return s.sendPushOn(ctx, p, s.opts.Prefix+"pushed:"+p.token)
}

// spreadPushKey returns, on a cluster, the key of a push's token for the
// counter k, on k's slot: one for each counter of the push.
func (s *Store) spreadPushKey(token string, k policy.Key) string {
	b := []byte(s.statePrefix)
	b = appendHome(b, 'c', k)
	b = append(append(b, "pushed:"...), token...)
	return string(s.appendKey(append(b, ':'), 'c', k))
}

// sendPushOn makes the push call with its token at tokenKey.
func (s *Store) sendPushOn(ctx context.Context, p *push, tokenKey string) error {
	keys := make([]string, 0, 1+len(p.items))
	args := make([]any, 0, 1+2*len(p.items))
	keys = append(keys, tokenKey)
	args = append(args, pushTokenTTL.Milliseconds())
	for _, c := range p.items {
		keys = append(keys, s.key('c', c.Key))
		args = append(args, c.Count.Used, c.Count.Until.Add(s.opts.Retention).UnixMilli())
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.AdminTimeout)
	defer cancel()
	res, err := pushScript.Run(ctx, s.c, keys, args...).Int64Slice()
	if err == nil && (len(res) == 0 || res[0] == 1 && len(res) != 1+2*len(p.items)) {
		err = errBadReply
	}
	if err != nil {
		return fmt.Errorf("redis %s: add the counts made locally: %w", s.url, err)
	}
	now := time.Now()
	for i, c := range p.items {
		if res[0] == 1 && res[1+2*i] < 0 {
			continue // not a counter in Redis: nothing to add to
		}
		s.local.mem.Grant(c.Key, c.Count.Used, c.Count.Until)
		if res[0] == 1 {
			s.local.views.put(c.Key, res[1+2*i], res[2+2*i], c.Count.Until, now)
		}
	}
	return nil
}

// maxStrays bounds the leases kept to give back; beyond it, their TTL frees
// them.
const maxStrays = 1 << 16

// stray notes that Redis may hold the slot k under lease for a decision
// answered locally (its call failed after it was sent), to be given back
// when Redis answers again.
func (s *Store) stray(k policy.Key, lease string) {
	s.strayMu.Lock()
	defer s.strayMu.Unlock()
	if len(s.strays) < maxStrays {
		s.strays = append(s.strays, strayLease{s.key('s', k), lease})
	}
}

// strayLease is a slot's key in Redis and its lease.
type strayLease struct{ key, lease string }

// releaseStrays gives back the slots noted by stray, in one pipelined round
// trip. A decision reaching Redis after this takes nothing (its deadline has
// passed), so none can take its slot again.
func (s *Store) releaseStrays(ctx context.Context) error {
	s.strayMu.Lock()
	strays := s.strays
	s.strays = nil
	s.strayMu.Unlock()
	if len(strays) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.AdminTimeout)
	defer cancel()
	pipe := s.c.Pipeline()
	for _, st := range strays {
		pipe.ZRem(ctx, st.key, st.lease)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.strayMu.Lock()
		s.strays = append(strays, s.strays...) // tried again next time
		s.strayMu.Unlock()
		return fmt.Errorf("redis %s: give back slots: %w", s.url, err)
	}
	return nil
}

// newToken returns a push's token.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
