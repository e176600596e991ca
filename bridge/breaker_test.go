package bridge

import (
	"testing"
	"time"
)

func TestGateCircuitBreaker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := &gate{failuresToOpen: 3, cooldown: 10 * time.Second}
	if n, _, _ := g.admit(t0, 4); n != 4 {
		t.Fatalf("closed circuit admits %d, want 4", n)
	}
	g.result(false, true, t0)
	g.result(false, false, t0) // a permanent failure does not count
	g.result(false, true, t0)
	if opened, _ := g.result(false, true, t0); !opened {
		t.Fatal("third consecutive failure did not open the circuit")
	}
	if n, _, wait := g.admit(t0.Add(time.Second), 4); n != 0 || wait != 9*time.Second {
		t.Fatalf("open circuit admits %d (wait %v), want 0 and 9s", n, wait)
	}
	if s, _, _, _ := g.state(t0.Add(time.Second)); s != SinkOpen {
		t.Fatalf("state %s, want open", s)
	}
	// After the cooldown: one probe at a time.
	n, probe, _ := g.admit(t0.Add(11*time.Second), 4)
	if n != 1 || !probe {
		t.Fatalf("half-open admits %d probe=%v, want 1 probe", n, probe)
	}
	if n, _, _ := g.admit(t0.Add(11*time.Second), 4); n != 0 {
		t.Fatalf("a second probe admitted while the first is in flight")
	}
	// A failed probe opens the circuit again at once.
	if opened, _ := g.result(false, true, t0.Add(12*time.Second)); !opened {
		t.Fatal("failed probe did not reopen the circuit")
	}
	n, _, _ = g.admit(t0.Add(23*time.Second), 4)
	if n != 1 {
		t.Fatalf("second half-open admits %d, want 1", n)
	}
	if _, closed := g.result(true, false, t0.Add(23*time.Second)); !closed {
		t.Fatal("successful probe did not close the circuit")
	}
	if n, _, _ := g.admit(t0.Add(24*time.Second), 4); n != 4 {
		t.Fatalf("closed again admits %d, want 4", n)
	}
}

func TestGatePauseAndDisable(t *testing.T) {
	now := time.Now()
	g := &gate{failuresToOpen: 0, cooldown: time.Second}
	for range 10 {
		if opened, _ := g.result(false, true, now); opened {
			t.Fatal("breaker with failures 0 opened")
		}
	}
	g.disable("receiver answered 410 Gone")
	if n, _, _ := g.admit(now, 2); n != 0 {
		t.Fatal("disabled sink admitted deliveries")
	}
	if s, why, _, _ := g.state(now); s != SinkDisabled || why == "" {
		t.Fatalf("state %s %q", s, why)
	}
	g.setPaused(false)
	if n, _, _ := g.admit(now, 2); n != 2 {
		t.Fatal("resume did not re-enable the sink")
	}
	g.setPaused(true)
	if s, _, _, _ := g.state(now); s != SinkPaused {
		t.Fatalf("state %s, want paused", s)
	}
}
