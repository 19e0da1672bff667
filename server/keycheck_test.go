package server

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policy"
)

// noPro is the example policy without the pro plan (its policy key moves to
// enterprise).
func noPro(t *testing.T) string {
	return testPolicy(t, "  pro:\n    throttle: {rate: 100, burst: 200}", "  pro-old:\n    throttle: {rate: 100, burst: 200}",
		"    plans: [pro]\n", "    plans: [enterprise]\n")
}

// TestReloadRefusesStrandedKeys: a reload that removed a plan held by
// run-time keys used to succeed, turning them into 403 key:no-plan; one
// that gave a policy key a run-time key's id made /v1/keys list the id
// twice. Both are refused like a bad file, naming the keys (at most ten).
func TestReloadRefusesStrandedKeys(t *testing.T) {
	h := serve(t, testPolicy(t), nil)
	for i := range 12 {
		putKey(h.s.store, &policy.APIKey{ID: fmt.Sprintf("rt-%02d", i), Customer: "acme", Plans: []string{"pro"}, Enabled: true,
			Hash: hashOf(fmt.Sprintf("v%d", i))})
	}
	putKey(h.s.store, &policy.APIKey{ID: "rt-free", Customer: "hooli", Plans: []string{"free"}, Enabled: true, Hash: hashOf("free")})
	before := h.s.Policy()

	// 1. The pro plan removed.
	os.WriteFile(h.policy, []byte(noPro(t)), 0o644)
	err := h.s.Reload()
	if err == nil || h.s.Policy() != before {
		t.Fatalf("1: got %v, want the reload refused and the old policy kept", err)
	}
	msg := err.Error()
	for _, want := range []string{`run-time key "rt-00" (customer "acme") would lose its plans: plans[0]: "pro" is not a usage plan`,
		`run-time key "rt-09"`, "and 2 more run-time keys", "the run-time keys above do not fit this policy"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("1: got %q, want it to hold %q", msg, want)
		}
	}
	if strings.Contains(msg, `"rt-10"`) || strings.Contains(msg, "rt-free") {
		t.Fatalf("1: got %q, want ten keys named, rt-free not", msg)
	}
	if got := h.metric(`tollgate_policy_reloads_total{result="failure"}`); got != 1 {
		t.Fatalf("1: got %v failed reloads, want 1", got)
	}
	ready := h.callWith("GET", "/readyz", "", nil).want(t, "1 readyz", 200, "")
	if !strings.Contains(ready.raw, "would lose its plans") {
		t.Fatalf("1: readyz: got %s", ready.raw)
	}
	if d := h.check("tg_demo_pro_00000000000000001"); d.status != 200 {
		t.Fatalf("1: got %d, want the old policy's answer", d.status)
	}

	// 2. A policy key with a run-time key's id.
	dup := testPolicy(t, "  - id: globex-ent\n", "  - id: rt-free\n")
	os.WriteFile(h.policy, []byte(dup), 0o644)
	if err := h.s.Reload(); err == nil || !strings.Contains(err.Error(), `api_keys: id "rt-free" is the id of a run-time key (customer "hooli")`) {
		t.Fatalf("2: got %v, want the duplicate id refused", err)
	}
	if h.s.Policy() != before {
		t.Fatal("2: the policy changed")
	}

	// 3. Once the keys are gone, the same file loads.
	for i := range 12 {
		h.call("DELETE", fmt.Sprintf("/v1/keys/rt-%02d", i), "").want(t, "3 delete", 204, "")
	}
	os.WriteFile(h.policy, []byte(noPro(t)), 0o644)
	if err := h.s.Reload(); err != nil {
		t.Fatalf("3: got %v, want the reload to succeed", err)
	}
}

// TestStartWithStrandedKeys: keys that do not fit the policy at start (the
// file was edited while the server was down) are reported, and the server
// serves (see checkKeysAtStart).
func TestStartWithStrandedKeys(t *testing.T) {
	dir := "file:" + t.TempDir()
	h := serve(t, testPolicy(t), func(c *Config) { c.Store = dir })
	h.call("POST", "/v1/keys", `{"id":"rt-pro","customer":"acme","plans":["pro"]}`).want(t, "create", 201, "")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	h = serve(t, noPro(t), func(c *Config) { c.Store = dir })
	ready := h.callWith("GET", "/readyz", "", nil).want(t, "readyz", 200, "")
	if !strings.Contains(ready.raw, `run-time key \"rt-pro\" (customer \"acme\") would lose its plans`) {
		t.Fatalf("got readyz %s, want the key named", ready.raw)
	}
	if !strings.Contains(h.logs.String(), "do not fit the policy") {
		t.Fatalf("got logs %s, want the keys reported", h.logs.String())
	}
}
