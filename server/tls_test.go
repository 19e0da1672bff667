package server

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate/internal/testpki"
)

// tlsFixture is a CA and the files of a server certificate it signed for
// 127.0.0.1, in a directory of their own.
type tlsFixture struct {
	ca                *testpki.CA
	dir               string
	cert, key, caFile string
}

func newTLSFixture(t *testing.T) *tlsFixture {
	t.Helper()
	f := &tlsFixture{ca: testpki.NewCA(t, "tollgate test CA"), dir: t.TempDir()}
	f.cert, f.key = f.ca.Server(t, "tollgate-1", "127.0.0.1", "tollgate").Write(t, f.dir)
	f.caFile = testpki.WriteFile(t, f.dir, "ca.pem", f.ca.PEM)
	return f
}

// tlsClient returns credentials that trust ca, with the client
// certificates given.
func tlsClient(ca *testpki.CA, certs ...tls.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: certs})
}

// decideOver sends the free key's request to addr over a new connection
// made with creds, and returns the call's error; an answer must allow it.
func decideOver(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, request(freeKey))
	if err != nil {
		return err
	}
	if code := resp.GetStatus().GetCode(); code != 0 {
		t.Fatalf("got a denial (%d, %s), want the free key allowed", code, resp.GetDeniedResponse().GetBody())
	}
	return nil
}

// wantRefused fails the test unless err is a call refused at the
// connection: Unavailable, with no answer.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got a decision, want the connection refused", what)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("%s: got %v, want Unavailable (refused at the handshake)", what, err)
	}
}

// servedCN returns the common name of the certificate that a new TLS
// connection to addr is served with.
func servedCN(t *testing.T, addr string, ca *testpki.CA, certs ...tls.Certificate) string {
	t.Helper()
	d := tls.Dialer{Config: &tls.Config{RootCAs: ca.Pool(), ServerName: "tollgate", NextProtos: []string{"h2"}, Certificates: certs},
		NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestGRPCTLS: with a certificate and its key, the gRPC port speaks TLS
// only: a TLS client gets decisions and health answers on it; a plaintext
// client, a client that trusts another CA and a TLS 1.1 client are refused.
func TestGRPCTLS(t *testing.T) {
	f := newTLSFixture(t)
	h := serve(t, testPolicy(t), func(c *Config) { c.GRPCTLSCert, c.GRPCTLSKey = f.cert, f.key })
	addr := h.s.Addr().String()

	if err := decideOver(t, addr, tlsClient(f.ca)); err != nil {
		t.Fatalf("tls client: %v", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tlsClient(f.ca)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over tls: got %v, %v; want SERVING", hr.GetStatus(), err)
	}

	wantRefused(t, "plaintext client", decideOver(t, addr, insecure.NewCredentials()))
	wantRefused(t, "client trusting another CA", decideOver(t, addr, tlsClient(testpki.NewCA(t, "other CA"))))
	old := credentials.NewTLS(&tls.Config{RootCAs: f.ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	wantRefused(t, "tls 1.1 client", decideOver(t, addr, old))
	if !strings.Contains(h.logs.String(), `"grpc_tls":"tls"`) {
		t.Errorf("the serving line does not say grpc_tls tls:\n%s", h.logs.String())
	}
}

// TestGRPCMutualTLS: with a client CA, a client must present a certificate
// that it signed: none, or one of another CA, is refused at the handshake.
func TestGRPCMutualTLS(t *testing.T) {
	f := newTLSFixture(t)
	h := serve(t, testPolicy(t), func(c *Config) {
		c.GRPCTLSCert, c.GRPCTLSKey, c.GRPCClientCA = f.cert, f.key, f.caFile
	})
	addr := h.s.Addr().String()

	wantRefused(t, "no client certificate", decideOver(t, addr, tlsClient(f.ca)))
	other := testpki.NewCA(t, "other CA")
	wantRefused(t, "client certificate of another CA", decideOver(t, addr, tlsClient(f.ca, other.Client(t, "envoy").Pair(t))))
	wantRefused(t, "plaintext client", decideOver(t, addr, insecure.NewCredentials()))
	if err := decideOver(t, addr, tlsClient(f.ca, f.ca.Client(t, "envoy").Pair(t))); err != nil {
		t.Fatalf("client certificate of the CA: %v", err)
	}
	if strings.Contains(h.logs.String(), "unauthenticated calls") {
		t.Errorf("mTLS on loopback logged the unauthenticated-port warning:\n%s", h.logs.String())
	}
}

// TestGRPCTLSRotation: a certificate and key renamed over the files serve
// the next connection without a restart; a certificate written before its
// key leaves the previous pair serving (logged) until the key follows; a
// connection made before the rotation goes on.
func TestGRPCTLSRotation(t *testing.T) {
	f := newTLSFixture(t)
	h := serve(t, testPolicy(t), func(c *Config) { c.GRPCTLSCert, c.GRPCTLSKey = f.cert, f.key })
	addr := h.s.Addr().String()
	if got := servedCN(t, addr, f.ca); got != "tollgate-1" {
		t.Fatalf("step 0: served %q, want tollgate-1", got)
	}
	before, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tlsClient(f.ca)))
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	authz := authv3.NewAuthorizationClient(before)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := authz.Check(ctx, request(freeKey)); err != nil {
		t.Fatal(err)
	}

	next := f.ca.Server(t, "tollgate-2", "127.0.0.1", "tollgate")
	testpki.WriteFile(t, f.dir, "cert.pem", next.CertPEM)
	if got := servedCN(t, addr, f.ca); got != "tollgate-1" {
		t.Fatalf("step 1 (new certificate, old key): served %q, want tollgate-1 still", got)
	}
	if !strings.Contains(h.logs.String(), "do not load") {
		t.Errorf("step 1: the mismatched pair was not logged:\n%s", h.logs.String())
	}
	testpki.WriteFile(t, f.dir, "key.pem", next.KeyPEM)
	if got := servedCN(t, addr, f.ca); got != "tollgate-2" {
		t.Fatalf("step 2 (new key): served %q, want tollgate-2", got)
	}
	if err := decideOver(t, addr, tlsClient(f.ca)); err != nil {
		t.Fatalf("step 2: a new connection: %v", err)
	}
	if _, err := authz.Check(ctx, request(freeKey)); err != nil {
		t.Fatalf("step 2: the connection made before the rotation: %v", err)
	}
	if !strings.Contains(h.logs.String(), "certificate reloaded") {
		t.Errorf("step 2: the reload was not logged:\n%s", h.logs.String())
	}

	// Overwritten in place, not renamed: picked up too.
	third := f.ca.Server(t, "tollgate-3", "127.0.0.1", "tollgate")
	if err := os.WriteFile(f.key, third.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cert, third.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedCN(t, addr, f.ca); got != "tollgate-3" {
		t.Fatalf("step 3 (written in place): served %q, want tollgate-3", got)
	}
}

// TestGRPCClientCARotation: a new client CA renamed over the file decides
// the next handshake: clients of the old CA are refused, the new CA's let in.
func TestGRPCClientCARotation(t *testing.T) {
	f := newTLSFixture(t)
	h := serve(t, testPolicy(t), func(c *Config) {
		c.GRPCTLSCert, c.GRPCTLSKey, c.GRPCClientCA = f.cert, f.key, f.caFile
	})
	addr := h.s.Addr().String()
	oldClient := f.ca.Client(t, "envoy-old").Pair(t)
	if err := decideOver(t, addr, tlsClient(f.ca, oldClient)); err != nil {
		t.Fatalf("before: %v", err)
	}
	clients := testpki.NewCA(t, "client CA 2")
	testpki.WriteFile(t, f.dir, "ca.pem", clients.PEM)
	wantRefused(t, "after: the old CA's client", decideOver(t, addr, tlsClient(f.ca, oldClient)))
	if err := decideOver(t, addr, tlsClient(f.ca, clients.Client(t, "envoy-new").Pair(t))); err != nil {
		t.Fatalf("after: the new CA's client: %v", err)
	}
}

// TestGRPCTLSBadFiles: serve does not start on TLS files that are missing,
// mismatched or not PEM, nor on flags that go together given alone; the
// error names the flag and the file.
func TestGRPCTLSBadFiles(t *testing.T) {
	f := newTLSFixture(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := testpki.WriteFile(t, dir, "garbage.pem", []byte("not pem\n"))
	_, otherKey := f.ca.Server(t, "other", "127.0.0.1").Write(t, t.TempDir())
	policyFile := testpki.WriteFile(t, dir, "policy.yaml", []byte(testPolicy(t)))
	for _, c := range []struct {
		name          string
		cert, key, ca string
		want          string
	}{
		{"missing cert", missing, f.key, "", "--grpc-tls-cert " + missing + ": no such file or directory"},
		{"missing key", f.cert, missing, "", "--grpc-tls-key " + missing + ": no such file or directory"},
		{"missing ca", f.cert, f.key, missing, "--grpc-client-ca " + missing + ": no such file or directory"},
		{"cert not pem", garbage, f.key, "", "--grpc-tls-cert " + garbage + ": no PEM CERTIFICATE block"},
		{"key not pem", f.cert, garbage, "", "--grpc-tls-key " + garbage + ": tls: failed to find any PEM data in key input"},
		{"key of another cert", f.cert, otherKey, "", "--grpc-tls-key " + otherKey + ": tls: private key does not match public key"},
		{"ca not pem", f.cert, f.key, garbage, "--grpc-client-ca " + garbage + ": no PEM CERTIFICATE block"},
		{"cert alone", f.cert, "", "", "--grpc-tls-cert needs --grpc-tls-key"},
		{"key alone", "", f.key, "", "--grpc-tls-key needs --grpc-tls-cert"},
		{"ca alone", "", "", f.caFile, "--grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key"},
	} {
		s, err := New(Config{PolicyFile: policyFile, GRPCAddr: "127.0.0.1:0", AdminAddr: "-", Store: "memory:",
			GRPCTLSCert: c.cert, GRPCTLSKey: c.key, GRPCClientCA: c.ca})
		if err == nil {
			s.lis.Close()
			s.store.Close()
			t.Errorf("%s: New succeeded, want an error holding %q", c.name, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %q, want it to hold %q", c.name, err, c.want)
		}
	}
}

// TestOpenToAll: which gRPC addresses the unauthenticated-port warning is
// for.
func TestOpenToAll(t *testing.T) {
	for addr, want := range map[string]bool{
		":9001": true, "0.0.0.0:9001": true, "[::]:9001": true, "10.0.0.5:9001": true, "tollgate:9001": true,
		"127.0.0.1:9001": false, "[::1]:9001": false, "localhost:9001": false, "unix:/run/tollgate.sock": false,
	} {
		if got := openToAll(addr); got != want {
			t.Errorf("openToAll(%q): got %v, want %v", addr, got, want)
		}
	}
}

// TestGRPCTLSHandshakeDoesNotWaitForFiles: while one handshake reads the
// certificate files (a mount that hangs), another is served at once with the
// configuration in place instead of queueing behind it.
func TestGRPCTLSHandshakeDoesNotWaitForFiles(t *testing.T) {
	f := newTLSFixture(t)
	h := serve(t, testPolicy(t), func(c *Config) { c.GRPCTLSCert, c.GRPCTLSKey = f.cert, f.key })
	addr := h.s.Addr().String()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	files := h.s.tls
	files.mu.Lock()
	read := files.readFile
	files.readFile = func(name string) ([]byte, error) {
		once.Do(func() {
			close(entered)
			<-release
		})
		return read(name)
	}
	files.mu.Unlock()
	first := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.ca.Pool(), ServerName: "tollgate", NextProtos: []string{"h2"}})
		if err == nil {
			c.Close()
		}
		first <- err
	}()
	<-entered // the first handshake is reading, and stays there
	if got := servedCN(t, addr, f.ca); got != "tollgate-1" {
		t.Errorf("a handshake while another reads the files: served %q, want tollgate-1", got)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("the handshake that read the files: %v", err)
	}
}
