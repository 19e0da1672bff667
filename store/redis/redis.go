package redis

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

var _ policy.State = (*Store)(nil)
var _ policy.Keys = (*Store)(nil)

// Defaults of Options.
const (
	// DefaultTimeout is the budget of one decision's Redis call. A healthy
	// Redis meets it on a loaded host: on the 2-core machine of the README,
	// with both cores spun by other work, three replicas and Redis beside
	// them, a decision's wait for its call and the call's round trip each
	// stayed under 26ms in 30,000 decisions, and once, on a noisier day,
	// reached 100ms. Envoy's ext_authz filter waits 200ms by default (the
	// kits set 250ms): a budget of 100ms answers well before Envoy gives up,
	// with this replica's local decision when Redis did not answer. A
	// decision that must look up a key not yet cached makes two calls.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultAdminTimeout bounds the admin API's calls.
	DefaultAdminTimeout = 2 * time.Second
	// DefaultRetention is how long quota and usage counters are kept after
	// their period or day ends, for usage reports.
	DefaultRetention = 31 * 24 * time.Hour
	// DefaultPrefix begins every key. Its hash tag puts all of tollgate's
	// keys in one Redis Cluster slot (see the package doc).
	DefaultPrefix = "{tollgate}:"
	// DefaultLeaseTTL is the longest a request may hold a concurrency
	// slot without a release: longer than routes' timeouts, short enough
	// that a slot lost to a failed release comes back soon (the URL's
	// lease_ttl parameter sets it).
	DefaultLeaseTTL = 5 * time.Minute
)

// releaseTimeout is the least time a Release may take.
const releaseTimeout = 100 * time.Millisecond

// ErrUnavailable is returned, without a call to Redis, while the circuit is
// open (breaker.go): Redis seems down and has not answered a ping since.
var ErrUnavailable = errors.New("redis: unreachable (calls stopped until a ping answers)")

// Options configure a Store.
type Options struct {
	// Timeout is the budget of a decision's call: Apply (from the call to
	// Apply, a wait on the queue for a shared call included) and LookupKey
	// (default DefaultTimeout).
	Timeout time.Duration
	// AdminTimeout bounds the other calls (default DefaultAdminTimeout).
	AdminTimeout time.Duration
	// Retention is how long counters are kept after they end (default
	// DefaultRetention; the URL's retention parameter sets it too).
	Retention time.Duration
	// Prefix begins every key (default DefaultPrefix; the URL's prefix
	// parameter sets it too). Replicas that share limits share a prefix.
	Prefix string
	// LeaseTTL bounds how long a concurrency slot is held without a
	// release: the slot of a replica that died with requests in flight
	// frees up after it (default DefaultLeaseTTL).
	LeaseTTL time.Duration
	// Local makes a decision that Redis cannot answer in time (the call
	// fails, misses its budget, or the circuit is open) be made on this
	// replica's own store with its share of every limit, instead of
	// failing (local.go); what it counts of quotas and usage is added to
	// Redis when it answers again (reconcile.go).
	Local bool
	// LocalMaxCounters bounds the WAF rate counters that local decisions
	// keep in memory (default memory.DefaultMaxCounters; see
	// memory.WithMaxCounters). Redis keeps the shared ones, each expiring
	// after its two windows.
	LocalMaxCounters int
	// Observer, when set, receives the Store's measurements and the
	// changes of its circuit.
	Observer Observer
	// CallerClock makes Apply use the instant it is given instead of
	// Redis's own clock; for tests over fixed instants (buckets and WAF
	// counters then do not expire: Redis's expiry follows its own clock).
	// Replicas must use Redis's clock, so that they agree on time.
	CallerClock bool
}

// Observer receives what a Store measures (server/metrics.go exports it).
// Its methods must be quick and safe for concurrent use.
type Observer interface {
	// Decision reports a decision's wait for its call to be sent (0 for
	// a call made at once) and the call's round trip (0 when it failed).
	Decision(wait, roundTrip time.Duration)
	// Circuit reports that the circuit opened (cause: the error that
	// opened it) or closed again (cause nil), once per change.
	Circuit(open bool, cause error)
	// Primary reports, on a cluster, that the primary at addr stopped
	// answering (its lane rests: its customers are decided locally; cause:
	// the last failure) or answers again (cause nil), once per change.
	Primary(addr string, answering bool, cause error)
}

// Store is the Redis store. The zero Store is not usable; call Open.
type Store struct {
	c    goredis.UniversalClient
	url  string // without credentials, for messages
	opts Options

	// spread is set on a Redis Cluster: the state keys begin with
	// statePrefix (the prefix without its hash tag) and the hash tag of
	// their home, and the shared buckets are leased (spread.go).
	spread      bool
	statePrefix string
	cluster     *goredis.ClusterClient
	leases      leases
	returns     sync.WaitGroup // runs returning
	// script is the apply script (clusterScript on a cluster), with its
	// source and hash.
	script               *goredis.Script
	scriptSrc, scriptSHA string

	// keysKey and byHashKey are the hashes of the run-time keys, by id and
	// by hash; changesKey is the channel their changes are announced on.
	keysKey, byHashKey, changesKey string
	// keyIDsKey and keyCustomersKey order the run-time keys for paging
	// (keyorder.go): sorted sets whose members, all of score 0, are the
	// ids, and the customers and ids joined by a NUL byte.
	keyIDsKey, keyCustomersKey string
	// copiesKey is the set of the lookup copies to make on a cluster
	// (keycopies.go); noteCopies is set on a cluster, whatever its
	// layout, where the changes to the keys note their copies there
	// (with layout=one-slot, once copies began to be made: keyKeys).
	copiesKey  string
	noteCopies bool
	copiesMade atomic.Bool   // copyAll is done
	copyCursor atomic.Uint64 // where copyAll goes on from
	// lookups batches the lookups the key cache makes (lookups.go).
	lookups lookups
	// keys caches LookupKey's answers (keycache.go); watching runs
	// watchKeys, which clears it on other replicas' changes, and mine
	// holds the tags of this Store's own (keywatch.go).
	keys     *keyCache
	watching sync.WaitGroup
	mine     ownChanges

	window  window // the calls' outcomes, for the circuit breaker
	open    atomic.Bool
	probeMu sync.Mutex // guards stopped and the start of a prober
	stopped bool
	probing sync.WaitGroup
	done    chan struct{}
	closed  sync.Once

	// main is the lane of the decisions' calls (batch.go); on a cluster,
	// each primary has a lane of its own in lanes (its address →
	// *lane), made when a decision first goes to it (laneOf, under
	// lanesMu, which Close holds when it closes done).
	main    lane
	lanes   sync.Map
	lanesMu sync.Mutex
	sending sync.WaitGroup
	calls   atomic.Int64 // calls of the apply script made, for tests
	// local is the store of local decisions (nil without Options.Local);
	// owed is set when one counted what Redis must be given, and kick
	// then wakes the heartbeat to push it when Redis answers again.
	local *fallback
	owed  atomic.Bool
	kick  chan struct{}
	// localTaken counts the decisions made locally that counted quota or
	// usage; pushedThrough is the localTaken that the last complete push
	// started from. While they differ, a quota may owe Redis takes it does
	// not hold yet, which the decisions made on Redis count (owedQuotas).
	localTaken, pushedThrough atomic.Int64
	// pushMu guards pending, the pushes of local counts still to make,
	// and changes, reused (reconcile.go).
	pushMu  sync.Mutex
	pending []*push
	changes []memory.Change
	// strays are slots Redis may hold for decisions answered locally.
	strayMu sync.Mutex
	strays  []strayLease
	// stop ends the calls of the heartbeat and the prober when the Store
	// closes.
	stop       context.Context
	cancelStop context.CancelFunc

	replicas    replicas
	replicasKey string
	// beating runs the heartbeat; background, the releases of slots that
	// Redis took for decisions answered locally.
	beating, background sync.WaitGroup

	// errTimeout and errClosed are the errors of a decision whose budget
	// ran out before its reply came, and of one the Store closed under.
	errTimeout, errClosed error
}

// Open connects to the Redis of rawURL:
//   - redis://[user:password@]host:port[/db], rediss://... (TLS), unix:///path;
//   - redis-sentinel://host:port?master_name=NAME[&addr=host:port...]
//     (and rediss-sentinel://): a Sentinel-managed primary;
//   - redis-cluster://host:port[?addr=host:port...] (and rediss-cluster://).
//
// go-redis's query parameters (pool_size, dial_timeout, ...) pass through;
// prefix, retention, lease_ttl and layout are the Store's own (layout:
// spread, the default, or one-slot, on a cluster: spread.go). Open loads the scripts; a Redis
// that does not answer yet is not an error (the Store starts with its circuit
// open and recovers when Redis answers), a bad URL is.
func Open(rawURL string, o Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error // its text holds the URL, password and all
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("--store %s: %w", Redact(rawURL), reason(rawURL, err))
	}
	layout, err := takeOptions(u, Redact(rawURL), &o)
	if err != nil {
		return nil, err
	}
	c, err := newClient(u)
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w", Redact(rawURL), reason(rawURL, err))
	}
	s := newStore(c, Redact(rawURL), o, layout)
	if err := s.start(); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// takeOptions moves tollgate's own query parameters of the store's URL
// (prefix, retention, lease_ttl, layout) into o, and returns the layout; it
// fills in o's defaults. shown names the store in its errors.
func takeOptions(u *url.URL, shown string, o *Options) (layout string, err error) {
	q := u.Query()
	if v := q.Get("prefix"); v != "" {
		o.Prefix = v
	}
	if v := q.Get("retention"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return "", fmt.Errorf("--store %s: retention=%q is not a positive duration such as 744h", shown, v)
		}
		o.Retention = d
	}
	if v := q.Get("lease_ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return "", fmt.Errorf("--store %s: lease_ttl=%q is not a duration of 1s or more, such as 5m", shown, v)
		}
		o.LeaseTTL = d
	}
	layout = q.Get("layout")
	if layout != "" && layout != "spread" && layout != "one-slot" {
		return "", fmt.Errorf("--store %s: layout=%q is not spread or one-slot", shown, layout)
	}
	q.Del("prefix")
	q.Del("retention")
	q.Del("lease_ttl")
	q.Del("layout")
	u.RawQuery = q.Encode()
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.AdminTimeout <= 0 {
		o.AdminTimeout = DefaultAdminTimeout
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	return layout, nil
}

// newStore returns the Store on client c, not yet started.
func newStore(c goredis.UniversalClient, redacted string, o Options, layout string) *Store {
	s := &Store{c: c, url: redacted, opts: o, done: make(chan struct{}),
		keysKey: o.Prefix + "keys", byHashKey: o.Prefix + "keys-by-hash", changesKey: o.Prefix + "keys-changed",
		keyIDsKey: o.Prefix + "key-ids", keyCustomersKey: o.Prefix + "key-customers",
		replicasKey: o.Prefix + "replicas", copiesKey: o.Prefix + "key-copies", kick: make(chan struct{}, 1)}
	if cc, ok := c.(*goredis.ClusterClient); ok && layout != "one-slot" {
		s.spread, s.cluster = true, cc
		s.statePrefix = strings.NewReplacer("{", "", "}", "").Replace(o.Prefix)
	}
	// With layout=one-slot the keys' changes still note their copies
	// once a store that spreads began to make them, for such a store to
	// make (the keys carry over when the layout changes back, or while
	// replicas of both run).
	_, s.noteCopies = c.(*goredis.ClusterClient)
	s.script, s.scriptSrc, s.scriptSHA = applyScript, applySrc, applySHA
	if s.spread {
		s.script, s.scriptSrc, s.scriptSHA = clusterScript, clusterSrc, clusterScript.Hash()
	}
	s.lookups.queue = make(chan *lookup, lookupQueueLn)
	s.replicas.id = newReplicaID()
	s.keys = newKeyCache(keysFunc(s.lookupKey), time.Now)
	s.mine.prefix, s.mine.tags = s.replicas.id+"#", map[string]struct{}{}
	s.stop, s.cancelStop = context.WithCancel(context.Background())
	if o.Local {
		s.local = newFallback(o.LocalMaxCounters)
	}
	// A decision whose budget ends first gets what go-redis answers a call
	// whose context ran out before it was sent.
	s.errTimeout = fmt.Errorf("redis %s: apply: %w", s.url, context.DeadlineExceeded)
	s.errClosed = fmt.Errorf("redis %s: apply: %w", s.url, ErrClosed)
	return s
}

// start loads the scripts and warms the Store, within the admin budget, and
// starts its goroutines. A Redis that cannot be reached trips the circuit
// (it is an outage, which the heartbeat ends); a Redis that answers no (a
// wrong password, an ACL without scripts, a bad db) is an error.
func (s *Store) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.AdminTimeout)
	defer cancel()
	var sub *goredis.PubSub // nil: watchKeys subscribes
	if err := s.loadScripts(ctx); err != nil {
		var rerr goredis.Error
		if errors.As(err, &rerr) && !isTransient(rerr) {
			return err // waiting will not mend it
		}
		s.trip(err)
	} else {
		s.beat() // the replica count and the clock offset, before the first decision
		s.warm(ctx)
		if s.spread {
			// Else the heartbeats make them: those that changes left
			// (made with layout=one-slot, or failed), then every key's.
			s.makeCopies(ctx)
			s.copyAll(ctx)
		}
		sub = s.subscribe(ctx) // other replicas' key changes are heard from here on
	}
	s.main.queue = make(chan *request, queueLen)
	s.startLane(&s.main)
	s.sending.Go(s.sendLookups)
	if s.spread {
		s.returns.Go(func() { s.returning(s.stop) })
	}
	s.beating.Go(s.heartbeat)
	s.watching.Go(func() { s.watchKeys(s.stop, sub) })
	return nil
}

// minIdle is the number of connections kept open when the URL does not set
// min_idle_conns: a decision should not wait for a dial.
const minIdle = 8

// warm opens the minIdle connections before the first decision, so that
// none waits for a dial (go-redis opens them in the background): a reading
// of Redis's clock on each, all at once, the quickest of which sets the
// clock offset (replicas.go) if it is better than the heartbeat's.
func (s *Store) warm(ctx context.Context) {
	type reading struct {
		sent, back time.Time
		us         int64
	}
	readings := make([]reading, minIdle)
	var wg sync.WaitGroup
	for i := range readings {
		wg.Go(func() {
			sent := time.Now()
			if t, err := s.c.Time(ctx).Result(); err == nil {
				readings[i] = reading{sent, time.Now(), t.UnixMicro()}
			}
		})
	}
	wg.Wait()
	for _, r := range readings {
		if r.us != 0 {
			s.replicas.sample(r.sent, r.back, r.us)
		}
	}
}

// isTransient reports whether an error Redis answered passes on its own
// (loading, a failover, a busy script), unlike NOAUTH, WRONGPASS, NOPERM or
// a bad db.
func isTransient(err goredis.Error) bool {
	for _, p := range []string{"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "MOVED", "ASK"} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}

// newClient returns the client for u's scheme, with retries off (a decision
// has one budget: a refused dial is not tried again, so that it is seen as
// the connection error it is), the context's deadline honoured and
// connections kept warm.
func newClient(u *url.URL) (goredis.UniversalClient, error) {
	opt, err := parseOptions(u)
	if err != nil {
		return nil, err
	}
	switch o := opt.(type) {
	case *goredis.FailoverOptions:
		tune(&o.MaxRetries, &o.DialerRetries, &o.MinIdleConns, &o.Protocol, &o.ContextTimeoutEnabled, &o.DisableIdentity)
		return goredis.NewFailoverClient(o), nil
	case *goredis.ClusterOptions:
		tune(&o.MaxRetries, &o.DialerRetries, &o.MinIdleConns, &o.Protocol, &o.ContextTimeoutEnabled, &o.DisableIdentity)
		return goredis.NewClusterClient(o), nil
	case *goredis.Options:
		tune(&o.MaxRetries, &o.DialerRetries, &o.MinIdleConns, &o.Protocol, &o.ContextTimeoutEnabled, &o.DisableIdentity)
		return goredis.NewClient(o), nil
	default:
		return nil, fmt.Errorf("options of type %T", opt)
	}
}

// parseOptions returns go-redis's options of the URL u, without making a
// client: *goredis.Options, *goredis.FailoverOptions (redis-sentinel) or
// *goredis.ClusterOptions (redis-cluster).
func parseOptions(u *url.URL) (any, error) {
	base, variant, _ := strings.Cut(u.Scheme, "-")
	if base != "redis" && base != "rediss" && !(base == "unix" && variant == "") {
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, unix, redis-sentinel, redis-cluster)", u.Scheme)
	}
	v := *u
	v.Scheme = base
	switch variant {
	case "":
		return goredis.ParseURL(v.String())
	case "sentinel":
		opt, err := goredis.ParseFailoverURL(v.String())
		if err == nil && opt.MasterName == "" {
			err = errors.New("a sentinel URL needs master_name=NAME")
		}
		return opt, err
	case "cluster":
		return goredis.ParseClusterURL(v.String())
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, unix, redis-sentinel, redis-cluster)", u.Scheme)
	}
}

// tune sets what newClient says on the fields that go-redis's three options
// types share: no retries of a command (MaxRetries -1), one dial attempt,
// the context's deadline honoured, no CLIENT SETINFO, RESP2, and minIdle
// connections kept open; dialer_retries, min_idle_conns or protocol set in
// the URL stand.
func tune(maxRetries, dialerRetries, minIdleConns, protocol *int, contextTimeout, disableIdentity *bool) {
	*maxRetries, *contextTimeout, *disableIdentity = -1, true, true
	// RESP2 unless the URL says protocol=3: the store uses no push
	// messages, and with RESP3 go-redis looks for them around every call
	// (2.8% of serve's CPU on the Redis store under make bench-e2e's load).
	*protocol = cmp.Or(*protocol, 2)
	*minIdleConns = cmp.Or(*minIdleConns, minIdle)
	*dialerRetries = cmp.Or(*dialerRetries, 1)
}

// loadScripts loads every script, so that calls name them by their hash.
func (s *Store) loadScripts(ctx context.Context) error {
	for _, sc := range []*goredis.Script{s.script, copiedScript, saveKeyScript, deleteKeyScript, lookupKeyScript, grantScript, keyPageScript, heartbeatScript, pushScript} {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return fmt.Errorf("redis %s: load script: %w", s.url, err)
		}
	}
	return nil
}

// key returns the Redis key of a state key: the prefix, the kind (w: WAF
// counter, b: bucket, c: quota or usage counter, s: concurrency slots), the
// limit, the subject
// (length first: it may hold any character), the address and the period.
func (s *Store) key(kind byte, k policy.Key) string {
	return string(s.appendKey(make([]byte, 0, len(s.opts.Prefix)+len(k.Limit)+len(k.Subject)+64), kind, k))
}

// appendKey appends the Redis key of a state key to b. On a cluster
// (spread.go) it begins with the state prefix and the hash tag of its home.
func (s *Store) appendKey(b []byte, kind byte, k policy.Key) []byte {
	if s.spread {
		b = append(b, s.statePrefix...)
		b = appendHome(b, kind, k)
	} else {
		b = append(b, s.opts.Prefix...)
	}
	b = append(b, kind, ':')
	b = append(b, k.Limit...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(len(k.Subject)), 10)
	b = append(b, ':')
	b = append(b, k.Subject...)
	b = append(b, ':')
	if k.Addr.IsValid() {
		b = k.Addr.AppendTo(b)
	}
	b = append(b, ':')
	return strconv.AppendInt(b, k.Period, 10)
}

// adminCall returns the context of a call that is not a decision's.
func (s *Store) adminCall() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.opts.AdminTimeout)
}

// Release implements policy.State: the lease leaves the route's set. A
// lease released twice, or already run out, is not an error.
//
// It runs at a request's end, not on the decision path, so it may take
// longer than a decision's budget, but not an admin call's: a release that
// fails is made up for by the lease running out (Options.LeaseTTL).
func (s *Store) Release(k policy.Key, lease string) error {
	if s.local != nil {
		if _, ok := s.local.leases.LoadAndDelete(lease); ok {
			return s.local.mem.Release(k, lease)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(s.opts.Timeout, releaseTimeout))
	defer cancel()
	if err := s.c.ZRem(ctx, s.key('s', k), lease).Err(); err != nil {
		return fmt.Errorf("redis %s: release slot: %w", s.url, err)
	}
	return nil
}

// WAFCounters returns the WAF rate counters that local decisions hold in
// memory and the number they dropped to stay within
// Options.LocalMaxCounters (0, 0 without Options.Local). The shared
// counters are Redis keys that expire after their two windows.
func (s *Store) WAFCounters() (held int, dropped uint64) {
	if s.local == nil {
		return 0, 0
	}
	return s.local.mem.WAFCounters()
}

// Ready pings Redis; while the circuit is open it reports that without a
// call.
func (s *Store) Ready(ctx context.Context) error {
	if s.open.Load() {
		return fmt.Errorf("redis %s: %w", s.url, ErrUnavailable)
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", s.url, err)
	}
	return nil
}

// Close stops the senders, the prober, the heartbeat and the watcher of key
// changes and closes the client. Decisions waiting to be sent fail with
// ErrClosed; those in a call fail as the client closes under it. With Options.Local, the counts made
// locally that Redis does not hold yet are added first, when Redis answers.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		if s.spread {
			s.returnIdle(true) // the leased tokens go back to their buckets
		}
		s.probeMu.Lock()
		s.stopped = true // no prober starts from here on
		s.probeMu.Unlock()
		s.cancelStop() // a heartbeat or a push in a call returns at once
		s.lanesMu.Lock()
		close(s.done) // no lane starts from here on
		s.lanesMu.Unlock()
		s.beating.Wait() // the last counts made locally go, and the replica withdraws
		s.watching.Wait()
		err = s.c.Close()
		s.sending.Wait()
		s.probing.Wait()
		s.background.Wait()
		s.returns.Wait()
	})
	return err
}

// Budget returns a decision's budget (Options.Timeout, or its default).
func (s *Store) Budget() time.Duration { return s.opts.Timeout }

// SetLogger sends go-redis's own log lines (a failed dial, a pool event) to
// l at debug level, as JSON like every other line: during an outage it
// tells of every dial, and the circuit's changes are what matter (the
// Observer's). go-redis has one logger per process.
func SetLogger(l *slog.Logger) { goredis.SetLogger(libraryLog{l}) }

// libraryLog is go-redis's logger over slog.
type libraryLog struct{ l *slog.Logger }

// Printf logs one line of go-redis's at debug level.
func (g libraryLog) Printf(ctx context.Context, format string, v ...any) {
	if g.l.Enabled(ctx, slog.LevelDebug) {
		g.l.LogAttrs(ctx, slog.LevelDebug, fmt.Sprintf(format, v...), slog.String("library", "go-redis"))
	}
}
