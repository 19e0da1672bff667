// Package decisionlog writes tollgate's decision log (SPEC §10): one JSON
// line per decision, in a file rotated by size, for audits and for
// `tollgate replay`.
//
// The log is written off the decision path. Log copies a decision's few
// fields into a fixed-size Record and hands it to a bounded buffer without
// waiting; one goroutine encodes the records and writes them in batches.
// When the buffer is full the line is dropped and counted (Dropped), so a
// slow disk never slows a decision. A line holds no key value (the key's id
// only) and no query string (the path as routes match it).
//
//	w, err := decisionlog.Open(decisionlog.Options{Filename: "/var/log/tollgate/decisions.log"})
//	...
//	w.Log(&decisionlog.Record{Time: now, Method: "GET", Path: "/v1/items", Status: 200})
//	...
//	w.Close() // after the last Log: writes what is buffered
//
// Concurrency: Log and Dropped are safe from any number of goroutines. Close
// must be called once, after every Log has returned; a Log after Close is
// lost.
package decisionlog
