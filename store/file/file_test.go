package file

import (
	"crypto/sha256"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/internal/testclock"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

func countOf(used int64, until time.Time) memory.Count {
	return memory.Count{Used: used, Until: until}
}

// t0 is a fixed instant at noon UTC.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// clock is the tests' settable clock.
type clock = testclock.Clock

// open opens a store in dir with the clock and a flush interval long
// enough that only Flush and Close write (unless the test says otherwise).
func open(t *testing.T, dir string, c *clock) *Store {
	t.Helper()
	s, err := Open(dir, Options{FlushInterval: time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var (
	dayStart = t0.Truncate(24 * time.Hour)
	dayEnd   = dayStart.Add(24 * time.Hour)
	quotaKey = policy.Key{Limit: "quota-pro", Subject: "acme", Period: dayStart.Unix()}
	usageKey = policy.Key{Limit: "usage-pro", Subject: "acme", Period: dayStart.Unix()}
)

// spend runs n requests at now against a quota of limit on quotaKey, with
// the usage counter, and returns how many were admitted.
func spend(t *testing.T, s *Store, now time.Time, limit int64, n int) int {
	t.Helper()
	admitted := 0
	var b policy.Batch
	for range n {
		b.Reset()
		b.Ops = append(b.Ops, policy.Op{Key: quotaKey, Tier: policy.TierQuota, Quota: limit, End: dayEnd})
		b.Usage = usageKey
		if err := s.Apply(now, &b); err != nil {
			t.Fatal(err)
		}
		if b.Taken {
			admitted++
		}
	}
	return admitted
}

func counter(t *testing.T, s *Store, k policy.Key) (used, granted int64) {
	t.Helper()
	used, granted, err := s.Counter(k)
	if err != nil {
		t.Fatal(err)
	}
	return used, granted
}

// TestCountersSurviveClose: a graceful stop loses nothing: after Close and
// Open, the quota counts on from where it was and usage is kept.
func TestCountersSurviveClose(t *testing.T) {
	dir, c := t.TempDir(), testclock.New(t0)
	s := open(t, dir, c)
	if n := spend(t, s, t0, 10, 7); n != 7 {
		t.Fatalf("step 1: got %d admitted, want 7", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, c)
	if used, _ := counter(t, s, quotaKey); used != 7 {
		t.Fatalf("step 2: got %d used after reopening, want 7", used)
	}
	if n := spend(t, s, t0, 10, 5); n != 3 {
		t.Fatalf("step 3: got %d admitted, want 3 (quota 10, 7 used)", n)
	}
	if used, _ := counter(t, s, usageKey); used != 10 {
		t.Fatalf("step 4: got usage %d, want 10", used)
	}
}

// snapshot copies the database file as it is on disk now, as a crash would
// leave it, and opens the copy.
func snapshot(t *testing.T, s *Store, c *clock) *Store {
	t.Helper()
	dir := t.TempDir()
	src, err := os.Open(s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, DBName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, dir, c)
}

// TestCrashLosesOnlyUnflushed: the disk holds every count up to the last
// flush; what came after it is what a crash loses.
func TestCrashLosesOnlyUnflushed(t *testing.T) {
	c := testclock.New(t0)
	s := open(t, t.TempDir(), c)
	spend(t, s, t0, 100, 6)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	spend(t, s, t0, 100, 4)
	crashed := snapshot(t, s, c)
	if used, _ := counter(t, crashed, quotaKey); used != 6 {
		t.Fatalf("got %d used after the crash, want 6 (flushed before the last 4)", used)
	}
	if used, _ := counter(t, s, quotaKey); used != 10 {
		t.Fatalf("the running store: got %d used, want 10", used)
	}
}

// TestFlusherWritesOnItsOwn: without Flush or Close, the flusher writes
// within its interval.
func TestFlusherWritesOnItsOwn(t *testing.T) {
	c := testclock.New(t0)
	flushed := make(chan int, 100)
	s, err := Open(t.TempDir(), Options{FlushInterval: 20 * time.Millisecond, Now: c.Now,
		OnFlush: func(n int, _ time.Duration, err error) {
			if err == nil {
				flushed <- n
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spend(t, s, t0, 100, 3)
	for n := 0; n == 0; {
		select {
		case n = <-flushed:
		case <-time.After(10 * time.Second):
			t.Fatal("the flusher wrote nothing in 10s")
		}
	}
	if used, _ := counter(t, snapshot(t, s, c), quotaKey); used != 3 {
		t.Fatalf("got %d used on disk, want 3", used)
	}
}

// TestGrantIsDurable: a grant is on disk when Grant returns.
func TestGrantIsDurable(t *testing.T) {
	c := testclock.New(t0)
	s := open(t, t.TempDir(), c)
	spend(t, s, t0, 5, 5)
	if err := s.Grant(quotaKey, 3, dayEnd); err != nil {
		t.Fatal(err)
	}
	crashed := snapshot(t, s, c)
	if used, granted := counter(t, crashed, quotaKey); used != 5 || granted != 3 {
		t.Fatalf("on disk: got %d used, %d granted, want 5 and 3", used, granted)
	}
	if n := spend(t, crashed, t0, 5, 5); n != 3 {
		t.Fatalf("got %d admitted after the grant, want 3", n)
	}
}

// TestKeysSurviveClose: run-time keys are written through; a deleted key
// stays deleted.
func TestKeysSurviveClose(t *testing.T) {
	dir, c := t.TempDir(), testclock.New(t0)
	s := open(t, dir, c)
	a := &policy.APIKey{ID: "acme-rt", Customer: "acme", Name: "Acme batch", Hash: sha256.Sum256([]byte("value-a")),
		Plans: []string{"pro"}, Enabled: true, Created: t0, Expires: t0.Add(48 * time.Hour)}
	b := &policy.APIKey{ID: "hooli-rt", Customer: "hooli", Hash: sha256.Sum256([]byte("value-b")), Plans: []string{"free"}, Created: t0}
	for _, k := range []*policy.APIKey{a, b} {
		if err := s.SaveKey(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.DeleteKey("hooli-rt"); !ok || err != nil {
		t.Fatalf("delete: got %v, %v, want true, nil", ok, err)
	}
	s = snapshot(t, s, c) // written through: no flush needed
	keys, err := s.RuntimeKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("got %d keys, want 1", len(keys))
	}
	got := keys[0]
	if got.ID != a.ID || got.Customer != a.Customer || got.Name != a.Name || got.Hash != a.Hash || !got.Enabled ||
		len(got.Plans) != 1 || got.Plans[0] != "pro" || !got.Created.Equal(t0) || !got.Expires.Equal(a.Expires) {
		t.Fatalf("got %+v, want %+v", got, a)
	}
	if k, _ := s.LookupKey(a.Hash); k == nil || k.ID != a.ID {
		t.Fatalf("lookup by hash: got %v, want %s", k, a.ID)
	}
	raw, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "value-a") {
		t.Fatal("the database holds a key value")
	}
}

// TestHistoryReadFromDisk: a day long past is not in memory after Open, and
// Counter reads it from disk; a counter that outlived the retention is
// pruned.
func TestHistoryReadFromDisk(t *testing.T) {
	dir, c := t.TempDir(), testclock.New(t0)
	s := open(t, dir, c)
	spend(t, s, t0, 100, 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	c.Set(t0.Add(30 * 24 * time.Hour))
	s = open(t, dir, c)
	if _, ok := s.mem.Lookup(usageKey); ok {
		t.Fatal("a usage counter 30 days old was loaded into memory")
	}
	if used, _ := counter(t, s, usageKey); used != 4 {
		t.Fatalf("30 days on: got usage %d, want 4 from disk", used)
	}
	if used, _ := counter(t, s, quotaKey); used != 4 {
		t.Fatalf("30 days on: got quota used %d, want 4 from disk", used)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	c.Set(dayEnd.Add(DefaultRetention + 2*24*time.Hour))
	s = open(t, dir, c)
	if err := s.Flush(); err != nil { // the first flush prunes
		t.Fatal(err)
	}
	if used, _ := counter(t, s, usageKey); used != 0 {
		t.Fatalf("past the retention: got usage %d, want 0 (pruned)", used)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketCounters).Stats().KeyN; n != 0 {
			t.Errorf("past the retention: got %d counters on disk, want 0", n)
		}
		return nil
	})
}

// TestPruneKeepsLive: a prune deletes only what ended more than the
// retention ago, whatever the order of the keys.
func TestPruneKeepsLive(t *testing.T) {
	c := testclock.New(t0)
	s := open(t, t.TempDir(), c)
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	// A month quota that began long ago but ends within the retention,
	// one that ended, and a live one.
	keep := policy.Key{Limit: "m", Subject: "a", Period: old.Unix()}
	drop := policy.Key{Limit: "m", Subject: "b", Period: old.Unix()}
	live := policy.Key{Limit: "d", Subject: "a", Period: t0.Unix()}
	s.mem.Restore(keep, countOf(1, t0.Add(-time.Hour)))
	s.mem.Restore(drop, countOf(2, old.Add(time.Hour)))
	s.mem.Restore(live, countOf(3, t0.Add(time.Hour)))
	for _, k := range []policy.Key{keep, drop, live} {
		if err := s.Grant(k, 1, time.Time{}); err != nil { // writes each through
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s.mem.Sweep(t0)
	for k, want := range map[policy.Key]int64{keep: 1, drop: 0, live: 3} {
		if used, _ := counter(t, s, k); used != want {
			t.Errorf("%s/%s: got %d used, want %d", k.Limit, k.Subject, used, want)
		}
	}
}

// TestSecondOpenFails: one directory, one process: a second Open names the
// file and says it is in use.
func TestSecondOpenFails(t *testing.T) {
	dir, c := t.TempDir(), testclock.New(t0)
	open(t, dir, c)
	_, err := Open(dir, Options{Now: c.Now})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, DBName)) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("got %v, want an error naming the file and saying it is in use", err)
	}
}

// TestBadRecordsReported: Open reports every record it cannot read, with
// its place, and opens nothing.
func TestBadRecordsReported(t *testing.T) {
	dir, c := t.TempDir(), testclock.New(t0)
	s := open(t, dir, c)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, DBName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketKeys).Put([]byte("k1"), []byte(`{"id":"k1","customer":"c","hash":"sha256:zz","plans":[],"enabled":true,"created":"2026-11-20T12:00:00Z"}`))
		tx.Bucket(bucketKeys).Put([]byte("k2"), []byte(`{"id":"other","customer":"c","hash":"sha256:`+strings.Repeat("0", 64)+`","plans":[],"enabled":true,"created":"2026-11-20T12:00:00Z"}`))
		tx.Bucket(bucketCounters).Put(encodeKey(quotaKey), []byte{1, 2, 3})
		return nil
	})
	db.Close()
	_, err = Open(dir, Options{Now: c.Now})
	if err == nil {
		t.Fatal("got no error, want three")
	}
	for _, want := range []string{filepath.Join(dir, DBName), `keys/k1: hash "sha256:zz" is not sha256:<64 hex>`,
		`keys/k2: holds id "other"`, "counters/", "counter value of 3 bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to hold %q", err, want)
		}
	}
}

// TestFormatChecked: a database of another layout is refused.
func TestFormatChecked(t *testing.T) {
	dir, c := t.TempDir(), testclock.New(t0)
	s := open(t, dir, c)
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, DBName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaFormat, []byte("9")) })
	db.Close()
	if _, err := Open(dir, Options{Now: c.Now}); err == nil || !strings.Contains(err.Error(), `database format "9"`) {
		t.Fatalf("got %v, want a format error", err)
	}
}

// TestFailedFlushKeepsCounts: a write that fails is reported by Ready and
// OnFlush, and the counts it held stay for the next write.
func TestFailedFlushKeepsCounts(t *testing.T) {
	c := testclock.New(t0)
	var flushErrs []error
	s, err := Open(t.TempDir(), Options{FlushInterval: time.Hour, Now: c.Now,
		OnFlush: func(_ int, _ time.Duration, err error) { flushErrs = append(flushErrs, err) }})
	if err != nil {
		t.Fatal(err)
	}
	spend(t, s, t0, 100, 2)
	s.db.Close() // every write fails from here on
	if err := s.Flush(); err == nil {
		t.Fatal("flush: got no error")
	}
	if err := s.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "write 2 counters") {
		t.Fatalf("ready: got %v, want the write error", err)
	}
	if len(flushErrs) != 1 || flushErrs[0] == nil {
		t.Fatalf("OnFlush: got %v, want one error", flushErrs)
	}
	if len(s.pending) != 2 {
		t.Fatalf("got %d counters waiting, want 2", len(s.pending))
	}
	if used, _ := counter(t, s, quotaKey); used != 2 {
		t.Fatalf("got %d used, want 2", used)
	}
	if err := s.Close(); err == nil {
		t.Fatal("close: got no error, want the last write's")
	}
}

// TestCodecRoundTrip: keys and counters decode to what was encoded, and
// keys sort by period.
func TestCodecRoundTrip(t *testing.T) {
	keys := []policy.Key{
		{Limit: "a", Period: -5},
		{Limit: "q", Subject: "acme", Period: 0},
		{Limit: "waf", Subject: strings.Repeat("x", 300), Period: 1 << 40},
	}
	for i, k := range keys {
		got, err := decodeKey(encodeKey(k))
		if err != nil || got != k {
			t.Errorf("key %d: got %+v, %v, want %+v", i, got, err, k)
		}
		if i > 0 && string(encodeKey(keys[i-1])) >= string(encodeKey(k)) {
			t.Errorf("key %d does not sort after key %d", i, i-1)
		}
	}
	cnt := countOf(42, t0)
	cnt.Granted = 7
	if got, err := decodeCount(encodeCount(cnt)); err != nil || got.Used != 42 || got.Granted != 7 || !got.Until.Equal(t0) {
		t.Errorf("count: got %+v, %v, want %+v", got, err, cnt)
	}
	for _, bad := range [][]byte{nil, {1, 2}, append(encodeKey(keys[1]), 0)} {
		if _, err := decodeKey(bad); err == nil {
			t.Errorf("decodeKey(%x): got no error", bad)
		}
	}
}

// TestWAFCountersBounded: Options.MaxCounters bounds the WAF counters the
// file store keeps in memory.
func TestWAFCountersBounded(t *testing.T) {
	c := testclock.New(t0)
	s, err := Open(t.TempDir(), Options{FlushInterval: time.Hour, Now: c.Now, MaxCounters: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 2000 {
		b := &policy.Batch{}
		b.Reset()
		b.Hits = append(b.Hits, policy.Hit{Key: policy.Key{Limit: "waf", Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})},
			Limit: 100, Window: time.Minute})
		if err := s.Apply(t0, b); err != nil {
			t.Fatal(err)
		}
	}
	if held, dropped := s.WAFCounters(); held > 256 || held+int(dropped) != 2000 {
		t.Errorf("got %d held %d dropped, want at most 256 held and 2000 in all", held, dropped)
	}
}
