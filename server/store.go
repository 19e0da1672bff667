package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// Store is what the server needs of a state store: the decision's state
// (buckets, WAF counters, quota and usage counters) and the keys created at
// run time, plus what the admin API does with them. store/memory keeps it all
// in memory; store/file adds an embedded database under it; Redis follows.
// Implementations are safe for concurrent use.
type Store interface {
	policy.State
	policy.Keys

	// SaveKey creates or replaces (by ID) a run-time key; it is durable
	// when SaveKey returns.
	SaveKey(k *policy.APIKey) error
	// DeleteKey removes the run-time key with the id and reports whether
	// there was one.
	DeleteKey(id string) (bool, error)
	// RuntimeKeys returns every run-time key.
	RuntimeKeys() ([]*policy.APIKey, error)

	// Counter returns the state of a quota or usage-history counter:
	// the requests counted, and the requests granted on top of the limit
	// (quota counters only).
	Counter(k policy.Key) (used, granted int64, err error)
	// Grant adds n to the grant of the quota counter k, whose period ends
	// at end.
	Grant(k policy.Key, n int64, end time.Time) error

	// Ready reports whether the store can be reached.
	Ready(ctx context.Context) error
	// Close writes what is still in memory and releases the store.
	Close() error
}

// openStore opens the state store named by url.
func openStore(url string, flush time.Duration) (Store, error) {
	switch {
	case url == "memory:" || url == "memory":
		return memory.New(), nil
	case strings.HasPrefix(url, "file:") || url == "":
		return nil, fmt.Errorf("--store %q: the file store is not built yet", url)
	default:
		return nil, fmt.Errorf("--store %q: unsupported store (supported: memory:, file:DIR)", url)
	}
}
