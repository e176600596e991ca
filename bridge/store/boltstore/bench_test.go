package boltstore

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

func benchItem(i, round int) store.Item {
	return store.Item{
		Fingerprint: fmt.Sprintf("%016x", i*31+round),
		Data:        json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"item %d","status":"open","round":%d,"tags":["a","b","c"]}`, i, i, round)),
	}
}

// BenchmarkCommit1000Items measures one poll's commit: 1000 upserts and 10
// deliveries in one fsynced transaction.
func BenchmarkCommit1000Items(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	gen := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		c := store.Commit{Source: "bench", Generation: gen, Upsert: make(map[string]store.Item, 1000)}
		for i := range 1000 {
			c.Upsert[fmt.Sprintf("item-%05d", i)] = benchItem(i, int(gen))
		}
		for i := range 10 {
			id := fmt.Sprintf("g%d-d%d", gen, i)
			c.Deliveries = append(c.Deliveries, store.Delivery{ID: id, EventID: id, Sink: "hook", Source: "bench",
				Key: fmt.Sprintf("item-%05d", i), Payload: json.RawMessage(`{"type":"item.updated","data":{"id":1}}`)})
		}
		if err := s.Commit(ctx, c); err != nil {
			b.Fatal(err)
		}
		gen++
	}
}

// BenchmarkLoad10000Items measures loading a source of 10000 items.
func BenchmarkLoad10000Items(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	c := store.Commit{Source: "bench", Upsert: make(map[string]store.Item, 10000)}
	for i := range 10000 {
		c.Upsert[fmt.Sprintf("item-%05d", i)] = benchItem(i, 0)
	}
	if err := s.Commit(ctx, c); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.Load(ctx, "bench")
		if err != nil || len(st.Items) != 10000 {
			b.Fatalf("Load: %d items, %v", len(st.Items), err)
		}
	}
}

// BenchmarkClaimAck measures the dispatch path of one delivery: claim, ack.
func BenchmarkClaimAck(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	gen := uint64(0)
	for b.Loop() {
		b.StopTimer()
		d := store.Delivery{ID: fmt.Sprint(gen), Sink: "hook", Payload: json.RawMessage(`{}`)}
		if err := s.Commit(ctx, store.Commit{Source: "bench", Generation: gen, Deliveries: []store.Delivery{d}}); err != nil {
			b.Fatal(err)
		}
		gen++
		b.StartTimer()
		ds, err := s.Claim(ctx, "hook", time.Now(), 1, time.Minute)
		if err != nil || len(ds) != 1 {
			b.Fatalf("Claim: %v, %v", ds, err)
		}
		if err := s.Ack(ctx, ds[0]); err != nil {
			b.Fatal(err)
		}
	}
}
