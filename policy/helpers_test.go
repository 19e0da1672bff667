package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/memory"
)

// The example's demo keys (examples/payments/policy.yaml holds their
// hashes).
const (
	freeKey     = "tg_demo_free_0000000000000001"
	proKey      = "tg_demo_pro_00000000000000001"
	entKey      = "tg_demo_ent_00000000000000001"
	disabledKey = "tg_demo_disabled_000000000001"
	expiredKey  = "tg_demo_expired_0000000000001"
)

const examplePath = "../examples/payments/policy.yaml"

// t0 is a fixed instant at noon UTC, so that day quotas have room on both
// sides.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// sha returns the policy-file hash of a key value.
func sha(key string) string {
	s := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(s[:])
}

// exampleText returns the shipped example's text.
func exampleText(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// example loads the shipped example, with each edits[i] replaced by
// edits[i+1] in its text.
func example(t testing.TB, edits ...string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("edit %q: not in %s", edits[i], examplePath)
		}
		text = strings.Replace(text, edits[i], edits[i+1], 1)
	}
	p, err := policyfile.Parse(examplePath, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// parse compiles a policy written in a test.
func parse(t testing.TB, text string) *policy.Policy {
	t.Helper()
	p, err := policyfile.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// engine is a policy over a fresh memory store.
type engine struct {
	p  *policy.Policy
	st *memory.Store
}

func newEngine(p *policy.Policy) *engine { return &engine{p: p, st: memory.New()} }

// do evaluates r at now; an evaluation error fails the test.
func (e *engine) do(t testing.TB, now time.Time, r *policy.Request) policy.Decision {
	t.Helper()
	d, err := e.p.Evaluate(now, r, e.st, nil)
	if err != nil {
		t.Fatalf("evaluate at %s: got error %v, want none", now.Format(time.RFC3339Nano), err)
	}
	return d
}

// tally evaluates r n times at now and counts the answers by reason ("" for
// allowed).
func (e *engine) tally(t testing.TB, now time.Time, r *policy.Request, n int) map[policy.Reason]int {
	t.Helper()
	out := map[policy.Reason]int{}
	for range n {
		out[e.do(t, now, r).Reason]++
	}
	return out
}

// partner is a request on the keyed route of the example.
func partner(key string) *policy.Request {
	h := map[string]string{}
	if key != "" {
		h["x-api-key"] = key
	}
	return &policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com",
		Headers: h, Peer: "198.51.100.7:40000"}
}

// anon is a request without a key from ip.
func anon(method, path, ip string) *policy.Request {
	return &policy.Request{Method: method, Path: path, Host: "api.example.com", Headers: map[string]string{}, Peer: ip}
}

// limits formats a decision's limits as "tier:remaining/quota" items, most
// constrained first.
func limits(d policy.Decision) string {
	var b strings.Builder
	for i, l := range d.AppliedLimits() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d/%d", l.Tier, l.Remaining, l.Quota)
	}
	return b.String()
}

// limit returns the decision's limit of tier t, or the zero Limit.
func limit(d policy.Decision, t policy.Tier) policy.Limit {
	for _, l := range d.AppliedLimits() {
		if l.Tier == t {
			return l
		}
	}
	return policy.Limit{}
}
