package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/envoy"
)

// host is the Host (:authority) of every request the load sends.
const host = "load.example.com"

// sender sends one request of the mix the way its mode's client does and
// returns the answer's HTTP status. Each worker owns one; the senders of a
// run share its connections.
type sender interface {
	send(ctx context.Context, req request, ip string) (int, error)
}

// connect opens c.Conns connections to c.Target and returns a sender for
// each of c.Workers, and the function that closes the connections.
func connect(c *Config, pl *plan) ([]sender, func(), error) {
	senders := make([]sender, c.Workers)
	if c.Mode == HTTP {
		client, base := httpClient(c.Target, c.Conns)
		for w := range senders {
			senders[w] = &httpSender{client: client, url: base + envoy.HTTPPathPrefix, stage: pl.api + "/" + pl.stage, keyHeader: pl.keyHeader}
		}
		return senders, client.CloseIdleConnections, nil
	}
	conns := make([]*grpc.ClientConn, 0, c.Conns)
	closeAll := func() {
		for _, cc := range conns {
			cc.Close()
		}
	}
	for range c.Conns {
		cc, err := dial(c.Target)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("load: %s: %w", c.Target, err)
		}
		conns = append(conns, cc)
	}
	for w := range senders {
		cc := conns[w%len(conns)]
		switch c.Mode {
		case Process:
			senders[w] = &procSender{client: extprocv3.NewExternalProcessorClient(cc), md: metadata.Pairs("api", pl.api, "stage", pl.stage), keyHeader: pl.keyHeader}
		case RateLimit:
			senders[w] = newRateLimitSender(cc)
		default:
			senders[w] = newAuthzSender(cc, pl)
		}
	}
	return senders, closeAll, nil
}

// dial connects to a tcp or unix: target.
func dial(target string) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if path, ok := strings.CutPrefix(target, "unix:"); ok {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}))
		target = "passthrough:///unix"
	}
	return grpc.NewClient(target, opts...)
}

// authzSender sends ext_authz Checks. The CheckRequest is built once and
// only its varying fields are set per request, as the answer has been read
// by the time Check returns.
type authzSender struct {
	client    authv3.AuthorizationClient
	check     *authv3.CheckRequest
	headers   map[string]string
	keyHeader string
}

func newAuthzSender(cc *grpc.ClientConn, pl *plan) *authzSender {
	headers := map[string]string{"user-agent": "tollgate-load/1", "accept": "*/*"}
	return &authzSender{client: authv3.NewAuthorizationClient(cc), headers: headers, keyHeader: pl.keyHeader,
		check: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:            &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
			ContextExtensions: map[string]string{"api": pl.api, "stage": pl.stage},
			Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Host: host, Headers: headers}},
		}}}
}

func (s *authzSender) send(ctx context.Context, req request, ip string) (int, error) {
	http := s.check.Attributes.Request.Http
	http.Method, http.Path = req.method, req.path
	if req.key != "" {
		s.headers[s.keyHeader] = req.key
	} else {
		delete(s.headers, s.keyHeader)
	}
	s.check.Attributes.Source.Address.Address = &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}
	resp, err := s.client.Check(ctx, s.check)
	if err != nil {
		return 0, err
	}
	if resp.GetStatus().GetCode() != 0 {
		return int(resp.GetDeniedResponse().GetStatus().GetCode()), nil
	}
	return 200, nil
}

// procSender runs one ext_proc stream per request.
type procSender struct {
	client    extprocv3.ExternalProcessorClient
	md        metadata.MD
	keyHeader string
}

// send runs one request as Envoy's ext_proc filter does: request headers,
// and when they are allowed, response headers; then the stream ends.
func (s *procSender) send(ctx context.Context, req request, ip string) (int, error) {
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, s.md))
	defer cancel()
	st, err := s.client.Process(ctx)
	if err != nil {
		return 0, err
	}
	hs := []*corev3.HeaderValue{{Key: ":method", RawValue: []byte(req.method)}, {Key: ":path", RawValue: []byte(req.path)},
		{Key: ":authority", RawValue: []byte(host)}}
	if req.key != "" {
		hs = append(hs, &corev3.HeaderValue{Key: s.keyHeader, RawValue: []byte(req.key)})
	}
	msg := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}},
		Attributes: map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
			"source.address": structpb.NewStringValue(net.JoinHostPort(ip, "40000"))}}},
	}
	if err := st.Send(msg); err != nil {
		return 0, err
	}
	resp, err := st.Recv()
	if err != nil {
		return 0, err
	}
	status := 200
	if im := resp.GetImmediateResponse(); im != nil {
		status = int(im.GetStatus().GetCode())
	} else {
		if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{}}}); err != nil {
			return 0, err
		}
		if _, err := st.Recv(); err != nil {
			return 0, err
		}
	}
	st.CloseSend()
	if _, err := st.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return status, nil // the server ended the stream after its answer
	}
	return status, nil
}

// httpClient returns the client of the HTTP mode and the base URL of
// target (host:port or unix:/path): HTTP/1.1 with keep-alive over at most
// conns connections, which the workers share as a proxy's connection pool
// is shared: a request waits for a free connection. Redirects are answers,
// not followed.
func httpClient(target string, conns int) (*http.Client, string) {
	dialer := &net.Dialer{}
	dialContext := dialer.DialContext
	base := "http://" + target
	if path, ok := strings.CutPrefix(target, "unix:"); ok {
		dialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dialer.DialContext(ctx, "unix", path) }
		base = "http://unix"
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	tr := &http.Transport{DialContext: dialContext, Protocols: &protocols, MaxConnsPerHost: conns,
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}, base
}

// httpSender sends the Envoy form of the HTTP authorization API (package
// envoy, HTTPServer): the original method, path behind /ext_authz, Host and
// headers, the client's address in X-Forwarded-For and the stage in
// X-Tollgate-Stage, as Envoy's http_service sends them.
type httpSender struct {
	client    *http.Client
	url       string // base URL and the Envoy form's prefix
	stage     string // api/stage
	keyHeader string
}

func (s *httpSender) send(ctx context.Context, req request, ip string) (int, error) {
	r, err := http.NewRequestWithContext(ctx, req.method, s.url+req.path, nil)
	if err != nil {
		return 0, err
	}
	r.Host = host
	h := r.Header
	h.Set("User-Agent", "tollgate-load/1")
	h.Set("Accept", "*/*")
	h.Set("X-Forwarded-For", ip)
	h.Set(envoy.HeaderStage, s.stage)
	if req.key != "" {
		h.Set(s.keyHeader, req.key)
	}
	resp, err := s.client.Do(r)
	if err != nil {
		return 0, err
	}
	// Read to the end, so that the connection is kept and reused.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}
