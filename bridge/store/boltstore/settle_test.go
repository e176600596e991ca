package boltstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// settleSetup commits and claims d1 and d2 for an hour.
func settleSetup(t *testing.T) (*Store, []store.Delivery) {
	t.Helper()
	s := openPath(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	if err := s.Commit(t.Context(), store.Commit{Source: "s", Generation: 0,
		Deliveries: []store.Delivery{testDelivery("d1"), testDelivery("d2")}}); err != nil {
		t.Fatal(err)
	}
	got := claimIDs(t, s, time.Now())
	if len(got) != 2 {
		t.Fatalf("Claim = %v, want d1 and d2", got)
	}
	return s, got
}

// An outcome with an unknown op is that outcome's error; it writes nothing
// for its delivery and the others are recorded.
func TestSettleUnknownOp(t *testing.T) {
	s, got := settleSetup(t)
	errs := s.Settle(t.Context(), []store.Outcome{{Op: 0, Delivery: got[0]}, {Op: store.OpAck, Delivery: got[1]}})
	if len(errs) != 2 || errs[0] == nil || errs[1] != nil {
		t.Fatalf("Settle(unknown op, ack) = %v; want an error, then nil", errs)
	}
	// d1 keeps its claim: an hour later it is claimable again, d2 is gone.
	if later := claimIDs(t, s, time.Now().Add(2*time.Hour)); len(later) != 1 || later[0].ID != "d1" {
		t.Errorf("Claim after the leases = %v, want d1 only", later)
	}
}

// A Settle that cannot run is every outcome's error, and records none.
func TestSettleCanceled(t *testing.T) {
	s, got := settleSetup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errs := s.Settle(ctx, []store.Outcome{{Op: store.OpAck, Delivery: got[0]}, {Op: store.OpBury, Delivery: got[1]}})
	if len(errs) != 2 {
		t.Fatalf("Settle returned %d errors for 2 outcomes", len(errs))
	}
	for i, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("outcome %d: err = %v, want context.Canceled", i, err)
		}
	}
	if later := claimIDs(t, s, time.Now().Add(2*time.Hour)); len(later) != 2 {
		t.Errorf("Claim after the leases = %v, want d1 and d2 still outstanding", later)
	}
}
