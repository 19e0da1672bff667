// Package load is tollgate's load generator (tollgate load): a closed loop of
// workers that speak ext_authz (a Check per request) or ext_proc (a stream
// per request, request and response headers) to a tollgate as Envoy does,
// over a few shared gRPC connections, or the HTTP authorization API
// (serve --http-addr), with a request mix drawn from a policy: anonymous
// routes, keyed routes over K keys, blocked addresses and invalid keys. It
// reports throughput, latency percentiles (HdrHistogram, monotonic clock)
// and the answers by status; Prepare seeds a store with the K keys.
//
// The ratelimit mode sends the same mix to envoyproxy/ratelimit instead, as
// Envoy's rate limit filter would (RateLimitService.ShouldRateLimit, one
// descriptor a request: the key's id, or the route), and RateLimitConfig
// writes the configuration that gives those descriptors the policy's
// rates, so that the two can be measured under one load.
//
// The HTTP mode sends each request of the mix in Envoy's form, as its
// http_service does: the original method and path behind /ext_authz, the
// Host and the key header, the client's address in X-Forwarded-For (so the
// WAF sees blocked addresses) and the stage in X-Tollgate-Stage. It speaks
// HTTP/1.1 with keep-alive (net/http's Transport) over at most Conns
// connections shared by the workers: a connection carries one request at a
// time, and a worker that finds none free waits for one, as behind a
// proxy's capped pool. With one connection per worker (tollgate load's
// default in this mode) as many requests are in flight as over gRPC,
// which is also how Envoy's and nginx's HTTP/1.1 pools behave: a
// connection per request in flight. HTTP/1.1 is what nginx, Caddy and
// Traefik speak to an auth service, and Envoy's default for a cluster; h2c,
// which the server also serves, is not offered: through net/http's client
// it was slower than HTTP/1.1 with a connection per worker against the same
// server (BENCHMARKS.md, issue 15).
//
// A closed loop measures what a server does under the load it can take: a
// stalled server slows the senders down instead of queueing their requests
// (coordinated omission), so under overload the percentiles are those of the
// requests sent, not of a fixed arrival rate.
//
// # Concurrency
//
// Run starts Workers goroutines and returns when they are done; Report and
// Config are plain values.
package load
