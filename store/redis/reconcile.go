package redis

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

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

// pushScript adds ARGV[2], ARGV[4], ... to field u of the counters KEYS[2],
// KEYS[3], ..., a counter without an expiry (a new one) expiring at ARGV[3],
// ARGV[5], ... (Unix ms), unless the token KEYS[1] was seen (it is kept
// ARGV[1] ms); 1 when it applied. A count never goes below 0.
var pushScript = goredis.NewScript(`
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
for i = 2, #KEYS do
  if redis.call('HINCRBY', KEYS[i], 'u', ARGV[2 * i - 2]) < 0 then
    redis.call('HSET', KEYS[i], 'u', 0)
  end
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i - 1])
  end
end
return 1`)

// push is a push that was tried and may or may not have applied: it is
// tried again as it is, with its token.
type push struct {
	token string
	items []memory.Change // Count.Used is what the counter owes
}

// reconcile adds to Redis what the local store counted that Redis does not
// hold, as far as the store's journal shows at the call. A push that failed
// stays pending and goes first next time, as it was.
func (s *Store) reconcile() error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	if len(s.pending) == 0 {
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
		if err := s.sendPush(s.pending[0]); err != nil {
			return err
		}
		s.pending[0] = nil
		s.pending = s.pending[1:]
	}
	return nil
}

// sendPush makes one push call and, when it applied (now or before), records
// in the local store that Redis holds what it carried.
func (s *Store) sendPush(p *push) error {
	keys := make([]string, 0, 1+len(p.items))
	args := make([]any, 0, 1+2*len(p.items))
	keys = append(keys, s.opts.Prefix+"pushed:"+p.token)
	args = append(args, pushTokenTTL.Milliseconds())
	for _, c := range p.items {
		keys = append(keys, s.key('c', c.Key))
		args = append(args, c.Count.Used, c.Count.Until.Add(s.opts.Retention).UnixMilli())
	}
	ctx, cancel := s.adminCall()
	defer cancel()
	if err := pushScript.Run(ctx, s.c, keys, args...).Err(); err != nil {
		return fmt.Errorf("redis %s: add the counts made locally: %w", s.url, err)
	}
	for _, c := range p.items {
		s.local.mem.Grant(c.Key, c.Count.Used, c.Count.Until)
		s.local.views.add(c.Key, c.Count.Used)
	}
	return nil
}

// newToken returns a push's token.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
