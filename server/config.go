package server

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/store/memory"
)

// Config is what `tollgate serve` is given.
type Config struct {
	// PolicyFile is the policy to serve.
	PolicyFile string
	// GRPCAddr is the gRPC listen address: "host:port" or "unix:/path".
	GRPCAddr string
	// GRPCTLSCert and GRPCTLSKey are PEM files of the gRPC port's
	// certificate (chain) and private key: both set, the port speaks TLS
	// 1.2 or later only (unix sockets too); both empty, plaintext. They are
	// read again on the first handshake after one of them changes on disk.
	GRPCTLSCert, GRPCTLSKey string
	// GRPCClientCA is a PEM file of the CAs that the gRPC clients'
	// certificates must chain to (mTLS): a client without such a
	// certificate is refused at the handshake. Empty: no client
	// certificate is asked for. It needs GRPCTLSCert and GRPCTLSKey.
	GRPCClientCA string
	// Store is the state store URL: "file:DIR" (the default,
	// file:./tollgate-data), "memory:" or a Redis URL (redis://,
	// rediss://, redis-sentinel://, redis-cluster://).
	Store string
	// FlushInterval bounds how long counts wait in memory before a file
	// store writes them (default 1s).
	FlushInterval time.Duration
	// StoreTimeout is the budget of a decision's call to a Redis store
	// (default redis.DefaultTimeout).
	StoreTimeout time.Duration
	// OnStoreError says how a decision is made when a Redis store cannot
	// answer it in time (default OnErrorLocal). A run-time key that cannot
	// be looked up is never let through, whatever the mode.
	OnStoreError OnStoreError
	// WAFCounters bounds the WAF rate counters held in memory (default
	// memory.DefaultMaxCounters): the embedded stores' counters, or with
	// Redis those of local decisions (memory.WithMaxCounters).
	WAFCounters int
	// HTTPAddr is the listen address of the HTTP authorization endpoint
	// (Envoy's http_service, nginx auth_request, Caddy forward_auth),
	// "host:port" or "unix:/path"; empty: off.
	HTTPAddr string
	// AdminAddr is the admin HTTP API's listen address, "host:port" or
	// "unix:/path" (default 127.0.0.1:9002); "-" turns the admin API off.
	AdminAddr string
	// AdminToken is the bearer token of the /v1 admin calls; empty: the
	// /v1 calls answer 503.
	AdminToken string
	// ShutdownGrace bounds how long a graceful stop waits for calls in
	// flight (default 10s).
	ShutdownGrace time.Duration
	// Noop allows every request without looking at it (no policy, no
	// store): the floor that load tests compare tollgate with, on the same
	// gRPC stack and translation.
	Noop bool
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// address (no token: keep the admin address private).
	Pprof bool
	// DecisionLog is the decision log's file (SPEC §10): a JSON line per
	// decision, written off the decision path; empty: none.
	DecisionLog string
	// DecisionLogMaxSize is the size in MB at which the decision log is
	// rotated (default decisionlog.DefaultMaxSize); DecisionLogMaxBackups
	// how many rotated, gzipped files are kept (default
	// decisionlog.DefaultMaxBackups).
	DecisionLogMaxSize, DecisionLogMaxBackups int
	// Logger receives the server's logs (default: slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// OnStoreError is what a decision does when Redis cannot answer it in
// time (--on-store-error).
type OnStoreError string

const (
	// OnErrorLocal decides on this replica's own state with its share of
	// each limit (the live replicas' count last seen in Redis), and adds
	// the quota and usage counted meanwhile to Redis when it answers again.
	OnErrorLocal OnStoreError = "local"
	// OnErrorAllow lets the request through without its limits.
	OnErrorAllow OnStoreError = "allow"
	// OnErrorDeny answers 503 Service Unavailable.
	OnErrorDeny OnStoreError = "deny"
)

// Valid reports whether m is one of the modes.
func (m OnStoreError) Valid() bool {
	return m == OnErrorLocal || m == OnErrorAllow || m == OnErrorDeny
}

// DefaultAdminAddr is the admin API's address when Config.AdminAddr is empty.
const DefaultAdminAddr = "127.0.0.1:9002"

// complete fills in the defaults of the fields left zero and checks the
// rest.
func (c *Config) complete() error {
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.Store == "" {
		c.Store = DefaultStore
	}
	if c.OnStoreError == "" {
		c.OnStoreError = OnErrorLocal
	}
	if !c.OnStoreError.Valid() {
		return fmt.Errorf("on-store-error %q: want local, allow or deny", c.OnStoreError)
	}
	switch {
	case c.WAFCounters == 0:
		c.WAFCounters = memory.DefaultMaxCounters
	case c.WAFCounters < 0:
		return fmt.Errorf("waf-counters %d: want at least 1", c.WAFCounters)
	}
	if c.DecisionLogMaxSize < 0 || c.DecisionLogMaxBackups < 0 {
		return fmt.Errorf("decision-log-max-size %d, decision-log-max-backups %d: want positive numbers",
			c.DecisionLogMaxSize, c.DecisionLogMaxBackups)
	}
	return nil
}
