package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
)

// sha returns the hex sha256 of a key value.
func sha(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}
