// Package load is tollgate's load generator (tollgate load): a closed loop of
// workers that speak ext_authz (a Check per request) or ext_proc (a stream
// per request, request and response headers) to a tollgate as Envoy does,
// over a few shared gRPC connections, with a request mix drawn from a
// policy: anonymous routes, keyed routes over K keys, blocked addresses and
// invalid keys. It reports throughput, latency percentiles (HdrHistogram,
// monotonic clock) and the answers by status; Prepare seeds a store with the
// K keys.
//
//	r, err := load.Run(ctx, load.Config{Target: "127.0.0.1:9001", Mode: load.Authz,
//		Workers: 50, Conns: 4, Duration: 10 * time.Second, Warmup: 2 * time.Second,
//		Policy: p, Keys: 1000, Mix: load.DefaultMix})
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
