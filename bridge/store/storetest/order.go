package storetest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Per-item order: the outstanding deliveries of one (sink, source, key)
// are claimable one at a time, oldest (in commit order) first; see the
// Store doc.

// itemDelivery is a delivery of item key of source src to sink.
func itemDelivery(id, sink, src, key string) store.Delivery {
	d := delivery(id, sink)
	d.Source, d.Key = src, key
	return d
}

// ofItem is a delivery to sink "hook" about item key of source "src".
func ofItem(id, key string) store.Delivery { return itemDelivery(id, "hook", "src", key) }

// commitTo commits ds to source src at its current generation.
func commitTo(t *testing.T, s store.Store, src string, ds ...store.Delivery) {
	t.Helper()
	st := mustLoad(t, s, src)
	mustCommit(t, s, store.Commit{Source: src, Generation: st.Generation, Deliveries: ds})
}

func mustAck(t *testing.T, s store.Store, d store.Delivery) {
	t.Helper()
	if err := Ack(t.Context(), s, d); err != nil {
		t.Fatalf("Ack(%s): %v", d.ID, err)
	}
}

func mustRetry(t *testing.T, s store.Store, d store.Delivery, due time.Time) {
	t.Helper()
	d.Attempts++
	d.LastError = "503 from " + d.ID
	if err := Retry(t.Context(), s, d, due); err != nil {
		t.Fatalf("Retry(%s): %v", d.ID, err)
	}
}

func mustBury(t *testing.T, s store.Store, d store.Delivery) {
	t.Helper()
	d.Attempts++
	d.LastError = "400 from " + d.ID
	if err := Bury(t.Context(), s, d); err != nil {
		t.Fatalf("Bury(%s): %v", d.ID, err)
	}
}

func wantStats(t *testing.T, s store.Store, sink string, want store.SinkStats) {
	t.Helper()
	got, err := s.Stats(t.Context(), time.Now())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got[sink] != want {
		t.Errorf("Stats[%s] = %+v, want %+v", sink, got[sink], want)
	}
}

// testOrderOnlyHeadClaimable: of two (or three) deliveries of one item only
// the first committed is claimable, whether they were committed together
// or apart, whatever their due times, and also after its lease ran out.
func testOrderOnlyHeadClaimable(t *testing.T, s store.Store) {
	t0 := time.Now().Truncate(time.Millisecond)
	a1 := ofItem("a1", "A")
	a1.Due = t0.Add(time.Hour) // the head is not due yet...
	commitTo(t, s, "src", a1, ofItem("a2", "A"), ofItem("b1", "B"))
	commitTo(t, s, "src", ofItem("a3", "A"))
	// ...and a2 and a3, due now, still wait for it.
	b1 := mustClaim(t, s, "hook", t0.Add(time.Minute), 10, time.Minute)
	wantIDs(t, "Claim before the head is due", b1, "b1")
	mustAck(t, s, b1[0])
	wantIDs(t, "Claim when the head is due", mustClaim(t, s, "hook", t0.Add(time.Hour), 10, time.Minute), "a1")
	wantIDs(t, "Claim within the head's lease", mustClaim(t, s, "hook", t0.Add(time.Hour+time.Second), 10, time.Minute))
	// The lease of a1 ran out: a1 again, never a2.
	wantIDs(t, "Claim after the lease", mustClaim(t, s, "hook", t0.Add(2*time.Hour), 10, time.Minute), "a1")
}

// testOrderAckReleasesNext: acking the head makes the next delivery of its
// item claimable at once, with a Due no later than that.
func testOrderAckReleasesNext(t *testing.T, s store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("a3", "A"))
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "first Claim", got, "a1")
	for _, next := range []string{"a2", "a3"} {
		acked := time.Now()
		mustAck(t, s, got[0])
		now := time.Now()
		got = mustClaim(t, s, "hook", now, 10, time.Hour)
		wantIDs(t, "Claim right after Ack of the head", got, next)
		if d := got[0]; d.Due.After(now) || d.Due.Before(acked.Add(-time.Millisecond)) ||
			d.Attempts != 0 || d.Key != "A" {
			t.Errorf("%s after Ack of the head: Due %v (acked at %v, claimed at %v), Attempts %d, Key %q",
				d.ID, d.Due, acked, now, d.Attempts, d.Key)
		}
	}
	mustAck(t, s, got[0])
	wantIDs(t, "Claim after the last Ack", mustClaim(t, s, "hook", time.Now().Add(time.Hour), 10, time.Minute))
}

// testOrderOtherItemsNotHeldUp: while the head of item A retries, the
// other items, committed before or after, are claimed and acked.
func testOrderOtherItemsNotHeldUp(t *testing.T, s store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("b1", "B"))
	now := time.Now()
	got := mustClaim(t, s, "hook", now, 10, time.Hour)
	wantIDs(t, "first Claim", got, "a1", "b1")
	retryAt := now.Truncate(time.Millisecond).Add(time.Hour)
	mustRetry(t, s, got[0], retryAt)
	mustAck(t, s, got[1])
	commitTo(t, s, "src", ofItem("c1", "C"), ofItem("a3", "A"), ofItem("b2", "B"))
	got = mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim while a1 retries", got, "c1", "b2")
	mustAck(t, s, got[0])
	mustAck(t, s, got[1])
	wantIDs(t, "Claim before a1 is due", mustClaim(t, s, "hook", retryAt.Add(-time.Millisecond), 10, time.Hour))
	wantIDs(t, "Claim when a1 is due", mustClaim(t, s, "hook", retryAt, 10, time.Hour), "a1")
}

// testOrderRetryKeepsItemBlocked: a head retried, into the future or the
// past, again and again, keeps the next one waiting until it is acked.
func testOrderRetryKeepsItemBlocked(t *testing.T, s store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"))
	t0 := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	head := mustClaim(t, s, "hook", t0, 10, time.Hour)
	wantIDs(t, "Claim", head, "a1")
	for i, due := range []time.Time{t0.Add(time.Minute), t0.Add(-time.Minute), t0.Add(2 * time.Minute)} {
		mustRetry(t, s, head[0], due)
		wantIDs(t, fmt.Sprintf("Claim before retry %d is due", i+1), mustClaim(t, s, "hook", due.Add(-time.Millisecond), 10, time.Hour))
		head = mustClaim(t, s, "hook", due, 10, time.Hour)
		wantIDs(t, fmt.Sprintf("Claim at retry %d", i+1), head, "a1")
		if head[0].Attempts != i+1 {
			t.Errorf("a1 after %d retries has Attempts %d", i+1, head[0].Attempts)
		}
	}
	wantIDs(t, "Claim far ahead while a1 is claimed", mustClaim(t, s, "hook", t0.Add(30*time.Minute), 10, time.Hour))
	mustAck(t, s, head[0])
	wantIDs(t, "Claim after Ack of a1", mustClaim(t, s, "hook", time.Now(), 10, time.Hour), "a2")
}

// testOrderBuryReleasesItem: a dead letter does not block its item.
func testOrderBuryReleasesItem(t *testing.T, s store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("a3", "A"))
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim", got, "a1")
	mustRetry(t, s, got[0], time.Now().Add(-time.Second)) // a failure first: Bury of a retried head
	got = mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim after Retry", got, "a1")
	mustBury(t, s, got[0])
	got = mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim right after Bury of the head", got, "a2")
	mustBury(t, s, got[0])
	wantIDs(t, "Claim after the second Bury", mustClaim(t, s, "hook", time.Now(), 10, time.Hour), "a3")
	wantIDs(t, "Dead", mustDead(t, s, "hook"), "a1", "a2")
}

// testOrderReplayQueuesBehind: a replayed dead letter waits behind the
// outstanding deliveries of its item, and deliveries committed after the
// replay wait behind it; several of one item replay in commit order.
func testOrderReplayQueuesBehind(t *testing.T, s store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("b1", "B"), ofItem("b2", "B"))
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim", got, "a1", "b1")
	mustBury(t, s, got[0]) // a1 dead: a2 is A's head
	mustBury(t, s, got[1]) // b1 dead: b2 is B's head
	got = mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim after Bury", got, "a2", "b2")
	mustBury(t, s, got[1]) // b2 dead too: B has nothing outstanding

	if n, err := s.Replay(t.Context(), "hook", nil); err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v; want 3", n, err)
	}
	commitTo(t, s, "src", ofItem("a3", "A"), ofItem("b3", "B"))
	// B had nothing outstanding: b1 is its head at once, then b2, then b3.
	// A's head a2 is still claimed: a1 and a3 wait behind it.
	got = mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim after Replay", got, "b1")
	if got[0].Attempts != 0 {
		t.Errorf("replayed b1 has Attempts %d, want 0", got[0].Attempts)
	}
	wantStats(t, s, "hook", store.SinkStats{Pending: 6})

	var order []string
	a2 := store.Delivery{ID: "a2", Sink: "hook", Source: "src", Key: "A"}
	mustAck(t, s, a2)
	mustAck(t, s, got[0])
	for range 10 {
		got = mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
		if len(got) == 0 {
			break
		}
		for _, d := range got {
			order = append(order, d.ID)
			mustAck(t, s, d)
		}
	}
	byItem := map[byte][]string{}
	for _, id := range order {
		byItem[id[0]] = append(byItem[id[0]], id)
	}
	if !slices.Equal(byItem['a'], []string{"a1", "a3"}) || !slices.Equal(byItem['b'], []string{"b2", "b3"}) {
		t.Errorf("after a2 and b1: delivered A %q and B %q, want [a1 a3] and [b2 b3]", byItem['a'], byItem['b'])
	}
}

// testOrderIsPerSink: the deliveries of one event to two sinks queue
// independently; so do items that share a key but not a source, and keys
// that start alike.
func testOrderIsPerSink(t *testing.T, s store.Store) {
	commitTo(t, s, "src",
		itemDelivery("x1", "x", "src", "A"), itemDelivery("y1", "y", "src", "A"),
		itemDelivery("x2", "x", "src", "A"), itemDelivery("y2", "y", "src", "A"))
	x := mustClaim(t, s, "x", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim(x)", x, "x1")
	mustRetry(t, s, x[0], time.Now().Add(time.Hour))
	y := mustClaim(t, s, "y", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim(y) while x1 retries", y, "y1")
	mustAck(t, s, y[0])
	wantIDs(t, "Claim(y) after Ack of y1", mustClaim(t, s, "y", time.Now(), 10, time.Hour), "y2")
	wantIDs(t, "Claim(x) while x1 retries", mustClaim(t, s, "x", time.Now(), 10, time.Hour))

	// Source and key together name the item: "k" of src1 and of src2, and
	// keys "k", "k2", "" and "k\x00" of one source, are all different items.
	commitTo(t, s, "src1", itemDelivery("s1k-1", "z", "src1", "k"), itemDelivery("s1k-2", "z", "src1", "k"))
	commitTo(t, s, "src2", itemDelivery("s2k-1", "z", "src2", "k"), itemDelivery("s2k-2", "z", "src2", "k"))
	commitTo(t, s, "src1", itemDelivery("s1k2-1", "z", "src1", "k2"), itemDelivery("s1e-1", "z", "src1", ""),
		itemDelivery("s1e-2", "z", "src1", ""), itemDelivery("s1k0-1", "z", "src1", "k\x00"))
	got := mustClaim(t, s, "z", time.Now(), 10, time.Hour)
	slices.SortFunc(got, func(a, b store.Delivery) int { return strings.Compare(a.ID, b.ID) })
	wantIDs(t, "Claim(z)", got, "s1e-1", "s1k-1", "s1k0-1", "s1k2-1", "s2k-1")
}

// testOrderPromotionKeepsOwnDue: a waiting delivery with a later Due of its
// own becomes claimable at that Due, not before, when its head is acked.
func testOrderPromotionKeepsOwnDue(t *testing.T, s store.Store) {
	t0 := time.Now().Truncate(time.Millisecond)
	a2 := ofItem("a2", "A")
	a2.Due = t0.Add(time.Hour)
	commitTo(t, s, "src", ofItem("a1", "A"), a2)
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim", got, "a1")
	mustAck(t, s, got[0])
	wantIDs(t, "Claim before a2's own Due", mustClaim(t, s, "hook", a2.Due.Add(-time.Millisecond), 10, time.Hour))
	got = mustClaim(t, s, "hook", a2.Due, 10, time.Hour)
	wantIDs(t, "Claim at a2's own Due", got, "a2")
	if !got[0].Due.Equal(a2.Due) {
		t.Errorf("a2 Due = %v, want its own %v", got[0].Due, a2.Due)
	}
}

// A delivery settled while it waits behind its item's head (an outcome
// from a worker whose claim another replay or replica overtook) leaves the
// counts and the order as if it had never been queued: acked, it is gone;
// buried, it is dead; the head goes on.
func testOrderSettleWaiting(t *testing.T, s store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("a3", "A"))
	wantStats(t, s, "hook", store.SinkStats{Pending: 3})
	mustAck(t, s, ofItem("a2", "A"))
	wantStats(t, s, "hook", store.SinkStats{Pending: 2})
	mustBury(t, s, ofItem("a3", "A"))
	wantStats(t, s, "hook", store.SinkStats{Pending: 1, Dead: 1})
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim", got, "a1")
	mustAck(t, s, got[0])
	wantStats(t, s, "hook", store.SinkStats{Dead: 1})
	wantIDs(t, "Claim after the head's ack", mustClaim(t, s, "hook", time.Now(), 10, time.Hour))
}

// testOrderStatsCountsWaiting: waiting deliveries count as Pending.
func testOrderStatsCountsWaiting(t *testing.T, s store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("a3", "A"), ofItem("b1", "B"))
	wantStats(t, s, "hook", store.SinkStats{Pending: 4})
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim", got, "a1", "b1")
	wantStats(t, s, "hook", store.SinkStats{Pending: 4})
	mustRetry(t, s, got[0], time.Now().Add(time.Hour))
	wantStats(t, s, "hook", store.SinkStats{Pending: 3, Retrying: 1})
	mustAck(t, s, got[1])
	wantStats(t, s, "hook", store.SinkStats{Pending: 2, Retrying: 1})
	head := store.Delivery{ID: "a1", Sink: "hook", Source: "src", Key: "A", Attempts: 1}
	mustBury(t, s, head)
	wantStats(t, s, "hook", store.SinkStats{Pending: 2, Dead: 1})
	got = mustClaim(t, s, "hook", time.Now(), 10, time.Hour)
	wantIDs(t, "Claim after Bury", got, "a2")
	mustAck(t, s, got[0])
	wantStats(t, s, "hook", store.SinkStats{Pending: 1, Dead: 1})
	if n, err := s.Replay(t.Context(), "hook", nil); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	wantStats(t, s, "hook", store.SinkStats{Pending: 2})
}

// testOrderConcurrentWorkers: workers claiming and acking concurrently
// still deliver each item in commit order, one delivery of it at a time.
func testOrderConcurrentWorkers(t *testing.T, s store.Store) {
	const items, perItem, workers = 6, 5, 4
	var ds []store.Delivery
	for round := range perItem {
		for k := range items {
			ds = append(ds, ofItem(fmt.Sprintf("k%d-%d", k, round), fmt.Sprintf("k%d", k)))
		}
	}
	commitTo(t, s, "src", ds...)

	var mu sync.Mutex
	acked := map[string][]int{} // item → rounds acked, in order
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			// Bounded: a store that never releases an item fails, not hangs.
			for range 1000 {
				got, err := s.Claim(t.Context(), "hook", time.Now(), 8, time.Hour)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				mu.Lock()
				done := 0
				for _, v := range acked {
					done += len(v)
				}
				mu.Unlock()
				if len(got) == 0 && done == items*perItem {
					return
				}
				for _, d := range got {
					var k, round int
					fmt.Sscanf(d.ID, "k%d-%d", &k, &round)
					mu.Lock()
					item := fmt.Sprintf("k%d", k)
					if n := len(acked[item]); n != round {
						t.Errorf("claimed %s while %d of its item were acked: out of order", d.ID, n)
					}
					// Recorded before the Ack: the next one can be claimed
					// as soon as the Ack commits.
					acked[item] = append(acked[item], round)
					mu.Unlock()
					if err := Ack(t.Context(), s, d); err != nil {
						t.Errorf("Ack(%s): %v", d.ID, err)
					}
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	for k := range items {
		item := fmt.Sprintf("k%d", k)
		if want := []int{0, 1, 2, 3, 4}; !slices.Equal(acked[item], want) {
			t.Errorf("item %s delivered rounds %v, want %v", item, acked[item], want)
		}
	}
}

// RunReopen runs the subtests that need a store's data to outlive the
// Store: open returns a fresh, empty store and a reopen function that
// drops it without finishing its claims, as a crashed process would, and
// returns a new Store on the same data. open arranges closing with
// t.Cleanup; the suite itself never closes a store.
func RunReopen(t *testing.T, open func(t *testing.T) (s store.Store, reopen func() store.Store)) {
	t.Helper()
	t.Run("ReopenKeepsItemOrder", func(t *testing.T) {
		s, reopen := open(t)
		testReopenKeepsOrder(t, s, reopen)
	})
}

// testReopenKeepsOrder leaves items in every state (a head claimed, a head
// retrying, a head buried and replayed behind a younger one), reopens, and
// drains the outbox: every item comes out in its order.
func testReopenKeepsOrder(t *testing.T, s store.Store, reopen func() store.Store) {
	commitTo(t, s, "src", ofItem("a1", "A"), ofItem("a2", "A"), ofItem("b1", "B"), ofItem("b2", "B"),
		ofItem("c1", "C"), ofItem("c2", "C"))
	commitTo(t, s, "src", ofItem("a3", "A"))
	now := time.Now()
	got := mustClaim(t, s, "hook", now, 10, time.Hour)
	wantIDs(t, "Claim", got, "a1", "b1", "c1")
	mustBury(t, s, got[1]) // b2 is B's head
	if n, err := s.Replay(t.Context(), "hook", []string{"b1"}); err != nil || n != 1 {
		t.Fatalf("Replay(b1) = %d, %v", n, err)
	}
	later := now.Truncate(time.Millisecond).Add(3 * time.Hour)
	mustRetry(t, s, got[2], later) // c1 retries in 3h; a1 stays claimed

	s = reopen()
	wantStats(t, s, "hook", store.SinkStats{Pending: 6, Retrying: 1})
	// Past a1's lease (released at once by a backend that can tell its
	// claimer is gone) but before c1 is due: the heads of A and B only.
	got = mustClaim(t, s, "hook", now.Add(2*time.Hour), 10, time.Hour)
	slices.SortFunc(got, func(a, b store.Delivery) int { return strings.Compare(a.ID, b.ID) })
	wantIDs(t, "Claim after reopen", got, "a1", "b2")

	var order []string
	for range 20 {
		for _, d := range got {
			order = append(order, d.ID)
			mustAck(t, s, d)
		}
		got = mustClaim(t, s, "hook", later, 10, time.Hour)
		if len(got) == 0 {
			break
		}
	}
	byItem := map[byte][]string{}
	for _, id := range order {
		byItem[id[0]] = append(byItem[id[0]], id)
	}
	want := map[byte][]string{'a': {"a1", "a2", "a3"}, 'b': {"b2", "b1"}, 'c': {"c1", "c2"}}
	for k, w := range want {
		if !slices.Equal(byItem[k], w) {
			t.Errorf("after reopen item %c delivered %q, want %q (all: %q)", k, byItem[k], w, order)
		}
	}
}
