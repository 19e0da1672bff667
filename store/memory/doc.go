// Package memory is the in-memory policy.State: the token buckets, quota
// counters and WAF rate counters of one tollgate process, kept in maps and
// lost when the process ends (--store memory:, tests, demos; the file store
// keeps its buckets here too).
//
// # What it owns
//
// A Store holds three kinds of entries, keyed by policy.Key:
//   - token buckets, stored with the throttle they were last used with; the
//     arithmetic is policy's (Op.CheckBucket, Op.TakeBucket);
//   - quota counters: requests used in the period that starts at Key.Period
//     and ends at Op.End;
//   - WAF rate counters. The count in the last window is an approximation,
//     Cloudflare's sliding window counter: each key keeps two fixed windows
//     aligned on the Unix epoch, the current one and the one before, and the
//     count is prev × (window − elapsed in current) / window + current,
//     rounded down. It assumes the previous window's requests were spread
//     evenly. While a key has no previous window (its first window, or after
//     a full window without hits) the count is exact.
//
// Memory stays bounded (README, "Choices where the spec is silent"): a shard is swept when it has grown to twice
// what its last sweep kept, inside Apply, and Sweep sweeps every shard. A
// sweep drops only entries that carry no information: buckets that are full,
// WAF counters whose current and previous windows have both passed, and quota
// counters whose period has ended.
//
// WAF rate counters are also bounded in number (WithMaxCounters, default
// DefaultMaxCounters): a full shard drops the counters furthest below their
// limit, never one over it, and counts them (WAFCounters); see
// WithMaxCounters. Nothing else is ever dropped. A counter of a client
// address keeps its rule as a small id interned in the shard and the address
// inline, so that it costs about 75 bytes (BenchmarkWAFCounterBytes).
//
// # Journal
//
// With WithJournal, the Store lists the quota and usage counters that change;
// Changes hands out each changed counter once with its current state, Lookup
// reads one and Restore sets one. store/file builds on these: it keeps its
// decisions in a journaled Store and writes what Changes hands out to disk. A
// changed counter is not swept before Changes has handed it out.
//
// # Example
//
//	st := memory.New()
//	d, err := p.Evaluate(now, &req, st, nil) // p is a compiled *policy.Policy
//
// # Concurrency
//
// A Store is safe for concurrent use and starts no goroutines, so there is
// nothing to stop. Its entries are split into shards (DefaultShards, or
// WithShards) by a seeded hash of the key, each behind its own mutex; there
// is no global lock. Apply counts each WAF hit under its shard's lock, one
// after the other, then checks and takes all the ops of the batch as one
// atomic step: it locks the distinct shards of the ops in ascending order
// (so concurrent batches cannot deadlock), checks every op, takes one from
// each only when all admit, and unlocks. No other Apply sees a batch half
// taken.
package memory
