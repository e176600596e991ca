package sources

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pollbridge/pollbridge/bridge"
)

// benchPage is a {"data":[...]} page of n order-like items of about 170
// bytes each, the shape the load harness (bench/) serves.
func benchPage(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"s1-i%04d","status":"open","amount":%d,"currency":"EUR","customer":"cus_%04d","note":"lorem ipsum dolor","version":1,"updated_at":"2026-11-27T16:00:00.123Z"}`, i, 1000+i, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkExtract measures picking the items and keys out of a 100-item
// page: what a changed poll pays per page before diffing.
func BenchmarkExtract(b *testing.B) {
	body := benchPage(100)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		items, err := Extract(body, "data", "id")
		if err != nil || len(items) != 100 {
			b.Fatalf("%d items, %v", len(items), err)
		}
	}
}

// BenchmarkExtractFingerprint measures extraction plus the fingerprint of
// every item (ignoring updated_at), computed as Diff does: the per-page CPU
// of a baseline or of a poll whose items all changed, before the diff.
func BenchmarkExtractFingerprint(b *testing.B) {
	body := benchPage(100)
	fp := bridge.NewFingerprinter(bridge.Fields{Ignore: []string{"updated_at"}})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		items, err := Extract(body, "data", "id")
		if err != nil {
			b.Fatal(err)
		}
		for _, it := range items {
			if _, err := fp.Fingerprint(it.Data); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/item")
}

// BenchmarkCheckJSON measures the checks a changed page passes before its
// items are extracted (UTF-8, nesting and duplicate keys, the grammar).
func BenchmarkCheckJSON(b *testing.B) {
	body := benchPage(100)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := checkJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}
