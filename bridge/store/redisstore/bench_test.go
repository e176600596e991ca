package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

// The benchmarks run against the Redis at REDIS_URL, like the boltstore
// ones against a file, with the same data:
//
//	go test -run '^$' -bench . -benchmem ./bridge/store/redisstore/

// BenchmarkStore runs the shared store benchmarks on the local Redis, each
// under a fresh prefix.
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		return openStore(b, localURL(b), Options{RepairInterval: time.Hour})
	})
}

// orderJSON is an order-like item of about 200 bytes.
func orderJSON(i int) string {
	return fmt.Sprintf(`{"id":%d,"number":"ORD-%07d","status":"paid","customer":{"id":%d,"name":"Customer %d",`+
		`"email":"c%d@example.com"},"total":"123.45","currency":"EUR","updated_at":"2026-11-27T12:00:00Z"}`, i, i, i%997, i%997, i%997)
}

// usedMemory reads used_memory from INFO memory.
func usedMemory(ctx context.Context, b *testing.B, s *Store) int64 {
	info, err := s.rdb.Info(ctx, "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

// BenchmarkMemoryCost measures what Redis spends (used_memory deltas, so
// hash table and set overhead included) per source, per stored item of
// about 200 bytes and per pending delivery, and reports them as metrics.
// Run it alone against an otherwise idle Redis:
//
//	go test -run '^$' -bench MemoryCost ./bridge/store/redisstore/
func BenchmarkMemoryCost(b *testing.B) {
	url := localURL(b)
	ctx := b.Context()
	const sources, items, deliveries = 2000, 20000, 20000

	// Per source: generation, sequence, meta (ETag, Last-Modified), the
	// sources set member, and ready index entries for one sink, after its
	// one delivery was claimed and acked.
	s := openStore(b, url, Options{RepairInterval: time.Hour})
	before := usedMemory(ctx, b, s)
	for i := range sources {
		src := fmt.Sprintf("source-%05d", i)
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: 0,
			Meta:       map[string]string{"etag": `W/"5f3a-1a2b3c4d"`, "last_modified": "Tue, 15 Nov 1994 08:12:31 GMT"},
			Deliveries: []store.Delivery{{ID: src + ".d", Sink: "hook", Source: src, Payload: json.RawMessage(`{}`)}}}); err != nil {
			b.Fatal(err)
		}
	}
	for acked := 0; acked < sources; {
		ds, err := s.Claim(ctx, "hook", time.Now(), 500, time.Minute)
		if err != nil || len(ds) == 0 {
			b.Fatalf("Claim: %d, %v", len(ds), err)
		}
		for _, d := range ds {
			if err := storetest.Ack(ctx, s, d); err != nil {
				b.Fatal(err)
			}
		}
		acked += len(ds)
	}
	perSource := float64(usedMemory(ctx, b, s)-before) / sources

	// Per item: one source with order-like items and 32-hex fingerprints.
	s = openStore(b, url, Options{RepairInterval: time.Hour})
	c := store.Commit{Source: "orders", Upsert: make(map[string]store.Item, items)}
	itemBytes := 0
	for i := range items {
		it := store.Item{Fingerprint: fmt.Sprintf("%032x", i*7919), Data: json.RawMessage(orderJSON(i))}
		itemBytes += len(it.Data)
		c.Upsert[strconv.Itoa(100000+i)] = it
	}
	before = usedMemory(ctx, b, s)
	if err := s.Commit(ctx, c); err != nil {
		b.Fatal(err)
	}
	perItem := float64(usedMemory(ctx, b, s)-before) / items
	itemsKeyBytes, err := s.rdb.MemoryUsage(ctx, s.itemsKey("orders"), 0).Result()
	if err != nil {
		b.Fatal(err)
	}

	// Per pending delivery: item.created events of those items, one sink.
	s = openStore(b, url, Options{RepairInterval: time.Hour})
	payloadBytes := 0
	before = usedMemory(ctx, b, s)
	for start := 0; start < deliveries; start += 1000 {
		c := store.Commit{Source: "orders", Generation: uint64(start / 1000)}
		for i := start; i < start+1000; i++ {
			id := fmt.Sprintf("msg_%032x", i*7919)
			p := fmt.Sprintf(`{"type":"item.created","timestamp":"2026-11-27T12:00:00.123Z","data":{"id":%q,"source":"orders","key":"%d","item":%s}}`,
				id, 100000+i, orderJSON(i))
			payloadBytes += len(p)
			c.Deliveries = append(c.Deliveries, store.Delivery{ID: id + ".app", EventID: id, Sink: "app", Source: "orders",
				Key: strconv.Itoa(100000 + i), Payload: json.RawMessage(p)})
		}
		if err := s.Commit(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	perDelivery := float64(usedMemory(ctx, b, s)-before) / deliveries

	for b.Loop() { // the measurement above is the benchmark; ResetTimer drops metrics reported earlier
	}
	b.ReportMetric(perSource, "B/source")
	b.ReportMetric(perItem, "B/item")
	b.ReportMetric(perDelivery, "B/delivery")
	b.Logf("per source %.0f B; per item %.0f B (item JSON %d B, MEMORY USAGE of the items hash %.0f B/item); "+
		"per pending delivery %.0f B (payload %d B, so %.0f B overhead)",
		perSource, perItem, itemBytes/items, float64(itemsKeyBytes)/items,
		perDelivery, payloadBytes/deliveries, perDelivery-float64(payloadBytes/deliveries))
}

// evalUsec reads the total server time Redis has spent in EVALSHA
// (INFO commandstats): the scripts' own cost, without the network.
func evalUsec(ctx context.Context, b *testing.B, s *Store) float64 {
	info, err := s.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatal(err)
				}
				return n
			}
		}
	}
	return 0 // no script has run yet
}

// BenchmarkScriptCost measures what the outbox scripts cost Redis itself
// per delivery (server time from INFO commandstats, so neither the network
// nor go-redis): the commit of 64 deliveries of a source with drain-sized
// payloads, one Claim of them and one Settle acking them. On a machine
// whose two cores also run pollbridge and the receiver, this is CPU the
// drain shares. Run it against an otherwise idle Redis:
//
//	go test -run '^$' -bench ScriptCost ./bridge/store/redisstore/
func BenchmarkScriptCost(b *testing.B) {
	const batch = 64
	ctx := b.Context()
	s := openStore(b, localURL(b), Options{RepairInterval: time.Hour})
	var commit, claim, settle float64
	gen := uint64(0)
	for b.Loop() {
		c := store.Commit{Source: "orders", Generation: gen}
		for i := range batch {
			id := fmt.Sprintf("msg_%d_%d", gen, i)
			p := fmt.Sprintf(`{"type":"item.created","timestamp":"2026-11-27T12:00:00.123Z","data":{"id":%q,"source":"orders","key":"%d","item":%s}}`,
				id, 100000+i, orderJSON(i))
			c.Deliveries = append(c.Deliveries, store.Delivery{ID: id + ".app", EventID: id, Sink: "app", Source: "orders",
				Key: strconv.Itoa(100000 + i), Created: time.Now(), Payload: json.RawMessage(p)})
		}
		gen++
		t0 := evalUsec(ctx, b, s)
		if err := s.Commit(ctx, c); err != nil {
			b.Fatal(err)
		}
		t1 := evalUsec(ctx, b, s)
		ds, err := s.Claim(ctx, "app", time.Now(), batch, time.Minute)
		if err != nil || len(ds) != batch {
			b.Fatalf("Claim: %d, %v", len(ds), err)
		}
		t2 := evalUsec(ctx, b, s)
		if err := storetest.AckAll(ctx, s, ds); err != nil {
			b.Fatal(err)
		}
		t3 := evalUsec(ctx, b, s)
		commit, claim, settle = commit+t1-t0, claim+t2-t1, settle+t3-t2
	}
	n := float64(b.N) * batch
	b.ReportMetric(commit/n, "commit-µs/delivery")
	b.ReportMetric(claim/n, "claim-µs/delivery")
	b.ReportMetric(settle/n, "settle-µs/delivery")
}
