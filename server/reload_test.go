package server

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const freeKey = "tg_demo_free_0000000000000001"

// item returns the value of param (q or r) of the tier's item in a
// RateLimit or RateLimit-Policy header, or "" when there is none.
func item(header, tier, param string) string {
	m := regexp.MustCompile(`"` + tier + `";(?:[a-z]+=\d+;)*` + param + `=(\d+)`).FindStringSubmatch(header)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestReloadKeepsState: a valid edit changes the limits it touches and
// keeps the state of the others (a partly drained bucket stays drained, the
// quota's count stays); an invalid edit is rejected with its errors, shown
// by /readyz and counted, and the old policy keeps serving.
func TestReloadKeepsState(t *testing.T) {
	h := serve(t, testPolicy(t), nil)

	// 1. Drain the free plan bucket (burst 20) to 5.
	var d decision
	for range 15 {
		d = h.check(freeKey)
	}
	if got := item(d.headers["ratelimit"], "plan", "r"); d.status != 200 || got != "5" {
		t.Fatalf("1: got %d plan remaining %q, want 200 and 5", d.status, got)
	}

	// 2. Edit the free quota's limit and the pro throttle; reload.
	edited := testPolicy(t, "quota: {limit: 1000, period: day}", "quota: {limit: 900, period: day}",
		"  pro:\n    throttle: {rate: 100, burst: 200}", "  pro:\n    throttle: {rate: 100, burst: 300}",
		`"POST /partners/{id}/transactions": {rate: 100, burst: 200}`, `"POST /partners/{id}/transactions": {rate: 100, burst: 300}`)
	if err := os.WriteFile(h.policy, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	old := h.s.Policy()
	if err := h.s.Reload(); err != nil {
		t.Fatalf("2: %v", err)
	}
	if h.s.Policy() == old {
		t.Fatal("2: the policy was not replaced")
	}
	d = h.check(freeKey)
	for _, c := range []struct{ header, tier, param, want string }{
		{"ratelimit", "plan", "r", "4"},           // the bucket carried over, still drained
		{"ratelimit-policy", "quota", "q", "900"}, // the new limit
		{"ratelimit", "quota", "r", "884"},        // the count carried over: 900 - 16
		{"ratelimit-policy", "plan", "q", "20"},   // unchanged
	} {
		if got := item(d.headers[c.header], c.tier, c.param); got != c.want {
			t.Errorf("2: %s %s %s: got %q, want %q (%s)", c.header, c.tier, c.param, got, c.want, d.headers[c.header])
		}
	}
	if got := item(h.check("tg_demo_pro_00000000000000001").headers["ratelimit-policy"], "plan", "q"); got != "300" {
		t.Errorf("2: pro plan burst: got %q, want 300", got)
	}
	if got := h.metric(`tollgate_policy_reloads_total{result="success"}`); got != 1 {
		t.Errorf("2: success reloads: got %v, want 1", got)
	}

	// 3. An invalid edit: rejected, reported, the old policy stays.
	bad := strings.Replace(edited, "period: day}", "period: fortnight}", 1) + "\nextra: true\n"
	if err := os.WriteFile(h.policy, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	serving := h.s.Policy()
	err := h.s.Reload()
	wantErrs := []string{`usage_plans.free.quota.period: "fortnight" is not one of day, week, month`, `extra`}
	if err == nil {
		t.Fatal("3: got no error")
	}
	for _, w := range wantErrs {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("3: got %q, want it to hold %q", err, w)
		}
	}
	if h.s.Policy() != serving {
		t.Fatal("3: a bad file replaced the policy")
	}
	if got := item(h.check(freeKey).headers["ratelimit-policy"], "quota", "q"); got != "900" {
		t.Errorf("3: got quota %q, want 900 from the policy still served", got)
	}
	ready := h.callWith("GET", "/readyz", "", nil).want(t, "3 readyz", 200, "")
	policyState, _ := ready.json["policy"].(map[string]any)
	if msg, _ := policyState["last_reload_error"].(string); msg != err.Error() {
		t.Errorf("3: readyz last_reload_error: got %q, want %q", msg, err)
	}
	for series, want := range map[string]float64{
		`tollgate_policy_reloads_total{result="failure"}`: 1,
		`tollgate_policy_reloads_total{result="success"}`: 1,
		`tollgate_policy_last_reload_successful`:          0,
	} {
		if got := h.metric(series); got != want {
			t.Errorf("3: %s: got %v, want %v", series, got, want)
		}
	}
	if !strings.Contains(h.logs.String(), `"msg":"policy reload failed; the previous policy stays"`) {
		t.Error("3: the failed reload was not logged")
	}

	// 4. A good file again clears the error.
	if err := os.WriteFile(h.policy, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Reload(); err != nil {
		t.Fatalf("4: %v", err)
	}
	ready = h.callWith("GET", "/readyz", "", nil).want(t, "4 readyz", 200, "")
	if strings.Contains(ready.raw, "last_reload_error") || ready.json["status"] != "ready" {
		t.Errorf("4: readyz: got %s, want ready and no error", ready.raw)
	}
	if got := h.metric(`tollgate_policy_last_reload_successful`); got != 1 {
		t.Errorf("4: last reload successful: got %v, want 1", got)
	}
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchReloadsOnRewrite: the watcher reloads a file replaced the way
// editors do it (a new file renamed over the old) and one written in place,
// and reports a bad rewrite.
func TestWatchReloadsOnRewrite(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	quota := func() string { return item(h.check(freeKey).headers["ratelimit-policy"], "quota", "q") }

	// 1. Rename a new file over the policy.
	tmp := h.policy + ".tmp"
	if err := os.WriteFile(tmp, []byte(testPolicy(t, "quota: {limit: 1000, period: day}", "quota: {limit: 700, period: day}")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, h.policy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renamed file to load", func() bool { return quota() == "700" })

	// 2. Write in place.
	if err := os.WriteFile(h.policy, []byte(testPolicy(t, "quota: {limit: 1000, period: day}", "quota: {limit: 600, period: day}")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rewritten file to load", func() bool { return quota() == "600" })

	// 3. A bad rewrite is reported and changes nothing.
	if err := os.WriteFile(h.policy, []byte("version: 1\nheaders: loud\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload", func() bool { return h.metric(`tollgate_policy_reloads_total{result="failure"}`) == 1 })
	if got := quota(); got != "600" {
		t.Fatalf("3: got quota %q, want 600 from the policy still served", got)
	}
	ready := h.callWith("GET", "/readyz", "", nil).want(t, "3 readyz", 200, "")
	if !strings.Contains(ready.raw, `headers: \"loud\" is not one of ietf, legacy, both, none`) {
		t.Fatalf("3: readyz: got %s, want the reload error", ready.raw)
	}
	if got := h.metric(`tollgate_policy_reloads_total{result="success"}`); got != 2 {
		t.Fatalf("got %v successful reloads, want 2 (unchanged content is not reloaded)", got)
	}
}

// TestWatchConfigMapSwap: a Kubernetes ConfigMap volume, where the policy
// file is a symlink through ..data, which the kubelet swaps atomically.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	write := func(version, text string) {
		if err := os.Mkdir(filepath.Join(dir, version), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, version, "policy.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("..2026_11_20_v1", testPolicy(t))
	if err := os.Symlink("..2026_11_20_v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/policy.yaml", filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	h := serveAt(t, filepath.Join(dir, "policy.yaml"))
	quota := func() string { return item(h.check(freeKey).headers["ratelimit-policy"], "quota", "q") }
	if got := quota(); got != "1000" {
		t.Fatalf("got quota %q, want 1000", got)
	}
	write("..2026_11_20_v2", testPolicy(t, "quota: {limit: 1000, period: day}", "quota: {limit: 500, period: day}"))
	if err := os.Symlink("..2026_11_20_v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the swapped ConfigMap to load", func() bool { return quota() == "500" })
}

// serveAt serves the policy file at path as it is.
func serveAt(t *testing.T, path string) *harness {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, string(data), func(c *Config) { c.PolicyFile = path })
}
