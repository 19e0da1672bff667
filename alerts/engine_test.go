package alerts_test

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/alerts"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/policyfile"
	"github.com/tollgate/tollgate/store/memory"
)

// TestDetectEvaluatedDecisions runs the payments example's free plan
// (1,000 a day, 10 a second, alerts at 80 and 100%) through real decisions
// on a memory store: 80 on the 800th request, 100 on the 1,000th, nothing
// on the denials after it, nor after a grant.
func TestDetectEvaluatedDecisions(t *testing.T) {
	p, err := policyfile.Load("../examples/payments/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	d := alerts.NewDetector(64)
	r := &policy.Request{Method: "POST", Path: "/partners/p-17/transactions", Host: "api.example.com",
		Headers: map[string]string{"x-api-key": "tg_demo_free_0000000000000001"}, Peer: "198.51.100.7:40000"}
	sent := map[int]string{} // request number -> events
	now := t0
	request := func(i int) policy.Decision {
		now = now.Add(100 * time.Millisecond) // the plan's 10 a second
		dec, err := p.Evaluate(now, r, st, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if events := d.Observe(&dec, now, p); events != nil {
			sent[i] = kinds(events)
			for _, e := range events {
				if e.Data.Customer != "initech" || e.Data.Plan != "free" || !e.Data.PeriodStart.Equal(dayStart) {
					t.Errorf("request %d: got data %+v, want initech on free today", i, e.Data)
				}
			}
		}
		return dec
	}
	for i := 1; i <= 1010; i++ {
		dec := request(i)
		if want := i > 1000; (dec.Reason == policy.ReasonQuota) != want {
			t.Fatalf("request %d: got reason %q, want a quota denial %v", i, dec.Reason, want)
		}
	}
	pl := p.Plan("free")
	k, end, _ := pl.QuotaKey("initech", now)
	if err := st.Grant(k, 500, end); err != nil {
		t.Fatal(err)
	}
	for i := 1011; i <= 1510; i++ {
		if dec := request(i); dec.Verdict != policy.Allow {
			t.Fatalf("request %d after the grant: got %s %q, want allow", i, dec.Verdict, dec.Reason)
		}
	}
	want := map[int]string{800: "threshold:80", 1000: "threshold:100"}
	if len(sent) != len(want) || sent[800] != want[800] || sent[1000] != want[1000] {
		t.Errorf("got events %v, want %v", sent, want)
	}
}
