package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/envoy"
)

// listenHTTPAuthz binds the HTTP authorization endpoint when HTTPAddr is
// set (envoy.HTTPServer: Envoy's http_service, nginx auth_request, Caddy
// forward_auth).
func (s *Server) listenHTTPAuthz() error {
	if s.cfg.HTTPAddr == "" {
		return nil
	}
	lis, err := Listen(s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	// Proxies keep connections to an auth service open and send small
	// requests on them: HTTP/1.1 keep-alive, or HTTP/2 without TLS for an
	// Envoy cluster with http2_protocol_options.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.authzLis = lis
	s.authz = &http.Server{
		Handler:           &envoy.HTTPServer{Decider: s},
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		// The original request's headers: the limits of nginx's and
		// Envoy's own defaults are below this.
		MaxHeaderBytes: 128 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// closeHTTPAuthz closes the endpoint's listener when New fails after binding
// it.
func (s *Server) closeHTTPAuthz() {
	if s.authzLis != nil {
		s.authzLis.Close()
	}
}

// serveHTTPAuthz serves the endpoint until it is shut down, and sends the
// outcome to errc. Decisions run in ctx, cancelled when Serve stops.
func (s *Server) serveHTTPAuthz(ctx context.Context, errc chan<- error) {
	s.authz.BaseContext = func(net.Listener) context.Context { return ctx }
	if openToAll(s.cfg.HTTPAddr) {
		s.log.Warn("the HTTP authorization port takes calls from any host that reaches it, and trusts the client addresses they carry: "+
			"listen on a private address, loopback or a unix socket", "http", s.cfg.HTTPAddr)
	}
	if err := s.authz.Serve(s.authzLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errc <- fmt.Errorf("http serve: %w", err)
		return
	}
	errc <- nil
}

// HTTPAddr returns the HTTP authorization endpoint's address, or nil when
// it is off.
func (s *Server) HTTPAddr() net.Addr {
	if s.authzLis == nil {
		return nil
	}
	return s.authzLis.Addr()
}
