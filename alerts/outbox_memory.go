package alerts

import (
	"context"
	"slices"
	"sync"
	"time"
)

var _ Outbox = (*MemoryOutbox)(nil)

// MemoryOutbox is the outbox of the memory store: it lives as long as the
// process. The zero MemoryOutbox is not usable; call NewMemoryOutbox.
type MemoryOutbox struct {
	mu      sync.Mutex
	entries map[string]*memoryEntry
	// seen holds when each entry key added stops being remembered;
	// pruneAt is the size at which Add next drops the ended ones.
	seen    map[string]time.Time
	pruneAt int
}

type memoryEntry struct {
	p   Pending
	due time.Time
}

// NewMemoryOutbox returns an empty outbox.
func NewMemoryOutbox() *MemoryOutbox {
	return &MemoryOutbox{entries: map[string]*memoryEntry{}, seen: map[string]time.Time{}, pruneAt: 1024}
}

// Add implements Outbox.
func (o *MemoryOutbox) Add(_ context.Context, e Event, keep time.Duration) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seen) >= o.pruneAt {
		// Dropping what ended whenever the map has doubled keeps Add's
		// cost constant on average.
		for k, until := range o.seen {
			if !until.After(e.Time) {
				delete(o.seen, k)
			}
		}
		o.pruneAt = max(1024, 2*len(o.seen))
	}
	added := false
	for _, sink := range e.Sinks {
		k := EntryKey(e.ID, sink)
		if until, ok := o.seen[k]; ok && until.After(e.Time) {
			continue
		}
		o.seen[k] = e.Time.Add(keep)
		one := e
		one.Sinks = []string{sink}
		o.entries[k] = &memoryEntry{p: Pending{Event: one, Sink: sink, Created: e.Time}, due: e.Time}
		added = true
	}
	return added, nil
}

// Claim implements Outbox.
func (o *MemoryOutbox) Claim(_ context.Context, now time.Time, n int, lease time.Duration) ([]Pending, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var due []*memoryEntry
	for _, m := range o.entries {
		if !m.due.After(now) {
			due = append(due, m)
		}
	}
	slices.SortFunc(due, func(a, b *memoryEntry) int { return a.due.Compare(b.due) })
	var out []Pending
	for _, m := range due[:min(n, len(due))] {
		m.due = now.Add(lease)
		out = append(out, m.p)
	}
	return out, nil
}

// Done implements Outbox.
func (o *MemoryOutbox) Done(_ context.Context, id, sink string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.entries, EntryKey(id, sink))
	return nil
}

// Retry implements Outbox.
func (o *MemoryOutbox) Retry(_ context.Context, id, sink string, next time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if m, ok := o.entries[EntryKey(id, sink)]; ok {
		m.due = next
		m.p.Attempts++
	}
	return nil
}

// Stats implements Outbox.
func (o *MemoryOutbox) Stats(context.Context) (int, time.Time, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var oldest time.Time
	for _, m := range o.entries {
		if oldest.IsZero() || m.p.Created.Before(oldest) {
			oldest = m.p.Created
		}
	}
	return len(o.entries), oldest, nil
}
