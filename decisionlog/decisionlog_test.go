package decisionlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// decode decodes one line into a Line strictly: a field Line does not
// have, or a missing field, fails.
func decode(t *testing.T, raw []byte) Line {
	t.Helper()
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatalf("line %q: %v", raw, err)
	}
	if n := reflect.TypeFor[Line]().NumField(); len(all) != 13 || n != 13 {
		t.Fatalf("line %q: got %d fields, Line has %d; want 13", raw, len(all), n)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var l Line
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("line %q: %v", raw, err)
	}
	return l
}

// roundTrip is what encoding/json makes of s: invalid UTF-8 bytes become
// U+FFFD each.
func roundTrip(s string) string {
	raw, _ := json.Marshal(s)
	var out string
	json.Unmarshal(raw, &out)
	return out
}

func TestLineFields(t *testing.T) {
	odd := []string{"", "plain", `quo"te\back`, "ctl\x00\x01\x1f\x7f\n\r\t", "caf\u00e9 \u2028 \U0001F600",
		"bad\xffutf8\xc3", "<html>&amp;", "/a b/%2F?"}
	for i, s := range odd {
		r := Record{Time: t0.Add(time.Duration(i) * 1001 * time.Nanosecond), API: s, Stage: s, Route: s, Method: s, Path: s,
			IP: netip.MustParseAddr("2001:db8::1"), KeyID: s, Customer: s, Plan: s, Status: 429, Reason: s}
		raw := appendLine(nil, &r)
		if !bytes.HasSuffix(raw, []byte("}\n")) || bytes.Count(raw, []byte("\n")) != 1 {
			t.Fatalf("%d: got %q, want one line", i, raw)
		}
		l := decode(t, raw)
		want := roundTrip(s)
		for name, got := range map[string]string{"api": l.API, "stage": l.Stage, "route": l.Route, "method": l.Method,
			"path": l.Path, "key_id": l.KeyID, "customer": l.Customer, "plan": l.Plan, "reason": l.Reason} {
			if got != want {
				t.Errorf("%d: %s: got %q, want %q", i, name, got, want)
			}
		}
		ts, err := time.Parse(time.RFC3339Nano, l.TS)
		if err != nil || !ts.Equal(r.Time) {
			t.Errorf("%d: ts %q: got %v (%v), want %v", i, l.TS, ts, err, r.Time)
		}
		if l.IP != "2001:db8::1" || l.Status != 429 || l.Shadow == nil || len(l.Shadow) != 0 {
			t.Errorf("%d: got ip %q status %d shadow %v, want 2001:db8::1, 429, []", i, l.IP, l.Status, l.Shadow)
		}
	}
}

// TestLineShadow: the comma-separated shadow reasons are a JSON list.
func TestLineShadow(t *testing.T) {
	for shadow, want := range map[string][]string{
		"":                                  {},
		"quota":                             {"quota"},
		"waf:watch-net,throttle:plan,quota": {"waf:watch-net", "throttle:plan", "quota"},
	} {
		l := decode(t, appendLine(nil, &Record{Time: t0, Status: 200, Shadow: shadow}))
		if l.Shadow == nil || !slices.Equal(l.Shadow, want) {
			t.Errorf("shadow %q: got %q, want %q", shadow, l.Shadow, want)
		}
	}
}

func TestLineTimestampHasNanoseconds(t *testing.T) {
	r := Record{Time: time.Date(2026, 11, 20, 13, 0, 0, 0, time.FixedZone("CET", 3600))}
	l := decode(t, appendLine(nil, &r))
	if want := "2026-11-20T12:00:00.000000000Z"; l.TS != want {
		t.Fatalf("got ts %q, want %q", l.TS, want)
	}
	if l.IP != "" {
		t.Fatalf("got ip %q for an unknown address, want empty", l.IP)
	}
}

// readLines returns the lines of a file, gunzipped when its name ends in
// .gz; every line must decode.
func readLines(t *testing.T, name string) []Line {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rd io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rd = gz
	}
	var out []Line
	sc := bufio.NewScanner(rd)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, decode(t, sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// waitGzip waits for the compressed rotated files (lumberjack compresses
// in the background) until there are n and no uncompressed backup is left.
func waitGzip(t *testing.T, dir string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		gz, _ := filepath.Glob(filepath.Join(dir, "decisions-*.log.gz"))
		plain, _ := filepath.Glob(filepath.Join(dir, "decisions-*.log"))
		if len(gz) >= n && len(plain) == 0 {
			return gz
		}
		if time.Now().After(deadline) {
			t.Fatalf("got rotated files %v and %v, want %d gzipped and none plain", gz, plain, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRotateCompresses(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "decisions.log")
	w, err := Open(Options{Filename: name, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	logN := func(from, n int) {
		for i := range n {
			w.Log(&Record{Time: t0.Add(time.Duration(from+i) * time.Millisecond), Path: "/p", Status: 200})
		}
	}
	logN(0, 30)
	// Rotate runs beside the writer goroutine: wait until it has written
	// the 30 lines, so that they are all in the rotated file.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(name); err == nil && fi.Size() > 0 && len(readLines(t, name)) == 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the 30 lines were not written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Rotate(); err != nil {
		t.Fatal(err)
	}
	logN(30, 20)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	gz := waitGzip(t, dir, 1)
	if len(gz) != 1 {
		t.Fatalf("got rotated files %v, want 1", gz)
	}
	if got := len(readLines(t, gz[0])); got != 30 {
		t.Fatalf("rotated file: got %d lines, want 30", got)
	}
	if got := len(readLines(t, name)); got != 20 {
		t.Fatalf("current file: got %d lines, want 20", got)
	}
	if w.Dropped() != 0 {
		t.Fatalf("got %d dropped, want 0", w.Dropped())
	}
}

// TestRotateBySizeKeepsLinesWhole writes a little over a megabyte, the
// smallest size lumberjack rotates at: every line of every file must decode
// (the writer writes whole lines, so a rotation never cuts one), and none
// is lost.
func TestRotateBySizeKeepsLinesWhole(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "decisions.log")
	w, err := Open(Options{Filename: name, MaxSize: 1, Compress: true, Buffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	path := "/" + strings.Repeat("x", 997)
	const n = 1500 // about 1.5 MB
	for i := range n {
		// The buffer is small: wait for room rather than drop, as this
		// test counts lines.
		for !w.Log(&Record{Time: t0.Add(time.Duration(i) * time.Millisecond), Path: path, Status: 200}) {
			time.Sleep(time.Millisecond)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	gz := waitGzip(t, dir, 1)
	total := len(readLines(t, name))
	for _, g := range gz {
		fi, _ := os.Stat(g)
		if fi.Size() >= 1<<20 {
			t.Errorf("%s: got %d bytes compressed, want far less than 1 MB", g, fi.Size())
		}
		total += len(readLines(t, g))
	}
	if total != n {
		t.Fatalf("got %d lines in all files, want %d", total, n)
	}
}

func TestOpenReportsABadFile(t *testing.T) {
	// A file where the log's directory should be: nothing can be opened.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if w, err := Open(Options{Filename: filepath.Join(notDir, "decisions.log")}); err == nil {
		w.Close()
		t.Fatal("got no error, want one")
	}
}

// blockingSink holds every write until release is closed.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (s *blockingSink) Write(p []byte) (int, error) {
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func TestFullBufferDropsWithoutWaiting(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	w := New(sink, 4, nil)
	const n = 100
	queued := make(chan int, 1)
	go func() {
		q := 0
		for i := range n {
			if w.Log(&Record{Time: t0, Path: "/p", Status: 200 + i%2}) {
				q++
			}
		}
		queued <- q
	}()
	var q int
	select {
	case q = <-queued:
	case <-time.After(30 * time.Second):
		t.Fatal("Log waited for a blocked sink")
	}
	// The writer goroutine holds at most one batch (4) while its write
	// waits, and the buffer 4 more.
	if q > 8 || q < 4 {
		t.Fatalf("got %d lines queued, want 4 to 8", q)
	}
	if got := w.Dropped(); got != uint64(n-q) {
		t.Fatalf("got %d dropped, want %d", got, n-q)
	}
	close(sink.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(sink.buf.Bytes(), []byte("\n")); got != q {
		t.Fatalf("got %d lines written, want the %d queued", got, q)
	}
}

// failingSink fails every write.
type failingSink struct{}

func (failingSink) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorsCountAsDropped(t *testing.T) {
	w := New(failingSink{}, 16, nil)
	for range 10 {
		for !w.Log(&Record{Time: t0, Status: 200}) {
			time.Sleep(time.Millisecond)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.Dropped(); got != 10 {
		t.Fatalf("got %d dropped, want 10", got)
	}
}
