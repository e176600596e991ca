package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Lease subtests. TTLs are short and expiry is polled with a deadline; a
// backend may keep lease times at millisecond precision.

// leaseWait bounds how long a lease subtest waits for an expiry.
const leaseWait = 5 * time.Second

func mustLease(t *testing.T, s store.Store, name, owner string, ttl time.Duration) bool {
	t.Helper()
	ok, err := s.TryLease(t.Context(), name, owner, ttl)
	if err != nil {
		t.Fatalf("TryLease(%q, %q, %v): %v", name, owner, ttl, err)
	}
	return ok
}

func testLeaseExclusive(t *testing.T, s store.Store) {
	if !mustLease(t, s, "src/tick-1", "replica-a", time.Minute) {
		t.Fatal("TryLease of a free lease = false, want true")
	}
	for _, owner := range []string{"replica-b", "replica-c", "replica-a2"} {
		if mustLease(t, s, "src/tick-1", owner, time.Minute) {
			t.Errorf("TryLease by %s of a lease replica-a holds = true, want false", owner)
		}
	}
	if !mustLease(t, s, "src/tick-1", "replica-a", time.Minute) {
		t.Error("TryLease by the holder = false, want true")
	}
}

func testLeaseExtends(t *testing.T, s store.Store) {
	const short = 200 * time.Millisecond
	start := time.Now()
	if !mustLease(t, s, "l", "a", short) {
		t.Fatal("TryLease(a, 200ms) = false, want true")
	}
	// The holder extends to a minute, well before the first ttl ends.
	if !mustLease(t, s, "l", "a", time.Minute) {
		t.Fatal("TryLease by the holder = false, want true")
	}
	if took := time.Since(start); took >= short {
		t.Skipf("extending took %v, longer than the %v lease: machine too slow for this test", took, short)
	}
	// Past the first ttl (with margin), b still cannot take it.
	for until := start.Add(3 * short); time.Now().Before(until); {
		if mustLease(t, s, "l", "b", time.Minute) {
			t.Fatalf("b took the lease %v after a took it for 200ms and extended it to a minute", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond) // pacing the probes, not waiting for a condition
	}
}

func testLeaseExpires(t *testing.T, s store.Store) {
	const ttl = 200 * time.Millisecond
	start := time.Now()
	if !mustLease(t, s, "l", "a", ttl) {
		t.Fatal("TryLease(a, 200ms) = false, want true")
	}
	deadline := start.Add(leaseWait)
	for !mustLease(t, s, "l", "b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatalf("b could not take a's 200ms lease within %v", leaseWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Allow a millisecond of rounding in backends that keep milliseconds.
	if took := time.Since(start); took < ttl-time.Millisecond {
		t.Errorf("b took a's lease %v after it was taken, before its %v ttl ended", took, ttl)
	}
	if mustLease(t, s, "l", "a", time.Minute) {
		t.Error("a took the lease back from b, want false")
	}
}

func testLeasesIndependent(t *testing.T, s store.Store) {
	if !mustLease(t, s, "orders/1", "a", time.Minute) {
		t.Fatal("TryLease(orders/1, a) = false, want true")
	}
	// Names that share a prefix are still different leases.
	for _, name := range []string{"orders/10", "orders", "users/1"} {
		if !mustLease(t, s, name, "b", time.Minute) {
			t.Errorf("TryLease(%s, b) while a holds orders/1 = false, want true", name)
		}
	}
	if mustLease(t, s, "orders/1", "b", time.Minute) {
		t.Error("TryLease(orders/1, b) = true, want false: a holds it")
	}
}

func testLeaseBadArgs(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		name, owner string
		ttl         time.Duration
	}{{"", "a", time.Second}, {"l", "", time.Second}, {"l", "a", 0}, {"l", "a", -time.Second}} {
		if ok, err := s.TryLease(t.Context(), tc.name, tc.owner, tc.ttl); err == nil || ok {
			t.Errorf("TryLease(%q, %q, %v) = %v, %v; want false and an error", tc.name, tc.owner, tc.ttl, ok, err)
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
