package boltstore

import (
	"encoding/binary"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

// TestConformanceReopen reopens the file, claims and all, as a restarted
// process after a crash would.
func TestConformanceReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) (store.Store, func() store.Store) {
		path := filepath.Join(t.TempDir(), "state.db")
		s := openPath(t, path, Options{})
		return s, func() store.Store {
			closeStore(t, s)
			s = openPath(t, path, Options{})
			return s
		}
	})
}

func itemDelivery(id, key string) store.Delivery {
	d := testDelivery(id)
	d.Key = key
	return d
}

func claimIDs(t *testing.T, s *Store, now time.Time) []store.Delivery {
	t.Helper()
	ds, err := s.Claim(t.Context(), "hook", now, 10, time.Hour)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return ds
}

// TestUpgradeFromSchema1 writes a version 1 outbox (every live delivery in
// due/<sink>, one of them claimed behind an older one of its item) and
// checks that a read-only Open reads it as it is and a writable Open
// upgrades it to per-item order.
func TestUpgradeFromSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openPath(t, path, Options{})
	if err := s.Commit(t.Context(), store.Commit{Source: "s", Generation: 0, Deliveries: []store.Delivery{
		itemDelivery("a1", "A"), itemDelivery("a2", "A"), itemDelivery("b1", "B"), itemDelivery("a3", "A")}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if got := claimIDs(t, s, now); len(got) != 2 {
		t.Fatalf("Claim = %v, want a1 and b1", got)
	}
	closeStore(t, s)

	// Rewrite it as version 1 would have left it, with a2 claimed too.
	rewriteFile(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte(bucketFifo)); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketRoot)).Put([]byte(keySchema), binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		due := tx.Bucket([]byte(bucketDue)).Bucket([]byte("hook"))
		for id, claimed := range map[string]bool{"a2": true, "a3": false} {
			r, err := getRecord(outbox(tx), []byte(id))
			if err != nil {
				return err
			}
			if claimed {
				r.at = nanos(now.Add(time.Hour))
				if err := tx.Bucket([]byte(bucketClaimed)).Put([]byte(id), nil); err != nil {
					return err
				}
			}
			if err := due.Put(r.key(), r.dueValue()); err != nil {
				return err
			}
			if err := putRecord(outbox(tx), r); err != nil {
				return err
			}
		}
		return nil
	})

	ro := openPath(t, path, Options{ReadOnly: true})
	if st, err := ro.Stats(t.Context(), time.Now()); err != nil || st["hook"] != (store.SinkStats{Pending: 4}) {
		t.Errorf("read-only Stats of a version 1 file = %v, %v; want 4 pending", st, err)
	}
	closeStore(t, ro)

	s = openPath(t, path, Options{})
	err := s.db.View(func(tx *bolt.Tx) error {
		if v, err := schema(tx); err != nil || v != schemaVersion {
			t.Errorf("schema after upgrade = %d, %v; want %d", v, err, schemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stats(t.Context(), time.Now()); err != nil || st["hook"] != (store.SinkStats{Pending: 4}) {
		t.Errorf("Stats after upgrade = %v, %v; want 4 pending", st, err)
	}
	var order []string
	got := claimIDs(t, s, time.Now())
	for range 5 {
		ids := make([]string, len(got))
		for i, d := range got {
			ids[i] = d.ID
		}
		slices.Sort(ids)
		order = append(order, ids...)
		for _, d := range got {
			if err := storetest.Ack(t.Context(), s, d); err != nil {
				t.Fatalf("Ack(%s): %v", d.ID, err)
			}
		}
		if got = claimIDs(t, s, time.Now()); len(got) == 0 {
			break
		}
	}
	// The abandoned claims are released, but a2 waits behind a1 although
	// version 1 had claimed it.
	if want := []string{"a1", "b1", "a2", "a3"}; !slices.Equal(order, want) {
		t.Errorf("claimed after upgrade, round by round: %q, want %q", order, want)
	}
}
