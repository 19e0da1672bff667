package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// The reorder window of one file. Concurrent decisions reach the log in a
// slightly different order than their instants (each reads the clock, is
// decided, then queues its line), so a file's lines are sorted again within
// a window: a line is handed on once a line at least Window later has been
// read from the same file, or once MaxPending lines wait behind it. A line
// that comes later than that (more than Window, or MaxPending lines, after a
// later one) is replayed late, at its own instant, and counted
// (Report.Late).
const (
	Window     = time.Second
	MaxPending = 16384
)

// maxLine is the longest line read; a longer one is skipped as malformed.
const maxLine = 1 << 20

// source reads one decision log file, plain or gzip, and hands out its
// lines in time order within the reorder window.
type source struct {
	name     string
	index    int
	f        *os.File
	r        *bufio.Reader
	no       int64 // lines read
	pending  entries
	newest   int64 // the latest instant read
	last     int64 // the latest instant handed out
	eof      bool
	good     int64  // lines parsed
	bad      int64  // lines skipped: malformed, or cut short by the end of a gzip stream
	firstBad string // the first malformed line's message
	late     int64
	long     []byte // a line longer than r's buffer
	free     *[]*entry
	warn     func(string)
}

// openSource opens the file; gzip is recognized by its magic bytes (1f 8b),
// not its name.
func openSource(name string, index int, free *[]*entry, warn func(string)) (*source, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	s := &source{name: name, index: index, f: f, free: free, warn: warn, newest: minInstant, last: minInstant}
	br := bufio.NewReaderSize(f, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			s.cutShort(err) // a gzip header half-written
			return s, nil
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		br = bufio.NewReaderSize(gz, 64<<10)
	}
	s.r = br
	return s, nil
}

// minInstant is before every line's instant.
const minInstant = -1 << 63

// close closes the file.
func (s *source) close() error { return s.f.Close() }

// next returns the file's next line in time order within the window, or nil
// at its end. An error is a fault reading the file, or a file none of whose
// lines is a decision.
func (s *source) next() (*entry, error) {
	for !s.eof && (len(s.pending) == 0 ||
		len(s.pending) < MaxPending && s.newest-s.pending[0].nanos < int64(Window)) {
		if err := s.read(); err != nil {
			return nil, err
		}
	}
	if len(s.pending) == 0 {
		if s.good == 0 && s.firstBad != "" {
			return nil, fmt.Errorf("%s: no decision log line in the file (%s)", s.name, s.firstBad)
		}
		return nil, nil
	}
	e := s.pending.pop()
	if e.nanos < s.last {
		s.late++
	} else {
		s.last = e.nanos
	}
	return e, nil
}

// read reads one line into pending, skipping (and counting) a malformed
// one and ignoring a blank one; at the end of the file it sets eof. A gzip
// stream cut short ends the file too: its last line is skipped.
func (s *source) read() error {
	raw, err := s.readLine()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			s.eof = true
			return nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			s.cutShort(err)
			return nil
		}
		return fmt.Errorf("%s: line %d: %w", s.name, s.no+1, err)
	}
	s.no++
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	e := s.alloc()
	if len(raw) > maxLine {
		err = fmt.Errorf("longer than %d bytes", maxLine)
	} else {
		err = e.parse(raw)
	}
	if err != nil {
		*s.free = append(*s.free, e)
		s.malformed(err)
		return nil
	}
	e.file, e.no = s.index, s.no
	s.good++
	s.newest = max(s.newest, e.nanos)
	s.pending.push(e)
	return nil
}

// malformed counts a skipped line and warns about it.
func (s *source) malformed(err error) {
	msg := fmt.Sprintf("%s:%d: not a decision log line: %v", s.name, s.no, err)
	if s.firstBad == "" {
		s.firstBad = msg
	}
	s.bad++
	if s.warn != nil {
		s.warn("skipped " + msg)
	}
}

// cutShort ends a gzip stream that ends before its end (err is
// io.ErrUnexpectedEOF): lumberjack was still writing it, or a copy of it
// was cut. As a plain file's last line cut short, the line being read is
// skipped, counted and named, and the lines before it are replayed.
func (s *source) cutShort(err error) {
	s.no++
	s.eof = true
	s.bad++
	if s.warn != nil {
		s.warn(fmt.Sprintf("skipped %s:%d: the gzip stream is cut short (%v): the lines before it are replayed", s.name, s.no, err))
	}
}

// readLine returns the next line with its newline, or io.EOF after the
// last one (a last line without a newline is a line). A line longer than
// maxLine is returned cut: its end is read and dropped.
func (s *source) readLine() ([]byte, error) {
	b, err := s.r.ReadSlice('\n')
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) && len(b) > 0 {
			return b, nil
		}
		return nil, err
	}
	s.long = append(s.long[:0], b...)
	for errors.Is(err, bufio.ErrBufferFull) {
		b, err = s.r.ReadSlice('\n')
		if len(s.long) <= maxLine {
			s.long = append(s.long, b...)
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return s.long, nil
}

// alloc returns a recycled entry, or a new one.
func (s *source) alloc() *entry {
	if n := len(*s.free); n > 0 {
		e := (*s.free)[n-1]
		*s.free = (*s.free)[:n-1]
		return e
	}
	return new(entry)
}

// before orders entries by instant, then file, then line.
func before(a, b *entry) bool {
	if a.nanos != b.nanos {
		return a.nanos < b.nanos
	}
	if a.file != b.file {
		return a.file < b.file
	}
	return a.no < b.no
}

// entries is a min-heap of entries by before.
type entries []*entry

// push adds e.
func (h *entries) push(e *entry) {
	*h = append(*h, e)
	x := *h
	for i := len(x) - 1; i > 0; {
		p := (i - 1) / 2
		if !before(x[i], x[p]) {
			break
		}
		x[i], x[p] = x[p], x[i]
		i = p
	}
}

// pop removes and returns the first entry; h must not be empty.
func (h *entries) pop() *entry {
	x := *h
	top := x[0]
	n := len(x) - 1
	x[0] = x[n]
	x[n] = nil
	x = x[:n]
	*h = x
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && before(x[l], x[m]) {
			m = l
		}
		if r < n && before(x[r], x[m]) {
			m = r
		}
		if m == i {
			break
		}
		x[i], x[m] = x[m], x[i]
		i = m
	}
	return top
}
