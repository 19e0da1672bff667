package policy_test

import (
	"testing"

	"github.com/tollgate/tollgate/policy"
)

// TestCheckKeyPlans: run-time keys follow the policy file's plan rules, with
// the same messages.
func TestCheckKeyPlans(t *testing.T) {
	p := example(t, "  enterprise:\n    throttle: {rate: 1000, burst: 2000}            # no quota: unlimited\n    stages: [payments/prod]",
		"  enterprise:\n    throttle: {rate: 1000, burst: 2000}\n    stages: [payments/prod]\n  side:\n    stages: []")
	cases := []struct {
		plans []string
		want  string
	}{
		{[]string{"pro"}, ""},
		{[]string{"pro", "side"}, ""},
		{nil, "body: plans: a key needs at least one plan"},
		{[]string{"gold"}, `body: plans[0]: "gold" is not a usage plan (plans: enterprise, free, pro, side, trial)`},
		{[]string{"pro", "pro"}, `body: plans[1]: "pro" is listed twice`},
		{[]string{"free", "pro"}, `body: plans: plans "free" and "pro" both cover stage payments/prod (a key holds at most one plan per stage)`},
	}
	for i, c := range cases {
		got := ""
		if err := p.CheckKeyPlans(c.plans); err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%d: %v: got %q, want %q", i, c.plans, got, c.want)
		}
	}
}

func TestValidKeyID(t *testing.T) {
	for _, c := range []struct {
		id   string
		want bool
	}{
		{"acme-2026a", true}, {"a.b_c", true}, {"", false}, {"with space", false}, {"ключ", false},
		{"x123456789012345678901234567890123456789012345678901234567890123", true},
		{"x1234567890123456789012345678901234567890123456789012345678901234", false},
	} {
		if got := policy.ValidKeyID(c.id); got != c.want {
			t.Errorf("%q: got %v, want %v", c.id, got, c.want)
		}
	}
}
