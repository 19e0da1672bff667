package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
)

// Config is what `tollgate serve` is given.
type Config struct {
	// PolicyFile is the policy to serve.
	PolicyFile string
	// GRPCAddr is the gRPC listen address: "host:port" or "unix:/path".
	GRPCAddr string
	// Store is the state store URL: "file:DIR" (the default,
	// file:./tollgate-data) or "memory:".
	Store string
	// FlushInterval bounds how long counts wait in memory before a file
	// store writes them (default 1s).
	FlushInterval time.Duration
	// AdminAddr is the admin HTTP API's listen address (default
	// 127.0.0.1:9002); "-" turns the admin API off.
	AdminAddr string
	// AdminToken is the bearer token of the /v1 admin calls; empty: the
	// /v1 calls answer 503.
	AdminToken string
	// ShutdownGrace bounds how long a graceful stop waits for calls in
	// flight (default 10s).
	ShutdownGrace time.Duration
	// Logger receives the server's logs (default: slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Server is a running tollgate: the decision engine and its gRPC endpoint.
type Server struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	policy atomic.Pointer[policy.Policy]
	store  Store

	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
}

var _ envoy.Decider = (*Server)(nil)

// New loads the policy, opens the store and binds the gRPC listener, so
// that a bad policy or a taken port is reported before anything serves.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.ShutdownGrace == 0 {
		s.cfg.ShutdownGrace = 10 * time.Second
	}
	p, err := policyfile.Load(cfg.PolicyFile)
	if err != nil {
		return nil, err
	}
	s.policy.Store(p)
	if s.store, err = openStore(cfg.Store, cfg.FlushInterval); err != nil {
		return nil, err
	}
	if s.lis, err = Listen(cfg.GRPCAddr); err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(
		// Envoy keeps a few long-lived HTTP/2 connections and sends many
		// small unary calls on each.
		grpc.MaxConcurrentStreams(1<<16),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.NumStreamWorkers(0),
	)
	authv3.RegisterAuthorizationServer(s.grpc, &envoy.AuthzServer{Decider: s})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Listen listens on a tcp "host:port" or a "unix:/path" address. A stale
// socket file left by a crashed process is removed first.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.Dial("unix", path); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen %s: socket in use", addr)
			}
			os.Remove(path)
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// Addr returns the gRPC listener's address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Policy returns the policy being served.
func (s *Server) Policy() *policy.Policy { return s.policy.Load() }

// Serve serves gRPC until ctx is done, then stops gracefully: health turns
// NOT_SERVING, calls in flight finish (up to ShutdownGrace), and Serve
// returns nil. A listener failure is returned.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()
	s.log.Info("serving", "grpc", s.lis.Addr().String(), "policy", s.cfg.PolicyFile, "store", s.cfg.Store)
	select {
	case err := <-errc:
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownGrace):
		s.log.Warn("graceful stop timed out; closing connections")
		s.grpc.Stop()
		<-done
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc serve: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

// Decide evaluates one request against the current policy at the current
// time. It is the one place that reads the clock.
func (s *Server) Decide(ctx context.Context, r *policy.Request) policy.Decision {
	p := s.policy.Load()
	d, err := p.Evaluate(s.now(), r, s.store, s.store)
	if err != nil {
		s.log.Error("state unavailable; request allowed", "err", err, "api", d.API, "stage", d.Stage, "route", d.Route)
		d = policy.Decision{Verdict: policy.Allow, Status: 200, KeyHeader: d.KeyHeader, Headers: d.Headers, Explain: d.Explain}
	}
	if d.Verdict == policy.Deny && s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "denied",
			slog.Int("status", d.Status), slog.String("reason", string(d.Reason)),
			slog.String("api", d.API), slog.String("stage", d.Stage), slog.String("route", d.Route),
			slog.String("key_id", d.KeyID), slog.String("customer", d.Customer))
	}
	return d
}
