package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/load"
	"github.com/tollgate/tollgate/store/redis/redistest"
)

// TestSelects: --only selects by any of its |-separated texts; empty
// selects everything.
func TestSelects(t *testing.T) {
	for i, c := range []struct {
		only, name string
		want       bool
	}{
		{"", "Redis store, 1,000 customers", true},
		{"Redis", "Redis store, 1,000 customers", true},
		{"Redis", "envoyproxy/ratelimit + Redis, 1,000 customers", true},
		{"Redis", "embedded store, 1,000 customers", false},
		{"embedded store, 1,000|ratelimit", "embedded store, 1,000 customers", true},
		{"embedded store, 1,000|ratelimit", "envoyproxy/ratelimit + Redis, 1,000 customers", true},
		{"embedded store, 1,000|ratelimit", "embedded store, 1000000 customers", false},
		{"ratelimit|", "Redis store, 1,000 customers", false},
		{"Redis store|Redis Cluster", "Redis Cluster, 3 primaries, 1,000 customers", true},
		{"Redis store", "Redis Cluster, 1 primary, 1,000 customers", false},
	} {
		if got := selects(c.only, c.name); got != c.want {
			t.Errorf("%d: selects(%q, %q): got %v, want %v", i, c.only, c.name, got, c.want)
		}
	}
}

func TestParseEnv(t *testing.T) {
	env, err := parseEnv("DISABLE_STATS=true,REDIS_PIPELINE_WINDOW=150us")
	if err != nil || len(env) != 2 || env[1] != "REDIS_PIPELINE_WINDOW=150us" {
		t.Fatalf("got %q, %v", env, err)
	}
	if env, err := parseEnv(""); env != nil || err != nil {
		t.Errorf("empty: got %q, %v; want none", env, err)
	}
	for _, bad := range []string{"DISABLE_STATS", "A=1,,B=2", "=1"} {
		if _, err := parseEnv(bad); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
}

// TestParseRedisStats reads an INFO answer's CPU (user + system) and
// command count, and names a field that is missing.
func TestParseRedisStats(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.500000\r\nused_cpu_sys_children:9.000000\r\n\r\n" +
		"# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1234\r\n"
	st, err := parseRedisStats(info)
	if err != nil || st.cpu.Seconds() != 1.75 || st.commands != 1234 {
		t.Fatalf("got %v, %d, %v; want 1.75s, 1234", st.cpu, st.commands, err)
	}
	_, err = parseRedisStats("# CPU\r\nused_cpu_sys:1.0\r\n")
	if err == nil || !strings.Contains(err.Error(), "used_cpu_user") || !strings.Contains(err.Error(), "total_commands_processed") {
		t.Errorf("missing fields: got %v, want both named", err)
	}
}

// TestReadRedisStats reads a real Redis: its command count grows by the
// commands sent between two reads (the first INFO among them).
func TestReadRedisStats(t *testing.T) {
	rs := redistest.Start(t)
	before, err := readRedisStats(t.Context(), rs.Addr())
	if err != nil {
		t.Fatal(err)
	}
	after, err := readRedisStats(t.Context(), rs.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if n := after.commands - before.commands; n < 1 || n > 3 || after.cpu < before.cpu {
		t.Errorf("got %d commands between two reads, CPU %v then %v; want 1 to 3 (INFO, and the client's HELLO), CPU not going back",
			n, before.cpu, after.cpu)
	}
}

// TestRowCPUPerDecision: a row gives the server's and Redis's CPU per
// decision, split where there is Redis, and ratelimit's commands and
// failed calls.
func TestRowCPUPerDecision(t *testing.T) {
	floor := result{sc: floors[0], r: load.Report{PerSecond: 20000, Workers: 50}, cpu: 0.8}
	if row := floor.row(floor, nil); !strings.Contains(row, "| 0.80 | 40 |") {
		t.Errorf("floor: got %s, want 0.80 cores and 40 µs a decision", row)
	}
	rl := result{sc: scenario{"envoyproxy/ratelimit + Redis, 1,000 customers", "ratelimit", 1000, load.RateLimit, 0},
		r: load.Report{PerSecond: 10000, Workers: 50}, cpu: 1.1, redisCPU: 0.2, commandsPerDecision: 1.9, failedOpen: 0.001}
	row := rl.row(floor, []float64{0.5, 0.4})
	for _, want := range []string{"| 10000 | 0.50 | 0.50 0.40 |", "| 1.10 | 130 (server 110, Redis 20) |",
		"1.90 Redis commands per decision; 0.10% of calls failed"} {
		if !strings.Contains(row, want) {
			t.Errorf("ratelimit: got %s, want %q in it", row, want)
		}
	}
	if got := rl.cpuPerDecision(); got < 129.9 || got > 130.1 {
		t.Errorf("cpuPerDecision: got %v, want 130", got)
	}
}

// TestRowCluster: a Redis Cluster row gives its script calls per decision
// with each primary's share, and what failed open.
func TestRowCluster(t *testing.T) {
	floor := result{sc: floors[0], r: load.Report{PerSecond: 20000, Workers: 50}, cpu: 0.8}
	c := result{sc: scenario{"Redis Cluster, 3 primaries, 1,000 customers", "redis", 1000, load.Authz, 3},
		r: load.Report{PerSecond: 8000, Workers: 50}, cpu: 0.8, redisCPU: 0.4, callsPerDecision: 0.5,
		nodeCalls: []int64{340, 330, 330}, failedOpen: 0.002}
	row := c.row(floor, nil)
	for _, want := range []string{"| 150 (server 100, Redis 50) |",
		"0.50 Redis script calls per decision (by node 34/33/33%); 0.20% failed open"} {
		if !strings.Contains(row, want) {
			t.Errorf("got %s, want %q in it", row, want)
		}
	}
}

// TestShares rounds each node's part to the nearest percent.
func TestShares(t *testing.T) {
	for i, c := range []struct {
		calls []int64
		want  string
	}{
		{[]int64{5}, "100%"},
		{[]int64{1, 1, 1}, "33/33/33%"},
		{[]int64{995, 5}, "100/1%"}, // 99.5 and 0.5 round up
		{[]int64{0, 7, 0}, "0/100/0%"},
		{[]int64{0, 0}, ""},
		{nil, ""},
	} {
		if got := shares(c.calls); got != c.want {
			t.Errorf("%d: shares(%v): got %q, want %q", i, c.calls, got, c.want)
		}
	}
}

// TestLaunchRedisCluster starts a Redis Cluster of 3 primaries as a
// cluster row does: its URL is a cluster's, the script calls are per
// primary and start from zero after resetStats, and its statistics add
// up the primaries' (each INFO counted on its node).
func TestLaunchRedisCluster(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not found in PATH: install it (apt-get install -y redis-server) to run the Redis tests")
	}
	dir := t.TempDir()
	rs, err := launchRedis(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	if !strings.HasPrefix(rs.url, "redis-cluster://") || len(rs.nodes) != 3 {
		t.Fatalf("got %s with %d nodes, want a redis-cluster:// URL and 3 nodes", rs.url, len(rs.nodes))
	}
	if err := rs.resetStats(); err != nil {
		t.Fatal(err)
	}
	calls, err := rs.scriptCalls()
	if err != nil || len(calls) != 3 || calls[0]+calls[1]+calls[2] != 0 {
		t.Errorf("after resetStats: got %v, %v; want 3 nodes of no calls", calls, err)
	}
	before, err := rs.stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	after, err := rs.stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The cluster's own traffic between the nodes is on its bus, not
	// commands; each read sends each node an INFO and a HELLO or so.
	if n := after.commands - before.commands; n < 3 || n > 9 || after.cpu < before.cpu {
		t.Errorf("got %d commands between two reads, CPU %v then %v; want 3 to 9, CPU not going back", n, before.cpu, after.cpu)
	}
}

// TestCompareRounds divides round by round, by the measure given.
func TestCompareRounds(t *testing.T) {
	mk := func(perSecond ...float64) []trial {
		var ts []trial
		for _, ps := range perSecond {
			ts = append(ts, trial{m: result{r: load.Report{PerSecond: ps}, cpu: 1}})
		}
		return ts
	}
	a, b := mk(200, 300, 100), mk(100, 100, 100)
	if got, want := compareRounds(a, b, func(r result) float64 { return r.r.PerSecond }), "median 2.00 (rounds: 2.00, 3.00, 1.00)"; got != want {
		t.Errorf("decisions/s: got %q, want %q", got, want)
	}
	if got, want := compareRounds(a, b, result.cpuPerDecision), "median 0.50 (rounds: 0.50, 0.33, 1.00)"; got != want {
		t.Errorf("CPU per decision: got %q, want %q", got, want)
	}
	if got := compareRounds(a, nil, result.cpuPerDecision); got != "" {
		t.Errorf("unmeasured: got %q, want none", got)
	}
}
