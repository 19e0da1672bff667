// Package file is the file store (--store file:DIR, the default): the state
// of one tollgate process, with what must survive a restart kept in an
// embedded database (go.etcd.io/bbolt) at DIR/tollgate.db.
//
// # What it owns
//
// Decisions run on a memory.Store, journaled (memory.WithJournal): token
// buckets and WAF counters live only there (a restart refills buckets,
// which hands out at most one burst), and so do the live quota and
// usage-history counters. A flusher goroutine writes the counters that
// changed every FlushInterval (default 1s) in one transaction, and Close
// writes the rest, so a graceful stop loses nothing and a crash loses at
// most one flush interval of counts. Apply never touches the disk.
//
// On disk:
//   - counters: quota counters (used and granted requests of a customer's
//     plan in one period) and usage-history counters (requests of a
//     customer's plan in one UTC day), kept for Retention (default 400
//     days) after they end, so that usage reports reach back that far;
//   - keys: the keys created at run time through the admin API, by id,
//     with their sha256 hash, never their value. SaveKey and DeleteKey
//     write through: they return when the change is on disk;
//   - outbox, outbox-due, outbox-seen, outbox-until: quota events
//     waiting for delivery and the ids already added (Outbox); each change
//     is its own transaction, written when it returns, not on the flush
//     interval;
//   - meta: the layout's format version.
//
// Open loads the keys and every counter that has not ended into memory. A
// counter that ended is read from disk when a usage report asks for it.
//
// # Example
//
//	st, err := file.Open("./tollgate-data", file.Options{})
//	if err != nil { ... }
//	defer st.Close()
//	d, err := p.Evaluate(now, &req, st, st) // p is a compiled *policy.Policy
//
// # Concurrency
//
// A Store is safe for concurrent use. Its one goroutine, the flusher, is
// started by Open and stopped by Close. Writes of counters (the flusher's,
// Grant's, Close's) are serialized by one mutex that the decision path never
// takes. Only one process can open a directory at a time (the database file
// is locked).
package file
