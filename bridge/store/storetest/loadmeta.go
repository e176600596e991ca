package storetest

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// testLoadMeta: LoadMeta returns the generation and meta of Load, and no
// items; for an unknown source, the empty state.
func testLoadMeta(t *testing.T, s store.Store) {
	ctx := context.Background()
	st, err := s.LoadMeta(ctx, "nobody")
	if err != nil || st.Generation != 0 || st.Items == nil || st.Meta == nil || len(st.Meta) != 0 {
		t.Fatalf("LoadMeta(unknown) = %+v, %v; want generation 0 and empty non-nil maps", st, err)
	}
	err = s.Commit(ctx, store.Commit{Source: "src", Generation: 0,
		Upsert: map[string]store.Item{"a": item("fa", `{"id":"a"}`)},
		Meta:   map[string]string{"etag": `"v1"`}})
	if err != nil {
		t.Fatal(err)
	}
	full, err := s.Load(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := s.LoadMeta(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Generation != full.Generation || meta.Generation != 1 {
		t.Errorf("generation: LoadMeta %d, Load %d, want 1", meta.Generation, full.Generation)
	}
	if meta.Meta["etag"] != `"v1"` || len(meta.Meta) != len(full.Meta) {
		t.Errorf("meta: LoadMeta %v, Load %v", meta.Meta, full.Meta)
	}
	if meta.Items == nil || len(meta.Items) != 0 || len(full.Items) != 1 {
		t.Errorf("items: LoadMeta %d (non-nil %v), Load %d; want 0 and 1", len(meta.Items), meta.Items != nil, len(full.Items))
	}
}

// StartPoll begins one tick's poll: StartPolls of that tick alone.
func StartPoll(ctx context.Context, s store.Store, source, tick, owner string, ttl time.Duration) (store.State, bool, error) {
	r := s.StartPolls(ctx, owner, ttl, []store.PollTick{{Source: source, Tick: tick}})
	if len(r) != 1 {
		return store.State{}, false, fmt.Errorf("StartPolls of one tick gave %d answers", len(r))
	}
	return r[0].State, r[0].Held, r[0].Err
}

// testStartPoll: StartPolls is a tick's lease plus LoadMeta; only the lease
// holder gets the meta, and ticks and sources have independent leases.
func testStartPoll(t *testing.T, s store.Store) {
	ctx := context.Background()
	err := s.Commit(ctx, store.Commit{Source: "src", Generation: 0,
		Upsert: map[string]store.Item{"a": item("fa", `{"id":"a"}`)},
		Meta:   map[string]string{"etag": `"v1"`, "body_sha256": "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	start := func(source, tick, owner string) (store.State, bool) {
		t.Helper()
		st, held, err := StartPoll(ctx, s, source, tick, owner, time.Minute)
		if err != nil {
			t.Fatalf("StartPoll(%s, %s, %s): %v", source, tick, owner, err)
		}
		return st, held
	}
	st, held := start("src", "1000", "a")
	if !held || st.Generation != 1 || st.Meta["etag"] != `"v1"` || st.Meta["body_sha256"] != "abc" || len(st.Meta) != 2 {
		t.Fatalf("StartPoll by the first owner = %+v, held %v; want held, generation 1 and the meta", st, held)
	}
	if st.Items == nil || len(st.Items) != 0 {
		t.Errorf("StartPoll items = %v; want empty and non-nil", st.Items)
	}
	if st, held := start("src", "1000", "b"); held || st.Generation != 0 || len(st.Meta) != 0 {
		t.Errorf("StartPoll of a held tick by another owner = %+v, held %v; want not held and no state", st, held)
	}
	if _, held := start("src", "1000", "a"); !held {
		t.Error("StartPoll by the holder again = not held")
	}
	if _, held := start("src", "2000", "b"); !held {
		t.Error("StartPoll of the next tick = not held: ticks must have their own leases")
	}
	if _, held := start("other", "1000", "b"); !held {
		t.Error("StartPoll of another source's tick = not held: sources must have their own leases")
	}
	st, held = start("nobody", "1000", "a")
	if !held || st.Generation != 0 || st.Items == nil || st.Meta == nil || len(st.Meta) != 0 {
		t.Errorf("StartPoll(unknown source) = %+v, held %v; want held, generation 0 and empty non-nil maps", st, held)
	}
	if _, _, err := StartPoll(ctx, s, "src", "3000", "a", 0); err == nil {
		t.Error("StartPoll with ttl 0 succeeded, want an error")
	}
}

// testStartPolls: one StartPolls call of several ticks answers each in
// order, as separate calls would: held ones with their source's meta, one
// held by another owner not, and a malformed one with its own error.
func testStartPolls(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, src := range []string{"a", "b", "c"} {
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: 0, Meta: map[string]string{"etag": src}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, held, err := StartPoll(ctx, s, "b", "1000", "other", time.Minute); err != nil || !held {
		t.Fatalf("StartPoll(b) by other = held %v, %v", held, err)
	}
	ticks := []store.PollTick{{Source: "a", Tick: "1000"}, {Source: "b", Tick: "1000"}, {Source: "", Tick: "1000"},
		{Source: "c", Tick: "1000"}, {Source: "nobody", Tick: "1000"}}
	got := s.StartPolls(ctx, "me", time.Minute, ticks)
	if len(got) != len(ticks) {
		t.Fatalf("StartPolls of %d ticks = %d answers", len(ticks), len(got))
	}
	for i, want := range []struct {
		held bool
		etag string
		err  bool
	}{{true, "a", false}, {false, "", false}, {false, "", true}, {true, "c", false}, {true, "", false}} {
		r := got[i]
		if r.Held != want.held || r.State.Meta["etag"] != want.etag || (r.Err != nil) != want.err {
			t.Errorf("StartPolls answer %d (%+v) = held %v, meta %v, err %v; want held %v, etag %q, error %v",
				i, ticks[i], r.Held, r.State.Meta, r.Err, want.held, want.etag, want.err)
		}
		if r.Held && (r.State.Items == nil || r.State.Meta == nil) {
			t.Errorf("StartPolls answer %d: held with nil maps", i)
		}
	}
	if got := s.StartPolls(ctx, "me", time.Minute, nil); len(got) != 0 {
		t.Errorf("StartPolls of no ticks = %v", got)
	}
}

// testStartPollsManySources: one StartPolls call of more ticks than a
// backend may put in one request answers every one in order, with its own
// source's generation and meta, whatever bytes the meta holds; every
// seventh tick is held by another owner.
func testStartPollsManySources(t *testing.T, s store.Store) {
	ctx := context.Background()
	const sources = 300
	meta := func(i int) map[string]string {
		return map[string]string{
			"etag":  fmt.Sprintf(`W/"%d:1:%d"`, i, i), // digits and ':' as in a length prefix
			"empty": "",
			"bytes": string([]byte{0, byte(i), ':', '\n', 0xff}),
			"long":  strings.Repeat(fmt.Sprint(i), 100),
		}
	}
	ticks := make([]store.PollTick, sources)
	for i := range sources {
		src := fmt.Sprint("many", i)
		if err := s.Commit(ctx, store.Commit{Source: src, Generation: 0, Meta: meta(i)}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 { // generation 2
			if err := s.Commit(ctx, store.Commit{Source: src, Generation: 1, Meta: meta(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if i%7 == 3 {
			if _, held, err := StartPoll(ctx, s, src, "5000", "other", time.Minute); err != nil || !held {
				t.Fatalf("StartPoll(%s) by other = held %v, %v", src, held, err)
			}
		}
		ticks[i] = store.PollTick{Source: src, Tick: "5000"}
	}
	got := s.StartPolls(ctx, "me", time.Minute, ticks)
	if len(got) != sources {
		t.Fatalf("StartPolls of %d ticks = %d answers", sources, len(got))
	}
	for i, r := range got {
		if r.Err != nil || r.Held != (i%7 != 3) {
			t.Errorf("answer %d: held %v, err %v; want held %v", i, r.Held, r.Err, i%7 != 3)
			continue
		}
		if !r.Held {
			continue
		}
		if want := uint64(1 + i%2); r.State.Generation != want || !maps.Equal(r.State.Meta, meta(i)) || r.State.Items == nil {
			t.Errorf("answer %d: generation %d, meta %q, items %v; want generation %d, meta %q, empty items",
				i, r.State.Generation, r.State.Meta, r.State.Items, want, meta(i))
		}
	}
}

// testStartPollsCancelled: a StartPolls call whose context has ended takes
// no lease: every tick answers an error, none is held, and the ticks are
// free for a caller whose context is live.
func testStartPollsCancelled(t *testing.T, s store.Store) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	ticks := []store.PollTick{{Source: "a", Tick: "7000"}, {Source: "b", Tick: "7000"}}
	got := s.StartPolls(ended, "me", time.Minute, ticks)
	if len(got) != len(ticks) {
		t.Fatalf("StartPolls of %d ticks = %d answers", len(ticks), len(got))
	}
	for i, r := range got {
		if r.Err == nil || r.Held {
			t.Errorf("answer %d with an ended context = held %v, err %v; want an error", i, r.Held, r.Err)
		}
	}
	for i, r := range s.StartPolls(context.Background(), "other", time.Minute, ticks) {
		if r.Err != nil || !r.Held {
			t.Errorf("answer %d for another owner afterwards = held %v, err %v; want held", i, r.Held, r.Err)
		}
	}
}

// testStartPollConcurrent: StartPoll calls made at once (a backend may
// group them) each get their own answer: of two owners racing for every
// tick of many sources, exactly one holds each, and it gets that source's
// meta.
func testStartPollConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const sources = 40
	for i := range sources {
		src := fmt.Sprint("src", i)
		err := s.Commit(ctx, store.Commit{Source: src, Generation: 0, Meta: map[string]string{"etag": src}})
		if err != nil {
			t.Fatal(err)
		}
	}
	type answer struct {
		src, owner string
		st         store.State
		held       bool
		err        error
	}
	answers := make(chan answer, 2*sources)
	var wg sync.WaitGroup
	for i := range sources {
		for _, owner := range []string{"a", "b"} {
			src := fmt.Sprint("src", i)
			wg.Go(func() {
				st, held, err := StartPoll(ctx, s, src, "1000", owner, time.Minute)
				answers <- answer{src, owner, st, held, err}
			})
		}
	}
	wg.Wait()
	close(answers)
	holders := map[string][]string{}
	for a := range answers {
		if a.err != nil {
			t.Fatalf("StartPoll(%s, %s): %v", a.src, a.owner, a.err)
		}
		if !a.held {
			continue
		}
		holders[a.src] = append(holders[a.src], a.owner)
		if a.st.Generation != 1 || a.st.Meta["etag"] != a.src {
			t.Errorf("StartPoll(%s) by %s = generation %d, meta %v; want 1 and etag %s", a.src, a.owner, a.st.Generation, a.st.Meta, a.src)
		}
	}
	for i := range sources {
		src := fmt.Sprint("src", i)
		if len(holders[src]) != 1 {
			t.Errorf("tick of %s held by %v, want exactly one owner", src, holders[src])
		}
	}
}

// testLoadMetaFresh: LoadMeta after a Commit returns sees it, even while
// other goroutines keep reading (a backend may cache what it reads), and a
// caller that changes the returned meta changes nothing stored.
func testLoadMetaFresh(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for ctx.Err() == nil {
				if _, err := s.LoadMeta(ctx, "src"); err != nil && ctx.Err() == nil {
					t.Errorf("LoadMeta: %v", err)
					return
				}
			}
		})
	}
	for gen := range uint64(100) {
		tag := fmt.Sprint("v", gen)
		err := s.Commit(ctx, store.Commit{Source: "src", Generation: gen, Meta: map[string]string{"etag": tag}})
		if err != nil {
			t.Fatalf("commit %d: %v", gen, err)
		}
		st, err := s.LoadMeta(ctx, "src")
		if err != nil {
			t.Fatal(err)
		}
		if st.Generation != gen+1 || st.Meta["etag"] != tag {
			t.Fatalf("LoadMeta after commit %d = generation %d, etag %q; want %d, %q", gen, st.Generation, st.Meta["etag"], gen+1, tag)
		}
		st.Meta["etag"] = "changed by the caller"
	}
	cancel()
	readers.Wait()
	st, err := s.LoadMeta(context.Background(), "src")
	if err != nil {
		t.Fatal(err)
	}
	if st.Meta["etag"] != "v99" {
		t.Errorf("etag = %q after a caller changed a returned map, want v99", st.Meta["etag"])
	}
}
