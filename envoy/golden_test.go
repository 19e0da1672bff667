package envoy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/envoy"
)

var update = flag.Bool("update", false, "rewrite the golden responses in testdata/check")

// goldenCase says how to answer testdata/check/<name>.request.json: with
// which policy (and text edits to it), after sending the same request
// warmup times at the same instant t0.
type goldenCase struct {
	policy string
	edits  []string
	warmup int
}

var goldenCases = map[string]goldenCase{
	// The shipped example.
	"allow_anonymous":                     {policy: paymentsPolicy},
	"allow_partner_pro":                   {policy: paymentsPolicy},
	"allow_partner_enterprise_extensions": {policy: paymentsPolicy},
	"key_missing":                         {policy: paymentsPolicy},
	"key_unknown":                         {policy: paymentsPolicy},
	"key_malformed":                       {policy: paymentsPolicy},
	"key_disabled":                        {policy: paymentsPolicy},
	"key_expired":                         {policy: paymentsPolicy},
	"waf_blocklist":                       {policy: paymentsPolicy},
	"waf_skip_status":                     {policy: paymentsPolicy},
	"query_and_escapes":                   {policy: paymentsPolicy},
	"escaped_public_route":                {policy: paymentsPolicy},
	"unknown_stage_extension":             {policy: paymentsPolicy},
	"invalid_no_http":                     {policy: paymentsPolicy},
	"invalid_pipe_peer":                   {policy: paymentsPolicy},
	"invalid_relative_path":               {policy: paymentsPolicy},

	// testdata/tight.yaml: unknown routes denied, explain on, strip_api_key.
	"tight_unknown_route":        {policy: tightPolicy},
	"tight_throttle_route":       {policy: tightPolicy, warmup: 2},
	"tight_throttle_plan":        {policy: tightPolicy, warmup: 20},
	"tight_quota":                {policy: tightPolicy, warmup: 2},
	"tight_key_unknown_explain":  {policy: tightPolicy},
	"tight_key_missing_explain":  {policy: tightPolicy},
	"tight_key_disabled_explain": {policy: tightPolicy},
	"tight_key_expired_explain":  {policy: tightPolicy},
	"tight_key_no_plan_explain":  {policy: tightPolicy},
	"tight_strip_key":            {policy: tightPolicy},
	"tight_strip_key_anonymous":  {policy: tightPolicy},
	"tight_waf_custom_429":       {policy: tightPolicy, warmup: 1},
	"tight_headers_legacy":       {policy: tightPolicy, edits: []string{"headers: ietf", "headers: legacy"}},
	"tight_headers_both":         {policy: tightPolicy, edits: []string{"headers: ietf", "headers: both"}},
	"tight_headers_both_keyed":   {policy: tightPolicy, edits: []string{"headers: ietf", "headers: both"}},
	"tight_headers_none":         {policy: tightPolicy, edits: []string{"headers: ietf", "headers: none"}},
	"tight_headers_none_429":     {policy: tightPolicy, edits: []string{"headers: ietf", "headers: none"}, warmup: 2},
	// Shadow mode: allowed past the limits, x-tollgate-shadow upstream.
	"tight_shadow_plan":  {policy: tightPolicy, edits: []string{"throttle: {rate: 0.001, burst: 20}", "throttle: {rate: 0.001, burst: 20, mode: shadow}"}, warmup: 20},
	"tight_shadow_quota": {policy: tightPolicy, edits: []string{"quota: {limit: 2, period: day}", "quota: {limit: 2, period: day, mode: shadow}"}, warmup: 2},
}

const goldenDir = "testdata/check"

// goldenNames returns the names of goldenCases, sorted.
func goldenNames() []string { return slices.Sorted(maps.Keys(goldenCases)) }

// readCheckRequest reads a CheckRequest in protojson; unknown fields are
// an error, so that a typo in a golden request cannot go unnoticed.
func readCheckRequest(t testing.TB, path string) *authv3.CheckRequest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	req := new(authv3.CheckRequest)
	if err := protojson.Unmarshal(data, req); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return req
}

// formatResponse renders resp in protojson with a stable layout
// (protojson's own spacing varies on purpose).
func formatResponse(t testing.TB, resp *authv3.CheckResponse) []byte {
	t.Helper()
	data, err := protojson.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// readCheckResponse reads a golden response.
func readCheckResponse(t testing.TB, path string) *authv3.CheckResponse {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	resp := new(authv3.CheckResponse)
	if err := protojson.Unmarshal(data, resp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp
}

// TestGoldenCasesListed guards against a golden request that no case runs,
// and a case whose request file is missing.
func TestGoldenCasesListed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".request.json"))
	}
	for i, name := range names {
		if _, ok := goldenCases[name]; !ok {
			t.Errorf("step %d: got request file %s.request.json, want an entry in goldenCases", i, name)
		}
	}
	i := 0
	for name := range goldenCases {
		if !slices.Contains(names, name) {
			t.Errorf("step %d: got case %s, want %s/%s.request.json", i, name, goldenDir, name)
		}
		i++
	}
}

// TestCheckGolden answers each golden request through AuthzServer.Check
// with the full engine and compares the answer with its golden response.
// Run with -update to rewrite the responses, then review each by hand
// against the package doc's "Responses".
func TestCheckGolden(t *testing.T) {
	for _, name := range goldenNames() {
		t.Run(name, func(t *testing.T) {
			c := goldenCases[name]
			e := newEngine(t, c.policy, c.edits...)
			s := &envoy.AuthzServer{Decider: e}
			req := readCheckRequest(t, filepath.Join(goldenDir, name+".request.json"))
			var resp *authv3.CheckResponse
			for i := 0; i <= c.warmup; i++ {
				var err error
				if resp, err = s.Check(context.Background(), req); err != nil {
					t.Fatalf("step %d: got error %v, want none", i, err)
				}
			}
			if n := e.errs.Load(); n != 0 {
				t.Fatalf("step %d: got %d evaluation errors, want 0", c.warmup, n)
			}
			if err := resp.ValidateAll(); err != nil {
				t.Errorf("step %d: got %v, want a valid CheckResponse", c.warmup, err)
			}
			got := formatResponse(t, resp)
			path := filepath.Join(goldenDir, name+".response.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("step %d: got\n%s\nwant\n%s", c.warmup, got, want)
			}
			if !proto.Equal(resp, readCheckResponse(t, path)) {
				t.Errorf("step %d: got a response unequal to %s as a message", c.warmup, path)
			}
		})
	}
}
