package redistest

import "syscall"

// procAttr puts a redis-server in its own process group (a Ctrl-C at the
// terminal reaches the test binary, which stops it) and has the kernel kill
// it should the test binary die before its cleanups run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
