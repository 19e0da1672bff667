package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/keyjson"
	"github.com/tollgate/tollgate/store/memory"
)

var _ policy.State = (*Store)(nil)
var _ policy.Keys = (*Store)(nil)

// DBName is the database file's name in the store's directory.
const DBName = "tollgate.db"

// Defaults of Options.
const (
	DefaultFlushInterval = time.Second
	// DefaultRetention is how long counters stay on disk after their
	// period (a quota) or day (usage history) has ended: 400 days, the
	// longest usage report.
	DefaultRetention = 400 * 24 * time.Hour
	// memoryUsageRetention is how long the decisions' memory keeps a
	// usage-history counter after its day; older days are read from disk.
	memoryUsageRetention = 24 * time.Hour
	// pruneEvery is how often a flush also deletes what has outlived the
	// retention.
	pruneEvery = time.Hour
	// lockTimeout bounds the wait for the database file's lock.
	lockTimeout = time.Second
)

// Options configure a Store.
type Options struct {
	// FlushInterval is the longest a changed counter waits in memory
	// before it is written (default DefaultFlushInterval).
	FlushInterval time.Duration
	// Retention is how long counters are kept on disk after their period
	// or day has ended (default DefaultRetention).
	Retention time.Duration
	// Now is the clock that decides what has ended (default time.Now).
	Now func() time.Time
	// OnFlush, when set, is called after every flush with the number of
	// counters written (0: nothing had changed), how long it took and its
	// error.
	OnFlush func(written int, took time.Duration, err error)
	// MaxCounters bounds the WAF rate counters kept in memory (default
	// memory.DefaultMaxCounters; see memory.WithMaxCounters).
	MaxCounters int
}

// Store is the file store. The zero Store is not usable; call Open.
type Store struct {
	mem  *memory.Store
	db   *bolt.DB
	path string
	opts Options

	// mu serializes writes of counters: the flusher's, Grant's, Close's.
	mu sync.Mutex
	// keyMu makes a key's check (is it still the one read?) and its write
	// one step.
	keyMu sync.Mutex
	// pending holds the counters handed out by the journal but not yet
	// written, because a write failed; the next flush retries them.
	pending   map[policy.Key]memory.Count
	changes   []memory.Change
	lastPrune time.Time
	// flushErr is the last flush's error, nil after a flush that worked.
	flushErr atomic.Pointer[error]

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Bucket names of the database.
var (
	bucketMeta     = []byte("meta")
	bucketCounters = []byte("counters")
	bucketKeys     = []byte("keys")
	metaFormat     = []byte("format")
)

// format is the version of the database's layout.
const format = "1"

// Open opens (creating it when needed) the store in dir, loads its run-time
// keys and the counters that have not ended into memory, and starts the
// flusher. Only one process can hold a directory: another one's Open fails
// after a second.
func Open(dir string, o Options) (*Store, error) {
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	path := filepath.Join(dir, DBName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("file store %s: in use by another process (its lock was not released within %v)", path, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("file store %s: %w", path, err)
	}
	if o.MaxCounters <= 0 {
		o.MaxCounters = memory.DefaultMaxCounters
	}
	s := &Store{
		mem:     memory.New(memory.WithJournal(), memory.WithUsageRetention(memoryUsageRetention), memory.WithMaxCounters(o.MaxCounters)),
		db:      db,
		path:    path,
		opts:    o,
		pending: make(map[policy.Key]memory.Count),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := s.load(o.Now()); err != nil {
		db.Close()
		return nil, fmt.Errorf("file store %s: %w", path, err)
	}
	go s.flusher()
	return s, nil
}

// load creates the buckets of a new database, checks the format of an old
// one and reads its keys and live counters into memory.
func (s *Store) load(now time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch f := meta.Get(metaFormat); {
		case f == nil:
			if err := meta.Put(metaFormat, []byte(format)); err != nil {
				return err
			}
		case string(f) != format:
			return fmt.Errorf("database format %q; this tollgate reads format %q", f, format)
		}
		for _, name := range [][]byte{bucketCounters, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		tx.Bucket(bucketKeys).ForEach(func(id, v []byte) error {
			k, err := keyjson.Decode(v)
			if err == nil && k.ID != string(id) {
				err = fmt.Errorf("holds id %q", k.ID)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("keys/%s: %w", id, err))
				return nil
			}
			s.mem.PutKey(k)
			return nil
		})
		tx.Bucket(bucketCounters).ForEach(func(kb, v []byte) error {
			k, err := decodeKey(kb)
			var c memory.Count
			if err == nil {
				c, err = decodeCount(v)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("counters/%x: %w", kb, err))
				return nil
			}
			if c.Until.After(now) {
				s.mem.Restore(k, c)
			}
			return nil
		})
		return errors.Join(errs...)
	})
}

// flusher writes the changed counters every FlushInterval until Close.
func (s *Store) flusher() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Flush()
		}
	}
}

// Flush writes every counter changed since the last flush, in one
// transaction, and once an hour deletes the counters that have outlived the
// retention. Counters whose write fails stay in memory for the next flush.
// The flusher calls it every FlushInterval; Close calls it a last time.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	s.changes = s.mem.Changes(s.changes[:0])
	for _, c := range s.changes {
		s.pending[c.Key] = c.Count
	}
	clear(s.changes) // drop the keys' strings
	prune := now.Sub(s.lastPrune) >= pruneEvery || now.Before(s.lastPrune)
	start := time.Now()
	n := len(s.pending)
	if n == 0 && !prune {
		s.flushErr.Store(nil)
		if s.opts.OnFlush != nil {
			s.opts.OnFlush(0, time.Since(start), nil)
		}
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCounters)
		// In key order, bbolt fills its pages one after the other.
		kvs := make([][2][]byte, 0, len(s.pending))
		for k, c := range s.pending {
			kvs = append(kvs, [2][]byte{encodeKey(k), encodeCount(c)})
		}
		slices.SortFunc(kvs, func(x, y [2][]byte) int { return bytes.Compare(x[0], y[0]) })
		for _, kv := range kvs {
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		if prune {
			return pruneCounters(b, now, s.opts.Retention)
		}
		return nil
	})
	if err == nil {
		clear(s.pending)
		if prune {
			s.lastPrune = now
		}
		s.flushErr.Store(nil)
	} else {
		err = fmt.Errorf("file store %s: write %d counters: %w", s.path, n, err)
		s.flushErr.Store(&err)
	}
	if s.opts.OnFlush != nil {
		s.opts.OnFlush(n, time.Since(start), err)
	}
	return err
}

// pruneCounters deletes the counters of b that ended more than retention
// before now. Keys begin with the period's start, and a counter never ends
// before its period starts, so the scan stops at the first period that
// started within the retention.
func pruneCounters(b *bolt.Bucket, now time.Time, retention time.Duration) error {
	cutoff := now.Add(-retention)
	c := b.Cursor()
	for kb, v := c.First(); kb != nil; {
		k, err := decodeKey(kb)
		if err != nil || k.Period > cutoff.Unix() {
			// An undecodable key was reported by Open; leave it.
			break
		}
		if cnt, err := decodeCount(v); err == nil && cnt.Until.Before(cutoff) {
			at := bytes.Clone(kb)
			if err := c.Delete(); err != nil {
				return err
			}
			kb, v = c.Seek(at) // the entry after the deleted one
			continue
		}
		kb, v = c.Next()
	}
	return nil
}

// Apply implements policy.State: it is the memory store's, and never waits
// on the disk.
func (s *Store) Apply(now time.Time, b *policy.Batch) error { return s.mem.Apply(now, b) }

// Release implements policy.State: concurrency slots live in memory only
// (requests in flight end with the process).
func (s *Store) Release(k policy.Key, lease string) error { return s.mem.Release(k, lease) }

// LookupKey implements policy.Keys, from memory.
func (s *Store) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	return s.mem.LookupKey(hash)
}

// SaveKey creates or replaces the run-time key k.ID when the key held under
// that id is prev (as memory.Store.SaveKey). It is on disk when SaveKey
// returns; a failed write changes nothing.
func (s *Store) SaveKey(k, prev *policy.APIKey) error {
	v, err := keyjson.Encode(k)
	if err != nil {
		return err
	}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if !s.mem.HoldsKey(k.ID, prev) {
		return policy.ErrKeyChanged
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKeys).Put([]byte(k.ID), v) }); err != nil {
		return fmt.Errorf("file store %s: save key %q: %w", s.path, k.ID, err)
	}
	s.mem.PutKey(k) // compared above, under keyMu
	return nil
}

// ImportKeys creates or replaces many run-time keys in one transaction,
// whatever they replace (tollgate load prepare); they are on disk when it
// returns.
func (s *Store) ImportKeys(keys []*policy.APIKey) error {
	recs := make([][]byte, len(keys))
	for i, k := range keys {
		var err error
		if recs[i], err = keyjson.Encode(k); err != nil {
			return err
		}
	}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		for i, k := range keys {
			if err := b.Put([]byte(k.ID), recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("file store %s: import %d keys: %w", s.path, len(keys), err)
	}
	for _, k := range keys {
		s.mem.PutKey(k)
	}
	return nil
}

// DeleteKey removes the run-time key with the id, from disk first, and
// reports whether there was one.
func (s *Store) DeleteKey(id string) (bool, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKeys).Delete([]byte(id)) }); err != nil {
		return false, fmt.Errorf("file store %s: delete key %q: %w", s.path, id, err)
	}
	return s.mem.DeleteKey(id)
}

// RuntimeKey returns the run-time key with the id, or nil.
func (s *Store) RuntimeKey(id string) (*policy.APIKey, error) { return s.mem.RuntimeKey(id) }

// RuntimeKeys returns the run-time keys, by id.
func (s *Store) RuntimeKeys() ([]*policy.APIKey, error) { return s.mem.RuntimeKeys() }

// KeysAfter returns at most limit run-time keys whose ids sort after after,
// in id order. Every key is in memory (they are read at Open, for lookups),
// so the page comes from the memory store's ordered index, not from a
// cursor over the database: O(log n + limit), see memory.Store.KeysAfter.
func (s *Store) KeysAfter(ctx context.Context, after string, limit int) ([]*policy.APIKey, error) {
	return s.mem.KeysAfter(ctx, after, limit)
}

// CustomerKeysAfter is memory.Store.CustomerKeysAfter, from memory.
func (s *Store) CustomerKeysAfter(ctx context.Context, customer, id string, limit int) ([]*policy.APIKey, error) {
	return s.mem.CustomerKeysAfter(ctx, customer, id, limit)
}

// WAFCounters returns the WAF rate counters held in memory and the number
// dropped to stay within Options.MaxCounters (memory.Store.WAFCounters).
func (s *Store) WAFCounters() (held int, dropped uint64) { return s.mem.WAFCounters() }

// Counter returns the state of a quota or usage counter: from memory while
// it is live, else from disk (the history).
func (s *Store) Counter(k policy.Key) (used, granted int64, err error) {
	if c, ok := s.mem.Lookup(k); ok {
		return c.Used, c.Granted, nil
	}
	s.mu.Lock()
	c, ok := s.pending[k]
	s.mu.Unlock()
	if ok {
		return c.Used, c.Granted, nil
	}
	if c, _, err = s.read(k); err != nil {
		return 0, 0, fmt.Errorf("file store %s: read counter: %w", s.path, err)
	}
	return c.Used, c.Granted, nil
}

// read returns the counter k as written on disk, and whether there is one.
func (s *Store) read(k policy.Key) (c memory.Count, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCounters).Get(encodeKey(k))
		if v == nil {
			return nil
		}
		ok = true
		c, err = decodeCount(v)
		return err
	})
	return c, ok, err
}

// Grant adds n to the grant of the quota counter k, whose period ends at
// end. The grant is on disk when Grant returns; a failed write changes
// nothing.
func (s *Store) Grant(k policy.Key, n int64, end time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.mem.Lookup(k)
	if !ok {
		// Not live: a counter of a period that ended (or none yet).
		// Count on from what was written, not from zero.
		if c, ok = s.pending[k]; !ok {
			var err error
			if c, ok, err = s.read(k); err != nil {
				return fmt.Errorf("file store %s: grant: %w", s.path, err)
			}
		}
		if ok {
			s.mem.Restore(k, c)
		}
	}
	c.Granted += n
	c.Until = maxTime(c.Until, end)
	// Used is the count now; the next flush writes any later one, since
	// the grant lists the counter as changed again.
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCounters).Put(encodeKey(k), encodeCount(c)) })
	if err != nil {
		return fmt.Errorf("file store %s: grant: %w", s.path, err)
	}
	delete(s.pending, k)
	return s.mem.Grant(k, n, end)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Ready reports the last flush's error, so that a disk that fails shows in
// readiness; nil when the last flush worked.
func (s *Store) Ready(ctx context.Context) error {
	if p := s.flushErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Close stops the flusher, writes what is still in memory and closes the
// database. Calls after the first return the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		err := s.Flush()
		s.closeErr = errors.Join(err, s.db.Close())
	})
	return s.closeErr
}
