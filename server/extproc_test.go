package server

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/store/redis/redistest"
)

// transactionsHeaders is the request_headers message of a POST
// /transactions from 198.51.100.7, as Envoy's ext_proc filter sends it.
var transactionsHeaders = &extprocv3.ProcessingRequest{
	Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte("POST")}, {Key: ":path", RawValue: []byte("/transactions")},
			{Key: ":authority", RawValue: []byte("api.example.com")}}}}},
	Attributes: map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
		"source.address": structpb.NewStringValue("198.51.100.7:40000")}}},
}

// openStream starts an ext_proc stream to h and sends the request headers;
// it returns the stream and the HTTP status of the answer (200: allowed).
func (h *harness) openStream(t *testing.T) (extprocv3.ExternalProcessor_ProcessClient, int) {
	t.Helper()
	conn, err := grpc.NewClient(h.s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	st, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(transactionsHeaders); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if im := resp.GetImmediateResponse(); im != nil {
		return st, int(im.GetStatus().GetCode())
	}
	return st, 200
}

// TestConcurrencyCapAcrossReplicas: two servers on one Redis share POST
// /transactions' cap of 2 (ext_proc): two streams in flight on one replica
// leave none for the other; when one ends, the other replica admits the
// next. The slots-held gauge counts each replica's own.
func TestConcurrencyCapAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	onRedis := func(c *Config) { c.Store, c.StoreTimeout, c.Now = srv.URL(), time.Second, nil }
	text := testPolicy(t, "concurrency: 500", "concurrency: 2")
	a, b := serve(t, text, onRedis), serve(t, text, onRedis)
	s1, st1 := a.openStream(t)
	_, st2 := a.openStream(t)
	if st1 != 200 || st2 != 200 {
		t.Fatalf("step 1: got %d and %d, want two streams admitted on a", st1, st2)
	}
	if _, st := b.openStream(t); st != 429 {
		t.Fatalf("step 2: got %d on b, want 429: the cap is shared", st)
	}
	if got := a.metric("tollgate_concurrency_slots_held"); got != 2 {
		t.Fatalf("step 2: a holds %v slots, want 2", got)
	}
	s1.CloseSend() // the request ends on a: its slot is released
	waitFor(t, "a to release the slot", func() bool { return a.metric("tollgate_concurrency_slots_held") == 1 })
	if _, st := b.openStream(t); st != 200 {
		t.Fatalf("step 3: got %d on b, want 200 after a's release", st)
	}
	if got := b.metric(`tollgate_decisions_total{api="payments",outcome="deny",plan="",reason="concurrency",stage="prod"}`); got != 1 {
		t.Errorf("b's concurrency denials: got %v, want 1", got)
	}
}
