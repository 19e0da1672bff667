// Package envoy translates between Envoy's external authorization and
// external processing APIs and tollgate's decision core: a CheckRequest or an
// ext_proc request_headers message becomes a policy.Request, a
// policy.Decision becomes a CheckResponse or ext_proc answers. It decides
// nothing itself and reads no clock; AuthzServer, ProcessServer and
// HTTPServer (the same over plain HTTP) hand each request to a Decider (the
// server) and answer with what it decided. The Envoy configurations that
// users copy live beside it (ext_authz.yaml, ext_proc.yaml,
// ext_authz_http.yaml).
//
// # Requests
//
//	CheckRequest field                                policy.Request
//	attributes.request.http.method                    Method
//	attributes.request.http.path (with query)         Path
//	attributes.request.http.host                      Host
//	attributes.request.http.headers                   Headers (the same map, not a copy)
//	attributes.request.http.header_map                Headers, only when headers is empty
//	attributes.source.address.socket_address.address  Peer (empty for a pipe)
//	attributes.context_extensions["api"]              API
//	attributes.context_extensions["stage"]            Stage
//
// A missing piece stays empty, and the evaluator answers 400
// request:invalid for a request it cannot read.
//
// # Responses
//
//	decision            status.code          http_response
//	allow               OK                   ok_response
//	deny 400            INVALID_ARGUMENT     denied_response
//	deny 429            RESOURCE_EXHAUSTED   denied_response
//	deny 403 or other   PERMISSION_DENIED    denied_response
//
// An ok_response sets the upstream headers x-tollgate-customer,
// x-tollgate-key-id and x-tollgate-plan when a key was used and removes
// them otherwise, sets x-tollgate-shadow to the reasons of the shadow
// limits that would have denied the request (SPEC §10) and removes it
// otherwise, removes the API key header when strip_api_key is set,
// and adds the rate-limit headers to the client's response. A
// denied_response carries the status, the JSON body, content-type,
// x-tollgate-reason (key:* reasons only with explain: true), retry-after on
// every 429 and the rate-limit headers. Every header is lower case and
// overwrites one of the same name. A denied gRPC request (content-type
// application/grpc*) also carries grpc-status with the code above, which
// Envoy's local reply keeps (it would map 429 to UNAVAILABLE), and its body
// is the message alone, which the caller gets as grpc-message.
//
// The rate-limit headers follow the decision's header mode: ietf sends
// RateLimit-Policy and RateLimit with one item per limit, most constrained
// first; legacy sends X-RateLimit-Limit, -Remaining and -Reset of the most
// constrained limit; both sends both; none sends neither. Seconds are
// rounded up.
//
// # ext_proc
//
// ProcessServer serves one stream per request. Its request_headers message
// is translated like a CheckRequest (pseudo-headers :method, :path and
// :authority, else the request.method, request.path and request.host
// attributes; the source.address request attribute; the stage from the
// stream's gRPC metadata "api" and "stage", the attributes or the metadata
// context's "tollgate" namespace) with a Lease, so that the route's
// concurrency cap applies. A denial is an ImmediateResponse with the status,
// body and headers a denied_response would carry; an allowance is a request
// header mutation with the upstream headers of an ok_response, and the
// response_headers message gets the rate-limit headers. The slot a request
// took is released exactly once, by a Releaser, on response_headers or when
// the stream ends or is cancelled.
//
// Two kinds of client call ext_proc: Envoy, and gRPC's own ext_proc client
// (gRFC A93, a proxyless gRPC service). A proxyless client sends no
// pseudo-headers and no source.address, only the request.* attributes: its
// address is the stream's gRPC peer. A gRPC request (content-type
// application/grpc*, or a proxyless client) is denied with grpc_status too
// (400 INVALID_ARGUMENT, 403 PERMISSION_DENIED, 429 RESOURCE_EXHAUSTED, 503
// UNAVAILABLE) and the body's message in details. Header values go in one
// field only, the one the client reads: raw_value for Envoy (with its
// default runtime guard send_header_raw_value it reads nothing else, and it
// rejects a mutation with both), value for a proxyless client (grpc-go reads
// value for text headers), raw_value for -bin headers and non-UTF-8 values.
//
// # HTTP authorization
//
// HTTPServer answers the same decisions over plain HTTP, for Envoy's
// ext_authz http_service and for proxies with an auth subrequest (nginx
// auth_request, Caddy forward_auth, Traefik ForwardAuth):
//
//	request                          method, path, host
//	ANY /ext_authz/<path>            the request's own; path behind the prefix
//	ANY /forward_auth                X-Forwarded-Method and -Uri (Caddy, Traefik), else
//	                                 X-Original-Method and -URI (nginx), never a mix;
//	                                 X-Forwarded-Host, else Host
//
// The form is told from the path as sent, before decoding. The headers are
// the original request's. The client address is the
// right-most X-Forwarded-For entry, which the proxy appended, else X-Real-IP,
// else the TCP peer; the policy's clients.ip reads it as it reads Envoy's
// source address. X-Tollgate-Stage: api/stage names the stage, as the
// context extensions do. Any other path is 404.
//
// An allowed request is 200 with an empty body and, as headers, what an
// ok_response carries: the upstream headers, the rate-limit headers, and the
// headers to remove in x-envoy-auth-headers-to-remove (Envoy's convention;
// nginx and Caddy configurations clear them themselves). A denied request is
// the denied_response as it is: status, headers and JSON body (for a gRPC
// request, grpc-status and the message alone). Both are
// built by the code that builds CheckResponse.
//
// # Example
//
//	srv := grpc.NewServer()
//	authv3.RegisterAuthorizationServer(srv, &envoy.AuthzServer{Decider: d})
//	extprocv3.RegisterExternalProcessorServer(srv, &envoy.ProcessServer{Decider: d, Releaser: d})
//
// # Concurrency
//
// RequestFromCheck, RequestFromProcess, RequestFromHTTP, CheckResponse and
// ImmediateResponse are pure functions and safe for concurrent use.
// AuthzServer, ProcessServer and HTTPServer are safe for concurrent use when
// their Decider and Releaser are; they hold no state of their own beyond
// one stream's decision. A policy.Request filled by RequestFromCheck shares
// the CheckRequest's header map and must not outlive it.
package envoy
