// Package storetest is the conformance suite of store.Store: every backend
// runs Run from its own tests, so the embedded and the Redis store behave the
// same for the engine.
//
// The suite pins the behaviour the engine relies on: atomic, generation-guarded
// commits; isolated sources; an outbox that hands each due delivery to one
// claimer at a time, in commit order, and keeps it until it is acked, retried
// or buried; per-item order (one outstanding delivery of an item claimable at
// a time, oldest first; dead letters release it; other items and sinks never
// wait); dead letters that can be listed and replayed; live deliveries that
// can be listed by due time; exact payload bytes; tick leases (StartPolls)
// that exclude other owners, extend for their holder and expire; a Ping that
// answers.
// RunReopen adds what needs a store reopened on the same data. What only a
// backend can test (file locks, kill -9, a Redis restart) belongs in that
// backend's own tests.
//
// Times in the suite are whole milliseconds apart, so a backend that keeps
// times at millisecond precision passes too.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Run runs the conformance suite against the backend that open returns.
//
// open is called once per subtest and must return a fresh, empty store that
// no other subtest uses; it arranges closing the store with t.Cleanup. The
// suite itself never closes the store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"LoadUnknownSource", testLoadUnknown},
		{"CommitThenLoad", testCommitLoad},
		{"LoadMetaSkipsItems", testLoadMeta},
		{"EmptyCommitAdvancesGeneration", testEmptyCommit},
		{"StaleGenerationConflicts", testConflict},
		{"RacingCommitsOneWins", testRacingCommits},
		{"CanceledCommitWritesNothing", testCanceledCommit},
		{"InvalidCommitWritesNothing", testInvalidCommit},
		{"SourcesAreIsolated", testIsolation},
		{"ClaimInCommitOrderPerSink", testClaimOrder},
		{"PayloadBytesRoundTrip", testPayloadRoundTrip},
		{"ZeroDueIsDueAtCommit", testZeroDue},
		{"DuplicateDeliveryIDKeepsFirst", testDuplicateID},
		{"LeaseHidesUntilExpiry", testLease},
		{"AckRemoves", testAck},
		{"SettleRecordsABatch", testSettle},
		{"RetryDelaysAndKeepsAttempts", testRetry},
		{"BuryMovesToDead", testBury},
		{"ReplayAllOfSink", testReplayAll},
		{"ReplayByIDs", testReplayIDs},
		{"ReplayUnknownIDIsNotFound", testReplayUnknown},
		{"StatsPerSink", testStats},
		{"ConcurrentClaimsNeverShare", testConcurrentClaim},
		{"OrderOnlyItemHeadClaimable", testOrderOnlyHeadClaimable},
		{"OrderAckReleasesNextAtOnce", testOrderAckReleasesNext},
		{"OrderOtherItemsNotHeldUp", testOrderOtherItemsNotHeldUp},
		{"OrderRetryKeepsItemBlocked", testOrderRetryKeepsItemBlocked},
		{"OrderBuryReleasesItem", testOrderBuryReleasesItem},
		{"OrderReplayQueuesBehind", testOrderReplayQueuesBehind},
		{"OrderIsPerSinkAndItem", testOrderIsPerSink},
		{"OrderPromotionKeepsOwnDue", testOrderPromotionKeepsOwnDue},
		{"OrderStatsCountWaiting", testOrderStatsCountsWaiting},
		{"OrderSettleWaiting", testOrderSettleWaiting},
		{"OrderConcurrentWorkers", testOrderConcurrentWorkers},
		{"LiveListsEveryStateButDoneAndDead", testLiveStates},
		{"LiveOrdersByDue", testLiveOrderByDue},
		{"LiveLimitAcrossSourcesAndSinks", testLiveManyPages},
		{"PingAnswers", testPing},
		{"LeaseIsExclusiveBetweenOwners", testLeaseExclusive},
		{"LeaseSameOwnerExtends", testLeaseExtends},
		{"LeaseExpiresAfterTTL", testLeaseExpires},
		{"LeasesAreIndependent", testLeasesIndependent},
		{"LeaseRejectsBadArguments", testLeaseBadArgs},
		{"StartPollLeasesTickAndLoadsMeta", testStartPoll},
		{"LoadMetaSeesEveryCommit", testLoadMetaFresh},
		{"StartPollConcurrentCallsEachAnswered", testStartPollConcurrent},
		{"StartPollsAnswersEachTickInOrder", testStartPolls},
		{"StartPollsOfManySources", testStartPollsManySources},
		{"StartPollsWithEndedContext", testStartPollsCancelled},
		{"ReplicasCountLiveOwners", testReplicas},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func item(fp, data string) store.Item {
	return store.Item{Fingerprint: fp, Data: json.RawMessage(data)}
}

func delivery(id, sink string) store.Delivery {
	return store.Delivery{
		ID:      id,
		EventID: "evt_" + id,
		Sink:    sink,
		Source:  "src",
		Key:     "key-" + id,
		Payload: json.RawMessage(fmt.Sprintf(`{"type":"item.created","id":%q}`, id)),
	}
}

func mustCommit(t *testing.T, s store.Store, c store.Commit) {
	t.Helper()
	if err := s.Commit(t.Context(), c); err != nil {
		t.Fatalf("Commit(source %q, generation %d): %v", c.Source, c.Generation, err)
	}
}

// commitDeliveries commits ds to a throwaway source at its current generation.
func commitDeliveries(t *testing.T, s store.Store, ds ...store.Delivery) {
	t.Helper()
	st := mustLoad(t, s, "outbox-feeder")
	mustCommit(t, s, store.Commit{Source: "outbox-feeder", Generation: st.Generation, Deliveries: ds})
}

func mustLoad(t *testing.T, s store.Store, source string) store.State {
	t.Helper()
	st, err := s.Load(t.Context(), source)
	if err != nil {
		t.Fatalf("Load(%q): %v", source, err)
	}
	return st
}

func mustClaim(t *testing.T, s store.Store, sink string, now time.Time, max int, lease time.Duration) []store.Delivery {
	t.Helper()
	ds, err := s.Claim(t.Context(), sink, now, max, lease)
	if err != nil {
		t.Fatalf("Claim(%q, max %d): %v", sink, max, err)
	}
	return ds
}

func mustDead(t *testing.T, s store.Store, sink string) []store.Delivery {
	t.Helper()
	ds, err := s.Dead(t.Context(), sink)
	if err != nil {
		t.Fatalf("Dead(%q): %v", sink, err)
	}
	return ds
}

func ids(ds []store.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func wantIDs(t *testing.T, what string, ds []store.Delivery, want ...string) {
	t.Helper()
	if got := ids(ds); !slices.Equal(got, want) {
		t.Fatalf("%s: got ids %q, want %q", what, got, want)
	}
}

func wantState(t *testing.T, got store.State, gen uint64, items map[string]store.Item, meta map[string]string) {
	t.Helper()
	if got.Generation != gen {
		t.Errorf("Generation = %d, want %d", got.Generation, gen)
	}
	if got.Items == nil || got.Meta == nil {
		t.Fatalf("Load returned nil maps: Items %v, Meta %v", got.Items == nil, got.Meta == nil)
	}
	if len(got.Items) != len(items) {
		t.Errorf("Items has %d keys %q, want %d %q", len(got.Items), slices.Sorted(maps.Keys(got.Items)), len(items), slices.Sorted(maps.Keys(items)))
	}
	for k, w := range items {
		g, ok := got.Items[k]
		if !ok {
			t.Errorf("item %q missing", k)
			continue
		}
		if g.Fingerprint != w.Fingerprint || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("item %q = {%q, %s}, want {%q, %s}", k, g.Fingerprint, g.Data, w.Fingerprint, w.Data)
		}
	}
	if !maps.Equal(got.Meta, meta) {
		t.Errorf("Meta = %v, want %v", got.Meta, meta)
	}
}

func testLoadUnknown(t *testing.T, s store.Store) {
	st := mustLoad(t, s, "never-committed")
	wantState(t, st, 0, map[string]store.Item{}, map[string]string{})
}

func testCommitLoad(t *testing.T, s store.Store) {
	a, b := item("fa", `{"id":"a","n":1}`), item("fb", `{"id":"b", "n": 2}`)
	meta := map[string]string{"etag": `W/"1"`, "body_hash": "abc"}
	mustCommit(t, s, store.Commit{Source: "s", Generation: 0,
		Upsert: map[string]store.Item{"a": a, "b": b}, Meta: meta})
	wantState(t, mustLoad(t, s, "s"), 1, map[string]store.Item{"a": a, "b": b}, meta)

	// Upsert replaces b and adds c, Delete removes a (and ignores a key that
	// never existed), nil Meta keeps the old meta.
	b2, c := item("fb2", `{"id":"b","n":3}`), item("fc", `{"id":"c"}`)
	mustCommit(t, s, store.Commit{Source: "s", Generation: 1,
		Upsert: map[string]store.Item{"b": b2, "c": c}, Delete: []string{"a", "no-such-key"}})
	wantState(t, mustLoad(t, s, "s"), 2, map[string]store.Item{"b": b2, "c": c}, meta)

	// Non-nil Meta replaces the whole map.
	meta2 := map[string]string{"last_modified": "Tue, 15 Nov 1994 08:12:31 GMT"}
	mustCommit(t, s, store.Commit{Source: "s", Generation: 2, Meta: meta2})
	wantState(t, mustLoad(t, s, "s"), 3, map[string]store.Item{"b": b2, "c": c}, meta2)

	// An empty non-nil Meta clears it.
	mustCommit(t, s, store.Commit{Source: "s", Generation: 3, Meta: map[string]string{}, Delete: []string{"b", "c"}})
	wantState(t, mustLoad(t, s, "s"), 4, map[string]store.Item{}, map[string]string{})
}

func testEmptyCommit(t *testing.T, s store.Store) {
	for gen := uint64(0); gen < 5; gen++ {
		mustCommit(t, s, store.Commit{Source: "s", Generation: gen})
		if got := mustLoad(t, s, "s").Generation; got != gen+1 {
			t.Fatalf("after commit on generation %d: Generation = %d, want %d", gen, got, gen+1)
		}
	}
}

func testConflict(t *testing.T, s store.Store) {
	a := item("fa", `{"id":"a"}`)
	meta := map[string]string{"etag": "1"}
	mustCommit(t, s, store.Commit{Source: "s", Generation: 0,
		Upsert: map[string]store.Item{"a": a}, Meta: meta,
		Deliveries: []store.Delivery{delivery("d1", "hook")}})

	for _, gen := range []uint64{0, 2, 7} {
		err := s.Commit(t.Context(), store.Commit{Source: "s", Generation: gen,
			Upsert:     map[string]store.Item{"x": item("fx", `{}`)},
			Delete:     []string{"a"},
			Meta:       map[string]string{"etag": "stale"},
			Deliveries: []store.Delivery{delivery(fmt.Sprintf("stale-%d", gen), "hook")}})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Commit on generation %d with stored generation 1: err = %v, want ErrConflict", gen, err)
		}
	}
	wantState(t, mustLoad(t, s, "s"), 1, map[string]store.Item{"a": a}, meta)
	wantIDs(t, "Claim after conflicting commits", mustClaim(t, s, "hook", time.Now().Add(time.Hour), 10, time.Minute), "d1")
}

// A commit that store.Commit.Validate refuses fails before anything of it
// is written, whichever part is bad.
func testInvalidCommit(t *testing.T, s store.Store) {
	a := item("fa", `{"id":"a"}`)
	for _, tt := range []struct {
		name string
		c    store.Commit
	}{
		{"no source", store.Commit{Generation: 0, Deliveries: []store.Delivery{delivery("d1", "hook")}}},
		{"empty item key", store.Commit{Source: "s", Upsert: map[string]store.Item{"a": a, "": a},
			Deliveries: []store.Delivery{delivery("d1", "hook")}}},
		{"delivery without id", store.Commit{Source: "s", Upsert: map[string]store.Item{"a": a},
			Deliveries: []store.Delivery{delivery("d1", "hook"), delivery("", "hook")}}},
		{"delivery without sink", store.Commit{Source: "s", Upsert: map[string]store.Item{"a": a},
			Deliveries: []store.Delivery{delivery("d1", "hook"), delivery("d2", "")}}},
	} {
		if err := s.Commit(t.Context(), tt.c); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: Commit err = %v, want a validation error", tt.name, err)
		}
	}
	wantState(t, mustLoad(t, s, "s"), 0, map[string]store.Item{}, map[string]string{})
	wantIDs(t, "Claim after refused commits", mustClaim(t, s, "hook", time.Now().Add(time.Hour), 10, time.Minute))
}

func testRacingCommits(t *testing.T, s store.Store) {
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Commit(t.Context(), store.Commit{Source: "s", Generation: 0,
				Upsert:     map[string]store.Item{fmt.Sprintf("k%d", i): item("f", `{}`)},
				Deliveries: []store.Delivery{delivery(fmt.Sprintf("d%d", i), "hook")}})
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("commits %d and %d on generation 0 both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("commit %d: err = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no commit succeeded")
	}
	wantState(t, mustLoad(t, s, "s"), 1,
		map[string]store.Item{fmt.Sprintf("k%d", winner): item("f", `{}`)}, map[string]string{})
	wantIDs(t, "Claim after race", mustClaim(t, s, "hook", time.Now().Add(time.Hour), n, time.Minute),
		fmt.Sprintf("d%d", winner))
}

func testCanceledCommit(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Commit(ctx, store.Commit{Source: "s", Generation: 0,
		Upsert:     map[string]store.Item{"a": item("fa", `{}`)},
		Deliveries: []store.Delivery{delivery("d1", "hook")}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with canceled context: err = %v, want context.Canceled", err)
	}
	wantState(t, mustLoad(t, s, "s"), 0, map[string]store.Item{}, map[string]string{})
	wantIDs(t, "Claim after canceled commit", mustClaim(t, s, "hook", time.Now().Add(time.Hour), 10, time.Minute))
}

func testIsolation(t *testing.T, s store.Store) {
	// "a" is a prefix of "ab": backends that build keys by concatenation
	// must still keep them apart.
	ia, iab := item("f1", `{"in":"a"}`), item("f2", `{"in":"ab"}`)
	mustCommit(t, s, store.Commit{Source: "a", Generation: 0,
		Upsert: map[string]store.Item{"k": ia}, Meta: map[string]string{"etag": "a"}})
	mustCommit(t, s, store.Commit{Source: "ab", Generation: 0,
		Upsert: map[string]store.Item{"k": iab, "k2": iab}})
	mustCommit(t, s, store.Commit{Source: "ab", Generation: 1, Meta: map[string]string{"etag": "ab"}})

	wantState(t, mustLoad(t, s, "a"), 1, map[string]store.Item{"k": ia}, map[string]string{"etag": "a"})
	wantState(t, mustLoad(t, s, "ab"), 2, map[string]store.Item{"k": iab, "k2": iab}, map[string]string{"etag": "ab"})

	// A conflict on one source does not touch the other.
	if err := s.Commit(t.Context(), store.Commit{Source: "a", Generation: 2, Delete: []string{"k"}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Commit(a) on generation 2 of 1: err = %v, want ErrConflict", err)
	}
	mustCommit(t, s, store.Commit{Source: "ab", Generation: 2, Delete: []string{"k"}})
	wantState(t, mustLoad(t, s, "a"), 1, map[string]store.Item{"k": ia}, map[string]string{"etag": "a"})
	wantState(t, mustLoad(t, s, "ab"), 3, map[string]store.Item{"k2": iab}, map[string]string{"etag": "ab"})

	// Different sources commit concurrently without conflicts.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.Commit(t.Context(), store.Commit{Source: fmt.Sprintf("p%d", i), Generation: 0,
				Upsert: map[string]store.Item{"k": ia}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Commit(p%d): %v", i, err)
		}
	}
}

func testClaimOrder(t *testing.T, s store.Store) {
	before := time.Now()
	commitDeliveries(t, s, delivery("a1", "a"), delivery("b1", "b"), delivery("a2", "a"), delivery("a3", "a"))
	commitDeliveries(t, s, delivery("b2", "b"), delivery("a4", "a"))
	after := time.Now()

	now := time.Now()
	first := mustClaim(t, s, "a", now, 2, time.Minute)
	wantIDs(t, "first Claim(a, max 2)", first, "a1", "a2")
	wantIDs(t, "second Claim(a, max 10)", mustClaim(t, s, "a", now, 10, time.Minute), "a3", "a4")
	wantIDs(t, "third Claim(a)", mustClaim(t, s, "a", now, 10, time.Minute))
	wantIDs(t, "Claim(b, max 1)", mustClaim(t, s, "b", now, 1, time.Minute), "b1")
	wantIDs(t, "Claim(c)", mustClaim(t, s, "c", now, 10, time.Minute))

	// Every field comes back as committed; Created and Due are the commit time.
	got, want := first[0], delivery("a1", "a")
	if got.EventID != want.EventID || got.Sink != want.Sink || got.Source != want.Source ||
		got.Key != want.Key || !bytes.Equal(got.Payload, want.Payload) || got.Attempts != 0 ||
		got.LastError != "" || !got.Dead.IsZero() {
		t.Errorf("claimed delivery = %+v, want fields of %+v", got, want)
	}
	for name, ts := range map[string]time.Time{"Created": got.Created, "Due": got.Due} {
		if ts.Before(before.Truncate(time.Millisecond)) || ts.After(after) {
			t.Errorf("%s = %v, want within the commit [%v, %v]", name, ts, before, after)
		}
	}
}

func testPayloadRoundTrip(t *testing.T, s store.Store) {
	payloads := []string{
		`{"a":1}`,
		"{ \"spaced\" : [1, 2,\t3] ,\n \"html\":\"<a href='x'>&amp;</a>\", \"u\":\"\u00e9\\u00e9\" }\n",
		`"just a string"`,
		`{"big":` + string(bytes.Repeat([]byte("9"), 5000)) + `}`,
	}
	var ds []store.Delivery
	for i, p := range payloads {
		d := delivery(fmt.Sprintf("p%d", i), "hook")
		d.Payload = json.RawMessage(p)
		ds = append(ds, d)
	}
	data := json.RawMessage(payloads[1])
	mustCommit(t, s, store.Commit{Source: "s", Generation: 0,
		Upsert: map[string]store.Item{"k": {Fingerprint: "f", Data: data}}, Deliveries: ds})
	if got := mustLoad(t, s, "s").Items["k"].Data; !bytes.Equal(got, data) {
		t.Errorf("item Data = %q, want exactly %q", got, data)
	}

	claimed := mustClaim(t, s, "hook", time.Now(), 10, time.Minute)
	wantIDs(t, "Claim", claimed, "p0", "p1", "p2", "p3")
	for i, d := range claimed {
		if !bytes.Equal(d.Payload, []byte(payloads[i])) {
			t.Errorf("claimed %s Payload = %q, want exactly %q", d.ID, d.Payload, payloads[i])
		}
		if err := Bury(t.Context(), s, d); err != nil {
			t.Fatalf("Bury(%s): %v", d.ID, err)
		}
	}
	for i, d := range mustDead(t, s, "hook") {
		if !bytes.Equal(d.Payload, []byte(payloads[i])) {
			t.Errorf("dead %s Payload = %q, want exactly %q", d.ID, d.Payload, payloads[i])
		}
	}
}

func testZeroDue(t *testing.T, s store.Store) {
	d := delivery("d1", "hook")
	d.Due = time.Time{}
	commitDeliveries(t, s, d)
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Minute)
	wantIDs(t, "Claim right after commit", got, "d1")
	if got[0].Due.IsZero() || got[0].Created.IsZero() {
		t.Errorf("Due = %v, Created = %v; want both set to the commit time", got[0].Due, got[0].Created)
	}
}

func testDuplicateID(t *testing.T, s store.Store) {
	first := delivery("d1", "hook")
	dup := delivery("d1", "hook")
	dup.Payload = json.RawMessage(`{"dup":true}`)
	commitDeliveries(t, s, first, dup)
	commitDeliveries(t, s, dup)
	got := mustClaim(t, s, "hook", time.Now(), 10, time.Minute)
	wantIDs(t, "Claim after committing d1 three times", got, "d1")
	if !bytes.Equal(got[0].Payload, first.Payload) {
		t.Errorf("Payload = %s, want the first committed %s", got[0].Payload, first.Payload)
	}
}

func testLease(t *testing.T, s store.Store) {
	commitDeliveries(t, s, delivery("d1", "hook"), delivery("d2", "hook"))
	t0 := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	const lease = time.Minute

	wantIDs(t, "Claim at t0", mustClaim(t, s, "hook", t0, 1, lease), "d1")
	wantIDs(t, "Claim at t0 again", mustClaim(t, s, "hook", t0, 10, lease), "d2")
	wantIDs(t, "Claim within the lease", mustClaim(t, s, "hook", t0.Add(lease-time.Millisecond), 10, lease))
	// The lease has run out: both are handed out again, d1 first (its lease
	// ended as early as d2's, and it was committed first).
	got := mustClaim(t, s, "hook", t0.Add(lease), 10, lease)
	wantIDs(t, "Claim when the lease ends", got, "d1", "d2")
	wantIDs(t, "Claim within the second lease", mustClaim(t, s, "hook", t0.Add(2*lease-time.Millisecond), 10, lease))
	wantIDs(t, "Claim after the second lease", mustClaim(t, s, "hook", t0.Add(2*lease), 10, lease), "d1", "d2")
}

func testAck(t *testing.T, s store.Store) {
	commitDeliveries(t, s, delivery("d1", "hook"), delivery("d2", "hook"))
	now := time.Now()
	got := mustClaim(t, s, "hook", now, 10, time.Minute)
	wantIDs(t, "Claim", got, "d1", "d2")
	if err := Ack(t.Context(), s, got[0]); err != nil {
		t.Fatalf("Ack(d1): %v", err)
	}
	later := now.Add(24 * time.Hour)
	wantIDs(t, "Claim after the lease", mustClaim(t, s, "hook", later, 10, time.Minute), "d2")
	wantIDs(t, "Dead after Ack", mustDead(t, s, ""))

	if err := Ack(t.Context(), s, got[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Ack(d1): err = %v, want ErrNotFound", err)
	}
	unknown := delivery("nope", "hook")
	if err := Ack(t.Context(), s, unknown); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Ack(unknown): err = %v, want ErrNotFound", err)
	}
	if err := Retry(t.Context(), s, unknown, later); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Retry(unknown): err = %v, want ErrNotFound", err)
	}
	if err := Bury(t.Context(), s, unknown); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Bury(unknown): err = %v, want ErrNotFound", err)
	}
	wantIDs(t, "Claim after acting on unknown ids", mustClaim(t, s, "hook", later.Add(time.Hour), 10, time.Minute), "d2")
}

func testRetry(t *testing.T, s store.Store) {
	commitDeliveries(t, s, delivery("d1", "hook"))
	t0 := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	got := mustClaim(t, s, "hook", t0, 1, time.Hour)
	wantIDs(t, "Claim", got, "d1")

	d := got[0]
	d.Attempts = 3
	d.LastError = "POST https://example.test/hook: 503 Service Unavailable"
	due := t0.Add(10 * time.Second) // well inside the claim's lease: Retry ends it
	if err := Retry(t.Context(), s, d, due); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	wantIDs(t, "Claim before due", mustClaim(t, s, "hook", due.Add(-time.Millisecond), 10, time.Minute))
	again := mustClaim(t, s, "hook", due, 10, time.Minute)
	wantIDs(t, "Claim at due", again, "d1")
	if r := again[0]; r.Attempts != 3 || r.LastError != d.LastError || !r.Due.Equal(due) ||
		!bytes.Equal(r.Payload, d.Payload) || r.EventID != d.EventID {
		t.Errorf("retried delivery = {Attempts %d, LastError %q, Due %v, Payload %s}, want {3, %q, %v, %s}",
			r.Attempts, r.LastError, r.Due, r.Payload, d.LastError, due, d.Payload)
	}

	// Retry into the past (or now) makes it claimable at once.
	r := again[0]
	r.Attempts = 4
	if err := Retry(t.Context(), s, r, t0); err != nil {
		t.Fatalf("second Retry: %v", err)
	}
	if got := mustClaim(t, s, "hook", due, 10, time.Minute); len(got) != 1 || got[0].Attempts != 4 {
		t.Errorf("Claim after Retry to the past = %+v, want d1 with 4 attempts", got)
	}
}

func testBury(t *testing.T, s store.Store) {
	commitDeliveries(t, s, delivery("x", "a"), delivery("y", "a"), delivery("z", "b"), delivery("live", "a"))
	now := time.Now()
	claimed := mustClaim(t, s, "a", now, 2, time.Minute)
	claimed = append(claimed, mustClaim(t, s, "b", now, 1, time.Minute)...)
	wantIDs(t, "Claim", claimed, "x", "y", "z")
	for i, d := range claimed {
		d.Attempts = 5 + i
		d.LastError = "410 Gone from " + d.ID
		if err := Bury(t.Context(), s, d); err != nil {
			t.Fatalf("Bury(%s): %v", d.ID, err)
		}
	}

	far := now.Add(24 * time.Hour)
	wantIDs(t, "Claim(a) after Bury", mustClaim(t, s, "a", far, 10, time.Minute), "live")
	wantIDs(t, "Claim(b) after Bury", mustClaim(t, s, "b", far, 10, time.Minute))

	deadA := mustDead(t, s, "a")
	wantIDs(t, "Dead(a)", deadA, "x", "y")
	for i, d := range deadA {
		if d.Attempts != 5+i || d.LastError != "410 Gone from "+d.ID || d.Dead.IsZero() ||
			d.EventID != "evt_"+d.ID || !bytes.Equal(d.Payload, delivery(d.ID, "a").Payload) {
			t.Errorf("dead %s = %+v, want Attempts %d, LastError, Dead set, payload intact", d.ID, d, 5+i)
		}
	}
	wantIDs(t, "Dead(b)", mustDead(t, s, "b"), "z")
	wantIDs(t, "Dead(\"\")", mustDead(t, s, ""), "x", "y", "z")
	wantIDs(t, "Dead(c)", mustDead(t, s, "c"))

	// A dead letter is no longer in the outbox.
	if err := Ack(t.Context(), s, deadA[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Ack(dead x): err = %v, want ErrNotFound", err)
	}
	if err := Retry(t.Context(), s, deadA[0], now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Retry(dead x): err = %v, want ErrNotFound", err)
	}
	wantIDs(t, "Claim(a) after Retry of a dead letter", mustClaim(t, s, "a", far.Add(time.Hour), 10, time.Minute), "live")
}

// buryAll commits ds, claims them and buries each with one failed attempt.
func buryAll(t *testing.T, s store.Store, ds ...store.Delivery) {
	t.Helper()
	commitDeliveries(t, s, ds...)
	sinks := map[string]bool{}
	for _, d := range ds {
		sinks[d.Sink] = true
	}
	for sink := range sinks {
		for _, d := range mustClaim(t, s, sink, time.Now(), len(ds), time.Minute) {
			d.Attempts, d.LastError = 8, "boom"
			if err := Bury(t.Context(), s, d); err != nil {
				t.Fatalf("Bury(%s): %v", d.ID, err)
			}
		}
	}
}

func wantReplayed(t *testing.T, s store.Store, sink string, want ...string) {
	t.Helper()
	before := time.Now()
	got := mustClaim(t, s, sink, time.Now(), 100, time.Minute)
	wantIDs(t, "Claim("+sink+") after Replay", got, want...)
	for _, d := range got {
		if d.Attempts != 0 || !d.Dead.IsZero() || d.Due.After(before) {
			t.Errorf("replayed %s: Attempts %d, Dead %v, Due %v; want 0, zero, due now", d.ID, d.Attempts, d.Dead, d.Due)
		}
	}
}

func testReplayAll(t *testing.T, s store.Store) {
	buryAll(t, s, delivery("a1", "a"), delivery("a2", "a"), delivery("b1", "b"))

	n, err := s.Replay(t.Context(), "a", nil)
	if err != nil || n != 2 {
		t.Fatalf("Replay(a, nil) = %d, %v; want 2, nil", n, err)
	}
	wantIDs(t, "Dead(a) after Replay", mustDead(t, s, "a"))
	wantIDs(t, "Dead(b) after Replay(a)", mustDead(t, s, "b"), "b1")
	wantReplayed(t, s, "a", "a1", "a2")
	if st, err := s.Stats(t.Context(), time.Now()); err != nil || st["a"] != (store.SinkStats{Pending: 2}) {
		t.Errorf("Stats after Replay = %v, %v; want a: 2 pending", st, err)
	}

	n, err = s.Replay(t.Context(), "", nil)
	if err != nil || n != 1 {
		t.Fatalf("Replay(\"\", nil) = %d, %v; want 1, nil", n, err)
	}
	wantIDs(t, "Dead(\"\") after Replay(\"\")", mustDead(t, s, ""))
	wantReplayed(t, s, "b", "b1")

	if n, err := s.Replay(t.Context(), "", nil); err != nil || n != 0 {
		t.Errorf("Replay with no dead letters = %d, %v; want 0, nil", n, err)
	}
}

func testReplayIDs(t *testing.T, s store.Store) {
	buryAll(t, s, delivery("a1", "a"), delivery("a2", "a"), delivery("a3", "a"), delivery("b1", "b"))

	n, err := s.Replay(t.Context(), "", []string{"a2", "b1"})
	if err != nil || n != 2 {
		t.Fatalf("Replay(\"\", [a2 b1]) = %d, %v; want 2, nil", n, err)
	}
	wantIDs(t, "Dead(\"\") after Replay", mustDead(t, s, ""), "a1", "a3")
	wantReplayed(t, s, "a", "a2")
	wantReplayed(t, s, "b", "b1")

	n, err = s.Replay(t.Context(), "a", []string{"a3"})
	if err != nil || n != 1 {
		t.Fatalf("Replay(a, [a3]) = %d, %v; want 1, nil", n, err)
	}
	wantIDs(t, "Dead(a) after second Replay", mustDead(t, s, "a"), "a1")
	wantReplayed(t, s, "a", "a3")

	if n, err := s.Replay(t.Context(), "", []string{}); err != nil || n != 0 {
		t.Errorf("Replay with an empty id list = %d, %v; want 0, nil", n, err)
	}
	wantIDs(t, "Dead(a) after empty Replay", mustDead(t, s, "a"), "a1")
}

func testReplayUnknown(t *testing.T, s store.Store) {
	buryAll(t, s, delivery("a1", "a"))
	commitDeliveries(t, s, delivery("live", "a"))

	for _, idList := range [][]string{{"nope"}, {"a1", "nope"}, {"live"}} {
		n, err := s.Replay(t.Context(), "", idList)
		if !errors.Is(err, store.ErrNotFound) || n != 0 {
			t.Errorf("Replay(%q) = %d, %v; want 0, ErrNotFound", idList, n, err)
		}
	}
	// Nothing moved, not even the known id listed beside an unknown one.
	wantIDs(t, "Dead(a)", mustDead(t, s, "a"), "a1")
	wantIDs(t, "Claim(a)", mustClaim(t, s, "a", time.Now(), 10, time.Minute), "live")
}

func testStats(t *testing.T, s store.Store) {
	stats := func(want map[string]store.SinkStats) {
		t.Helper()
		got, err := s.Stats(t.Context(), time.Now())
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		for sink, w := range want {
			if got[sink] != w {
				t.Errorf("Stats[%s] = %+v, want %+v", sink, got[sink], w)
			}
		}
	}
	stats(map[string]store.SinkStats{"a": {}, "b": {}})

	commitDeliveries(t, s, delivery("a1", "a"), delivery("a2", "a"), delivery("a3", "a"), delivery("b1", "b"))
	stats(map[string]store.SinkStats{"a": {Pending: 3}, "b": {Pending: 1}})

	now := time.Now()
	got := mustClaim(t, s, "a", now, 3, time.Minute)
	wantIDs(t, "Claim(a)", got, "a1", "a2", "a3")
	stats(map[string]store.SinkStats{"a": {Pending: 3}, "b": {Pending: 1}}) // claimed is still pending

	a2, a3 := got[1], got[2]
	a2.Attempts, a2.LastError = 1, "timeout"
	if err := Retry(t.Context(), s, a2, now.Add(time.Hour)); err != nil {
		t.Fatalf("Retry(a2): %v", err)
	}
	a3.Attempts, a3.LastError = 10, "gone"
	if err := Bury(t.Context(), s, a3); err != nil {
		t.Fatalf("Bury(a3): %v", err)
	}
	stats(map[string]store.SinkStats{"a": {Pending: 1, Retrying: 1, Dead: 1}, "b": {Pending: 1}})

	if err := Ack(t.Context(), s, got[0]); err != nil {
		t.Fatalf("Ack(a1): %v", err)
	}
	stats(map[string]store.SinkStats{"a": {Retrying: 1, Dead: 1}, "b": {Pending: 1}})

	if n, err := s.Replay(t.Context(), "a", []string{"a3"}); err != nil || n != 1 {
		t.Fatalf("Replay(a3) = %d, %v", n, err)
	}
	stats(map[string]store.SinkStats{"a": {Pending: 1, Retrying: 1}, "b": {Pending: 1}})
}

func testConcurrentClaim(t *testing.T, s store.Store) {
	const n, workers = 60, 6
	var ds []store.Delivery
	for i := range n {
		ds = append(ds, delivery(fmt.Sprintf("d%02d", i), "hook"))
	}
	commitDeliveries(t, s, ds...)

	now := time.Now()
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			// Bounded, so a store that ignores leases fails instead of spinning.
			for range n {
				got, err := s.Claim(t.Context(), "hook", now, 4, time.Hour)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("claimed %d distinct deliveries, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("delivery %s handed out %d times within one lease", id, c)
		}
	}
}
