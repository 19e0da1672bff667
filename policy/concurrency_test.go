package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/memory"
)

// TestConcurrencyCap: with a lease (ext_proc), POST /transactions holds one
// of its route's slots while in flight; over the cap the answer is 429
// concurrency with Retry-After 1s and nothing else is taken; without a
// lease (ext_authz) the cap does not apply.
func TestConcurrencyCap(t *testing.T) {
	p := example(t, "concurrency: 500", "concurrency: 2")
	st := memory.New()
	req := func(lease string) *policy.Request {
		return &policy.Request{Method: "POST", Path: "/transactions", Host: "api.example.com", Peer: "198.51.100.7", Lease: lease}
	}
	var slots []policy.Decision
	for i, want := range []int{200, 200, 429} {
		d, err := p.Evaluate(t0, req("l"+string(rune('0'+i))), st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != want {
			t.Fatalf("step 1.%d: got %d %s, want %d", i, d.Status, d.Reason, want)
		}
		if want == 429 {
			if d.Reason != policy.ReasonConcurrency || d.RetryAfter.Seconds() != 1 || d.Slot.Limit != "" || d.Body != policy.BodyTooManyRequests {
				t.Fatalf("step 1.%d: got %+v, want concurrency, retry 1s, no slot", i, d)
			}
			for _, l := range d.AppliedLimits() {
				if l.Tier == policy.TierConcurrency {
					t.Fatalf("step 1.%d: the cap is among the rate-limit header limits", i)
				}
			}
			continue
		}
		if d.Slot.Limit == "" || d.Lease == "" || d.Concurrency != 2 {
			t.Fatalf("step 1.%d: got slot %+v lease %q, want the route's slot", i, d.Slot, d.Lease)
		}
		slots = append(slots, d)
	}
	// The route bucket (burst 4000) lost two tokens, not three.
	d, _ := p.Evaluate(t0, req(""), st, nil)
	if r := routeRemaining(d); r != 3997 {
		t.Fatalf("step 2: route bucket: got %d remaining after the ext_authz request, want 3997", r)
	}
	// Without a lease, the cap does not apply: still allowed.
	if d.Status != 200 || d.Slot.Limit != "" {
		t.Fatalf("step 2: without a lease got %d slot %+v, want 200 and none", d.Status, d.Slot)
	}
	if err := st.Release(slots[0].Slot, slots[0].Lease); err != nil {
		t.Fatal(err)
	}
	if d, _ := p.Evaluate(t0, req("l9"), st, nil); d.Status != 200 {
		t.Fatalf("step 3: after a release got %d, want 200", d.Status)
	}
}

func routeRemaining(d policy.Decision) int64 {
	for _, l := range d.AppliedLimits() {
		if l.Tier == policy.TierRoute {
			return l.Remaining
		}
	}
	return -1
}

// TestConcurrencyStatus: concurrency: {limit, status} answers 503 over the
// cap; a status other than 429 or 503 is an error.
func TestConcurrencyStatus(t *testing.T) {
	p := example(t, "concurrency: 500", "concurrency: {limit: 1, status: 503}")
	st := memory.New()
	r := policy.Request{Method: "POST", Path: "/transactions", Host: "api.example.com", Peer: "198.51.100.7", Lease: "a"}
	p.Evaluate(t0, &r, st, nil)
	r.Lease = "b"
	d, _ := p.Evaluate(t0, &r, st, nil)
	if d.Status != 503 || d.Reason != policy.ReasonConcurrency || d.Body != policy.BodyUnavailable {
		t.Fatalf("got %d %s %s, want 503 concurrency Service Unavailable", d.Status, d.Reason, d.Body)
	}
	data := strings.Replace(exampleText(t), "concurrency: 500", "concurrency: {limit: 5, status: 418, burst: 2}", 1)
	_, err := policyfile.Parse("p.yaml", []byte(data))
	for _, want := range []string{`routes[0].concurrency: unknown field "burst" (want limit, status)`, `routes[0].concurrency.status: 418 is not 429 or 503`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to hold %q", err, want)
		}
	}
}

// takeThenFail is a state whose Apply takes and then reports an error, as
// a Redis call that ran but whose answer came too late does.
type takeThenFail struct{ *memory.Store }

func (s takeThenFail) Apply(now time.Time, b *policy.Batch) error {
	s.Store.Apply(now, b)
	return errors.New("timeout")
}

// TestConcurrencySlotOfFailedApply: when Apply fails on a batch with a
// concurrency slot, the decision still names the slot, so that the caller
// releases it: a slot taken by a call that timed out is not lost.
func TestConcurrencySlotOfFailedApply(t *testing.T) {
	p := example(t, "concurrency: 500", "concurrency: 1")
	mem := memory.New()
	r := policy.Request{Method: "POST", Path: "/transactions", Host: "api.example.com", Peer: "198.51.100.7", Lease: "a"}
	d, err := p.Evaluate(t0, &r, takeThenFail{mem}, nil)
	if !errors.Is(err, policy.ErrState) || d.Slot.Limit == "" || d.Lease != "a" {
		t.Fatalf("got %+v, %v, want ErrState and the slot named", d.Slot, err)
	}
	if n := mem.Slots(d.Slot); n != 1 {
		t.Fatalf("got %d slots held, want the 1 the failed call took", n)
	}
	if err := mem.Release(d.Slot, d.Lease); err != nil || mem.Slots(d.Slot) != 0 {
		t.Fatalf("release: %v, %d held, want none", err, mem.Slots(d.Slot))
	}
}
