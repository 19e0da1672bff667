package proxyless_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/internal/testlog"
	"github.com/tollgate/tollgate/internal/testserve"
	"github.com/tollgate/tollgate/server"
)

// paymentsPolicy is the payments example's policy, served unchanged.
const paymentsPolicy = "../payments/policy.yaml"

// t0 is the instant the tests' clock stands still at: the free plan's
// bucket (10/s, burst 20) refills 10 tokens a second, so 21 calls with a
// moving clock would count on the machine's speed; a clock that does not
// move makes the 21st the first denied one, however slow the calls are.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// tollgate is a tollgate serving in this process.
type tollgate struct {
	addr string // its gRPC address, host:port
	logs *testlog.Buffer
}

// denial is one "denied" debug line of tollgate's log.
type denial struct {
	Status int    `json:"status"`
	Reason string `json:"reason"`
	IP     string `json:"ip"`
	Route  string `json:"route"`
}

// denials returns the denials tollgate logged, in order.
func (g *tollgate) denials(t *testing.T) []denial {
	t.Helper()
	var out []denial
	sc := bufio.NewScanner(strings.NewReader(g.logs.String()))
	for sc.Scan() {
		var rec struct {
			Msg string `json:"msg"`
			denial
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("tollgate log line %q: %v", sc.Text(), err)
		}
		if rec.Msg == "denied" {
			out = append(out, rec.denial)
		}
	}
	return out
}

// startTollgate serves the policy file with the defaults of `tollgate
// serve` but for these: gRPC on a free loopback port, no admin API, a
// memory store, the clock now and the log at debug level (where denials
// are written). It stops when the test ends.
func startTollgate(t *testing.T, policyFile string, now func() time.Time) *tollgate {
	t.Helper()
	s := testserve.Start(t, server.Config{PolicyFile: policyFile, GRPCAddr: "127.0.0.1:0", AdminAddr: "-", Store: "memory:", Now: now})
	return &tollgate{addr: s.Addr().String(), logs: s.Logs}
}

// newClock returns the tests' clock, standing at t0.
func newClock() *testclock.Clock { return testclock.New(t0) }

// editedPolicy writes a copy of the payments policy with old replaced by
// new (exactly one occurrence) and returns its path.
func editedPolicy(t *testing.T, old, new string) string {
	t.Helper()
	data, err := os.ReadFile(paymentsPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), old); n != 1 {
		t.Fatalf("%s holds %q %d times, want once", paymentsPolicy, old, n)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startBackend serves a gRPC service that answers every method (a
// partner's transactions are /partners/{id}/transactions, a path no
// generated stub has) with what it received: the method and the request
// metadata, one list of values per key, as a google.protobuf.Struct. It
// stops when the test ends.
func startBackend(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnknownServiceHandler(echoMetadata))
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-errc; err != nil {
			t.Errorf("backend serve: got %v, want nil", err)
		}
	})
	return lis.Addr().String()
}

// echoMetadata answers a call with its method and request metadata.
func echoMetadata(_ any, stream grpc.ServerStream) error {
	var in structpb.Struct
	if err := stream.RecvMsg(&in); err != nil && err != io.EOF {
		return err
	}
	method, _ := grpc.MethodFromServerStream(stream)
	md, _ := metadata.FromIncomingContext(stream.Context())
	fields := map[string]any{"method": method}
	for k, vs := range md {
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		fields[k] = list
	}
	out, err := structpb.NewStruct(fields)
	if err != nil {
		return err
	}
	return stream.SendMsg(out)
}

// readmeBlock returns the fenced block of README.md with the info string
// lang whose first line is first, without that line; with first empty, the
// only block of that info string, whole.
func readmeBlock(t *testing.T, lang, first string) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```" + regexp.QuoteMeta(lang) + "\n(.*?)```")
	var found []string
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		switch line, rest, _ := strings.Cut(m[1], "\n"); {
		case first == "":
			found = append(found, m[1])
		case line == first:
			found = append(found, rest)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md: %d ```%s blocks start with %q, want 1", len(found), lang, first)
	}
	return found[0]
}
