package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/internal/enginetest"
	"github.com/pollbridge/pollbridge/bridge/store"
)

// A receiver that keeps failing opens the circuit: no attempt reaches it
// during the cooldown; then one probe, and on success the rest.
func TestEngineCircuitBreaker(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	cfg := strings.Replace(oneSource(a.URL, r.URL, ""), "retry: {initial_backoff: 20ms, max_backoff: 100ms}",
		"retry: {initial_backoff: 10ms, max_backoff: 10ms}\n    circuit_breaker: {failures: 3, cooldown: 1s}\n    concurrency: 1", 1)
	h := start(t, cfg)
	h.poll(t, "orders")
	r.fail(1000, http.StatusServiceUnavailable)
	a.set("1", nil)
	a.set("2", nil)
	h.poll(t, "orders")

	requests := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.arrived
	}
	eventually(t, "the circuit to open", func() bool {
		st, _ := h.Engine.SinkStatus("app")
		return st.State == bridge.SinkOpen
	})
	opened := requests()
	if opened != 3 {
		t.Errorf("circuit opened after %d attempts, want 3", opened)
	}
	r.fail(0, 0) // the receiver recovers during the cooldown
	eventually(t, "both events delivered after the probe", func() bool { return len(r.deliveries()) == 2 })
	st, _ := h.Engine.SinkStatus("app")
	if st.State != bridge.SinkActive {
		t.Errorf("state after recovery = %+v", st)
	}
}

// 410 Gone disables the sink and keeps the event; resuming delivers it.
func TestEngineGoneDisablesSink(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	h := start(t, oneSource(a.URL, r.URL, ""))
	h.poll(t, "orders")
	r.fail(1, http.StatusGone)
	a.set("1", nil)
	h.poll(t, "orders")
	eventually(t, "the sink to be disabled", func() bool {
		st, _ := h.Engine.SinkStatus("app")
		return st.State == bridge.SinkDisabled
	})
	stats, err := h.Store.Stats(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s := stats["app"]; s.Dead != 0 || s.Pending+s.Retrying != 1 {
		t.Fatalf("after 410: %+v, want the event kept in the outbox", s)
	}
	a.set("2", nil)
	h.poll(t, "orders")
	if err := h.Engine.PauseSink("app"); err != nil { // still stopped
		t.Fatal(err)
	}
	if n := len(r.deliveries()); n != 0 {
		t.Fatalf("a disabled sink received %d events", n)
	}
	if err := h.Engine.ResumeSink("app"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery after resume", func() bool { return len(r.deliveries()) == 2 })
}

// A sink's rate limit spaces its deliveries (bursts up to its concurrency)
// and still delivers every event: the limit is paid before claiming.
func TestEngineSinkRateLimit(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	cfg := strings.Replace(oneSource(a.URL, r.URL, ""), "retry: {initial_backoff: 20ms, max_backoff: 100ms}",
		"retry: {initial_backoff: 20ms, max_backoff: 100ms}\n    rate_limit: 10\n    concurrency: 2", 1)
	h := start(t, cfg)
	h.poll(t, "orders")
	const events = 12
	for i := range events {
		a.set(fmt.Sprint(i), nil)
	}
	committed := time.Now()
	h.poll(t, "orders")
	eventually(t, "every event delivered", func() bool { return len(r.deliveries()) == events })
	// 2 at once (the burst), then 10 more at 10 a second: about 1 s.
	if took := time.Since(committed); took < 900*time.Millisecond {
		t.Errorf("%d events delivered in %v with rate_limit 10/s and burst 2; want about 1s or more", events, took)
	}
	deliveredOnce(t, r.deliveries())
}

// Deliveries claimed ahead of the free slots go back to the outbox when the
// sink is paused while they wait: none is sent during the pause, and after
// resuming each arrives exactly once.
func TestEnginePauseHandsBackClaimedAhead(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	cfg := strings.Replace(oneSource(a.URL, r.URL, ""), "retry: {initial_backoff: 20ms, max_backoff: 100ms}",
		"retry: {initial_backoff: 20ms, max_backoff: 100ms}\n    concurrency: 1", 1)
	h := start(t, cfg)
	h.poll(t, "orders")
	block := make(chan struct{})
	r.mu.Lock()
	r.block = block
	r.mu.Unlock()
	const events = 4
	for i := range events {
		a.set(fmt.Sprint(i), nil)
	}
	h.poll(t, "orders")
	// One delivery hangs in the receiver; the others were claimed ahead
	// and wait for its slot.
	eventually(t, "the first attempt to reach the receiver", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.arrived == 1
	})
	if err := h.Engine.PauseSink("app"); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.block = nil
	r.mu.Unlock()
	close(block)
	eventually(t, "the attempt in flight to finish", func() bool { return len(r.deliveries()) == 1 })
	eventually(t, "the others back in the outbox, unclaimed", func() bool {
		live, err := h.Store.Live(context.Background(), "app", 0)
		if err != nil || len(live) != events-1 {
			return false
		}
		claimed, err := h.Store.Claim(context.Background(), "app", time.Now(), events, time.Millisecond)
		return err == nil && len(claimed) == events-1 // claimable at once: handed back
	})
	r.mu.Lock()
	arrived := r.arrived
	r.mu.Unlock()
	if arrived != 1 {
		t.Fatalf("%d requests reached the receiver while the sink was paused, want 1", arrived)
	}
	if err := h.Engine.ResumeSink("app"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every event delivered after resuming", func() bool { return len(r.deliveries()) == events })
	deliveredOnce(t, r.deliveries())
}

// deliveredOnce fails the test for every event that arrived twice.
func deliveredOnce(t *testing.T, ds []delivery) {
	t.Helper()
	seen := map[string]bool{}
	for _, d := range ds {
		if seen[d.ID] {
			t.Errorf("event %s delivered twice", d.ID)
		}
		seen[d.ID] = true
	}
}

// claimWatch counts the Claim calls to a real store that claimed something.
type claimWatch struct {
	store.Store
	claims atomic.Int32
}

func (c *claimWatch) Claim(ctx context.Context, sink string, now time.Time, n int, lease time.Duration) ([]store.Delivery, error) {
	ds, err := c.Store.Claim(ctx, sink, now, n, lease)
	if len(ds) > 0 {
		c.claims.Add(1)
	}
	return ds, err
}

// startWatched runs an engine whose store counts its claims.
func startWatched(t *testing.T, yamlText string) (*harness, *claimWatch) {
	t.Helper()
	var w *claimWatch
	h := &harness{enginetest.BuildWith(t, yamlText, bridge.Options{}, func(st store.Store) store.Store {
		w = &claimWatch{Store: st}
		return w
	})}
	h.Run()
	return h, w
}

// queueBlocked commits events for a sink of concurrency 2 whose receiver
// holds every request until the test lets it go (a send on the returned
// channel lets one go), and waits for the first two requests. The
// dispatcher has claimed six then: two sent, four claimed ahead.
func queueBlocked(t *testing.T, events int) (*harness, *receiver, *claimWatch, chan struct{}) {
	a, r := newAPI(t), newReceiver(t)
	cfg := strings.Replace(oneSource(a.URL, r.URL, ""), "retry: {initial_backoff: 20ms, max_backoff: 100ms}",
		"retry: {initial_backoff: 20ms, max_backoff: 100ms}\n    concurrency: 2", 1)
	h, w := startWatched(t, cfg)
	h.poll(t, "orders")
	block := make(chan struct{})
	r.mu.Lock()
	r.block = block
	r.mu.Unlock()
	for i := range events {
		a.set(fmt.Sprint(i), nil)
	}
	h.poll(t, "orders")
	eventually(t, "the first two attempts to reach the receiver", func() bool { return r.requests() == 2 })
	if n := w.claims.Load(); n != 1 {
		t.Fatalf("%d claims before any attempt finished, want 1", n)
	}
	return h, r, w, block
}

// claimAhead is queueBlocked until the dispatcher claims its next batch:
// two attempts finish, two of the four claimed ahead go out, and with two
// (one slots' worth) left to send, the next batch is claimed.
func claimAhead(t *testing.T, events int) (*harness, *receiver, chan struct{}) {
	h, r, w, block := queueBlocked(t, events)
	block <- struct{}{}
	block <- struct{}{}
	eventually(t, "the next batch to be claimed", func() bool { return w.claims.Load() == 2 })
	return h, r, block
}

// requests is how many requests reached the receiver, finished or not.
func (r *receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrived
}

// When a batch has its last slots' worth of deliveries left to send, the
// next batch is claimed at once, while they wait for their slots: the slots
// that free up meanwhile need not wait for a store round trip. Every event
// still arrives once.
func TestEngineClaimsNextBatchWhileSending(t *testing.T) {
	const events = 20
	h, r, block := claimAhead(t, events)
	if n := r.requests(); n != 4 {
		t.Errorf("the next batch was claimed after %d requests, want 4 (before the last two of the batch got slots)", n)
	}
	close(block)
	eventually(t, "every event delivered", func() bool { return len(r.deliveries()) == events })
	deliveredOnce(t, r.deliveries())
	h.stop(t)
}

// A batch claimed ahead that shutdown leaves unsent goes back to the
// outbox, claimable at once by the next run rather than after its lease.
func TestEngineShutdownHandsBackNextBatch(t *testing.T) {
	const events = 20
	h, r, block := claimAhead(t, events)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		h.stop(t)
	}()
	close(block) // the attempts in flight finish within the grace period
	<-stopped
	left := events - len(r.deliveries())
	if left <= 0 {
		t.Fatalf("all %d events were delivered before shutdown; the test needs some left", events)
	}
	claimed, err := h.Store.Claim(context.Background(), "app", time.Now(), events, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != left {
		t.Errorf("after shutdown %d of the %d undelivered events are claimable at once, want all", len(claimed), left)
	}
}

// A batch claimed ahead that arrives after the sink was paused is handed
// back, not sent: during the pause only the attempts already in flight
// reach the receiver, and every other event is claimable at once.
func TestEnginePauseHandsBackNextBatch(t *testing.T) {
	const events = 20
	h, r, block := claimAhead(t, events)
	if err := h.Engine.PauseSink("app"); err != nil {
		t.Fatal(err)
	}
	inFlight := r.requests() - 2 // two finished
	close(block)
	eventually(t, "the attempts in flight to finish", func() bool { return len(r.deliveries()) == 2+inFlight })
	left := events - len(r.deliveries())
	eventually(t, "the rest back in the outbox, claimable at once", func() bool {
		claimed, err := h.Store.Claim(context.Background(), "app", time.Now(), events, time.Millisecond)
		return err == nil && len(claimed) == left
	})
	if n := r.requests(); n != 2+inFlight {
		t.Errorf("%d requests reached the receiver, want the %d made before the pause", n, 2+inFlight)
	}
}
