// Package redis is the Redis store (--store redis://...): the state of every
// tollgate replica that shares one Redis, so that limits hold across them
// (README, "Many replicas"). It uses github.com/redis/go-redis/v9: plain, TLS, Sentinel and
// Cluster deployments.
//
// # What it owns
//
// Everything policy.State and the admin API keep: token buckets, WAF rate
// counters, quota counters, usage history and the keys created at run time;
// and the outbox of quota events the replicas share (Outbox: an id is added
// once, SET NX; a claim takes a lease, so one replica delivers it).
//
// LookupKey answers from a cache of the keys in use (keycache.go: an LRU of
// keys found and one of hashes that are no key, each answer used for up to
// KeyCacheTTL, one call to Redis for the lookups of a hash that arrive
// together; the lookups of other hashes that arrive while one is in flight
// share the next call: lookups.go). The Store clears it on its own changes to the keys and on each
// change another replica announces (a Redis channel), so that a change made
// through any replica is seen by the next lookup; while Redis fails, an
// expired answer is used rather than none.
//
// A decision is one round trip: Apply runs one Lua script (loaded once, called
// by its SHA-1) that counts the WAF hits, refills and checks every bucket and
// quota, and takes from all of them only when all admit, with Redis's own
// clock, so that replicas with skewed clocks still agree (read once per call:
// the decisions of a call share an instant). The script repeats
// the arithmetic of policy.Throttle (nano-tokens, micro-requests per second,
// integer floors in two exact parts) and store/memory's sliding-window
// counter on Redis's microsecond clock; the Go side reports the results with
// policy's own functions. Lua numbers are doubles: the counts are exact while
// burst × 1e9 and rate × 1e6 stay under 2^53 (a burst or a rate up to about
// 9 million), which TestMatchesMemory checks against store/memory.
//
// # Decisions that arrive together
//
// Redis runs one command at a time, and each call costs it work of its own,
// whatever the call carries (reading and parsing the command, setting up the
// script, writing the reply), as it costs go-redis. So the decisions waiting
// at the same moment share a call. A decision that finds no
// call in flight makes its call at once, from its caller's goroutine, as
// before; while calls are in flight, decisions queue, and the first of two
// sender goroutines free takes every one waiting (up to 64) into one EVALSHA.
// The script is a function applied to each decision in turn, in the order they
// came, with each decision's offsets into KEYS and ARGV; its reply is, per
// decision, a length and then the values a call of one would give. Each
// decision is still one atomic step (the whole call is one) and costs its
// caller one round trip, its call's. The script reads each key once per call
// and writes it once, at the end, with the value the last decision left: no
// one sees the states between a call's decisions, and the decisions of one
// call mostly share the account, stage and route buckets.
//
// Each caller keeps its own budget, counted from its Apply: one whose budget
// ends while it waits on the queue gets the timeout error at once and is not
// sent; one whose call outlives its budget gets it too. Each decision carries
// its deadline on Redis's clock (the offset is measured by the heartbeats), and
// the script takes nothing for a decision it runs after it: a call held by a
// Redis that hung, run when it goes on, changes nothing. A call has a whole
// budget from when it is sent, so that time its decisions spent on the queue
// never makes a busy Redis look down. The circuit breaker counts calls, not
// decisions (breaker.go): a call that fails fails every decision in it, and a
// script error (a key of the wrong type, say) fails its call's decisions too,
// but counts for neither side. A script error after a concurrency slot was
// taken in the call leaves that lease to its TTL.
//
// On the 2-core machine of the README, with Redis and the callers sharing the
// cores (BenchmarkDecideStores, 2026-12-01), 50 callers put about 16.6
// decisions in a call and make 55,000 decisions/s instead of 24,000 (37,000
// with calls shared but every decision reading and writing its own keys); 8
// callers, 2.5 a call, 23,000 instead of 19,000. Two senders did best: one
// did ~20% fewer decisions per second, three and four no more than two, in
// smaller batches and with a higher p99. A decision that finds no call in
// flight skips the hop to a sender and back, which cost 13–20 µs on an idle
// store.
//
// Redis's time is the call's own (a PING costs Redis about 50 µs of CPU in
// ping-pong on that VM, syscalls and wake-ups) and the script's work per
// decision, of which its commands were the smaller part: timed with a
// stand-alone Lua 5.1 and a fake redis.call, parsing every use of a cached
// string, a table per op and per reply, and string.lower/sub per op were
// half of it. The script now parses a key once a call and formats it once,
// keeps ops in arrays reused from decision to decision and writes replies
// into the call's reply: a 46-decision call of the bench-e2e mix went from
// about 1,200 to 830 µs of Redis CPU, and BenchmarkDecideStores (2026-12-07)
// from 27,000–31,000 decisions/s at 30–32 µs of Redis a decision to
// 38,000–39,000 at 20 µs, same run.
//
// Keys expire on their own: a bucket when it would be full again, a WAF
// counter after two windows, quota and usage counters a retention (31 days by
// default) after their period or day ends.
//
// # Redis Cluster
//
// On one Redis every key begins with the prefix "{tollgate}:", whose hash
// tag puts all of them in one slot, and a decision is one call. On a
// cluster (redis-cluster://) the state keys spread over the slots by their
// home instead: a customer's keys on its customer's slot, a WAF counter on
// its client's, and the shared buckets (account, stage, route) are leased
// to the replicas in batches, within a stated bound (spread.go, leases.go).
// The keys that are not state (run-time keys, replicas, the outbox) keep
// the prefix's slot; a run-time key's lookup reads a copy of it on its
// hash's slot (keycopies.go). layout=one-slot keeps a cluster's keys as on
// one Redis.
//
// Each primary's calls have a lane of their own (batch.go: a queue and two
// senders, made when a decision first goes to it), so that a call holds up
// only decisions for its primary: a primary that hangs holds its own
// decisions for their budgets, and the others' go on
// (TestSpreadHungPrimary: with 32 decisions for a stopped primary always
// waiting, none of 20,000 on the other two was late; with one lane, 160 of
// about 240). A primary's lane whose last three calls failed rests: its
// decisions fail at once (and are decided locally) for 50ms, then one is let
// through to try it. The circuit is still the store's: most decisions of
// the last second failing open it for every primary.
//
// # Failure
//
// A decision's call has a budget (Options.Timeout, DefaultTimeout: 100ms, the
// reasoning beside it): go-redis retries nothing, not even a dial, and honours
// the context's deadline. The circuit (breaker.go) opens on a connection error,
// or when most calls of the last second failed (at least five); never on a few
// slow calls. While it is open, calls fail at once with ErrUnavailable, so that
// nothing piles up while Redis is away, and one goroutine pings every 50ms;
// when Redis answers, the scripts are loaded again (a restarted Redis lost
// them), what was counted locally is added, and the circuit closes.
//
// Without Options.Local, Apply returns the error and the server decides what
// it means (--on-store-error allow or deny). With it (the server's default),
// the decision is made on this replica's own store with its share of each
// limit (local.go): the live replicas' count comes from heartbeats in Redis
// (replicas.go), what was left of each quota from Redis's last answers
// (views.go), and the quota and usage counted locally go back to Redis when it
// answers again, once (reconcile.go).
//
// # Concurrency
//
// A Store is safe for concurrent use. Its goroutines are the two senders of
// each lane (one lane on one Redis; on a cluster, one a primary, from the
// first decision that goes to it until the primary is gone or Close), the
// lookup sender, the heartbeat and the watcher of key changes, from Open to
// Close, and the prober, which runs only while the circuit is open. Close stops them all:
// the heartbeat first (it adds the last local counts to Redis and withdraws
// the replica, when Redis answers) and the watcher, then it closes the
// client, so that calls in flight fail at once, and answers the decisions
// still queued with ErrClosed.
package redis
