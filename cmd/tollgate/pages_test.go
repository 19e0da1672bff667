package main

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server"
	"github.com/tollgate/tollgate/store/file"
)

// TestListsStreamPages: keys list and usage follow the pages of the admin
// API (the listing used to be one answer of every key) and print one table,
// or one JSON line a page.
func TestListsStreamPages(t *testing.T) {
	dir := t.TempDir()
	st, err := file.Open(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []*policy.APIKey
	for i := range 1500 {
		keys = append(keys, &policy.APIKey{ID: fmt.Sprintf("rt-%04d", i), Customer: fmt.Sprintf("cust-%04d", i),
			Plans: []string{"free"}, Enabled: true, Hash: sha256.Sum256(fmt.Appendf(nil, "v%d", i))})
	}
	if err := st.ImportKeys(keys); err != nil {
		t.Fatal(err)
	}
	st.Close()
	s := serve(t, "127.0.0.1:0", func(c *server.Config) { c.Store = "file:" + dir })

	out := s.must(t, "keys", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1+1506 || !strings.HasPrefix(lines[0], "ID") || strings.Count(out, "CUSTOMER") != 1 {
		t.Fatalf("keys list: got %d lines, want a header and 1506 keys", len(lines))
	}
	if out := s.must(t, "keys", "list", "--json"); strings.Count(out, "\n") != 2 || !strings.Contains(out, `"next":"rt-0995"`) {
		t.Fatalf("keys list --json: got %d lines, want two pages", strings.Count(out, "\n"))
	}
	out = s.must(t, "usage", "--plan", "free", "--start", "2026-11-20", "--end", "2026-11-20")
	if n := strings.Count(out, "\n"); n != 1+1500+3 || strings.Count(out, "DATE") != 1 {
		t.Fatalf("usage: got %d lines, want a header and 1503 customers", n)
	}
	if out := s.must(t, "usage", "--plan", "free", "--json", "--start", "2026-11-20", "--end", "2026-11-20"); strings.Count(out, "\n") != 2 {
		t.Fatalf("usage --json: got %d lines, want two pages", strings.Count(out, "\n"))
	}
}
