package redistest

import (
	"bufio"
	"fmt"
	"net"
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
