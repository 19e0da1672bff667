package server

import "github.com/tollgate/tollgate/admin"

// The admin API's paging constants, as the tests of this package name them.
const (
	defaultPage   = admin.DefaultPage
	maxUsageCells = admin.MaxUsageCells
)
