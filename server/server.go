package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/redis"
)

// streamWorkers is the number of gRPC worker goroutines: enough for the
// calls in flight of a busy Envoy fleet (more are served on new goroutines).
const streamWorkers = 128

// drainWait is how long a stop that ran out of grace waits for ext_proc
// streams to end cleanly before it closes the connections.
const drainWait = time.Second

// Server is a running tollgate: the decision engine, its gRPC endpoint, the
// admin HTTP API and the policy file watcher.
type Server struct {
	cfg Config
	log *slog.Logger
	// storeShown is cfg.Store as logs show it: its secrets masked.
	storeShown string
	now        func() time.Time
	realClock  bool // now is time.Now: a decision's instant also starts its latency
	policy     atomic.Pointer[policy.Policy]
	store      Store
	metrics    *metrics
	// degraded is set while the store cannot do all of its work: a Redis
	// store's circuit is open (storeEvents), or a file store's last write
	// failed (flushed). The degraded gauge and /readyz both read it.
	degraded atomic.Bool
	// replicas returns the live replicas sharing the store (Redis); nil
	// for a store of one process. budget is a decision's Redis budget,
	// which its key lookup and its state step share (0: not Redis).
	replicas func() int
	budget   time.Duration

	// reloadMu serializes policy loads; load is the last one's outcome.
	reloadMu sync.Mutex
	lastSum  [sha256.Size]byte // of the file content last loaded or tried
	load     atomic.Pointer[loadState]

	// adminMu serializes the admin API's changes, so that a check (is
	// the id taken?) and the change it guards are one step, and a reload
	// holds it through its check of the run-time keys and the swap.
	adminMu sync.Mutex

	// retries takes the concurrency releases that failed (release.go).
	retries chan slotRelease

	// detector watches decisions for quota events, deliverer sends them
	// from the store's outbox to the policy's sinks (alerts.go).
	detector  *alerts.Detector
	deliverer *alerts.Deliverer
	sinks     atomic.Pointer[sinkSet]

	dlog *decisionlog.Writer // nil: no decision log (decisionlog.go)

	grpc   *grpc.Server
	tls    *tlsFiles // nil: plaintext gRPC
	proc   *envoy.ProcessServer
	health *health.Server
	lis    net.Listener

	authz    *http.Server // nil: no HTTP authorization endpoint (httpauth.go)
	authzLis net.Listener

	admin    *http.Server // nil: the admin API is off
	adminLis net.Listener
	// adminCtx is the context of the admin calls, done when Serve stops.
	adminCtx context.Context
}

// loadState is the outcome of the last policy load.
type loadState struct {
	// err is the last load's error text; empty when it succeeded.
	err string
	// at is when the last load was tried, loadedAt when the policy being
	// served was loaded.
	at, loadedAt time.Time
	// keysErr says which run-time keys did not fit the policy loaded at
	// start (checkKeysAtStart); empty when they all did.
	keysErr string
}

var (
	_ envoy.Decider  = (*Server)(nil)
	_ envoy.Releaser = (*Server)(nil)
)

// New loads the policy, opens the store and binds the gRPC and admin
// listeners, so that a bad policy or a taken port is reported before
// anything serves.
func New(cfg Config) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, retries: make(chan slotRelease, releaseBacklog),
		storeShown: redis.Redact(cfg.Store)}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now, s.realClock = time.Now, true
	}
	if err := s.cfg.complete(); err != nil {
		return nil, err
	}
	if s.tls, err = newTLSFiles(cfg.GRPCTLSCert, cfg.GRPCTLSKey, cfg.GRPCClientCA, s.log); err != nil {
		return nil, err
	}
	s.metrics = newMetrics(s.degraded.Load, func() bool { return s.load.Load().err == "" },
		func() time.Time { return s.load.Load().loadedAt }, s.now)
	if _, err := s.reload(false); err != nil {
		return nil, err
	}
	st, err := s.openStore(s.cfg.Store)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	s.store = st
	s.metrics.wafCounters(st.WAFCounters)
	s.newAlerting(st)
	readyCtx, readyCancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := st.Ready(readyCtx); err != nil {
		// Recovery is automatic (Redis), so this is no reason to stop.
		s.log.Warn("store not reachable at start; decisions follow --on-store-error until it is", "store", s.storeShown, "err", err)
	}
	readyCancel()
	s.checkKeysAtStart()
	if err := s.openDecisionLog(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.closeDecisionLog()
		}
	}()
	if s.lis, err = Listen(cfg.GRPCAddr); err != nil {
		return nil, err
	}
	if err := s.listenHTTPAuthz(); err != nil {
		s.lis.Close()
		return nil, err
	}
	if s.cfg.AdminAddr != "-" {
		if s.adminLis, err = Listen(s.cfg.AdminAddr); err != nil {
			s.lis.Close()
			s.closeHTTPAuthz()
			return nil, fmt.Errorf("admin: %w", err)
		}
		s.admin = &http.Server{
			// Handler is set by Serve, over the store as it is then.
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	s.newGRPC()
	return s, nil
}

// newGRPC makes the gRPC server and registers its services: ext_authz,
// ext_proc and health.
func (s *Server) newGRPC() {
	opts := []grpc.ServerOption{
		// Envoy keeps a few long-lived HTTP/2 connections and sends many
		// small unary calls on each.
		grpc.MaxConcurrentStreams(1 << 16),
		// A stop that ran out of grace still waits for the decisions in
		// flight, so that none takes from the store after it is closed.
		grpc.WaitForHandlers(true),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Long-lived workers keep the stacks that decisions grow: a new
		// goroutine per call spent a fifth of the CPU growing its stack.
		grpc.NumStreamWorkers(streamWorkers),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(s.tls.credentials()))
	}
	s.grpc = grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s.grpc, &envoy.AuthzServer{Decider: s})
	s.proc = &envoy.ProcessServer{Decider: s, Releaser: s}
	extprocv3.RegisterExternalProcessorServer(s.grpc, s.proc)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// checkKeysAtStart checks the store's run-time keys against the policy
// loaded at start. Keys that do not fit (the file was edited while the
// server was down) do not stop the start: refusing would turn a restart
// after a bad edit into an outage of every request, where serving costs the
// keys named (refused as key:no-plan) until the file or the keys are
// mended. The error is logged and shown by /readyz; the next successful
// reload clears it.
func (s *Server) checkKeysAtStart() {
	p := s.policy.Load()
	err := s.checkRuntimeKeys(context.Background(), p)
	switch {
	case errors.Is(err, errStoreUnread):
		s.log.Warn("run-time keys not checked against the policy at start: the store could not be read", "err", err)
	case err != nil:
		s.log.Error("the store's run-time keys do not fit the policy; serving it anyway, those keys are refused until the policy or the keys are mended",
			"policy", s.cfg.PolicyFile, "err", err)
		ls := *s.load.Load()
		ls.keysErr = err.Error()
		s.load.Store(&ls)
	}
}

// Listen listens on a tcp "host:port" or a "unix:/path" address. A stale
// socket file left by a crashed process is removed first; a new socket is
// made readable and writable by its owner and group (0660).
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.Dial("unix", path); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen %s: socket in use", addr)
			}
			os.Remove(path)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		// Owner and group may connect: a sidecar Envoy running as
		// another user of the pod's fsGroup can.
		if err := os.Chmod(path, 0o660); err != nil {
			l.Close()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return l, nil
	}
	return net.Listen("tcp", addr)
}

// Addr returns the gRPC listener's address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// AdminAddr returns the admin API listener's address, or nil when the admin
// API is off.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLis == nil {
		return nil
	}
	return s.adminLis.Addr()
}

// Policy returns the policy being served.
func (s *Server) Policy() *policy.Policy { return s.policy.Load() }

// Serve serves gRPC and the admin API, and watches the policy file, until
// ctx is done; then it stops gracefully: health turns NOT_SERVING, calls in
// flight finish (up to ShutdownGrace), the store is closed (a file store
// writes what it holds), and Serve returns nil. A listener failure stops
// everything and is returned.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var watchers sync.WaitGroup
	watchers.Go(func() { s.retryReleases(ctx) })
	delivering, stopDelivering := context.WithCancel(context.Background())
	var deliverer sync.WaitGroup
	deliverer.Go(func() { s.runDeliverer(delivering) })
	if w, err := s.watchPolicy(); err != nil {
		s.log.Warn("policy file not watched; reload with SIGHUP", "policy", s.cfg.PolicyFile, "err", err)
	} else {
		watchers.Go(func() { s.watchLoop(ctx, w) })
	}

	errc := make(chan error, 3)
	servers := 1
	go func() {
		if err := s.grpc.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("grpc serve: %w", err)
			return
		}
		errc <- nil
	}()
	attrs := []any{"grpc", s.lis.Addr().String(), "grpc_tls", s.tls.mode(), "policy", s.cfg.PolicyFile, "store", s.storeShown}
	if shadow := s.policy.Load().ShadowLimits(); len(shadow) > 0 {
		attrs = append(attrs, "shadow", shadow) // a reminder: limits that never deny
	}
	if s.admin != nil {
		servers++
		// Admin calls run in ctx: when the server stops, a call in
		// flight (a long usage report) is cancelled instead of running on
		// past the stop and holding it up to ShutdownGrace.
		s.adminCtx = ctx
		// Built here rather than in New so that it takes the store as
		// Serve finds it (tests wrap the store between New and Serve).
		s.admin.Handler = s.adminHandler()
		s.admin.BaseContext = func(net.Listener) context.Context { return ctx }
		go func() {
			if err := s.admin.Serve(s.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin serve: %w", err)
				return
			}
			errc <- nil
		}()
		attrs = append(attrs, "admin", s.adminLis.Addr().String())
	}
	if s.authz != nil {
		servers++
		go s.serveHTTPAuthz(ctx, errc)
		attrs = append(attrs, "http", s.authzLis.Addr().String())
	}
	s.log.Info("serving", attrs...)
	if s.cfg.GRPCClientCA == "" && openToAll(s.cfg.GRPCAddr) {
		s.log.Warn("the gRPC port takes unauthenticated calls from any host that reaches it, and trusts the client addresses they carry: "+
			"listen on a private address, loopback or a unix socket, or require client certificates (--grpc-client-ca)", "grpc", s.cfg.GRPCAddr)
	}

	var errs []error
	select {
	case err := <-errc:
		servers--
		errs = append(errs, err)
	case <-ctx.Done():
	}
	cancel()

	s.stopServers()
	for ; servers > 0; servers-- {
		errs = append(errs, <-errc)
	}
	watchers.Wait()
	// The decisions have ended: the events they queued go to the outbox
	// before the store closes.
	stopDelivering()
	deliverer.Wait()
	if err := s.closeDecisionLog(); err != nil {
		errs = append(errs, err)
	}
	if err := s.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("stopped")
	return nil
}

// stopServers stops the gRPC and admin servers gracefully, within
// ShutdownGrace: health answers NOT_SERVING first, calls in flight finish,
// and when the grace runs out ext_proc streams end cleanly before the
// connections close.
func (s *Server) stopServers() {
	s.health.Shutdown()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer stopCancel()
	var stops sync.WaitGroup
	stops.Go(func() {
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-stopCtx.Done():
			// ext_proc streams end cleanly first (Envoy goes on without
			// them instead of failing requests the upstream may have
			// served), then the connections close.
			s.log.Warn("graceful stop timed out; ending ext_proc streams and closing connections")
			s.proc.Drain()
			select {
			case <-done:
			case <-time.After(drainWait):
				s.grpc.Stop()
				<-done
			}
		}
	})
	for _, srv := range []*http.Server{s.admin, s.authz} {
		if srv != nil {
			stops.Go(func() {
				if err := srv.Shutdown(stopCtx); err != nil {
					srv.Close()
				}
			})
		}
	}
	stops.Wait()
}
