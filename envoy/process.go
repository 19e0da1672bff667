package envoy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/policy"
)

// Releaser gives back the concurrency slot a decision took (Decision.Slot).
// The server implements it with its state store.
type Releaser interface {
	Release(d *policy.Decision)
}

// ProcessServer answers Envoy's ext_proc streams, one per HTTP request. It
// is safe for concurrent use when its Decider and Releaser are.
type ProcessServer struct {
	Decider  Decider
	Releaser Releaser

	drain                chan struct{} // closed by Drain
	drainOnce, drainInit sync.Once
}

var _ extprocv3.ExternalProcessorServer = (*ProcessServer)(nil)

// Keys that name the stage on an ext_proc stream (package policy's doc, "Stage and route"): gRPC metadata
// (the filter's grpc_initial_metadata, per route through ExtProcPerRoute)
// or fields of the request attributes or of the metadata context's
// "tollgate" namespace.
const (
	MetadataAPI       = ExtensionAPI
	MetadataStage     = ExtensionStage
	MetadataNamespace = "tollgate"
	// AttributeSource is the request attribute of the client's address
	// (request_attributes: [source.address]).
	AttributeSource = "source.address"
	// AttributeMethod, AttributePath and AttributeHost are the request
	// attributes a proxyless gRPC client (gRFC A93) sends in place of the
	// :method, :path and :authority pseudo-headers.
	AttributeMethod = "request.method"
	AttributePath   = "request.path"
	AttributeHost   = "request.host"
)

// leases makes the lease ids of the streams: a random prefix per process
// and a counter, unique across replicas sharing a store.
var leases = func() func() string {
	var raw [8]byte
	rand.Read(raw[:])
	prefix := hex.EncodeToString(raw[:]) + "-"
	var n atomic.Uint64
	return func() string { return prefix + strconv.FormatUint(n.Add(1), 36) }
}()

// Process serves one stream. The request_headers message is decided as
// Check decides a request, with a lease for the route's concurrency slot: a
// denial is an ImmediateResponse (the stream is then done), an allowance a
// header mutation of the upstream request. The response_headers message
// releases the slot and gets the rate-limit headers added to the client's
// response. The slot is released exactly once: on response_headers, or when
// the stream ends or is cancelled, whichever comes first. Body and trailer
// messages (body modes NONE, STREAMED or BUFFERED) are answered unchanged.
// In observability mode Envoy reads no answers: none are sent, and no slot
// is taken (a cap is not enforced on requests that are not held up). After
// Drain, a stream releases its slot and ends cleanly, so that Envoy goes on
// without ext_proc rather than failing the request.
func (s *ProcessServer) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := stream.Context()
	var d policy.Decision
	var c caller
	decided, held := false, false
	release := func() {
		if held {
			held = false
			s.Releaser.Release(&d)
		}
	}
	defer release()
	msgs := make(chan *extprocv3.ProcessingRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var req *extprocv3.ProcessingRequest
		select {
		case req = <-msgs:
		case err := <-errc:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
				return nil
			}
			return err
		case <-ctx.Done(): // cancelled: the reader may be gone without a word
			return nil
		case <-s.drained():
			return nil
		}
		observe := req.GetObservabilityMode()
		var resp *extprocv3.ProcessingResponse
		switch m := req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if decided {
				return status.Error(codes.FailedPrecondition, "ext_proc: a second request_headers message on one stream")
			}
			var r policy.Request
			RequestFromProcess(ctx, req, &r)
			c = callerOf(req, r.Headers)
			if !observe {
				r.Lease = leases()
			}
			d = s.Decider.Decide(ctx, &r)
			decided, held = true, d.Slot.Limit != ""
			if d.Verdict == policy.Deny {
				if observe {
					continue
				}
				return stream.Send(immediateResponse(&d, c))
			}
			resp = requestHeadersResponse(&d, c)
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			// Released before the reply: once Envoy has it, the next
			// request may come, and it must find the slot free.
			release()
			resp = responseHeadersResponse(&d, c, decided)
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
		default:
			return status.Errorf(codes.InvalidArgument, "ext_proc: unknown message %T", m)
		}
		if observe {
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// Drain makes every stream, now and from now on, release its slot and end
// cleanly; the server calls it when a stop runs out of grace, just before
// it closes the connections.
func (s *ProcessServer) Drain() {
	s.drainOnce.Do(func() { close(s.drainCh()) })
}

// drained returns the channel that Drain closes.
func (s *ProcessServer) drained() <-chan struct{} { return s.drainCh() }

func (s *ProcessServer) drainCh() chan struct{} {
	s.drainInit.Do(func() { s.drain = make(chan struct{}) })
	return s.drain
}

// RequestFromProcess fills out from an ext_proc stream's request_headers
// message: method, path and host from the pseudo-headers, else from the
// request.method, request.path and request.host attributes (a proxyless gRPC
// client sends no pseudo-headers); the headers (raw values, lower-case names,
// repeated ones joined with ","); the client address from the source.address
// attribute, else, for a proxyless client only, the address of the stream's
// own gRPC peer in ctx (the client itself; behind Envoy it would be Envoy's
// address, so a request from Envoy without source.address keeps no address
// and gets 400); and the stage from the stream's gRPC
// metadata, the attributes or the metadata context (package policy's doc,
// "Stage and route"). Missing pieces stay empty; the evaluator answers such
// requests with 400.
func RequestFromProcess(ctx context.Context, req *extprocv3.ProcessingRequest, out *policy.Request) {
	h := headersFromMap(req.GetRequestHeaders().GetHeaders())
	*out = policy.Request{Method: h[":method"], Path: h[":path"], Host: h[":authority"], Headers: h}
	if out.Host == "" {
		out.Host = h["host"]
	}
	for _, attrs := range req.GetAttributes() {
		setField(&out.Peer, attrs, AttributeSource)
		setField(&out.API, attrs, MetadataAPI)
		setField(&out.Stage, attrs, MetadataStage)
		fillField(&out.Method, attrs, AttributeMethod)
		fillField(&out.Path, attrs, AttributePath)
		fillField(&out.Host, attrs, AttributeHost)
	}
	if out.Peer == "" && proxyless(req, h) {
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			out.Peer = p.Addr.String()
		}
	}
	if ns := req.GetMetadataContext().GetFilterMetadata()[MetadataNamespace]; ns != nil {
		setField(&out.API, ns, MetadataAPI)
		setField(&out.Stage, ns, MetadataStage)
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(MetadataAPI); len(v) > 0 {
			out.API = v[0]
		}
		if v := md.Get(MetadataStage); len(v) > 0 {
			out.Stage = v[0]
		}
	}
}

// setField sets *dst to the string field name of s when s has one.
func setField(dst *string, s *structpb.Struct, name string) {
	if v := stringField(s, name); v != "" {
		*dst = v
	}
}

// fillField sets an empty *dst to the string field name of s.
func fillField(dst *string, s *structpb.Struct, name string) {
	if *dst == "" {
		*dst = stringField(s, name)
	}
}

// caller is the kind of client a stream's request came from, which decides
// the form of the answers.
type caller struct {
	// grpc: a gRPC request (content-type application/grpc*, or a
	// proxyless client); its denials carry grpc_status.
	grpc bool
	// proxyless: gRPC's own ext_proc client (gRFC A93), not Envoy; it reads
	// header values from value, Envoy from raw_value (headerOptions).
	proxyless bool
}

// callerOf tells from a request_headers message and its headers (as
// RequestFromProcess read them) who sent it.
func callerOf(req *extprocv3.ProcessingRequest, h map[string]string) caller {
	p := proxyless(req, h)
	return caller{proxyless: p, grpc: p || isGRPC(h["content-type"])}
}

// proxyless tells whether a request_headers message with headers h comes
// from a proxyless gRPC client: it carries a request.method, request.path or
// request.host attribute and neither :method nor :path, which Envoy always
// sends.
func proxyless(req *extprocv3.ProcessingRequest, h map[string]string) bool {
	if _, ok := h[":method"]; ok {
		return false
	}
	if _, ok := h[":path"]; ok {
		return false
	}
	for _, attrs := range req.GetAttributes() {
		f := attrs.GetFields()
		if f[AttributeMethod] != nil || f[AttributePath] != nil || f[AttributeHost] != nil {
			return true
		}
	}
	return false
}

// stringField returns the string field name of s, or "".
func stringField(s *structpb.Struct, name string) string {
	return strings.TrimSpace(s.GetFields()[name].GetStringValue())
}

// headerOptions turns hs into header options that overwrite (or add), each
// value in one field only: Envoy answers a mutation that sets both value and
// raw_value with an error (500), and no one field is read by both clients.
//
// Envoy reads raw_value only: applyHeaderMutations in
// source/extensions/filters/http/ext_proc/mutation_utils.cc (envoyproxy/envoy
// at 4519ef40, lines 161-175) rejects both set, then takes raw_value when the
// runtime guard envoy.reloadable_features.send_header_raw_value is on (a
// RUNTIME_GUARD, on by default) and value only when it is turned off.
// grpc-go's ext_proc client reads value: ApplyAdditions in
// internal/xds/httpfilter/extconfig.go (grpc-go v1.85.0, lines 142-145) takes
// header.GetValue(), and raw_value only for "-bin" keys. So a proxyless
// client (c.proxyless) gets value, Envoy raw_value; a value that is not valid
// UTF-8 cannot be a proto string and stays in raw_value.
func headerOptions(hs []header, c caller) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i].Key = h.name
		if c.proxyless && !strings.HasSuffix(h.name, "-bin") && utf8.ValidString(h.value) {
			vals[i].Value = h.value
		} else {
			vals[i].RawValue = []byte(h.value)
		}
		opts[i] = corev3.HeaderValueOption{Header: &vals[i], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		out[i] = &opts[i]
	}
	return out
}

// detailsReplacer makes a reason fit Envoy's response code details
// (%RESPONSE_CODE_DETAILS%: no spaces; tollgate_quota, tollgate_key_unknown).
var detailsReplacer = strings.NewReplacer(":", "_", "-", "_")

// ImmediateResponse translates a denial into the ext_proc answer that ends
// an HTTP request: the same status, body and headers as CheckResponse's
// denied_response, header values in raw_value.
func ImmediateResponse(d *policy.Decision) *extprocv3.ProcessingResponse {
	return immediateResponse(d, caller{})
}

// immediateResponse is ImmediateResponse for a request from c. A gRPC
// request's answer also carries grpc_status (403 PERMISSION_DENIED, 429
// RESOURCE_EXHAUSTED, 400 INVALID_ARGUMENT, 503 UNAVAILABLE) and, in
// details and as the body, the JSON body's message, which a gRPC client sees
// as the status message (without grpc_status, grpc-go's client makes it
// INTERNAL); an HTTP
// request's details name the reason for Envoy's %RESPONSE_CODE_DETAILS%.
func immediateResponse(d *policy.Decision, c caller) *extprocv3.ProcessingResponse {
	var arr [512]byte
	var hs headerList
	denialHeaders(&hs, arr[:0], d)
	st := denialStatus(d)
	im := &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(st)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: headerOptions(hs.list(), c)},
		Body:    []byte(d.Body),
		Details: "tollgate_" + detailsReplacer.Replace(string(d.Reason)),
	}
	if c.grpc {
		// Envoy makes the body the caller's grpc-message; grpc-go's
		// client takes details.
		im.GrpcStatus = &extprocv3.GrpcStatus{Status: uint32(grpcCode(st))}
		im.Details = denialMessage(d.Body, st)
		im.Body = []byte(im.Details)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: im}}
}

// denialMessage returns the message of a denial's JSON body
// ({"message":"Too Many Requests"}), else the status text.
func denialMessage(body string, status int) string {
	var m struct{ Message string }
	if json.Unmarshal([]byte(body), &m) == nil && m.Message != "" {
		return m.Message
	}
	return http.StatusText(status)
}

// requestHeadersResponse is the answer to an allowed request's headers: the
// upstream headers of CheckResponse's ok_response, as a header mutation.
func requestHeadersResponse(d *policy.Decision, c caller) *extprocv3.ProcessingResponse {
	var arr [512]byte
	var hs headerList
	var rm [maxRemove]string
	up, remove := allowHeaders(&hs, arr[:0], d, rm[:0])
	mut := &extprocv3.HeaderMutation{SetHeaders: headerOptions(hs.list()[:up], c)}
	if len(remove) > 0 {
		mut.RemoveHeaders = append([]string(nil), remove...)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}}}}
}

// responseHeadersResponse is the answer to the upstream response's headers:
// the decision's rate-limit headers added to the client's response (none
// when no request was decided on the stream).
func responseHeadersResponse(d *policy.Decision, c caller, decided bool) *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{}
	if decided {
		var arr [512]byte
		var hs headerList
		var rm [maxRemove]string
		up, _ := allowHeaders(&hs, arr[:0], d, rm[:0])
		if rate := hs.list()[up:]; len(rate) > 0 {
			common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: headerOptions(rate, c)}
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: common}}}
}
