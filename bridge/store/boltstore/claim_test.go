package boltstore

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

// A claim made by schema 3 (the record rewritten with the lease's time, an
// empty claimed/ entry) is still released at open and settled right: the
// delivery comes back exactly once and leaves no stray due entry.
func TestSchema3ClaimIsReadRight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openPath(t, path, Options{})
	if err := s.Commit(t.Context(), store.Commit{Source: "s", Generation: 0,
		Deliveries: []store.Delivery{itemDelivery("a1", "A"), itemDelivery("b1", "B")}}); err != nil {
		t.Fatal(err)
	}
	got := claimIDs(t, s, time.Now())
	if len(got) != 2 {
		t.Fatalf("Claim = %v, want a1 and b1", got)
	}
	closeStore(t, s)

	// Rewrite the claims as schema 3 kept them.
	rewriteFile(t, path, func(tx *bolt.Tx) error {
		claimed, ob := tx.Bucket([]byte(bucketClaimed)), outbox(tx)
		for _, id := range []string{"a1", "b1"} {
			r, err := getRecord(ob, []byte(id)) // at: the lease's end, from claimed/
			if err != nil {
				return err
			}
			if err := putRecord(ob, r); err != nil {
				return err
			}
			if err := claimed.Put([]byte(id), []byte{}); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bucketRoot)).Put([]byte(keySchema), binary.BigEndian.AppendUint64(nil, 3))
	})

	s = openPath(t, path, Options{})
	again := claimIDs(t, s, time.Now())
	if len(again) != 2 {
		t.Fatalf("Claim after reopening = %v, want a1 and b1 released", again)
	}
	if err := storetest.Ack(t.Context(), s, again[0]); err != nil {
		t.Fatal(err)
	}
	if err := storetest.Retry(t.Context(), s, again[1], time.Now()); err != nil {
		t.Fatal(err)
	}
	later := claimIDs(t, s, time.Now().Add(time.Hour))
	if len(later) != 1 || later[0].ID != again[1].ID {
		t.Fatalf("Claim an hour later = %v, want only the retried %s (no stray due entries)", later, again[1].ID)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if v, err := schema(tx); err != nil || v != schemaVersion {
			t.Errorf("schema after open = %d, %v; want %d", v, err, schemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A Claim that finds nothing due writes nothing: bbolt writes and fsyncs
// its meta page for every write transaction, even one that changed
// nothing, and an idle dispatcher asks once a second. A claim of due
// deliveries still writes.
func TestClaimOfNothingDueDoesNotWrite(t *testing.T) {
	s := openPath(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	txid := func() (id int) {
		t.Helper()
		if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
			t.Fatal(err)
		}
		return id
	}
	check := func(what string, now time.Time, want int) {
		t.Helper()
		before := txid()
		if got := claimIDs(t, s, now); len(got) != want {
			t.Fatalf("%s: Claim = %v, want %d deliveries", what, got, want)
		}
		wrote := txid() != before
		if wrote != (want > 0) {
			t.Errorf("%s: Claim wrote a transaction: %v, want %v", what, wrote, want > 0)
		}
	}
	check("empty outbox", time.Now(), 0)
	if err := s.Commit(t.Context(), store.Commit{Source: "s", Generation: 0,
		Deliveries: []store.Delivery{itemDelivery("a1", "A")}}); err != nil {
		t.Fatal(err)
	}
	check("due only later", time.Now().Add(-time.Hour), 0)
	check("due", time.Now(), 1)
	check("claimed", time.Now(), 0)
}
