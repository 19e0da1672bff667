// Package keyjson is the JSON record of a run-time API key, as the stores
// that keep keys outside memory write it (store/file in bbolt, store/redis in
// a Redis hash): the key's hash, never its value.
//
//	b, err := keyjson.Encode(k)
//	k, err := keyjson.Decode(b)
//
// It has no state; its functions are safe for concurrent use.
package keyjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// record is a run-time key as stored.
type record struct {
	ID       string     `json:"id"`
	Customer string     `json:"customer"`
	Name     string     `json:"name,omitempty"`
	Hash     string     `json:"hash"` // "sha256:<hex>"
	Plans    []string   `json:"plans"`
	Enabled  bool       `json:"enabled"`
	Expires  *time.Time `json:"expires,omitempty"`
	Created  time.Time  `json:"created"`
	// RotatedTo: the key that replaced this one (rotation); absent when
	// none.
	RotatedTo string `json:"rotated_to,omitempty"`
}

// Encode returns k's record.
func Encode(k *policy.APIKey) ([]byte, error) {
	r := record{ID: k.ID, Customer: k.Customer, Name: k.Name, Hash: policy.KeyHashText(k.Hash),
		Plans: k.Plans, Enabled: k.Enabled, Created: k.Created.UTC(), RotatedTo: k.RotatedTo}
	if !k.Expires.IsZero() {
		t := k.Expires.UTC()
		r.Expires = &t
	}
	return json.Marshal(r)
}

// Decode returns the key of a record, strictly: an unknown field, a bad hash,
// id or customer is an error.
func Decode(b []byte) (*policy.APIKey, error) {
	var r record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	k := &policy.APIKey{ID: r.ID, Customer: r.Customer, Name: r.Name, Plans: r.Plans, Enabled: r.Enabled, Created: r.Created,
		RotatedTo: r.RotatedTo}
	var ok bool
	if k.Hash, ok = policy.ParseKeyHash(r.Hash); !ok {
		return nil, fmt.Errorf("hash %q is not sha256:<64 hex>", r.Hash)
	}
	if r.Expires != nil {
		k.Expires = *r.Expires
	}
	if !storedID(k.ID) || !storedID(k.Customer) || (k.RotatedTo != "" && !storedID(k.RotatedTo)) {
		return nil, fmt.Errorf("id %q or customer %q is not valid", k.ID, k.Customer)
	}
	return k, nil
}

// storedID reports whether s is an id or customer a record may hold: a
// valid one, or "." and "..", which were valid when records were first
// written (a store that holds one still opens).
func storedID(s string) bool { return policy.ValidKeyID(s) || s == "." || s == ".." }
