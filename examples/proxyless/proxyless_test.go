package proxyless_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// The payments example's keyed route, as a gRPC method: grpc-go sends the
// call's full method name as request.path and "POST" as request.method,
// and a method name is any path (the backend's service is "partners/p-1"),
// so the call matches "POST /partners/{id}/transactions".
const (
	partnerMethod = "/partners/p-1/transactions"
	freeKey       = "tg_demo_free_0000000000000001"
)

// blocklist is the payments policy's WAF blocklist, blocklisted the same
// with the loopback network added. tollgate takes a proxyless client's
// address from its ext_proc connection (ip source peer), which here comes
// from 127.0.0.1: no test can make it come from the blocklist's
// documentation ranges (no interface holds them), nor from another
// loopback address (grpc-go dials that connection itself, with no dialer
// to bind). So the blocklist case serves a copy of the policy that blocks
// loopback; nothing else differs from the example.
const (
	blocklist   = `blocklist: ["203.0.113.0/24", "2001:db8:bad::/48"]`
	blocklisted = `blocklist: ["203.0.113.0/24", "2001:db8:bad::/48", "127.0.0.0/8"]`
)

// TestProxylessPayments runs grpc-go's own ext_proc client (gRFC A93), set
// up by xDS as README.md shows, against tollgate serving the payments
// example: the free key's 20 calls pass with the rate-limit headers in the
// call's response metadata and the key's customer in the backend's request
// metadata, the 21st is RESOURCE_EXHAUSTED, a call without a key and a
// call from a blocklisted address are PERMISSION_DENIED, and README.md
// shows these answers as they are.
func TestProxylessPayments(t *testing.T) {
	if got, want := readmeBlock(t, "sh", ""), envExtProc+"=true\n"; got != want {
		t.Errorf("README.md's environment: got %q, want %q", got, want)
	}
	clock := newClock()
	backend := startBackend(t)
	xds := startManagementServer(t)

	g := startTollgate(t, paymentsPolicy, clock.Now)
	xds.serve(t, "payments-client", readmeResources(t, g.addr, backend))
	answers := runClient(t, bootstrapFile(t, "payments-client", xds.addr, g.addr),
		call{Method: partnerMethod, Key: freeKey, Times: 21},
		call{Method: partnerMethod, Times: 1})

	blocked := startTollgate(t, editedPolicy(t, blocklist, blocklisted), clock.Now)
	xds.serve(t, "blocked-client", readmeResources(t, blocked.addr, backend))
	answers = append(answers, runClient(t, bootstrapFile(t, "blocked-client", xds.addr, blocked.addr),
		call{Method: partnerMethod, Key: freeKey, Times: 1})...)

	if len(answers) != 23 {
		t.Fatalf("got %d answers, want 23", len(answers))
	}
	for i, a := range answers[:20] {
		checkAllowed(t, i+1, a)
	}
	for i, want := range []struct {
		code codes.Code
		msg  string
	}{{codes.ResourceExhausted, "Too Many Requests"}, {codes.PermissionDenied, "Forbidden"}, {codes.PermissionDenied, "Forbidden"}} {
		if a := answers[20+i]; a.Code != want.code.String() || a.Message != want.msg || a.Backend != nil {
			t.Errorf("call %d: got %s %q (backend reached: %v), want %s %q, backend not reached",
				21+i, a.Code, a.Message, a.Backend != nil, want.code, want.msg)
		}
	}

	// Why each call was denied, by tollgate's log: the client's address is
	// the ext_proc connection's peer.
	const route = "POST /partners/{id}/transactions"
	for _, c := range []struct {
		g    *tollgate
		want []denial
	}{
		{g, []denial{{429, "throttle:plan", "127.0.0.1", route}, {403, "key:missing", "127.0.0.1", route}}},
		{blocked, []denial{{403, "waf:blocked-networks", "127.0.0.1", route}}},
	} {
		if got := c.g.denials(t); !slices.Equal(got, c.want) {
			t.Errorf("tollgate's denials: got %+v, want %+v", got, c.want)
		}
	}

	if got, want := transcript(answers), readmeBlock(t, "text", transcriptBlock); got != want {
		t.Errorf("README.md shows other answers than the client got; got\n%s\nwant (README.md)\n%s", got, want)
	}
}

// checkAllowed checks the answer to the free key's nth call: OK; the
// stream's response header carries RateLimit-Policy and RateLimit, the
// plan's remaining count at 20-n; the grpc.Header option's does not
// (grpc-go v1.85.0: the option copies the transport's header before the
// ext_proc filter adds to it); the backend got the key's customer, key id
// and plan.
func checkAllowed(t *testing.T, n int, a answer) {
	t.Helper()
	if a.Code != codes.OK.String() {
		t.Errorf("call %d: got %s %q, want OK", n, a.Code, a.Message)
		return
	}
	const policy = `"plan";q=20;w=2, "quota";q=1000;w=86400, "route";q=2000;w=2, "account";q=5000;w=1, "stage";q=10000;w=2`
	if got, want := strings.Join(a.Header["ratelimit-policy"], "|"), policy; got != want {
		t.Errorf("call %d: header ratelimit-policy: got %q, want %q", n, got, want)
	}
	if got, want := strings.Join(a.Header["ratelimit"], "|"), fmt.Sprintf(`"plan";r=%d;`, 20-n); !strings.HasPrefix(got, want) {
		t.Errorf("call %d: header ratelimit: got %q, want it to start with %q", n, got, want)
	}
	if got := show(a.HeaderOption, ""); got != "" {
		t.Errorf("call %d: grpc.Header: got %q, want none of tollgate's headers", n, got)
	}
	if got := a.Backend["method"]; got != partnerMethod {
		t.Errorf("call %d: the backend got method %v, want %s", n, got, partnerMethod)
	}
	md := toMD(a.Backend)
	for k, want := range map[string]string{"x-tollgate-customer": "initech", "x-tollgate-key-id": "initech-free", "x-tollgate-plan": "free"} {
		if got := strings.Join(md[k], ", "); got != want {
			t.Errorf("call %d: the backend got %s %q, want %q", n, k, got, want)
		}
	}
}

// transcriptBlock is the first line of the README's block of answers.
const transcriptBlock = "# what the client saw (TestProxylessPayments checks this block)"

// transcript renders the answers as the README shows them: the first and
// the last of the allowed calls in full, the ones between as one line
// when they are alike.
func transcript(answers []answer) string {
	var b strings.Builder
	line := func(what string, a answer) {
		if a.Code == codes.OK.String() {
			fmt.Fprintf(&b, "%s: OK\n", what)
		} else {
			fmt.Fprintf(&b, "%s: rpc error: code = %s desc = %s\n", what, a.Code, a.Message)
		}
	}
	full := func(what string, a answer) {
		line(what, a)
		fmt.Fprintf(&b, "  header (the call's stream):\n%s", show(a.Header, "    "))
		fmt.Fprintf(&b, "  header (grpc.Header option):\n%s", orNone(show(a.HeaderOption, "    ")))
		fmt.Fprintf(&b, "  request metadata at the backend:\n%s", show(toMD(a.Backend), "    "))
	}
	full("free key, call 1", answers[0])
	alike := true
	for _, a := range answers[1:19] {
		alike = alike && a.Code == codes.OK.String()
	}
	if alike {
		b.WriteString("free key, calls 2-19: OK\n")
	} else {
		for i, a := range answers[1:19] {
			line(fmt.Sprintf("free key, call %d", i+2), a)
		}
	}
	full("free key, call 20", answers[19])
	line("free key, call 21", answers[20])
	line("no key", answers[21])
	line("free key, blocklisted address", answers[22])
	return b.String()
}

// orNone returns s, or a line saying there is nothing.
func orNone(s string) string {
	if s == "" {
		return "    (none)\n"
	}
	return s
}
