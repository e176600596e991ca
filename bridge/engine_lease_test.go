package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/boltstore"
	"github.com/pollbridge/pollbridge/sinks"
	"github.com/pollbridge/pollbridge/sources"
)

// Two replicas sharing one store poll each tick of a source once: the poll
// lease is named after the tick, so the second replica stands aside. Each
// counts two live replicas (so both spread their lease attempts).
func TestReplicasPollEachTickOnce(t *testing.T) {
	var mu sync.Mutex
	gets := map[int64]int{} // unix second → GETs in it
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gets[time.Now().Unix()]++
		mu.Unlock()
		io.WriteString(w, `[{"id":1}]`)
	}))
	defer api.Close()
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hooks.Close()

	cfg, st := everySecond(t, api.URL, fmt.Sprintf("{name: app, url: %s}", hooks.URL))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var metrics []*bridge.Metrics
	for i := range 2 {
		src, _ := sources.New(cfg.Sources[0], nil)
		snk, _ := sinks.New(cfg.Sinks[0], nil)
		m := bridge.NewMetrics("test")
		metrics = append(metrics, m)
		eng, err := bridge.New(cfg, st, map[string]bridge.Source{"orders": src}, map[string]bridge.Sink{"app": snk},
			bridge.Options{ReplicaID: fmt.Sprint("replica-", i), Logger: slog.New(slog.DiscardHandler), Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { eng.Run(ctx) })
	}
	eventually(t, "three ticks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(gets) >= 3
	})
	for i, m := range metrics { // the first counted itself alone; it recounts every second
		eventually(t, fmt.Sprintf("replica %d to count 2 replicas", i), func() bool {
			return gaugeValue(t, m, "pollbridge_replicas") == 2
		})
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for sec, n := range gets {
		if n != 1 {
			t.Errorf("tick at %d polled %d times, want once", sec, n)
		}
	}
}

// gaugeValue reads an unlabelled gauge from m's registry.
func gaugeValue(t *testing.T, m *bridge.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// replicasDown is the real store with a heartbeat that fails, as when the
// store does not answer; its count must not be believed. (Injecting the
// failure needs a wrapper: a store that fails only this call does not exist.)
type replicasDown struct{ store.Store }

func (replicasDown) Replicas(context.Context, string, time.Duration) (int, error) {
	return 5, errors.New("store down")
}

// When the heartbeat fails the replica count is "not known" (0), so ticks
// spread their lease attempts, and polling goes on.
func TestReplicaCountUnknownWhenHeartbeatFails(t *testing.T) {
	var mu sync.Mutex
	gets := 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gets++
		mu.Unlock()
		io.WriteString(w, `[{"id":1}]`)
	}))
	defer api.Close()
	cfg, st := everySecond(t, api.URL, "{name: app, type: stdout}")
	src, _ := sources.New(cfg.Sources[0], nil)
	snk, _ := sinks.New(cfg.Sinks[0], nil)
	m := bridge.NewMetrics("test")
	eng, err := bridge.New(cfg, replicasDown{st}, map[string]bridge.Source{"orders": src}, map[string]bridge.Sink{"app": snk},
		bridge.Options{Logger: slog.New(slog.DiscardHandler), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	eventually(t, "two polls", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return gets >= 2
	})
	if n := gaugeValue(t, m, "pollbridge_replicas"); n != 0 {
		t.Errorf("pollbridge_replicas = %v with a failing heartbeat, want 0 (not known)", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// everySecond parses a configuration with the source orders polling apiURL
// every second and the one sink given as YAML, and opens its bbolt store,
// closed when the test ends.
func everySecond(t *testing.T, apiURL, sink string) (*config.Config, *boltstore.Store) {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
state: {path: %s}
sinks: [%s]
sources: [{name: orders, schedule: "@every 1s", url: %s, key: id}]
`, filepath.Join(t.TempDir(), "s.db"), sink, apiURL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(cfg.State.Path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return cfg, st
}
