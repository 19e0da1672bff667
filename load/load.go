package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tollgate/tollgate/policy"
)

// Mode is the API the load speaks.
type Mode string

// Modes.
const (
	Authz   Mode = "authz" // ext_authz Check, one unary call per request
	Process Mode = "proc"  // ext_proc, one stream per request (request and response headers)
	HTTP    Mode = "http"  // HTTP authorization, Envoy's form: one HTTP/1.1 request per request
	// RateLimit speaks envoyproxy/ratelimit's API (RateLimitService
	// ShouldRateLimit, one unary call per request, one descriptor each), for
	// comparing tollgate with it under the same mix (RateLimitConfig).
	RateLimit Mode = "ratelimit"
)

// Mix weighs the kinds of requests.
type Mix struct {
	// Anonymous requests go to the routes without api_key: required.
	Anonymous int
	// Keyed requests carry one of Config.Keys keys (KeyValue).
	Keyed int
	// Blocked requests come from an address the WAF blocks.
	Blocked int
	// InvalidKey requests carry a key no store holds.
	InvalidKey int
}

// DefaultMix is mostly keyed traffic with a little of everything else.
var DefaultMix = Mix{Anonymous: 30, Keyed: 60, Blocked: 5, InvalidKey: 5}

// ParseMix reads "anonymous=30,keyed=60,blocked=5,invalid=5"; missing kinds
// weigh 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		name, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: %q is not kind=weight", s, part)
		}
		switch name {
		case "anonymous":
			m.Anonymous = n
		case "keyed":
			m.Keyed = n
		case "blocked":
			m.Blocked = n
		case "invalid":
			m.InvalidKey = n
		default:
			return m, fmt.Errorf("mix %q: unknown kind %q (want anonymous, keyed, blocked, invalid)", s, name)
		}
	}
	if m.Anonymous+m.Keyed+m.Blocked+m.InvalidKey == 0 {
		return m, fmt.Errorf("mix %q: every weight is 0", s)
	}
	return m, nil
}

// Config is one load run.
type Config struct {
	// Target is tollgate's gRPC address, or with HTTP its HTTP
	// authorization address (serve --http-addr): host:port or unix:/path.
	Target string
	Mode   Mode
	// Workers send one request at a time each (a closed loop), over Conns
	// connections: gRPC ones shared round-robin, HTTP/1.1 ones taken by
	// whichever worker finds one free (Conns = Workers: one each).
	Workers, Conns int
	// Duration of the measured part, after Warmup (whose requests are
	// sent but not counted). Requests, when above 0, ends the run after
	// that many measured requests instead.
	Duration, Warmup time.Duration
	Requests         int64
	// Policy is where the request mix comes from: the default stage's
	// routes, the key header, the WAF's blocked networks.
	Policy *policy.Policy
	// Keys is the number of distinct keys keyed requests use: KeyValue(0)
	// to KeyValue(Keys-1), which the store must hold (Prepare).
	Keys int
	Mix  Mix
	// Seed makes the request sequence repeatable.
	Seed uint64
}

// KeyValue returns the i-th load key's value.
func KeyValue(i int) string { return fmt.Sprintf("tg_load_%020d", i) }

// KeyID returns the i-th load key's id, which is also its customer
// (Prepare).
func KeyID(i int) string { return "load-" + strconv.Itoa(i) }

// Report is what a run measured.
type Report struct {
	Mode     Mode          `json:"mode"`
	Workers  int           `json:"workers"`
	Conns    int           `json:"conns"`
	Keys     int           `json:"keys"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Requests int64         `json:"requests"`
	// PerSecond is Requests over Elapsed.
	PerSecond float64 `json:"per_second"`
	// Latency of one request (a Check, or a whole ext_proc stream).
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	// Answers by HTTP status, and calls that failed. The ratelimit mode's
	// OK is 200 and its OVER_LIMIT 429.
	Allowed   int64 `json:"allowed"`
	Forbidden int64 `json:"forbidden"`
	TooMany   int64 `json:"too_many"`
	Other     int64 `json:"other"`
	Errors    int64 `json:"errors"`
	// OtherStatuses counts the other answers by status.
	OtherStatuses map[int]int64 `json:"other_statuses,omitempty"`
	// FirstError is the first failed call's error, for the report.
	FirstError string `json:"first_error,omitempty"`
}

// request is one prepared request: what varies between requests of a kind.
type request struct {
	method, path string
	route        string // the route's match string ("POST /transactions")
	key          string // "" : none
	// id is the key's id (KeyID), or "invalid-N" for a key no store
	// holds: the ratelimit mode sends it instead of the key's value.
	id string
}

// plan is the requests a policy gives: by kind, the routes' requests.
type plan struct {
	anonymous, keyed []request
	blocked          []netip.Addr
	keyHeader        string
	api, stage       string
}

// planOf draws the request templates from p's default stage.
func planOf(p *policy.Policy) (*plan, error) {
	pl := &plan{keyHeader: p.KeyHeader()}
	name := p.DefaultStage()
	if name == "" {
		names := p.StageNames()
		if len(names) == 0 {
			return nil, errors.New("load: the policy has no stage")
		}
		name = names[0]
	}
	pl.api, pl.stage, _ = strings.Cut(name, "/")
	for _, r := range p.Routes(name) {
		method := r.Method
		if method == "ANY" {
			method = "GET"
		}
		req := request{method: method, path: samplePath(r.Pattern), route: r.Match}
		if r.KeyMode() == policy.KeyRequired {
			pl.keyed = append(pl.keyed, req)
		} else {
			pl.anonymous = append(pl.anonymous, req)
		}
	}
	for _, pf := range p.BlockedPrefixes() {
		pl.blocked = append(pl.blocked, pf.Addr().Next())
	}
	if len(pl.anonymous) == 0 && len(pl.keyed) == 0 {
		return nil, fmt.Errorf("load: stage %s has no routes", name)
	}
	return pl, nil
}

// samplePath fills a route pattern's parameters: {id} with "p-17", {rest+}
// with "a/b".
func samplePath(pattern string) string {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		switch {
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "+}"):
			segs[i] = "a/b"
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			segs[i] = "p-17"
		}
	}
	return strings.Join(segs, "/")
}

// Request kinds, in Mix order.
const (
	kindAnonymous = iota
	kindKeyed
	kindBlocked
	kindInvalid
)

// pick returns the next request of a worker and its client address. A kind
// the policy has no routes for (or no blocked networks) falls back to the
// other route kind.
func (pl *plan) pick(rng *rand.Rand, keys int, weights [4]int, total int) (request, string) {
	n, kind := rng.IntN(total), 0
	for n >= weights[kind] {
		n -= weights[kind]
		kind++
	}
	// Clients from 10.0.0.0/8, so that per-IP WAF rules see a spread.
	ip := "10." + strconv.Itoa(rng.IntN(256)) + "." + strconv.Itoa(rng.IntN(256)) + "." + strconv.Itoa(rng.IntN(254)+1)
	if kind == kindBlocked && len(pl.blocked) > 0 {
		ip = pl.blocked[rng.IntN(len(pl.blocked))].String()
	}
	keyed := kind == kindKeyed || kind == kindInvalid
	if keyed && len(pl.keyed) == 0 || !keyed && len(pl.anonymous) == 0 {
		keyed = !keyed
	}
	if !keyed {
		return pl.anonymous[rng.IntN(len(pl.anonymous))], ip
	}
	r := pl.keyed[rng.IntN(len(pl.keyed))]
	if kind == kindInvalid {
		n := strconv.Itoa(rng.IntN(1 << 30))
		r.key, r.id = "tg_load_invalid_"+n, "invalid-"+n
	} else {
		n := rng.IntN(max(keys, 1))
		r.key, r.id = KeyValue(n), KeyID(n)
	}
	return r, ip
}

// Run sends the load and reports what it measured. It is a closed loop:
// each worker waits for an answer before it sends again, so when the server
// slows down the offered load drops with it (coordinated omission) and the
// percentiles are those of the requests that were sent. Latencies come
// from the monotonic clock.
func Run(ctx context.Context, c Config) (*Report, error) {
	if c.Workers <= 0 || c.Conns <= 0 {
		return nil, errors.New("load: workers and conns must be at least 1")
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		return nil, errors.New("load: give a duration or a request count")
	}
	switch c.Mode {
	case Authz, Process, HTTP, RateLimit:
	default:
		return nil, fmt.Errorf("load: mode %q: want %s, %s, %s or %s", c.Mode, Authz, Process, HTTP, RateLimit)
	}
	pl, err := planOf(c.Policy)
	if err != nil {
		return nil, err
	}
	senders, closeConns, err := connect(&c, pl)
	if err != nil {
		return nil, err
	}
	defer closeConns()
	weights := [4]int{c.Mix.Anonymous, c.Mix.Keyed, c.Mix.Blocked, c.Mix.InvalidKey}
	total := weights[0] + weights[1] + weights[2] + weights[3]
	if total == 0 {
		weights, total = [4]int{DefaultMix.Anonymous, DefaultMix.Keyed, DefaultMix.Blocked, DefaultMix.InvalidKey}, 100
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var measuring sync.WaitGroup
	start := time.Now().Add(c.Warmup)
	var end time.Time
	if c.Duration > 0 {
		end = start.Add(c.Duration)
	}
	var budget chan struct{} // one token per measured request, with Requests
	if c.Requests > 0 {
		budget = make(chan struct{}, c.Requests)
		for range c.Requests {
			budget <- struct{}{}
		}
		close(budget)
	}
	results := make([]*worker, c.Workers)
	for w := range c.Workers {
		wk := &worker{hist: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3),
			rng: rand.New(rand.NewPCG(c.Seed, uint64(w)+1)), sender: senders[w]}
		results[w] = wk
		measuring.Go(func() { wk.run(ctx, &c, pl, weights, total, start, end, budget) })
	}
	measuring.Wait()
	elapsed := time.Since(start)

	r := &Report{Mode: c.Mode, Workers: c.Workers, Conns: c.Conns, Keys: c.Keys, Elapsed: elapsed}
	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for _, wk := range results {
		hist.Merge(wk.hist)
		r.Allowed += wk.allowed
		r.Forbidden += wk.forbidden
		r.TooMany += wk.tooMany
		r.Other += wk.other
		r.Errors += wk.errors
		for st, n := range wk.others {
			if r.OtherStatuses == nil {
				r.OtherStatuses = map[int]int64{}
			}
			r.OtherStatuses[st] += n
		}
		if r.FirstError == "" && wk.firstErr != nil {
			r.FirstError = wk.firstErr.Error()
		}
	}
	r.Requests = r.Allowed + r.Forbidden + r.TooMany + r.Other + r.Errors
	r.PerSecond = float64(r.Requests) / elapsed.Seconds()
	us := func(q float64) time.Duration { return time.Duration(hist.ValueAtQuantile(q)) * time.Microsecond }
	r.P50, r.P90, r.P99, r.P999 = us(50), us(90), us(99), us(99.9)
	r.Max = time.Duration(hist.Max()) * time.Microsecond
	return r, ctx.Err()
}

// worker is one closed-loop sender and what it measured.
type worker struct {
	hist   *hdrhistogram.Histogram
	rng    *rand.Rand
	sender sender

	allowed, forbidden, tooMany, other, errors int64
	others                                     map[int]int64
	firstErr                                   error
}

func (w *worker) run(ctx context.Context, c *Config, pl *plan, weights [4]int, total int, start, end time.Time, budget chan struct{}) {
	for ctx.Err() == nil {
		now := time.Now()
		measured := !now.Before(start)
		if measured {
			if !end.IsZero() && !now.Before(end) {
				return
			}
			if budget != nil {
				if _, ok := <-budget; !ok {
					return
				}
			}
		}
		req, ip := pl.pick(w.rng, c.Keys, weights, total)
		t0 := time.Now()
		status, err := w.sender.send(ctx, req, ip)
		took := time.Since(t0)
		if !measured {
			continue
		}
		w.hist.RecordValue(max(took.Microseconds(), 1))
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			w.errors++
			if w.firstErr == nil {
				w.firstErr = err
			}
		case status == 200:
			w.allowed++
		case status == 403:
			w.forbidden++
		case status == 429:
			w.tooMany++
		default:
			w.other++
			if w.others == nil {
				w.others = map[int]int64{}
			}
			w.others[status]++
		}
	}
}
