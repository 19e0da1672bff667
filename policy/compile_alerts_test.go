package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// alertsDoc is a policy with two sinks and a plan whose alerts are a.
func alertsDoc(a any) m {
	return m{
		"version": 1,
		"notifications": m{"sinks": m{
			"ops":   m{"webhook": m{"url": "https://hooks.example.com/tollgate", "secret_file": "/etc/tollgate/hook-secret", "timeout": "2s"}},
			"sales": m{"webhook": m{"url": "http://localhost:9099/hooks"}},
		}},
		"usage_plans": m{
			"pro":  m{"quota": m{"limit": 100, "period": "day"}, "alerts": a},
			"free": m{"quota": m{"limit": 10, "period": "day"}},
		},
	}
}

func TestCompileAlerts(t *testing.T) {
	p := mustCompile(t, alertsDoc(m{"thresholds": l{100, 50, 80}, "forecast": true, "sinks": l{"sales", "ops"}}))
	want := []Sink{
		{Name: "ops", URL: "https://hooks.example.com/tollgate", SecretFile: "/etc/tollgate/hook-secret", Timeout: 2 * time.Second},
		{Name: "sales", URL: "http://localhost:9099/hooks", Timeout: 5 * time.Second},
	}
	if got := p.Sinks(); !slices.Equal(got, want) {
		t.Errorf("got sinks %+v, want %+v", got, want)
	}
	if s, ok := p.Sink("sales"); !ok || s != want[1] {
		t.Errorf("got Sink(sales) %+v %v, want %+v", s, ok, want[1])
	}
	if _, ok := p.Sink("nobody"); ok {
		t.Errorf("got a sink nobody")
	}
	a, ok := p.PlanAlerts("pro")
	if !ok || !slices.Equal(a.Thresholds, []int{50, 80, 100}) || !a.Forecast || !slices.Equal(a.Sinks, []string{"sales", "ops"}) {
		t.Errorf("got alerts %+v %v, want thresholds [50 80 100], forecast, sinks [sales ops]", a, ok)
	}
	for _, plan := range []string{"free", "nowhere"} {
		if a, ok := p.PlanAlerts(plan); ok {
			t.Errorf("plan %s: got alerts %+v, want none", plan, a)
		}
	}

	// Forecast alone, thresholds alone.
	p = mustCompile(t, alertsDoc(m{"forecast": true, "sinks": l{"ops"}}))
	if a, ok := p.PlanAlerts("pro"); !ok || len(a.Thresholds) != 0 || !a.Forecast {
		t.Errorf("got alerts %+v %v, want forecast only", a, ok)
	}
	p = mustCompile(t, alertsDoc(m{"thresholds": l{100}, "sinks": l{"ops"}}))
	if a, ok := p.PlanAlerts("pro"); !ok || !slices.Equal(a.Thresholds, []int{100}) || a.Forecast {
		t.Errorf("got alerts %+v %v, want thresholds [100] only", a, ok)
	}
}

// TestPlanAlertsDoesNotAllocate guards the detector's fast path: it asks
// for a plan's alerts on every decision.
func TestPlanAlertsDoesNotAllocate(t *testing.T) {
	p := mustCompile(t, alertsDoc(m{"thresholds": l{80}, "sinks": l{"ops"}}))
	if n := testing.AllocsPerRun(100, func() {
		p.PlanAlerts("pro")
		p.PlanAlerts("free")
	}); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

func TestCompileAlertsErrors(t *testing.T) {
	sinks := func(s m) m { return m{"version": 1, "notifications": m{"sinks": s}} }
	cases := []compileError{
		{"url relative", sinks(m{"ops": m{"webhook": m{"url": "/hooks"}}}),
			`policy.yaml: notifications.sinks.ops.webhook.url: "/hooks" is not an absolute http or https URL such as https://hooks.example.com/tollgate`},
		{"url scheme", sinks(m{"ops": m{"webhook": m{"url": "ftp://example.com/x"}}}),
			`policy.yaml: notifications.sinks.ops.webhook.url: "ftp://example.com/x" is not an absolute http or https URL such as https://hooks.example.com/tollgate`},
		{"url missing", sinks(m{"ops": m{"webhook": m{"timeout": "1s"}}}),
			`policy.yaml: notifications.sinks.ops.webhook.url: required field is missing`},
		{"webhook missing", sinks(m{"ops": m{}}),
			`policy.yaml: notifications.sinks.ops.webhook: required field is missing`},
		{"unknown sink kind", sinks(m{"ops": m{"slack": m{}}}),
			"policy.yaml: notifications.sinks.ops: unknown field \"slack\" (want webhook)\npolicy.yaml: notifications.sinks.ops.webhook: required field is missing"},
		{"timeout long", sinks(m{"ops": m{"webhook": m{"url": "http://h/", "timeout": "2m"}}}),
			`policy.yaml: notifications.sinks.ops.webhook.timeout: "2m" is not between 100ms and 1m`},
		{"timeout number", sinks(m{"ops": m{"webhook": m{"url": "http://h/", "timeout": 5}}}),
			`policy.yaml: notifications.sinks.ops.webhook.timeout: 5 is not a duration such as 5s or 1m`},
		{"secret file empty", sinks(m{"ops": m{"webhook": m{"url": "http://h/", "secret_file": ""}}}),
			`policy.yaml: notifications.sinks.ops.webhook.secret_file: "" is not a file path`},
		{"threshold 0", alertsDoc(m{"thresholds": l{0}, "sinks": l{"ops"}}),
			`policy.yaml: usage_plans.pro.alerts.thresholds[0]: 0 is below the minimum 1`},
		{"threshold above 100", alertsDoc(m{"thresholds": l{80, 120}, "sinks": l{"ops"}}),
			`policy.yaml: usage_plans.pro.alerts.thresholds[1]: 120 is above the maximum 100`},
		{"threshold fraction", alertsDoc(m{"thresholds": l{80.5}, "sinks": l{"ops"}}),
			`policy.yaml: usage_plans.pro.alerts.thresholds[0]: 80.5 is not an integer`},
		{"threshold twice", alertsDoc(m{"thresholds": l{80, 100, 80}, "sinks": l{"ops"}}),
			`policy.yaml: usage_plans.pro.alerts.thresholds[2]: 80 is listed twice`},
		{"nothing to send", alertsDoc(m{"thresholds": l{}, "forecast": false, "sinks": l{"ops"}}),
			`policy.yaml: usage_plans.pro.alerts: no thresholds and no forecast: true: the alerts would never fire`},
		{"unknown sink", alertsDoc(m{"thresholds": l{80}, "sinks": l{"pager"}}),
			`policy.yaml: usage_plans.pro.alerts.sinks[0]: "pager" is not a sink (sinks: ops, sales)`},
		{"sink twice", alertsDoc(m{"thresholds": l{80}, "sinks": l{"ops", "ops"}}),
			`policy.yaml: usage_plans.pro.alerts.sinks[1]: "ops" is listed twice`},
		{"sinks missing", alertsDoc(m{"thresholds": l{80}}),
			`policy.yaml: usage_plans.pro.alerts.sinks: required field is missing (sinks: ops, sales)`},
		{"sinks empty", alertsDoc(m{"thresholds": l{80}, "sinks": l{}}),
			`policy.yaml: usage_plans.pro.alerts.sinks: the list is empty: name at least one sink (sinks: ops, sales)`},
		{"unknown alerts field", alertsDoc(m{"thresholds": l{80}, "sinks": l{"ops"}, "every": "1h"}),
			`policy.yaml: usage_plans.pro.alerts: unknown field "every" (want thresholds, forecast, sinks)`},
		{"no notifications", m{"version": 1, "usage_plans": m{"p": m{"quota": m{"limit": 1, "period": "day"},
			"alerts": m{"thresholds": l{80}, "sinks": l{"ops"}}}}},
			`policy.yaml: usage_plans.p.alerts.sinks[0]: "ops" is not a sink (the policy has no notifications.sinks)`},
		{"no quota", m{"version": 1, "notifications": m{"sinks": m{"ops": m{"webhook": m{"url": "http://h/"}}}},
			"usage_plans": m{"p": m{"alerts": m{"thresholds": l{80}, "sinks": l{"ops"}}}}},
			`policy.yaml: usage_plans.p.alerts: alerts need a quota: the plan has none`},
		// A bad quota and a bad sink are reported where they are, once.
		{"bad quota, bad sink", m{"version": 1, "notifications": m{"sinks": m{"ops": m{"webhook": m{"url": "hooks"}}}},
			"usage_plans": m{"p": m{"quota": m{"limit": -1, "period": "day"}, "alerts": m{"thresholds": l{80}, "sinks": l{"ops"}}}}},
			"policy.yaml: notifications.sinks.ops.webhook.url: \"hooks\" is not an absolute http or https URL such as https://hooks.example.com/tollgate\n" +
				"policy.yaml: usage_plans.p.quota.limit: -1 is below the minimum 0"},
	}
	checkCompileErrors(t, cases)
}

// TestCompileAlertsAllErrorsAtOnce checks that one bad alerts section
// reports each of its errors.
func TestCompileAlertsAllErrorsAtOnce(t *testing.T) {
	_, err := Compile("policy.yaml", alertsDoc(m{"thresholds": l{0, 101}, "forecast": "yes", "sinks": l{"pager", 3}}))
	if err == nil {
		t.Fatal("got no error")
	}
	want := []string{
		`policy.yaml: usage_plans.pro.alerts.thresholds[0]: 0 is below the minimum 1`,
		`policy.yaml: usage_plans.pro.alerts.thresholds[1]: 101 is above the maximum 100`,
		`policy.yaml: usage_plans.pro.alerts.forecast: "yes" is not true or false`,
		`policy.yaml: usage_plans.pro.alerts.sinks[0]: "pager" is not a sink (sinks: ops, sales)`,
		`policy.yaml: usage_plans.pro.alerts.sinks[1]: 3 is not a string`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}
}
