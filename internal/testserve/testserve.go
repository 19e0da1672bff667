// Package testserve runs a tollgate server in a test's own process, for the
// tests outside package server that ask it as a client would (the proxies'
// and the proxyless client's tests in examples/).
package testserve

import (
	"context"
	"log/slog"
	"testing"

	"github.com/tollgate/tollgate/internal/testlog"
	"github.com/tollgate/tollgate/server"
)

// Server is a serving tollgate and its log (JSON lines, debug level: one
// line per denial).
type Server struct {
	*server.Server
	Logs *testlog.Buffer
}

// Start serves cfg (its Logger set to Logs) until the test ends, then
// stops it and fails the test if Serve failed; a failed test shows the
// log.
func Start(t testing.TB, cfg server.Config) *Server {
	t.Helper()
	logs := new(testlog.Buffer)
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("tollgate serve: %v", err)
		}
		if t.Failed() {
			t.Logf("tollgate's log:\n%s", logs)
		}
	})
	return &Server{Server: s, Logs: logs}
}
