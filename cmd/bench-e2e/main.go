// Command bench-e2e measures tollgate end to end the way an operator would
// before a rollout (make bench-e2e): it runs the real binary as a server,
// sends it load with the real binary's `tollgate load` (both on this
// machine's cores), first against the floor (`serve --noop`), then against
// each scenario, and appends one row per scenario to BENCHMARKS.md: machine,
// commit, concurrency, decisions per second and their ratio to the floor
// of the same mode (ext_authz, ext_proc, HTTP) measured in the same run,
// latency percentiles, the server's CPU and, with Redis, Redis's.
//
// The Redis store is measured on one Redis and on Redis Clusters of one and
// of three primaries (redis.go), each started for its scenario: a cluster's
// row is charged for every primary's CPU and shows each primary's share of
// the script calls, whether the load spreads over them.
//
// The same load is also sent to envoyproxy/ratelimit on a Redis of its own
// (tollgate load --mode ratelimit), which bench-e2e builds on demand from
// the Go module proxy into the user's cache (ratelimit.go), and whose row
// it skips with a note where it cannot.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/served"
	"github.com/tollgate/tollgate/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

// scenario is one row of the report.
type scenario struct {
	name string
	// store is "file", "redis" or "noop" for tollgate, "ratelimit" for
	// envoyproxy/ratelimit on Redis.
	store string
	keys  int // load keys seeded and used
	mode  load.Mode
	// primaries is, for tollgate on Redis, the primaries of the Redis
	// Cluster it runs on (--store redis-cluster://); 0: one Redis server.
	primaries int
}

// redis tells whether sc runs on a Redis of its own.
func (sc scenario) redis() bool { return sc.store == "redis" || sc.store == "ratelimit" }

// floorMode is the mode of sc's floor: its own, but ext_authz's for
// ratelimit, a unary gRPC call of about the same size.
func (sc scenario) floorMode() load.Mode {
	if sc.mode == load.RateLimit {
		return load.Authz
	}
	return sc.mode
}

// floors are what each mode's scenarios are compared with: the same server
// with --noop (the same listener and translation, no policy and no store),
// spoken to in the same mode. In report order.
var floors = []scenario{
	{"floor (serve --noop)", "noop", 1000, load.Authz, 0},
	{"floor (serve --noop), ext_proc", "noop", 1000, load.Process, 0},
	{"floor (serve --noop), HTTP", "noop", 1000, load.HTTP, 0},
}

// bench is what every measurement of a run shares.
type bench struct {
	bin, policyFile, plan, work string
	workers                     int
	duration                    time.Duration
	// ratelimit is envoyproxy/ratelimit's binary, rlConfig its
	// configuration and rlEnv the environment added to ratelimitEnv's,
	// when a ratelimit scenario runs.
	ratelimit string
	rlConfig  []byte
	rlEnv     []string
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench-e2e", flag.ContinueOnError)
	b := &bench{}
	fs.StringVar(&b.bin, "bin", "bin/tollgate", "the tollgate `binary`")
	fs.StringVar(&b.policyFile, "policy", "examples/payments/policy.yaml", "the policy `file` served")
	fs.StringVar(&b.plan, "plan", "enterprise", "the usage `plan` of the seeded keys")
	out := fs.String("out", "BENCHMARKS.md", "the `file` the rows are appended to")
	fs.IntVar(&b.workers, "workers", 50, "load `workers`")
	fs.DurationVar(&b.duration, "duration", 10*time.Second, "measured `time` per scenario")
	million := fs.Int("million", 1_000_000, "`customers` of the large scenario")
	rounds := fs.Int("rounds", 3, "`rounds` of the floor and every scenario; each row is the round of the median ratio")
	only := fs.String("only", "", "run only the scenarios whose names hold this `text`, or one of several separated by | (the floor always runs)")
	rlEnv := fs.String("ratelimit-env", "", "`KEY=VALUE,...` added to envoyproxy/ratelimit's environment (e.g. DISABLE_STATS=true,REDIS_PIPELINE_WINDOW=150us)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The notes under the table: ratelimit's environment, the rows
	// skipped, and the targets that compare two scenarios round by round.
	var notes []string
	var err error
	if b.rlEnv, err = parseEnv(*rlEnv); err != nil {
		return fmt.Errorf("--ratelimit-env: %w", err)
	}
	if len(b.rlEnv) > 0 {
		notes = append(notes, "envoyproxy/ratelimit's environment also had "+strings.Join(b.rlEnv, ", "))
	}
	if b.work, err = os.MkdirTemp("", "tollgate-bench"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)

	small := scenario{"embedded store, 1,000 customers", "file", 1000, load.Authz, 0}
	large := scenario{fmt.Sprintf("embedded store, %d customers", *million), "file", *million, load.Authz, 0}
	redisSc := scenario{"Redis store, 1,000 customers", "redis", 1000, load.Authz, 0}
	cluster1 := scenario{"Redis Cluster, 1 primary, 1,000 customers", "redis", 1000, load.Authz, 1}
	cluster3 := scenario{"Redis Cluster, 3 primaries, 1,000 customers", "redis", 1000, load.Authz, 3}
	rlSc := scenario{"envoyproxy/ratelimit + Redis, 1,000 customers", "ratelimit", 1000, load.RateLimit, 0}
	httpSc := scenario{"HTTP, embedded store, 1,000 customers", "file", 1000, load.HTTP, 0}
	selected, skipped := b.choose(ctx, *only, []scenario{small, large, redisSc, cluster1, cluster3, rlSc,
		{"ext_proc, embedded store, 1,000 customers", "file", 1000, load.Process, 0}, httpSc})
	notes = append(notes, skipped...)
	if slices.ContainsFunc(selected, func(sc scenario) bool { return sc.primaries > 0 }) {
		notes = append(notes, clusterNote)
	}
	runs, err := b.rounds(ctx, selected, max(*rounds, 1))
	if err != nil {
		return err
	}
	var rows []string
	for _, sc := range append(slices.Clone(floors), selected...) {
		rs := runs[sc.name]
		switch {
		case len(rs) == 0:
		case sc.store == "noop":
			rows = append(rows, median(rs, func(r trial) float64 { return r.m.r.PerSecond }))
		default:
			rows = append(rows, median(rs, trial.ratio))
		}
	}
	compare := func(what string, a, b scenario, by func(result) float64) {
		if n := compareRounds(runs[a.name], runs[b.name], by); n != "" {
			notes = append(notes, what+": "+n)
		}
	}
	perSecond := func(r result) float64 { return r.r.PerSecond }
	compare(fmt.Sprintf("%d customers over 1,000 customers (decisions/s, same round)", *million), large, small, perSecond)
	compare("Redis store over the embedded store, 1,000 customers (decisions/s, same round)", redisSc, small, perSecond)
	compare("tollgate's Redis store over envoyproxy/ratelimit + Redis, 1,000 customers (decisions/s, same round; target ≥ 2)", redisSc, rlSc, perSecond)
	compare("tollgate's Redis store over envoyproxy/ratelimit + Redis, 1,000 customers (CPU per decision, server + Redis, same round; target ≤ 0.5)", redisSc, rlSc, result.cpuPerDecision)
	compare("Redis Cluster of 1 primary over the Redis store, 1,000 customers (decisions/s, same round)", cluster1, redisSc, perSecond)
	compare("Redis Cluster of 3 primaries over 1 primary, 1,000 customers (decisions/s, same round)", cluster3, cluster1, perSecond)
	compare("Redis Cluster of 3 primaries over 1 primary, 1,000 customers (CPU per decision, server + every primary, same round)", cluster3, cluster1, result.cpuPerDecision)
	compare("tollgate's embedded store over envoyproxy/ratelimit + Redis, 1,000 customers (decisions/s, same round)", small, rlSc, perSecond)
	compare("HTTP over ext_authz (gRPC), embedded store, 1,000 customers (decisions/s, same round)", httpSc, small, perSecond)
	return appendRows(*out, rows, notes, b.workers, *rounds)
}

// clusterNote says how the Redis Cluster rows were measured.
const clusterNote = "Redis Cluster rows: tollgate with `--store redis-cluster://` on a cluster of that many primaries " +
	"without replicas (redistest.LaunchCluster: the slots split evenly, in order), on the cores the server and the load " +
	"generator use, its keys prepared with `tollgate load prepare` as for the Redis store's row; Redis CPU: every " +
	"primary's; by node: each primary's share of the script calls (EVALSHA) of the window, counted from a CONFIG " +
	"RESETSTAT at its start, in slot order"

// rounds measures the scenarios n times. Each round measures the ext_authz
// floor first and each other mode's floor just before that mode's first
// scenario, then compares every scenario with the floor of its mode and
// round: neighbours in time see the same machine. It returns the trials by
// scenario name, floors included.
func (b *bench) rounds(ctx context.Context, selected []scenario, n int) (map[string][]trial, error) {
	runs := map[string][]trial{}
	seeded := map[string]bool{}
	for round := range n {
		measured := map[load.Mode]result{}
		floorOf := func(mode load.Mode) (result, error) {
			if f, ok := measured[mode]; ok {
				return f, nil
			}
			i := slices.IndexFunc(floors, func(sc scenario) bool { return sc.mode == mode })
			f, err := b.measure(ctx, floors[i], nil, false)
			if err != nil {
				return f, fmt.Errorf("%s: %w", floors[i].name, err)
			}
			measured[mode] = f
			runs[floors[i].name] = append(runs[floors[i].name], trial{f, f})
			return f, nil
		}
		if _, err := floorOf(load.Authz); err != nil {
			return nil, err
		}
		for _, sc := range selected {
			base, err := floorOf(sc.floorMode())
			if err != nil {
				return nil, err
			}
			// A fresh Redis each time; the file store's keys stay seeded.
			seed := sc.redis() || !seeded[sc.name]
			seeded[sc.name] = true
			m, err := b.measureWithRedis(ctx, sc, seed)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sc.name, err)
			}
			runs[sc.name] = append(runs[sc.name], trial{m, base})
			fmt.Fprintf(os.Stderr, "round %d: %s\n", round+1, m.row(base, nil))
		}
	}
	return runs, nil
}

// measureWithRedis is measure, or measureRatelimit, with a Redis (or a
// Redis Cluster) of its own when sc runs on Redis.
func (b *bench) measureWithRedis(ctx context.Context, sc scenario, seed bool) (result, error) {
	var rs *redisNodes
	if sc.redis() {
		var err error
		if rs, err = launchRedis(b.work, sc.primaries); err != nil {
			return result{}, err
		}
		defer rs.Stop()
	}
	if sc.store == "ratelimit" {
		return b.measureRatelimit(ctx, sc, rs)
	}
	return b.measure(ctx, sc, rs, seed)
}

// compareRounds formats by of a's results over by of b's, round by round;
// "" when either was not measured.
func compareRounds(a, b []trial, by func(result) float64) string {
	if len(a) == 0 || len(a) != len(b) {
		return ""
	}
	var rs []float64
	for i := range a {
		rs = append(rs, by(a[i].m)/by(b[i].m))
	}
	return ratios(rs)
}

// choose returns the scenarios of list that only selects, having made
// ready what a ratelimit scenario needs; one that this machine cannot run
// is left out, with a note that says why.
func (b *bench) choose(ctx context.Context, only string, list []scenario) (selected []scenario, notes []string) {
	for _, sc := range list {
		if !selects(only, sc.name) {
			continue
		}
		if sc.store == "ratelimit" {
			if err := b.prepareRatelimit(ctx, sc); err != nil {
				fmt.Fprintf(os.Stderr, "%s: skipped: %v\n", sc.name, err)
				notes = append(notes, fmt.Sprintf("%s: skipped: %v", sc.name, err))
				continue
			}
		}
		selected = append(selected, sc)
	}
	return selected, notes
}

// parseEnv reads "KEY=VALUE,KEY=VALUE" ("" is none).
func parseEnv(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	env := strings.Split(s, ",")
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("%q: %q is not KEY=VALUE", s, kv)
		}
	}
	return env, nil
}

// selects tells whether the --only value only selects the scenario name:
// "" selects every one, else one of its |-separated texts must be in name.
func selects(only, name string) bool {
	if only == "" {
		return true
	}
	for _, text := range strings.Split(only, "|") {
		if text != "" && strings.Contains(name, text) {
			return true
		}
	}
	return false
}

// trial is one round's measurement of a scenario and the floor it is compared
// with.
type trial struct{ m, base result }

func (r trial) ratio() float64 { return r.m.r.PerSecond / r.base.r.PerSecond }

// median returns the row of the round whose by is the median (the lower
// one of an even count), with every round's ratio to its floor.
func median(rs []trial, by func(trial) float64) string {
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(by(rs[a]), by(rs[b])) })
	var all []float64
	for _, r := range rs {
		all = append(all, r.ratio())
	}
	m := rs[idx[(len(idx)-1)/2]]
	return m.m.row(m.base, all)
}

// ratios formats the median of rs and then each of them, in round order.
func ratios(rs []float64) string {
	sorted := slices.Sorted(slices.Values(rs))
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return fmt.Sprintf("median %.2f (rounds: %s)", sorted[(len(sorted)-1)/2], strings.Join(parts, ", "))
}

// result is one scenario's measurement.
type result struct {
	sc          scenario
	r           load.Report
	cpu         float64 // server cores busy during the measured window
	redisCPU    float64 // Redis's cores busy during the same window (0: no Redis)
	bytesPerCus float64 // heap per customer the load touched (0: not measured)
	// failedOpen is, for tollgate, the decisions allowed because the store
	// missed its budget; for ratelimit, the calls that failed, which
	// Envoy's rate limit filter lets through unless failure_mode_deny.
	failedOpen float64
	local      float64 // decisions made locally because Redis missed its budget
	// callsPerDecision is Redis script calls (EVALSHA, EVAL) over decisions:
	// the round trips of decisions and key lookups (0: not Redis).
	callsPerDecision float64
	// nodeCalls is the script calls of each of a cluster's primaries, in
	// slot order (nil: not a cluster).
	nodeCalls []int64
	// commandsPerDecision is the commands that clients sent Redis over the
	// decisions (0: not Redis); the ratelimit rows show it, tollgate's
	// show callsPerDecision.
	commandsPerDecision float64
}

// cpuPerDecision is the server's and Redis's CPU time per decision, in
// microseconds: the cores they kept busy over the decisions per second.
func (m result) cpuPerDecision() float64 { return (m.cpu + m.redisCPU) / m.r.PerSecond * 1e6 }

// row formats m as a table row, with its ratio to floor and, when there
// were several rounds, every round's ratio.
func (m result) row(floor result, rounds []float64) string {
	ratio := m.r.PerSecond / floor.r.PerSecond
	mem := ""
	if m.bytesPerCus > 0 {
		mem = fmt.Sprintf("%.0f B of heap per active customer", m.bytesPerCus)
	}
	if m.callsPerDecision > 0 {
		mem += fmt.Sprintf("%.2f Redis script calls per decision", m.callsPerDecision)
		if share := shares(m.nodeCalls); share != "" {
			mem += " (by node " + share + ")"
		}
		mem += "; "
	}
	switch m.sc.store {
	case "redis":
		mem += fmt.Sprintf("%.2f%% failed open, %.2f%% decided locally (store budget missed)", 100*m.failedOpen, 100*m.local)
	case "ratelimit":
		mem += fmt.Sprintf("%.2f Redis commands per decision; %.2f%% of calls failed (let through by Envoy's default)",
			m.commandsPerDecision, 100*m.failedOpen)
	}
	each := make([]string, len(rounds))
	for i, r := range rounds {
		each[i] = fmt.Sprintf("%.2f", r)
	}
	perDecision := fmt.Sprintf("%.0f", m.cpuPerDecision())
	if m.sc.redis() {
		perDecision += fmt.Sprintf(" (server %.0f, Redis %.0f)", m.cpu/m.r.PerSecond*1e6, m.redisCPU/m.r.PerSecond*1e6)
	}
	return fmt.Sprintf("| %s | %s | %s | %d | %.0f | %.2f | %s | %s | %s | %s | %s | %.2f | %s | %s |",
		time.Now().UTC().Format(time.DateOnly), commit(), m.sc.name, m.r.Workers, m.r.PerSecond, ratio,
		strings.Join(each, " "), m.r.P50, m.r.P90, m.r.P99, m.r.P999, m.cpu, perDecision, mem)
}

// measure seeds the store, starts the server, runs the load and reads the
// server's CPU and heap.
func (b *bench) measure(ctx context.Context, sc scenario, rs *redisNodes, seed bool) (result, error) {
	res := result{sc: sc}
	srv, err := b.serve(ctx, sc, rs, seed)
	if err != nil {
		return res, err
	}
	defer srv.Stop()
	heapBefore, _ := srv.Heap()
	if rs != nil {
		// The script calls of the window only: not the seeding's, nor
		// the server's start.
		if err := rs.resetStats(); err != nil {
			return res, err
		}
	}
	target := srv.GRPC
	if sc.mode == load.HTTP {
		target = srv.HTTP
	}
	if err := b.loadWindow(ctx, sc, target, srv.Cmd.Process.Pid, rs, &res); err != nil {
		return res, err
	}
	failed, err1 := srv.MetricSum("tollgate_decisions_total", `reason="store:error"`)
	all, err2 := srv.MetricSum("tollgate_decisions_total", "")
	local, _ := srv.Metric("tollgate_store_local_decisions_total") // none before --on-store-error local
	if err1 == nil && err2 == nil && all > 0 {
		res.failedOpen = failed / all // warm-up included on both sides
		res.local = local / all
	}
	if rs != nil && err2 == nil && all > 0 {
		calls, err := rs.scriptCalls()
		if err != nil {
			return res, err
		}
		var sum int64
		for _, n := range calls {
			sum += n
		}
		res.callsPerDecision = float64(sum) / all
		if sc.primaries > 0 {
			res.nodeCalls = calls
		}
	}
	// Per customer only where customers, not buffers, fill the heap.
	if heapAfter, err := srv.Heap(); err == nil && heapBefore > 0 && sc.store == "file" {
		if touched := activeCustomers(sc.keys, res.r); touched >= 10000 {
			res.bytesPerCus = float64(heapAfter-heapBefore) / touched
		}
	}
	if res.r.Errors > 0 {
		return res, fmt.Errorf("%d calls failed: %s", res.r.Errors, res.r.FirstError)
	}
	return res, nil
}

// serve seeds sc's store when seed is set (the floor has none), and starts
// the server of sc: on rs when it is Redis, with --http-addr for HTTP.
func (b *bench) serve(ctx context.Context, sc scenario, rs *redisNodes, seed bool) (*served.Server, error) {
	store := "file:" + filepath.Join(b.work, strings.NewReplacer(" ", "-", ",", "").Replace(sc.name))
	if rs != nil {
		store = rs.url
	}
	args := []string{"serve", "--policy", b.policyFile, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--store", store, "--pprof"}
	if sc.mode == load.HTTP {
		args = append(args, "--http-addr", "127.0.0.1:0")
	}
	if sc.store == "noop" {
		args = append(args, "--noop")
	} else if seed {
		fmt.Fprintf(os.Stderr, "%s: seeding %d keys\n", sc.name, sc.keys)
		if out, err := exec.CommandContext(ctx, b.bin, "load", "prepare", "--store", store, "--keys", strconv.Itoa(sc.keys), "--plan", b.plan).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("prepare: %v: %s", err, out)
		}
	}
	return served.Start(ctx, b.bin, args, []string{"TOLLGATE_ADMIN_TOKEN=bench"}, 5*time.Minute)
}

// loadWindow runs the load against target and sets res's report, the
// CPU of the server process pid and of rs's nodes (nil: no Redis) in cores
// over the run, and with rs, the Redis commands per decision. The warm-up's
// CPU is in the window too: spread over the whole run.
func (b *bench) loadWindow(ctx context.Context, sc scenario, target string, pid int, rs *redisNodes, res *result) error {
	var redisBefore, redisAfter redisStats
	var err error
	if rs != nil {
		if redisBefore, err = rs.stats(ctx); err != nil {
			return err
		}
	}
	cpuBefore, err := served.CPUTime(pid)
	if err != nil {
		return err
	}
	started := time.Now()
	if res.r, err = b.load(ctx, sc, target); err != nil {
		return err
	}
	wall := time.Since(started)
	cpuAfter, err := served.CPUTime(pid)
	if err != nil {
		return err
	}
	res.cpu = (cpuAfter - cpuBefore).Seconds() / wall.Seconds()
	if rs != nil {
		if redisAfter, err = rs.stats(ctx); err != nil {
			return err
		}
		res.redisCPU = (redisAfter.cpu - redisBefore.cpu).Seconds() / wall.Seconds()
		// Decisions in the window, the warm-up's included, at the
		// measured rate.
		if decisions := res.r.PerSecond * wall.Seconds(); decisions > 0 {
			res.commandsPerDecision = float64(redisAfter.commands-redisBefore.commands) / decisions
		}
	}
	return nil
}

// load runs tollgate load against target in sc's mode and returns its
// report.
func (b *bench) load(ctx context.Context, sc scenario, target string) (load.Report, error) {
	var r load.Report
	conns := 4
	if sc.mode == load.HTTP {
		conns = b.workers // HTTP/1.1: a connection per request in flight
	}
	cmd := exec.CommandContext(ctx, b.bin, "load", "--target", target, "--mode", string(sc.mode), "--policy", b.policyFile,
		"--keys", strconv.Itoa(sc.keys), "--workers", strconv.Itoa(b.workers), "--conns", strconv.Itoa(conns),
		"--duration", b.duration.String(), "--warmup", "2s", "--mix", "anonymous=20,keyed=70,blocked=5,invalid=5", "--json")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("load: %w", err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("load report: %w", err)
	}
	return r, nil
}

// activeCustomers estimates how many of keys customers the measured keyed
// requests (70% of the mix) touched, drawn uniformly: keys × (1 − (1 −
// 1/keys)^n). The warm-up's are left out, so this is a lower bound and the
// bytes per customer an upper one.
func activeCustomers(keys int, r load.Report) float64 {
	if keys == 0 {
		return 0
	}
	n, k := float64(r.Requests)*0.7, float64(keys)
	return k * (1 - math.Pow(1-1/k, n))
}

// commit returns the short hash of HEAD, with "+" when the tree has
// changes.
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "+"
	}
	return c
}

// machine describes the CPU and cores.
func machine() string {
	model := runtime.GOARCH
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %s", model, runtime.NumCPU(), runtime.Version())
}

// appendRows adds a section with the rows to out, creating its header when
// the file is new.
func appendRows(out string, rows, notes []string, workers, rounds int) error {
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "\n### %s — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine())
	fmt.Fprintf(f, "`make bench-e2e`: `tollgate load --workers %d --conns 4 --duration 10s --warmup 2s`, mix anonymous 20, keyed 70, blocked 5, invalid keys 5; load generator and server share the cores; HTTP rows: `--mode http --conns %d` to `serve --http-addr`, an HTTP/1.1 keep-alive connection per worker. %d rounds, each measuring the floor and then every scenario; ratio: decisions/s over the floor's of the same round and mode (`serve --noop` spoken to over ext_authz, ext_proc or HTTP), the row being the round of the median ratio (the floor's: of the median decisions/s); server CPU: cores busy, warm-up included; CPU per decision: the server's and Redis's cores over decisions/s; envoyproxy/ratelimit rows: `--mode ratelimit` (ShouldRateLimit, one descriptor a request) to ratelimit %s on a Redis of its own, compared with the ext_authz floor.\n\n", workers, workers, rounds, ratelimitVersion)
	fmt.Fprintln(f, "| date | commit | scenario | workers | decisions/s | ratio to floor | ratio per round | p50 | p90 | p99 | p99.9 | server CPU (cores) | CPU per decision (µs) | memory |")
	fmt.Fprintln(f, "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		fmt.Fprintln(f, r)
	}
	if len(notes) > 0 {
		fmt.Fprintln(f)
	}
	for _, n := range notes {
		fmt.Fprintf(f, "- %s\n", n)
	}
	return nil
}
