package redisstore

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// A cluster node that lost its scripts (a failover) fails only its own
// calls of a pipeline with NOSCRIPT: those go again, and the calls the
// other nodes ran do not, so no claim is made twice and no settled
// outcome is reported missing.
func TestScriptsLostOnOneNode(t *testing.T) {
	s := openStore(t, clusterURL(t), Options{RepairInterval: time.Hour})
	ctx := t.Context()
	cc := s.rdb.(*redis.ClusterClient)
	sources := make([]string, 12) // over the three masters
	for i := range sources {
		sources[i] = fmt.Sprint("src", i)
		if err := s.Commit(ctx, store.Commit{Source: sources[i], Generation: 0,
			Deliveries: []store.Delivery{testDelivery(sources[i]+"-d", "hook", sources[i])}}); err != nil {
			t.Fatal(err)
		}
	}
	// Every script on every master, then one master's cache flushed.
	if err := s.sc.load(ctx, s.rdb); err != nil {
		t.Fatal(err)
	}
	flushOne := func() {
		t.Helper()
		node, err := cc.MasterForKey(ctx, s.outKey(sources[0]))
		if err != nil {
			t.Fatal(err)
		}
		if err := node.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	flushOne()
	ds, err := s.Claim(ctx, "hook", time.Now(), 100, time.Minute)
	if err != nil || len(ds) != len(sources) {
		t.Fatalf("Claim = %q, %v; want one delivery of each of the %d sources", ids(ds), err, len(sources))
	}
	if again, err := s.Claim(ctx, "hook", time.Now(), 100, time.Minute); err != nil || len(again) != 0 {
		t.Errorf("Claim again = %q, %v; want nothing: every delivery is claimed", ids(again), err)
	}
	if err := s.sc.load(ctx, s.rdb); err != nil {
		t.Fatal(err)
	}
	flushOne()
	outcomes := make([]store.Outcome, len(ds))
	for i, d := range ds {
		outcomes[i] = store.Outcome{Op: store.OpAck, Delivery: d}
	}
	for i, err := range s.Settle(ctx, outcomes) {
		if err != nil {
			t.Errorf("Settle: ack %s: %v", ds[i].ID, err)
		}
	}
	if st, err := s.Stats(ctx, time.Now()); err != nil || st["hook"] != (store.SinkStats{}) {
		t.Errorf("Stats after the acks = %v, %v; want an empty outbox", st, err)
	}
}

// A record Claim cannot decode is claimed all the same (it is hidden until
// the lease ends) and does not cost the batch the records it can decode.
func TestClaimKeepsTheRestOfABadRecord(t *testing.T) {
	s := openStore(t, localURL(t), Options{RepairInterval: time.Hour})
	ctx := t.Context()
	ds := []store.Delivery{testDelivery("d1", "hook", "src"), testDelivery("d2", "hook", "src"), testDelivery("d3", "hook", "src")}
	if err := s.Commit(ctx, store.Commit{Source: "src", Generation: 0, Deliveries: ds}); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.HSet(ctx, s.outKey("src"), "d2", "bogus").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
	if err != nil || !slices.Equal(ids(got), []string{"d1", "d3"}) {
		t.Errorf("Claim = %q, %v; want d1 and d3", ids(got), err)
	}
	if got, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute); err != nil || len(got) != 0 {
		t.Errorf("Claim again = %q, %v; want nothing: the bad record is claimed too", ids(got), err)
	}
}
