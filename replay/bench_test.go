package replay

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate/tollgate/decisionlog"
	"github.com/tollgate/tollgate/policyfile"
)

// payments is the reference scenario's policy: the benchmark's candidate.
const payments = "../examples/payments/policy.yaml"

// traffic writes n decision log lines of the payments example to w: an
// hour of mixed traffic (public and keyed routes, the example's keys and
// 2,000 run-time ones, WAF blocks, key denials, throttled and unreadable
// requests), as the server writes them.
func traffic(tb testing.TB, w io.Writer, n int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	dl := decisionlog.New(w, 0, nil)
	step := time.Hour / time.Duration(n)
	file := [][3]string{{"initech-free", "initech", "free"}, {"acme-2026a", "acme", "pro"},
		{"globex-ent", "globex", "enterprise"}, {"wayne-trial", "wayne", "trial"}}
	for i := range n {
		r := decisionlog.Record{Time: t0.Add(time.Duration(i)*step + time.Duration(rng.IntN(int(step)))),
			API: "payments", Stage: "prod", Method: "POST", Status: 200,
			IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(250))})}
		switch k := rng.IntN(100); {
		case k < 40:
			r.Route, r.Path = "POST /transactions", "/transactions"
			if k < 2 {
				r.IP, r.Status, r.Reason = netip.MustParseAddr("203.0.113.9"), 403, "waf:blocked-networks"
			}
		case k < 90:
			r.Route, r.Path = "POST /partners/{id}/transactions", fmt.Sprintf("/partners/p-%d/transactions", rng.IntN(50))
			switch {
			case k < 45:
				r.Status, r.Reason = 403, "key:missing"
			case k < 47:
				r.Status, r.Reason = 403, "key:unknown"
			case k < 55:
				key := file[rng.IntN(len(file))]
				r.KeyID, r.Customer, r.Plan = key[0], key[1], key[2]
			default:
				c := rng.IntN(2000)
				r.KeyID, r.Customer, r.Plan = fmt.Sprintf("rt-%04d", c), fmt.Sprintf("cust-%04d", c), []string{"free", "pro"}[c%2]
			}
			if r.KeyID != "" && k%10 == 0 {
				r.Status, r.Reason = 429, "throttle:plan"
			}
		case k < 97:
			r.Method, r.Route, r.Path = "GET", "GET /status", "/status"
		default:
			r.Status, r.Reason = 400, "request:invalid"
		}
		for !dl.Log(&r) {
			runtime.Gosched() // the buffer is full: the writer catches up
		}
	}
	if err := dl.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkReplay replays 100,000 lines of the payments example's traffic
// (an hour of it) against the payments policy: a plain file, the same file
// gzipped, and with the policy as the baseline too (two evaluations a
// line). It reports lines replayed a second.
func BenchmarkReplay(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "decisions.log"))
	if err != nil {
		b.Fatal(err)
	}
	traffic(b, f, n)
	raw, err := os.ReadFile(f.Name())
	if err != nil {
		b.Fatal(err)
	}
	plain := f.Name()
	gz := writeFile(b, dir, "decisions.log.gz", raw, true)
	p, err := policyfile.Load(payments)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"plain", Options{Candidate: p, Files: []string{plain}}},
		{"gzip", Options{Candidate: p, Files: []string{gz}}},
		{"baseline", Options{Candidate: p, Baseline: p, Files: []string{plain}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				r, err := Run(context.Background(), c.o)
				if err != nil || r.Lines != n {
					b.Fatalf("got %v lines, error %v", r, err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
