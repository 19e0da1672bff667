package server

import "github.com/tollgate/tollgate/policy"

// keyCache is what the admin API calls for key lookups and after its
// changes to the run-time keys: the store itself. A store that caches its
// keys (store/redis) clears its cache on its own writes and on other
// replicas' announcements, so invalidate has nothing left to do.
//
// TODO(issue 14): remove with the admin API's move to a package of its own.
type keyCache struct{ policy.Keys }

// invalidate does nothing: the store clears its own cache.
func (*keyCache) invalidate() {}
