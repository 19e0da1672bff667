//go:build !linux

package redistest

import "syscall"

// procAttr puts a redis-server in its own process group; only Linux can
// also have it killed when the test binary dies (Pdeathsig).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
