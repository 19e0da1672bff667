package decisionlog

import (
	"io"
	"net/netip"
	"runtime"
	"testing"
)

// benchRecord is a keyed decision's record, as the server fills it.
var benchRecord = Record{Time: t0, API: "payments", Stage: "prod", Route: "POST /partners/{id}/transactions",
	Method: "POST", Path: "/partners/p-1/transactions", IP: netip.MustParseAddr("198.51.100.7"),
	KeyID: "k-0001", Customer: "acme", Plan: "pro", Status: 429, Reason: "throttle:plan"}

// BenchmarkLog is the decision path's cost: the copy into the buffer (the
// writer goroutine encodes and writes to io.Discard beside it; lines it
// cannot keep up with are dropped, which costs the same).
func BenchmarkLog(b *testing.B) {
	w := New(io.Discard, 0, nil)
	defer w.Close()
	b.ReportAllocs()
	for b.Loop() {
		w.Log(&benchRecord)
	}
	b.ReportMetric(float64(w.Dropped())/float64(b.N), "dropped/op")
}

func BenchmarkLogParallel(b *testing.B) {
	w := New(io.Discard, 0, nil)
	defer w.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := benchRecord
		for pb.Next() {
			w.Log(&r)
		}
	})
	b.ReportMetric(float64(w.Dropped())/float64(b.N), "dropped/op")
}

// BenchmarkAppendLine is the writer goroutine's cost of a line.
func BenchmarkAppendLine(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendLine(buf[:0], &benchRecord)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkWriterThroughput is the whole cost of a line that is kept:
// queued (waiting for room rather than dropping), encoded and written.
func BenchmarkWriterThroughput(b *testing.B) {
	w := New(io.Discard, 0, nil)
	b.ReportAllocs()
	for b.Loop() {
		for !w.Log(&benchRecord) {
			runtime.Gosched()
		}
	}
	w.Close()
}
