package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Live and Ping subtests.

func mustLive(t *testing.T, s store.Store, sink string, limit int) []store.Delivery {
	t.Helper()
	ds, err := s.Live(t.Context(), sink, limit)
	if err != nil {
		t.Fatalf("Live(%q, %d): %v", sink, limit, err)
	}
	return ds
}

// testLiveStates: Live lists pending, claimed, waiting and retrying
// deliveries with their attempts and last error, in order of Due, commit
// order among equals; acked and dead ones are left out; a promotion and a
// replay show with their new Due.
func testLiveStates(t *testing.T, s store.Store) {
	before := time.Now()
	other := itemDelivery("e1", "other", "src", "E")
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("b1", "B"), ofItem("c1", "C"),
		ofItem("d1", "D"), other, ofItem("f1", "F"))
	after := time.Now()

	claimed := mustClaim(t, s, "hook", time.Now(), 4, time.Hour)
	wantIDs(t, "Claim", claimed, "a1", "b1", "c1", "d1") // f1 stays pending, a2 waits behind a1
	retryAt := time.Now().Truncate(time.Millisecond).Add(time.Hour)
	b1 := claimed[1]
	b1.Attempts, b1.LastError = 2, "POST https://example.test/hook: 503 Service Unavailable"
	if err := Retry(t.Context(), s, b1, retryAt); err != nil {
		t.Fatalf("Retry(b1): %v", err)
	}
	mustAck(t, s, claimed[2])  // c1 delivered
	mustBury(t, s, claimed[3]) // d1 dead

	got := mustLive(t, s, "hook", 0)
	wantIDs(t, "Live(hook)", got, "a1", "a2", "f1", "b1")
	for _, d := range got {
		want := ofItem(d.ID, d.Key)
		if d.EventID != want.EventID || d.Sink != "hook" || d.Source != "src" || !d.Dead.IsZero() ||
			string(d.Payload) != string(want.Payload) {
			t.Errorf("Live %s = %+v, want the committed fields of %+v", d.ID, d, want)
		}
		if d.Created.Before(before.Truncate(time.Millisecond)) || d.Created.After(after) {
			t.Errorf("Live %s: Created %v, want within the commit [%v, %v]", d.ID, d.Created, before, after)
		}
		if d.ID == "b1" {
			if d.Attempts != 2 || d.LastError != b1.LastError || !d.Due.Equal(retryAt) {
				t.Errorf("Live b1 (retrying) = Attempts %d, LastError %q, Due %v; want 2, %q, %v",
					d.Attempts, d.LastError, d.Due, b1.LastError, retryAt)
			}
			continue
		}
		if d.Attempts != 0 || d.LastError != "" || d.Due.Before(before.Truncate(time.Millisecond)) || d.Due.After(after) {
			t.Errorf("Live %s = Attempts %d, LastError %q, Due %v; want 0, none, due at the commit", d.ID, d.Attempts, d.LastError, d.Due)
		}
	}
	wantIDs(t, "Live(\"\")", mustLive(t, s, "", 0), "a1", "a2", "e1", "f1", "b1")
	wantIDs(t, "Live(other)", mustLive(t, s, "other", 0), "e1")
	wantIDs(t, "Live(nobody)", mustLive(t, s, "nobody", 0))
	wantIDs(t, "Live(hook, 2)", mustLive(t, s, "hook", 2), "a1", "a2")
	wantIDs(t, "Live(\"\", 3)", mustLive(t, s, "", 3), "a1", "a2", "e1")
	wantIDs(t, "Live(hook, -1)", mustLive(t, s, "hook", -1), "a1", "a2", "f1", "b1")

	// a1 delivered: a2 becomes A's head, due now; d1 replayed: due now,
	// attempts reset.
	acking := time.Now()
	mustAck(t, s, claimed[0])
	acked := time.Now()
	if n, err := s.Replay(t.Context(), "hook", []string{"d1"}); err != nil || n != 1 {
		t.Fatalf("Replay(d1) = %d, %v", n, err)
	}
	replayed := time.Now()
	got = mustLive(t, s, "hook", 0)
	wantIDs(t, "Live(hook) after Ack(a1) and Replay(d1)", got, "f1", "a2", "d1", "b1")
	if a2 := got[1]; a2.Due.Before(acking.Truncate(time.Millisecond)) || a2.Due.After(acked) || a2.Attempts != 0 {
		t.Errorf("a2 after its head was acked: Due %v, want within the Ack [%v, %v]; Attempts %d", a2.Due, acking, acked, a2.Attempts)
	}
	if d1 := got[2]; d1.Attempts != 0 || d1.Due.Before(acked.Truncate(time.Millisecond)) || d1.Due.After(replayed) {
		t.Errorf("replayed d1: Attempts %d, Due %v; want 0, within the Replay [%v, %v]", d1.Attempts, d1.Due, acked, replayed)
	}
	wantIDs(t, "Dead(hook) after Replay", mustDead(t, s, "hook"))
}

// testLiveOrderByDue: Live orders by Due, not by commit order, across
// items and sources; equal Due times keep commit order within a source.
func testLiveOrderByDue(t *testing.T, s store.Store) {
	t0 := time.Now().Truncate(time.Millisecond)
	at := func(d store.Delivery, after time.Duration) store.Delivery {
		d.Due = t0.Add(after)
		return d
	}
	commitTo(t, s, "src", at(ofItem("x1", "1"), 3*time.Hour), at(ofItem("x2", "2"), time.Hour),
		at(ofItem("x3", "3"), 2*time.Hour), at(ofItem("x4", "4"), time.Hour))
	commitTo(t, s, "src2", at(itemDelivery("y1", "hook", "src2", "1"), 90*time.Minute),
		at(itemDelivery("y2", "hook", "src2", "2"), 4*time.Hour))
	commitTo(t, s, "src", at(ofItem("x5", "5"), time.Hour))
	got := mustLive(t, s, "hook", 0)
	wantIDs(t, "Live(hook)", got, "x2", "x4", "x5", "y1", "x3", "x1", "y2")
	if !got[0].Due.Equal(t0.Add(time.Hour)) || !got[6].Due.Equal(t0.Add(4*time.Hour)) {
		t.Errorf("Live Due: first %v, last %v; want %v and %v", got[0].Due, got[6].Due, t0.Add(time.Hour), t0.Add(4*time.Hour))
	}
	wantIDs(t, "Live(hook, 4)", mustLive(t, s, "hook", 4), "x2", "x4", "x5", "y1")
	wantIDs(t, "Live(hook, 1)", mustLive(t, s, "hook", 1), "x2")
}

// testLiveManyPages: more deliveries, over several sources and sinks, than
// a backend may read in one go; Live(limit) returns exactly the limit
// earliest, in order.
func testLiveManyPages(t *testing.T, s store.Store) {
	t0 := time.Now().Truncate(time.Millisecond)
	const perSource = 60
	rng := rand.New(rand.NewPCG(1, 2))
	offsets := rng.Perm(3 * perSource * 2)
	var all []store.Delivery
	n := 0
	for _, src := range []string{"s1", "s2", "s3"} {
		var ds []store.Delivery
		for i := range perSource {
			for _, sink := range []string{"hook", "other"} {
				d := itemDelivery(fmt.Sprintf("%s-%s-%02d", src, sink, i), sink, src, fmt.Sprint(i))
				d.Due = t0.Add(time.Duration(offsets[n]) * time.Second)
				n++
				ds = append(ds, d)
			}
		}
		commitTo(t, s, src, ds...)
		all = append(all, ds...)
	}
	slices.SortFunc(all, func(a, b store.Delivery) int { return a.Due.Compare(b.Due) })
	var hook []string
	for _, d := range all {
		if d.Sink == "hook" {
			hook = append(hook, d.ID)
		}
	}
	for _, limit := range []int{1, 7, 50, 100, 180} {
		want := hook[:min(limit, len(hook))]
		wantIDs(t, fmt.Sprintf("Live(hook, %d)", limit), mustLive(t, s, "hook", limit), want...)
	}
	allIDs := ids(all)
	wantIDs(t, "Live(\"\", 250)", mustLive(t, s, "", 250), allIDs[:250]...)
	wantIDs(t, "Live(\"\", 0)", mustLive(t, s, "", 0), allIDs...)
}

// testPing: an open store answers; a cancelled context fails.
func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping with a cancelled context succeeded")
	}
}
