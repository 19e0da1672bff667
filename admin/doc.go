// Package admin is tollgate's admin HTTP API: the run-time keys (list,
// get, create, change, delete, rotate with a grace), the usage reports and
// quota grants, and /v1/me for a caller's own key. The README's "Admin
// API" section documents the calls.
//
// The wire types (KeyView, KeyList, UsageAnswer, QuotaView, MeAnswer,
// ErrorBody and the request bodies) are shared with the CLI. Each handler
// decodes its request and calls a domain function that returns a value or
// an error; one adapter (status) maps the domain errors (ErrInvalid,
// ErrNotFound, errConflict, ...) to HTTP statuses. The store is seen
// through the few methods the API needs (KeyStore, CounterStore); the
// usage series' arithmetic is the pure quotaSeries. The server (package server)
// mounts Routes with its own (health, readiness, metrics) through Mux.
//
// Imports run one way: cmd -> server -> admin -> policy; nothing here reads
// the clock (Config.Now) or imports server.
package admin
