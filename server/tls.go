package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
)

// tlsFiles is the gRPC port's TLS material: a certificate and its key and,
// for mTLS, the CAs that client certificates must chain to. Every handshake
// reads the files (a few KB, from the page cache; a handshake costs far
// more) and, when their content changed, builds a new configuration from
// them, so that a rotated certificate serves new connections without a
// restart, however it was written (in place, renamed over, or Kubernetes'
// Secret symlink swap). Connections already open keep the certificate they
// were made with.
//
// It is safe for concurrent use. One handshake at a time reads the files;
// one that comes while another reads does not wait, it is served with the
// configuration in place, so that many handshakes at once, or files on a
// mount that hangs, hold up at most the one handshake that reads.
type tlsFiles struct {
	files [3]tlsFile
	log   *slog.Logger
	cfg   atomic.Pointer[tls.Config] // built from the last files that loaded
	// readFile reads a file: os.ReadFile, or a test's.
	readFile func(string) ([]byte, error)

	mu   sync.Mutex // held by the handshake that reads the files
	seen [3][]byte  // the files' content at the last load tried
}

// tlsFile is one file and the flag that names it.
type tlsFile struct{ flag, path string }

// The files, by index.
const (
	tlsCert = iota
	tlsKey
	tlsCA // path "" without mTLS
)

// newTLSFiles reads the certificate, the key and the client CA (when ca is
// not empty) and returns them ready to serve, or an error naming the file
// that is missing or bad. Without cert and key it returns nil: plaintext.
func newTLSFiles(cert, key, ca string, log *slog.Logger) (*tlsFiles, error) {
	switch {
	case cert == "" && key == "":
		if ca != "" {
			return nil, errors.New("--grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key: mTLS is TLS that also asks the client for a certificate")
		}
		return nil, nil
	case cert == "":
		return nil, errors.New("--grpc-tls-key needs --grpc-tls-cert")
	case key == "":
		return nil, errors.New("--grpc-tls-cert needs --grpc-tls-key")
	}
	f := &tlsFiles{log: log, readFile: os.ReadFile, files: [3]tlsFile{
		{"--grpc-tls-cert", cert}, {"--grpc-tls-key", key}, {"--grpc-client-ca", ca}}}
	data, err := f.read()
	if err != nil {
		return nil, err
	}
	cfg, err := f.build(data)
	if err != nil {
		return nil, err
	}
	f.cfg.Store(cfg)
	f.seen = data
	return f, nil
}

// credentials returns the gRPC server credentials: TLS 1.2 or later, with
// the configuration of the files as they are at each handshake.
func (f *tlsFiles) credentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.current(), nil
		},
	})
}

// mode returns "off", "tls" or "mtls", for the logs.
func (f *tlsFiles) mode() string {
	switch {
	case f == nil:
		return "off"
	case f.files[tlsCA].path != "":
		return "mtls"
	}
	return "tls"
}

// current returns the configuration to serve a handshake with: one built
// from the files when their content changed since the last load tried,
// else the last good one. A change that does not load (a certificate
// written before its key, a file half gone) is logged once and leaves the
// previous configuration serving until the files change again.
func (f *tlsFiles) current() *tls.Config {
	if !f.mu.TryLock() {
		return f.cfg.Load() // another handshake is reading the files
	}
	defer f.mu.Unlock()
	data, err := f.read()
	if f.unchanged(data) { // a missing file reads as nil, and stays logged once
		return f.cfg.Load()
	}
	f.seen = data
	var cfg *tls.Config
	if err == nil {
		cfg, err = f.build(data)
	}
	if err != nil {
		f.log.Error("grpc tls: the files changed but do not load; the previous certificate stays", "err", err)
		return f.cfg.Load()
	}
	f.cfg.Store(cfg)
	attrs := []any{"cert", f.files[tlsCert].path, "key", f.files[tlsKey].path, "client_ca", f.files[tlsCA].path}
	if leaf := cfg.Certificates[0].Leaf; leaf != nil {
		attrs = append(attrs, "not_after", leaf.NotAfter)
	}
	f.log.Info("grpc tls: certificate reloaded", attrs...)
	return cfg
}

// unchanged reports whether data is what the last load tried read.
func (f *tlsFiles) unchanged(data [3][]byte) bool {
	for i := range data {
		if !bytes.Equal(data[i], f.seen[i]) {
			return false
		}
	}
	return true
}

// read reads the files; what it could read is returned with the first
// error, which names the file.
func (f *tlsFiles) read() ([3][]byte, error) {
	var data [3][]byte
	var errs []error
	for i, file := range f.files {
		if file.path == "" {
			continue
		}
		b, err := f.readFile(file.path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			errs = append(errs, fmt.Errorf("%s %s: %w", file.flag, file.path, err))
		}
		data[i] = b
	}
	return data, errors.Join(errs...)
}

// build makes a server configuration of the files' content.
func (f *tlsFiles) build(data [3][]byte) (*tls.Config, error) {
	cert, key, ca := f.files[tlsCert], f.files[tlsKey], f.files[tlsCA]
	if !hasCertificate(data[tlsCert]) {
		return nil, fmt.Errorf("%s %s: no PEM CERTIFICATE block", cert.flag, cert.path)
	}
	pair, err := tls.X509KeyPair(data[tlsCert], data[tlsKey])
	if err != nil {
		return nil, fmt.Errorf("%s %s, %s %s: %w", cert.flag, cert.path, key.flag, key.path, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if ca.path != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data[tlsCA]) {
			return nil, fmt.Errorf("%s %s: no PEM CERTIFICATE block that parses", ca.flag, ca.path)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// hasCertificate reports whether data holds a PEM CERTIFICATE block.
func hasCertificate(data []byte) bool {
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" {
			return true
		}
	}
}

// openToAll reports whether a gRPC listen address takes connections from
// other hosts: a tcp address whose host is not a loopback address (":9001"
// and "0.0.0.0:9001" listen on every interface).
func openToAll(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
