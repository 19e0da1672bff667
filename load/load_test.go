package load

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/tollgate/tollgate/envoy"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/file"
	"github.com/tollgate/tollgate/store/memory"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("anonymous=1,keyed=2,blocked=3,invalid=4")
	if err != nil || m != (Mix{1, 2, 3, 4}) {
		t.Fatalf("got %+v, %v", m, err)
	}
	for _, bad := range []string{"keyed", "keyed=-1", "cats=1", "keyed=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
}

// TestPlanOfExample: the payments example gives its anonymous and keyed
// routes with their parameters filled, its blocklist's networks, and picks
// follow the weights.
func TestPlanOfExample(t *testing.T) {
	p, err := policyfile.Load("../examples/payments/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := planOf(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.keyed) != 1 || pl.keyed[0].path != "/partners/p-17/transactions" || len(pl.anonymous) != 2 || len(pl.blocked) != 2 {
		t.Fatalf("got keyed %v anonymous %v blocked %v", pl.keyed, pl.anonymous, pl.blocked)
	}
	if pl.api != "payments" || pl.stage != "prod" || pl.keyHeader != "x-api-key" {
		t.Fatalf("got %s/%s, key header %s", pl.api, pl.stage, pl.keyHeader)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	for range 10000 {
		r, ip := pl.pick(rng, 100, [4]int{25, 25, 25, 25}, 100)
		switch {
		case strings.HasPrefix(r.key, "tg_load_invalid_"):
			counts["invalid"]++
		case r.key != "":
			counts["keyed"]++
		case strings.HasPrefix(ip, "203.0.113.") || strings.HasPrefix(ip, "2001:db8:bad:"):
			counts["blocked"]++
		default:
			counts["anonymous"]++
		}
	}
	for kind, n := range counts {
		if n < 2200 || n > 2800 {
			t.Errorf("%s: got %d of 10000, want about 2500", kind, n)
		}
	}
	if len(counts) != 4 {
		t.Errorf("got kinds %v, want all four", counts)
	}
}

// decider is the server's decision path without the process around it: the
// compiled policy over a real store, at the current time.
type decider struct {
	p  *policy.Policy
	st interface {
		policy.State
		policy.Keys
	}
	errs atomic.Int64
}

func (d *decider) Decide(_ context.Context, r *policy.Request) policy.Decision {
	dec, err := d.p.Evaluate(time.Now(), r, d.st, d.st)
	if err != nil {
		d.errs.Add(1)
	}
	return dec
}

func (d *decider) Release(dec *policy.Decision) {
	if dec.Slot.Limit != "" {
		if err := d.st.Release(dec.Slot, dec.Lease); err != nil {
			d.errs.Add(1)
		}
	}
}

// blockingPolicy is the payments example without its GET /status route's
// "waf: skip", so that the WAF refuses every request of a blocked address.
func blockingPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	const path = "../examples/payments/policy.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	skip := []byte("waf: skip")
	if bytes.Count(data, skip) != 1 {
		t.Fatalf("%s: want one %q", path, skip)
	}
	p, err := policyfile.Parse(path, bytes.Replace(data, skip, nil, 1))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunModes sends each kind of request alone, in each mode, to the real
// handlers of package envoy on loopback (ext_authz and ext_proc over gRPC,
// the HTTP authorization server) deciding the payments example over a file
// store that Prepare seeded: every request is answered as its kind must
// be, so each mode carries the key, the client address and the route the
// way the server reads them. The limits are far above the 200 requests of a
// kind, so no answer depends on timing.
func TestRunModes(t *testing.T) {
	p := blockingPolicy(t)
	st, err := file.Open(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := Prepare(st, 50, "enterprise", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	d := &decider{p: p, st: st}

	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, &envoy.AuthzServer{Decider: d})
	extprocv3.RegisterExternalProcessorServer(srv, &envoy.ProcessServer{Decider: d, Releaser: d})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	httpSrv := httptest.NewServer(&envoy.HTTPServer{Decider: d})
	t.Cleanup(httpSrv.Close)

	targets := map[Mode]string{Authz: lis.Addr().String(), Process: lis.Addr().String(), HTTP: httpSrv.Listener.Addr().String()}
	kinds := []struct {
		mix                string
		allowed, forbidden int64
	}{
		{"anonymous=1", 200, 0},
		{"keyed=1", 200, 0},
		{"blocked=1", 0, 200},
		{"invalid=1", 0, 200},
	}
	for _, mode := range []Mode{Authz, Process, HTTP} {
		for _, k := range kinds {
			mix, err := ParseMix(k.mix)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(t.Context(), Config{Target: targets[mode], Mode: mode, Workers: 4, Conns: 2, Requests: 200,
				Policy: p, Keys: 50, Mix: mix, Seed: 1})
			if err != nil {
				t.Fatalf("%s %s: %v", mode, k.mix, err)
			}
			if r.Requests != 200 || r.Allowed != k.allowed || r.Forbidden != k.forbidden || r.Errors != 0 {
				t.Errorf("%s %s: got %d requests, 200: %d, 403: %d, 429: %d, other %v, errors %d (%s); want 200, %d, %d, 0, none, 0",
					mode, k.mix, r.Requests, r.Allowed, r.Forbidden, r.TooMany, r.OtherStatuses, r.Errors, r.FirstError, k.allowed, k.forbidden)
			}
		}
	}
	if n := d.errs.Load(); n > 0 {
		t.Errorf("got %d store errors", n)
	}
}

// TestRunHTTPOverUnixSocket: a unix: target reaches an HTTP authorization
// server on a socket.
func TestRunHTTPOverUnixSocket(t *testing.T) {
	p := blockingPolicy(t)
	sock := filepath.Join(t.TempDir(), "http.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &envoy.HTTPServer{Decider: &decider{p: p, st: memory.New()}}}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	r, err := Run(t.Context(), Config{Target: "unix:" + sock, Mode: HTTP, Workers: 2, Conns: 1, Requests: 50,
		Policy: p, Mix: Mix{Blocked: 1}, Seed: 1})
	if err != nil || r.Forbidden != 50 {
		t.Fatalf("got %+v, %v; want 50 answers 403", r, err)
	}
}
