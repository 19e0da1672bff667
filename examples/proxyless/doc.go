// Package proxyless holds no code: its tests put tollgate in front of a
// proxyless gRPC service, with gRPC's own ext_proc client (grpc-go
// v1.85.0, gRFC A93) configured by a go-control-plane management server,
// and check what the callers see against the payments example; README.md
// shows the configuration, which the tests read and use.
package proxyless
