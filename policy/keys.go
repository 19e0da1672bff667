package policy

import "crypto/sha256"

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
