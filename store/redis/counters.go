package redis

import (
	_ "embed"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
)

var (
	// grantScript adds to a quota counter's grant (grant.lua).
	//go:embed grant.lua
	grantSrc    string
	grantScript = goredis.NewScript(grantSrc)
)

// Counter returns the state of a quota or usage counter.
func (s *Store) Counter(k policy.Key) (used, granted int64, err error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	vals, err := s.c.HMGet(ctx, s.key('c', k), "u", "g").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("redis %s: read counter: %w", s.url, err)
	}
	var n [2]int64
	for i, v := range vals {
		if v == nil {
			continue
		}
		str, _ := v.(string)
		if n[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("redis %s: counter %s holds %q", s.url, s.key('c', k), str)
		}
	}
	return n[0], n[1], nil
}

// Grant adds n to the grant of the quota counter k, whose period ends at
// end.
func (s *Store) Grant(k policy.Key, n int64, end time.Time) error {
	ctx, cancel := s.adminCall()
	defer cancel()
	if err := grantScript.Run(ctx, s.c, []string{s.key('c', k)}, n, end.Add(s.opts.Retention).UnixMilli()).Err(); err != nil {
		return fmt.Errorf("redis %s: grant: %w", s.url, err)
	}
	return nil
}
