package redis

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/keyjson"
)

// The scripts of the run-time keys; the KEYS of those that change one are
// keyKeys.
var (
	// saveKeyScript replaces a key and announces it, unless it changed;
	// an import's keys are replaced whatever they replace, unannounced.
	//go:embed save_key.lua
	saveKeySrc    string
	saveKeyScript = goredis.NewScript(saveKeySrc)

	// deleteKeyScript removes a key and announces it.
	//go:embed delete_key.lua
	deleteKeySrc    string
	deleteKeyScript = goredis.NewScript(deleteKeySrc)

	// lookupKeyScript returns the record of the key with a hash.
	//go:embed lookup_key.lua
	lookupKeySrc    string
	lookupKeyScript = goredis.NewScript(lookupKeySrc)
)

// keyKeys returns the Redis keys of the scripts that change run-time keys:
// on a cluster, the set of copies to make too, and with layout=one-slot
// the markers of copyAll, without which no key has a copy to make.
func (s *Store) keyKeys() []string {
	switch {
	case s.spread:
		return []string{s.keysKey, s.byHashKey, s.changesKey, s.keyIDsKey, s.keyCustomersKey, s.copiesKey}
	case s.noteCopies:
		return []string{s.keysKey, s.byHashKey, s.changesKey, s.keyIDsKey, s.keyCustomersKey, s.copiesKey,
			s.opts.Prefix + copiesMadeKey, s.opts.Prefix + copiesBegunKey}
	}
	return []string{s.keysKey, s.byHashKey, s.changesKey, s.keyIDsKey, s.keyCustomersKey}
}

// scriptTag returns the tag a key script announces its change with: none
// on a cluster, where the change is announced after its lookup copy
// (keycopies.go).
func (s *Store) scriptTag(tag string) string {
	if s.spread {
		return ""
	}
	return tag
}

// LookupKey implements policy.Keys: from the key cache (keycache.go), or
// else in one call, within the decision budget.
func (s *Store) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	return s.keys.LookupKey(hash)
}

// SaveKey creates or replaces the run-time key k.ID, in one atomic step,
// when the record held under that id is prev's (as RuntimeKeys decoded it;
// nil: none), else it returns policy.ErrKeyChanged: two replicas' admin
// calls on one key cannot both win. The next lookup sees the change.
func (s *Store) SaveKey(k, prev *policy.APIKey) error {
	rec, err := keyjson.Encode(k)
	if err != nil {
		return err
	}
	var want []byte
	if prev != nil {
		if want, err = keyjson.Encode(prev); err != nil {
			return err
		}
	}
	ctx, cancel := s.adminCall()
	defer cancel()
	tag := s.mine.begin()
	n, err := saveKeyScript.Run(ctx, s.c, s.keyKeys(), k.ID, rec, policy.KeyHashText(k.Hash), want, k.Customer, s.scriptTag(tag)).Int()
	if s.spread && n == 1 {
		s.announceAfterCopies(ctx, tag)
	}
	s.ended(tag, n == 1, err)
	if err != nil {
		return fmt.Errorf("redis %s: save key %q: %w", s.url, k.ID, err)
	}
	if n == 0 {
		return policy.ErrKeyChanged
	}
	return nil
}

// ImportKeys creates or replaces many run-time keys, whatever they
// replace, in one pipelined round trip (tollgate load prepare). Other
// replicas are told once, at the end. The next lookup sees the keys.
func (s *Store) ImportKeys(keys []*policy.APIKey) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.AdminTimeout+time.Duration(len(keys))*time.Millisecond)
	defer cancel()
	pipe := s.c.Pipeline()
	for _, k := range keys {
		rec, err := keyjson.Encode(k)
		if err != nil {
			return err
		}
		saveKeyScript.EvalSha(ctx, pipe, s.keyKeys(), k.ID, rec, policy.KeyHashText(k.Hash), "*", k.Customer, "")
	}
	tag := s.mine.begin()
	if !s.spread {
		pipe.Publish(ctx, s.changesKey, tag)
	}
	_, err := pipe.Exec(ctx)
	if s.spread && err == nil {
		s.announceAfterCopies(ctx, tag)
	}
	s.ended(tag, true, err)
	if err != nil {
		return fmt.Errorf("redis %s: import %d keys: %w", s.url, len(keys), err)
	}
	return nil
}

// DeleteKey removes the run-time key with the id and reports whether there
// was one. The next lookup sees the change.
func (s *Store) DeleteKey(id string) (bool, error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	tag := s.mine.begin()
	n, err := deleteKeyScript.Run(ctx, s.c, s.keyKeys(), id, s.scriptTag(tag)).Int()
	if s.spread && n == 1 {
		s.announceAfterCopies(ctx, tag)
	}
	s.ended(tag, n == 1, err)
	if err != nil {
		return false, fmt.Errorf("redis %s: delete key %q: %w", s.url, id, err)
	}
	return n == 1, nil
}

// RuntimeKeys returns every run-time key, by id. A record that does not
// decode is an error naming it.
func (s *Store) RuntimeKeys() ([]*policy.APIKey, error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	recs, err := s.c.HGetAll(ctx, s.keysKey).Result()
	if err != nil {
		return nil, fmt.Errorf("redis %s: list keys: %w", s.url, err)
	}
	keys := make([]*policy.APIKey, 0, len(recs))
	var errs []error
	for id, rec := range recs {
		k, err := keyjson.Decode([]byte(rec))
		if err != nil {
			errs = append(errs, fmt.Errorf("redis %s: %s field %s: %w", s.url, s.keysKey, id, err))
			continue
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *policy.APIKey) int { return strings.Compare(a.ID, b.ID) })
	return keys, errors.Join(errs...)
}

// RuntimeKey returns the run-time key with the id, or nil.
func (s *Store) RuntimeKey(id string) (*policy.APIKey, error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	rec, err := s.c.HGet(ctx, s.keysKey, id).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis %s: get key %q: %w", s.url, id, err)
	}
	k, err := keyjson.Decode([]byte(rec))
	if err != nil {
		return nil, fmt.Errorf("redis %s: %s field %s: %w", s.url, s.keysKey, id, err)
	}
	return k, nil
}
