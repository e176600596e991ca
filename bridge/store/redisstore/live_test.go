package redisstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

// liveZSet reads the live ZSET of (src, sink) as member → score, without
// Live (which would rebuild it).
func liveZSet(t *testing.T, s *Store, src, sink string) map[string]float64 {
	t.Helper()
	zs, err := s.rdb.ZRangeWithScores(t.Context(), s.liveKey(src, sink), 0, -1).Result()
	if err != nil {
		t.Fatalf("ZRANGE live: %v", err)
	}
	out := map[string]float64{}
	for _, z := range zs {
		out[z.Member.(string)] = z.Score
	}
	return out
}

// wantLiveInStep checks that the live ZSET of (src, sink) holds exactly
// the live records of the source's outbox for sink, each at its Due in
// milliseconds.
func wantLiveInStep(t *testing.T, s *Store, src, sink, when string) {
	t.Helper()
	recs, err := s.rdb.HGetAll(t.Context(), s.outKey(src)).Result()
	if err != nil {
		t.Fatalf("HGETALL out: %v", err)
	}
	want := map[string]float64{}
	for _, raw := range recs {
		r, err := decodeRecord(raw)
		if err != nil {
			t.Fatal(err)
		}
		if r.d.Dead.IsZero() && r.d.Sink == sink {
			want[fmt.Sprintf("%020d%s", r.seq, r.d.ID)] = float64(ceilMs(r.d.Due))
		}
	}
	if got := liveZSet(t, s, src, sink); !maps.Equal(got, want) {
		t.Errorf("%s: live ZSET of (%s, %s) = %v, want %v", when, src, sink, got, want)
	}
}

// TestLiveIndexKeptInStep checks that every script keeps the live ZSET in
// step by itself (Live would hide a lapse by rebuilding it).
func TestLiveIndexKeptInStep(t *testing.T) {
	onSingleAndCluster(t, func(t *testing.T, url string) {
		s := openStore(t, url, Options{})
		ctx := t.Context()
		step := func(when string) {
			t.Helper()
			wantLiveInStep(t, s, "src", "hook", when)
			wantLiveInStep(t, s, "src", "other", when)
		}
		of := func(id, key string) store.Delivery {
			d := testDelivery(id, "hook", "src")
			d.Key = key
			return d
		}
		later := of("c1", "C")
		later.Due = time.Now().Add(time.Hour)
		err := s.Commit(ctx, store.Commit{Source: "src", Generation: 0, Deliveries: []store.Delivery{
			of("a1", "A"), of("a2", "A"), of("b1", "B"), later, testDelivery("o1", "other", "src")}})
		if err != nil {
			t.Fatal(err)
		}
		step("after Commit")
		ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
		if err != nil || len(ds) != 2 {
			t.Fatalf("Claim = %q, %v; want a1 and b1", ids(ds), err)
		}
		step("after Claim")
		ds[1].Attempts, ds[1].LastError = 1, "503"
		if err := storetest.Retry(ctx, s, ds[1], time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		step("after Retry")
		time.Sleep(2 * time.Millisecond) // a2 is promoted to a later millisecond
		if err := storetest.Ack(ctx, s, ds[0]); err != nil {
			t.Fatal(err)
		}
		step("after Ack promoted a2")
		if err := storetest.Bury(ctx, s, ds[1]); err != nil {
			t.Fatal(err)
		}
		step("after Bury")
		if n, err := s.Replay(ctx, "hook", nil); err != nil || n != 1 {
			t.Fatalf("Replay = %d, %v", n, err)
		}
		step("after Replay")
		if got := liveZSet(t, s, "src", "hook"); len(got) != 3 {
			t.Errorf("live ZSET holds %d members, want a2, b1 and c1", len(got))
		}
	})
}

// TestLiveRebuildsDataOfOlderVersions: a pollbridge without live ZSETs left
// none behind, and one running beside newer replicas during a rolling
// upgrade neither adds to them nor removes from them. Live notices that a
// live ZSET disagrees with the outbox counts and rebuilds it first.
func TestLiveRebuildsDataOfOlderVersions(t *testing.T) {
	s := openStore(t, localURL(t), Options{})
	ctx := t.Context()
	of := func(id, key string) store.Delivery {
		d := testDelivery(id, "hook", "src")
		d.Key = key
		return d
	}
	if err := s.Commit(ctx, store.Commit{Source: "src", Generation: 0,
		Deliveries: []store.Delivery{of("a1", "A"), of("a2", "A"), of("b1", "B")}}); err != nil {
		t.Fatal(err)
	}
	ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Claim = %q, %v", ids(ds), err)
	}
	ds[1].Attempts, ds[1].LastError = 3, "timeout"
	retryAt := time.Now().Truncate(time.Millisecond).Add(time.Hour)
	if err := storetest.Retry(ctx, s, ds[1], retryAt); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		got, err := s.Live(ctx, "hook", 0)
		if err != nil {
			t.Fatalf("%s: Live: %v", when, err)
		}
		if want := []string{"a1", "a2", "b1"}; !slices.Equal(ids(got), want) {
			t.Fatalf("%s: Live = %q, want %q", when, ids(got), want)
		}
		if b1 := got[2]; b1.Attempts != 3 || b1.LastError != "timeout" || !b1.Due.Equal(retryAt) {
			t.Errorf("%s: b1 = %+v, want 3 attempts, its last error, due %v", when, b1, retryAt)
		}
		wantLiveInStep(t, s, "src", "hook", when+", after Live")
	}

	if err := s.rdb.Del(ctx, s.liveKey("src", "hook")).Err(); err != nil {
		t.Fatal(err)
	}
	check("no live ZSET")

	// An older replica acked a delivery: its member stays behind.
	if err := s.rdb.ZAdd(ctx, s.liveKey("src", "hook"), redis.Z{Score: 1, Member: fmt.Sprintf("%020dghost", 99)}).Err(); err != nil {
		t.Fatal(err)
	}
	check("a stale member")

	// An older replica committed a delivery: it has no member.
	live := liveZSet(t, s, "src", "hook")
	for m := range live {
		if m[20:] == "a2" {
			if err := s.rdb.ZRem(ctx, s.liveKey("src", "hook"), m).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	check("a missing member")
}

// entryHook counts what Live reads: entries of live ZSET pages and the
// records of HMGET answers.
type entryHook struct{ entries, records atomic.Int64 }

func (h *entryHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *entryHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *entryHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			switch c := c.(type) {
			case *redis.Cmd:
				if v, ok := c.Val().([]any); ok {
					h.entries.Add(int64(len(v) / 2))
				}
			case *redis.SliceCmd:
				h.records.Add(int64(len(c.Val())))
			}
		}
		return err
	}
}

// TestLiveCostFollowsTheAnswer: listing 10 deliveries of a sink with 2,000
// in one source and one in each of 40 others reads a few dozen index
// entries and 10 records, not the outbox.
func TestLiveCostFollowsTheAnswer(t *testing.T) {
	s := openStore(t, localURL(t), Options{})
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond)
	var big []store.Delivery
	for i := range 2000 {
		d := testDelivery(fmt.Sprintf("big-%04d", i), "hook", "big")
		d.Due = t0.Add(time.Duration(i) * time.Millisecond)
		big = append(big, d)
	}
	if err := s.Commit(ctx, store.Commit{Source: "big", Generation: 0, Deliveries: big}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		src := fmt.Sprintf("small-%02d", i)
		d := testDelivery("only-"+src, "hook", src)
		d.Due = t0.Add(time.Hour)
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: 0, Deliveries: []store.Delivery{d}}); err != nil {
			t.Fatal(err)
		}
	}
	hook := &entryHook{}
	s.rdb.AddHook(hook)
	got, err := s.Live(ctx, "hook", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := ids(big[:10])
	if !slices.Equal(ids(got), want) {
		t.Fatalf("Live(hook, 10) = %q, want %q", ids(got), want)
	}
	if e, r := hook.entries.Load(), hook.records.Load(); e > 80 || r != 10 {
		t.Errorf("Live(hook, 10) read %d index entries and %d records, want at most 80 and exactly 10", e, r)
	}
	hook.entries.Store(0)
	hook.records.Store(0)
	if got, err := s.Live(ctx, "hook", 0); err != nil || len(got) != 1000 || got[999].ID != "big-0999" {
		t.Fatalf("Live(hook, 0) = %d deliveries, %v; want the first 1000 of big", len(got), err)
	}
	if e, r := hook.entries.Load(), hook.records.Load(); e > 2100 || r != 1000 {
		t.Errorf("Live(hook, 0) read %d index entries and %d records, want at most 2100 and exactly 1000", e, r)
	}
}
