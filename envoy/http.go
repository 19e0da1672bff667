package envoy

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/policy"
)

// The paths of the HTTP authorization server (package doc, "HTTP
// authorization").
const (
	// HTTPPathPrefix is Envoy's http_service.path_prefix: the auth request
	// is the original one with its path behind this prefix.
	HTTPPathPrefix = "/ext_authz"
	// ForwardAuthPath takes the forward form: the original request in
	// X-Forwarded-* (Caddy, Traefik) or X-Original-* (nginx) headers.
	ForwardAuthPath = "/forward_auth"
)

// Headers of the HTTP authorization server.
const (
	// HeaderStage names the stage, "api/stage", as the proxy sets it per
	// location (the context extensions of the HTTP form).
	HeaderStage = "x-tollgate-stage"
	// HeaderHeadersToRemove lists, comma separated, the request headers
	// Envoy's http_service removes before the request goes upstream: the
	// HTTP form of ok_response.headers_to_remove.
	HeaderHeadersToRemove = "x-envoy-auth-headers-to-remove"
)

// HTTPServer answers authorization subrequests over plain HTTP: Envoy's
// ext_authz http_service and the auth subrequests of nginx, Caddy and
// Traefik. The answers are CheckResponse's, in HTTP: the same decision,
// status, body and headers. It is safe for concurrent use when its Decider
// is.
type HTTPServer struct {
	Decider Decider
}

var _ http.Handler = (*HTTPServer)(nil)

// ServeHTTP decides the request r stands for and writes the answer. A path
// that is neither form is 404, not a decision.
func (s *HTTPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req policy.Request
	if !RequestFromHTTP(r, &req) {
		w.Header().Set("Content-Type", contentTypeJSON)
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"Not Found"}` + "\n"))
		return
	}
	d := s.Decider.Decide(r.Context(), &req)
	WriteDecision(w, &d, isGRPC(req.Headers["content-type"]))
}

// RequestFromHTTP fills out from an authorization subrequest and reports
// whether r is one. The Envoy form (ANY /ext_authz/<path>) is the original
// request behind a prefix; the forward form (ANY /forward_auth) carries the
// original method and URI in X-Forwarded-Method and X-Forwarded-Uri (Caddy,
// Traefik) or, when there is no X-Forwarded-Uri, X-Original-Method and
// X-Original-URI (nginx): one pair, never a mix (a proxy of the second
// convention must clear the first, or a client could name the request to
// check), and the host in X-Forwarded-Host, else Host. Either way the
// headers are the original request's, and:
//   - the client address is the right-most X-Forwarded-For entry (the one
//     the proxy appended), else X-Real-IP, else the TCP peer; the policy's
//     clients.ip then reads it as Envoy's source address;
//   - X-Tollgate-Stage: api/stage names the stage.
//
// The form is told from the path as sent, before any decoding, which is
// also what the Envoy form's path is cut from. Missing pieces stay empty,
// and the evaluator answers such requests with 400.
func RequestFromHTTP(r *http.Request, out *policy.Request) bool {
	// The target as the client sent it, escapes and query included
	// (Envoy's attributes.request.http.path), not Go's decoding of it.
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI() // absolute form
	}
	path, _, _ := strings.Cut(uri, "?")
	*out = policy.Request{Headers: headerMap(r.Header)}
	h := out.Headers
	switch {
	case path == ForwardAuthPath:
		if u := h["x-forwarded-uri"]; u != "" {
			out.Method, out.Path = h["x-forwarded-method"], u
		} else {
			out.Method, out.Path = h["x-original-method"], h["x-original-uri"]
		}
		out.Host = first(h["x-forwarded-host"], r.Host)
	case strings.HasPrefix(path, HTTPPathPrefix+"/"):
		out.Method, out.Host, out.Path = r.Method, r.Host, uri[len(HTTPPathPrefix):]
	default:
		return false
	}
	out.Peer = clientAddr(h, r.RemoteAddr)
	out.Stage = h[HeaderStage]
	return true
}

// clientAddr returns the address of the client the proxy served: the last
// X-Forwarded-For entry, which the proxy itself appended (those before it
// are the client's say), else X-Real-IP, else the proxy's own address.
func clientAddr(h map[string]string, remote string) string {
	if xff := h["x-forwarded-for"]; xff != "" {
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			xff = xff[i+1:]
		}
		if v := strings.TrimSpace(xff); v != "" {
			return v
		}
	}
	if v := strings.TrimSpace(h["x-real-ip"]); v != "" {
		return v
	}
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// first returns the first of a and b that is not empty.
func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// headerMap returns hs in the form Envoy sends: lower-case names, the
// values of a repeated header joined with ",".
func headerMap(hs http.Header) map[string]string {
	m := make(map[string]string, len(hs))
	for k, vs := range hs {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if len(vs) > 1 {
			v = strings.Join(vs, ",")
		}
		m[strings.ToLower(k)] = v
	}
	return m
}

// WriteDecision writes d as the answer to an authorization subrequest: the
// CheckResponse of d in HTTP. Allowed: 200 with an empty body, the upstream
// headers (x-tollgate-customer, x-tollgate-key-id, x-tollgate-plan when a
// key was used, x-tollgate-shadow when a shadow limit would have denied),
// the rate-limit headers, and the headers to remove in
// x-envoy-auth-headers-to-remove. Denied: the decision's status, content
// type, reason, Retry-After and rate-limit headers, and its JSON body; for
// a gRPC request (grpc), grpc-status and the message alone as body, as
// CheckResponse answers it.
func WriteDecision(w http.ResponseWriter, d *policy.Decision, grpc bool) {
	var arr [512]byte
	var hs headerList
	out := w.Header()
	if d.Verdict == policy.Allow {
		var rm [maxRemove]string
		_, remove := allowHeaders(&hs, arr[:0], d, rm[:0])
		setHeaders(out, hs.list())
		if len(remove) > 0 {
			out.Set(HeaderHeadersToRemove, strings.Join(remove, ","))
		}
		out.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	body := denialAnswer(&hs, d, grpc)
	denialHeaders(&hs, arr[:0], d)
	setHeaders(out, hs.list())
	out.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(denialStatus(d))
	_, _ = w.Write([]byte(body))
}

// setHeaders sets each of hs on out, overwriting one of the same name.
func setHeaders(out http.Header, hs []header) {
	for _, h := range hs {
		if key, ok := canonicalNames[h.name]; ok {
			out[key] = []string{h.value}
		} else {
			out.Set(h.name, h.value)
		}
	}
}

// canonicalNames holds the canonical form of every header name an answer
// has: http.Header.Set makes a new string of each lower-case name, on
// every answer.
var canonicalNames = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{HeaderCustomer, HeaderKeyID, HeaderPlan, HeaderShadow, HeaderContentType, HeaderReason, HeaderRetryAfter,
		HeaderGRPCStatus, HeaderRateLimitPolicy, HeaderRateLimit, HeaderXRateLimitLimit, HeaderXRateLimitRemaining, HeaderXRateLimitReset} {
		m[name] = http.CanonicalHeaderKey(name)
	}
	return m
}()
