package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/pollbridge/pollbridge/bridge"
)

var _ bridge.Sink = (*Stdout)(nil)

// Stdout is a sink that writes each event's payload as one line of compact
// JSON, for debugging and for piping into other tools. It is safe for
// concurrent use; lines are never interleaved.
type Stdout struct {
	mu sync.Mutex
	w  io.Writer
}

// NewStdout returns a sink writing to w (despite the name, any writer).
func NewStdout(w io.Writer) *Stdout {
	return &Stdout{w: w}
}

// Send writes the payload of ev (see Encode), compacted, and a newline in a
// single Write. An event that cannot be encoded is a permanent
// *bridge.DeliveryError; a failed write is a plain error.
func (s *Stdout) Send(ctx context.Context, ev *bridge.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	body, err := Encode(ev)
	if err != nil {
		return &bridge.DeliveryError{Permanent: true, Err: err}
	}
	var line bytes.Buffer
	line.Grow(len(body) + 1)
	if err := json.Compact(&line, body); err != nil {
		return &bridge.DeliveryError{Permanent: true, Err: fmt.Errorf("compact: %w", err)}
	}
	line.WriteByte('\n')

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(line.Bytes()); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
