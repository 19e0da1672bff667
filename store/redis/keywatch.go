package redis

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Each change to the run-time keys is announced on the channel changesKey
// with a tag unique to the change (this replica's id and a count). Every
// replica clears its key cache when it hears another's, so that a change
// made through any replica is seen by the others at once. Its own changes it
// has cleared for already when the call returned: it skips their
// announcements, which would only clear, again, answers read after the
// change. A call that failed may still have made its change: its
// announcement is heard as if another replica's, or, heard before the call
// returned, clears the cache then (ended).

// ownChanges holds the tags of this Store's changes whose announcement is
// still to be skipped.
type ownChanges struct {
	prefix string // this replica's id and "#"
	n      atomic.Uint64
	mu     sync.Mutex
	tags   map[string]struct{}
}

// begin returns the tag of a change about to be made, to be skipped when
// its announcement is heard.
func (o *ownChanges) begin() string {
	tag := o.prefix + strconv.FormatUint(o.n.Add(1), 10)
	o.mu.Lock()
	if len(o.tags) >= maxOwnChanges {
		// Announcements that never came back (a message dropped by a
		// full channel) would otherwise stay here for good; forgetting
		// them costs at most a purge of the cache each when heard.
		clear(o.tags)
	}
	o.tags[tag] = struct{}{}
	o.mu.Unlock()
	return tag
}

// maxOwnChanges bounds the tags waiting for their announcement.
const maxOwnChanges = 4096

// take forgets the tag and reports whether it was there: for the watcher,
// whether the announcement is one of this Store's to skip; for the caller of
// a change, whether its announcement was not heard yet.
func (o *ownChanges) take(tag string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.tags[tag]
	delete(o.tags, tag)
	return ok
}

// forget forgets every tag (the subscription was made again: what was
// announced meanwhile is lost, and the cache is cleared anyway).
func (o *ownChanges) forget() {
	o.mu.Lock()
	clear(o.tags)
	o.mu.Unlock()
}

// ended clears the key cache after a call that announces its change with
// tag: when it changed a key, or when it failed and its announcement was
// heard meanwhile (the change was made, the reply lost). A call that failed
// before its announcement was heard leaves it to be heard as another's.
func (s *Store) ended(tag string, changed bool, err error) {
	switch {
	case err == nil && changed:
		s.keys.invalidate() // the announcement is skipped when heard
	case err == nil:
		s.mine.take(tag) // nothing changed, nothing announced
	case !s.mine.take(tag):
		s.keys.invalidate()
	}
}

// subscribe subscribes to the announcements of key changes and waits until
// Redis confirms, so that every change announced after it returns is heard
// (Open calls it when Redis answers, with its own deadline).
func (s *Store) subscribe(ctx context.Context) *goredis.PubSub {
	sub := s.c.Subscribe(ctx, s.changesKey)
	// An error is made up for: the subscription is made again, and its
	// confirmation clears the cache (watchKeys).
	sub.Receive(ctx)
	return sub
}

// watchKeys clears the key cache whenever another replica sharing the store
// announces a change to a run-time key, and when the subscription is made
// again after a lost connection (changes may have been missed), until ctx is
// done. It subscribes, unless sub is a subscription already made, and closes
// the subscription when it returns.
func (s *Store) watchKeys(ctx context.Context, sub *goredis.PubSub) {
	if sub == nil {
		sub = s.c.Subscribe(ctx, s.changesKey)
	}
	defer sub.Close()
	// Subscription messages come with every (re)subscription: a change
	// may have been missed while the connection was down.
	ch := sub.ChannelWithSubscriptions(goredis.WithChannelHealthCheckInterval(time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *goredis.Message:
				if s.mine.take(m.Payload) {
					continue
				}
			case *goredis.Subscription:
				s.mine.forget()
			}
			s.keys.invalidate()
		}
	}
}
