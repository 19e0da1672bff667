// Command waf-flood measures issue 13's flood on a real tollgate serve: an
// address goes over the payments example's per-IP WAF rule, then N distinct
// IPv4 clients (default 1,000,000) send POST /transactions once each over
// ext_authz while the address sends one more per 1,000 of them. It reports
// the server's live heap and RSS before and after, the WAF counter metrics
// and whether the address is still blocked.
//
//	go build -o bin/tollgate ./cmd/tollgate
//	go run ./cmd/waf-flood --bin bin/tollgate [--addresses 1000000] [--serve-arg=--waf-counters=262144]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate/tollgate/internal/served"
)

type strs []string

func (s *strs) String() string     { return strings.Join(*s, " ") }
func (s *strs) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "waf-flood:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("waf-flood", flag.ContinueOnError)
	bin := fs.String("bin", "bin/tollgate", "the tollgate `binary`")
	policy := fs.String("policy", "examples/payments/policy.yaml", "the policy `file` (its per-IP rule must cover POST /transactions, 1,000 per 5m)")
	n := fs.Int("addresses", 1_000_000, "distinct client `addresses` of the flood")
	workers := fs.Int("workers", 32, "concurrent senders")
	var extra strs
	fs.Var(&extra, "serve-arg", "an extra `flag` of tollgate serve (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srv, err := served.Start(ctx, *bin, append([]string{"serve", "--policy", *policy, "--store", "memory:", "--grpc-addr", "127.0.0.1:0",
		"--admin-addr", "127.0.0.1:0", "--pprof"}, extra...), nil, time.Minute)
	if err != nil {
		return err
	}
	defer srv.Stop()
	conns := make([]*grpc.ClientConn, 4)
	for i := range conns {
		if conns[i], err = grpc.NewClient(srv.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	check := func(c *grpc.ClientConn, a netip.Addr) (int, error) { return checkFrom(ctx, c, a) }
	heap0, err := srv.Heap()
	if err != nil {
		return err
	}
	rss0, _ := srv.Memory("VmRSS")
	attacker := netip.MustParseAddr("192.0.2.66")
	status := 0
	for range 1001 {
		if status, err = check(conns[0], attacker); err != nil {
			return err
		}
	}
	if status != 403 {
		return fmt.Errorf("the attacker's 1,001st request: got %d, want 403", status)
	}

	began := time.Now()
	if err := flood(*n, *workers, conns, attacker, check); err != nil {
		return err
	}
	took := time.Since(began)
	if status, err = check(conns[0], attacker); err != nil {
		return err
	}
	heap1, err := srv.Heap()
	if err != nil {
		return err
	}
	rss1, _ := srv.Memory("VmRSS")
	hwm, _ := srv.Memory("VmHWM")
	counters := "counters: no metrics"
	if held, err := srv.Metric("tollgate_waf_counters"); err == nil {
		dropped, _ := srv.Metric("tollgate_waf_counters_dropped_total")
		counters = fmt.Sprintf("counters held %.0f, dropped %.0f", held, dropped)
	}
	mb := func(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }
	fmt.Printf("%d addresses in %v (%.0f/s); live heap %s → %s MB (+%s); RSS %s → %s MB (+%s), peak %s MB; "+
		"%s; the attacker afterwards: %d\n",
		*n, took.Round(time.Second), float64(*n)/took.Seconds(), mb(heap0), mb(heap1), mb(heap1-heap0),
		mb(rss0), mb(rss1), mb(rss1-rss0), mb(hwm), counters, status)
	if status != 403 {
		return fmt.Errorf("the attacker after the flood: got %d, want 403", status)
	}
	return nil
}

// checkFrom sends POST /transactions from a over ext_authz and returns the
// answer's status.
func checkFrom(ctx context.Context, c *grpc.ClientConn, a netip.Addr) (int, error) {
	resp, err := authv3.NewAuthorizationClient(c).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: a.String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/transactions", Host: "api.example.com"}},
	}})
	if err != nil {
		return 0, err
	}
	if resp.GetStatus().GetCode() == 0 {
		return 200, nil
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), nil
}

// flood sends one request from each of n addresses (10.x.y.z), from
// workers at once over conns, and one from the attacker after each 1,000.
func flood(n, workers int, conns []*grpc.ClientConn, attacker netip.Addr, check func(*grpc.ClientConn, netip.Addr) (int, error)) error {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failed.Load() != nil {
					return
				}
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				if _, err := check(conns[w%len(conns)], a); err != nil {
					failed.Store(&err)
					return
				}
				if i%1000 == 999 {
					// The attacker keeps sending (it would stay blocked
					// by the sliding window's count otherwise only while
					// the flood is shorter than the window).
					if _, err := check(conns[w%len(conns)], attacker); err != nil {
						failed.Store(&err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		return *e
	}
	return nil
}
