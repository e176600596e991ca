package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/boltstore"
)

func TestSourceScheduleSpreadsSources(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	firsts := map[time.Time]bool{}
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		s, err := sourceSchedule(name, "@every 1m")
		if err != nil {
			t.Fatal(err)
		}
		next := s.Next(now)
		if !next.After(now) || next.Sub(now) > time.Minute {
			t.Errorf("%s: next %v not within one interval of %v", name, next, now)
		}
		if again := s.Next(next); again.Sub(next) != time.Minute {
			t.Errorf("%s: interval %v, want 1m", name, again.Sub(next))
		}
		if other, _ := sourceSchedule(name, "@every 1m"); other.Next(now) != next {
			t.Errorf("%s: offset is not stable", name)
		}
		firsts[next] = true
	}
	if len(firsts) < 4 {
		t.Errorf("8 sources share only %d first tick times: not spread", len(firsts))
	}
}

func TestSourceScheduleCronLine(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 59, 0, 0, time.Local)
	s, err := sourceSchedule("orders", "0 9 * * *")
	if err != nil {
		t.Fatal(err)
	}
	next := s.Next(now)
	nine := time.Date(2026, 11, 27, 9, 0, 0, 0, time.Local)
	if next.Before(nine) || next.Sub(nine) >= maxCronSpread {
		t.Errorf("next = %v, want within a minute after 9:00", next)
	}
	if _, err := sourceSchedule("x", "61 * * * *"); err == nil {
		t.Error("bad cron line accepted")
	}
}

func TestGridScheduleNextIsStrictlyLater(t *testing.T) {
	g := gridSchedule{every: 10 * time.Second, offset: 3 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 13, 0, time.UTC) // exactly on the grid
	if got := g.Next(t0); !got.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("Next(on grid) = %v, want %v", got, t0.Add(10*time.Second))
	}
	if got := g.Next(t0.Add(-time.Nanosecond)); !got.Equal(t0) {
		t.Errorf("Next(just before) = %v, want %v", got, t0)
	}
}

func TestRetryDelay(t *testing.T) {
	r := struct{ initial, max time.Duration }{time.Second, 8 * time.Second}
	cfg := retryCfg(r.initial, r.max)
	tests := []struct {
		failures int
		err      error
		r01      float64
		want     time.Duration
	}{
		{1, nil, 0.5, time.Second},
		{2, nil, 0.5, 2 * time.Second},
		{4, nil, 0.5, 8 * time.Second},
		{10, nil, 0.5, 8 * time.Second},                                // capped
		{1, nil, 0, 800 * time.Millisecond},                            // -20% jitter
		{1, nil, 0.999999, 1200 * time.Millisecond},                    // +20% jitter
		{1, &DeliveryError{RetryAfter: time.Minute}, 0.5, time.Minute}, // Retry-After wins
		{4, &DeliveryError{RetryAfter: time.Second}, 0.5, 8 * time.Second},
	}
	for _, tt := range tests {
		got := retryDelay(cfg, tt.failures, tt.err, tt.r01)
		if got.Round(time.Millisecond) != tt.want.Round(time.Millisecond) {
			t.Errorf("retryDelay(%d, %v, %v) = %v, want %v", tt.failures, tt.err, tt.r01, got, tt.want)
		}
	}
}

func retryCfg(initial, max time.Duration) config.Retry {
	return config.Retry{InitialBackoff: initial, MaxBackoff: max, MaxAge: time.Hour}
}

// Many sources on a short interval fire in a few batches spread over the
// interval: neither all at once nor each at its own moment.
func TestSourceScheduleBatchesShortIntervals(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	batches := map[time.Time]int{}
	for i := range 1000 {
		s, err := sourceSchedule(fmt.Sprintf("source-%d", i), "@every 1s")
		if err != nil {
			t.Fatal(err)
		}
		next := s.Next(now)
		if off := next.Sub(now.Truncate(time.Second)) % time.Second; off%offsetStep != 0 {
			t.Fatalf("source-%d: offset %v is not a multiple of %v", i, off, offsetStep)
		}
		batches[next]++
	}
	if want := int(time.Second / offsetStep); len(batches) > want || len(batches) < want*8/10 {
		t.Errorf("1000 sources fire at %d distinct times a second, want between %d and %d", len(batches), want*8/10, want)
	}
	for at, n := range batches {
		if mean := 1000 / len(batches); n > 2*mean {
			t.Errorf("%d sources fire together at %v: not spread", n, at.Format("15:04:05.000"))
		}
	}
}

// Sources that fire at the same instants share one cron entry: 300 sources
// on "@every 1s" make at most one group per offset step, every source is in
// exactly one group, and a group's sources have the same tick times.
func TestTickGroupsShareSchedules(t *testing.T) {
	var yaml strings.Builder
	yaml.WriteString("sinks: [{name: app, type: stdout}]\nsources:\n")
	srcs := map[string]Source{}
	add := func(name, schedule string) {
		fmt.Fprintf(&yaml, "  - {name: %s, schedule: %q, url: http://127.0.0.1:1/x, key: id}\n", name, schedule)
		srcs[name] = &flakySource{}
	}
	for i := range 300 {
		add(fmt.Sprint("fast", i), "@every 1s")
	}
	add("daily0", "0 9 * * *")
	add("daily1", "0 9 * * *")
	add("minute", "@every 1m")
	eng := newScheduleEngine(t, yaml.String(), srcs)
	eng.mu.Lock()
	groups := eng.tickGroups()
	eng.mu.Unlock()

	now := time.Now()
	seen := map[string]int{}
	fast := 0
	for _, g := range groups {
		first := g.sched.Next(now)
		second := g.sched.Next(first)
		for _, tk := range g.tickers {
			seen[tk.poller.cfg.Name]++
			if a, b := tk.sched.Next(now), tk.sched.Next(first); !a.Equal(first) || !b.Equal(second) {
				t.Errorf("%s ticks at %v, %v; its group at %v, %v", tk.poller.cfg.Name, a, b, first, second)
			}
		}
		if strings.HasPrefix(g.tickers[0].poller.cfg.Name, "fast") {
			fast++
		}
	}
	if len(seen) != len(srcs) {
		t.Errorf("%d sources in groups, want %d", len(seen), len(srcs))
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("%s is in %d groups, want 1", name, n)
		}
	}
	if max := int(time.Second / offsetStep); fast > max || fast < 2 {
		t.Errorf("300 sources on @every 1s make %d groups, want between 2 and %d (one per offset step at most)", fast, max)
	}
}

// panicSource panics in Fetch.
type panicSource struct{}

func (panicSource) Fetch(context.Context, map[string]string) (*Snapshot, error) {
	panic("fetch exploded")
}

// A panic in one source's poll does not stop the other polls of its tick
// group, and reaches the group's goroutine (where cron's Recover logs it)
// instead of killing the process from a worker.
func TestTickGroupPanicStaysInItsPoll(t *testing.T) {
	fine := &flakySource{items: items("1", `{"id":1}`)}
	eng := newScheduleEngine(t, `
sinks: [{name: app, type: stdout}]
sources:
  - {name: boom, schedule: "@every 1m", url: "http://127.0.0.1:1/x", key: id}
  - {name: fine, schedule: "@every 1m", url: "http://127.0.0.1:1/y", key: id}
`, map[string]Source{"boom": panicSource{}, "fine": fine})
	eng.replicas.Store(1) // alone: no lease jitter
	g := oneGroup(t, eng)

	var recovered any
	func() {
		defer func() { recovered = recover() }()
		g.tick(t.Context())
	}()
	if recovered != "fetch exploded" {
		t.Errorf("the group's tick raised %v, want the poll's panic", recovered)
	}
	if n := len(fine.fetchTimes()); n != 1 {
		t.Errorf("the other source of the group was fetched %d times, want 1", n)
	}
}

// newScheduleEngine builds an engine of the configuration yaml on a bbolt
// file that closes with the test, with sources and a discarding sink.
func newScheduleEngine(t *testing.T, yaml string, sources map[string]Source) *Engine {
	return newScheduleEngineWith(t, yaml, sources, nil)
}

// newScheduleEngineWith is newScheduleEngine on the bbolt store as wrap
// wraps it (nil: as is).
func newScheduleEngineWith(t *testing.T, yaml string, sources map[string]Source, wrap func(store.Store) store.Store) *Engine {
	t.Helper()
	cfg, err := config.Parse("schedule.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	bolt, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	var st store.Store = bolt
	if wrap != nil {
		st = wrap(bolt)
	}
	eng, err := New(cfg, st, sources, map[string]Sink{"app": discardSink{}}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// oneGroup puts every source of eng in one tick group, whose workers stop
// with the test.
func oneGroup(t *testing.T, eng *Engine) *tickGroup {
	t.Helper()
	eng.mu.Lock()
	var all []*ticker
	for _, g := range eng.tickGroups() {
		all = append(all, g.tickers...)
	}
	eng.mu.Unlock()
	g := &tickGroup{sched: all[0].sched, tickers: all, workers: newWorkers()}
	t.Cleanup(g.workers.stop)
	return g
}

// startCounter counts the ticks of each StartPolls call of the store it
// wraps.
type startCounter struct {
	store.Store
	mu    sync.Mutex
	calls []int
}

func (s *startCounter) StartPolls(ctx context.Context, owner string, ttl time.Duration, ticks []store.PollTick) []store.PollStart {
	s.mu.Lock()
	s.calls = append(s.calls, len(ticks))
	s.mu.Unlock()
	return s.Store.StartPolls(ctx, owner, ttl, ticks)
}

// A lone replica asks for the leases of a whole tick group in one
// StartPolls call, skipping a source whose previous poll still runs;
// replicas that share the store ask per source, each after its jitter.
func TestTickGroupStartsItsTicksTogether(t *testing.T) {
	st := &startCounter{}
	srcs := map[string]*flakySource{"a": {}, "b": {}, "c": {}}
	eng := newScheduleEngineWith(t, `
sinks: [{name: app, type: stdout}]
sources:
  - {name: a, schedule: "@every 1m", url: "http://127.0.0.1:1/a", key: id}
  - {name: b, schedule: "@every 1m", url: "http://127.0.0.1:1/b", key: id}
  - {name: c, schedule: "@every 1m", url: "http://127.0.0.1:1/c", key: id}
`, map[string]Source{"a": srcs["a"], "b": srcs["b"], "c": srcs["c"]},
		func(bolt store.Store) store.Store { st.Store = bolt; return st })
	g := oneGroup(t, eng)
	fetches := func() (n []int) {
		for _, name := range []string{"a", "b", "c"} {
			n = append(n, len(srcs[name].fetchTimes()))
		}
		return n
	}

	eng.replicas.Store(1)
	eng.pollers["b"].running.Lock() // b's previous poll still runs
	g.tick(t.Context())
	eng.pollers["b"].running.Unlock()
	if got := fetches(); fmt.Sprint(got) != "[1 0 1]" {
		t.Errorf("alone, with b still polling: fetches of a, b, c = %v, want [1 0 1]", got)
	}
	if fmt.Sprint(st.calls) != "[2]" {
		t.Errorf("alone: StartPolls calls of %v ticks, want one call of 2", st.calls)
	}

	st.calls = nil
	eng.replicas.Store(2)
	// A later tick: the first one's leases are this replica's anyway.
	g.tick(t.Context())
	if got := fetches(); fmt.Sprint(got) != "[2 1 2]" {
		t.Errorf("shared: fetches of a, b, c = %v, want [2 1 2]", got)
	}
	if fmt.Sprint(st.calls) != "[1 1 1]" {
		t.Errorf("shared: StartPolls calls of %v ticks, want three calls of 1", st.calls)
	}
}

// shortStarts is a broken backend: its StartPolls answers no tick.
type shortStarts struct{ store.Store }

func (shortStarts) StartPolls(context.Context, string, time.Duration, []store.PollTick) []store.PollStart {
	return nil
}

// A store that answers fewer ticks than asked polls nothing, reports the
// lease as failing, and leaves every source free for its next tick.
func TestTickGroupWithBrokenStartPollsPollsNothing(t *testing.T) {
	srcs := map[string]*flakySource{"a": {}, "b": {}}
	eng := newScheduleEngineWith(t, `
sinks: [{name: app, type: stdout}]
sources:
  - {name: a, schedule: "@every 1m", url: "http://127.0.0.1:1/a", key: id}
  - {name: b, schedule: "@every 1m", url: "http://127.0.0.1:1/b", key: id}
`, map[string]Source{"a": srcs["a"], "b": srcs["b"]},
		func(bolt store.Store) store.Store { return shortStarts{bolt} })
	g := oneGroup(t, eng)
	eng.replicas.Store(1)
	g.tick(t.Context())
	for _, tk := range g.tickers {
		name := tk.poller.cfg.Name
		if n := len(srcs[name].fetchTimes()); n != 0 {
			t.Errorf("%s fetched %d times, want 0", name, n)
		}
		tk.mu.Lock()
		failing := tk.failing
		tk.mu.Unlock()
		if !failing {
			t.Errorf("%s: the missing answer was not reported as a lease failure", name)
		}
		if !tk.poller.running.TryLock() {
			t.Fatalf("%s is still locked after the tick", name)
		}
		tk.poller.running.Unlock()
	}
}

// panickyStarts is a broken backend: its StartPolls panics.
type panickyStarts struct{ store.Store }

func (panickyStarts) StartPolls(context.Context, string, time.Duration, []store.PollTick) []store.PollStart {
	panic("start polls exploded")
}

// A store whose StartPolls panics: the tick raises the panic (for cron's
// Recover) and leaves every source free for its next tick.
func TestTickGroupWithPanickingStartPollsFreesSources(t *testing.T) {
	eng := newScheduleEngineWith(t, `
sinks: [{name: app, type: stdout}]
sources:
  - {name: a, schedule: "@every 1m", url: "http://127.0.0.1:1/a", key: id}
  - {name: b, schedule: "@every 1m", url: "http://127.0.0.1:1/b", key: id}
`, map[string]Source{"a": &flakySource{}, "b": &flakySource{}},
		func(bolt store.Store) store.Store { return panickyStarts{bolt} })
	g := oneGroup(t, eng)
	eng.replicas.Store(1)
	func() {
		defer func() {
			if p := recover(); p != "start polls exploded" {
				t.Errorf("the tick raised %v, want the store's panic", p)
			}
		}()
		g.tick(t.Context())
	}()
	for _, tk := range g.tickers {
		if !tk.poller.running.TryLock() {
			t.Fatalf("%s is still locked after the tick", tk.poller.cfg.Name)
		}
		tk.poller.running.Unlock()
	}
}
