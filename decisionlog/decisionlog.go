package decisionlog

import (
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Record is one decision's line, before encoding. Its fields are copied, not
// encoded, by Log: a Record holds only strings the decision already holds,
// so that the decision path allocates nothing for it.
type Record struct {
	// Time is the decision's instant.
	Time time.Time
	// API, Stage and Route name what the request was checked against
	// (empty when none).
	API, Stage, Route string
	// Method is the request's method, Path its path as routes match it,
	// without query string (empty when the request could not be read).
	Method, Path string
	// IP is the client's address (invalid: unknown).
	IP netip.Addr
	// KeyID, Customer and Plan are set when an API key was used: the
	// key's id, never its value.
	KeyID, Customer, Plan string
	// Status is the answer's HTTP status, Reason the denial's reason
	// (empty when allowed).
	Status int
	Reason string
	// Shadow lists, comma-separated, the shadow limits that would have
	// denied the request (policy.Decision.Shadow); written as a list.
	Shadow string
}

// Options configures Open.
type Options struct {
	// Filename is the log file; rotated files go beside it.
	Filename string
	// MaxSize is the size in megabytes at which the file is rotated
	// (default DefaultMaxSize).
	MaxSize int
	// MaxBackups is how many rotated files are kept (default
	// DefaultMaxBackups).
	MaxBackups int
	// Compress gzips the rotated files.
	Compress bool
	// Buffer is how many records may wait while the writer writes the
	// batch before them (at most as many again); past it, Log drops lines
	// (default DefaultBuffer).
	Buffer int
	// Logger receives the write errors (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultMaxSize    = 100
	DefaultMaxBackups = 10
	// DefaultBuffer holds about a second of a busy replica's decisions
	// (a record is about 200 bytes: two buffers, 3.2 MB).
	DefaultBuffer = 8192
)

// batchSize is the size of the writes to the file: lines are written
// whole, so a rotation never cuts one in two.
const batchSize = 64 << 10

// Writer is an open decision log.
//
// Log appends to pending under mu; the writer goroutine swaps pending for
// its empty batch and encodes the whole batch outside the lock. A record
// costs the decision one uncontended lock, and the writer takes the lock
// once per batch, not once per line (a channel of records cost a lock
// hand-off between the two cores per line).
type Writer struct {
	mu      sync.Mutex
	pending []Record // cap is the buffer's size; never grows
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	sink    io.Writer
	log     *slog.Logger
	dropped atomic.Uint64
	once    sync.Once
	err     error // of the sink's Close, set before done closes
}

// Open opens (creates or appends to) the log file of o and starts the
// writer. An error opening the file is returned now rather than lost with
// the first lines.
func Open(o Options) (*Writer, error) {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxBackups <= 0 {
		o.MaxBackups = DefaultMaxBackups
	}
	lj := &lumberjack.Logger{Filename: o.Filename, MaxSize: o.MaxSize, MaxBackups: o.MaxBackups,
		Compress: o.Compress}
	// An empty write opens the file.
	if _, err := lj.Write(nil); err != nil {
		return nil, err
	}
	return New(lj, o.Buffer, o.Logger), nil
}

// New starts a writer of the log to sink, with a buffer of buffer records
// (<= 0: DefaultBuffer). Close closes sink when it is an io.Closer.
func New(sink io.Writer, buffer int, logger *slog.Logger) *Writer {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	if logger == nil {
		logger = slog.Default()
	}
	w := &Writer{pending: make([]Record, 0, buffer), wake: make(chan struct{}, 1), stop: make(chan struct{}),
		done: make(chan struct{}), sink: sink, log: logger}
	go w.run(make([]Record, 0, buffer))
	return w
}

// Log queues r's line without waiting: when the buffer is full, the line is
// dropped and counted. It reports whether the line was queued.
func (w *Writer) Log(r *Record) bool {
	w.mu.Lock()
	n := len(w.pending)
	if n == cap(w.pending) {
		w.mu.Unlock()
		w.dropped.Add(1)
		return false
	}
	w.pending = append(w.pending, *r)
	w.mu.Unlock()
	if n == 0 {
		// The first record of a batch wakes the writer; the others find
		// it awake or the wake-up still pending.
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Dropped returns how many lines were lost: the buffer was full, or the
// file could not be written.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Rotate closes the log file and starts a new one, as a full file does
// (the old one is kept, compressed when asked). It is for operators and
// tests; a sink that cannot rotate makes it a no-op.
func (w *Writer) Rotate() error {
	if r, ok := w.sink.(interface{ Rotate() error }); ok {
		return r.Rotate()
	}
	return nil
}

// Close writes the lines queued, closes the file and stops the writer.
func (w *Writer) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.err
}

// run is the writer goroutine: it takes the records queued, a batch at a
// time, encodes them and writes them in writes of whole lines.
func (w *Writer) run(batch []Record) {
	defer close(w.done)
	buf := make([]byte, 0, batchSize+1024)
	lines := 0
	failing := false
	write := func() {
		if len(buf) == 0 {
			return
		}
		_, err := w.sink.Write(buf)
		switch {
		case err != nil:
			w.dropped.Add(uint64(lines))
			if !failing {
				w.log.Error("decision log: write failed; lines are dropped until it works again", "err", err)
			}
			failing = true
		case failing:
			w.log.Info("decision log: writing again")
			failing = false
		}
		buf, lines = buf[:0], 0
	}
	for {
		stopping := false
		select {
		case <-w.wake:
		case <-w.stop:
			stopping = true
		}
		w.mu.Lock()
		batch, w.pending = w.pending, batch
		w.mu.Unlock()
		for i := range batch {
			buf = appendLine(buf, &batch[i])
			lines++
			if len(buf) >= batchSize {
				write()
			}
		}
		write()
		// The strings of the lines written are not kept alive.
		clear(batch)
		batch = batch[:0]
		if stopping {
			if c, ok := w.sink.(io.Closer); ok {
				w.err = c.Close()
			}
			return
		}
	}
}
