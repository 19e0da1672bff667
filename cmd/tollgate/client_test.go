package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate/tollgate/admin"
	"github.com/tollgate/tollgate/server"
)

// testToken is the admin token of the test servers.
const testToken = "test-token"

// served is a tollgate serving the payments example in this process.
type served struct {
	admin string // the --admin-addr of its admin API
	authz authv3.AuthorizationClient
}

// serve starts a tollgate on loopback with a memory store, the admin token
// testToken and the admin API on adminAddr, and stops it when the test
// ends; edit, when not nil, changes the config first. The admin calls of
// the test use testToken unless the test sets TOLLGATE_ADMIN_TOKEN again.
func serve(t *testing.T, adminAddr string, edit func(*server.Config)) *served {
	t.Helper()
	cfg := server.Config{PolicyFile: example, GRPCAddr: "127.0.0.1:0", AdminAddr: adminAddr, Store: "memory:",
		AdminToken: testToken, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	conn, err := grpc.NewClient(s.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: got %v, want nil", err)
		}
	})
	t.Setenv("TOLLGATE_ADMIN_TOKEN", testToken)
	t.Setenv("TOLLGATE_ADMIN_ADDR", "")
	addr := s.AdminAddr().String()
	if strings.HasPrefix(adminAddr, "unix:") {
		addr = "unix:" + addr
	}
	return &served{admin: addr, authz: authv3.NewAuthorizationClient(conn)}
}

// run runs tollgate with args and then --admin-addr, so that the flags
// also come after the positional arguments.
func (s *served) run(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	return runArgs(t, append(args, "--admin-addr", s.admin)...)
}

// must runs tollgate like run and fails the test unless it exits 0.
func (s *served) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, status := s.run(t, args...)
	if status != 0 {
		t.Fatalf("tollgate %s: got status %d, stderr %q; want 0", strings.Join(args, " "), status, errs)
	}
	return out
}

// check sends Envoy's CheckRequest for the keyed route of the example with
// key, and returns the HTTP status Envoy would answer.
func (s *served) check(t *testing.T, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/partners/p-1/transactions", Host: "api.example.com",
			Headers: map[string]string{"x-api-key": key}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != 0 {
		return int(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	return 200
}

// field returns the value of the "name: value" line of out.
func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: *(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s: line in\n%s", name, out)
	}
	return strings.TrimSpace(m[1])
}

// rows returns the table's lines split into fields, without the header,
// after checking the header.
func rows(t *testing.T, out string, header ...string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if got := strings.Fields(lines[0]); !slices.Equal(got, header) {
		t.Fatalf("got header %q, want %q", got, header)
	}
	var rs [][]string
	for _, l := range lines[1:] {
		rs = append(rs, strings.Fields(l))
	}
	return rs
}

// row returns the row whose first field is first, or nil.
func row(rs [][]string, first string) []string {
	for _, r := range rs {
		if len(r) > 0 && r[0] == first {
			return r
		}
	}
	return nil
}

var keyHeader = []string{"ID", "CUSTOMER", "PLANS", "STATUS", "EXPIRES", "SOURCE", "NAME"}

func TestKeysLifecycle(t *testing.T) {
	s := serve(t, "127.0.0.1:0", nil)

	// 1. create: the value is printed once, and marked as such.
	out := s.must(t, "keys", "create", "--plan", "pro", "--id", "cli-1", "--customer", "clicust", "--name", "CLI test")
	value := field(t, out, "value")
	if !strings.HasPrefix(value, "tg_") || strings.Count(out, value) != 1 {
		t.Fatalf("1: got value %q, %d times in\n%s\nwant tg_..., once", value, strings.Count(out, value), out)
	}
	if !strings.Contains(out, "shown only once") {
		t.Errorf("1: got\n%s\nwant it to say the value is shown only once", out)
	}
	for name, want := range map[string]string{"id": "cli-1", "customer": "clicust", "name": "CLI test", "plans": "pro",
		"enabled": "yes", "expires": "never", "source": "api"} {
		if got := field(t, out, name); got != want {
			t.Errorf("1: %s: got %q, want %q", name, got, want)
		}
	}
	if got := s.check(t, value); got != 200 {
		t.Errorf("1: check with the new key: got %d, want 200", got)
	}

	// 2. create --json: the API's answer, with the value.
	out = s.must(t, "keys", "create", "--json", "--plan", "free", "--expires", "2099-01-01T00:00:00Z")
	var created admin.KeyView
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("2: got %q, want JSON: %v", out, err)
	}
	if !strings.HasPrefix(created.ID, "key-") || created.Value == "" || !slices.Equal(created.Plans, []string{"free"}) ||
		created.Expires == nil || !created.Expires.Equal(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("2: got %+v, want a key-... with a value, plan free, expiring 2099-01-01", created)
	}
	if !strings.HasPrefix(out, "{\n  \"id\": ") {
		t.Errorf("2: got %q, want indented JSON", out)
	}

	// 3. list: a table of every key, never a value.
	out = s.must(t, "keys", "list")
	if strings.Contains(out, value) || strings.Contains(out, created.Value) {
		t.Errorf("3: got a key value in the list:\n%s", out)
	}
	rs := rows(t, out, keyHeader...)
	if got, want := row(rs, "cli-1"), []string{"cli-1", "clicust", "pro", "active", "never", "api", "CLI", "test"}; !slices.Equal(got, want) {
		t.Errorf("3: got row %q, want %q", got, want)
	}
	if got, want := row(rs, "acme-2026a"), []string{"acme-2026a", "acme", "pro", "active", "2027-06-30T00:00:00Z", "policy"}; !slices.Equal(got, want) {
		t.Errorf("3: got row %q, want %q", got, want)
	}
	if got, want := row(rs, "hooli-old"), []string{"hooli-old", "hooli", "free", "disabled", "never", "policy"}; !slices.Equal(got, want) {
		t.Errorf("3: got row %q, want %q", got, want)
	}
	// An expired key is marked as such (issue 13: it read "enabled").
	if got, want := row(rs, "umbrella-2025"), []string{"umbrella-2025", "umbrella", "free", "expired", "2025-01-01T00:00:00Z", "policy"}; !slices.Equal(got, want) {
		t.Errorf("3: got row %q, want %q", got, want)
	}
	if got, want := row(rs, created.ID), []string{created.ID, created.ID, "free", "active", "2099-01-01T00:00:00Z", "api"}; !slices.Equal(got, want) {
		t.Errorf("3: got row %q, want %q", got, want)
	}
	if got, want := len(rs), 8; got != want {
		t.Errorf("3: got %d rows, want %d (6 policy keys, 2 created):\n%s", got, want, out)
	}

	// 4. list with filters, flags before and after.
	out = s.must(t, "keys", "list", "--customer", "clicust")
	if rs := rows(t, out, keyHeader...); len(rs) != 1 || rs[0][0] != "cli-1" {
		t.Errorf("4: --customer clicust: got\n%s\nwant cli-1 only", out)
	}
	out = s.must(t, "keys", "list", "--plan", "free")
	var ids []string
	for _, r := range rows(t, out, keyHeader...) {
		ids = append(ids, r[0])
	}
	if want := []string{"hooli-old", "initech-free", created.ID, "umbrella-2025"}; !sameSet(ids, want) {
		t.Errorf("4: --plan free: got %q, want %q", ids, want)
	}

	// 5. list --json: the API's answer, a page a line.
	out = s.must(t, "keys", "list", "--json")
	var list struct {
		Keys []map[string]any `json:"items"`
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("5: got %q, want one line (one page)", out)
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("5: got %q, want JSON: %v", out, err)
	}
	if got, want := len(list.Keys), 8; got != want {
		t.Errorf("5: got %d keys, want %d", got, want)
	}
	for _, k := range list.Keys {
		if _, ok := k["value"]; ok {
			t.Errorf("5: got a value in %v, want none", k)
		}
	}

	// 6. get, with the flags before the ID, and after "--".
	out = s.must(t, "keys", "get", "cli-1")
	if got := field(t, out, "hash"); !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(got) {
		t.Errorf("6: hash: got %q, want sha256:<hex>", got)
	}
	if strings.Contains(out, value) || strings.Contains(out, "value:") {
		t.Errorf("6: got the value in\n%s", out)
	}
	out, errs, status := runArgs(t, "keys", "get", "--admin-addr", s.admin, "--json", "acme-2026a")
	var k admin.KeyView
	if status != 0 || json.Unmarshal([]byte(out), &k) != nil || k.ID != "acme-2026a" || k.Source != "policy" || k.Created != nil {
		t.Errorf("6: get --json acme-2026a: got status %d, %q, stderr %q; want the policy key", status, out, errs)
	}
	out, errs, status = runArgs(t, "keys", "get", "--admin-addr", s.admin, "--", "globex-ent")
	if status != 0 || field(t, out, "plans") != "enterprise" {
		t.Errorf("6: get -- globex-ent: got status %d, %q, stderr %q; want 0 and plans enterprise", status, out, errs)
	}

	// 7. disable and enable take effect on the next request.
	out = s.must(t, "keys", "disable", "cli-1")
	if got := field(t, out, "enabled"); got != "no" {
		t.Errorf("7: disable: enabled: got %q, want no", got)
	}
	if got := s.check(t, value); got != 403 {
		t.Errorf("7: check with the disabled key: got %d, want 403", got)
	}
	out = s.must(t, "keys", "enable", "cli-1", "--json")
	if err := json.Unmarshal([]byte(out), &k); err != nil || !k.Enabled {
		t.Errorf("7: enable --json: got %q, want the key enabled", out)
	}
	if got := s.check(t, value); got != 200 {
		t.Errorf("7: check with the enabled key: got %d, want 200", got)
	}

	// 8. set-plans replaces the plans. (In the example every plan covers
	// payments/prod, and a key holds one plan per stage.)
	out = s.must(t, "keys", "set-plans", "cli-1", "--plan", "enterprise")
	if got := field(t, out, "plans"); got != "enterprise" {
		t.Errorf("8: plans: got %q, want enterprise", got)
	}
	if got := field(t, s.must(t, "keys", "get", "cli-1"), "plans"); got != "enterprise" {
		t.Errorf("8: get: plans: got %q, want enterprise", got)
	}

	// 9. rotate: the new key and its value, and the old key's new expiry.
	before := time.Now()
	out = s.must(t, "keys", "rotate", "cli-1", "--grace", "1h", "--new-id", "cli-2")
	if !strings.HasPrefix(out, "new key:\n") || field(t, out, "id") != "cli-2" || field(t, out, "customer") != "clicust" {
		t.Errorf("9: got\n%s\nwant the new key cli-2 of clicust", out)
	}
	newValue := field(t, out, "value")
	if !strings.HasPrefix(newValue, "tg_") || newValue == value || !strings.Contains(out, "shown only once") {
		t.Errorf("9: got value %q in\n%s\nwant a new tg_... value marked as shown once", newValue, out)
	}
	m := regexp.MustCompile(`(?m)^old key cli-1 now expires (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("9: got\n%s\nwant an old key cli-1 now expires ... line", out)
	}
	exp, err := time.Parse(time.RFC3339, m[1])
	if err != nil || exp.Before(before.Add(time.Hour-time.Second)) || exp.After(time.Now().Add(time.Hour)) {
		t.Errorf("9: old key expires %q, want an hour from now", m[1])
	}
	for _, key := range []string{value, newValue} {
		if got := s.check(t, key); got != 200 {
			t.Errorf("9: check within the grace: got %d, want 200", got)
		}
	}

	// 10. delete, and the key is gone.
	if out = s.must(t, "keys", "delete", "cli-2"); out != "deleted key cli-2\n" {
		t.Errorf("10: got %q, want %q", out, "deleted key cli-2\n")
	}
	if got := s.check(t, newValue); got != 403 {
		t.Errorf("10: check with the deleted key: got %d, want 403", got)
	}
	_, errs, status = s.run(t, "keys", "get", "cli-2")
	if want := "tollgate: GET /v1/keys/cli-2: 404 Not Found: "; status != 1 || !strings.HasPrefix(errs, want) {
		t.Errorf("10: get a deleted key: got status %d, stderr %q; want 1, %q...", status, errs, want)
	}
	if out = s.must(t, "keys", "delete", "--json", created.ID); out != "" {
		t.Errorf("10: delete --json: got %q, want nothing", out)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestUsageAndGrant(t *testing.T) {
	s := serve(t, "127.0.0.1:0", nil)
	out := s.must(t, "keys", "create", "--json", "--plan", "pro", "--id", "u-1", "--customer", "ucust")
	var k admin.KeyView
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := s.check(t, k.Value); got != 200 {
			t.Fatalf("check %d: got %d, want 200", i, got)
		}
	}
	today := time.Now().UTC().Format(time.DateOnly)
	header := []string{"DATE", "CUSTOMER", "USED", "REMAINING"}

	// 1. The default report: the last 7 UTC days, today last.
	out = s.must(t, "usage", "--plan", "pro", "--customer", "ucust")
	rs := rows(t, out, header...)
	if len(rs) != 7 {
		t.Fatalf("1: got %d rows, want 7:\n%s", len(rs), out)
	}
	if got, want := rs[6], []string{today, "ucust", "3", "99997"}; !slices.Equal(got, want) {
		t.Errorf("1: today: got %q, want %q", got, want)
	}
	first := time.Now().UTC().AddDate(0, 0, -6).Format(time.DateOnly)
	if got, want := rs[0], []string{first, "ucust", "0", "100000"}; !slices.Equal(got, want) {
		t.Errorf("1: first day: got %q, want %q", got, want)
	}

	// 2. Every customer on the plan, one day.
	out = s.must(t, "usage", "--plan", "pro", "--start", today, "--end", today)
	rs = rows(t, out, header...)
	want := [][]string{{today, "acme", "0", "100000"}, {today, "ucust", "3", "99997"}}
	if !slices.EqualFunc(rs, want, slices.Equal) {
		t.Errorf("2: got %q, want %q", rs, want)
	}

	// 2b. --forecast: each customer's rate and when it runs out, on the
	// last day's rows (3 of 100,000 last the day).
	out = s.must(t, "usage", "--plan", "pro", "--start", today, "--end", today, "--forecast")
	rs = rows(t, out, append(header, "RATE/H", "EXHAUSTION")...)
	if len(rs) != 2 || rs[1][1] != "ucust" || rs[1][5] != "-" || rs[0][4] != "0.0" || rs[1][4] == "0.0" {
		t.Errorf("2b: got %q, want acme at 0.0 an hour, ucust above it, neither running out today", rs)
	}

	// 3. A plan without a quota has no remaining.
	out = s.must(t, "usage", "--plan", "enterprise", "--customer", "globex", "--start", today, "--end", today)
	if got, want := rows(t, out, header...), [][]string{{today, "globex", "0", "-"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("3: got %q, want %q", got, want)
	}

	// 4. --json: the API's answer.
	out = s.must(t, "usage", "--json", "--plan", "pro", "--customer", "ucust", "--start", today, "--end", today)
	var ans struct {
		Plan  string             `json:"plan"`
		Start string             `json:"start"`
		End   string             `json:"end"`
		Items map[string][][]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &ans); err != nil {
		t.Fatalf("4: got %q, want JSON: %v", out, err)
	}
	if ans.Plan != "pro" || ans.Start != today || ans.End != today || len(ans.Items["ucust"]) != 1 ||
		ans.Items["ucust"][0][0] != 3.0 || ans.Items["ucust"][0][1] != 99997.0 {
		t.Errorf("4: got %+v, want pro, today, ucust [[3, 99997]]", ans)
	}

	// 5. grant raises the remaining quota.
	out = s.must(t, "usage", "grant", "ucust", "--plan", "pro", "--requests", "500")
	for name, want := range map[string]string{"customer": "ucust", "plan": "pro", "limit": "100000", "granted": "500",
		"used": "3", "remaining": "100497"} {
		if got := field(t, out, name); got != want {
			t.Errorf("5: %s: got %q, want %q", name, got, want)
		}
	}
	if got := field(t, out, "period"); !strings.HasPrefix(got, "day, "+today+"T00:00:00Z to ") || !strings.HasSuffix(got, " (UTC)") {
		t.Errorf("5: period: got %q, want day, %sT00:00:00Z to ... (UTC)", got, today)
	}
	out = s.must(t, "usage", "grant", "--json", "--plan", "pro", "--requests", "1", "ucust")
	var q admin.QuotaView
	if err := json.Unmarshal([]byte(out), &q); err != nil || q.Granted != 501 || q.Remaining != 100498 {
		t.Errorf("5: grant --json: got %q, want granted 501, remaining 100498", out)
	}
	out = s.must(t, "usage", "--plan", "pro", "--customer", "ucust", "--start", today, "--end", today)
	if got, want := rows(t, out, header...), [][]string{{today, "ucust", "3", "100498"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("5: usage after the grants: got %q, want %q", got, want)
	}
}

func TestAdminErrors(t *testing.T) {
	s := serve(t, "127.0.0.1:0", nil)
	s.must(t, "keys", "create", "--plan", "free", "--id", "e-1")
	cases := []struct {
		name   string
		token  string // TOLLGATE_ADMIN_TOKEN
		args   []string
		status int
		stderr string // the start of stderr
	}{
		{"wrong token", "nope", []string{"keys", "list"}, 1,
			"tollgate: GET /v1/keys?limit=1000: 401 Unauthorized: wrong bearer token\n"},
		{"unknown plan", testToken, []string{"keys", "create", "--plan", "gold"}, 1,
			`tollgate: POST /v1/keys: 400 Bad Request: `},
		{"policy key disable", testToken, []string{"keys", "disable", "acme-2026a"}, 1,
			`tollgate: PATCH /v1/keys/acme-2026a: 409 Conflict: key "acme-2026a" is defined in the policy file`},
		{"policy key rotate", testToken, []string{"keys", "rotate", "globex-ent"}, 1,
			`tollgate: POST /v1/keys/globex-ent/rotate: 409 Conflict: key "globex-ent" is defined in the policy file`},
		{"policy key delete", testToken, []string{"keys", "delete", "initech-free"}, 1,
			`tollgate: DELETE /v1/keys/initech-free: 409 Conflict: `},
		// Both plans are sent; the policy allows one per stage.
		{"two plans on one stage", testToken, []string{"keys", "set-plans", "e-1", "--plan", "free", "--plan", "pro"}, 1,
			`tollgate: PATCH /v1/keys/e-1: 400 Bad Request: body: plans: plans "free" and "pro" both cover stage payments/prod`},
		{"taken id", testToken, []string{"keys", "create", "--plan", "free", "--id", "e-1"}, 1,
			`tollgate: POST /v1/keys: 409 Conflict: key id "e-1" is taken`},
		{"no such key", testToken, []string{"keys", "enable", "nope"}, 1,
			`tollgate: PATCH /v1/keys/nope: 404 Not Found: `},
		{"bad grace", testToken, []string{"keys", "rotate", "e-1", "--grace", "soon"}, 1,
			`tollgate: POST /v1/keys/e-1/rotate: 400 Bad Request: body: grace: "soon" is not a duration`},
		{"bad expiry", testToken, []string{"keys", "create", "--plan", "free", "--expires", "tomorrow"}, 1,
			`tollgate: POST /v1/keys: 400 Bad Request: body: expires: "tomorrow" is not an RFC 3339 time`},
		{"unknown usage plan", testToken, []string{"usage", "--plan", "gold"}, 1,
			`tollgate: GET /v1/usage?end=`},
		{"grant without a key", testToken, []string{"usage", "grant", "nobody", "--plan", "pro", "--requests", "5"}, 1,
			`tollgate: POST /v1/usage/nobody/grant: 404 Not Found: customer "nobody" holds no key on plan "pro"`},
		{"grant on a plan without quota", testToken, []string{"usage", "grant", "globex", "--plan", "enterprise", "--requests", "5"}, 1,
			`tollgate: POST /v1/usage/globex/grant: 400 Bad Request: body: plan: "enterprise" has no quota to raise`},
		{"missing token", "", []string{"keys", "list"}, 2,
			"tollgate: no admin token: give --admin-token-file FILE or set TOLLGATE_ADMIN_TOKEN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("TOLLGATE_ADMIN_TOKEN", c.token)
			out, errs, status := s.run(t, c.args...)
			if status != c.status || !strings.HasPrefix(errs, c.stderr) || out != "" {
				t.Errorf("got status %d, stdout %q, stderr %q; want %d, nothing, %q...", status, out, errs, c.status, c.stderr)
			}
		})
	}
	// The server's message is passed through whole.
	_, errs, _ := s.run(t, "keys", "create", "--plan", "gold")
	if !strings.Contains(errs, `"gold"`) || strings.Count(errs, "\n") != 1 {
		t.Errorf(`unknown plan: got %q, want one line naming "gold"`, errs)
	}
	_, errs, _ = s.run(t, "usage", "--plan", "gold")
	if !strings.Contains(errs, `: 400 Bad Request: query: plan: "gold" is not a usage plan`) {
		t.Errorf(`unknown usage plan: got %q, want the 400 and its message`, errs)
	}
}

func TestAdminAPIOff(t *testing.T) {
	s := serve(t, "127.0.0.1:0", func(c *server.Config) { c.AdminToken = "" })
	_, errs, status := s.run(t, "keys", "list")
	if want := "tollgate: GET /v1/keys?limit=1000: 503 Service Unavailable: the admin API is off"; status != 1 || !strings.HasPrefix(errs, want) {
		t.Errorf("got status %d, stderr %q; want 1, %q...", status, errs, want)
	}
}

func TestAdminUnreachable(t *testing.T) {
	t.Setenv("TOLLGATE_ADMIN_TOKEN", testToken)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	for _, a := range []string{addr, "http://" + addr, "unix:" + filepath.Join(t.TempDir(), "none.sock")} {
		out, errs, status := runArgs(t, "keys", "list", "--admin-addr", a)
		want := "tollgate: GET /v1/keys?limit=1000: cannot reach the admin API at " + a + " "
		if status != 1 || out != "" || !strings.HasPrefix(errs, want) {
			t.Errorf("%s: got status %d, stderr %q; want 1, %q...", a, status, errs, want)
		}
	}
	const want = `": want host:port, http://host:port or unix:/path` + "\n"
	bad := []struct{ addr, stderr string }{
		{"localhost", `tollgate: --admin-addr "localhost` + want},
		{"ftp://" + addr, `tollgate: --admin-addr "ftp://` + addr + want},
		{"http://" + addr + "?x=1", `tollgate: --admin-addr "http://` + addr + "?x=1" + want},
		{"unix:", "tollgate: --admin-addr \"unix:\": want unix:/path, with the socket path after the colon\n"},
	}
	for _, c := range bad {
		_, errs, status := runArgs(t, "keys", "list", "--admin-addr", c.addr)
		if status != 1 || errs != c.stderr {
			t.Errorf("%s: got status %d, stderr %q; want 1, %q", c.addr, status, errs, c.stderr)
		}
	}
}

func TestAdminTokenFileAndAddrFromEnv(t *testing.T) {
	s := serve(t, "127.0.0.1:0", nil)
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "")
	t.Setenv("TOLLGATE_ADMIN_ADDR", s.admin)
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	os.WriteFile(good, []byte("  "+testToken+"\n"), 0o600)
	out, errs, status := runArgs(t, "keys", "list", "--admin-token-file", good)
	if status != 0 || row(rows(t, out, keyHeader...), "acme-2026a") == nil {
		t.Errorf("token file: got status %d, stdout %q, stderr %q; want 0 and the keys", status, out, errs)
	}
	// The file wins over the environment.
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "nope")
	if _, errs, status := runArgs(t, "keys", "list", "--admin-token-file", good); status != 0 {
		t.Errorf("token file and env: got status %d, stderr %q; want 0", status, errs)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	cases := []struct{ file, want string }{
		{empty, "tollgate: --admin-token-file " + empty + ": the file is empty\n"},
		{filepath.Join(dir, "missing"), "tollgate: --admin-token-file: open " + filepath.Join(dir, "missing") + ": no such file or directory\n"},
	}
	for _, c := range cases {
		if _, errs, status := runArgs(t, "keys", "list", "--admin-token-file", c.file); status != 1 || errs != c.want {
			t.Errorf("%s: got status %d, stderr %q; want 1, %q", c.file, status, errs, c.want)
		}
	}
}

func TestAdminOverUnixSocket(t *testing.T) {
	// Unix socket paths are limited to about 100 bytes; t.TempDir's are
	// longer.
	dir, err := os.MkdirTemp("", "tg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := serve(t, "unix:"+filepath.Join(dir, "admin.sock"), nil)
	out := s.must(t, "keys", "create", "--plan", "enterprise", "--id", "sock-1")
	if got := field(t, out, "id"); got != "sock-1" {
		t.Errorf("create: id: got %q, want sock-1", got)
	}
	if got := s.check(t, field(t, out, "value")); got != 200 {
		t.Errorf("check with the new key: got %d, want 200", got)
	}
	out = s.must(t, "keys", "list", "--plan", "enterprise")
	var ids []string
	for _, r := range rows(t, out, keyHeader...) {
		ids = append(ids, r[0])
	}
	if want := []string{"globex-ent", "sock-1"}; !slices.Equal(ids, want) {
		t.Errorf("list: got %q, want %q", ids, want)
	}
}

func TestAdminBadUsage(t *testing.T) {
	t.Setenv("TOLLGATE_ADMIN_TOKEN", testToken)
	// No server: bad usage is caught before any call.
	addr := "127.0.0.1:1"
	cases := []struct {
		args   []string
		stderr string // held by stderr
	}{
		{[]string{"keys"}, "usage: tollgate keys <command>"},
		{[]string{"keys", "frob"}, `tollgate keys: unknown command "frob"`},
		{[]string{"keys", "get"}, "tollgate keys get: missing ID\n\nusage: tollgate keys get [flags] ID\n"},
		{[]string{"keys", "get", "a", "b"}, `tollgate keys get: unexpected argument "b"`},
		{[]string{"keys", "enable"}, "tollgate keys enable: missing ID"},
		{[]string{"keys", "disable"}, "tollgate keys disable: missing ID"},
		{[]string{"keys", "delete"}, "tollgate keys delete: missing ID"},
		{[]string{"keys", "rotate", "--grace", "1h"}, "tollgate keys rotate: missing ID"},
		{[]string{"keys", "set-plans", "a"}, "tollgate keys set-plans: missing --plan"},
		{[]string{"keys", "set-plans", "--plan", "pro"}, "tollgate keys set-plans: missing ID"},
		{[]string{"keys", "create"}, "tollgate keys create: missing --plan"},
		{[]string{"keys", "create", "--plan", "pro", "extra"}, `tollgate keys create: unexpected argument "extra"`},
		{[]string{"keys", "list", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"usage"}, "tollgate usage: missing --plan"},
		{[]string{"usage", "acme", "--plan", "pro"}, `tollgate usage: unexpected argument "acme"`},
		{[]string{"usage", "--plan", "pro", "--start", "2026-13-01"}, `tollgate usage: --start "2026-13-01" is not a date`},
		{[]string{"usage", "--plan", "pro", "--end", "yesterday"}, `tollgate usage: --end "yesterday" is not a date`},
		{[]string{"usage", "grant", "--plan", "pro", "--requests", "5"}, "tollgate usage grant: missing CUSTOMER"},
		{[]string{"usage", "grant", "acme", "--requests", "5"}, "tollgate usage grant: missing --plan"},
		{[]string{"usage", "grant", "acme", "--plan", "pro"}, "tollgate usage grant: missing --requests"},
		{[]string{"usage", "grant", "acme", "--plan", "pro", "--requests", "many"}, `invalid value "many" for flag -requests`},
	}
	for _, c := range cases {
		out, errs, status := runArgs(t, append(c.args, "--admin-addr", addr)...)
		if status != 2 || out != "" || !strings.Contains(errs, c.stderr) {
			t.Errorf("%q: got status %d, stdout %q, stderr %q; want 2, nothing, %q", c.args, status, out, errs, c.stderr)
		}
	}
	// -h shows where the ID goes, and exits 0.
	help := []struct {
		args []string
		want string
	}{
		{[]string{"keys", "get", "-h"}, "usage: tollgate keys get [flags] ID\n"},
		{[]string{"keys", "set-plans", "-h"}, "usage: tollgate keys set-plans [flags] ID --plan P [--plan P2 ...]\n"},
		{[]string{"usage", "grant", "-h"}, "usage: tollgate usage grant [flags] CUSTOMER --plan P --requests N\n"},
		{[]string{"usage", "-h"}, "usage: tollgate usage --plan P [--customer C]"},
	}
	for _, h := range help {
		_, errs, status := runArgs(t, h.args...)
		if status != 0 || !strings.HasPrefix(errs, h.want) || !strings.Contains(errs, "-admin-addr address") {
			t.Errorf("%q: got status %d, stderr %q; want 0, %q... with the admin flags", h.args, status, errs, h.want)
		}
	}
	if out, _, status := runArgs(t, "keys", "help"); status != 0 || !strings.Contains(out, "set-plans") {
		t.Errorf("keys help: got status %d, %q; want 0 and the commands", status, out)
	}
}
