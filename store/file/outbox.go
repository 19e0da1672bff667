package file

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/alerts"
)

var _ alerts.Outbox = (*Outbox)(nil)

// Outbox is the store's outbox of quota events (alerts.Outbox), in its
// database: every Add, Claim, Done and Retry is a transaction of its own,
// on disk when it returns, not on the flush interval. Events are rare, and
// one seen before a crash must still be sent after it.
//
// Buckets:
//   - outbox: entry key (alerts.EntryKey) → when it is due (8 bytes), its
//     failed attempts (4 bytes) and the entry (alerts.MarshalEntry);
//   - outbox-due: when due and entry key → nothing, for claims in due order;
//   - outbox-seen: entry key → until when a second Add is a no-op;
//   - outbox-until: that instant and entry key → nothing, to prune in order.
type Outbox struct{ s *Store }

var (
	bucketOutbox      = []byte("outbox")
	bucketOutboxDue   = []byte("outbox-due")
	bucketOutboxSeen  = []byte("outbox-seen")
	bucketOutboxUntil = []byte("outbox-until")
)

// pruneBatch bounds the ended ids an Add forgets, so that an Add after a
// long pause stays short; the next Adds take the rest.
const pruneBatch = 256

// Outbox returns the store's outbox. Its buckets are made by its first
// write; it closes with the store.
func (s *Store) Outbox() *Outbox { return &Outbox{s} }

// outboxBuckets are the outbox's buckets in a writable transaction.
type outboxBuckets struct{ entries, due, seen, until *bolt.Bucket }

func openOutbox(tx *bolt.Tx) (outboxBuckets, error) {
	var b outboxBuckets
	var errs [4]error
	b.entries, errs[0] = tx.CreateBucketIfNotExists(bucketOutbox)
	b.due, errs[1] = tx.CreateBucketIfNotExists(bucketOutboxDue)
	b.seen, errs[2] = tx.CreateBucketIfNotExists(bucketOutboxSeen)
	b.until, errs[3] = tx.CreateBucketIfNotExists(bucketOutboxUntil)
	return b, errors.Join(errs[:]...)
}

// update runs fn in a writable transaction, with the error said as the
// store's.
func (o *Outbox) update(what string, fn func(outboxBuckets) error) error {
	err := o.s.db.Update(func(tx *bolt.Tx) error {
		b, err := openOutbox(tx)
		if err != nil {
			return err
		}
		return fn(b)
	})
	if err != nil {
		return fmt.Errorf("file store %s: outbox: %s: %w", o.s.path, what, err)
	}
	return nil
}

// Add implements alerts.Outbox.
func (o *Outbox) Add(_ context.Context, e alerts.Event, keep time.Duration) (bool, error) {
	recs := make([][]byte, len(e.Sinks))
	for i, sink := range e.Sinks {
		var err error
		if recs[i], err = alerts.MarshalEntry(e, sink); err != nil {
			return false, err
		}
	}
	added := false
	err := o.update("add", func(b outboxBuckets) error {
		if err := pruneSeen(b, e.Time); err != nil {
			return err
		}
		until := e.Time.Add(keep)
		for i, sink := range e.Sinks {
			k := []byte(alerts.EntryKey(e.ID, sink))
			if v := b.seen.Get(k); v != nil && decodeInstant(v).After(e.Time) {
				continue
			}
			if err := forget(b, k); err != nil {
				return err
			}
			if err := errors.Join(
				b.seen.Put(k, encodeInstant(until)),
				b.until.Put(indexKey(until, k), nil),
				putEntry(b, k, e.Time, 0, recs[i]),
			); err != nil {
				return err
			}
			added = true
		}
		return nil
	})
	return added, err
}

// pruneSeen forgets up to pruneBatch ids kept until now or before.
func pruneSeen(b outboxBuckets, now time.Time) error {
	c := b.until.Cursor()
	var ended [][]byte
	for ik, _ := c.First(); ik != nil && len(ended) < pruneBatch; ik, _ = c.Next() {
		if len(ik) < 8 || decodeInstant(ik).After(now) {
			break
		}
		ended = append(ended, bytes.Clone(ik))
	}
	for _, ik := range ended {
		if err := errors.Join(b.until.Delete(ik), b.seen.Delete(ik[8:])); err != nil {
			return err
		}
	}
	return nil
}

// forget removes what an ended id of key k left in the seen index.
func forget(b outboxBuckets, k []byte) error {
	v := b.seen.Get(k)
	if v == nil {
		return nil
	}
	return errors.Join(b.until.Delete(indexKey(decodeInstant(v), k)), b.seen.Delete(k))
}

// putEntry writes entry k, due at due, replacing its place in the due index.
func putEntry(b outboxBuckets, k []byte, due time.Time, attempts uint32, rec []byte) error {
	if old := b.entries.Get(k); len(old) >= 12 {
		if err := b.due.Delete(indexKey(decodeInstant(old), k)); err != nil {
			return err
		}
	}
	v := make([]byte, 12, 12+len(rec))
	copy(v, encodeInstant(due))
	binary.BigEndian.PutUint32(v[8:], attempts)
	v = append(v, rec...)
	return errors.Join(b.entries.Put(k, v), b.due.Put(indexKey(due, k), nil))
}

// Claim implements alerts.Outbox.
func (o *Outbox) Claim(_ context.Context, now time.Time, n int, lease time.Duration) ([]alerts.Pending, error) {
	// A look first: a writable transaction syncs the file even when it
	// changes nothing, and the Deliverer claims every second.
	var due bool
	err := o.s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketOutboxDue); b != nil {
			ik, _ := b.Cursor().First()
			due = ik != nil && (len(ik) < 8 || !decodeInstant(ik).After(now))
		}
		return nil
	})
	if err != nil || !due {
		return nil, err
	}
	var out []alerts.Pending
	var bad []error
	err = o.update("claim", func(b outboxBuckets) error {
		out, bad = out[:0], bad[:0]
		var lines [][]byte // of the due index
		c := b.due.Cursor()
		for ik, _ := c.First(); ik != nil && len(lines) < n; ik, _ = c.Next() {
			if len(ik) < 8 || decodeInstant(ik).After(now) {
				break
			}
			lines = append(lines, bytes.Clone(ik))
		}
		for _, ik := range lines {
			k := ik[8:]
			v := b.entries.Get(k)
			if len(v) < 12 {
				// A line without its entry: drop it.
				if err := b.due.Delete(ik); err != nil {
					return err
				}
				continue
			}
			attempts := binary.BigEndian.Uint32(v[8:12])
			rec := bytes.Clone(v[12:])
			if err := putEntry(b, k, now.Add(lease), attempts, rec); err != nil {
				return err
			}
			p, err := alerts.UnmarshalEntry(rec, int(attempts))
			if err != nil {
				// Claimed all the same: it comes back after each
				// lease, and is reported each time, until someone
				// removes it.
				bad = append(bad, fmt.Errorf("file store %s: outbox: claim: entry %q: %w", o.s.path, k, err))
				continue
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, errors.Join(bad...)
}

// Done implements alerts.Outbox.
func (o *Outbox) Done(_ context.Context, id, sink string) error {
	k := []byte(alerts.EntryKey(id, sink))
	return o.update("done", func(b outboxBuckets) error {
		v := b.entries.Get(k)
		if len(v) < 12 {
			return nil
		}
		return errors.Join(b.due.Delete(indexKey(decodeInstant(v), k)), b.entries.Delete(k))
	})
}

// Retry implements alerts.Outbox.
func (o *Outbox) Retry(_ context.Context, id, sink string, next time.Time) error {
	k := []byte(alerts.EntryKey(id, sink))
	return o.update("retry", func(b outboxBuckets) error {
		v := b.entries.Get(k)
		if len(v) < 12 {
			return nil
		}
		return putEntry(b, k, next, binary.BigEndian.Uint32(v[8:12])+1, bytes.Clone(v[12:]))
	})
}

// Stats implements alerts.Outbox. It reads every entry: there are few.
func (o *Outbox) Stats(context.Context) (int, time.Time, error) {
	var n int
	var oldest time.Time
	err := o.s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) < 12 {
				return nil
			}
			p, err := alerts.UnmarshalEntry(v[12:], 0)
			if err != nil {
				return fmt.Errorf("entry %q: %w", k, err)
			}
			n++
			if oldest.IsZero() || p.Created.Before(oldest) {
				oldest = p.Created
			}
			return nil
		})
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("file store %s: outbox: stats: %w", o.s.path, err)
	}
	return n, oldest, nil
}

// encodeInstant encodes t as 8 bytes that sort as the instants do: Unix
// nanoseconds, big-endian, sign bit flipped.
func encodeInstant(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^1<<63)
}

func decodeInstant(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^1<<63))
}

// indexKey is the key of entry k at t in an index ordered by instant.
func indexKey(t time.Time, k []byte) []byte { return append(encodeInstant(t), k...) }
