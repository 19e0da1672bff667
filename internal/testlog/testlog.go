// Package testlog holds what tests write logs and process output into.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a log sink safe for concurrent writes: a server's logger and
// the test reading it run at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
