// Command bench-e2e measures tollgate end to end the way an operator would
// before a rollout (make bench-e2e): it runs the real binary as a server,
// sends it load with the real binary's `tollgate load` (both on this
// machine's cores), first against the floor (`serve --noop`), then against
// each scenario, and appends one row per scenario to BENCHMARKS.md: machine,
// commit, concurrency, decisions per second and their ratio to the floor
// of the same mode (ext_authz, ext_proc, HTTP) measured in the same run,
// latency percentiles, and the server's CPU.
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
	"github.com/tollgate/tollgate/store/redis/redistest"
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
	name  string
	store string // "file", "redis" or "noop"
	keys  int    // load keys seeded and used
	mode  load.Mode
}

// floors are what each mode's scenarios are compared with: the same server
// with --noop (the same listener and translation, no policy and no store),
// spoken to in the same mode. In report order.
var floors = []scenario{
	{"floor (serve --noop)", "noop", 1000, load.Authz},
	{"floor (serve --noop), ext_proc", "noop", 1000, load.Process},
	{"floor (serve --noop), HTTP", "noop", 1000, load.HTTP},
}

// bench is what every measurement of a run shares.
type bench struct {
	bin, policyFile, plan, work string
	workers                     int
	duration                    time.Duration
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
	only := fs.String("only", "", "run only the scenarios whose names hold this `text` (the floor always runs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if b.work, err = os.MkdirTemp("", "tollgate-bench"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)

	small := scenario{"embedded store, 1,000 customers", "file", 1000, load.Authz}
	large := scenario{fmt.Sprintf("embedded store, %d customers", *million), "file", *million, load.Authz}
	redisSc := scenario{"Redis store, 1,000 customers", "redis", 1000, load.Authz}
	httpSc := scenario{"HTTP, embedded store, 1,000 customers", "file", 1000, load.HTTP}
	var selected []scenario
	for _, sc := range []scenario{small, large, redisSc,
		{"ext_proc, embedded store, 1,000 customers", "file", 1000, load.Process}, httpSc} {
		if *only == "" || strings.Contains(sc.name, *only) {
			selected = append(selected, sc)
		}
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
	// The targets that compare two scenarios, round by round.
	var notes []string
	compare := func(what string, a, b scenario) {
		if n := compareRounds(runs[a.name], runs[b.name]); n != "" {
			notes = append(notes, what+": "+n)
		}
	}
	compare(fmt.Sprintf("%d customers over 1,000 customers (decisions/s, same round)", *million), large, small)
	compare("Redis store over the embedded store, 1,000 customers (decisions/s, same round)", redisSc, small)
	compare("HTTP over ext_authz (gRPC), embedded store, 1,000 customers (decisions/s, same round)", httpSc, small)
	return appendRows(*out, rows, notes, b.workers, *rounds)
}

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
			base, err := floorOf(sc.mode)
			if err != nil {
				return nil, err
			}
			// A fresh Redis each time; the file store's keys stay seeded.
			seed := sc.store == "redis" || !seeded[sc.name]
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

// measureWithRedis is measure, with a Redis of its own when sc's store is
// Redis.
func (b *bench) measureWithRedis(ctx context.Context, sc scenario, seed bool) (result, error) {
	if sc.store != "redis" {
		return b.measure(ctx, sc, nil, seed)
	}
	rs, err := redistest.Launch(b.work)
	if err != nil {
		return result{}, err
	}
	defer rs.Stop()
	return b.measure(ctx, sc, rs, seed)
}

// compareRounds formats a's decisions/s over b's, round by round; "" when
// either was not measured.
func compareRounds(a, b []trial) string {
	if len(a) == 0 || len(a) != len(b) {
		return ""
	}
	var rs []float64
	for i := range a {
		rs = append(rs, a[i].m.r.PerSecond/b[i].m.r.PerSecond)
	}
	return ratios(rs)
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
	bytesPerCus float64 // heap per customer the load touched (0: not measured)
	failedOpen  float64 // decisions allowed because the store missed its budget
	local       float64 // decisions made locally because Redis missed its budget
	// callsPerDecision is Redis script calls (EVALSHA, EVAL) over decisions:
	// the round trips of decisions and key lookups (0: not Redis).
	callsPerDecision float64
}

// row formats m as a table row, with its ratio to floor and, when there
// were several rounds, every round's ratio.
func (m result) row(floor result, rounds []float64) string {
	ratio := m.r.PerSecond / floor.r.PerSecond
	mem := ""
	if m.bytesPerCus > 0 {
		mem = fmt.Sprintf("%.0f B of heap per active customer", m.bytesPerCus)
	}
	if m.callsPerDecision > 0 {
		mem += fmt.Sprintf("%.2f Redis script calls per decision; ", m.callsPerDecision)
	}
	if m.sc.store == "redis" {
		mem += fmt.Sprintf("%.2f%% failed open, %.2f%% decided locally (store budget missed)", 100*m.failedOpen, 100*m.local)
	}
	each := make([]string, len(rounds))
	for i, r := range rounds {
		each[i] = fmt.Sprintf("%.2f", r)
	}
	return fmt.Sprintf("| %s | %s | %s | %d | %.0f | %.2f | %s | %s | %s | %s | %s | %.2f | %s |",
		time.Now().UTC().Format(time.DateOnly), commit(), m.sc.name, m.r.Workers, m.r.PerSecond, ratio,
		strings.Join(each, " "), m.r.P50, m.r.P90, m.r.P99, m.r.P999, m.cpu, mem)
}

// measure seeds the store, starts the server, runs the load and reads the
// server's CPU and heap.
func (b *bench) measure(ctx context.Context, sc scenario, rs *redistest.Server, seed bool) (result, error) {
	res := result{sc: sc}
	srv, err := b.serve(ctx, sc, rs, seed)
	if err != nil {
		return res, err
	}
	defer srv.Stop()
	heapBefore, _ := srv.Heap()
	var callsBefore int64
	if rs != nil {
		if callsBefore, err = rs.ScriptCalls(); err != nil {
			return res, err
		}
	}
	cpuBefore, err := srv.CPUTime()
	if err != nil {
		return res, err
	}
	started := time.Now()
	if res.r, err = b.load(ctx, sc, srv); err != nil {
		return res, err
	}
	wall := time.Since(started)
	cpuAfter, err := srv.CPUTime()
	if err != nil {
		return res, err
	}
	// The warm-up's CPU is in the window too: spread over the whole run.
	res.cpu = (cpuAfter - cpuBefore).Seconds() / wall.Seconds()
	failed, err1 := srv.MetricSum("tollgate_decisions_total", `reason="store:error"`)
	all, err2 := srv.MetricSum("tollgate_decisions_total", "")
	local, _ := srv.Metric("tollgate_store_local_decisions_total") // none before --on-store-error local
	if err1 == nil && err2 == nil && all > 0 {
		res.failedOpen = failed / all // warm-up included on both sides
		res.local = local / all
	}
	if rs != nil && err2 == nil && all > 0 {
		calls, err := rs.ScriptCalls()
		if err != nil {
			return res, err
		}
		res.callsPerDecision = float64(calls-callsBefore) / all
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
func (b *bench) serve(ctx context.Context, sc scenario, rs *redistest.Server, seed bool) (*served.Server, error) {
	store := "file:" + filepath.Join(b.work, strings.NewReplacer(" ", "-", ",", "").Replace(sc.name))
	if rs != nil {
		store = rs.URL()
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

// load runs tollgate load against srv in sc's mode and returns its report.
func (b *bench) load(ctx context.Context, sc scenario, srv *served.Server) (load.Report, error) {
	var r load.Report
	target, conns := srv.GRPC, 4
	if sc.mode == load.HTTP {
		target, conns = srv.HTTP, b.workers // HTTP/1.1: a connection per request in flight
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
	fmt.Fprintf(f, "`make bench-e2e`: `tollgate load --workers %d --conns 4 --duration 10s --warmup 2s`, mix anonymous 20, keyed 70, blocked 5, invalid keys 5; load generator and server share the cores; HTTP rows: `--mode http --conns %d` to `serve --http-addr`, an HTTP/1.1 keep-alive connection per worker. %d rounds, each measuring the floor and then every scenario; ratio: decisions/s over the floor's of the same round and mode (`serve --noop` spoken to over ext_authz, ext_proc or HTTP), the row being the round of the median ratio (the floor's: of the median decisions/s); server CPU: cores busy, warm-up included.\n\n", workers, workers, rounds)
	fmt.Fprintln(f, "| date | commit | scenario | workers | decisions/s | ratio to floor | ratio per round | p50 | p90 | p99 | p99.9 | server CPU (cores) | memory |")
	fmt.Fprintln(f, "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
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
