package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Bench runs the same benchmarks against a backend: one poll's commit
// (Commit1000Items), loading a large source (Load10000Items), the start of
// a tick group of 10 sources (StartPolls10: its leases and meta, all a tick
// that finds nothing changed asks of the store), and the dispatch path of
// one delivery (ClaimAck) and of a batch of 64 as the dispatcher runs it
// under load (ClaimSettle64). open returns a fresh, empty store that it
// closes when b ends.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	b.Run("Commit1000Items", func(b *testing.B) { benchCommit(b, open(b)) })
	b.Run("Load10000Items", func(b *testing.B) { benchLoad(b, open(b)) })
	b.Run("StartPolls50", func(b *testing.B) { benchStartPolls(b, open(b)) })
	b.Run("ClaimAck", func(b *testing.B) { benchClaimAck(b, open(b)) })
	b.Run("ClaimSettle64", func(b *testing.B) { benchClaimSettle(b, open(b)) })
}

func benchItem(i, round int) store.Item {
	return store.Item{
		Fingerprint: fmt.Sprintf("%016x", i*31+round),
		Data:        json.RawMessage(fmt.Sprintf(`{"id":%d,"name":"item %d","status":"open","round":%d,"tags":["a","b","c"]}`, i, i, round)),
	}
}

// benchCommit: 1000 upserts and 10 deliveries in one commit.
func benchCommit(b *testing.B, s store.Store) {
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

// benchStartPolls: one StartPolls call for the next tick of 50 committed
// sources, each with an ETag and a body hash in its meta.
func benchStartPolls(b *testing.B, s store.Store) {
	ctx := b.Context()
	ticks := make([]store.PollTick, 50) // a tick group of the load harness
	for i := range ticks {
		src := fmt.Sprint("bench", i)
		err := s.Commit(ctx, store.Commit{Source: src, Meta: map[string]string{"etag": `"0123456789abcdef"`, "body_sha256": fmt.Sprintf("%064x", i)}})
		if err != nil {
			b.Fatal(err)
		}
		ticks[i].Source = src
	}
	b.ReportAllocs()
	cpu0, ok := cpuTime()
	for n := 0; b.Loop(); n++ {
		for i := range ticks {
			ticks[i].Tick = fmt.Sprint(n)
		}
		for i, r := range s.StartPolls(ctx, "bench", time.Minute, ticks) {
			if r.Err != nil || !r.Held || r.State.Generation != 1 || r.State.Meta["etag"] != `"0123456789abcdef"` {
				b.Fatalf("tick %d: %+v", i, r)
			}
		}
	}
	// This process's CPU, without the time spent waiting for a server.
	if cpu1, ok1 := cpuTime(); ok && ok1 {
		b.ReportMetric(float64(cpu1-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
	}
}

// benchLoad: loading a source of 10000 items.
func benchLoad(b *testing.B, s store.Store) {
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

// benchClaimAck: claim and ack of one delivery (its commit is not timed).
func benchClaimAck(b *testing.B, s store.Store) {
	ctx := b.Context()
	gen := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		d := store.Delivery{ID: fmt.Sprint(gen), Sink: "hook", Source: "bench", Payload: json.RawMessage(`{}`)}
		if err := s.Commit(ctx, store.Commit{Source: "bench", Generation: gen, Deliveries: []store.Delivery{d}}); err != nil {
			b.Fatal(err)
		}
		gen++
		b.StartTimer()
		ds, err := s.Claim(ctx, "hook", time.Now(), 1, time.Minute)
		if err != nil || len(ds) != 1 {
			b.Fatalf("Claim: %v, %v", ds, err)
		}
		if err := Ack(ctx, s, ds[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchClaimSettle: one Claim of 64 deliveries of distinct items and one
// Settle acking them all (their commit is not timed); reports the cost per
// delivery.
func benchClaimSettle(b *testing.B, s store.Store) {
	const batch = 64
	ctx := b.Context()
	gen := uint64(0)
	payload := json.RawMessage(`{"type":"item.updated","data":{"id":1,"status":"paid","amount":1042,"currency":"EUR"}}`)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c := store.Commit{Source: "bench", Generation: gen}
		for i := range batch {
			id := fmt.Sprintf("g%d-d%d", gen, i)
			c.Deliveries = append(c.Deliveries, store.Delivery{ID: id, EventID: id, Sink: "hook", Source: "bench",
				Key: fmt.Sprintf("item-%05d", i), Payload: payload})
		}
		if err := s.Commit(ctx, c); err != nil {
			b.Fatal(err)
		}
		gen++
		b.StartTimer()
		ds, err := s.Claim(ctx, "hook", time.Now(), batch, time.Minute)
		if err != nil || len(ds) != batch {
			b.Fatalf("Claim: %d, %v", len(ds), err)
		}
		if err := AckAll(ctx, s, ds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/delivery")
}
