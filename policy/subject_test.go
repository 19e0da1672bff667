package policy_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policy"
)

// TestWAFRateLongSubjects: counters keyed by a header value or a path are
// exact for long values too (two that differ only at their end are counted
// apart, the same value together), and a long value costs a counter no more
// than a short one. Issue 13's review found 4 KB header values held in full
// by each counter: about 1 GB at the default bound, from one client.
func TestWAFRateLongSubjects(t *testing.T) {
	for _, key := range []string{"header:x-client", "ip+path"} {
		e := newEngine(ratePolicy(t, key, ""))
		req := func(v string) *policy.Request {
			r := anon("GET", "/x/"+v, "192.0.2.1")
			r.Headers["x-client"] = v
			return r
		}
		long := strings.Repeat("v", 4096)
		for i, st := range []struct {
			value string
			want  policy.Reason
		}{
			{long + "a", ""},
			{long + "b", ""},
			{long + "a", ""},
			{long + "a", "waf:per-client"}, // third of the same value
			{long + "b", ""},
			{long + "b", "waf:per-client"},
		} {
			if d := e.do(t, t0, req(st.value)); d.Reason != st.want {
				t.Errorf("%s step %d: got %q, want %q", key, i, d.Reason, st.want)
			}
		}

		// 2,000 distinct 4 KB values: the counters' heap, per counter.
		const n = 2000
		before := heapAfterGC()
		for i := range n {
			e.do(t, t0, req(long+strings.Repeat("z", i%7)+string(rune('A'+i%26))+strings.Repeat("q", i/182)))
		}
		per := (heapAfterGC() - before) / n
		runtime.KeepAlive(e)
		if per > 1024 {
			t.Errorf("%s: %d bytes of heap per counter of a 4 KB value, want far less than the value", key, per)
		}
	}
}

func heapAfterGC() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
