package bridge

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// benchItems makes n order-like items; every changeEvery-th one differs in
// its status from the stored version.
func benchItems(n int, status func(i int) string) []Item {
	out := make([]Item, n)
	for i := range out {
		data := fmt.Sprintf(`{"id":%d,"customer":"customer-%d","status":%q,"total":%d.50,"lines":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"updated_at":"2026-11-27T12:00:00Z"}`,
			i, i, status(i), i)
		out[i] = Item{Key: fmt.Sprint(i), Data: json.RawMessage(data)}
	}
	return out
}

// BenchmarkDiff10k measures one poll's diff of 10,000 items of which 1% changed.
func BenchmarkDiff10k(b *testing.B) { benchDiffChanged(b, false) }

// benchDiffChanged diffs 10,000 stored items (with or without their
// bodies) against a snapshot in which 1% changed.
func benchDiffChanged(b *testing.B, noBodies bool) {
	ignore := []string{"updated_at"}
	old := store.State{Generation: 1, Items: map[string]store.Item{}, Meta: map[string]string{metaFingerprintConfig: fingerprintConfig(ignore)}}
	for _, it := range benchItems(10000, func(int) string { return "new" }) {
		fp, _, err := Fingerprint(it.Data, ignore)
		if err != nil {
			b.Fatal(err)
		}
		old.Items[it.Key] = store.Item{Fingerprint: fp, Data: it.Data}
		if noBodies {
			old.Items[it.Key] = store.Item{Fingerprint: fp}
		}
	}
	snap := benchItems(10000, func(i int) string {
		if i%100 == 0 {
			return "paid"
		}
		return "new"
	})
	opts := DiffOptions{Source: "orders", Ignore: ignore, MaxDeleteRatio: 0.5, Now: time.Now(), NoBodies: noBodies}
	b.ReportAllocs()
	for b.Loop() {
		res, err := Diff(old, snap, old.Meta, opts)
		if err != nil || len(res.Events) != 100 {
			b.Fatalf("events %d, err %v", len(res.Events), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/item")
}

// BenchmarkFingerprint measures the fingerprint of one typical item.
func BenchmarkFingerprint(b *testing.B) {
	data := benchItems(1, func(int) string { return "new" })[0].Data
	ignore := []string{"updated_at"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Fingerprint(data, ignore); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFingerprinter measures the fingerprint of the same item as
// BenchmarkFingerprint the way Diff computes it (no decoding).
func BenchmarkFingerprinter(b *testing.B) {
	data := benchItems(1, func(int) string { return "new" })[0].Data
	fp := NewFingerprinter(Fields{Ignore: []string{"updated_at"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fp.Fingerprint(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiffBaseline10k measures a source's first poll of 10,000 items:
// every item is fingerprinted.
func BenchmarkDiffBaseline10k(b *testing.B) {
	snap := benchItems(10000, func(int) string { return "new" })
	opts := DiffOptions{Source: "orders", Ignore: []string{"updated_at"}, Now: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		res, err := Diff(store.State{}, snap, map[string]string{}, opts)
		if err != nil || len(res.Commit.Upsert) != 10000 {
			b.Fatalf("upserts %d, err %v", len(res.Commit.Upsert), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/item")
}

// BenchmarkDiffNoBodies10k is BenchmarkDiff10k with keep_bodies: false:
// with no stored bodies to compare, every item is fingerprinted.
func BenchmarkDiffNoBodies10k(b *testing.B) { benchDiffChanged(b, true) }
