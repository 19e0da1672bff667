package envoy_test

import (
	"bytes"
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/memory"
)

// Policies of the tests: the shipped example and a small one whose limits
// a handful of requests exhaust; the example's directory holds its Envoy
// config and walkthrough.
const (
	paymentsDir    = "../examples/payments"
	paymentsPolicy = paymentsDir + "/policy.yaml"
	tightPolicy    = "testdata/tight.yaml"
)

// t0 is the instant of every test: a Friday noon, so a day quota resets in
// 12 h, and before the demo pro key expires.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// engine is the decision path the server runs: a compiled policy, a memory
// store and a clock the test sets. Each Decide advances the clock by step.
type engine struct {
	p    *policy.Policy
	st   policy.State
	step time.Duration

	mu       sync.Mutex
	now      time.Time
	errs     atomic.Int64
	released atomic.Int64 // slots released (ext_proc)
}

var _ interface {
	Decide(context.Context, *policy.Request) policy.Decision
} = (*engine)(nil)

// newEngine loads the policy at path, after replacing each edits[i] with
// edits[i+1] in its text (the old text must be there).
func newEngine(t testing.TB, path string, edits ...string) *engine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(edits); i += 2 {
		if !bytes.Contains(data, []byte(edits[i])) {
			t.Fatalf("%s: no %q to replace", path, edits[i])
		}
		data = bytes.ReplaceAll(data, []byte(edits[i]), []byte(edits[i+1]))
	}
	p, err := policyfile.Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return &engine{p: p, st: memory.New(), now: t0}
}

func (e *engine) Decide(_ context.Context, r *policy.Request) policy.Decision {
	e.mu.Lock()
	now := e.now
	e.now = e.now.Add(e.step)
	e.mu.Unlock()
	d, err := e.p.Evaluate(now, r, e.st, nil)
	if err != nil {
		e.errs.Add(1)
	}
	return d
}

// set moves the clock to t.
func (e *engine) set(t time.Time) {
	e.mu.Lock()
	e.now = t
	e.mu.Unlock()
}
