package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/policy"
)

// Decisions that arrive together share one call of the apply script.
//
// A decision that finds no call in flight makes its call at once, from its
// caller's goroutine, as every decision did before calls were shared. Else it
// is a request put on the queue, which a few sender goroutines take off: an
// idle sender takes it at once; while every sender's call is in flight,
// requests wait on the queue, and the next sender free takes all of them (up
// to maxBatch) into one EVALSHA, in the order they came. The script runs them
// one after another, each as one atomic step (the call is one), and each
// caller still waits for one round trip: its call's.
//
// Each caller waits at most its own budget, counted from its Apply: it keeps
// a timer. A request's state says who owns it once it is queued: the caller
// that gave up leaves it to the sender (which drops it unsent when it is
// still queued), and the sender leaves a delivered reply to the caller.
const (
	// senders is the number of sender goroutines: with the caller that
	// found no call in flight, at most senders+1 calls are in flight. Two
	// keep Redis busy while a sender reads a reply and gathers the next
	// batch; more only split the waiting decisions into smaller batches,
	// each a call for Redis (measured on the 2-core machine of the
	// README: see the package doc).
	senders = 2
	// maxBatch bounds the decisions of one call: a call of 64 is at most
	// ~64 × (6 + 2 × 16 + 3 × 6) arguments, well inside Redis's limits, and
	// holds Redis for a few hundred µs at most.
	maxBatch = 64
	// queueLen bounds the decisions waiting; an Apply that finds the queue
	// full waits for room within its budget.
	queueLen = 4096
)

// ErrClosed is returned by the decisions of a closed Store, and by those
// that were waiting to be sent when it closed.
var ErrClosed = errors.New("redis: store closed")

// A request's states.
const (
	queued    int32 = iota // on the queue; its caller waits
	sent                   // in a sender's call; its caller waits
	delivered              // the reply is, or is being, handed to the caller
	abandoned              // its caller gave up: the sender owns it
)

// request is one decision on its way to Redis. Its slices are reused:
// args points into nums and strs (and the sender's call into keys), whose
// room is reserved before they are filled, so that the pointers hold.
type request struct {
	state    atomic.Int32
	start    time.Time // when its caller asked (Apply)
	deadline time.Time // the caller's budget
	sentAt   time.Time // when its call was sent, set before its state becomes sent
	// callEnd is the deadline of the call the request is sent in, set
	// before its state becomes sent.
	callEnd time.Time

	// node is the primary the call goes to on a cluster (spread.go).
	node *goredis.Client

	keys []string // substrings of one string built in kbuf
	kbuf []byte
	ends []int   // where each key ends in kbuf
	args []any   // the ARGV: *int64 into nums, *string into strs
	nums []int64 // the numbers of args
	strs []string

	// late is what settling a reply that came after the caller gave up
	// needs (Options.Local).
	late lateInfo

	reply []int64 // the decision's part of the call's reply
	err   error
	done  chan struct{} // the sender delivered (capacity 1)
	timer *time.Timer   // the budget

	// own and buf are for a call the caller makes itself.
	own [1]*request
	buf callBuf
}

// callBuf holds a call's arguments, reused from call to call.
type callBuf struct {
	args  []any
	nkeys int64
	// cluster is the count of the keys a call declares on a cluster: 1.
	cluster int64
}

var requests = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &request{done: make(chan struct{}, 1), timer: t}
}}

// newRequest returns an empty request with room for nh hits and no ops.
func newRequest(nh, no int) *request {
	r := requests.Get().(*request)
	if n := 7 + 2*nh + 3*no; cap(r.nums) < n {
		r.nums = make([]int64, 0, n)
	}
	if n := 1 + 2*no; cap(r.strs) < n {
		r.strs = make([]string, 0, n)
	}
	return r
}

// free puts r back for reuse; only its owner may.
func (r *request) free() {
	r.keys, r.kbuf, r.ends, r.args, r.nums, r.strs = r.keys[:0], r.kbuf[:0], r.ends[:0], r.args[:0], r.nums[:0], r.strs[:0]
	r.reply, r.err, r.own[0], r.late, r.node = nil, nil, nil, lateInfo{}, nil
	requests.Put(r)
}

// deny sets the flagDenied of a decision's request: the flags are its
// fifth argument (encode).
func (r *request) deny() {
	*r.args[4].(*int64) |= flagDenied
	r.late.denied = true
}

// num and str append an argument.
func (r *request) num(v int64) {
	r.nums = append(r.nums, v)
	r.args = append(r.args, &r.nums[len(r.nums)-1])
}

func (r *request) str(v string) {
	r.strs = append(r.strs, v)
	r.args = append(r.args, &r.strs[len(r.strs)-1])
}

// key appends a key of the kind.
func (r *request) key(s *Store, kind byte, k policy.Key) {
	r.kbuf = s.appendKey(r.kbuf, kind, k)
	r.ends = append(r.ends, len(r.kbuf))
}

// sealKeys makes the keys: one string for all of them.
func (r *request) sealKeys() {
	all, start := string(r.kbuf), 0
	for _, end := range r.ends {
		r.keys = append(r.keys, all[start:end])
		start = end
	}
}

// lane is the queue and the senders of the calls to one Redis: the Store's
// one, or on a cluster a primary's, so that a primary that hangs holds up
// only the decisions that go to it, never a sender that others wait for.
type lane struct {
	queue    chan *request
	taking   sync.Mutex   // held by the sender that waits for the queue
	inflight atomic.Int32 // calls being made
	// stop, closed when the lane's primary is gone (reapLanes), stops its
	// senders; nil for the Store's lane.
	stop chan struct{}

	running sync.WaitGroup // its senders

	// A primary's lane (addr: the primary's; "" for the Store's lane)
	// rests once laneFails calls in a row failed: its decisions fail at
	// once with errRest (decided locally) instead of each waiting its
	// budget for a primary that hangs, the others' going on meanwhile.
	// restUntil (Unix ns) is 0 unless it rests: after laneRest one
	// decision is let through to try it (restUntil then holds until its
	// budget ends); an answer ends the rest. On one Redis the Store's
	// circuit does this (breaker.go).
	addr      string
	fails     atomic.Int32
	restUntil atomic.Int64
	errRest   error
}

const (
	laneFails = 3
	laneRest  = probeEvery
)

// resting reports whether a decision on l is to fail at once (l rests);
// when the rest is over, the first decision to ask goes to try the primary.
func (l *lane) resting(budget time.Duration) bool {
	until := l.restUntil.Load()
	if until == 0 {
		return false
	}
	now := time.Now().UnixNano()
	return now < until || !l.restUntil.CompareAndSwap(until, now+int64(budget))
}

// answered counts the outcome of a call on l: an answer (an error reply
// included: the data's) ends a rest; laneFails failures in a row start one.
// The Observer hears when the primary stops answering and answers again.
func (s *Store) answered(l *lane, err error) {
	if l.addr == "" {
		return
	}
	if err == nil || isDataError(err) {
		if l.fails.Load() != 0 {
			l.fails.Store(0)
		}
		if l.restUntil.Load() != 0 && l.restUntil.Swap(0) != 0 {
			s.primaryChanged(l, true, nil)
		}
		return
	}
	if l.fails.Add(1) >= laneFails && l.restUntil.Swap(time.Now().Add(laneRest).UnixNano()) == 0 {
		s.primaryChanged(l, false, err)
	}
}

// primaryChanged tells the Observer that l's primary stopped answering or
// answers again.
func (s *Store) primaryChanged(l *lane, answering bool, cause error) {
	if o := s.opts.Observer; o != nil {
		o.Primary(l.addr, answering, cause)
	}
}

// laneOf returns the lane of the calls to node (nil: the Store's), making
// it and starting its senders when it is new; once the Store is closed,
// the Store's lane, whose senders are gone (a decision then ends on done).
// Lanes are keyed by the node's address, as go-redis keys its node
// clients: the ClusterClient closes a node's client once the node leaves
// the slot map and makes a new one if it comes back, and a lane keyed by
// the *Client would be left behind, senders and all, at each such change.
// A batch's call goes by its first request's client (callBatch).
func (s *Store) laneOf(node *goredis.Client) *lane {
	if node == nil {
		return &s.main
	}
	addr := node.Options().Addr
	if l, ok := s.lanes.Load(addr); ok {
		return l.(*lane)
	}
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	if l, ok := s.lanes.Load(addr); ok {
		return l.(*lane)
	}
	select {
	case <-s.done:
		return &s.main
	default:
	}
	l := &lane{queue: make(chan *request, queueLen), stop: make(chan struct{}), addr: addr,
		errRest: fmt.Errorf("redis %s: primary %s: %d calls failed in a row: %w", s.url, addr, laneFails, ErrUnavailable)}
	s.lanes.Store(addr, l)
	s.startLane(l)
	return l
}

// reapLanes drops the idle lanes of addresses that are no primary of the
// cluster any more (a failover to a new address, a node replaced), and
// stops their senders: else each such change would leave two for the life
// of the Store. A decision that took such a lane just before is sent by
// none and ends on its budget, as one for a primary that hangs does.
func (s *Store) reapLanes(ctx context.Context) error {
	var mu sync.Mutex
	primaries := map[string]bool{}
	err := s.cluster.ForEachMaster(ctx, func(_ context.Context, c *goredis.Client) error {
		mu.Lock()
		primaries[c.Options().Addr] = true
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	s.lanes.Range(func(addr, v any) bool {
		if l := v.(*lane); !primaries[addr.(string)] && len(l.queue) == 0 && l.inflight.Load() == 0 {
			s.lanes.Delete(addr)
			close(l.stop)
		}
		return true
	})
	return nil
}

// startLane starts l's senders.
func (s *Store) startLane(l *lane) {
	for range senders {
		l.running.Add(1)
		s.sending.Go(func() {
			defer l.running.Done()
			s.send(l)
		})
	}
}

// decide makes r's call, or queues r on its lane, and waits for its reply
// until r.deadline. It frees r, or leaves it to the sender.
func (s *Store) decide(r *request) ([]int64, error) {
	r.state.Store(queued)
	l := s.laneOf(r.node)
	if l.resting(s.opts.Timeout) {
		r.free()
		return nil, l.errRest
	}
	if l.inflight.Load() == 0 && len(l.queue) == 0 && l.inflight.CompareAndSwap(0, 1) {
		// No call in flight: this one goes at once, without the hop
		// to a sender and back (a call of its own, whose context
		// holds the budget).
		r.own[0] = r
		s.run(l, r.own[:], &r.buf, true)
		l.inflight.Add(-1)
		<-r.done
		reply, err := r.reply, r.err
		r.free()
		return reply, err
	}
	r.timer.Reset(time.Until(r.deadline))
	select {
	case l.queue <- r:
	default:
		select {
		case l.queue <- r:
		case <-r.timer.C:
			r.free()
			return nil, s.errTimeout
		case <-s.done:
			r.timer.Stop()
			r.free()
			return nil, s.errClosed
		}
	}
	closing := s.done
	for {
		select {
		case <-r.done:
			r.timer.Stop()
			reply, err := r.reply, r.err
			r.free()
			return reply, err
		case <-r.timer.C:
			if r.state.CompareAndSwap(queued, abandoned) {
				return nil, s.errTimeout // the sender owns r now, and drops it
			}
			if r.state.Load() == sent && !r.callEnd.After(r.deadline) {
				// The call ends with this budget, as a call of its
				// own did: its outcome comes at once, and has been
				// counted by the circuit breaker when it comes.
				closing = nil
				continue
			}
			if r.state.CompareAndSwap(sent, abandoned) {
				return nil, s.errTimeout // the sender owns r now
			}
			closing = nil // delivered: the reply is on its way
		case <-closing:
			closing = nil
			// The timer first: once abandoned, r may be reused.
			r.timer.Stop()
			if r.state.CompareAndSwap(queued, abandoned) {
				return nil, s.errClosed
			}
			// Sent: Close fails the call soon; the budget still holds.
			r.timer.Reset(time.Until(r.deadline))
		}
	}
}

// send is a sender of l: it takes the waiting requests, up to maxBatch,
// into one call, until the Store closes.
func (s *Store) send(l *lane) {
	var (
		batch []*request
		buf   callBuf
	)
	for {
		select {
		case <-s.done:
			return // the callers of those queued answer themselves
		default:
		}
		// One sender at a time waits for the queue and takes what is
		// on it: a batch is the requests that came one after another,
		// all of those that waited.
		l.taking.Lock()
		select {
		case <-s.done:
			l.taking.Unlock()
			return
		case <-l.stop:
			l.taking.Unlock()
			return
		case r := <-l.queue:
			batch = append(batch[:0], r)
		}
		batch = takeWaiting(l.queue, batch, maxBatch)
		l.taking.Unlock()
		l.inflight.Add(1)
		s.run(l, batch, &buf, false)
		l.inflight.Add(-1)
		clear(batch)
	}
}

// takeWaiting appends to batch what waits on q, without waiting, until
// batch holds most: a sender's batch is the requests that came one after
// another.
func takeWaiting[T any](q chan T, batch []T, most int) []T {
	for len(batch) < most {
		select {
		case x := <-q:
			batch = append(batch, x)
		default:
			return batch
		}
	}
	return batch
}

// run makes the call of a batch and delivers each request its part of the
// reply (or the call's error). own is set when the batch's only request's
// caller makes the call itself: the call ends with that caller's budget.
// A sender's call has a whole budget from when it is sent, as a call of its
// own has: a call cut short by its decisions' time on the queue would time
// out, and count against the circuit, while Redis is merely busy; its
// callers give up on their own budgets, and a reply that comes after is
// settled (deliver).
func (s *Store) run(l *lane, batch []*request, buf *callBuf, own bool) {
	now := time.Now()
	deadline := now.Add(s.opts.Timeout)
	if own {
		deadline = batch[0].deadline
	}
	live := batch[:0]
	for _, r := range batch {
		r.callEnd, r.sentAt = deadline, now
		if !r.state.CompareAndSwap(queued, sent) {
			r.free() // its caller gave up: not sent
			continue
		}
		if !now.Before(r.deadline) {
			s.deliver(r, nil, s.errTimeout)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// Closed (a sender may take requests after Close), or the circuit is
	// open: no call.
	if stop := s.callsStopped(); stop != nil {
		s.deliverAll(live, stop)
		return
	}
	s.runCall(l, live, buf, deadline)
}

// runCall makes the call of live's requests, which go to l's node, and
// delivers their replies.
func (s *Store) runCall(l *lane, live []*request, buf *callBuf, deadline time.Time) {
	res, err := s.callBatch(live, buf, deadline)
	s.answered(l, err)
	// A Redis error reply (a key of the wrong type, say) is the data's,
	// not Redis's health: it fails the call's decisions, not the circuit,
	// which a client with a bad key would otherwise open for everyone.
	s.called(err, len(live))
	if err != nil {
		s.deliverAll(live, fmt.Errorf("redis %s: apply: %w", s.url, err))
		return
	}
	if !fits(res, len(live)) {
		s.deliverAll(live, fmt.Errorf("redis %s: apply: a reply of %d values for %d decisions: %w", s.url, len(res), len(live), errBadReply))
		return
	}
	for _, r := range live {
		l := res[0]
		s.deliver(r, res[1:1+l:1+l], nil)
		res = res[1+l:]
	}
}

// callBatch makes the call of the live requests, in one EVALSHA, until
// deadline.
func (s *Store) callBatch(live []*request, buf *callBuf, deadline time.Time) ([]int64, error) {
	buf.nkeys = 0
	args := append(buf.args[:0], "evalsha", &s.scriptSHA, &buf.nkeys)
	if s.spread {
		// One key declared, to route the call; then all of them, after
		// their count (clusterScript).
		args = append(args, &live[0].keys[0], &buf.nkeys)
		buf.cluster = 1
		args[2] = &buf.cluster
	}
	for _, r := range live {
		for i := range r.keys {
			args = append(args, &r.keys[i])
		}
		buf.nkeys += int64(len(r.keys))
	}
	for _, r := range live {
		args = append(args, r.args...)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	s.calls.Add(1)
	res, err := s.call(ctx, live[0].node, args)
	cancel()
	clear(args)
	buf.args = args
	return res, err
}

// fits reports whether a call's reply holds n decisions' parts: each its
// length, then its values.
func fits(res []int64, n int) bool {
	for ; n > 0 && len(res) > 0; n-- {
		l := res[0]
		if l < 0 || l > int64(len(res)-1) {
			return false
		}
		res = res[1+l:]
	}
	return n == 0 && len(res) == 0
}

// deliverAll hands each request the error.
func (s *Store) deliverAll(live []*request, err error) {
	for _, r := range live {
		s.deliver(r, nil, err)
	}
}

// call runs the apply script over args (EVALSHA, its hash, the number of
// keys, the keys and the ARGV), and again by its source when Redis lost it;
// on node (a cluster's primary) when it is set.
func (s *Store) call(ctx context.Context, node *goredis.Client, args []any) ([]int64, error) {
	process := s.c.Process
	if node != nil {
		process = node.Process
	}
	cmd := goredis.NewIntSliceCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	err := process(ctx, cmd)
	if err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")) {
		// A restarted Redis lost the script: EVAL loads it again.
		args[0], args[1] = "eval", &s.scriptSrc
		cmd = goredis.NewIntSliceCmd(ctx, args...)
		cmd.SetFirstKeyPos(3)
		err = process(ctx, cmd)
	}
	if err != nil {
		if node != nil && (goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK") || strings.Contains(err.Error(), "non local key") || isConnError(err)) {
			// The slots moved, or a primary is gone (a failover
			// promotes another): route by the new map (go-redis
			// reloads it in the background, one at a time).
			s.cluster.ReloadState(ctx)
		}
		return nil, err
	}
	return cmd.Val(), nil
}

// deliver hands r its reply, unless its caller gave up: then it settles
// what Redis took for it (local.go) and frees r.
func (s *Store) deliver(r *request, reply []int64, err error) {
	r.reply, r.err = reply, err
	if o := s.opts.Observer; o != nil {
		rt := time.Duration(0)
		if err == nil {
			rt = time.Since(r.sentAt)
		}
		o.Decision(r.sentAt.Sub(r.start), rt)
	}
	if r.state.CompareAndSwap(sent, delivered) {
		r.done <- struct{}{}
		return
	}
	if err == nil {
		s.settleLate(r, reply)
	}
	r.free()
}
