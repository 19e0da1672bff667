// Package policy is tollgate's decision core: it compiles a policy file into
// an immutable *Policy and evaluates requests against it.
//
// Like golang.org/x/time/rate, it is arithmetic, maps and mutexes only: no
// goroutines, no network, no files, no logging and no clock. The time is a
// parameter of every call that needs one.
//
// # The policy file
//
// Compile takes the tree a YAML or JSON decoder makes of the file (package
// policyfile reads it) and decodes it strictly: an unknown field is an
// error, and every error names the file, the field path and the value, all
// of them at once. Its sections (examples/payments/policy.yaml shows each):
//
//	version: 1
//	account:        {throttle: {rate, burst}}                one bucket shared by every request
//	clients:        api_key_header, strip_api_key, ip: {source: peer|xff|header, xff_trusted_hops, header}
//	headers:        ietf | legacy | both | none              the rate-limit headers
//	explain:        true: 403 answers say which key check failed
//	apis:           name: {hosts, stages: name: {throttle, route_defaults, unknown_routes, routes: [
//	                  {match: "METHOD /path/{param}/{rest+}", throttle, api_key: required|optional|none,
//	                   waf: skip, concurrency}]}}
//	default_stage:  api/stage
//	notifications:  {sinks: name: {webhook: {url, secret_file, timeout}}}
//	usage_plans:    name: {throttle, quota: {limit, period: day|week|month, timezone, week_start, anchor_day},
//	                  alerts: {thresholds: [percent], forecast: true|false, sinks: [name]},
//	                  stages: [api/stage or {stage, routes: {match: throttle}}]}
//	api_keys:       [{id, customer, hash: "sha256:<hex>", plans, enabled, expires}]
//	waf:            {ip_sets: name: [CIDR], rules: [{name, ip_set | rate_based: {limit, window, key, ipv6_prefix},
//	                  scope: {routes}, action: block|allow|count, response: {status, body}}], default_action}
//
// A throttle is {rate, burst}: rate a decimal ≥ 0 per second, burst an
// integer ≥ 0; 0/0 stops all traffic; a throttle left out is no limit. Key
// values never appear in the file, only their SHA-256. A throttle, a quota,
// a plan (the default of its throttles and quota) and a WAF block rule take
// mode: enforce (the default) or shadow (below, "Shadow mode").
//
// # Stage and route
//
// A request belongs to the stage named by Envoy (Request.API and Stage:
// ext_authz context extensions, ext_proc metadata or attributes), else to
// the stage of an api whose hosts hold its host, else to default_stage;
// with none, it meets the WAF and the account bucket only. Its route is
// matched on the canonical path (normalizePath): without query string,
// path parameters and trailing slash, decoded, with dot segments resolved
// and empty segments merged; literal segments beat {name}, which beats
// {name+}, and the exact method beats ANY. A request that cannot be read
// (no method, an unusable path, an unparsable client address) is 400
// request:invalid.
//
// # The decision
//
// Evaluate checks, in this order, and the first step that fails answers:
//
//  1. WAF (403, or the rule's response): rules in order; an ip_set rule
//     matches the client address (allow ends the WAF, block answers, count
//     records); a rate_based rule counts every request in its scope in a
//     sliding window per aggregation key, blocked ones included, and blocks
//     while the count exceeds its limit. Then default_action.
//  2. Route: an unknown route with unknown_routes: deny is 403 Missing
//     Authentication Token.
//  3. API key (403): with api_key: required the key must be present, known,
//     enabled, not expired and its customer must hold a plan for the stage;
//     with optional, an absent key is anonymous but a bad one is 403.
//  4. Token buckets (429 Too Many Requests): the plan bucket (its route
//     override, else the plan's throttle; one per customer and plan), the
//     route bucket, the stage bucket and the account bucket.
//  5. Quota (429 Limit Exceeded): one counter per customer, plan and
//     calendar period.
//  6. Concurrency (ext_proc only; a Request with a Lease): in-flight
//     requests per route.
//
// Buckets refill continuously: tokens = min(burst, tokens + rate ×
// elapsed), a new bucket is full, and a request takes one token when at
// least one is there; the arithmetic is in integers (nano-tokens), so
// counts are exact. A rejected request consumes nothing: the buckets, the
// quota and the slot are checked and taken in one State.Apply, all or none;
// only WAF rate counters count rejected requests.
//
// # Shadow mode
//
// A limit in shadow mode is evaluated and counted but never denies (SPEC
// §10). A shadow bucket or quota is one more op of the same State.Apply
// (Op.Shadow): it takes only when it admits and the enforced ops admit the
// request, so its state follows what enforcing it would do (closely: the
// requests it would deny still spend the enforced limits), and a rejected
// request still consumes nothing. Its state key does not depend
// on the mode: switched to enforce, a limit keeps the state it tracked. A
// shadow ip_set rule that matches does not end the WAF; a shadow rate rule
// counts like the others but never blocks. Decision.Shadow names the shadow
// limits that would have denied an allowed request; shadow limits are not
// among a decision's limits (no rate-limit header).
//
// # Answers
//
// A Decision carries the verdict, the status, the reason (waf:<rule>,
// route:unknown, key:missing|unknown|disabled|expired|no-plan,
// throttle:plan|route|stage|account, quota, concurrency, request:invalid),
// the JSON body, Retry-After on 429 (the time until every failing limit
// admits the request; for a quota, until the period ends) and the limits
// that applied, most constrained first, from which package envoy builds the
// rate-limit headers.
//
// # Alerts
//
// notifications.sinks names the webhooks that quota events go to: url an
// absolute http or https URL; secret_file the file holding the secret the
// events are signed with (read by the server, never by this package,
// without the whitespace around it; left out, events go unsigned); timeout one attempt's bound, 100ms to 1m
// (default 5s). A plan's alerts need its quota and name at least one sink.
// Thresholds are whole percents 1..100 of the quota's limit, grants
// included, each listed once; 100 is exhaustion, and a higher one could
// never be reached, as a denied request takes nothing. forecast: true asks
// for an event when, at the recent rate, the quota runs out before its
// period ends. At least one of the two is needed. Package alerts sends one
// event per customer, plan, period and threshold, and one forecast per
// customer, plan and period; Plan.QuotaWindow gives the period, the same on
// every replica.
//
// # Concurrency
//
// A compiled *Policy is immutable and safe for concurrent use; Evaluate may
// run on many goroutines at once against one State, whose implementations
// (store/memory, store/file, store/redis) make each Apply one atomic step.
package policy
