// Package policy is tollgate's decision core: it compiles a policy file into
// an immutable *Policy and evaluates requests against it.
//
// Like golang.org/x/time/rate, it is arithmetic, maps and mutexes only: no
// goroutines, no network, no files, no logging and no clock. The time is a
// parameter of every call that needs one.
package policy
