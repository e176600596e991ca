package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Ack records d as delivered: Settle of one OpAck outcome. It returns that
// outcome's error.
func Ack(ctx context.Context, s store.Store, d store.Delivery) error {
	return settleOne(ctx, s, store.Outcome{Op: store.OpAck, Delivery: d})
}

// AckAll acks every delivery of ds in one Settle call and returns the
// first error.
func AckAll(ctx context.Context, s store.Store, ds []store.Delivery) error {
	outcomes := make([]store.Outcome, len(ds))
	for i, d := range ds {
		outcomes[i] = store.Outcome{Op: store.OpAck, Delivery: d}
	}
	for i, err := range s.Settle(ctx, outcomes) {
		if err != nil {
			return fmt.Errorf("ack %s: %w", ds[i].ID, err)
		}
	}
	return nil
}

// Retry records a failed attempt of d, to be attempted again at due (now
// when zero), with d's Attempts and LastError: Settle of one OpRetry
// outcome. It returns that outcome's error.
func Retry(ctx context.Context, s store.Store, d store.Delivery, due time.Time) error {
	return settleOne(ctx, s, store.Outcome{Op: store.OpRetry, Delivery: d, Due: due})
}

// Bury moves d, with its Attempts and LastError, to the dead letters:
// Settle of one OpBury outcome. It returns that outcome's error.
func Bury(ctx context.Context, s store.Store, d store.Delivery) error {
	return settleOne(ctx, s, store.Outcome{Op: store.OpBury, Delivery: d})
}

// settleOne settles o alone and returns its error.
func settleOne(ctx context.Context, s store.Store, o store.Outcome) error {
	errs := s.Settle(ctx, []store.Outcome{o})
	if len(errs) != 1 {
		return fmt.Errorf("settle %q: Settle of one outcome gave %d errors", o.Delivery.ID, len(errs))
	}
	return errs[0]
}

// testSettle: Settle records acks, retries and burials together as
// separate calls of one outcome each (Ack, Retry, Bury) would, reports a
// missing delivery as ErrNotFound without failing the rest, and releases an
// item's next delivery on an ack.
func testSettle(t *testing.T, s store.Store) {
	commitDeliveries(t, s, delivery("d1", "hook"), delivery("d2", "hook"), delivery("d3", "hook"), delivery("d4", "hook"))
	now := time.Now().Truncate(time.Millisecond)
	got := mustClaim(t, s, "hook", now, 10, time.Minute)
	wantIDs(t, "Claim", got, "d1", "d2", "d3", "d4")
	retried, buried := got[1], got[2]
	retried.Attempts, retried.LastError = 2, "503 from the receiver"
	buried.Attempts, buried.LastError = 1, "400 from the receiver"
	errs := s.Settle(t.Context(), []store.Outcome{
		{Op: store.OpAck, Delivery: got[0]},
		{Op: store.OpRetry, Delivery: retried, Due: now.Add(time.Hour)},
		{Op: store.OpBury, Delivery: buried},
		{Op: store.OpAck, Delivery: delivery("nope", "hook")},
		{Op: store.OpAck, Delivery: got[0]}, // already acked, earlier in the batch
	})
	if len(errs) != 5 {
		t.Fatalf("Settle returned %d errors for 5 outcomes", len(errs))
	}
	for i, err := range errs[:3] {
		if err != nil {
			t.Errorf("Settle outcome %d: %v", i, err)
		}
	}
	for i, err := range errs[3:] {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Settle outcome %d: err = %v, want ErrNotFound", i+3, err)
		}
	}
	dead := mustDead(t, s, "hook")
	wantIDs(t, "Dead after Settle", dead, "d3")
	if dead[0].Attempts != 1 || dead[0].LastError != "400 from the receiver" {
		t.Errorf("buried delivery: attempts %d, last error %q", dead[0].Attempts, dead[0].LastError)
	}
	// d4 was not settled: its claim runs out; d2 waits for its retry time.
	wantIDs(t, "Claim after d4's lease", mustClaim(t, s, "hook", now.Add(30*time.Minute), 10, time.Minute), "d4")
	again := mustClaim(t, s, "hook", now.Add(2*time.Hour), 10, time.Minute)
	wantIDs(t, "Claim after the retry time (d4's second lease ran out before)", again, "d4", "d2")
	if again[1].Attempts != 2 || again[1].LastError != "503 from the receiver" {
		t.Errorf("retried delivery: attempts %d, last error %q", again[1].Attempts, again[1].LastError)
	}

	for i, err := range s.Settle(t.Context(), []store.Outcome{{Op: store.OpAck, Delivery: again[0]}, {Op: store.OpAck, Delivery: again[1]}}) {
		if err != nil {
			t.Fatalf("Settle(ack %s): %v", again[i].ID, err)
		}
	}

	// Acking an item's head in a batch releases its next delivery at once.
	commitDeliveries(t, s, ofItem("i1", "k"), ofItem("i2", "k"))
	head := mustClaim(t, s, "hook", now.Add(3*time.Hour), 1, time.Minute)
	wantIDs(t, "Claim of the item", head, "i1")
	if errs := s.Settle(t.Context(), []store.Outcome{{Op: store.OpAck, Delivery: head[0]}}); errs[0] != nil {
		t.Fatalf("Settle(ack i1): %v", errs[0])
	}
	wantIDs(t, "Claim after the head's ack", mustClaim(t, s, "hook", now.Add(3*time.Hour), 1, time.Minute), "i2")
}
