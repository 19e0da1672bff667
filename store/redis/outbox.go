package redis

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/alerts"
)

var _ alerts.Outbox = (*Outbox)(nil)

var (
	// outboxAddScript adds entries unless their ids were seen
	// (outbox_add.lua).
	//go:embed outbox_add.lua
	outboxAddSrc    string
	outboxAddScript = goredis.NewScript(outboxAddSrc)

	// outboxClaimScript takes due entries and hides them for a lease, in
	// one step, so that replicas never claim one entry together
	// (outbox_claim.lua).
	//go:embed outbox_claim.lua
	outboxClaimSrc    string
	outboxClaimScript = goredis.NewScript(outboxClaimSrc)

	// outboxRetryScript makes an entry due again (outbox_retry.lua).
	//go:embed outbox_retry.lua
	outboxRetrySrc    string
	outboxRetryScript = goredis.NewScript(outboxRetrySrc)
)

// Outbox is the outbox of quota events (alerts.Outbox) that the replicas
// sharing the Redis share: an entry added by any of them is delivered by
// one of them at a time (Claim's lease), whichever claims it first.
//
// Keys, under the store's prefix (one Cluster slot with the default):
//   - outbox: a hash of entry key (alerts.EntryKey) → the entry
//     (alerts.MarshalEntry);
//   - outbox-attempts: a hash of entry key → its failed attempts;
//   - outbox-due: a sorted set of entry keys by when they are due (Unix ms);
//   - outbox-created: a sorted set of entry keys by when they were added;
//   - outbox-seen:KEY: set by the first Add of entry KEY, kept for its keep,
//     so that the Adds of the other replicas and of a restart are no-ops.
//
// The times are the callers' (Claim's now, Retry's next, the event's time),
// in milliseconds: replicas' clocks that differ by less than a lease do no
// harm.
type Outbox struct {
	s                                           *Store
	entriesKey, attemptsKey, dueKey, createdKey string
}

// Outbox returns the store's outbox. It closes with the store.
func (s *Store) Outbox() *Outbox {
	p := s.opts.Prefix
	return &Outbox{s: s, entriesKey: p + "outbox", attemptsKey: p + "outbox-attempts", dueKey: p + "outbox-due", createdKey: p + "outbox-created"}
}

// Add implements alerts.Outbox.
func (o *Outbox) Add(ctx context.Context, e alerts.Event, keep time.Duration) (bool, error) {
	if len(e.Sinks) == 0 {
		return false, nil
	}
	keys := []string{o.entriesKey, o.attemptsKey, o.dueKey, o.createdKey}
	args := []any{e.Time.UnixMilli(), max(keep.Milliseconds(), 1)}
	for _, sink := range e.Sinks {
		rec, err := alerts.MarshalEntry(e, sink)
		if err != nil {
			return false, err
		}
		field := alerts.EntryKey(e.ID, sink)
		keys = append(keys, o.s.opts.Prefix+"outbox-seen:"+field)
		args = append(args, field, rec)
	}
	n, err := outboxAddScript.Run(ctx, o.s.c, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("redis %s: outbox: add: %w", o.s.url, err)
	}
	return n == 1, nil
}

// Claim implements alerts.Outbox.
func (o *Outbox) Claim(ctx context.Context, now time.Time, n int, lease time.Duration) ([]alerts.Pending, error) {
	vals, err := outboxClaimScript.Run(ctx, o.s.c, []string{o.entriesKey, o.attemptsKey, o.dueKey},
		now.UnixMilli(), n, now.Add(lease).UnixMilli()).Slice()
	if err != nil {
		return nil, fmt.Errorf("redis %s: outbox: claim: %w", o.s.url, err)
	}
	out := make([]alerts.Pending, 0, len(vals)/2)
	var errs []error
	for i := 0; i+1 < len(vals); i += 2 {
		rec, _ := vals[i].(string)
		attempts, _ := vals[i+1].(int64)
		p, err := alerts.UnmarshalEntry([]byte(rec), int(attempts))
		if err != nil {
			// Claimed all the same: it comes back after each lease,
			// and is reported each time, until someone removes it.
			errs = append(errs, fmt.Errorf("redis %s: outbox: claim: %w", o.s.url, err))
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// Done implements alerts.Outbox.
func (o *Outbox) Done(ctx context.Context, id, sink string) error {
	field := alerts.EntryKey(id, sink)
	_, err := o.s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HDel(ctx, o.entriesKey, field)
		p.HDel(ctx, o.attemptsKey, field)
		p.ZRem(ctx, o.dueKey, field)
		p.ZRem(ctx, o.createdKey, field)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis %s: outbox: done: %w", o.s.url, err)
	}
	return nil
}

// Retry implements alerts.Outbox.
func (o *Outbox) Retry(ctx context.Context, id, sink string, next time.Time) error {
	err := outboxRetryScript.Run(ctx, o.s.c, []string{o.entriesKey, o.attemptsKey, o.dueKey},
		alerts.EntryKey(id, sink), next.UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("redis %s: outbox: retry: %w", o.s.url, err)
	}
	return nil
}

// Stats implements alerts.Outbox.
func (o *Outbox) Stats(ctx context.Context) (int, time.Time, error) {
	var card *goredis.IntCmd
	var first *goredis.ZSliceCmd
	_, err := o.s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		card = p.ZCard(ctx, o.createdKey)
		first = p.ZRangeWithScores(ctx, o.createdKey, 0, 0)
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("redis %s: outbox: stats: %w", o.s.url, err)
	}
	var oldest time.Time
	if z := first.Val(); len(z) > 0 {
		oldest = time.UnixMilli(int64(z[0].Score))
	}
	return int(card.Val()), oldest, nil
}
