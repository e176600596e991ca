package bridge

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store/boltstore"
)

// flakySource serves fixed items, or fails while told to, and records the
// time of every fetch.
type flakySource struct {
	mu      sync.Mutex
	fail    bool
	items   []Item
	fetches []time.Time
}

func (f *flakySource) Fetch(ctx context.Context, meta map[string]string) (*Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches = append(f.fetches, time.Now())
	if f.fail {
		return nil, errors.New("status 503: boom")
	}
	return &Snapshot{Items: slices.Clone(f.items), Pages: 1}, nil
}

func (f *flakySource) setFail(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

func (f *flakySource) fetchTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.fetches)
}

// discardSink accepts every event.
type discardSink struct{}

func (discardSink) Send(context.Context, *Event) error { return nil }

// logRecorder is a slog handler that keeps every message.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string // "LEVEL msg"
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns how many messages start with prefix ("LEVEL msg").
func (l *logRecorder) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// newBackoffEngine builds an engine on a real bolt file for one source
// with the given extra source settings.
func newBackoffEngine(t *testing.T, src *flakySource, extra string, logs *logRecorder) (*Engine, func()) {
	t.Helper()
	yaml := `
sinks: [{name: app, type: stdout}]
sources:
  - name: orders
    schedule: "@every 10s"
    url: http://127.0.0.1:1/orders
    key: id
` + extra
	cfg, err := config.Parse("backoff.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := New(cfg, st, map[string]Source{"orders": src}, map[string]Sink{"app": discardSink{}},
		Options{Logger: slog.New(logs), IdleWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return eng, func() { st.Close() }
}

// A failing source backs off exponentially up to the cap: scheduled ticks
// inside the pause are skipped; a success ends the backoff at once. The
// clock is synctest's, so the minutes pass instantly.
func TestSourceBackoffSkipsTicksAndResets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &flakySource{fail: true, items: items("1", `{"id":1}`, "2", `{"id":2}`)}
		logs := &logRecorder{}
		eng, closeStore := newBackoffEngine(t, src, "    backoff: {max: 1m}\n", logs)
		defer closeStore()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- eng.Run(ctx) }()

		// Five failures: pauses of 10s (no tick skipped), 20s, 40s, then
		// the 1m cap.
		for len(src.fetchTimes()) < 5 {
			time.Sleep(time.Second)
		}
		synctest.Wait()
		f := src.fetchTimes()
		st, ok := eng.SourceStatus("orders")
		if !ok {
			t.Fatal("no status for orders")
		}
		if st.ConsecutiveFailures != 5 || !strings.Contains(st.LastError, "boom") ||
			!st.BackoffUntil.Equal(f[4].Add(time.Minute)) || !st.LastPoll.Equal(f[4]) || !st.LastSuccess.IsZero() {
			t.Errorf("status after 5 failures = %+v (last fetch %s)", st, f[4])
		}
		src.setFail(false)
		for len(src.fetchTimes()) < 7 {
			time.Sleep(time.Second)
		}
		synctest.Wait()
		f = src.fetchTimes()
		var gaps []time.Duration
		for i := 1; i < len(f); i++ {
			// Rounded: the engine delays each poll by a small random
			// lease jitter (well under a second).
			gaps = append(gaps, f[i].Sub(f[i-1]).Round(time.Second))
		}
		want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute, 10 * time.Second}
		if !slices.Equal(gaps, want) {
			t.Errorf("gaps between polls = %v, want %v", gaps, want)
		}
		st, _ = eng.SourceStatus("orders")
		if st.ConsecutiveFailures != 0 || st.LastError != "" || !st.BackoffUntil.IsZero() ||
			!st.LastSuccess.Equal(f[6]) || st.Items != 2 {
			t.Errorf("status after recovery = %+v", st)
		}
		if all := eng.SourceStatuses(); len(all) != 1 || all[0].Name != "orders" {
			t.Errorf("SourceStatuses = %+v", all)
		}

		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := logs.count("INFO source backing off"); n != 1 {
			t.Errorf("backoff entered logged %d times, want once", n)
		}
		// Skipped ticks: 1 + 3 + 5 + 5 while failing.
		if n := logs.count("DEBUG tick skipped: source backing off"); n != 14 {
			t.Errorf("skipped ticks logged %d times at debug, want 14", n)
		}
		if n := logs.count("INFO poll recovered"); n != 1 {
			t.Errorf("recovery logged %d times, want once", n)
		}
	})
}

// An explicit poll (Engine.Poll, the admin API's "poll now") is never
// skipped, and its success ends the backoff.
func TestSourceBackoffExplicitPoll(t *testing.T) {
	src := &flakySource{fail: true}
	eng, closeStore := newBackoffEngine(t, src, "    backoff: {initial: 1h, max: 2h}\n", &logRecorder{})
	defer closeStore()
	for range 2 {
		if _, err := eng.Poll(context.Background(), "orders"); err == nil {
			t.Fatal("poll of a failing source succeeded")
		}
	}
	p := eng.pollers["orders"]
	st, _ := eng.SourceStatus("orders")
	if !p.backingOff(time.Now()) || st.ConsecutiveFailures != 2 || st.BackoffUntil.Sub(st.LastPoll) != 2*time.Hour {
		t.Fatalf("after 2 failures: backing off %v, status %+v", p.backingOff(time.Now()), st)
	}
	src.setFail(false)
	if _, err := eng.Poll(context.Background(), "orders"); err != nil {
		t.Fatal(err)
	}
	if n := len(src.fetchTimes()); n != 3 {
		t.Fatalf("fetches = %d, want 3 (explicit polls are never skipped)", n)
	}
	if p.backingOff(time.Now()) {
		t.Error("still backing off after a success")
	}
}

// backoff doubles from the initial pause (default: the schedule's
// interval) up to the cap (default 10m).
func TestPollerBackoffDurations(t *testing.T) {
	tests := []struct {
		schedule string
		backoff  config.PollBackoff
		want     []time.Duration // after 1, 2, 3, ... failures
	}{
		{"@every 10s", config.PollBackoff{}, []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 320 * time.Second, 10 * time.Minute, 10 * time.Minute}},
		{"@every 1m", config.PollBackoff{Initial: 5 * time.Second, Max: 30 * time.Second}, []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second}},
		{"*/5 * * * *", config.PollBackoff{}, []time.Duration{5 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
		{"@hourly", config.PollBackoff{}, []time.Duration{10 * time.Minute, 10 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.schedule, func(t *testing.T) {
			p := &poller{cfg: config.Source{Schedule: tt.schedule, Backoff: tt.backoff}}
			for i, want := range tt.want {
				if got := p.backoff(i + 1); got != want {
					t.Errorf("after %d failures: %s, want %s", i+1, got, want)
				}
			}
			if got := p.backoff(1000); got != tt.want[len(tt.want)-1] {
				t.Errorf("after 1000 failures: %s (overflow?)", got)
			}
		})
	}
}
