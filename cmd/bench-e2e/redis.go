package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/store/redis/redistest"
)

// redisNodes is the Redis a scenario runs on: one server, or the primaries
// of a Redis Cluster. Its statistics are the sums over its nodes, so that a
// cluster's row is charged for every primary's CPU.
type redisNodes struct {
	url   string              // what tollgate's --store names
	nodes []*redistest.Server // the server, or the primaries in slot order
	stop  func()
}

// launchRedis starts a Redis server in dir (primaries 0), or a cluster of
// that many primaries in a scratch folder of dir, which Stop removes.
func launchRedis(dir string, primaries int) (*redisNodes, error) {
	if primaries == 0 {
		rs, err := redistest.Launch(dir)
		if err != nil {
			return nil, err
		}
		return &redisNodes{url: rs.URL(), nodes: []*redistest.Server{rs}, stop: rs.Stop}, nil
	}
	scratch, err := os.MkdirTemp(dir, "cluster")
	if err != nil {
		return nil, err
	}
	c, err := redistest.LaunchCluster(scratch, primaries)
	if err != nil {
		os.RemoveAll(scratch)
		return nil, err
	}
	return &redisNodes{url: c.URL(), nodes: c.Nodes(), stop: func() { c.Stop(); os.RemoveAll(scratch) }}, nil
}

// Stop stops the nodes.
func (r *redisNodes) Stop() { r.stop() }

// resetStats sets every node's command counts back to zero (CONFIG
// RESETSTAT; its CPU times stay).
func (r *redisNodes) resetStats() error {
	for _, s := range r.nodes {
		if err := s.ResetStats(); err != nil {
			return err
		}
	}
	return nil
}

// scriptCalls returns each node's script calls since resetStats, in the
// order of the nodes.
func (r *redisNodes) scriptCalls() ([]int64, error) {
	calls := make([]int64, len(r.nodes))
	for i, s := range r.nodes {
		n, err := s.ScriptCalls()
		if err != nil {
			return nil, err
		}
		calls[i] = n
	}
	return calls, nil
}

// stats returns the sum of the nodes' readRedisStats.
func (r *redisNodes) stats(ctx context.Context) (redisStats, error) {
	var sum redisStats
	for _, s := range r.nodes {
		st, err := readRedisStats(ctx, s.Addr())
		if err != nil {
			return sum, err
		}
		sum.cpu += st.cpu
		sum.commands += st.commands
	}
	return sum, nil
}

// shares formats each node's part of the calls as whole percentages, as in
// "34/33/33%"; "" when there were none.
func shares(calls []int64) string {
	var all int64
	for _, n := range calls {
		all += n
	}
	if all == 0 {
		return ""
	}
	parts := make([]string, len(calls))
	for i, n := range calls {
		parts[i] = strconv.FormatInt((200*n+all)/(2*all), 10) // rounded to nearest
	}
	return strings.Join(parts, "/") + "%"
}

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
