package policy_test

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// downState is a state that cannot be reached.
type downState struct{ applied *int }

func (s downState) Apply(time.Time, *policy.Batch) error {
	*s.applied++
	return errors.New("connection refused")
}

func (downState) Release(policy.Key, string) error { return errors.New("connection refused") }

// downKeys is a run-time key store that cannot be reached.
type downKeys struct{}

func (downKeys) LookupKey([sha256.Size]byte) (*policy.APIKey, error) {
	return nil, errors.New("connection refused")
}

// TestEvaluateStoreDownLeavesTheAnswer: when a store fails, Evaluate
// decides what is its own and leaves the rest to its caller: a key that
// could not be looked up is ErrKeys and 503 store:error in any mode (never
// a key that passed), with what was known of the stage and route, nothing of
// the key and no limits; a denial found before the state (a disabled key)
// stands with ErrState, its WAF hit still handed to the state, and the
// caller fails open or closed on the rest.
func TestEvaluateStoreDownLeavesTheAnswer(t *testing.T) {
	p := example(t, `scope: {routes: ["POST /transactions"]}`,
		`scope: {routes: ["POST /transactions", "POST /partners/{id}/transactions"]}`)

	applied := 0
	d, err := p.Evaluate(t0, partner("tg_never_seen_before_000000001"), downState{&applied}, downKeys{})
	if !errors.Is(err, policy.ErrKeys) {
		t.Fatalf("unknown key: got %v, want ErrKeys", err)
	}
	if d.Verdict != policy.Deny || d.Status != 503 || d.Reason != policy.ReasonStore || d.RetryAfter != time.Second {
		t.Fatalf("unknown key: got %s %d %s %v, want deny 503 store:error 1s", d.Verdict, d.Status, d.Reason, d.RetryAfter)
	}
	if d.Stage != "prod" || d.Route != "POST /partners/{id}/transactions" || d.Customer != "" || d.NLimits != 0 ||
		d.StateUsed || applied != 0 {
		t.Fatalf("unknown key: got %+v (state called %d times), want the stage and route, no key, no limits, no state", d, applied)
	}

	d, err = p.Evaluate(t0, partner(disabledKey), downState{&applied}, downKeys{})
	if !errors.Is(err, policy.ErrState) || applied != 1 {
		t.Fatalf("disabled key: got %v (state called %d times), want ErrState after one call", err, applied)
	}
	if d.Verdict != policy.Deny || d.Status != 403 || d.Reason != policy.ReasonKeyDisabled || d.StateUsed {
		t.Fatalf("disabled key: got %s %d %s (state used %v), want deny 403 key:disabled", d.Verdict, d.Status, d.Reason, d.StateUsed)
	}
}
