package redis

import (
	"cmp"
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/keyjson"
)

var _ policy.State = (*Store)(nil)
var _ policy.Keys = (*Store)(nil)

// Defaults of Options.
const (
	// DefaultTimeout is the budget of one decision's Redis call.
	DefaultTimeout = 5 * time.Millisecond
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

// Circuit breaker: after breakAfter failures in a row, calls fail at once
// (ErrUnavailable) while one goroutine pings every probeEvery; the first
// answer closes the circuit.
const (
	breakAfter = 3
	probeEvery = 50 * time.Millisecond
	probePings = minIdle + 1
)

// releaseTimeout is the least time a Release may take.
const releaseTimeout = 100 * time.Millisecond

// ErrUnavailable is returned, without a call to Redis, while the circuit is
// open: Redis failed breakAfter times in a row and has not answered a ping
// since.
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
	// Observer, when set, receives the Store's measurements.
	Observer Observer
	// CallerClock makes Apply use the instant it is given instead of
	// Redis's own clock; for tests over fixed instants. Replicas must use
	// Redis's clock, so that they agree on time.
	CallerClock bool
}

// Observer receives what a Store measures (server/metrics.go exports it).
// Its methods must be quick and safe for concurrent use.
type Observer interface {
	// Decision reports a decision's wait for its call to be sent (0 for
	// a call made at once) and the call's round trip (0 when it failed).
	Decision(wait, roundTrip time.Duration)
}

// Store is the Redis store. The zero Store is not usable; call Open.
type Store struct {
	c    goredis.UniversalClient
	url  string // without credentials, for messages
	opts Options

	// keysKey and byHashKey are the hashes of the run-time keys, by id and
	// by hash; changesKey is the channel their changes are announced on.
	keysKey, byHashKey, changesKey string

	fails   atomic.Int32
	open    atomic.Bool
	probeMu sync.Mutex // guards stopped and the start of a prober
	stopped bool
	probing sync.WaitGroup
	done    chan struct{}
	closed  sync.Once

	// queue holds the decisions waiting for a sender (batch.go).
	queue    chan *request
	taking   sync.Mutex // held by the sender that waits for the queue
	sending  sync.WaitGroup
	calls    atomic.Int64 // calls of the apply script made, for tests
	inflight atomic.Int32 // calls being made
	// errTimeout and errClosed are the errors of a decision whose budget
	// ran out before its reply came, and of one the Store closed under.
	errTimeout, errClosed error
}

var (
	//go:embed apply.lua
	applySrc    string
	applyScript = goredis.NewScript(applySrc)
	applySHA    = applyScript.Hash()

	// saveKey replaces the key ARGV[1] (record ARGV[2], hash ARGV[3]) in
	// the keys hash KEYS[1] and its hash index KEYS[2], and announces the
	// id on the channel KEYS[3], when the record held is ARGV[4] ("":
	// none); 0 when it is not.
	saveKeyScript = goredis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if (old or '') ~= ARGV[4] then return 0 end
if old then redis.call('HDEL', KEYS[2], cjson.decode(old)['hash']) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1`)
	// deleteKey removes the key ARGV[1] (announced as saveKey does); 1
	// when there was one.
	deleteKeyScript = goredis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[2], cjson.decode(old)['hash'])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1`)
	// lookupKey returns the record of the key whose hash is ARGV[1]; the
	// record must hold that hash (an index entry can never lend another
	// key's record).
	lookupKeyScript = goredis.NewScript(`
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
local rec = redis.call('HGET', KEYS[1], id)
if not rec or cjson.decode(rec)['hash'] ~= ARGV[1] then return false end
return rec`)
	// importKey is saveKey without the check of what it replaces.
	importKeyScript = goredis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then redis.call('HDEL', KEYS[2], cjson.decode(old)['hash']) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return 1`)
	// grant adds ARGV[1] to the grant of counter KEYS[1], kept until
	// ARGV[2] (Unix milliseconds) at least.
	grantScript = goredis.NewScript(`
redis.call('HINCRBY', KEYS[1], 'g', ARGV[1])
local at = tonumber(ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl < 0 or now + ttl < at then redis.call('PEXPIREAT', KEYS[1], at) end
return 1`)
)

// Open connects to the Redis of rawURL:
//   - redis://[user:password@]host:port[/db], rediss://... (TLS), unix:///path;
//   - redis-sentinel://host:port?master_name=NAME[&addr=host:port...]
//     (and rediss-sentinel://): a Sentinel-managed primary;
//   - redis-cluster://host:port[?addr=host:port...] (and rediss-cluster://).
//
// go-redis's query parameters (pool_size, dial_timeout, ...) pass through;
// prefix, retention and lease_ttl are the Store's own. Open loads the scripts; a Redis
// that does not answer yet is not an error (the Store starts with its circuit
// open and recovers when Redis answers), a bad URL is.
func Open(rawURL string, o Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	q := u.Query()
	if v := q.Get("prefix"); v != "" {
		o.Prefix = v
	}
	if v := q.Get("retention"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--store %s: retention=%q is not a positive duration such as 744h", u.Redacted(), v)
		}
		o.Retention = d
	}
	if v := q.Get("lease_ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return nil, fmt.Errorf("--store %s: lease_ttl=%q is not a duration of 1s or more, such as 5m", u.Redacted(), v)
		}
		o.LeaseTTL = d
	}
	q.Del("prefix")
	q.Del("retention")
	q.Del("lease_ttl")
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
	c, err := newClient(u)
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w", u.Redacted(), err)
	}
	s := &Store{c: c, url: u.Redacted(), opts: o, done: make(chan struct{}), queue: make(chan *request, queueLen),
		keysKey: o.Prefix + "keys", byHashKey: o.Prefix + "keys-by-hash", changesKey: o.Prefix + "keys-changed"}
	// A decision whose budget ends first gets what go-redis answers a call
	// whose context ran out before it was sent.
	s.errTimeout = fmt.Errorf("redis %s: apply: %w", s.url, context.DeadlineExceeded)
	s.errClosed = fmt.Errorf("redis %s: apply: %w", s.url, ErrClosed)
	ctx, cancel := context.WithTimeout(context.Background(), o.AdminTimeout)
	defer cancel()
	if err := s.loadScripts(ctx); err != nil {
		var rerr goredis.Error
		if errors.As(err, &rerr) && !isTransient(rerr) {
			// Redis answered, and said no: a wrong password, an ACL
			// without scripts, a bad db. Waiting will not mend it.
			c.Close()
			return nil, err
		}
		s.fails.Store(breakAfter - 1)
		s.failed()
	}
	for range senders {
		s.sending.Go(s.send)
	}
	return s, nil
}

// minIdle is the number of connections kept open when the URL does not set
// min_idle_conns: dialing one takes a good part of a 5ms budget.
const minIdle = 8

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
// has one budget), the context's deadline honoured and connections kept
// warm.
func newClient(u *url.URL) (goredis.UniversalClient, error) {
	base, variant, _ := strings.Cut(u.Scheme, "-")
	if base != "redis" && base != "rediss" && !(base == "unix" && variant == "") {
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, unix, redis-sentinel, redis-cluster)", u.Scheme)
	}
	v := *u
	v.Scheme = base
	switch variant {
	case "":
		opt, err := goredis.ParseURL(v.String())
		if err != nil {
			return nil, err
		}
		opt.MaxRetries, opt.ContextTimeoutEnabled, opt.DisableIdentity = -1, true, true
		opt.MinIdleConns = cmp.Or(opt.MinIdleConns, minIdle)
		return goredis.NewClient(opt), nil
	case "sentinel":
		opt, err := goredis.ParseFailoverURL(v.String())
		if err != nil {
			return nil, err
		}
		if opt.MasterName == "" {
			return nil, errors.New("a sentinel URL needs master_name=NAME")
		}
		opt.MaxRetries, opt.ContextTimeoutEnabled, opt.DisableIdentity = -1, true, true
		opt.MinIdleConns = cmp.Or(opt.MinIdleConns, minIdle)
		return goredis.NewFailoverClient(opt), nil
	case "cluster":
		opt, err := goredis.ParseClusterURL(v.String())
		if err != nil {
			return nil, err
		}
		opt.MaxRetries, opt.ContextTimeoutEnabled, opt.DisableIdentity = -1, true, true
		opt.MinIdleConns = cmp.Or(opt.MinIdleConns, minIdle)
		return goredis.NewClusterClient(opt), nil
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, unix, redis-sentinel, redis-cluster)", u.Scheme)
	}
}

// loadScripts loads every script, so that calls name them by their hash.
func (s *Store) loadScripts(ctx context.Context) error {
	for _, sc := range []*goredis.Script{applyScript, saveKeyScript, deleteKeyScript, lookupKeyScript, grantScript, importKeyScript} {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return fmt.Errorf("redis %s: load script: %w", s.url, err)
		}
	}
	return nil
}

// decisionCall returns the context of a decision's call: the budget, unless
// the circuit is open.
func (s *Store) decisionCall() (context.Context, context.CancelFunc, error) {
	if s.open.Load() {
		return nil, nil, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	return ctx, cancel, nil
}

// succeeded and failed count a call's outcome for the circuit breaker.
func (s *Store) succeeded() {
	if s.fails.Load() != 0 {
		s.fails.Store(0)
	}
}

func (s *Store) failed() {
	if s.fails.Add(1) < breakAfter || !s.open.CompareAndSwap(false, true) {
		return
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if !s.stopped {
		s.probing.Go(s.probe)
	}
}

// probe pings Redis every probeEvery until it answers, then closes the
// circuit; it stops when the Store closes.
func (s *Store) probe() {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(s.opts.Timeout, probeEvery))
		// Connections opened before an outage fail once each when
		// Redis comes back; a few pings in a row get past them.
		err := s.c.Ping(ctx).Err()
		for i := 0; err != nil && ctx.Err() == nil && i < probePings; i++ {
			err = s.c.Ping(ctx).Err()
		}
		if err == nil {
			// A restarted Redis has lost the scripts; Run reloads them
			// on NOSCRIPT, but loading them here keeps the first
			// decisions within budget.
			err = s.loadScripts(ctx)
		}
		cancel()
		if err == nil {
			s.fails.Store(0)
			s.open.Store(false)
			return
		}
	}
}

// key returns the Redis key of a state key: the prefix, the kind (w: WAF
// counter, b: bucket, c: quota or usage counter, s: concurrency slots), the
// limit, the subject
// (length first: it may hold any character), the address and the period.
func (s *Store) key(kind byte, k policy.Key) string {
	return string(s.appendKey(make([]byte, 0, len(s.opts.Prefix)+len(k.Limit)+len(k.Subject)+64), kind, k))
}

// appendKey appends the Redis key of a state key to b.
func (s *Store) appendKey(b []byte, kind byte, k policy.Key) []byte {
	b = append(b, s.opts.Prefix...)
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

// Apply implements policy.State: the batch is one decision of the apply
// script, within the decision budget. Decisions that arrive while calls are
// in flight wait and go together in the next call (batch.go); each is one
// atomic step and costs its caller one round trip either way.
//
// A decision's KEYS are the hits', the ops' and the usage counter's; its
// ARGV: the instant in µs ("" for Redis's clock), the counts of hits and
// ops, whether there is a usage counter and its expiry (Unix ms), the lease
// TTL (µs), then per hit its limit and window (µs), per op "b", rate
// (µreq/s), burst or "q", limit, expiry (Unix ms) or "c", cap, lease. A
// call's KEYS are its decisions' KEYS one after another, and its ARGV their
// ARGV. The reply holds, per decision, the length of its part, then: the
// blocking hit (1-based, 0: none), whether the ops were taken, the instant
// (µs), each counted hit's count, and per op (when no hit blocked) the
// bucket refilled (nano-tokens, µs), the quota's used and granted, or the
// slots held, before the take.
func (s *Store) Apply(now time.Time, b *policy.Batch) error {
	b.Blocked, b.Taken = -1, false
	usage := b.Usage.Limit != ""
	if len(b.Hits) == 0 && len(b.Ops) == 0 && !usage {
		return nil
	}
	for i := range b.Hits {
		if w := b.Hits[i].Window; w < time.Microsecond {
			return fmt.Errorf("redis: hit %d: window %v is under 1µs", i, w)
		}
	}
	select {
	case <-s.done:
		return s.errClosed
	default:
	}
	if s.open.Load() {
		return ErrUnavailable
	}
	r := newRequest(len(b.Hits), len(b.Ops))
	if s.opts.CallerClock {
		r.num(now.UnixMicro())
	} else {
		r.str("")
	}
	var usageAt int64
	if usage {
		usageAt = time.Unix(b.Usage.Period, 0).Add(24*time.Hour + s.opts.Retention).UnixMilli()
	}
	r.num(int64(len(b.Hits)))
	r.num(int64(len(b.Ops)))
	r.num(int64(b2i(usage)))
	r.num(usageAt)
	r.num(s.opts.LeaseTTL.Microseconds())
	for i := range b.Hits {
		h := &b.Hits[i]
		r.key(s, 'w', h.Key)
		r.num(h.Limit)
		r.num(h.Window.Microseconds())
	}
	for i := range b.Ops {
		o := &b.Ops[i]
		switch o.Tier {
		case policy.TierQuota:
			r.key(s, 'c', o.Key)
			r.str("q")
			r.num(o.Quota)
			r.num(o.End.Add(s.opts.Retention).UnixMilli())
		case policy.TierConcurrency:
			r.key(s, 's', o.Key)
			r.str("c")
			r.num(o.Quota)
			r.str(o.Lease)
		default:
			r.key(s, 'b', o.Key)
			r.str("b")
			r.num(int64(o.Throttle.RateMicro)) // under 2^53: see the package doc
			r.num(o.Throttle.Burst)
		}
	}
	if usage {
		r.key(s, 'c', b.Usage)
	}
	r.sealKeys()
	res, err := s.decide(r)
	if err != nil {
		return err
	}
	return s.read(res, b)
}

// read fills in b's results from the apply script's reply.
func (s *Store) read(res []int64, b *policy.Batch) error {
	bad := func() error {
		return fmt.Errorf("redis %s: apply: a reply of %d values does not fit the batch", s.url, len(res))
	}
	if len(res) < 3 {
		return bad()
	}
	blocked, taken, at := int(res[0]), res[1] == 1, res[2]
	counted := len(b.Hits)
	if blocked > 0 {
		counted = blocked
	}
	if len(res) < 3+counted || blocked > len(b.Hits) {
		return bad()
	}
	for i := range counted {
		b.Hits[i].Count = res[3+i]
	}
	if blocked > 0 {
		b.Blocked = blocked - 1
		return nil
	}
	ops := res[3+counted:]
	if len(ops) != 2*len(b.Ops) {
		return bad()
	}
	now := time.UnixMicro(at)
	for i := range b.Ops {
		o := &b.Ops[i]
		x, y := ops[2*i], ops[2*i+1]
		switch o.Tier {
		case policy.TierQuota:
			o.CheckQuota(x, y, now)
			if taken {
				o.TakeQuota()
			}
			continue
		case policy.TierConcurrency:
			o.CheckSlot(x)
			if taken {
				o.TakeSlot()
			}
			continue
		}
		// The bucket as the script refilled it at its instant.
		cur := policy.Bucket{Tokens: x, Last: y * int64(time.Microsecond)}
		cur = o.CheckBucket(cur, time.Unix(0, cur.Last))
		if taken {
			o.TakeBucket(cur)
		}
	}
	b.Taken = taken
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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
	ctx, cancel := context.WithTimeout(context.Background(), max(s.opts.Timeout, releaseTimeout))
	defer cancel()
	if err := s.c.ZRem(ctx, s.key('s', k), lease).Err(); err != nil {
		return fmt.Errorf("redis %s: release slot: %w", s.url, err)
	}
	return nil
}

// LookupKey implements policy.Keys in one call, within the decision budget.
func (s *Store) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	ctx, cancel, err := s.decisionCall()
	if err != nil {
		return nil, err
	}
	defer cancel()
	rec, err := lookupKeyScript.Run(ctx, s.c, []string{s.keysKey, s.byHashKey}, policy.KeyHashText(hash)).Text()
	if errors.Is(err, goredis.Nil) {
		s.succeeded()
		return nil, nil
	}
	if err != nil {
		s.failed()
		return nil, fmt.Errorf("redis %s: look up key: %w", s.url, err)
	}
	s.succeeded()
	k, err := keyjson.Decode([]byte(rec))
	if err != nil {
		return nil, fmt.Errorf("redis %s: key record: %w", s.url, err)
	}
	return k, nil
}

// SaveKey creates or replaces the run-time key k.ID, in one atomic step,
// when the record held under that id is prev's (as RuntimeKeys decoded it;
// nil: none), else it returns policy.ErrKeyChanged: two replicas' admin
// calls on one key cannot both win.
func (s *Store) SaveKey(k, prev *policy.APIKey) error {
	rec, err := keyjson.Encode(k)
	if err != nil {
		return err
	}
	var want []byte
	if prev != nil {
		if want, err = keyjson.Encode(prev); err != nil {
			return err
		}
	}
	ctx, cancel := s.adminCall()
	defer cancel()
	n, err := saveKeyScript.Run(ctx, s.c, []string{s.keysKey, s.byHashKey, s.changesKey}, k.ID, rec, policy.KeyHashText(k.Hash), want).Int()
	if err != nil {
		return fmt.Errorf("redis %s: save key %q: %w", s.url, k.ID, err)
	}
	if n == 0 {
		return policy.ErrKeyChanged
	}
	return nil
}

// ImportKeys creates or replaces many run-time keys, whatever they
// replace, in one pipelined round trip (tollgate load prepare). Other
// replicas are told once, at the end.
func (s *Store) ImportKeys(keys []*policy.APIKey) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.AdminTimeout+time.Duration(len(keys))*time.Millisecond)
	defer cancel()
	pipe := s.c.Pipeline()
	for _, k := range keys {
		rec, err := keyjson.Encode(k)
		if err != nil {
			return err
		}
		importKeyScript.EvalSha(ctx, pipe, []string{s.keysKey, s.byHashKey}, k.ID, rec, policy.KeyHashText(k.Hash))
	}
	pipe.Publish(ctx, s.changesKey, "import")
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis %s: import %d keys: %w", s.url, len(keys), err)
	}
	return nil
}

// DeleteKey removes the run-time key with the id and reports whether there
// was one.
func (s *Store) DeleteKey(id string) (bool, error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	n, err := deleteKeyScript.Run(ctx, s.c, []string{s.keysKey, s.byHashKey, s.changesKey}, id).Int()
	if err != nil {
		return false, fmt.Errorf("redis %s: delete key %q: %w", s.url, id, err)
	}
	return n == 1, nil
}

// RuntimeKeys returns every run-time key, by id. A record that does not
// decode is an error naming it.
func (s *Store) RuntimeKeys() ([]*policy.APIKey, error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	recs, err := s.c.HGetAll(ctx, s.keysKey).Result()
	if err != nil {
		return nil, fmt.Errorf("redis %s: list keys: %w", s.url, err)
	}
	keys := make([]*policy.APIKey, 0, len(recs))
	var errs []error
	for id, rec := range recs {
		k, err := keyjson.Decode([]byte(rec))
		if err != nil {
			errs = append(errs, fmt.Errorf("redis %s: %s field %s: %w", s.url, s.keysKey, id, err))
			continue
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *policy.APIKey) int { return strings.Compare(a.ID, b.ID) })
	return keys, errors.Join(errs...)
}

// RuntimeKey returns the run-time key with the id, or nil.
func (s *Store) RuntimeKey(id string) (*policy.APIKey, error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	rec, err := s.c.HGet(ctx, s.keysKey, id).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis %s: get key %q: %w", s.url, id, err)
	}
	k, err := keyjson.Decode([]byte(rec))
	if err != nil {
		return nil, fmt.Errorf("redis %s: %s field %s: %w", s.url, s.keysKey, id, err)
	}
	return k, nil
}

// Counter returns the state of a quota or usage counter.
func (s *Store) Counter(k policy.Key) (used, granted int64, err error) {
	ctx, cancel := s.adminCall()
	defer cancel()
	vals, err := s.c.HMGet(ctx, s.key('c', k), "u", "g").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("redis %s: read counter: %w", s.url, err)
	}
	var n [2]int64
	for i, v := range vals {
		if v == nil {
			continue
		}
		str, _ := v.(string)
		if n[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("redis %s: counter %s holds %q", s.url, s.key('c', k), str)
		}
	}
	return n[0], n[1], nil
}

// Grant adds n to the grant of the quota counter k, whose period ends at
// end.
func (s *Store) Grant(k policy.Key, n int64, end time.Time) error {
	ctx, cancel := s.adminCall()
	defer cancel()
	if err := grantScript.Run(ctx, s.c, []string{s.key('c', k)}, n, end.Add(s.opts.Retention).UnixMilli()).Err(); err != nil {
		return fmt.Errorf("redis %s: grant: %w", s.url, err)
	}
	return nil
}

// WatchKeys calls changed whenever a replica sharing the store (this one
// included) changes a run-time key, and when the subscription is made again
// after a lost connection (changes may have been missed), until ctx is done.
// It returns when ctx is done.
func (s *Store) WatchKeys(ctx context.Context, changed func()) {
	sub := s.c.Subscribe(ctx, s.changesKey)
	defer sub.Close()
	// Subscription messages come with every (re)subscription: a change
	// may have been missed while the connection was down.
	ch := sub.ChannelWithSubscriptions(goredis.WithChannelHealthCheckInterval(time.Second))
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			changed()
		}
	}
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

// Close stops the senders and the prober and closes the client. Decisions
// waiting to be sent fail with ErrClosed; those in a call fail as the client
// closes under it.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		s.probeMu.Lock()
		s.stopped = true // no prober starts from here on
		s.probeMu.Unlock()
		close(s.done)
		err = s.c.Close()
		s.sending.Wait()
		s.probing.Wait()
	})
	return err
}
