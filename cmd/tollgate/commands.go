package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/internal/gcfloor"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
)

// newFlags returns a flag set that reports to stderr and does not exit.
// Its -h prints the command's synopsis and description (commandHelp), then
// the flags.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tollgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		h, ok := commandHelp[name]
		if !ok {
			h = [2]string{"[flags]", ""}
		}
		fmt.Fprintf(fs.Output(), "usage: tollgate %s %s\n", name, h[0])
		if h[1] != "" {
			fmt.Fprintf(fs.Output(), "\n%s\n", h[1])
		}
		fmt.Fprintf(fs.Output(), "\nflags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// commandHelp is each command's synopsis and description, for -h.
var commandHelp = map[string][2]string{
	"serve": {"--policy FILE [flags]", `Serve the policy to Envoy: ext_authz Check, ext_proc Process and the gRPC health
service on the gRPC address; with --http-addr the same decisions over HTTP (Envoy's
http_service, nginx auth_request, Caddy forward_auth); the admin API (keys, usage,
metrics, health) on the admin address. The policy reloads on SIGHUP and when its file changes; a bad file keeps
the old policy. SIGTERM or SIGINT stops gracefully (counts are written first).`},
	"check": {"[--policy] FILE...", `Validate policy files and print every error of each (file, field path, value).
Exit status 1 when any file has an error.`},
	"key new": {"", `Print a fresh random API key value and its sha256 hash, for a policy's api_keys
(only the hash goes in the file; give the value to the customer).`},
	"decide": {"--policy FILE --method M --path P [flags]", `Print the decision for one request, as a server with fresh state would make it:
verdict, status, reason, stage, route, key and the limits that applied.`},
	"load": {"[prepare] [flags]", `Send ext_authz, ext_proc or HTTP authorization (--mode http) load to a running
tollgate and report the decisions per second and their latency. 'tollgate load prepare' first seeds a store with the
run-time keys that keyed requests use (run 'tollgate load prepare -h').`},
	"replay": {"--policy CANDIDATE [--baseline CURRENT] [flags] LOG...", `Replay decision logs (serve --decision-log; plain or gzip, several merged in time order)
against a candidate policy, on a simulated clock and fresh state, and report what it would have answered: totals
by status, then per plan, route and customer, the changes first. Without --baseline, the logged answers are the
baseline. Malformed lines are skipped and counted. Flags go before the logs.`},
	"load prepare": {"--store URL --plan P [flags]", `Seed a store with the run-time keys that 'tollgate load' sends, before the server
starts on that store.`},
}

// parse parses args, turning -h and bad flags into exit statuses.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError(0)
		}
		return exitError(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitError(2)
	}
	return nil
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	cfg := server.Config{}
	fs.StringVar(&cfg.PolicyFile, "policy", "policy.yaml", "policy `file`")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", ":9001", "gRPC listen `address` (host:port or unix:/path)")
	fs.StringVar(&cfg.GRPCTLSCert, "grpc-tls-cert", "", "PEM `file` of the gRPC port's certificate (chain): the port speaks TLS only; re-read when it changes")
	fs.StringVar(&cfg.GRPCTLSKey, "grpc-tls-key", "", "PEM `file` of the private key of --grpc-tls-cert")
	fs.StringVar(&cfg.GRPCClientCA, "grpc-client-ca", "", "PEM `file` of the CAs that gRPC clients' certificates must chain to (mTLS: a client without one is refused)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "", "HTTP authorization listen `address` (host:port or unix:/path): Envoy's http_service at /ext_authz/, nginx auth_request and Caddy forward_auth at /forward_auth; off by default")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", server.DefaultAdminAddr, "admin HTTP API listen `address` (host:port or unix:/path; - for none)")
	tokenFile := fs.String("admin-token-file", "", "`file` holding the admin API's bearer token (default: $TOLLGATE_ADMIN_TOKEN; neither: the /v1 calls answer 503)")
	fs.StringVar(&cfg.Store, "store", server.DefaultStore, "state store `url`: file:DIR, memory:, redis://host:port/db (rediss://, redis-sentinel://, redis-cluster://); $TOLLGATE_STORE when not given, to keep a Redis password off the command line")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", time.Second, "longest a file store keeps counts in memory before it writes them")
	// The budget: what a healthy Redis meets on a loaded host, well inside
	// Envoy's 200ms ext_authz timeout (the reasoning is beside
	// redis.DefaultTimeout).
	fs.DurationVar(&cfg.StoreTimeout, "store-timeout", redis.DefaultTimeout, "budget of a decision's call to a Redis store")
	onStoreError := fs.String("on-store-error", string(server.OnErrorLocal), "when Redis cannot answer in time: `local` (this replica decides with its share of each limit), allow (without limits) or deny (503)")
	fs.IntVar(&cfg.WAFCounters, "waf-counters", memory.DefaultMaxCounters, "most WAF rate counters held in memory (`n`; the default costs at most about 30 MB); past it the ones furthest below their limit are dropped, never a blocking one")
	fs.StringVar(&cfg.DecisionLog, "decision-log", "", "`file` of the decision log: one JSON line per decision, written off the decision path (lines the disk cannot keep up with are dropped and counted); off by default")
	fs.IntVar(&cfg.DecisionLogMaxSize, "decision-log-max-size", decisionlog.DefaultMaxSize, "size in `MB` at which the decision log is rotated (the old file is gzipped)")
	fs.IntVar(&cfg.DecisionLogMaxBackups, "decision-log-max-backups", decisionlog.DefaultMaxBackups, "how many rotated decision log files are kept (`n`)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 10*time.Second, "how long a graceful stop waits for calls in flight")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the admin address (no token)")
	fs.BoolVar(&cfg.Noop, "noop", false, "allow every request without policy or store work: the floor for load tests")
	heapFloor := fs.Int("gc-heap-floor", 64, "size in `MB` below which the heap is not garbage-collected (GOGC raised while live data is under half of it: less CPU per decision for about this much more memory); 0: off; ignored when GOGC is set")
	if err := parse(fs, args); err != nil {
		return err
	}
	storeFromEnv(fs, &cfg.Store)
	if *heapFloor < 0 {
		return fmt.Errorf("--gc-heap-floor %d: want 0 (off) or a size in MB", *heapFloor)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *level, err)
	}
	cfg.OnStoreError = server.OnStoreError(*onStoreError)
	if !cfg.OnStoreError.Valid() {
		return fmt.Errorf("--on-store-error %q: want local, allow or deny", *onStoreError)
	}
	if cfg.StoreTimeout <= 0 {
		return fmt.Errorf("--store-timeout %v: want a positive duration such as 100ms", cfg.StoreTimeout)
	}
	if cfg.WAFCounters < 1 {
		return fmt.Errorf("--waf-counters %d: want at least 1", cfg.WAFCounters)
	}
	if cfg.DecisionLogMaxSize < 1 {
		return fmt.Errorf("--decision-log-max-size %d: want at least 1 (MB)", cfg.DecisionLogMaxSize)
	}
	if cfg.DecisionLogMaxBackups < 1 {
		return fmt.Errorf("--decision-log-max-backups %d: want at least 1", cfg.DecisionLogMaxBackups)
	}
	if cfg.FlushInterval <= 0 {
		return fmt.Errorf("--flush-interval %v: want a positive duration such as 1s", cfg.FlushInterval)
	}
	token, err := adminToken(*tokenFile)
	if err != nil {
		return err
	}
	cfg.AdminToken = token
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	server.LibraryLogs(cfg.Logger)
	if gogc := os.Getenv("GOGC"); gogc != "" && *heapFloor > 0 {
		cfg.Logger.Info("GOGC is set: --gc-heap-floor is off", "GOGC", gogc)
	} else if *heapFloor > 0 {
		gcCtx, stopGC := context.WithCancel(ctx)
		var gc sync.WaitGroup
		gc.Go(func() { gcfloor.Keep(gcCtx, uint64(*heapFloor)<<20, time.Second) })
		defer gc.Wait()
		defer stopGC()
	}
	// SIGHUP reloads the policy (the file watcher does too, on change);
	// caught from before New, so that one sent while it opens the store
	// does not kill the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := server.New(cfg)
	if err != nil {
		return logged(cfg.Logger, stderr, "not started", err)
	}
	if token == "" && cfg.AdminAddr != "-" {
		cfg.Logger.Warn("no admin token (--admin-token-file or TOLLGATE_ADMIN_TOKEN): the admin API's /v1 calls answer 503")
	}
	if err := serveReloading(ctx, s, hup, cfg.Logger, cfg.PolicyFile); err != nil {
		return logged(cfg.Logger, stderr, "stopped", err)
	}
	return nil
}

// logged logs err as serve's last line, JSON as every line of its log is,
// also when --log-level is above error, and returns the exit status that
// says it failed, printed already.
func logged(log *slog.Logger, stderr io.Writer, msg string, err error) error {
	if !log.Enabled(context.Background(), slog.LevelError) {
		log = slog.New(slog.NewJSONHandler(stderr, nil))
	}
	log.Error(msg, "err", err)
	return exitError(1)
}

// serveReloading serves s until ctx is done, reloading its policy on each
// signal from hup.
func serveReloading(ctx context.Context, s *server.Server, hup <-chan os.Signal, log *slog.Logger, policyFile string) error {
	done := make(chan struct{})
	var reloads sync.WaitGroup
	reloads.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				// Reload logs and counts the outcome; /readyz shows
				// a bad file's errors.
				log.Info("SIGHUP: reloading the policy", "policy", policyFile)
				s.Reload()
			}
		}
	})
	err := s.Serve(ctx)
	close(done)
	reloads.Wait()
	return err
}

// adminToken returns the admin API's token: the file's content without
// surrounding white space, else $TOLLGATE_ADMIN_TOKEN, else "" (none).
func adminToken(file string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv("TOLLGATE_ADMIN_TOKEN")), nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("--admin-token-file %s: the file is empty", file)
	}
	return token, nil
}

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	file := fs.String("policy", "", "policy `file` (or name the files after the flags)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError(0)
		}
		return exitError(2)
	}
	files := fs.Args()
	if *file != "" {
		files = append([]string{*file}, files...)
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "tollgate check: name a policy file: tollgate check policy.yaml")
		return exitError(2)
	}
	bad := false
	for _, f := range files {
		p, err := loadPolicy(f, stdout)
		if err != nil {
			bad = true
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s, %s)\n", p.File, count(len(p.StageNames()), "stage"), count(len(p.PlanNames()), "plan"))
		if shadow := p.ShadowLimits(); len(shadow) > 0 {
			fmt.Fprintf(stdout, "%s: in shadow mode (counted, never denying): %s\n", p.File, strings.Join(shadow, ", "))
		}
	}
	if bad {
		return exitError(1)
	}
	return nil
}

// count writes n and the noun, plural unless n is 1: "1 stage", "3 plans".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func runKeyNew(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("key new", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	// "tg_" and 43 characters of unpadded base64url: [A-Za-z0-9_-], 46 in all.
	value := "tg_" + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(value))
	fmt.Fprintf(stdout, "value: %s\nhash:  sha256:%s\n", value, hex.EncodeToString(sum[:]))
	return nil
}

// headerFlags collects repeated --header name:value flags.
type headerFlags map[string]string

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q is not name:value", v)
	}
	h[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	return nil
}

func runDecide(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("decide", stderr)
	file := fs.String("policy", "policy.yaml", "policy `file`")
	headers := headerFlags{}
	r := policy.Request{Headers: headers}
	fs.StringVar(&r.Method, "method", "GET", "request `method`")
	fs.StringVar(&r.Path, "path", "/", "request `path` (may hold a query string)")
	fs.StringVar(&r.Host, "host", "", "request `host`")
	fs.StringVar(&r.Peer, "ip", "127.0.0.1", "client `address` (Envoy's TCP peer)")
	fs.StringVar(&r.API, "api", "", "`api` named by Envoy (context extension)")
	fs.StringVar(&r.Stage, "stage", "", "`stage` named by Envoy (context extension)")
	key := fs.String("key", "", "API key `value` sent in the policy's key header")
	fs.Var(headers, "header", "request header `name:value` (repeatable)")
	at := fs.String("at", "", "decide at this RFC 3339 `instant` (default now)")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := loadPolicy(*file, stderr)
	if err != nil {
		return err
	}
	now := time.Now()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			return fmt.Errorf("--at %q: %w", *at, err)
		}
	}
	if _, err := netip.ParseAddr(r.Peer); err != nil {
		if _, err := netip.ParseAddrPort(r.Peer); err != nil {
			fmt.Fprintf(stderr, "tollgate decide: --ip %q is not an IP address (such as 198.51.100.7 or 2001:db8::7)\n", r.Peer)
			return exitError(2)
		}
	}
	if *key != "" {
		headers[p.KeyHeader()] = *key
	}
	d, err := p.Evaluate(now, &r, memory.New(), nil)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, decisionJSON(&d))
	}
	fmt.Fprintf(stdout, "%s %d", d.Verdict, d.Status)
	if d.Reason != "" {
		fmt.Fprintf(stdout, " %s", d.Reason)
	}
	fmt.Fprintln(stdout)
	if d.Invalid != "" {
		fmt.Fprintf(stdout, "invalid:  %s\n", d.Invalid)
	}
	if d.Stage != "" {
		fmt.Fprintf(stdout, "stage:    %s/%s\n", d.API, d.Stage)
	}
	if d.Route != "" {
		fmt.Fprintf(stdout, "route:    %s\n", d.Route)
	}
	if d.KeyID != "" {
		fmt.Fprintf(stdout, "key:      %s (customer %s, plan %s)\n", d.KeyID, d.Customer, d.Plan)
	}
	if d.Shadow != "" {
		fmt.Fprintf(stdout, "shadow:   %s (would have denied; in shadow mode)\n", d.Shadow)
	}
	if d.Body != "" {
		fmt.Fprintf(stdout, "body:     %s\n", d.Body)
	}
	if d.RetryAfter > 0 {
		fmt.Fprintf(stdout, "retry:    %s\n", wait(d.RetryAfter))
	}
	for _, l := range d.AppliedLimits() {
		fmt.Fprintf(stdout, "limit:    %-8s %d of %d left, window %s, reset in %s\n", l.Tier, l.Remaining, l.Quota, wait(l.Window), wait(l.Reset))
	}
	return nil
}

// wait writes a limit's duration for people: whole seconds, rounded up as
// Retry-After is ("11h48m60s" reads "11h49m0s"), or milliseconds under a
// second.
func wait(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return ((d + time.Second - 1) / time.Second * time.Second).String()
}

// decisionJSON is the --json form of a decision.
func decisionJSON(d *policy.Decision) any {
	type limit struct {
		Tier      string `json:"tier"`
		Quota     int64  `json:"quota"`
		Window    string `json:"window"`
		Remaining int64  `json:"remaining"`
		Reset     string `json:"reset"`
	}
	limits := []limit{}
	for _, l := range d.AppliedLimits() {
		limits = append(limits, limit{l.Tier.String(), l.Quota, wait(l.Window), l.Remaining, wait(l.Reset)})
	}
	return struct {
		Verdict    string  `json:"verdict"`
		Status     int     `json:"status"`
		Reason     string  `json:"reason,omitempty"`
		Invalid    string  `json:"invalid,omitempty"`
		Body       string  `json:"body,omitempty"`
		RetryAfter string  `json:"retry_after,omitempty"`
		API        string  `json:"api,omitempty"`
		Stage      string  `json:"stage,omitempty"`
		Route      string  `json:"route,omitempty"`
		KeyID      string  `json:"key_id,omitempty"`
		Customer   string  `json:"customer,omitempty"`
		Plan       string  `json:"plan,omitempty"`
		Shadow     string  `json:"shadow,omitempty"`
		Limits     []limit `json:"limits"`
	}{d.Verdict.String(), d.Status, string(d.Reason), d.Invalid, d.Body, durationOrEmpty(d.RetryAfter), d.API, d.Stage, d.Route, d.KeyID, d.Customer, d.Plan, d.Shadow, limits}
}

func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return wait(d)
}

// writeJSON writes v to w as indented JSON: the --json form of a command's
// answer.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// storeFromEnv sets store, the --store of fs, to $TOLLGATE_STORE when that
// is set and --store was not given: a command line is readable by every
// user of the host (ps), the environment only by the process's.
func storeFromEnv(fs *flag.FlagSet, store *string) {
	env := os.Getenv("TOLLGATE_STORE")
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "store" })
	if env != "" && !given {
		*store = env
	}
}
