package redis

import (
	"context"
	_ "embed"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/keyjson"
)

// keyPageScript returns a page of one of the orders of the keys, and their
// records (key_page.lua).
var (
	//go:embed key_page.lua
	keyPageSrc    string
	keyPageScript = goredis.NewScript(keyPageSrc)
)

// KeysAfter returns at most limit run-time keys whose ids sort after after
// ("": from the first), in id order: a ZRANGEBYLEX of the id order and an
// HMGET of the records, in one script, O(log n + limit) in Redis. Every
// page first makes sure the orders hold every key (indexKeys: one round
// trip of counts when they do), so that keys written by a replica of an
// older version during a rolling upgrade are listed, and found by customer,
// wherever a scan starts.
func (s *Store) KeysAfter(ctx context.Context, after string, limit int) ([]*policy.APIKey, error) {
	bound := "-"
	if after != "" {
		bound = "(" + after
	}
	return s.keyPage(ctx, s.keyIDsKey, bound, limit)
}

// CustomerKeysAfter returns at most limit run-time keys that sort after the
// customer and id given, in the order of customer, then id. An id of "\x7f"
// sorts after every id: the page then starts at the next customer.
func (s *Store) CustomerKeysAfter(ctx context.Context, customer, id string, limit int) ([]*policy.APIKey, error) {
	bound := "-"
	if customer != "" || id != "" {
		bound = "(" + customer + "\x00" + id
	}
	return s.keyPage(ctx, s.keyCustomersKey, bound, limit)
}

// keyPage reads a page of the order key from the lex bound on. Members whose
// record is gone (left by a rebuild that raced with a delete) are removed
// and skipped, and the page is filled from further on.
func (s *Store) keyPage(ctx context.Context, order, bound string, limit int) ([]*policy.APIKey, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.AdminTimeout)
	defer cancel()
	if err := s.indexKeys(ctx); err != nil {
		return nil, err
	}
	byCustomer := "0"
	if order == s.keyCustomersKey {
		byCustomer = "1"
	}
	var out []*policy.APIKey
	for len(out) < limit {
		want := limit - len(out)
		v, err := keyPageScript.Run(ctx, s.c, []string{order, s.keysKey}, bound, want, byCustomer).Slice()
		if err != nil {
			return nil, fmt.Errorf("redis %s: list keys: %w", s.url, err)
		}
		members, _ := v[0].([]any)
		recs, _ := v[1].([]any)
		var stale []any
		for i, m := range members {
			rec, _ := recs[i].(string)
			if rec == "" {
				stale = append(stale, m)
				continue
			}
			k, err := keyjson.Decode([]byte(rec))
			if err != nil {
				return nil, fmt.Errorf("redis %s: %s member %v: %w", s.url, order, m, err)
			}
			out = append(out, k)
		}
		if len(stale) > 0 {
			if err := s.c.ZRem(ctx, order, stale...).Err(); err != nil {
				return nil, fmt.Errorf("redis %s: list keys: %w", s.url, err)
			}
		}
		if len(members) < want || len(stale) == 0 {
			break
		}
		last, _ := members[len(members)-1].(string)
		bound = "(" + last
	}
	return out, nil
}

// indexKeys adds the keys that the orders lack: keys saved before this
// version kept the orders, or by a replica of such a version during a
// rolling upgrade. It reads the keys hash in batches (HSCAN) when the orders
// were never built (no marker key) or hold fewer members than the hash holds
// keys.
func (s *Store) indexKeys(ctx context.Context) error {
	marker := s.opts.Prefix + "key-orders"
	pipe := s.c.Pipeline()
	built := pipe.Exists(ctx, marker)
	nKeys := pipe.HLen(ctx, s.keysKey)
	nIDs := pipe.ZCard(ctx, s.keyIDsKey)
	nCustomers := pipe.ZCard(ctx, s.keyCustomersKey)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis %s: list keys: %w", s.url, err)
	}
	if built.Val() == 1 && nIDs.Val() >= nKeys.Val() && nCustomers.Val() >= nKeys.Val() {
		return nil
	}
	var cursor uint64
	for {
		kv, next, err := s.c.HScan(ctx, s.keysKey, cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("redis %s: index keys: %w", s.url, err)
		}
		var ids, customers []goredis.Z
		for i := 0; i+1 < len(kv); i += 2 {
			k, err := keyjson.Decode([]byte(kv[i+1]))
			if err != nil {
				return fmt.Errorf("redis %s: %s field %s: %w", s.url, s.keysKey, kv[i], err)
			}
			ids = append(ids, goredis.Z{Member: k.ID})
			customers = append(customers, goredis.Z{Member: k.Customer + "\x00" + k.ID})
		}
		if len(ids) > 0 {
			pipe := s.c.Pipeline()
			pipe.ZAdd(ctx, s.keyIDsKey, ids...)
			pipe.ZAdd(ctx, s.keyCustomersKey, customers...)
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("redis %s: index keys: %w", s.url, err)
			}
		}
		if cursor = next; cursor == 0 {
			if err := s.c.Set(ctx, marker, "1", 0).Err(); err != nil {
				return fmt.Errorf("redis %s: index keys: %w", s.url, err)
			}
			return nil
		}
	}
}
