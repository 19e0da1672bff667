package policy

import "time"

// Request is what the decision needs to know of one HTTP request. The
// translators in envoy/ fill it from Envoy's messages without copying.
type Request struct {
	// Method and Path as the client sent them; Path may hold a query
	// string and percent-escapes.
	Method string
	Path   string
	// Host is the :authority, possibly with a port.
	Host string
	// Headers holds the request headers with lower-case names; repeated
	// headers joined with ",".
	Headers map[string]string
	// Peer is the address of the TCP peer Envoy saw (an IP, possibly
	// with a port).
	Peer string
	// API and Stage are the stage Envoy named (ext_authz context
	// extensions); empty when it named none. Stage may also be "api/stage".
	API, Stage string
	// Lease is set by callers that see the end of the request (ext_proc):
	// a unique id under which the request may hold a concurrency slot of
	// its route (SPEC §3 step 6), released with State.Release. Empty: no
	// concurrency cap applies (ext_authz).
	Lease string
	// Deadline is when the answers of a store shared with other replicas
	// (Redis) are due: the decision's budget, which its key lookup and its
	// state step share. Zero: each call has the store's own budget. Stores
	// that keep their state in this process ignore it.
	Deadline time.Time
}
