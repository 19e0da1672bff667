package redis

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/keyjson"
)

// Key lookups that arrive together share a call, as decisions do
// (batch.go): a lookup that finds none in flight makes its call at once;
// while one is in flight, lookups queue, and the lookup sender takes all
// of those waiting (up to maxLookups) into the next call. The key cache
// (keycache.go) answers most lookups, so these are its misses: a new key,
// an answer that ran out, and a flood of made-up keys, each of which would
// otherwise be a call (a round trip, and Redis's work on a call) of its own.
const (
	maxLookups    = 64
	lookupQueueLn = 1024
)

// lookup is one key lookup on its way to Redis.
type lookup struct {
	hash     [sha256.Size]byte
	key      *policy.APIKey
	err      error
	deadline time.Time     // when its caller gives up, if it waits for the sender
	done     chan struct{} // closed when key and err are set
}

// lookups is a Store's queue of lookups and the count of lookup calls in
// flight.
type lookups struct {
	queue    chan *lookup
	inflight atomic.Int32
}

// lookupKey looks the key up in Redis within the decision budget: in a
// call of its own when no lookup is in flight, else in the next call of the
// lookup sender.
func (s *Store) lookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	if s.open.Load() {
		return nil, ErrUnavailable
	}
	if s.lookups.inflight.CompareAndSwap(0, 1) {
		l := &lookup{hash: hash}
		s.lookupMany([]*lookup{l})
		s.lookups.inflight.Add(-1)
		return l.key, l.err
	}
	l := &lookup{hash: hash, deadline: time.Now().Add(s.opts.Timeout), done: make(chan struct{})}
	t := time.NewTimer(s.opts.Timeout)
	defer t.Stop()
	select {
	case s.lookups.queue <- l:
	case <-t.C:
		return nil, fmt.Errorf("redis %s: look up key: %w", s.url, context.DeadlineExceeded)
	case <-s.done:
		return nil, s.errClosed
	}
	select {
	case <-l.done:
		return l.key, l.err
	case <-t.C:
		return nil, fmt.Errorf("redis %s: look up key: %w", s.url, context.DeadlineExceeded)
	case <-s.done:
		return nil, s.errClosed
	}
}

// sendLookups is the lookup sender: it takes the lookups waiting into one
// call, until the Store closes. Those whose callers gave up are not sent
// (a sender behind its queue would otherwise spend its calls on them, and
// the live ones behind them would run out of time too).
func (s *Store) sendLookups() {
	var batch, live []*lookup
	for {
		select {
		case <-s.done:
			return
		case l := <-s.lookups.queue:
			batch = append(batch[:0], l)
		}
		batch = takeWaiting(s.lookups.queue, batch, maxLookups)
		// Closed (the sender may take lookups after Close), or the
		// circuit is open: no call, as for decisions (batch.go).
		stop := s.callsStopped()
		now := time.Now()
		live = live[:0]
		for _, l := range batch {
			if stop != nil {
				l.err = stop
			} else if now.Before(l.deadline) {
				live = append(live, l)
			} else {
				// Its caller's timer may not have fired yet: an
				// answer of none would be kept as such.
				l.err = fmt.Errorf("redis %s: look up key: %w", s.url, context.DeadlineExceeded)
			}
		}
		if len(live) > 0 {
			s.lookups.inflight.Add(1)
			s.lookupMany(live)
			s.lookups.inflight.Add(-1)
		}
		for _, l := range batch {
			close(l.done)
		}
		clear(batch)
		clear(live)
	}
}

// lookupMany looks the keys of ls up in one call (on a cluster, a GET of
// each lookup copy, pipelined: a round trip to each primary at once) and
// sets each one's key or error.
func (s *Store) lookupMany(ls []*lookup) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	texts := make([]string, len(ls))
	for i, l := range ls {
		texts[i] = policy.KeyHashText(l.hash)
	}
	recs, errs, err := s.lookupRecords(ctx, texts)
	s.called(err, 1)
	for i, l := range ls {
		if errs[i] != nil {
			l.err = fmt.Errorf("redis %s: look up key: %w", s.url, errs[i])
			continue
		}
		if recs[i] == "" {
			continue
		}
		k, err := keyjson.Decode([]byte(recs[i]))
		switch {
		case err != nil:
			l.err = fmt.Errorf("redis %s: key record: %w", s.url, err)
		case policy.KeyHashText(k.Hash) == texts[i]:
			l.key = k // a record can never lend another key's
		}
	}
}

// lookupRecords returns the record of each hash ("": none) or the error of
// its read, and the first error.
func (s *Store) lookupRecords(ctx context.Context, texts []string) ([]string, []error, error) {
	recs := make([]string, len(texts))
	errs := make([]error, len(texts))
	if s.spread {
		pipe := s.c.Pipeline()
		cmds := make([]*goredis.StringCmd, len(texts))
		for i, t := range texts {
			cmds[i] = pipe.Get(ctx, s.copyKey(t))
		}
		// Each GET's error is its own (a node may fail, or answer an
		// error, while the others answer): Exec's is only the first
		// one's, which may be a none.
		pipe.Exec(ctx)
		var first error
		for i, c := range cmds {
			switch err := c.Err(); {
			case err == nil:
				recs[i] = c.Val()
			case !errors.Is(err, goredis.Nil):
				errs[i], first = err, cmp.Or(first, err)
			}
		}
		return recs, errs, first
	}
	args := make([]any, len(texts))
	for i, t := range texts {
		args[i] = t
	}
	v, err := lookupKeyScript.Run(ctx, s.c, []string{s.keysKey, s.byHashKey}, args...).Slice()
	if err == nil && len(v) != len(texts) {
		err = errBadReply
	}
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return recs, errs, err
	}
	for i, x := range v {
		recs[i], _ = x.(string)
	}
	return recs, errs, nil
}
