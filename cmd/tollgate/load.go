package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/load"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/file"
	"github.com/tollgate/tollgate/store/redis"
)

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "prepare" {
		return runLoadPrepare(args[1:], stdout, stderr)
	}
	fs := newFlags("load", stderr)
	var c load.Config
	fs.StringVar(&c.Target, "target", "127.0.0.1:9001", "tollgate's gRPC `address`, or its --http-addr for --mode http (host:port or unix:/path)")
	mode := fs.String("mode", "authz", "`api`: authz (ext_authz Check), proc (an ext_proc stream per request), http (Envoy's HTTP form: each request behind /ext_authz, over HTTP/1.1; --target is then --http-addr) or ratelimit (envoyproxy/ratelimit's ShouldRateLimit, to compare with it)")
	fs.IntVar(&c.Workers, "workers", 50, "concurrent `workers`, each one request at a time")
	fs.IntVar(&c.Conns, "conns", 0, "`connections` the workers share: gRPC ones multiplex requests (default 4); an HTTP/1.1 one carries one at a time (default: one per worker)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured `time` (after the warm-up)")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "`time` sent but not measured, first")
	fs.Int64Var(&c.Requests, "requests", 0, "stop after this many measured `requests` instead of --duration")
	file := fs.String("policy", "policy.yaml", "the policy `file` tollgate serves: the request mix comes from its default stage")
	fs.IntVar(&c.Keys, "keys", 1000, "distinct `keys` keyed requests use (seed them with tollgate load prepare)")
	mix := fs.String("mix", "anonymous=30,keyed=60,blocked=5,invalid=5", "request `weights` by kind")
	fs.Uint64Var(&c.Seed, "seed", 1, "`seed` of the request sequence")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch load.Mode(*mode) {
	case load.Authz, load.Process, load.HTTP, load.RateLimit:
		c.Mode = load.Mode(*mode)
	default:
		return fmt.Errorf("--mode %q: want authz, proc, http or ratelimit", *mode)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["conns"] {
		// The same requests in flight in every mode: HTTP/1.1 needs a
		// connection for each, as a proxy's pool opens them.
		c.Conns = 4
		if c.Mode == load.HTTP {
			c.Conns = c.Workers
		}
	}
	if given["requests"] && !given["duration"] {
		c.Duration = 0 // the count ends the run
	}
	var err error
	if c.Mix, err = load.ParseMix(*mix); err != nil {
		return err
	}
	if c.Policy, err = policyfile.Load(*file); err != nil {
		return err
	}
	r, err := load.Run(ctx, c)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, r)
	}
	printReport(stdout, r)
	return nil
}

func printReport(w io.Writer, r *load.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "mode\t%s (%d workers, %d connections, %d keys)\n", r.Mode, r.Workers, r.Conns, r.Keys)
	fmt.Fprintf(tw, "requests\t%d in %s: %.0f/s\n", r.Requests, r.Elapsed.Round(time.Millisecond), r.PerSecond)
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", r.P50, r.P90, r.P99, r.P999, r.Max)
	fmt.Fprintf(tw, "answers\t200: %d  403: %d  429: %d  other: %d  errors: %d\n", r.Allowed, r.Forbidden, r.TooMany, r.Other, r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(tw, "first error\t%s\n", r.FirstError)
	}
	fmt.Fprintln(tw, "note\tclosed loop: a slow server slows the load down (coordinated omission); percentiles are of the requests sent")
	tw.Flush()
}

func runLoadPrepare(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("load prepare", stderr)
	store := fs.String("store", "", "the `store` tollgate will serve from: file:DIR or a Redis URL (the server must not hold it yet); $TOLLGATE_STORE when not given")
	keys := fs.Int("keys", 1000, "number of `keys` to save: tollgate load's KeyValue(0..keys-1)")
	plan := fs.String("plan", "", "usage `plan` of the keys (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	storeFromEnv(fs, store)
	if *plan == "" || *store == "" {
		fmt.Fprintln(stderr, "tollgate load prepare: --store and --plan are required")
		return exitError(2)
	}
	var st interface {
		load.KeyImporter
		Close() error
	}
	var err error
	switch {
	case strings.HasPrefix(*store, "file:"):
		st, err = file.Open(strings.TrimPrefix(*store, "file:"), file.Options{})
	case redis.IsURL(*store):
		st, err = redis.Open(*store, redis.Options{})
	default:
		return fmt.Errorf("--store %q: want file:DIR or a Redis URL", redis.Redact(*store))
	}
	if err != nil {
		return err
	}
	start := time.Now()
	err = load.Prepare(st, *keys, *plan, time.Now(), nil)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "saved %d keys on plan %s in %s: tg_load_%020d ... tg_load_%020d\n", *keys, *plan, time.Since(start).Round(time.Millisecond), 0, *keys-1)
	return nil
}
