package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate/tollgate/policy"
)

// Sources of a key, as the admin API shows them.
const (
	sourcePolicy = "policy"
	sourceAPI    = "api"
)

// maxNameLen bounds a key's name, in bytes.
const maxNameLen = 200

// defaultGrace is how long a rotated key keeps working when the rotate call
// names no grace.
const defaultGrace = 24 * time.Hour

// maxGrace bounds a rotation's grace.
const maxGrace = 366 * 24 * time.Hour

// KeyView is a key as the admin API shows it: never its value, except in the
// answer that creates it.
type KeyView struct {
	ID       string     `json:"id"`
	Customer string     `json:"customer"`
	Name     string     `json:"name"`
	Plans    []string   `json:"plans"`
	Enabled  bool       `json:"enabled"`
	Expires  *time.Time `json:"expires"` // null: never
	Created  *time.Time `json:"created"` // null: a policy-file key
	Source   string     `json:"source"`  // "policy" or "api"
	Hash     string     `json:"hash"`    // "sha256:<hex>"
	// RotatedTo is the key that replaced this one: it works until its
	// grace ends (expires). Absent when it was never rotated.
	RotatedTo string `json:"rotated_to,omitempty"`
	// Value is the key itself, shown once: when it is created.
	Value string `json:"value,omitempty"`
}

func viewOf(k *policy.APIKey) KeyView {
	v := KeyView{ID: k.ID, Customer: k.Customer, Name: k.Name, Plans: k.Plans, Enabled: k.Enabled,
		Source: sourceAPI, Hash: policy.KeyHashText(k.Hash), RotatedTo: k.RotatedTo}
	if v.Plans == nil {
		v.Plans = []string{}
	}
	if k.FromPolicy {
		v.Source = sourcePolicy
	}
	if !k.Expires.IsZero() {
		t := k.Expires.UTC()
		v.Expires = &t
	}
	if !k.Created.IsZero() {
		t := k.Created.UTC()
		v.Created = &t
	}
	return v
}

// findKey returns the key with the id: the run-time key if there is one,
// else the policy file's, else a 404 error.
func (s *Server) findKey(p *policy.Policy, id string) (*policy.APIKey, error) {
	rt, err := s.store.RuntimeKey(id)
	if err != nil || rt != nil {
		return rt, err
	}
	if k := p.KeyByID(id); k != nil {
		return k, nil
	}
	return nil, errorf(http.StatusNotFound, "no key with id %q", id)
}

// writableKey returns the run-time key with the id for a change: 404 when
// there is no key, 409 when it is the policy file's.
func (s *Server) writableKey(p *policy.Policy, id string) (*policy.APIKey, error) {
	k, err := s.findKey(p, id)
	if err != nil {
		return nil, err
	}
	if k.FromPolicy {
		return nil, errorf(http.StatusConflict, "key %q is defined in the policy file %s and is read-only here: change it there", id, p.File)
	}
	return k, nil
}

// idTaken returns a 409 error when a key (run-time or policy file) has id.
func (s *Server) idTaken(p *policy.Policy, id string) error {
	if p.KeyByID(id) != nil {
		return errorf(http.StatusConflict, "key id %q is taken by a key of the policy file", id)
	}
	rt, err := s.store.RuntimeKey(id)
	if err != nil {
		return err
	}
	if rt != nil {
		return errorf(http.StatusConflict, "key id %q is taken", id)
	}
	return nil
}

// newKeyValue returns a fresh key value: "tg_" and 40 characters of
// [A-Za-z0-9] from crypto/rand (238 bits), and its hash.
func newKeyValue() (string, [sha256.Size]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 0, 43)
	b = append(b, "tg_"...)
	var buf [64]byte
	for len(b) < cap(b) {
		rand.Read(buf[:]) // never fails (crypto/rand)
		for _, x := range buf {
			// 248 = 4 × 62: rejecting the rest keeps every character
			// equally likely.
			if x < 248 && len(b) < cap(b) {
				b = append(b, alphabet[x%62])
			}
		}
	}
	v := string(b)
	return v, sha256.Sum256(b)
}

// newKeyID returns a fresh key id: "key-" and 16 hex digits.
func newKeyID() string {
	var raw [8]byte
	rand.Read(raw[:])
	return "key-" + hex.EncodeToString(raw[:])
}

// problems collects the validation errors of one request, reported at once.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errorf(http.StatusBadRequest, "%s", strings.Join(p, "; "))
}

// checkID records a problem when s is not a valid key id or customer.
func (p *problems) checkID(field, s string) {
	if !policy.ValidKeyID(s) {
		p.add("body: %s: %q is not valid (%s)", field, s, policy.KeyIDRule)
	}
}

// checkName records a problem when s is not a printable name of at most
// maxNameLen bytes.
func (p *problems) checkName(s string) {
	switch {
	case len(s) > maxNameLen:
		p.add("body: name: longer than %d bytes", maxNameLen)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }):
		p.add("body: name: %q holds characters that are not printable", s)
	}
}

// checkPlans records the policy's objections to plans.
func (p *problems) checkPlans(pol *policy.Policy, plans []string) {
	if err := pol.CheckKeyPlans(plans); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p.add("%s", line)
		}
	}
}

// parseExpires parses an expiry, which must be after now.
func (p *problems) parseExpires(s string, now time.Time) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	switch {
	case err != nil:
		p.add("body: expires: %q is not an RFC 3339 time such as 2027-06-30T00:00:00Z", s)
	case !t.After(now):
		p.add("body: expires: %s is not in the future", s)
	}
	return t
}

// getKey answers GET /v1/keys/{id}.
func (s *Server) getKey(w http.ResponseWriter, r *http.Request) {
	k, err := s.findKey(s.policy.Load(), r.PathValue("id"))
	if err != nil {
		s.failWith(w, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(k))
}

// createKeyBody is the body of POST /v1/keys.
type createKeyBody struct {
	ID       *string  `json:"id"`
	Customer *string  `json:"customer"`
	Name     *string  `json:"name"`
	Plans    []string `json:"plans"`
	Expires  *string  `json:"expires"`
}

// createKey answers POST /v1/keys: 201 with the new key and its value.
func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var body createKeyBody
	if err := decodeBody(w, r, &body, false); err != nil {
		s.failWith(w, err)
		return
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	p, now := s.policy.Load(), s.now()
	var bad problems
	k := &policy.APIKey{Enabled: true, Created: now}
	if body.ID != nil {
		bad.checkID("id", *body.ID)
		k.ID = *body.ID
	} else {
		k.ID = newKeyID()
	}
	k.Customer = k.ID
	if body.Customer != nil {
		bad.checkID("customer", *body.Customer)
		k.Customer = *body.Customer
	}
	if body.Name != nil {
		bad.checkName(*body.Name)
		k.Name = *body.Name
	}
	bad.checkPlans(p, body.Plans)
	k.Plans = body.Plans
	if body.Expires != nil {
		k.Expires = bad.parseExpires(*body.Expires, now)
	}
	if err := bad.err(); err != nil {
		s.failWith(w, err)
		return
	}
	if err := s.idTaken(p, k.ID); err != nil {
		s.failWith(w, err)
		return
	}
	value, hash := newKeyValue()
	k.Hash = hash
	if err := s.store.SaveKey(k, nil); err != nil {
		s.failWith(w, err)
		return
	}
	s.keys.invalidate()
	s.log.Info("admin: key created", "key_id", k.ID, "customer", k.Customer, "plans", k.Plans)
	v := viewOf(k)
	v.Value = value
	w.Header().Set("Location", "/v1/keys/"+k.ID)
	writeJSON(w, http.StatusCreated, v)
}

// patchKeyBody is the body of PATCH /v1/keys/{id}. Expires is raw so that
// null (never expires) and absent (unchanged) differ.
type patchKeyBody struct {
	Enabled *bool           `json:"enabled"`
	Plans   []string        `json:"plans"`
	Name    *string         `json:"name"`
	Expires json.RawMessage `json:"expires"`
}

// patchKey answers PATCH /v1/keys/{id}: 200 with the changed key. The
// change is seen by the next request.
func (s *Server) patchKey(w http.ResponseWriter, r *http.Request) {
	var body patchKeyBody
	if err := decodeBody(w, r, &body, false); err != nil {
		s.failWith(w, err)
		return
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	p, now := s.policy.Load(), s.now()
	old, err := s.writableKey(p, r.PathValue("id"))
	if err != nil {
		s.failWith(w, err)
		return
	}
	k := *old // the store keeps old: change a copy
	var bad problems
	var changed []string
	if body.Enabled != nil {
		k.Enabled = *body.Enabled
		changed = append(changed, "enabled")
	}
	if body.Plans != nil {
		bad.checkPlans(p, body.Plans)
		k.Plans = body.Plans
		changed = append(changed, "plans")
	}
	if body.Name != nil {
		bad.checkName(*body.Name)
		k.Name = *body.Name
		changed = append(changed, "name")
	}
	if body.Expires != nil {
		changed = append(changed, "expires")
		var str *string
		if err := json.Unmarshal(body.Expires, &str); err != nil {
			bad.add("body: expires: %s is not an RFC 3339 time in a string, or null", body.Expires)
		} else if str == nil {
			k.Expires = time.Time{}
		} else {
			k.Expires = bad.parseExpires(*str, now)
		}
	}
	if len(changed) == 0 {
		bad.add("body: nothing to change (want one or more of enabled, plans, name, expires)")
	}
	if err := bad.err(); err != nil {
		s.failWith(w, err)
		return
	}
	if err := s.store.SaveKey(&k, old); err != nil {
		s.failWith(w, err)
		return
	}
	s.keys.invalidate()
	s.log.Info("admin: key changed", "key_id", k.ID, "fields", changed, "enabled", k.Enabled, "plans", k.Plans)
	writeJSON(w, http.StatusOK, viewOf(&k))
}

// deleteKey answers DELETE /v1/keys/{id}: 204.
func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	p := s.policy.Load()
	k, err := s.writableKey(p, r.PathValue("id"))
	if err != nil {
		s.failWith(w, err)
		return
	}
	if _, err := s.store.DeleteKey(k.ID); err != nil {
		s.failWith(w, err)
		return
	}
	s.keys.invalidate()
	s.log.Info("admin: key deleted", "key_id", k.ID)
	w.WriteHeader(http.StatusNoContent)
}

// rotatable returns a 409 error when k cannot be rotated at now: it
// expired, or a rotation already retired it.
func rotatable(k *policy.APIKey, now time.Time) error {
	switch {
	case k.RotatedTo != "" && (k.Expires.IsZero() || now.Before(k.Expires)):
		return errorf(http.StatusConflict, "key %q was rotated to %q and is in its grace until %s: rotate %q instead",
			k.ID, k.RotatedTo, k.Expires.UTC().Format(time.RFC3339), k.RotatedTo)
	case !k.Expires.IsZero() && !now.Before(k.Expires):
		return errorf(http.StatusConflict, "key %q expired at %s: create a new key instead", k.ID, k.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// rotateKeyBody is the body of POST /v1/keys/{id}/rotate.
type rotateKeyBody struct {
	Grace *string `json:"grace"`
	ID    *string `json:"id"`
}

// rotateKey answers POST /v1/keys/{id}/rotate: a new key for the same
// customer, plans, name, state and contract expiry, 201 with its value; the
// old key now expires when the grace ends (or earlier, when it expired
// earlier anyway) and names the new one (RotatedTo). A key in its grace is
// not rotated again (409): its expiry is the grace end, not the contract's,
// and a retried call would make a second new key. Usage and quota belong to
// the customer, so they carry over.
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	var body rotateKeyBody
	if err := decodeBody(w, r, &body, true); err != nil {
		s.failWith(w, err)
		return
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	p, now := s.policy.Load(), s.now()
	var bad problems
	grace := defaultGrace
	if body.Grace != nil {
		g, err := time.ParseDuration(*body.Grace)
		switch {
		case err != nil:
			bad.add("body: grace: %q is not a duration such as 24h or 90m", *body.Grace)
		case g < 0 || g > maxGrace:
			bad.add("body: grace: %s is not between 0s and %s", *body.Grace, maxGrace)
		}
		grace = g
	}
	newID := newKeyID()
	if body.ID != nil {
		bad.checkID("id", *body.ID)
		newID = *body.ID
	}
	if err := bad.err(); err != nil {
		s.failWith(w, err)
		return
	}
	old, err := s.writableKey(p, r.PathValue("id"))
	if err != nil {
		s.failWith(w, err)
		return
	}
	if err := rotatable(old, now); err != nil {
		s.failWith(w, err)
		return
	}
	if err := s.idTaken(p, newID); err != nil {
		s.failWith(w, err)
		return
	}
	value, hash := newKeyValue()
	nk := &policy.APIKey{ID: newID, Customer: old.Customer, Name: old.Name, Hash: hash,
		Plans: slices.Clone(old.Plans), Enabled: old.Enabled, Expires: old.Expires, Created: now}
	retired := *old
	retired.RotatedTo = nk.ID
	if end := now.Add(grace); retired.Expires.IsZero() || end.Before(retired.Expires) {
		retired.Expires = end
	}
	if err := s.store.SaveKey(nk, nil); err != nil {
		s.failWith(w, err)
		return
	}
	if err := s.store.SaveKey(&retired, old); err != nil {
		// Undo the new key, so that a failed call changes nothing.
		if _, derr := s.store.DeleteKey(nk.ID); derr != nil {
			err = errors.Join(err, derr)
		}
		s.keys.invalidate()
		s.failWith(w, err)
		return
	}
	s.keys.invalidate()
	s.log.Info("admin: key rotated", "key_id", old.ID, "new_key_id", nk.ID, "customer", nk.Customer,
		"old_expires", retired.Expires.UTC())
	v := viewOf(nk)
	v.Value = value
	w.Header().Set("Location", "/v1/keys/"+nk.ID)
	writeJSON(w, http.StatusCreated, v)
}
