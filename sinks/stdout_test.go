package sinks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pollbridge/pollbridge/bridge"
)

func TestStdout(t *testing.T) {
	var buf bytes.Buffer
	s := NewStdout(&buf)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ev := testEvent()
			ev.ID = fmt.Sprintf("evt_%d", i)
			ev.Item = json.RawMessage("{\n  \"id\": 42,\n  \"status\": \"paid\"\n}") // pretty-printed
			if err := s.Send(context.Background(), ev); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	seen := map[string]bool{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var p struct {
			Type string `json:"type"`
			Data struct {
				ID   string          `json:"id"`
				Item json.RawMessage `json:"item"`
			} `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if p.Type != bridge.ItemUpdated || string(p.Data.Item) != `{"id":42,"status":"paid"}` {
			t.Errorf("line %s", sc.Text())
		}
		seen[p.Data.ID] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct events in output, want %d", len(seen), n)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestStdoutErrors(t *testing.T) {
	err := NewStdout(failWriter{}).Send(context.Background(), testEvent())
	if err == nil || bridge.IsPermanent(err) || !strings.Contains(err.Error(), "write: disk full") {
		t.Errorf("Send = %v, want a retryable write error", err)
	}
	err = NewStdout(&bytes.Buffer{}).Send(context.Background(), &bridge.Event{ID: "e", Item: json.RawMessage(`{`)})
	if !bridge.IsPermanent(err) {
		t.Errorf("Send(bad event) = %v, want permanent", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if err := NewStdout(&buf).Send(ctx, testEvent()); !errors.Is(err, context.Canceled) || buf.Len() != 0 {
		t.Errorf("Send(canceled) = %v, wrote %d bytes", err, buf.Len())
	}
}
