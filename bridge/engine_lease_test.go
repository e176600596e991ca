package bridge_test

import (
	"context"
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

	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
state: {path: %s}
sinks: [{name: app, url: %s}]
sources: [{name: orders, schedule: "@every 1s", url: %s, key: id}]
`, filepath.Join(t.TempDir(), "s.db"), hooks.URL, api.URL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(cfg.State.Path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
