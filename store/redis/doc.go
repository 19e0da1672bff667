// Package redis is the Redis store (--store redis://...): the state of every
// tollgate replica that shares one Redis, so that limits hold across them
// (SPEC §5). It uses github.com/redis/go-redis/v9: plain, TLS, Sentinel and
// Cluster deployments.
//
// # What it owns
//
// Everything policy.State and the admin API keep: token buckets, WAF rate
// counters, quota counters, usage history and the keys created at run time.
//
// A decision is one round trip: Apply runs one Lua script (loaded once, called
// by its SHA-1) that counts the WAF hits, refills and checks every bucket and
// quota, and takes from all of them only when all admit, with Redis's own
// clock, so that replicas with skewed clocks still agree. The script repeats
// the arithmetic of policy.Throttle (nano-tokens, micro-requests per second,
// integer floors in two exact parts) and store/memory's sliding-window
// counter on Redis's microsecond clock; the Go side reports the results with
// policy's own functions. Lua numbers are doubles: the counts are exact while
// burst × 1e9 and rate × 1e6 stay under 2^53 (a burst or a rate up to about
// 9 million), which TestMatchesMemory checks against store/memory.
//
// Keys expire on their own: a bucket when it would be full again, a WAF
// counter after two windows, quota and usage counters a retention (31 days by
// default) after their period or day ends.
//
// # Redis Cluster
//
// Every key begins with the prefix "{tollgate}:", whose hash tag puts all of
// them in one slot. The account bucket (and a stage's) is in every request's
// atomic step, so every decision must run on the node that holds it: spreading
// the other keys over slots would buy no throughput and would cost the atomic
// step. A cluster gives failover and replicas; one primary serves tollgate.
//
// # Failure
//
// A decision's call has a budget (Options.Timeout, 5ms by default): go-redis
// retries nothing and honours the context's deadline. After three failures in
// a row the circuit opens: calls fail at once with ErrUnavailable, so that
// nothing piles up while Redis is away, and one goroutine pings every 50ms;
// the first answer closes the circuit (and reloads the scripts a restarted
// Redis lost). The server decides what a failed call means (--on-store-error).
//
// # Concurrency
//
// A Store is safe for concurrent use. Its one goroutine, the prober, runs
// only while the circuit is open and is stopped by Close.
package redis
