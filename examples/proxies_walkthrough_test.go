package examples_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/walkthrough"
)

// TestProxyWalkthroughs sends every request of the nginx and Caddy
// walkthroughs of examples/payments/README.md, in order, through nginx and
// Caddy running their kits, to a tollgate with the payments policy; a
// person's pause of 3 seconds (on tollgate's clock) separates the blocks.
// Every shown answer must match: the status, the body, every header shown
// (… matches anything, names in any case) and no header of tollgate's that
// is not shown. The loops that send until an answer must get there whatever
// the client's pace: all at one instant, or a request every 80ms (12.5 a
// second, slower than curl on any machine).
func TestProxyWalkthroughs(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(paymentsDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies {
		steps := walkthrough.Parse(t, string(readme), p.addr)
		if len(steps) < 4 {
			t.Fatalf("%s: got %d walkthrough steps to %s, want the whole walkthrough", p.name, len(steps), p.addr)
		}
		for _, pace := range []time.Duration{0, 80 * time.Millisecond} {
			t.Run(p.name+"/"+pace.String(), func(t *testing.T) { walkProxy(t, p, steps, pace) })
		}
	}
}

func walkProxy(t *testing.T, p proxy, steps []walkthrough.Step, pace time.Duration) {
	tollgate, clock := startTollgate(t, paymentsPolicy(t))
	up := startUpstream(t)
	c := newClient(t, p.start(t, tollgate, up.addr()), "")
	block := 0
	for i, s := range steps {
		if s.Block != block {
			clock.Advance(3 * time.Second)
			block = s.Block
		}
		var headers []string
		for name, value := range s.Headers {
			headers = append(headers, name, value)
		}
		var a answer
		for n := range s.Times {
			a = c.do(s.Method, s.Path, headers...)
			if s.Until != 0 && a.status == s.Until {
				break
			}
			if s.Until != 0 && n == s.Times-1 {
				t.Errorf("step %d: no %d in %d requests at a pace of %v", i, s.Until, s.Times, pace)
			}
			if s.Times > 1 {
				clock.Advance(pace) // a loop's requests go at the client's pace
			}
		}
		if s.Want == nil {
			continue
		}
		got := map[string]string{}
		for name, values := range a.header {
			got[strings.ToLower(name)] = strings.Join(values, ", ")
		}
		for _, d := range s.Want.Check(a.status, a.body, got, walkthrough.TollgateHeader) {
			t.Errorf("step %d (%s %s, block %d): %s", i, s.Method, s.Path, s.Block, d)
		}
		if t.Failed() {
			t.Logf("step %d's answer:\n%s", i, a)
		}
	}
}
