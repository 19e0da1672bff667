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
	denied             policy.Reason // key:disabled, key:expired or key:no-plan
}

// unknownKey is the key value of the lines denied key:unknown: it has a key
// value's shape and is no key's, in the policy (its hash is not a policy
// file's) or at run time (keys does not know it).
const unknownKey = "replay-unknown-key-0000000000000000"

// idents gives each key identity of the log a synthetic key value, and
// finds the identity again by the value's hash. The values are
// "replay-" and 64 hex digits: a key value's shape (20 to 128 characters
// of [A-Za-z0-9_-]), so the policy looks them up, and the hash of none of
// them is a policy file's key (the policy finds its own keys by hash
// first, then asks the run-time keys: here, keys). Used by one goroutine.
type idents struct {
	values map[ident]string
	byHash map[[sha256.Size]byte]ident
}

// newIdents returns an empty table.
func newIdents() *idents {
	return &idents{values: map[ident]string{}, byHash: map[[sha256.Size]byte]ident{}}
}

// value returns the synthetic key value to send for e: "" when the request
// is replayed without a key (none was used, it was missing, or the line was
// denied before its key was checked).
func (t *idents) value(e *entry) string {
	var id ident
	switch {
	case e.KeyID != "":
		id = ident{id: e.KeyID, customer: e.Customer, plan: e.Plan}
	case e.Reason == string(policy.ReasonKeyUnknown):
		return unknownKey
	case e.Reason == string(policy.ReasonKeyDisabled), e.Reason == string(policy.ReasonKeyExpired),
		e.Reason == string(policy.ReasonKeyNoPlan):
		id = ident{denied: policy.Reason(e.Reason)}
	default:
		return ""
	}
	if v, ok := t.values[id]; ok {
		return v
	}
	sum := sha256.Sum256([]byte(id.id + "\x00" + id.customer + "\x00" + id.plan + "\x00" + string(id.denied)))
	v := "replay-" + hex.EncodeToString(sum[:])
	t.values[id] = v
	t.byHash[sha256.Sum256([]byte(v))] = id
	return v
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

// LookupKey returns the key whose synthetic value has the hash, or nil.
func (k *keys) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	if key, ok := k.found[hash]; ok {
		return key, nil
	}
	id, ok := k.ids.byHash[hash]
	if !ok {
		return nil, nil
	}
	key := k.resolve(id)
	k.found[hash] = key
	return key, nil
}

// expired is the expiry of the keys that replay key:expired: long past.
var expired = time.Unix(1, 0)

// resolve returns the key of id as k's policy sees it, or nil for none. A
// key id the policy file has is that key (its plans, enabled and expiry); a
// key id that k.prev's file has and the policy's lacks was removed by the
// policy: no key (key:unknown). Another one was made at run time (or, with
// no k.prev to tell, removed from the file) and is replayed as the log saw
// it: the logged customer, the logged plan as its only plan, enabled, no
// expiry. A key denial is a key that reproduces it.
func (k *keys) resolve(id ident) *policy.APIKey {
	switch id.denied {
	case policy.ReasonKeyDisabled:
		return &policy.APIKey{ID: "replay-disabled", Customer: "replay-disabled"}
	case policy.ReasonKeyExpired:
		return &policy.APIKey{ID: "replay-expired", Customer: "replay-expired", Enabled: true, Expires: expired}
	case policy.ReasonKeyNoPlan:
		return &policy.APIKey{ID: "replay-no-plan", Customer: "replay-no-plan", Enabled: true}
	}
	if key := k.p.KeyByID(id.id); key != nil {
		return key
	}
	if k.prev != nil && k.prev.KeyByID(id.id) != nil {
		return nil
	}
	return &policy.APIKey{ID: id.id, Customer: id.customer, Plans: []string{id.plan}, Enabled: true}
}
