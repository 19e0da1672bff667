package redis

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/keyjson"
)

// Lookup copies of the run-time keys, on a cluster.
//
// The run-time keys are kept on the prefix's slot (keys.go): the admin
// API's changes are atomic there, checked against the version they read,
// and their orders page there. A decision's lookup, though, would then put
// every cache miss (a new key, a bad one, a key whose cached answer ran
// out) on that one primary. So on a cluster each key also has a lookup
// copy on the slot of its hash (copyKey), the one thing a lookup knows, and
// LookupKey reads that: one GET, spread over the primaries.
//
// A change writes the keys hash first, and in the same atomic step adds
// "id NUL old hash" to the set of copies to make (copiesKey); then the
// copy is written (or deleted), and the entry leaves the set only when the
// key's record is still the one copied (copied.lua), else the copy is made
// again. The change is announced after its copy, so that no replica
// caches the old copy on the announcement. A copy that fails is made by
// the next heartbeat of any replica, which announces it: an entry stays in
// the set until its copy is made. Until then a lookup may see the key as it
// was before the change, as the key cache may for up to KeyCacheTTL anyway.
// A store with layout=one-slot reads no copy and makes none, but once a
// store that spreads began to make them (copyAll), its changes note theirs
// all the same, for such a store to make.

var (
	// copiedScript removes an entry from the set of copies to make when
	// the record copied is still the key's.
	//go:embed copied.lua
	copiedSrc    string
	copiedScript = goredis.NewScript(copiedSrc)
)

// copyKey returns the Redis key of the lookup copy of the key with the
// hash (its text, "sha256:..."), on the slot of the hash.
func (s *Store) copyKey(hashText string) string {
	b := []byte(s.statePrefix)
	b = appendHome(b, 'k', policy.Key{Subject: hashText})
	return string(append(append(b, "key:"...), hashText...))
}

// makeCopies makes the lookup copies the set names, each until its
// record is the key's, and returns how many it made and the first error. A
// copy that fails does not hold up the others (a node that refuses, a
// record that does not decode, wherever the set lists it), until ctx is
// done.
func (s *Store) makeCopies(ctx context.Context) (int, error) {
	entries, err := s.c.SMembers(ctx, s.copiesKey).Result()
	if err != nil {
		return 0, fmt.Errorf("redis %s: key copies: %w", s.url, err)
	}
	made := 0
	var first error
	for _, e := range entries {
		if ctx.Err() != nil {
			return made, cmp.Or(first, ctx.Err())
		}
		if err := s.makeCopy(ctx, e); err != nil {
			first = cmp.Or(first, err)
			continue
		}
		made++
	}
	return made, first
}

// maxCopyTries bounds the copies of one entry made while others change its
// key; the next heartbeat tries again.
const maxCopyTries = 5

// makeCopy makes the copy of one entry ("id NUL old hash"): the key's
// record at the copy of its hash, and none at its old hash's, until the
// record copied is still the key's.
//
// A try whose record changed before its copy was written may have written
// a copy that another change's copy work had already removed (a key deleted
// or re-hashed meanwhile), and that change's entry may be gone: the next
// try removes every copy this call wrote at a hash that is no longer the
// key's, and a call that gives up leaves an entry for each, so that the
// next heartbeat checks them.
func (s *Store) makeCopy(ctx context.Context, entry string) error {
	id, oldHash, _ := strings.Cut(entry, "\x00")
	gone := []string{oldHash} // hashes whose copy must not stay unless the key's
	for range maxCopyTries {
		rec, err := s.c.HGet(ctx, s.keysKey, id).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return fmt.Errorf("redis %s: key copy %q: %w", s.url, id, err)
		}
		hash := ""
		if rec != "" {
			k, err := keyjson.Decode([]byte(rec))
			if err != nil {
				return fmt.Errorf("redis %s: %s field %s: %w", s.url, s.keysKey, id, err)
			}
			hash = policy.KeyHashText(k.Hash)
			if !slices.Contains(gone, hash) {
				gone = append(gone, hash)
			}
			if err := s.c.Set(ctx, s.copyKey(hash), rec, 0).Err(); err != nil {
				return fmt.Errorf("redis %s: key copy %q: %w", s.url, id, err)
			}
		}
		for _, h := range gone {
			if h == "" || h == hash {
				continue
			}
			if err := s.c.Del(ctx, s.copyKey(h)).Err(); err != nil {
				return fmt.Errorf("redis %s: key copy %q: %w", s.url, id, err)
			}
		}
		done, err := copiedScript.Run(ctx, s.c, []string{s.keysKey, s.copiesKey}, id, rec, entry).Int()
		if err != nil {
			return fmt.Errorf("redis %s: key copy %q: %w", s.url, id, err)
		}
		if done == 1 {
			return nil
		}
	}
	// Changing still: the next heartbeat checks each copy this call wrote.
	left := make([]any, 0, len(gone))
	for _, h := range gone {
		if h != "" {
			left = append(left, id+"\x00"+h)
		}
	}
	if len(left) > 0 {
		if err := s.c.SAdd(ctx, s.copiesKey, left...).Err(); err != nil {
			return fmt.Errorf("redis %s: key copy %q: %w", s.url, id, err)
		}
	}
	return nil
}

// keyCopies makes the copies left to make, on a heartbeat, within an admin
// call's time: first those that changes left, then those of every key
// until the first start's copy is done (the repair of a change whose copy
// failed does not wait for that).
//
// The copies it makes are announced (with a tag no replica skips, this one
// included): their changes were announced before them, when their copy
// failed, and a replica may have read the copy as it was since.
func (s *Store) keyCopies() {
	ctx, cancel := context.WithTimeout(s.stop, s.opts.AdminTimeout)
	defer cancel()
	if made, _ := s.makeCopies(ctx); made > 0 {
		s.announce(s.mine.prefix + "copies")
	}
	s.copyAll(ctx)
}

// announce announces a change to the keys with its tag, in a call of its
// own: the copies made before may have taken all of theirs.
func (s *Store) announce(tag string) {
	ctx, cancel := context.WithTimeout(s.stop, s.opts.AdminTimeout)
	defer cancel()
	s.c.Publish(ctx, s.changesKey, tag)
}

// announceAfterCopies makes the copies of a change, then announces it with
// its tag ("": none). A copy that fails is left to the heartbeats; the
// change is announced all the same (replicas then read the copy as it is).
func (s *Store) announceAfterCopies(ctx context.Context, tag string) {
	s.makeCopies(ctx)
	if tag != "" {
		s.announce(tag)
	}
}

// The markers of copyAll (after the prefix): the copies of every key are
// made, or their making began.
const (
	copiesMadeKey  = "key-copies-made"
	copiesBegunKey = "key-copies-begun"
)

// copyAll makes the copies of every run-time key once, on the first start
// on a cluster (the marker key records it): keys saved before this
// version, or on one Redis, have none. Page by page, each key joins the set
// of copies to make, its copy is written, and it leaves the set when its
// record is still the one copied; the copy of a key that changed meanwhile
// is made again (copyPage).
func (s *Store) copyAll(ctx context.Context) error {
	if s.copiesMade.Load() {
		return nil
	}
	marker := s.opts.Prefix + copiesMadeKey
	if n, err := s.c.Exists(ctx, marker).Result(); err != nil || n == 1 {
		s.copiesMade.Store(n == 1)
		return err
	}
	// From here on, changes made with layout=one-slot note their copies.
	if err := s.c.Set(ctx, s.opts.Prefix+copiesBegunKey, "1", 0).Err(); err != nil {
		return fmt.Errorf("redis %s: key copies: %w", s.url, err)
	}
	// A call that runs out of time leaves its cursor to the next (the
	// heartbeat's), which goes on from there: a cluster whose keys take
	// longer to copy than one call's time has them all copied all the same.
	cursor := s.copyCursor.Load()
	for {
		kv, next, err := s.c.HScan(ctx, s.keysKey, cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("redis %s: key copies: %w", s.url, err)
		}
		if err := s.copyPage(ctx, kv); err != nil {
			return fmt.Errorf("redis %s: key copies: %w", s.url, err)
		}
		s.copyCursor.Store(next)
		if cursor = next; cursor == 0 {
			break
		}
	}
	if err := s.c.Set(ctx, marker, "1", 0).Err(); err != nil {
		return fmt.Errorf("redis %s: key copies: %w", s.url, err)
	}
	s.copiesMade.Store(true)
	return nil
}

// copyPage makes the copies of a page of the keys hash (id, record, ...),
// in three pipelined round trips. A key deleted or re-hashed after the page
// was read may have had its copy work done before this copy is written
// (and the entry removed with it): each entry names the hash copied, and
// the copy of a key whose record changed is made again at once (makeCopy),
// which removes the copy of that hash unless it is the key's.
func (s *Store) copyPage(ctx context.Context, kv []string) error {
	if len(kv) == 0 {
		return nil
	}
	entries := make([]any, 0, len(kv)/2)
	hashes := make([]string, 0, len(kv)/2)
	good := make([]string, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		k, err := keyjson.Decode([]byte(kv[i+1]))
		if err != nil {
			// No copy of a record that does not decode (a lookup
			// could not use it), and the keys after it get theirs.
			continue
		}
		good = append(good, kv[i], kv[i+1])
		hashes = append(hashes, policy.KeyHashText(k.Hash))
		entries = append(entries, kv[i]+"\x00"+hashes[len(hashes)-1])
	}
	if kv = good; len(kv) == 0 {
		return nil
	}
	if err := s.c.SAdd(ctx, s.copiesKey, entries...).Err(); err != nil {
		return err
	}
	pipe := s.c.Pipeline()
	for i := 0; i+1 < len(kv); i += 2 {
		pipe.Set(ctx, s.copyKey(hashes[i/2]), kv[i+1], 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	pipe = s.c.Pipeline()
	done := make([]*goredis.Cmd, len(entries))
	for i := 0; i+1 < len(kv); i += 2 {
		done[i/2] = copiedScript.EvalSha(ctx, pipe, []string{s.keysKey, s.copiesKey}, kv[i], kv[i+1], entries[i/2])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for i, d := range done {
		if n, _ := d.Int(); n != 1 {
			if err := s.makeCopy(ctx, entries[i].(string)); err != nil {
				return err
			}
		}
	}
	return nil
}
