// Package server is the tollgate process: it loads the policy, owns the
// state store, serves ext_authz, ext_proc and the gRPC health service on
// one listener (tcp or unix socket; plaintext, or TLS and mTLS with
// certificate files re-read when they change), and stops gracefully.
//
// It is the one place that reads the clock: every decision takes its
// instant from Config.Now (time.Now by default) and hands it to
// policy.Evaluate.
//
//	s, err := server.New(server.Config{PolicyFile: "policy.yaml", GRPCAddr: ":9001", Store: "memory:"})
//	if err != nil { ... }
//	err = s.Serve(ctx) // until ctx is done
//
// A Server is safe for concurrent use; the policy it serves is an
// immutable *policy.Policy held in an atomic pointer, loaded once per
// request.
package server
