package load

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policyfile"
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
