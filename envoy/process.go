package envoy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
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
			if !observe {
				r.Lease = leases()
			}
			d = s.Decider.Decide(ctx, &r)
			decided, held = true, d.Slot.Limit != ""
			if d.Verdict == policy.Deny {
				if observe {
					continue
				}
				return stream.Send(ImmediateResponse(&d))
			}
			resp = requestHeadersResponse(&d)
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			// Released before the reply: once Envoy has it, the next
			// request may come, and it must find the slot free.
			release()
			resp = responseHeadersResponse(&d, decided)
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
// message: method, path and host from the pseudo-headers, the headers (raw
// values, lower-case names, repeated ones joined with ","), the client
// address from the source.address attribute, and the stage from the
// stream's gRPC metadata, the attributes or the metadata context (package policy's doc, "Stage and route").
// Missing pieces stay empty; the evaluator answers such requests with 400.
func RequestFromProcess(ctx context.Context, req *extprocv3.ProcessingRequest, out *policy.Request) {
	h := headersFromMap(req.GetRequestHeaders().GetHeaders())
	*out = policy.Request{Method: h[":method"], Path: h[":path"], Host: h[":authority"], Headers: h}
	if out.Host == "" {
		out.Host = h["host"]
	}
	for _, attrs := range req.GetAttributes() {
		if v := stringField(attrs, AttributeSource); v != "" {
			out.Peer = v
		}
		if v := stringField(attrs, MetadataAPI); v != "" {
			out.API = v
		}
		if v := stringField(attrs, MetadataStage); v != "" {
			out.Stage = v
		}
	}
	if ns := req.GetMetadataContext().GetFilterMetadata()[MetadataNamespace]; ns != nil {
		if v := stringField(ns, MetadataAPI); v != "" {
			out.API = v
		}
		if v := stringField(ns, MetadataStage); v != "" {
			out.Stage = v
		}
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

// stringField returns the string field name of s, or "".
func stringField(s *structpb.Struct, name string) string {
	return strings.TrimSpace(s.GetFields()[name].GetStringValue())
}

// rawOptions turns hs into header options that overwrite (or add), with the
// value in raw_value only: Envoy answers 500 to a mutation that sets both.
func rawOptions(hs []header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i] = corev3.HeaderValue{Key: h.name, RawValue: []byte(h.value)}
		opts[i] = corev3.HeaderValueOption{Header: &vals[i], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		out[i] = &opts[i]
	}
	return out
}

// detailsReplacer makes a reason fit Envoy's response code details
// (%RESPONSE_CODE_DETAILS%: no spaces; tollgate_quota, tollgate_key_unknown).
var detailsReplacer = strings.NewReplacer(":", "_", "-", "_")

// ImmediateResponse translates a denial into the ext_proc answer that ends
// the request: the same status, body and headers as CheckResponse's
// denied_response.
func ImmediateResponse(d *policy.Decision) *extprocv3.ProcessingResponse {
	var arr [512]byte
	var hs headerList
	denialHeaders(&hs, arr[:0], d)
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(denialStatus(d))},
			Headers: &extprocv3.HeaderMutation{SetHeaders: rawOptions(hs.list())},
			Body:    []byte(d.Body),
			Details: "tollgate_" + detailsReplacer.Replace(string(d.Reason)),
		}}}
}

// requestHeadersResponse is the answer to an allowed request's headers: the
// upstream headers of CheckResponse's ok_response, as a header mutation.
func requestHeadersResponse(d *policy.Decision) *extprocv3.ProcessingResponse {
	var arr [512]byte
	var hs headerList
	var rm [4]string
	up, remove := allowHeaders(&hs, arr[:0], d, rm[:0])
	mut := &extprocv3.HeaderMutation{SetHeaders: rawOptions(hs.list()[:up])}
	if len(remove) > 0 {
		mut.RemoveHeaders = append([]string(nil), remove...)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}}}}
}

// responseHeadersResponse is the answer to the upstream response's headers:
// the decision's rate-limit headers added to the client's response (none
// when no request was decided on the stream).
func responseHeadersResponse(d *policy.Decision, decided bool) *extprocv3.ProcessingResponse {
	common := &extprocv3.CommonResponse{}
	if decided {
		var arr [512]byte
		var hs headerList
		var rm [4]string
		up, _ := allowHeaders(&hs, arr[:0], d, rm[:0])
		if rate := hs.list()[up:]; len(rate) > 0 {
			common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: rawOptions(rate)}
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: common}}}
}
