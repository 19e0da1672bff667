package memory

import (
	"crypto/sha256"
	"slices"
	"strings"
	"sync"

	"github.com/tollgate/tollgate/policy"
)

// keyring holds the API keys created at run time, by id and by hash. Keys
// are replaced whole, never changed in place, so a *policy.APIKey handed out
// stays valid and unchanging.
type keyring struct {
	mu     sync.RWMutex
	byID   map[string]*policy.APIKey
	byHash map[[sha256.Size]byte]*policy.APIKey
}

func (r *keyring) init() {
	r.byID = make(map[string]*policy.APIKey)
	r.byHash = make(map[[sha256.Size]byte]*policy.APIKey)
}

// LookupKey implements policy.Keys.
func (s *Store) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	s.keys.mu.RLock()
	defer s.keys.mu.RUnlock()
	return s.keys.byHash[hash], nil
}

// SaveKey creates or replaces the run-time key with k.ID, when the key held
// under that id is prev (the very pointer RuntimeKeys returned; nil: none),
// else it returns policy.ErrKeyChanged. The Store keeps k: the caller must
// not change it afterwards.
func (s *Store) SaveKey(k, prev *policy.APIKey) error {
	r := &s.keys
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.byID[k.ID]
	if old != prev {
		return policy.ErrKeyChanged
	}
	if old != nil {
		delete(r.byHash, old.Hash)
	}
	r.byID[k.ID] = k
	r.byHash[k.Hash] = k
	return nil
}

// DeleteKey removes the run-time key with the id and reports whether there
// was one.
func (s *Store) DeleteKey(id string) (bool, error) {
	r := &s.keys
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.byID[id]
	if k == nil {
		return false, nil
	}
	delete(r.byID, id)
	delete(r.byHash, k.Hash)
	return true, nil
}

// RuntimeKeys returns the run-time keys, by id.
func (s *Store) RuntimeKeys() ([]*policy.APIKey, error) {
	r := &s.keys
	r.mu.RLock()
	out := make([]*policy.APIKey, 0, len(r.byID))
	for _, k := range r.byID {
		out = append(out, k)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b *policy.APIKey) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// RuntimeKey returns the run-time key with the id, or nil.
func (s *Store) RuntimeKey(id string) (*policy.APIKey, error) {
	s.keys.mu.RLock()
	defer s.keys.mu.RUnlock()
	return s.keys.byID[id], nil
}
