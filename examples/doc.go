// Package examples holds no code: its tests check the examples tollgate
// ships (payments/, sidecar/, istio/) with the loaders of the tools that
// run them (docker compose's compose-go, Kubernetes' and Istio's API
// types); proxyless/ runs gRPC's own ext_proc client against tollgate;
// monitoring/'s rules go through promtool and its dashboard through the
// Grafana Foundation SDK's types, their metrics looked up on a running
// server.
// They are a Go module of their own, so that the product's module does not
// require those loaders; `make test` runs both.
package examples
