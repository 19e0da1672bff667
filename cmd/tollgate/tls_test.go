package main

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tollgate/tollgate/internal/testpki"
)

// TestServeMutualTLS runs the binary with the TLS flags: a client with a
// certificate of the client CA gets decisions; one without is refused.
func TestServeMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "tollgate test CA")
	dir := t.TempDir()
	cert, key := ca.Server(t, "tollgate", "127.0.0.1").Write(t, dir)
	caFile := testpki.WriteFile(t, dir, "ca.pem", ca.PEM)
	p := startProc(t, example, "memory:", "--grpc-tls-cert", cert, "--grpc-tls-key", key, "--grpc-client-ca", caFile)
	if !strings.Contains(p.logs.String(), `"grpc_tls":"mtls"`) {
		t.Errorf("the serving line does not say grpc_tls mtls:\n%s", p.logs.String())
	}
	check := func(certs ...tls.Certificate) error {
		conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: certs})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest("198.51.100.7", "POST", "/partners/p-1/transactions", freeKey))
		return err
	}
	if err := check(ca.Client(t, "envoy").Pair(t)); err != nil {
		t.Fatalf("client with a certificate of the CA: %v", err)
	}
	if err := check(); err == nil {
		t.Fatal("client without a certificate: got a decision, want it refused")
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("stop: %v\n%s", err, p.logs.String())
	}
}

// TestServeBadTLSFile: serve stops at start on a missing certificate,
// naming the flag and the file.
func TestServeBadTLSFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "tollgate.pem")
	_, stderr, status := runArgs(t, "serve", "--policy", example, "--store", "memory:", "--grpc-addr", "127.0.0.1:0",
		"--admin-addr", "-", "--grpc-tls-cert", missing, "--grpc-tls-key", missing)
	if want := "--grpc-tls-cert " + missing + ": no such file or directory"; status != 1 || !strings.Contains(stderr, want) {
		t.Errorf("got status %d, stderr %q; want 1 and %q", status, stderr, want)
	}
}
