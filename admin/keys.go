package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate/tollgate/policy"
)

// maxNameLen bounds a key's name, in bytes.
const maxNameLen = 200

// defaultGrace is how long a rotated key keeps working when the rotate call
// names no grace.
const defaultGrace = 24 * time.Hour

// maxGrace bounds a rotation's grace.
const maxGrace = 366 * 24 * time.Hour

// viewOf returns the key as the admin API shows it, without its value.
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
// else the policy file's, else ErrNotFound.
func (a *API) findKey(p *policy.Policy, id string) (*policy.APIKey, error) {
	rt, err := a.cfg.Keys.RuntimeKey(id)
	if err != nil || rt != nil {
		return rt, err
	}
	if k := p.KeyByID(id); k != nil {
		return k, nil
	}
	return nil, errorf(ErrNotFound, "no key with id %q", id)
}

// writableKey returns the run-time key with the id for a change:
// ErrNotFound when there is no key, errConflict when it is the policy file's.
func (a *API) writableKey(p *policy.Policy, id string) (*policy.APIKey, error) {
	k, err := a.findKey(p, id)
	if err != nil {
		return nil, err
	}
	if k.FromPolicy {
		return nil, errorf(errConflict, "key %q is defined in the policy file %s and is read-only here: change it there", id, p.File)
	}
	return k, nil
}

// idTaken returns errConflict when a key (run-time or policy file) has id.
func (a *API) idTaken(p *policy.Policy, id string) error {
	if p.KeyByID(id) != nil {
		return errorf(errConflict, "key id %q is taken by a key of the policy file", id)
	}
	rt, err := a.cfg.Keys.RuntimeKey(id)
	if err != nil {
		return err
	}
	if rt != nil {
		return errorf(errConflict, "key id %q is taken", id)
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

// Key returns the key with the id.
func (a *API) Key(id string) (KeyView, error) {
	k, err := a.findKey(a.cfg.Policy(), id)
	if err != nil {
		return KeyView{}, err
	}
	return viewOf(k), nil
}

// CreateKey creates the run-time key that body describes and returns it
// with its value.
func (a *API) CreateKey(body CreateKeyBody) (KeyView, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, now := a.cfg.Policy(), a.cfg.Now()
	var bad problems
	k := &policy.APIKey{Enabled: true, Created: now}
	if body.ID != nil {
		bad.checkID("body: id", "valid", *body.ID)
		k.ID = *body.ID
	} else {
		k.ID = newKeyID()
	}
	k.Customer = k.ID
	if body.Customer != nil {
		bad.checkID("body: customer", "valid", *body.Customer)
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
		return KeyView{}, err
	}
	if err := a.idTaken(p, k.ID); err != nil {
		return KeyView{}, err
	}
	value, hash := newKeyValue()
	k.Hash = hash
	if err := a.cfg.Keys.SaveKey(k, nil); err != nil {
		return KeyView{}, err
	}
	a.log.Info("admin: key created", "key_id", k.ID, "customer", k.Customer, "plans", k.Plans)
	v := viewOf(k)
	v.Value = value
	return v, nil
}

// PatchKey changes the fields of the run-time key id that body names; the
// change is seen by the next request.
func (a *API) PatchKey(id string, body PatchKeyBody) (KeyView, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, now := a.cfg.Policy(), a.cfg.Now()
	old, err := a.writableKey(p, id)
	if err != nil {
		return KeyView{}, err
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
		return KeyView{}, err
	}
	if err := a.cfg.Keys.SaveKey(&k, old); err != nil {
		return KeyView{}, err
	}
	a.log.Info("admin: key changed", "key_id", k.ID, "fields", changed, "enabled", k.Enabled, "plans", k.Plans)
	return viewOf(&k), nil
}

// DeleteKey deletes the run-time key id.
func (a *API) DeleteKey(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	k, err := a.writableKey(a.cfg.Policy(), id)
	if err != nil {
		return err
	}
	if _, err := a.cfg.Keys.DeleteKey(k.ID); err != nil {
		return err
	}
	a.log.Info("admin: key deleted", "key_id", k.ID)
	return nil
}

// parseRotation checks a rotate call's body: the grace (defaultGrace when
// nil) and the new key's id (a fresh one when nil).
func parseRotation(body RotateKeyBody) (grace time.Duration, newID string, err error) {
	var bad problems
	grace = defaultGrace
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
	newID = newKeyID()
	if body.ID != nil {
		bad.checkID("body: id", "valid", *body.ID)
		newID = *body.ID
	}
	return grace, newID, bad.err()
}

// rotatable returns errConflict when k cannot be rotated at now: it
// expired, or a rotation already retired it.
func rotatable(k *policy.APIKey, now time.Time) error {
	switch {
	case k.RotatedTo != "" && (k.Expires.IsZero() || now.Before(k.Expires)):
		return errorf(errConflict, "key %q was rotated to %q and is in its grace until %s: rotate %q instead",
			k.ID, k.RotatedTo, k.Expires.UTC().Format(time.RFC3339), k.RotatedTo)
	case !k.Expires.IsZero() && !now.Before(k.Expires):
		return errorf(errConflict, "key %q expired at %s: create a new key instead", k.ID, k.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// rotation returns the new key of a rotation of old at now (without its
// hash) and old as it is retired: it names the new key and expires when the
// grace ends, or earlier when it expired earlier anyway.
func rotation(old *policy.APIKey, newID string, grace time.Duration, now time.Time) (nk, retired *policy.APIKey) {
	nk = &policy.APIKey{ID: newID, Customer: old.Customer, Name: old.Name,
		Plans: slices.Clone(old.Plans), Enabled: old.Enabled, Expires: old.Expires, Created: now}
	r := *old
	r.RotatedTo = nk.ID
	if end := now.Add(grace); r.Expires.IsZero() || end.Before(r.Expires) {
		r.Expires = end
	}
	return nk, &r
}

// RotateKey makes a new key for the same customer, plans, name, state and
// contract expiry as the run-time key id, and returns it with its value;
// the old key then expires when the grace ends (rotation). A key in its
// grace is not rotated again (errConflict): its expiry is the grace end,
// not the contract's, and a retried call would make a second new key.
// Usage and quota belong to the customer, so they carry over.
func (a *API) RotateKey(id string, body RotateKeyBody) (KeyView, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, now := a.cfg.Policy(), a.cfg.Now()
	grace, newID, err := parseRotation(body)
	if err != nil {
		return KeyView{}, err
	}
	old, err := a.writableKey(p, id)
	if err != nil {
		return KeyView{}, err
	}
	if err := rotatable(old, now); err != nil {
		return KeyView{}, err
	}
	if err := a.idTaken(p, newID); err != nil {
		return KeyView{}, err
	}
	nk, retired := rotation(old, newID, grace, now)
	value, hash := newKeyValue()
	nk.Hash = hash
	if err := a.cfg.Keys.SaveKey(nk, nil); err != nil {
		return KeyView{}, err
	}
	if err := a.cfg.Keys.SaveKey(retired, old); err != nil {
		// Undo the new key, so that a failed call changes nothing.
		if _, derr := a.cfg.Keys.DeleteKey(nk.ID); derr != nil {
			err = errors.Join(err, derr)
		}
		return KeyView{}, err
	}
	a.log.Info("admin: key rotated", "key_id", old.ID, "new_key_id", nk.ID, "customer", nk.Customer,
		"old_expires", retired.Expires.UTC())
	v := viewOf(nk)
	v.Value = value
	return v, nil
}
