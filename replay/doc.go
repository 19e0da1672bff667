// Package replay replays decision logs (SPEC §10, package decisionlog)
// against a candidate policy, and reports what it would have answered:
// `tollgate replay`.
//
//	r, err := replay.Run(ctx, replay.Options{Candidate: cand, Files: []string{"decisions.log", "decisions-2026-11-20T12-00-00.000.log.gz"}})
//	...
//	r.WriteTable(os.Stdout, 20) // or json.NewEncoder(os.Stdout).Encode(r)
//
// # Reading
//
// The files may be plain or gzip (recognized by their first bytes, not their
// names), in any order: their lines are merged in time order (a k-way merge
// by "ts", then file, then line), reading each file as it goes, so a log
// of any size streams. Within one file, lines are put back in time order
// within a reorder window (Window, MaxPending): concurrent decisions queue
// their lines in a slightly different order than their instants. A line that
// comes later than the window is replayed late, at its own instant, and
// counted (Report.Late). A malformed line (not JSON, no "ts" or "status") is
// skipped, counted (Report.Skipped) and named to Options.Warn with its file
// and line number: a log cut short by a crash, or written while it is read,
// still replays. So is the end of a gzip stream cut short (a file still
// being compressed): the lines before it replay. A file none of whose lines
// is a decision is an error, and so is a file named twice (by its name
// again, or through a symlink): its lines would be replayed twice. The
// decision log's rotation (lumberjack) compresses a rotated file X.log in
// place, writing X.log.gz and then removing X.log: when both are named,
// X.log is complete and X.log.gz may be half-written, so X.log.gz is
// skipped and named to Options.Warn.
// Fields a line has that replay does not know are ignored, so that a newer
// tollgate's log replays.
//
// # Replaying
//
// Each line becomes a policy.Request evaluated at the line's instant (a
// simulated clock) with (*policy.Policy).Evaluate, against fresh state: a
// memory.Store of its own for the candidate, and for the baseline policy when
// one is given (Options.Baseline); without one, the logged status is the
// baseline's answer. The request has the logged method and path (the path
// as routes matched it, which normalization leaves as it is), the logged ip
// as the TCP peer (a policy's ip source falls back to the peer when its
// header is absent, so any source reads it), and the logged api and stage
// named as Envoy names them. The host is not logged: a line without a stage
// replays without one.
//
// The log never holds a key value: a line has the key's id, customer and
// plan. Each such identity is sent as a synthetic key value, which the
// replayed policy's policy.Keys turns into a key: the policy file's key of
// that id when it has one (its plans, enabled and expiry: a key moved to
// another plan in the candidate uses it); for the candidate, no key
// (key:unknown) when the baseline's file has the id and the candidate's
// does not (the candidate removed it); else a run-time key as the log saw
// it (the logged customer, the logged plan as its only plan, enabled, never
// expiring; without that plan in the policy it is key:no-plan, as a server
// would answer). Without a baseline, the log cannot tell a key removed from
// the file from a run-time key: it replays as one.
//
// A line denied for its key names no key. A line denied key:missing is sent
// without one; key:unknown with a value no key has; key:disabled,
// key:expired and key:no-plan with a key that is disabled, expired or
// without plans. The log cannot tell one bad key from another, so each such
// line has a value of its own: a WAF rate rule keyed by api_key counts it
// as one request of a key of its own, where the server counted a client
// that repeated one bad key on one counter (and may have blocked it). A
// line denied before its key was checked (WAF, unknown route, unreadable
// request) is sent without a key.
//
// What is not replayed:
//
//   - concurrency caps: the log has no request ends, so no request holds a
//     slot;
//   - quota grants, and the buckets and quotas as they were before the first
//     line (fresh state: buckets full, quotas unused); quotas and WAF rate
//     counters count from the first line on;
//   - the shadow reasons of a line;
//   - WAF rate rules keyed by a header (key: header:NAME): the log has no
//     headers, so they never count (Run names each such rule of the
//     candidate and the baseline to Options.Warn);
//   - the lines the server's log dropped (its buffer full, or the file not
//     writable: tollgate_decision_log_dropped_total): their requests are not
//     there, and take no tokens;
//   - a change of default_stage or hosts: the host is not logged, and the
//     stage is logged as it was resolved, so a request replays on that
//     stage whatever the candidate's default_stage or hosts;
//   - which stage a WAF-blocked line without api and stage was for: the
//     request had none of the policy's, because Envoy named one the policy
//     did not have, or named none and the policy had no default_stage; the
//     log cannot tell which. It replays without a stage: under a candidate
//     that does not block it, on the candidate's default stage, where a
//     server answers 403 route:unknown to a stage it does not have;
//   - store outages: a line logged 503 store:error with a key id is decided
//     as with a working store. One without a key id cannot be replayed
//     faithfully: the key store could not be reached, so the key was never
//     resolved and the log does not say which key, if any, was sent (or the
//     state store failed on a request without a key: the log cannot tell).
//     It is left out of the comparison and counted (Report.Unreplayable).
//
// # Report
//
// Report counts the lines by status under both answers, in all and per
// plan, route and customer, grouped by the baseline's identity: the logged
// plan, route and customer, or the baseline policy's decision's with
// Options.Baseline. The groups are sorted by lines whose status changed,
// most first, then by name. A change is a change of status (SPEC §10: the
// answers by status): a line the candidate answers with the same status for
// another reason (429 throttle:plan, then 429 quota) is not counted as
// changed.
//
// # Concurrency
//
// Run replays on the calling goroutine, one line at a time; concurrent Runs
// share nothing. A Report is a plain value.
package replay
