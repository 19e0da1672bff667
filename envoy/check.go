package envoy

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate/tollgate/policy"
)

// Decider decides one request. The server implements it with the current
// policy snapshot, the state store and the clock. Decide must not keep r
// after it returns.
type Decider interface {
	Decide(ctx context.Context, r *policy.Request) policy.Decision
}

// AuthzServer answers Envoy's ext_authz Check calls. It is safe for
// concurrent use when its Decider is.
type AuthzServer struct {
	Decider Decider
}

var _ authv3.AuthorizationServer = (*AuthzServer)(nil)

// Check translates req, decides it and translates the decision back. It
// never returns an error: a request tollgate cannot read is a 400 decision.
// A denied gRPC request (content-type application/grpc*) is answered with
// grpc-status and the message as body, for the caller behind Envoy.
func (s *AuthzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	var r policy.Request
	RequestFromCheck(req, &r)
	d := s.Decider.Decide(ctx, &r)
	return checkResponse(&d, isGRPC(r.Headers["content-type"])), nil
}

// Context extension keys that name the stage (package policy's doc, "Stage and route").
const (
	ExtensionAPI   = "api"
	ExtensionStage = "stage"
)

// RequestFromCheck fills out from an ext_authz CheckRequest: method, path,
// host and headers from attributes.request.http, the TCP peer's IP from
// attributes.source.address, and the stage from the context extensions
// "api" and "stage". Missing pieces stay empty; the evaluator answers such
// requests with 400. The headers map is the request's own, not a copy, so
// out must not outlive req.
//
// When Envoy sends raw headers (encode_raw_headers: true), header_map
// replaces headers; only then is a map built, with lower-case names and
// repeated headers joined with ",".
func RequestFromCheck(req *authv3.CheckRequest, out *policy.Request) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	*out = policy.Request{
		Method:  h.GetMethod(),
		Path:    h.GetPath(),
		Host:    h.GetHost(),
		Headers: h.GetHeaders(),
		Peer:    attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
	if len(out.Headers) == 0 {
		if hm := h.GetHeaderMap(); len(hm.GetHeaders()) > 0 {
			out.Headers = headersFromMap(hm)
		}
	}
	if ext := attrs.GetContextExtensions(); len(ext) > 0 {
		out.API = ext[ExtensionAPI]
		out.Stage = ext[ExtensionStage]
	}
}

// headersFromMap turns a raw header list into the map form Envoy sends by
// default.
func headersFromMap(hm *corev3.HeaderMap) map[string]string {
	m := make(map[string]string, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		if hv == nil {
			continue
		}
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if old, ok := m[k]; ok {
			v = old + "," + v
		}
		m[k] = v
	}
	return m
}
