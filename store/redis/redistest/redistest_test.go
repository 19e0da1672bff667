package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestScriptCalls: two EVALs are two script calls; other commands are none.
func TestScriptCalls(t *testing.T) {
	srv := Start(t)
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, cmd := range []string{`EVAL "return 1" 0`, `SET a 1`, `EVAL "return redis.call('GET', 'a')" 0`} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	r.ReadString('\n') // the second line of the bulk reply "1"
	n, err := srv.ScriptCalls()
	if err != nil || n != 2 {
		t.Fatalf("got %d, %v; want 2 script calls", n, err)
	}
}

// TestStartPortTaken: a redis-server whose port is taken exits, and start
// says so, with its output, at once.
func TestStartPortTaken(t *testing.T) {
	bin := lookPath(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // a taker of the port that answers nothing
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	s := &Server{bin: bin, dir: t.TempDir(), port: l.Addr().(*net.TCPAddr).Port}
	err = s.start()
	if !errors.Is(err, errAddrInUse) || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("got %v, want errAddrInUse with redis-server's output", err)
	}
}
