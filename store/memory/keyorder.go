package memory

import (
	"bytes"
	"context"
	"slices"
	"sort"

	"github.com/tollgate/tollgate/policy"
)

// keyOrder is an index of the keyring's records in one order (by id, or by
// customer then id): a sorted slice of record indexes and an unsorted tail
// of the records added since the last read, which the next read merges in.
// Adding in order (as store/file loads its keys) or adding one key costs
// O(1); a read after t additions merges them in O(n + t log t) once; a read
// of a page is then O(log n + page). Removing a key is O(log n) plus a move
// of the slice's tail (4 bytes a key). The index costs 4 bytes a key and
// allocates nothing per read beyond the page it returns.
type keyOrder struct {
	sorted []uint32
	tail   []uint32
	// cmp orders two records of the keyring.
	cmp func(r *keyring, a, b uint32) int
}

// byIDOrder compares records by id.
func byIDOrder(r *keyring, a, b uint32) int { return bytes.Compare(r.idBytes(a), r.idBytes(b)) }

// byCustomerOrder compares records by customer, then id.
func byCustomerOrder(r *keyring, a, b uint32) int {
	if c := bytes.Compare(r.customerBytes(a), r.customerBytes(b)); c != 0 {
		return c
	}
	return byIDOrder(r, a, b)
}

// idBytes returns record i's id, without a copy.
func (r *keyring) idBytes(i uint32) []byte {
	rec := &r.recs[i]
	return r.text[rec.text : rec.text+rec.idLen]
}

// customerBytes returns record i's customer, without a copy.
func (r *keyring) customerBytes(i uint32) []byte {
	rec := &r.recs[i]
	at := rec.text + rec.idLen
	return r.text[at : at+rec.customerLen]
}

// add puts record i in the order.
func (o *keyOrder) add(r *keyring, i uint32) {
	if n := len(o.sorted); len(o.tail) == 0 && (n == 0 || o.cmp(r, o.sorted[n-1], i) < 0) {
		o.sorted = append(o.sorted, i)
		return
	}
	o.tail = append(o.tail, i)
}

// remove takes record i, whose text is still in place, out of the order.
func (o *keyOrder) remove(r *keyring, i uint32) {
	o.merge(r)
	at, found := slices.BinarySearchFunc(o.sorted, i, func(e, t uint32) int { return o.cmp(r, e, t) })
	if found && o.sorted[at] == i {
		o.sorted = slices.Delete(o.sorted, at, at+1)
	}
}

// merge sorts the tail into the sorted slice, from the back, in place.
func (o *keyOrder) merge(r *keyring) {
	if len(o.tail) == 0 {
		return
	}
	slices.SortFunc(o.tail, func(a, b uint32) int { return o.cmp(r, a, b) })
	n, t := len(o.sorted), len(o.tail)
	o.sorted = slices.Grow(o.sorted, t)[:n+t]
	for i, j, k := n-1, t-1, n+t-1; j >= 0; k-- {
		if i >= 0 && o.cmp(r, o.sorted[i], o.tail[j]) > 0 {
			o.sorted[k], i = o.sorted[i], i-1
		} else {
			o.sorted[k], j = o.tail[j], j-1
		}
	}
	o.tail = o.tail[:0]
}

// after returns the position in the sorted slice of the first record that
// sorts after the one pos describes (pos(i) > 0 when record i is after it).
func (o *keyOrder) after(pos func(i uint32) int) int {
	return sort.Search(len(o.sorted), func(k int) bool { return pos(o.sorted[k]) > 0 })
}

// page returns at most limit keys of the order after the position that pos
// describes. The order is merged first under the write lock when it has a
// tail; the page is read under the read lock, so that lookups go on.
func (r *keyring) page(o *keyOrder, pos func(i uint32) int, limit int) []*policy.APIKey {
	r.mu.RLock()
	for len(o.tail) > 0 {
		r.mu.RUnlock()
		r.mu.Lock()
		o.merge(r)
		r.mu.Unlock()
		r.mu.RLock()
	}
	defer r.mu.RUnlock()
	at := o.after(pos)
	out := make([]*policy.APIKey, 0, min(limit, len(o.sorted)-at))
	for _, i := range o.sorted[at:min(at+limit, len(o.sorted))] {
		out = append(out, r.key(i))
	}
	return out
}

// KeysAfter returns at most limit run-time keys whose ids sort after after
// ("": from the first), in id order. See keyOrder for its cost.
func (s *Store) KeysAfter(_ context.Context, after string, limit int) ([]*policy.APIKey, error) {
	r := &s.keys
	return r.page(&r.idOrder, func(i uint32) int { return compareText(r.idBytes(i), after) }, limit), nil
}

// CustomerKeysAfter returns at most limit run-time keys that sort after the
// customer and id given, in the order of customer, then id. An id of "\x7f"
// sorts after every id: the page then starts at the next customer.
func (s *Store) CustomerKeysAfter(_ context.Context, customer, id string, limit int) ([]*policy.APIKey, error) {
	r := &s.keys
	return r.page(&r.customerOrder, func(i uint32) int {
		if c := compareText(r.customerBytes(i), customer); c != 0 {
			return c
		}
		return compareText(r.idBytes(i), id)
	}, limit), nil
}

// compareText compares b with s, as bytes.Compare would with []byte(s),
// without a copy.
func compareText(b []byte, s string) int {
	n := min(len(b), len(s))
	for i := 0; i < n; i++ {
		if b[i] != s[i] {
			if b[i] < s[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(b) < len(s):
		return -1
	case len(b) > len(s):
		return 1
	}
	return 0
}
