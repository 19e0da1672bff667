package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// redisStats is what the bench reads from a Redis's INFO: its CPU time
// (user and system, every thread of the process: getrusage) and the
// commands it has run (total_commands_processed: the commands clients
// sent, INFO among them; not those that scripts run).
type redisStats struct {
	cpu      time.Duration
	commands int64
}

// readRedisStats reads the INFO cpu and stats sections of the Redis at
// addr.
func readRedisStats(ctx context.Context, addr string) (redisStats, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "cpu", "stats").Result()
	if err != nil {
		return redisStats{}, fmt.Errorf("redis %s: INFO: %w", addr, err)
	}
	st, err := parseRedisStats(info)
	if err != nil {
		return st, fmt.Errorf("redis %s: %w", addr, err)
	}
	return st, nil
}

// parseRedisStats reads used_cpu_user, used_cpu_sys (seconds) and
// total_commands_processed from INFO's answer.
func parseRedisStats(info string) (redisStats, error) {
	fields := map[string]string{}
	for _, l := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			fields[k] = v
		}
	}
	var st redisStats
	var errs []error
	for _, name := range []string{"used_cpu_user", "used_cpu_sys"} {
		s, err := strconv.ParseFloat(fields[name], 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("INFO %s: %q is not seconds", name, fields[name]))
		}
		st.cpu += time.Duration(s * float64(time.Second))
	}
	n, err := strconv.ParseInt(fields["total_commands_processed"], 10, 64)
	if err != nil {
		errs = append(errs, fmt.Errorf("INFO total_commands_processed: %q is not a count", fields["total_commands_processed"]))
	}
	st.commands = n
	return st, errors.Join(errs...)
}
