package replay

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// ident is what the log says of a line's API key: the key's id, customer
// and plan when it was used, or, for a line denied for its key, the reason
// alone (the log names no key then).
type ident struct {
	id, customer, plan string
	denied             policy.Reason // key:unknown, key:disabled, key:expired or key:no-plan
}

// idents gives the key identities of the log synthetic key values, and
// finds the identity again by the value's hash (the policy finds its own
// keys by hash first, then asks the run-time keys: here, keys). Each key id
// (with its customer and plan) has one value, "replay-" and 64 hex digits,
// kept for the whole replay: its requests share a WAF api_key counter, as
// they did. A line denied for its key names no key, so it cannot tell one
// bad key from another: each such line has a value of its own,
// "replay-line-" and its number in 20 digits, which is not kept. Only the
// line being replayed has one (line): Run decides a line under the
// candidate, then the baseline, before it asks for the next line's value.
// Both families have a key value's shape (20 to 128 characters of
// [A-Za-z0-9_-]), so the policy looks them up; none is the other's ("l"
// is not a hex digit), and the hash of none is a policy file's key. Used
// by one goroutine.
type idents struct {
	values map[ident]string
	byHash map[[sha256.Size]byte]ident

	lines int64 // the lines given a value of their own
	// line is the identity of the line being replayed when it was denied
	// for its key (else zero), lineValue its value, lineHash the value's
	// hash once hashed.
	line      ident
	lineValue string
	lineHash  [sha256.Size]byte
	hashed    bool
}

// newIdents returns an empty table.
func newIdents() *idents {
	return &idents{values: map[ident]string{}, byHash: map[[sha256.Size]byte]ident{}}
}

// value returns the synthetic key value to send for e: "" when the request
// is replayed without a key (none was used, it was missing, or the line was
// denied before its key was checked). It ends the previous line's own
// value.
func (t *idents) value(e *entry) string {
	t.line, t.hashed = ident{}, false
	var id ident
	switch {
	case e.KeyID != "":
		id = ident{id: e.KeyID, customer: e.Customer, plan: e.Plan}
	case e.Reason == string(policy.ReasonKeyUnknown), e.Reason == string(policy.ReasonKeyDisabled),
		e.Reason == string(policy.ReasonKeyExpired), e.Reason == string(policy.ReasonKeyNoPlan):
		t.lines++
		t.line, t.lineValue = ident{denied: policy.Reason(e.Reason)}, lineValue(t.lines)
		return t.lineValue
	default:
		return ""
	}
	if v, ok := t.values[id]; ok {
		return v
	}
	sum := sha256.Sum256([]byte(id.id + "\x00" + id.customer + "\x00" + id.plan))
	v := "replay-" + hex.EncodeToString(sum[:])
	t.values[id] = v
	t.byHash[sha256.Sum256([]byte(v))] = id
	return v
}

// lineValue returns the value of the n-th line denied for its key:
// "replay-line-" and n in 20 digits.
func lineValue(n int64) string {
	const prefix = "replay-line-"
	var b [len(prefix) + 20]byte
	copy(b[:], prefix)
	for i := len(b) - 1; i >= len(prefix); i-- {
		b[i] = '0' + byte(n%10)
		n /= 10
	}
	return string(b[:])
}

// lineIdent reports whether hash is the hash of the line's own value, and
// returns the line's identity.
func (t *idents) lineIdent(hash [sha256.Size]byte) (ident, bool) {
	if t.line.denied == policy.ReasonNone {
		return ident{}, false
	}
	if !t.hashed {
		t.lineHash, t.hashed = sha256.Sum256([]byte(t.lineValue)), true
	}
	return t.line, hash == t.lineHash
}

// keys is the policy.Keys of one replayed policy: it turns the synthetic
// values' hashes into keys as that policy sees them (resolve). Used by one
// goroutine, as Run evaluates the lines one at a time.
type keys struct {
	p *policy.Policy
	// prev is the baseline's policy when p is the candidate's and one is
	// given, else nil: a key id of its file that p's file lacks was
	// removed by p.
	prev  *policy.Policy
	ids   *idents
	found map[[sha256.Size]byte]*policy.APIKey
}

var _ policy.Keys = (*keys)(nil)

// newKeys returns p's view of the identities of ids; prev is the policy p
// follows (the baseline's, for the candidate), or nil.
func newKeys(p, prev *policy.Policy, ids *idents) *keys {
	return &keys{p: p, prev: prev, ids: ids, found: map[[sha256.Size]byte]*policy.APIKey{}}
}

// LookupKey returns the key whose synthetic value has the hash, or nil. The
// keys of the key ids are kept, those of the lines' own values are not.
func (k *keys) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	if key, ok := k.found[hash]; ok {
		return key, nil
	}
	if id, ok := k.ids.byHash[hash]; ok {
		key := k.resolve(id)
		k.found[hash] = key
		return key, nil
	}
	if id, ok := k.ids.lineIdent(hash); ok {
		return k.resolve(id), nil
	}
	return nil, nil
}

// The keys that reproduce a key denial, whichever key it was: disabled,
// expired long ago, without plans. They are shared, as a policy file's
// keys are: the policy never modifies a key.
var (
	disabledKey = &policy.APIKey{ID: "replay-disabled", Customer: "replay-disabled"}
	expiredKey  = &policy.APIKey{ID: "replay-expired", Customer: "replay-expired", Enabled: true, Expires: time.Unix(1, 0)}
	noPlanKey   = &policy.APIKey{ID: "replay-no-plan", Customer: "replay-no-plan", Enabled: true}
)

// resolve returns the key of id as k's policy sees it, or nil for none. A
// key id the policy file has is that key (its plans, enabled and expiry); a
// key id that k.prev's file has and the policy's lacks was removed by the
// policy: no key (key:unknown). Another one was made at run time (or, with
// no k.prev to tell, removed from the file) and is replayed as the log saw
// it: the logged customer, the logged plan as its only plan, enabled, no
// expiry. A key denial is a key that reproduces it (key:unknown: none).
func (k *keys) resolve(id ident) *policy.APIKey {
	switch id.denied {
	case policy.ReasonKeyUnknown:
		return nil
	case policy.ReasonKeyDisabled:
		return disabledKey
	case policy.ReasonKeyExpired:
		return expiredKey
	case policy.ReasonKeyNoPlan:
		return noPlanKey
	}
	if key := k.p.KeyByID(id.id); key != nil {
		return key
	}
	if k.prev != nil && k.prev.KeyByID(id.id) != nil {
		return nil
	}
	return &policy.APIKey{ID: id.id, Customer: id.customer, Plans: []string{id.plan}, Enabled: true}
}
