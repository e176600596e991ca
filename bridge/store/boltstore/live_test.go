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

func liveIDs(t *testing.T, s *Store, sink string) []string {
	t.Helper()
	ds, err := s.Live(t.Context(), sink, 0)
	if err != nil {
		t.Fatalf("Live(%q): %v", sink, err)
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// TestUpgradeFromSchema2 writes a version 2 file (no live bucket) and
// checks that a read-only Open lists its live deliveries by reading the
// outbox, and a writable Open builds the live bucket.
func TestUpgradeFromSchema2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openPath(t, path, Options{})
	t0 := time.Now().Truncate(time.Millisecond)
	late := itemDelivery("b1", "B")
	late.Due = t0.Add(time.Hour)
	other := itemDelivery("o1", "O")
	other.Sink = "other"
	if err := s.Commit(t.Context(), store.Commit{Source: "s", Generation: 0, Deliveries: []store.Delivery{
		late, itemDelivery("a1", "A"), itemDelivery("a2", "A"), other, itemDelivery("c1", "C")}}); err != nil {
		t.Fatal(err)
	}
	got := claimIDs(t, s, time.Now())
	if len(got) != 2 { // a1 and c1
		t.Fatalf("Claim = %v, want a1 and c1", got)
	}
	got[1].Attempts, got[1].LastError = 1, "gone"
	if err := storetest.Bury(t.Context(), s, got[1]); err != nil {
		t.Fatal(err)
	}
	want := []string{"a1", "a2", "b1"}
	if ids := liveIDs(t, s, "hook"); !slices.Equal(ids, want) {
		t.Fatalf("Live before the downgrade = %q, want %q", ids, want)
	}
	closeStore(t, s)

	rewriteFile(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte(bucketLive)); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketRoot)).Put([]byte(keySchema), binary.BigEndian.AppendUint64(nil, 2))
	})

	ro := openPath(t, path, Options{ReadOnly: true})
	if ids := liveIDs(t, ro, "hook"); !slices.Equal(ids, want) {
		t.Errorf("read-only Live of a version 2 file = %q, want %q", ids, want)
	}
	if ids := liveIDs(t, ro, ""); !slices.Equal(ids, []string{"a1", "a2", "o1", "b1"}) {
		t.Errorf("read-only Live(\"\") of a version 2 file = %q, want a1 a2 o1 b1", ids)
	}
	closeStore(t, ro)

	s = openPath(t, path, Options{})
	err := s.db.View(func(tx *bolt.Tx) error {
		if v, err := schema(tx); err != nil || v != schemaVersion {
			t.Errorf("schema after upgrade = %d, %v; want %d", v, err, schemaVersion)
		}
		if n := tx.Bucket([]byte(bucketLive)).Bucket([]byte("hook")).Stats().KeyN; n != 3 {
			t.Errorf("live/hook after upgrade has %d entries, want 3", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids := liveIDs(t, s, "hook"); !slices.Equal(ids, want) {
		t.Errorf("Live after upgrade = %q, want %q", ids, want)
	}
	// The upgraded bucket is kept in step: a1 acked, a2 promoted.
	if err := storetest.Ack(t.Context(), s, store.Delivery{ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	if ids := liveIDs(t, s, "hook"); !slices.Equal(ids, []string{"a2", "b1"}) {
		t.Errorf("Live after Ack(a1) = %q, want a2 b1", ids)
	}
}

// TestPingFailsWhenClosed: Ping answers while the file is open, not after
// Close.
func TestPingFailsWhenClosed(t *testing.T) {
	s := openPath(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	closeStore(t, s)
	if err := s.Ping(t.Context()); err == nil {
		t.Error("Ping of a closed store succeeded")
	}
}
