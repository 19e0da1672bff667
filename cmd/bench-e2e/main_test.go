package main

import (
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
	rl := result{sc: scenario{"envoyproxy/ratelimit + Redis, 1,000 customers", "ratelimit", 1000, load.RateLimit},
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
