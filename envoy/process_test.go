package envoy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// Release implements envoy.Releaser for the test engine: it gives the slot
// back to the store and counts.
func (e *engine) Release(d *policy.Decision) {
	if err := e.st.Release(d.Slot, d.Lease); err != nil {
		e.errs.Add(1)
	}
	e.released.Add(1)
}

// serveProc starts ProcessServer with e on a loopback listener and returns
// a client connected to it, both stopped at the end of the test.
func serveProc(t testing.TB, e *engine) extprocv3.ExternalProcessorClient {
	t.Helper()
	c, _ := serveProcServer(t, e)
	return c
}

// serveProcServer is serveProc that also returns the ProcessServer.
func serveProcServer(t testing.TB, e *engine) (extprocv3.ExternalProcessorClient, *envoy.ProcessServer) {
	t.Helper()
	ps := &envoy.ProcessServer{Decider: e, Releaser: e}
	conn := serveGRPC(t, func(srv *grpc.Server) { extprocv3.RegisterExternalProcessorServer(srv, ps) })
	return extprocv3.NewExternalProcessorClient(conn), ps
}

// procFromCheck is the ext_proc request_headers message Envoy would send for
// the request of req, and the gRPC metadata that carries its context
// extensions (grpc_initial_metadata): pseudo-headers for method, path and
// authority, header values in raw_value, the TCP peer as the source.address
// attribute (request_attributes: [source.address]).
func procFromCheck(req *authv3.CheckRequest) (*extprocv3.ProcessingRequest, metadata.MD) {
	h := req.GetAttributes().GetRequest().GetHttp()
	var hs []*corev3.HeaderValue
	if h != nil {
		for _, p := range [][2]string{{":method", h.GetMethod()}, {":path", h.GetPath()}, {":authority", h.GetHost()}} {
			if p[1] != "" {
				hs = append(hs, &corev3.HeaderValue{Key: p[0], RawValue: []byte(p[1])})
			}
		}
		names := make([]string, 0, len(h.GetHeaders()))
		for k := range h.GetHeaders() {
			if !strings.HasPrefix(k, ":") {
				names = append(names, k)
			}
		}
		slices.Sort(names)
		for _, k := range names {
			hs = append(hs, &corev3.HeaderValue{Key: k, RawValue: []byte(h.GetHeaders()[k])})
		}
	}
	msg := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: true}}}
	if sa := req.GetAttributes().GetSource().GetAddress().GetSocketAddress(); sa != nil {
		addr := net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
		msg.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
			envoy.AttributeSource: structpb.NewStringValue(addr)}}}
	}
	md := metadata.MD{}
	for k, v := range req.GetAttributes().GetContextExtensions() {
		md.Set(k, v)
	}
	return msg, md
}

// seen is what the client of a request sees, in a form both APIs give.
type seen struct {
	status   int
	body     string
	denial   []string // header: value
	upstream []string
	remove   []string
	response []string
}

func headerStrings[H interface{ GetHeader() *corev3.HeaderValue }](hs []H, raw bool) []string {
	var out []string
	for _, h := range hs {
		v := h.GetHeader().GetValue()
		if raw {
			if v != "" {
				return []string{"value set beside raw_value: " + h.GetHeader().GetKey()}
			}
			v = string(h.GetHeader().GetRawValue())
		}
		out = append(out, h.GetHeader().GetKey()+": "+v)
	}
	slices.Sort(out)
	return out
}

func checkSeen(resp *authv3.CheckResponse) seen {
	if resp.GetStatus().GetCode() == 0 {
		ok := resp.GetOkResponse()
		return seen{status: 200, upstream: headerStrings(ok.GetHeaders(), false), remove: sorted(ok.GetHeadersToRemove()),
			response: headerStrings(ok.GetResponseHeadersToAdd(), false)}
	}
	d := resp.GetDeniedResponse()
	return seen{status: int(d.GetStatus().GetCode()), body: d.GetBody(), denial: headerStrings(d.GetHeaders(), false)}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// stream is one ext_proc stream of a test.
type stream struct {
	t      *testing.T
	c      extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
}

func open(t *testing.T, client extprocv3.ExternalProcessorClient, md metadata.MD) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	c, err := client.Process(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return &stream{t: t, c: c, cancel: cancel}
}

func (s *stream) send(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	s.t.Helper()
	if err := s.c.Send(m); err != nil {
		s.t.Fatal(err)
	}
	resp, err := s.c.Recv()
	if err != nil {
		s.t.Fatal(err)
	}
	return resp
}

var responseHeaders = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
	ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":status", RawValue: []byte("200")}}}}}}

// procAnswer runs a whole request over a stream: the request headers and,
// when they are allowed, the response headers.
func procSeen(t *testing.T, client extprocv3.ExternalProcessorClient, msg *extprocv3.ProcessingRequest, md metadata.MD) seen {
	t.Helper()
	s := open(t, client, md)
	defer s.cancel()
	resp := s.send(msg)
	if err := resp.ValidateAll(); err != nil {
		t.Errorf("request headers: got an invalid answer: %v", err)
	}
	if im := resp.GetImmediateResponse(); im != nil {
		return seen{status: int(im.GetStatus().GetCode()), body: string(im.GetBody()), denial: headerStrings(im.GetHeaders().GetSetHeaders(), true)}
	}
	mut := resp.GetRequestHeaders().GetResponse().GetHeaderMutation()
	a := seen{status: 200, upstream: headerStrings(mut.GetSetHeaders(), true), remove: sorted(mut.GetRemoveHeaders())}
	resp = s.send(responseHeaders)
	if err := resp.ValidateAll(); err != nil {
		t.Errorf("response headers: got an invalid answer: %v", err)
	}
	a.response = headerStrings(resp.GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders(), true)
	return a
}

// TestProcessMatchesCheck: every golden request, sent as an ext_proc stream
// (the same warm-up first), gets the answer its golden CheckResponse gives:
// a denial's status, body and headers in an ImmediateResponse, an
// allowance's upstream headers as a request header mutation and its
// rate-limit headers as a response header mutation, all in raw_value.
func TestProcessMatchesCheck(t *testing.T) {
	for _, name := range goldenNames() {
		t.Run(name, func(t *testing.T) {
			c := goldenCases[name]
			e := newEngine(t, c.policy, c.edits...)
			client := serveProc(t, e)
			msg, md := procFromCheck(readCheckRequest(t, filepath.Join(goldenDir, name+".request.json")))
			var got seen
			for range c.warmup + 1 {
				got = procSeen(t, client, msg, md)
			}
			want := checkSeen(readCheckResponse(t, filepath.Join(goldenDir, name+".response.json")))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if n := e.errs.Load(); n != 0 {
				t.Errorf("got %d evaluation or release errors, want 0", n)
			}
		})
	}
}

// TestProcessStageFromMetadata: the stage comes from the stream's gRPC
// metadata, the request attributes or the metadata context's tollgate
// namespace; an unknown one is 403 route:unknown like over ext_authz.
func TestProcessStageFromMetadata(t *testing.T) {
	e := newEngine(t, tightPolicy)
	client := serveProc(t, e)
	base := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/orders", Host: "other.example.com", Headers: map[string]string{"x-api-key": "tg_test_beta_0000000000000001"}}}}}
	msg, _ := procFromCheck(base)
	// The beta key holds a plan for shop/beta only: 403 key:no-plan on
	// the default stage, 200 where the stage is named.
	if a := procSeen(t, client, msg, nil); a.status != 403 || !slices.Contains(a.denial, "x-tollgate-reason: key:no-plan") {
		t.Fatalf("default stage: got %+v, want 403 key:no-plan", a)
	}
	if a := procSeen(t, client, msg, metadata.Pairs("api", "shop", "stage", "beta")); a.status != 200 {
		t.Fatalf("gRPC metadata: got %+v, want 200", a)
	}
	withAttrs, _ := procFromCheck(base)
	withAttrs.Attributes["envoy.filters.http.ext_proc"].Fields["stage"] = structpb.NewStringValue("shop/beta")
	if a := procSeen(t, client, withAttrs, nil); a.status != 200 {
		t.Fatalf("attributes: got %+v, want 200", a)
	}
	withMeta, _ := procFromCheck(base)
	ns, _ := structpb.NewStruct(map[string]any{"api": "shop", "stage": "beta"})
	withMeta.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{envoy.MetadataNamespace: ns}}
	if a := procSeen(t, client, withMeta, nil); a.status != 200 {
		t.Fatalf("metadata context: got %+v, want 200", a)
	}
	if a := procSeen(t, client, msg, metadata.Pairs("stage", "shop/nope")); a.status != 403 || !slices.Contains(a.denial, "x-tollgate-reason: route:unknown") {
		t.Fatalf("unknown stage: got %+v, want 403 route:unknown", a)
	}
}

// capEngine is the tight policy with a cap of in-flight requests on GET
// /items/{id}, whose route, stage and account buckets are made large.
func capEngine(t testing.TB, cap string) *engine {
	return newEngine(t, tightPolicy, `          - match: "GET /items/{id}"
            throttle: {rate: 1, burst: 2}`, `          - match: "GET /items/{id}"
            throttle: {rate: 1000000, burst: 1000000}
            concurrency: `+cap,
		"throttle: {rate: 100, burst: 100}", "throttle: {rate: 1000000, burst: 1000000}",
		"throttle: {rate: 10000, burst: 5000}", "throttle: {rate: 1000000, burst: 1000000}")
}

var itemRequest, _ = procFromCheck(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
	Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}}}},
	Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/items/7", Host: "shop.example.com"}}}})

// slotsHeld returns the slots the engine's store holds on the item route.
func slotsHeld(t testing.TB, e *engine) int64 {
	t.Helper()
	d, err := e.p.Evaluate(t0, &policy.Request{Method: "GET", Path: "/items/7", Host: "shop.example.com", Peer: "198.51.100.7", Lease: "probe"}, memory.New(), nil)
	if err != nil || d.Slot.Limit == "" {
		t.Fatalf("probe: got %+v, %v, want a slot", d, err)
	}
	return e.st.(*memory.Store).Slots(d.Slot)
}

// TestProcessConcurrencyCap: with a cap of 2, two streams in flight hold the
// slots and a third gets 429 concurrency (Retry-After 1); when one gets its
// response headers, its slot is free and a new stream is admitted; when a
// stream ends without response headers, its slot is free too.
func TestProcessConcurrencyCap(t *testing.T) {
	e := capEngine(t, "2")
	client := serveProc(t, e)
	a, b := open(t, client, nil), open(t, client, nil)
	for i, s := range []*stream{a, b} {
		if resp := s.send(itemRequest); resp.GetImmediateResponse() != nil {
			t.Fatalf("stream %d: got %v, want allowed", i, resp)
		}
	}
	third := procSeen(t, client, itemRequest, nil)
	if third.status != 429 || !slices.Contains(third.denial, "x-tollgate-reason: concurrency") || !slices.Contains(third.denial, "retry-after: 1") {
		t.Fatalf("third: got %+v, want 429 concurrency, retry-after 1", third)
	}
	if n := slotsHeld(t, e); n != 2 {
		t.Fatalf("got %d slots held, want 2", n)
	}
	a.send(responseHeaders) // the upstream answered: a's slot is free
	if n := slotsHeld(t, e); n != 1 {
		t.Fatalf("after a's response headers: got %d slots held, want 1", n)
	}
	c := open(t, client, nil)
	if resp := c.send(itemRequest); resp.GetImmediateResponse() != nil {
		t.Fatalf("after a's response: got %v, want allowed", resp)
	}
	b.c.CloseSend() // b ends without response headers
	c.cancel()      // c is cancelled
	waitSlots(t, e, 0)
	a.c.CloseSend()
	if n := e.errs.Load(); n != 0 {
		t.Fatalf("got %d release errors, want 0", n)
	}
}

// waitSlots waits until the store holds want slots: streams end on the
// server a moment after the client lets go.
func waitSlots(t testing.TB, e *engine, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for slotsHeld(t, e) != want {
		if time.Now().After(deadline) {
			t.Fatalf("got %d slots held after 10s, want %d", slotsHeld(t, e), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProcessCancelledStreamsReleaseAll: 10,000 streams, 50 at a time, end
// at random points (before the request headers, right after sending them,
// after their seen, after the response headers, by CloseSend or by
// cancellation) and leave no slot held; each slot taken was released
// exactly once.
func TestProcessCancelledStreamsReleaseAll(t *testing.T) {
	e := capEngine(t, "20")
	client := serveProc(t, e)
	const streams, workers = 10000, 50
	var next atomic.Int64
	var denied atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for next.Add(1) <= streams {
				ctx, cancel := context.WithCancel(context.Background())
				c, err := client.Process(ctx)
				if err != nil {
					cancel()
					t.Error(err)
					return
				}
				point := rng.IntN(5)
				if point > 0 {
					c.Send(itemRequest)
				}
				if point > 1 {
					resp, err := c.Recv()
					if im := resp.GetImmediateResponse(); err == nil && im != nil {
						if im.GetStatus().GetCode() != 429 || !strings.Contains(im.GetDetails(), "concurrency") {
							t.Errorf("got %v, want only concurrency denials", im)
						}
						denied.Add(1)
						point = 1
					}
				}
				if point > 2 {
					c.Send(responseHeaders)
				}
				if point > 3 {
					c.Recv()
				}
				if rng.IntN(2) == 0 {
					c.CloseSend()
					c.Recv() // the server ends the stream
				}
				cancel()
			}
		})
	}
	wg.Wait()
	waitSlots(t, e, 0)
	if n := e.errs.Load(); n != 0 {
		t.Fatalf("got %d release errors (a slot released twice, or never taken), want 0", n)
	}
	t.Logf("%d streams, %d denied over the cap, %d slots released", streams, denied.Load(), e.released.Load())
	if denied.Load() == 0 || e.released.Load() < streams/4 {
		t.Errorf("got %d denials and %d releases, want both many", denied.Load(), e.released.Load())
	}
}

// TestProcessDrain: after Drain, a stream holding a slot releases it and
// ends cleanly (OK), so that Envoy goes on without ext_proc; new streams end
// at once too.
func TestProcessDrain(t *testing.T) {
	e := capEngine(t, "2")
	client, ps := serveProcServer(t, e)
	s := open(t, client, nil)
	if resp := s.send(itemRequest); resp.GetImmediateResponse() != nil {
		t.Fatalf("got %v, want allowed", resp)
	}
	ps.Drain()
	if _, err := s.c.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Drain: got %v, want the stream ended cleanly (EOF)", err)
	}
	waitSlots(t, e, 0)
}

// TestProcessObservabilityMode: in observability mode nothing is answered
// and no slot is taken.
func TestProcessObservabilityMode(t *testing.T) {
	e := capEngine(t, "1")
	client := serveProc(t, e)
	msg := proto.Clone(itemRequest).(*extprocv3.ProcessingRequest)
	msg.ObservabilityMode = true
	respMsg := proto.Clone(responseHeaders).(*extprocv3.ProcessingRequest)
	respMsg.ObservabilityMode = true // Envoy marks every message
	for range 3 {
		s := open(t, client, nil)
		if err := s.c.Send(msg); err != nil {
			t.Fatal(err)
		}
		if err := s.c.Send(respMsg); err != nil {
			t.Fatal(err)
		}
		s.c.CloseSend()
		if resp, err := s.c.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("got %v, %v, want no answer and the end of the stream", resp, err)
		}
	}
	if n := slotsHeld(t, e); n != 0 {
		t.Fatalf("got %d slots held, want 0", n)
	}
}
