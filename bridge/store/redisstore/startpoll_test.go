package redisstore

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

// slowHook delays every round trip while on, as a distant Redis would.
type slowHook struct {
	d  time.Duration
	on atomic.Bool
}

func (h *slowHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *slowHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.on.Load() {
			time.Sleep(h.d)
		}
		return next(ctx, cmd)
	}
}
func (h *slowHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.on.Load() {
			time.Sleep(h.d)
		}
		return next(ctx, cmds)
	}
}

// However steadily StartPoll calls keep coming, none waits for more than a
// couple of round trips: the caller that sends a batch does not go on
// sending the ones that queued behind it, and calls made together still
// share round trips.
func TestStartPollCallsDoNotWaitForOthers(t *testing.T) {
	s := openStore(t, localURL(t), Options{})
	const trip = 20 * time.Millisecond
	if err := s.sc.load(t.Context(), s.rdb); err != nil { // no NOSCRIPT round trips below
		t.Fatal(err)
	}
	slow := &slowHook{d: trip}
	slow.on.Store(true)
	defer slow.on.Store(false) // for the cleanup
	s.rdb.AddHook(slow)
	hook := &countHook{}
	s.rdb.AddHook(hook)
	ctx := t.Context()
	stop := time.Now().Add(time.Second)
	var (
		wg      sync.WaitGroup
		calls   atomic.Int64
		mu      sync.Mutex
		longest time.Duration
	)
	for w := range 32 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				// Calls come at random, many of them while a batch is
				// in flight.
				time.Sleep(rand.N(5 * trip))
				start := time.Now()
				if _, held, err := storetest.StartPoll(ctx, s, fmt.Sprint("src", w), fmt.Sprint(i), "me", time.Minute); err != nil || !held {
					t.Errorf("StartPoll = held %v, %v", held, err)
					return
				}
				calls.Add(1)
				mu.Lock()
				longest = max(longest, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d calls, %d round trips, longest %v", calls.Load(), hook.trips.Load(), longest)
	// Two round trips, and then some for a busy machine; a caller that
	// sent every batch queued behind its own would take the whole second.
	if longest > 15*trip {
		t.Errorf("a StartPoll call took %v, want a few round trips of %v at most", longest, trip)
	}
	if n, trips := calls.Load(), hook.trips.Load(); trips*2 > n {
		t.Errorf("%d calls took %d round trips, want them grouped", n, trips)
	}
}

// parseStarts reads what startPollsLua writes, and refuses a reply that
// does not fit the ticks asked for instead of reading past it.
func TestParseStarts(t *testing.T) {
	type want struct {
		held bool
		gen  uint64
		meta map[string]string
		err  string
	}
	for _, tc := range []struct {
		name  string
		reply string
		ticks int    // asked for
		want  []want // nil: an error
	}{
		{"not held", "0", 1, []want{{}}},
		{"held, never committed", "10:0:", 1, []want{{held: true, meta: map[string]string{}}}},
		{"held with meta", "12:1:74:etag3:1:25:k:v:w0:", 1,
			[]want{{held: true, gen: 7, meta: map[string]string{"etag": "1:2", "k:v:w": ""}}}},
		{"three ticks", "011:3:1234:etag0:0", 3, []want{{}, {held: true, gen: 123, meta: map[string]string{"etag": ""}}, {}}},
		{"a tick's error", "0E9:WRONGTYPE0", 3, []want{{}, {err: "WRONGTYPE"}, {}}},
		{"error past the end", "E9:WRONG", 1, nil},
		{"empty", "", 1, nil},
		{"fewer ticks than asked", "0", 2, nil},
		{"more than asked", "00", 1, nil},
		{"unknown flag", "2", 1, nil},
		{"no count", "1:0:", 1, nil},
		{"field past the end", "11:0:4:etag9:short", 1, nil},
		{"missing value", "11:0:4:etag", 1, nil},
		{"bad generation", "10:2:x1", 1, nil},
		{"huge count", "1999999999999:0:", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := make([]*pollStart, tc.ticks)
			for i := range reqs {
				reqs[i] = &pollStart{}
			}
			err := parseStarts(tc.reply, reqs)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("parseStarts(%q) succeeded, want an error", tc.reply)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseStarts(%q): %v", tc.reply, err)
			}
			for i, w := range tc.want {
				r := reqs[i]
				gotErr := ""
				if r.err != nil {
					gotErr = r.err.Error()
				}
				if r.held != w.held || r.st.Generation != w.gen || gotErr != w.err ||
					(w.held && (!maps.Equal(r.st.Meta, w.meta) || r.st.Items == nil)) {
					t.Errorf("tick %d = held %v, state %+v, err %q; want %+v", i, r.held, r.st, gotErr, w)
				}
			}
		})
	}
}

// A source whose keys were overwritten with the wrong type fails its own
// tick; the other ticks of the same script are answered as usual.
func TestStartPollsIsolateABrokenSource(t *testing.T) {
	onSingleAndCluster(t, func(t *testing.T, url string) {
		s := openStore(t, url, Options{})
		ctx := t.Context()
		for _, src := range []string{"a", "b", "c"} {
			if err := s.Commit(ctx, store.Commit{Source: src, Meta: map[string]string{"etag": src}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.rdb.Set(ctx, s.metaKey("b"), "not a hash", 0).Err(); err != nil {
			t.Fatal(err)
		}
		got := s.StartPolls(ctx, "me", time.Minute, []store.PollTick{{Source: "a", Tick: "1"}, {Source: "b", Tick: "1"}, {Source: "c", Tick: "1"}})
		if got[1].Err == nil || !strings.Contains(got[1].Err.Error(), "WRONGTYPE") || got[1].Held {
			t.Errorf("broken source: %+v; want a WRONGTYPE error", got[1])
		}
		for _, i := range []int{0, 2} {
			if r := got[i]; r.Err != nil || !r.Held || r.State.Meta["etag"] != []string{"a", "b", "c"}[i] {
				t.Errorf("tick %d beside the broken source: %+v", i, r)
			}
		}
	})
}
