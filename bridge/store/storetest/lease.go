package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Lease subtests: the tick leases that StartPolls takes. TTLs are short and
// expiry is polled with a deadline; a backend may keep lease times at
// millisecond precision.

// leaseWait bounds how long a lease subtest waits for an expiry.
const leaseWait = 5 * time.Second

// mustLease asks for the lease of one tick of source for owner, as
// StartPolls does, and reports whether owner holds it.
func mustLease(t *testing.T, s store.Store, source, tick, owner string, ttl time.Duration) bool {
	t.Helper()
	_, held, err := StartPoll(t.Context(), s, source, tick, owner, ttl)
	if err != nil {
		t.Fatalf("StartPoll(%q, %q, %q, %v): %v", source, tick, owner, ttl, err)
	}
	return held
}

func testLeaseExclusive(t *testing.T, s store.Store) {
	if !mustLease(t, s, "src", "tick-1", "replica-a", time.Minute) {
		t.Fatal("StartPoll of a free tick = not held, want held")
	}
	for _, owner := range []string{"replica-b", "replica-c", "replica-a2"} {
		if mustLease(t, s, "src", "tick-1", owner, time.Minute) {
			t.Errorf("StartPoll by %s of a tick replica-a holds = held, want not held", owner)
		}
	}
	if !mustLease(t, s, "src", "tick-1", "replica-a", time.Minute) {
		t.Error("StartPoll by the holder = not held, want held")
	}
}

func testLeaseExtends(t *testing.T, s store.Store) {
	const short = 500 * time.Millisecond
	start := time.Now()
	if !mustLease(t, s, "src", "1000", "a", short) {
		t.Fatal("StartPoll(a, 500ms) = not held, want held")
	}
	// The holder extends to a minute, well before the first ttl ends.
	if !mustLease(t, s, "src", "1000", "a", time.Minute) {
		t.Fatal("StartPoll by the holder = not held, want held")
	}
	if took := time.Since(start); took >= short {
		// Not a skip: the lease may have lapsed and been taken anew, so
		// what follows would not show an extension.
		t.Fatalf("taking and extending the lease took %v, longer than its %v ttl", took, short)
	}
	// Past the first ttl (with margin), b still cannot take it.
	for until := start.Add(3 * short); time.Now().Before(until); {
		if mustLease(t, s, "src", "1000", "b", time.Minute) {
			t.Fatalf("b took the tick %v after a took it for 500ms and extended it to a minute", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond) // pacing the probes, not waiting for a condition
	}
}

func testLeaseExpires(t *testing.T, s store.Store) {
	const ttl = 200 * time.Millisecond
	start := time.Now()
	if !mustLease(t, s, "src", "1000", "a", ttl) {
		t.Fatal("StartPoll(a, 200ms) = not held, want held")
	}
	deadline := start.Add(leaseWait)
	for !mustLease(t, s, "src", "1000", "b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatalf("b could not take a's 200ms tick lease within %v", leaseWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Allow a millisecond of rounding in backends that keep milliseconds.
	if took := time.Since(start); took < ttl-time.Millisecond {
		t.Errorf("b took a's tick lease %v after it was taken, before its %v ttl ended", took, ttl)
	}
	if mustLease(t, s, "src", "1000", "a", time.Minute) {
		t.Error("a took the tick lease back from b, want not held")
	}
}

func testLeasesIndependent(t *testing.T, s store.Store) {
	if !mustLease(t, s, "orders", "1000", "a", time.Minute) {
		t.Fatal("StartPoll(orders, 1000, a) = not held, want held")
	}
	// Sources and ticks that share a prefix, or whose names joined would
	// be the same, are still different leases.
	for _, tick := range []store.PollTick{
		{Source: "orders", Tick: "10000"}, {Source: "orders", Tick: "100"}, {Source: "orders", Tick: "2000"},
		{Source: "orders/1", Tick: "1000"}, {Source: "order", Tick: "1000"}, {Source: "orders1", Tick: "000"},
		{Source: "users", Tick: "1000"},
	} {
		if !mustLease(t, s, tick.Source, tick.Tick, "b", time.Minute) {
			t.Errorf("StartPoll(%s, %s, b) while a holds (orders, 1000) = not held, want held", tick.Source, tick.Tick)
		}
	}
	if mustLease(t, s, "orders", "1000", "b", time.Minute) {
		t.Error("StartPoll(orders, 1000, b) = held, want not held: a holds it")
	}
}

func testLeaseBadArgs(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		source, tick, owner string
		ttl                 time.Duration
	}{
		{"", "1000", "a", time.Second}, {"src", "", "a", time.Second}, {"src", "1000", "", time.Second},
		{"src", "1000", "a", 0}, {"src", "1000", "a", -time.Second},
	} {
		if _, held, err := StartPoll(t.Context(), s, tc.source, tc.tick, tc.owner, tc.ttl); err == nil || held {
			t.Errorf("StartPoll(%q, %q, %q, %v) = held %v, %v; want not held and an error", tc.source, tc.tick, tc.owner, tc.ttl, held, err)
		}
	}
}

// testReplicas: Replicas counts the owners whose last call has not expired,
// the caller included, each once however often it calls.
func testReplicas(t *testing.T, s store.Store) {
	ctx := context.Background()
	count := func(owner string, ttl time.Duration) int {
		t.Helper()
		n, err := s.Replicas(ctx, owner, ttl)
		if err != nil {
			t.Fatalf("Replicas(%s): %v", owner, err)
		}
		return n
	}
	if n := count("a", time.Minute); n != 1 {
		t.Errorf("Replicas(a) alone = %d, want 1", n)
	}
	if n := count("a", time.Minute); n != 1 {
		t.Errorf("Replicas(a) again = %d, want 1: an owner counts once", n)
	}
	const short = 200 * time.Millisecond
	start := time.Now()
	if n := count("b", short); n != 2 {
		t.Errorf("Replicas(b) beside a = %d, want 2", n)
	}
	deadline := start.Add(leaseWait)
	for count("a", time.Minute) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("b's %v heartbeat still counted after %v", short, leaseWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(start); took < short-time.Millisecond {
		t.Errorf("b's heartbeat expired %v after it was made, before its %v ttl", took, short)
	}
	if _, err := s.Replicas(ctx, "", time.Minute); err == nil {
		t.Error("Replicas with no owner succeeded, want an error")
	}
	if _, err := s.Replicas(ctx, "a", 0); err == nil {
		t.Error("Replicas with ttl 0 succeeded, want an error")
	}
}
