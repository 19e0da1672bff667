package keyjson

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policy"
)

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for _, k := range []*policy.APIKey{
		{ID: "acme-rt", Customer: "acme", Name: "Acme batch", Hash: sha256.Sum256([]byte("v")), Plans: []string{"pro"}, Enabled: true, Created: at, Expires: at.Add(time.Hour)},
		{ID: "k", Customer: "k", Hash: sha256.Sum256([]byte("w")), Plans: []string{}, Created: at},
	} {
		b, err := Encode(k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got.ID != k.ID || got.Customer != k.Customer || got.Name != k.Name || got.Hash != k.Hash || got.Enabled != k.Enabled ||
			strings.Join(got.Plans, ",") != strings.Join(k.Plans, ",") || !got.Created.Equal(k.Created) || !got.Expires.Equal(k.Expires) {
			t.Errorf("got %+v, want %+v", got, k)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	zero := `"sha256:` + strings.Repeat("0", 64) + `"`
	for _, c := range []struct{ rec, want string }{
		{`{"id":"k","customer":"k","hash":"sha256:zz","plans":[],"enabled":true,"created":"2026-11-20T12:00:00Z"}`, `hash "sha256:zz" is not sha256:<64 hex>`},
		{`{"id":"k","customer":"k","hash":` + zero + `,"plans":[],"value":"x","created":"2026-11-20T12:00:00Z"}`, `unknown field "value"`},
		{`{"id":"a b","customer":"k","hash":` + zero + `,"plans":[],"created":"2026-11-20T12:00:00Z"}`, `id "a b" or customer "k" is not valid`},
		{`[]`, `cannot unmarshal array`},
	} {
		if _, err := Decode([]byte(c.rec)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.rec, err, c.want)
		}
	}
}
