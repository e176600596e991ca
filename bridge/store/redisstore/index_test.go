package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/redisstore/redistest"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

func testDelivery(id, sink, source string) store.Delivery {
	return store.Delivery{ID: id, EventID: "evt_" + id, Sink: sink, Source: source, Key: id,
		Payload: json.RawMessage(`{"id":"` + id + `"}`)}
}

// TestRepairFindsStrandedDelivery commits while the ready index update is
// skipped, as if the replica died between the two steps: the delivery is
// not claimable until the repair pass, which comes within RepairInterval.
func TestRepairFindsStrandedDelivery(t *testing.T) {
	onSingleAndCluster(t, func(t *testing.T, url string) {
		const every = 400 * time.Millisecond
		s := openStore(t, url, Options{RepairInterval: every})
		ctx := t.Context()
		if ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute); err != nil || len(ds) != 0 {
			t.Fatalf("first Claim (runs the first repair) = %v, %v", ds, err)
		}
		s.skipSync.Store(true)
		err := s.Commit(ctx, store.Commit{Source: "orders", Generation: 0,
			Deliveries: []store.Delivery{testDelivery("d1", "hook", "orders")}})
		s.skipSync.Store(false)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		committed := time.Now()
		if err := s.rdb.ZScore(ctx, s.readyKey("hook"), "orders").Err(); !errors.Is(err, redis.Nil) {
			t.Fatalf("ready index has the source although the update was skipped: %v", err)
		}
		if ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute); err != nil || len(ds) != 0 {
			t.Fatalf("Claim before the repair = %v, %v; want nothing (the index was not updated)", ids(ds), err)
		}
		deadline := committed.Add(every + 2*time.Second)
		for {
			ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
			if err != nil {
				t.Fatalf("Claim: %v", err)
			}
			if len(ds) > 0 {
				if got := ids(ds); !slices.Equal(got, []string{"d1"}) {
					t.Fatalf("Claim after repair = %q, want d1", got)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stranded delivery not claimable %v after the commit (repair interval %v)", time.Since(committed), every)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The bound: the last repair ran before the commit, the next one
		// at most every later; allow for the claim polling and a slow CI.
		if took := time.Since(committed); took > every+time.Second { // slack for a loaded CI machine
			t.Errorf("stranded delivery claimable after %v, want within the repair interval %v", took, every)
		}
	})
}

// TestRepairTakesTurns checks that Stores sharing a prefix do not all
// repair in the same interval.
func TestRepairTakesTurns(t *testing.T) {
	url := localURL(t)
	a := openStore(t, url, Options{RepairInterval: time.Hour})
	b := openStore(t, url, Options{RepairInterval: time.Hour, Prefix: a.prefix})
	for _, s := range []*Store{a, b} {
		if _, err := s.Claim(t.Context(), "hook", time.Now(), 1, time.Minute); err != nil {
			t.Fatalf("Claim: %v", err)
		}
	}
	holder, err := a.rdb.Get(t.Context(), a.repairKey()).Result()
	if err != nil || holder != a.owner {
		t.Errorf("repair turn held by %q (%v), want the first Store %q", holder, err, a.owner)
	}
	if ttl := a.rdb.PTTL(t.Context(), a.repairKey()).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("repair turn expires in %v, want within the interval", ttl)
	}
}

func ids(ds []store.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// countHook counts commands (n, a pipeline's each) and round trips (trips:
// a command alone or a whole pipeline).
type countHook struct{ n, trips atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}

// openRepaired opens a Store under a fresh prefix whose first repair pass
// is over, so that none runs during the test.
func openRepaired(t *testing.T) *Store {
	t.Helper()
	s := openStore(t, localURL(t), Options{RepairInterval: time.Hour})
	if _, err := s.Claim(t.Context(), "hook", time.Now(), 1, time.Minute); err != nil { // the first repair
		t.Fatal(err)
	}
	s.repairs.Wait() // it runs in the background
	return s
}

// spaced is n deliveries of src to "hook", ids src-0, src-1, ..., each of
// an item of its own (so each is a head), due a millisecond apart from
// first.
func spaced(src string, n int, first time.Time) []store.Delivery {
	ds := make([]store.Delivery, n)
	for j := range ds {
		ds[j] = testDelivery(fmt.Sprintf("%s-%d", src, j), "hook", src)
		ds[j].Due = first.Add(time.Duration(j) * time.Millisecond)
	}
	return ds
}

// TestClaimCostIgnoresIdleSources checks that a Claim sends the same few
// commands whether 10 or 400 other sources feed the sink.
func TestClaimCostIgnoresIdleSources(t *testing.T) {
	url := localURL(t)
	s := openStore(t, url, Options{RepairInterval: time.Hour})
	ctx := t.Context()
	hook := &countHook{}
	s.rdb.AddHook(hook)
	if _, err := s.Claim(ctx, "hook", time.Now(), 1, time.Minute); err != nil { // the first repair
		t.Fatal(err)
	}
	s.repairs.Wait() // it runs in the background
	gen := map[string]uint64{}
	commit := func(src string, ds ...store.Delivery) {
		t.Helper()
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: gen[src], Deliveries: ds}); err != nil {
			t.Fatalf("Commit(%s): %v", src, err)
		}
		gen[src]++
	}
	later := time.Now().Add(time.Hour)
	var costs []int64
	for round, idle := range []int{10, 400} {
		for i := len(gen); i < idle; i++ {
			// Idle sources: a delivery due in an hour, one acked, one to another sink.
			src := fmt.Sprintf("idle-%03d", i)
			d := testDelivery(src+"-later", "hook", src)
			d.Due = later
			commit(src, d, testDelivery(src+"-other", "other", src))
		}
		busy := fmt.Sprintf("busy-%d", round)
		commit(busy, testDelivery(busy+"-a", "hook", busy), testDelivery(busy+"-b", "hook", busy))
		before := hook.n.Load()
		ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		costs = append(costs, hook.n.Load()-before)
		if got := ids(ds); !slices.Equal(got, []string{busy + "-a", busy + "-b"}) {
			t.Fatalf("Claim with %d idle sources = %q, want the busy source's two", idle, got)
		}
	}
	if costs[0] != costs[1] || costs[1] > 4 {
		t.Errorf("Claim sent %d commands with 10 idle sources and %d with 400; want the same few", costs[0], costs[1])
	}
}

// TestClaimAcrossSources checks that one Claim collects due deliveries of
// several sources, earliest due first, and honours the limit.
func TestClaimAcrossSources(t *testing.T) {
	s := openStore(t, localURL(t), Options{})
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond).Add(-time.Minute)
	for i, src := range []string{"s1", "s2", "s3"} {
		var ds []store.Delivery
		for j := range 2 {
			d := testDelivery(fmt.Sprintf("%s-%d", src, j), "hook", src)
			d.Due = t0.Add(time.Duration(3*j+i) * time.Second) // s1-0 s2-0 s3-0 s1-1 s2-1 s3-1
			ds = append(ds, d)
		}
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: 0, Deliveries: ds}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.Claim(ctx, "hook", time.Now(), 4, time.Minute)
	if err != nil || len(ds) != 4 {
		t.Fatalf("Claim(4) = %q, %v; want 4", ids(ds), err)
	}
	for i := 1; i < len(ds); i++ {
		if ds[i].Due.Before(ds[i-1].Due) {
			t.Errorf("Claim order %q is not by due time", ids(ds))
		}
	}
	rest, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
	if err != nil || len(rest) != 2 {
		t.Fatalf("second Claim = %q, %v; want the other 2", ids(rest), err)
	}
	seen := map[string]bool{}
	for _, d := range append(ds, rest...) {
		if seen[d.ID] {
			t.Errorf("%s claimed twice", d.ID)
		}
		seen[d.ID] = true
	}
	// After the lease, the ready index hands them out again.
	again, err := s.Claim(ctx, "hook", time.Now().Add(2*time.Minute), 10, time.Minute)
	if err != nil || len(again) != 6 {
		t.Errorf("Claim after the lease = %q, %v; want all 6", ids(again), err)
	}
}

// A Claim over many due sources takes a few round trips, not one per
// source, and still fills the batch source by source in the order of their
// earliest due delivery.
func TestClaimManySourcesInFewRoundTrips(t *testing.T) {
	s := openRepaired(t)
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond).Add(-time.Hour)
	commit := func(src string, n int, first time.Duration) {
		t.Helper()
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: 0, Deliveries: spaced(src, n, t0.Add(first))}); err != nil {
			t.Fatal(err)
		}
	}
	commit("big", 30, 0)
	for i := range 40 {
		commit(fmt.Sprintf("one%02d", i), 1, time.Duration(i+1)*time.Second)
	}
	hook := &countHook{}
	s.rdb.AddHook(hook)
	ds, err := s.Claim(ctx, "hook", time.Now(), 64, time.Minute)
	if err != nil || len(ds) != 64 {
		t.Fatalf("Claim(64) = %d deliveries, %v; want 64", len(ds), err)
	}
	if n := hook.trips.Load(); n > 5 {
		t.Errorf("Claim over 41 sources took %d round trips, want at most 5", n)
	}
	got := map[string]bool{}
	for _, d := range ds {
		if got[d.ID] {
			t.Errorf("%s claimed twice", d.ID)
		}
		got[d.ID] = true
	}
	for j := range 30 {
		if !got[fmt.Sprintf("big-%d", j)] {
			t.Errorf("big-%d not claimed: the earliest source fills the batch first", j)
		}
	}
	for i := range 40 {
		if want := i < 34; got[fmt.Sprintf("one%02d-0", i)] != want {
			t.Errorf("one%02d-0 claimed %v, want %v (the 34 earliest of the single ones)", i, !want, want)
		}
	}
}

// A backlog in the source due first fills a Claim on its own: no other
// source is counted or asked, however many are due, and the batch is that
// source's oldest deliveries.
func TestClaimBacklogOfOneSource(t *testing.T) {
	s := openRepaired(t)
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond).Add(-time.Hour)
	if err := s.Commit(ctx, store.Commit{Source: "big", Generation: 0, Deliveries: spaced("big", 100, t0)}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		d := testDelivery(fmt.Sprintf("other%02d", i), "hook", fmt.Sprintf("other%02d", i))
		d.Due = t0.Add(time.Second + time.Duration(i)*time.Millisecond)
		if err := s.Commit(ctx, store.Commit{Source: d.Source, Generation: 0, Deliveries: []store.Delivery{d}}); err != nil {
			t.Fatal(err)
		}
	}
	hook := &countHook{}
	s.rdb.AddHook(hook)
	got, err := s.Claim(ctx, "hook", time.Now(), 64, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for j := range 64 {
		want = append(want, fmt.Sprintf("big-%d", j))
	}
	if !slices.Equal(ids(got), want) {
		t.Errorf("Claim(64) = %q, want big's 64 oldest", ids(got))
	}
	// The ready index and big's claim; the index update waits for the
	// next round trip (TestClaimIndexUpdateLags).
	if n := hook.n.Load(); n != 2 {
		t.Errorf("Claim filled by one source sent %d commands, want 2", n)
	}
}

// A Claim's ready index update goes with the next round trip that touches
// the index, or at Close: until then the index shows the source's earlier
// due time (a probe for nothing at most), never a later one.
func TestClaimIndexUpdateLags(t *testing.T) {
	other := openRepaired(t) // reads the index at the end, and cleans up
	ctx := t.Context()
	s, err := Open(ctx, Options{URL: localURL(t), Prefix: other.prefix, RepairInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now().Truncate(time.Millisecond).Add(-time.Hour)
	for _, src := range []string{"a", "b"} {
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: 0, Deliveries: spaced(src, 10, t0)}); err != nil {
			t.Fatal(err)
		}
	}
	indexed := func(src string) float64 {
		t.Helper()
		v, err := s.rdb.ZScore(ctx, s.readyKey("hook"), src).Result()
		if err != nil {
			t.Fatalf("ready index entry of %s: %v", src, err)
		}
		return v
	}
	ms := func(at time.Time) float64 { return float64(at.UnixMilli()) }
	if got, err := s.Claim(ctx, "hook", time.Now(), 4, time.Minute); err != nil || len(got) != 4 {
		t.Fatalf("Claim(4) = %q, %v", ids(got), err)
	}
	if v := indexed("a"); v != ms(t0) {
		t.Errorf("right after the claim, a is indexed at %v, want its earlier due %v", v, ms(t0))
	}
	// The next Claim writes it with its first round trip, and sees it.
	hook := &countHook{}
	s.rdb.AddHook(hook)
	got, err := s.Claim(ctx, "hook", time.Now(), 20, time.Minute)
	if err != nil || len(got) != 16 {
		t.Fatalf("second Claim = %q, %v; want the 16 left", ids(got), err)
	}
	if v, want := indexed("a"), ms(t0.Add(4*time.Millisecond)); v != want {
		t.Errorf("after the second claim a is indexed at %v, want %v (what the first claim left due)", v, want)
	}
	// The index with the update, a's claim (short), the count of b's, b's.
	if n := hook.trips.Load(); n != 4 {
		t.Errorf("the second Claim took %d round trips, want 4", n)
	}
	// Close writes what the last claim left: nothing is due before the
	// leases end.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"a", "b"} {
		v, err := other.rdb.ZScore(ctx, other.readyKey("hook"), src).Result()
		if err != nil || v <= ms(time.Now()) {
			t.Errorf("after Close, %s is indexed at %v (%v), want its leases' end", src, v, err)
		}
	}
}

// TestKeysOfOneNameShareASlot checks the hash tags on a real cluster, for
// names with braces and percent signs, and runs an outbox round with them.
func TestKeysOfOneNameShareASlot(t *testing.T) {
	url := clusterURL(t)
	s := openStore(t, url, Options{})
	ctx := t.Context()
	names := []string{"orders", "a}b", "{x}", "}lead", "{", "}", "%7B", "%", "with space"}
	escaped := map[string]string{}
	for _, name := range names {
		if e, dup := escaped[esc(name)]; dup {
			t.Errorf("esc(%q) = esc(%q) = %q", name, e, esc(name))
		}
		escaped[esc(name)] = name
		keys := []string{s.headKey(name), s.itemsKey(name), s.metaKey(name), s.outKey(name),
			s.dueKey(name, "a{b}"), s.deadKey(name, "}"), s.fifoKey(name, "a{b}"), s.liveKey(name, "%")}
		sinkKeys := []string{s.readyKey(name), s.readyVerKey(name)}
		for _, group := range [][]string{keys, sinkKeys} {
			var slots []int64
			for _, k := range group {
				slot, err := s.rdb.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				slots = append(slots, slot)
			}
			if len(slices.Compact(slices.Clone(slots))) != 1 {
				t.Errorf("keys %q hash to slots %v, want one", group, slots)
			}
		}
		d := testDelivery("d-"+name, name, name)
		if err := s.Commit(ctx, store.Commit{Source: name, Generation: 0, Meta: map[string]string{"n": name},
			Upsert: map[string]store.Item{"k": {Fingerprint: "f", Data: json.RawMessage(`{}`)}}, Deliveries: []store.Delivery{d}}); err != nil {
			t.Fatalf("Commit(%q): %v", name, err)
		}
		ds, err := s.Claim(ctx, name, time.Now(), 10, time.Minute)
		if err != nil || len(ds) != 1 || ds[0].ID != d.ID {
			t.Fatalf("Claim(%q) = %q, %v", name, ids(ds), err)
		}
		if err := storetest.Bury(ctx, s, ds[0]); err != nil {
			t.Fatalf("Bury(%q): %v", name, err)
		}
	}
	for _, name := range names {
		st, err := s.Load(ctx, name)
		if err != nil || st.Generation != 1 || st.Meta["n"] != name || len(st.Items) != 1 {
			t.Errorf("Load(%q) = %+v, %v", name, st, err)
		}
	}
	if n, err := s.Replay(ctx, "", nil); err != nil || n != len(names) {
		t.Errorf("Replay all = %d, %v; want %d", n, err, len(names))
	}
}

// TestScriptCacheFlushed checks that every path recovers when Redis has
// forgotten the scripts (a restart, a failover, SCRIPT FLUSH).
func TestScriptCacheFlushed(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t testing.TB) string
	}{
		// A private server and the package's own cluster: SCRIPT FLUSH on
		// the shared Redis would disturb the tests of other packages that
		// run at the same time.
		{"single", func(t testing.TB) string { return redistest.StartServer(t).URL() }},
		{"cluster", clusterURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, tc.url(t), Options{})
			ctx := t.Context()
			flush := func() {
				t.Helper()
				if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
					t.Fatalf("SCRIPT FLUSH: %v", err)
				}
			}
			flush()
			if err := s.Commit(ctx, store.Commit{Source: "src", Generation: 0,
				Deliveries: []store.Delivery{testDelivery("d1", "hook", "src"), testDelivery("d2", "hook", "src")}}); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			flush()
			ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
			if err != nil || len(ds) != 2 {
				t.Fatalf("Claim = %q, %v", ids(ds), err)
			}
			flush()
			// Without its Source, Settle looks the delivery up and runs its
			// script alone (the batch's pipeline is flushed below).
			lost := ds[0]
			lost.Source = ""
			if err := storetest.Bury(ctx, s, lost); err != nil {
				t.Fatalf("Bury: %v", err)
			}
			flush()
			if st, err := s.Stats(ctx, time.Now()); err != nil || st["hook"] != (store.SinkStats{Pending: 1, Dead: 1}) {
				t.Errorf("Stats = %v, %v", st, err)
			}
			flush()
			if live, err := s.Live(ctx, "", 0); err != nil || len(live) != 1 || live[0].ID != ds[1].ID {
				t.Errorf("Live = %q, %v; want %s", ids(live), err, ds[1].ID)
			}
			flush()
			if dead, err := s.Dead(ctx, ""); err != nil || len(dead) != 1 {
				t.Errorf("Dead = %q, %v", ids(dead), err)
			}
			flush()
			if err := s.repair(ctx); err != nil {
				t.Errorf("repair: %v", err)
			}
			flush()
			if n, err := s.Replay(ctx, "hook", nil); err != nil || n != 1 {
				t.Errorf("Replay = %d, %v", n, err)
			}
			flush()
			if st, held, err := storetest.StartPoll(ctx, s, "src", "t1", "me", time.Second); err != nil || !held || st.Generation != 1 {
				t.Errorf("StartPoll = %+v, %v, %v", st, held, err)
			}
			flush()
			// two ticks in one call: one pipeline
			for i, r := range s.StartPolls(ctx, "me", time.Second, []store.PollTick{{Source: "src", Tick: "t2"}, {Source: "other", Tick: "t2"}}) {
				if r.Err != nil || !r.Held {
					t.Errorf("batched StartPoll %d = %+v", i, r)
				}
			}
			flush()
			for i, err := range s.Settle(ctx, []store.Outcome{{Op: store.OpAck, Delivery: ds[0]}, {Op: store.OpAck, Delivery: ds[1]}}) {
				if err != nil {
					t.Errorf("Settle outcome %d: %v", i, err)
				}
			}
		})
	}
}
