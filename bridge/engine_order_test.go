package bridge_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// The events of one item arrive in the order they were detected, even when
// the first one fails and waits for its retry; meanwhile another item's
// event is not held up.
func TestEngineItemEventsArriveInDetectionOrder(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	a.set("1", map[string]any{"status": "v0"})
	a.set("2", map[string]any{"status": "v0"})
	// A retry long enough for everything below to happen before it.
	cfg := strings.Replace(oneSource(a.URL, r.URL, ""), "retry: {initial_backoff: 20ms, max_backoff: 100ms}",
		"retry: {initial_backoff: 2s, max_backoff: 2s}", 1)
	h := start(t, cfg)
	h.poll(t, "orders")

	// The first attempt of item 1's first event fails.
	r.fail(1, http.StatusServiceUnavailable)
	a.set("1", map[string]any{"status": "v1"})
	if res := h.poll(t, "orders"); len(res.Events) != 1 {
		t.Fatalf("poll after v1: %d events, want 1", len(res.Events))
	}
	eventually(t, "the failed first attempt", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.arrived == 1 && r.failNext == 0
	})
	for _, v := range []string{"v2", "v3"} {
		a.set("1", map[string]any{"status": v})
		if res := h.poll(t, "orders"); len(res.Events) != 1 {
			t.Fatalf("poll after %s: %d events, want 1", v, len(res.Events))
		}
	}
	a.set("2", map[string]any{"status": "v1"})
	if res := h.poll(t, "orders"); len(res.Events) != 1 {
		t.Fatalf("poll after item 2's change: %d events, want 1", len(res.Events))
	}

	// Item 2 goes out while item 1's first event waits for its retry and
	// the two after it wait for that one.
	eventually(t, "item 2's event", func() bool { return len(r.deliveries()) >= 1 })
	if got := describe(r.deliveries()); !slices.Equal(got, []string{"2 v1"}) {
		t.Fatalf("delivered while item 1 retries: %q, want only item 2's event", got)
	}
	eventually(t, "item 1's events counted as 1 retrying and 2 pending", func() bool {
		st, err := h.Store.Stats(context.Background(), time.Now())
		return err == nil && st["app"] == (store.SinkStats{Pending: 2, Retrying: 1})
	})

	eventually(t, "all 4 events", func() bool { return len(r.deliveries()) >= 4 })
	h.stop(t)
	got := r.deliveries()
	if want := []string{"2 v1", "1 v1", "1 v2", "1 v3"}; !slices.Equal(describe(got), want) {
		t.Fatalf("delivered %q, want %q", describe(got), want)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, d := range got {
		want := 1
		if i == 1 {
			want = 2 // item 1's first event: the failure, then the retry
		}
		if n := len(r.attempts[d.ID]); n != want {
			t.Errorf("%s (%s) was attempted %d times, want %d", d.ID, describe(got[i : i+1])[0], n, want)
		}
	}
}

// describe names each delivery by its item key and status.
func describe(ds []delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		status := "deleted"
		if s := strings.SplitAfter(string(d.Data.Item), `"status":"`); len(s) == 2 {
			status, _, _ = strings.Cut(s[1], `"`)
		}
		out[i] = d.Data.Key + " " + status
	}
	return out
}
