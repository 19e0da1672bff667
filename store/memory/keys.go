package memory

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/policy"
)

// keyring holds the API keys created at run time, by id and by hash, in a
// form the garbage collector need not walk: pointer-free records in one
// slice, their text in one byte slice, and maps whose keys and values hold no
// pointers. A million keys are then a handful of objects instead of millions
// of *policy.APIKey with their strings (marking those took a third of the
// CPU under load). A key is decoded into a new *policy.APIKey on each lookup
// (two small allocations: the struct and one string its text fields share).
type keyring struct {
	mu sync.RWMutex
	// hashID hashes an id for byID (tests make ids collide).
	hashID func(string) uint64
	byHash map[[sha256.Size]byte]uint32
	// byID maps the hash of an id to its record; an id whose hash another
	// id holds there is in idOverflow.
	byID       map[uint64]uint32
	idOverflow map[string]uint32
	recs       []keyRecord
	free       []uint32 // indexes of unused records
	// text holds each record's id, customer and name, one after the
	// other; garbage counts the bytes no record uses any more.
	text    []byte
	garbage int
	// plans holds each distinct plan list once; planIndex finds it by
	// planCode.
	plans     [][]string
	planIndex map[string]uint32
	// idOrder and customerOrder list the records by id, and by customer
	// then id, for KeysAfter and CustomerKeysAfter.
	idOrder, customerOrder keyOrder
}

// keyRecord is a stored key. Times are UTC, kept as seconds and
// nanoseconds (the zero time when set is false).
type keyRecord struct {
	hash                        [sha256.Size]byte
	text                        uint32 // offset of the id in keyring.text
	idLen, customerLen, nameLen uint32
	rotatedLen                  uint32 // RotatedTo, after the name
	plans                       uint32
	expSec, createdSec          int64
	expNsec, createdNsec        int32
	hasExp, hasCreated          bool
	enabled, used               bool
}

// compactMin is the garbage, in bytes, below which the text is not
// compacted.
const compactMin = 1 << 16

func (r *keyring) init() {
	seed := maphash.MakeSeed()
	r.hashID = func(id string) uint64 { return maphash.String(seed, id) }
	r.byHash = make(map[[sha256.Size]byte]uint32)
	r.byID = make(map[uint64]uint32)
	r.idOverflow = make(map[string]uint32)
	r.planIndex = make(map[string]uint32)
	r.idOrder.cmp, r.customerOrder.cmp = byIDOrder, byCustomerOrder
}

// find returns the index of the record of the id.
func (r *keyring) find(id string) (uint32, bool) {
	if i, ok := r.byID[r.hashID(id)]; ok {
		rec := &r.recs[i]
		if string(r.text[rec.text:rec.text+rec.idLen]) == id { // compared without a copy
			return i, true
		}
	}
	i, ok := r.idOverflow[id]
	return i, ok
}

// id returns the id of record i.
func (r *keyring) id(i uint32) string {
	rec := &r.recs[i]
	return string(r.text[rec.text : rec.text+rec.idLen])
}

// key decodes record i.
func (r *keyring) key(i uint32) *policy.APIKey {
	rec := &r.recs[i]
	n := rec.textLen()
	s := string(r.text[rec.text : rec.text+n]) // one string; the fields share it
	name := rec.idLen + rec.customerLen
	k := &policy.APIKey{
		ID:        s[:rec.idLen],
		Customer:  s[rec.idLen:name],
		Name:      s[name : name+rec.nameLen],
		RotatedTo: s[name+rec.nameLen:],
		Hash:      rec.hash,
		Plans:     r.plans[rec.plans],
		Enabled:   rec.enabled,
	}
	if rec.hasExp {
		k.Expires = time.Unix(rec.expSec, int64(rec.expNsec)).UTC()
	}
	if rec.hasCreated {
		k.Created = time.Unix(rec.createdSec, int64(rec.createdNsec)).UTC()
	}
	return k
}

// textLen is the length of the record's text.
func (rec *keyRecord) textLen() uint32 {
	return rec.idLen + rec.customerLen + rec.nameLen + rec.rotatedLen
}

// planCode is the plan list's key in planIndex: nil and empty differ, and
// names may hold any byte.
func planCode(plans []string) string {
	if plans == nil {
		return ""
	}
	b := []byte{'l'}
	for _, p := range plans {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return string(b)
}

// put stores k, replacing the key with its id. A key that keeps its
// customer keeps its record and its places in the orders.
func (r *keyring) put(k *policy.APIKey) {
	if i, ok := r.find(k.ID); ok {
		if compareText(r.customerBytes(i), k.Customer) == 0 {
			old := &r.recs[i]
			if j, ok := r.byHash[old.hash]; ok && j == i {
				delete(r.byHash, old.hash)
			}
			r.garbage += int(old.textLen())
			r.recs[i] = r.record(k)
			r.byHash[k.Hash] = i
			r.maybeCompact()
			return
		}
		r.remove(i)
	}
	rec := r.record(k)
	var i uint32
	if n := len(r.free); n > 0 {
		i, r.free = r.free[n-1], r.free[:n-1]
		r.recs[i] = rec
	} else {
		i = uint32(len(r.recs))
		r.recs = append(r.recs, rec)
	}
	h := r.hashID(k.ID)
	if _, taken := r.byID[h]; taken {
		r.idOverflow[k.ID] = i
	} else {
		r.byID[h] = i
	}
	r.byHash[k.Hash] = i
	r.idOrder.add(r, i)
	r.customerOrder.add(r, i)
}

// record returns k's record, its text appended to the keyring's.
func (r *keyring) record(k *policy.APIKey) keyRecord {
	code := planCode(k.Plans)
	pi, ok := r.planIndex[code]
	if !ok {
		pi = uint32(len(r.plans))
		var list []string
		if k.Plans != nil {
			list = slices.Clip(slices.Clone(k.Plans)) // append copies: shared by every key on it
		}
		r.plans = append(r.plans, list)
		r.planIndex[code] = pi
	}
	rec := keyRecord{
		hash: k.Hash, text: uint32(len(r.text)), plans: pi, enabled: k.Enabled, used: true,
		idLen: uint32(len(k.ID)), customerLen: uint32(len(k.Customer)), nameLen: uint32(len(k.Name)),
		rotatedLen: uint32(len(k.RotatedTo)),
	}
	r.text = append(append(append(append(r.text, k.ID...), k.Customer...), k.Name...), k.RotatedTo...)
	if !k.Expires.IsZero() {
		rec.hasExp, rec.expSec, rec.expNsec = true, k.Expires.Unix(), int32(k.Expires.Nanosecond())
	}
	if !k.Created.IsZero() {
		rec.hasCreated, rec.createdSec, rec.createdNsec = true, k.Created.Unix(), int32(k.Created.Nanosecond())
	}
	return rec
}

// remove deletes record i.
func (r *keyring) remove(i uint32) {
	r.idOrder.remove(r, i)
	r.customerOrder.remove(r, i)
	rec := &r.recs[i]
	id := r.id(i)
	if _, ok := r.idOverflow[id]; ok {
		delete(r.idOverflow, id)
	} else {
		h := r.hashID(id)
		delete(r.byID, h)
		// An overflowing id with this hash moves up.
		for o, j := range r.idOverflow {
			if r.hashID(o) == h {
				r.byID[h] = j
				delete(r.idOverflow, o)
				break
			}
		}
	}
	if j, ok := r.byHash[rec.hash]; ok && j == i {
		delete(r.byHash, rec.hash)
	}
	r.garbage += int(rec.textLen())
	*rec = keyRecord{}
	r.free = append(r.free, i)
	r.maybeCompact()
}

// maybeCompact compacts the text when most of it is garbage.
func (r *keyring) maybeCompact() {
	if r.garbage >= compactMin && r.garbage > len(r.text)/2 {
		r.compact()
	}
}

// compact rewrites the text without its garbage.
func (r *keyring) compact() {
	text := make([]byte, 0, len(r.text)-r.garbage)
	for i := range r.recs {
		rec := &r.recs[i]
		if !rec.used {
			continue
		}
		n := rec.textLen()
		off := uint32(len(text))
		text = append(text, r.text[rec.text:rec.text+n]...)
		rec.text = off
	}
	r.text, r.garbage = text, 0
}

// sameKey reports whether two run-time keys hold the same values (nil and
// empty plans differ, as in their JSON records).
func sameKey(a, b *policy.APIKey) bool {
	return a.ID == b.ID && a.Customer == b.Customer && a.Name == b.Name && a.Hash == b.Hash &&
		(a.Plans == nil) == (b.Plans == nil) && slices.Equal(a.Plans, b.Plans) && a.Enabled == b.Enabled &&
		a.Expires.Equal(b.Expires) && a.Created.Equal(b.Created) && a.RotatedTo == b.RotatedTo
}

// LookupKey implements policy.Keys.
func (s *Store) LookupKey(hash [sha256.Size]byte) (*policy.APIKey, error) {
	r := &s.keys
	r.mu.RLock()
	defer r.mu.RUnlock()
	if i, ok := r.byHash[hash]; ok {
		return r.key(i), nil
	}
	return nil, nil
}

// SaveKey creates or replaces the run-time key with k.ID, when the key held
// under that id is prev (equal in every field, as RuntimeKey or
// RuntimeKeys returned it; nil: none), else it returns policy.ErrKeyChanged.
// The Store keeps a copy of k.
func (s *Store) SaveKey(k, prev *policy.APIKey) error {
	r := &s.keys
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.holds(k.ID, prev) {
		return policy.ErrKeyChanged
	}
	r.put(k)
	return nil
}

// holds reports whether the key with the id is prev (nil: there is none).
func (r *keyring) holds(id string, prev *policy.APIKey) bool {
	i, ok := r.find(id)
	if !ok || prev == nil {
		return ok == (prev != nil)
	}
	return sameKey(r.key(i), prev)
}

// HoldsKey reports whether the run-time key with the id is prev (nil: there
// is none), as SaveKey compares them.
func (s *Store) HoldsKey(id string, prev *policy.APIKey) bool {
	s.keys.mu.RLock()
	defer s.keys.mu.RUnlock()
	return s.keys.holds(id, prev)
}

// PutKey creates or replaces the run-time key with k.ID, whatever it
// replaces.
func (s *Store) PutKey(k *policy.APIKey) {
	s.keys.mu.Lock()
	s.keys.put(k)
	s.keys.mu.Unlock()
}

// DeleteKey removes the run-time key with the id and reports whether there
// was one.
func (s *Store) DeleteKey(id string) (bool, error) {
	r := &s.keys
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.find(id)
	if ok {
		r.remove(i)
	}
	return ok, nil
}

// RuntimeKeys returns the run-time keys, by id.
func (s *Store) RuntimeKeys() ([]*policy.APIKey, error) {
	r := &s.keys
	r.mu.RLock()
	out := make([]*policy.APIKey, 0, len(r.recs)-len(r.free))
	for i := range r.recs {
		if r.recs[i].used {
			out = append(out, r.key(uint32(i)))
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b *policy.APIKey) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// RuntimeKey returns the run-time key with the id, or nil.
func (s *Store) RuntimeKey(id string) (*policy.APIKey, error) {
	r := &s.keys
	r.mu.RLock()
	defer r.mu.RUnlock()
	if i, ok := r.find(id); ok {
		return r.key(i), nil
	}
	return nil, nil
}
