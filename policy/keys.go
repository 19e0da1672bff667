package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// Keys finds API keys created at run time (the policy file's own keys are
// looked up first, in the compiled policy). Implementations must be safe
// for concurrent use.
type Keys interface {
	// LookupKey returns the key with the hash, or nil when there is none.
	// An error means the key store could not be reached.
	LookupKey(hash [sha256.Size]byte) (*APIKey, error)
}

// validKeyValue reports whether v has the shape of a key value: 20 to 128
// characters of [A-Za-z0-9_-].
func validKeyValue(v string) bool {
	if len(v) < 20 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Errors of Evaluate, wrapping the store's own: ErrKeys when a run-time key
// could not be looked up, ErrState when the limits' state could not be
// reached. With ErrKeys, Evaluate's decision is Decision.DenyUnavailable's
// (a key that could not be checked is never a key that passed); with
// ErrState it is the one made without the state, and the caller fails open
// or closed.
var (
	ErrKeys  = errors.New("key lookup failed")
	ErrState = errors.New("state unreachable")
)

// ErrKeyChanged is returned by a store asked to save a run-time key over a
// version that is no longer the stored one (another admin call, perhaps on
// another replica, changed or deleted it, or created the id first).
var ErrKeyChanged = errors.New("the key was changed by another call")

// ParseKeyHash parses a key hash as the policy file writes it: "sha256:"
// followed by 64 lower-case hex digits.
func ParseKeyHash(s string) ([sha256.Size]byte, bool) {
	var h [sha256.Size]byte
	x, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(x) != 2*sha256.Size || strings.ToLower(x) != x {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(x)); err != nil {
		return h, false
	}
	return h, true
}

// KeyHashText returns h as ParseKeyHash reads it.
func KeyHashText(h [sha256.Size]byte) string { return "sha256:" + hex.EncodeToString(h[:]) }
