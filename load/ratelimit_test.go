package load

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
)

// rlFile is envoyproxy/ratelimit's configuration format as its README
// gives it (the fields this package writes), decoded strictly: a field
// ratelimit does not know, or a misspelt one, fails the decode.
type rlFile struct {
	Domain      string `yaml:"domain"`
	Descriptors []struct {
		Key       string `yaml:"key"`
		Value     string `yaml:"value"`
		RateLimit *struct {
			Unit            string `yaml:"unit"`
			RequestsPerUnit uint32 `yaml:"requests_per_unit"`
		} `yaml:"rate_limit"`
	} `yaml:"descriptors"`
}

// decodeRateLimitConfig decodes a configuration strictly and returns its
// domain and its descriptors' limits ("1000/second"; "" for none) by key
// and value, failing on a descriptor listed twice.
func decodeRateLimitConfig(t *testing.T, data []byte) (string, map[[2]string]string) {
	t.Helper()
	var f rlFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	got := map[[2]string]string{}
	for _, d := range f.Descriptors {
		k := [2]string{d.Key, d.Value}
		if _, dup := got[k]; dup {
			t.Errorf("descriptor %s=%s twice", d.Key, d.Value)
		}
		got[k] = ""
		if d.RateLimit != nil {
			got[k] = fmt.Sprintf("%d/%s", d.RateLimit.RequestsPerUnit, d.RateLimit.Unit)
		}
	}
	return f.Domain, got
}

// TestRateLimitConfigExample: the payments example with 1,000 keys on the
// enterprise plan gives ratelimit one descriptor per key id at the plan's
// 1,000 a second, and one per route bucket of payments/prod at the route's
// rate (the keyed route's from route_defaults), nothing else.
func TestRateLimitConfigExample(t *testing.T) {
	p, err := policyfile.Load("../examples/payments/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := RateLimitConfig(p, 1000, "enterprise")
	if err != nil {
		t.Fatal(err)
	}
	domain, got := decodeRateLimitConfig(t, data)
	if domain != RateLimitDomain {
		t.Errorf("domain: got %q, want %q", domain, RateLimitDomain)
	}
	want := map[[2]string]string{
		{DescriptorRoute, "POST /transactions"}:               "2000/second",
		{DescriptorRoute, "POST /partners/{id}/transactions"}: "1000/second",
		{DescriptorRoute, "GET /status"}:                      "500/second",
	}
	for i := range 1000 {
		want[[2]string{DescriptorKey, KeyID(i)}] = "1000/second"
	}
	if len(got) != len(want) {
		t.Errorf("got %d descriptors, want %d", len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s=%s: got %q (present %v), want %q", k[0], k[1], g, ok, w)
		}
	}
	// The free plan's 10 a second.
	data, err = RateLimitConfig(p, 3, "free")
	if err != nil {
		t.Fatal(err)
	}
	if _, got := decodeRateLimitConfig(t, data); got[[2]string{DescriptorKey, KeyID(2)}] != "10/second" || len(got) != 6 {
		t.Errorf("free: got %v, want 3 keys at 10/second and 3 routes", got)
	}
	if _, err := RateLimitConfig(p, 3, "platinum"); err == nil || !strings.Contains(err.Error(), `"platinum"`) {
		t.Errorf("unknown plan: got %v, want an error naming it", err)
	}
}

// TestFixedWindow: each rate keeps its requests per second in the shortest
// unit that holds a whole request.
func TestFixedWindow(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want string
	}{
		{1000, "1000/second"}, {1, "1/second"}, {2.5, "2/second"}, {0.5, "30/minute"},
		{1.0 / 60, "1/minute"}, {0.001, "3/hour"}, {1.0 / 86400, "1/day"}, {1e-9, "1/day"},
	} {
		l := fixedWindow(policy.NewThrottle(c.rate, 1))
		if got := fmt.Sprintf("%d/%s", l.RequestsPerUnit, l.Unit); got != c.want {
			t.Errorf("rate %g: got %s, want %s", c.rate, got, c.want)
		}
	}
}

// rls is a RateLimitService that answers from a ratelimit configuration
// file: OK for a descriptor it lists, OVER_LIMIT for one it does not (so
// that the test sees which requests named a configured limit), and keeps
// every descriptor asked for.
type rls struct {
	rlsv3.UnimplementedRateLimitServiceServer
	known map[[2]string]string
	mu    sync.Mutex
	asked [][2]string
}

func (s *rls) ShouldRateLimit(_ context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	code := rlsv3.RateLimitResponse_OK
	if r.Domain != RateLimitDomain || len(r.Descriptors) != 1 || len(r.Descriptors[0].Entries) != 1 {
		code = rlsv3.RateLimitResponse_UNKNOWN
	} else {
		e := r.Descriptors[0].Entries[0]
		k := [2]string{e.Key, e.Value}
		if _, ok := s.known[k]; !ok {
			code = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		s.mu.Lock()
		s.asked = append(s.asked, k)
		s.mu.Unlock()
	}
	return &rlsv3.RateLimitResponse{OverallCode: code}, nil
}

// TestRunRateLimit sends each kind of request alone in the ratelimit mode
// over real gRPC to a RateLimitService that knows the descriptors of
// RateLimitConfig: keyed requests and anonymous and blocked ones (their
// route) name a configured descriptor, and an invalid key's names none;
// the answers map to 200 and 429, and no descriptor carries a key's value.
func TestRunRateLimit(t *testing.T) {
	p, err := policyfile.Load("../examples/payments/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := RateLimitConfig(p, 50, "enterprise")
	if err != nil {
		t.Fatal(err)
	}
	_, known := decodeRateLimitConfig(t, data)
	svc := &rls{known: known}
	srv := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(srv, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	for _, k := range []struct {
		mix              string
		descriptor       string
		allowed, tooMany int64
	}{
		{"anonymous=1", DescriptorRoute, 200, 0},
		{"keyed=1", DescriptorKey, 200, 0},
		{"blocked=1", DescriptorRoute, 200, 0},
		{"invalid=1", DescriptorKey, 0, 200},
	} {
		svc.asked = nil
		mix, err := ParseMix(k.mix)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Run(t.Context(), Config{Target: lis.Addr().String(), Mode: RateLimit, Workers: 4, Conns: 2, Requests: 200,
			Policy: p, Keys: 50, Mix: mix, Seed: 1})
		if err != nil {
			t.Fatalf("%s: %v", k.mix, err)
		}
		if r.Requests != 200 || r.Allowed != k.allowed || r.TooMany != k.tooMany || r.Errors != 0 || r.Other != 0 {
			t.Errorf("%s: got %d requests, 200: %d, 429: %d, other %v, errors %d (%s); want 200, %d, %d, none, 0",
				k.mix, r.Requests, r.Allowed, r.TooMany, r.OtherStatuses, r.Errors, r.FirstError, k.allowed, k.tooMany)
		}
		for _, a := range svc.asked {
			if a[0] != k.descriptor || strings.HasPrefix(a[1], "tg_load_") {
				t.Errorf("%s: asked for %s=%s, want a %s descriptor without a key value", k.mix, a[0], a[1], k.descriptor)
				break
			}
		}
	}
}
