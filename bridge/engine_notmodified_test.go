package bridge_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/boltstore"
	"github.com/pollbridge/pollbridge/sinks"
	"github.com/pollbridge/pollbridge/sources"
)

// countingStore is the real bbolt store, counting full state reads.
type countingStore struct {
	store.Store
	loads atomic.Int32
}

func (c *countingStore) Load(ctx context.Context, source string) (store.State, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, source)
}

// A 304 ends the poll with one request and without reading the items.
func TestNotModifiedPollReadsNoItems(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	a.set("1", nil)
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
state: {path: %s}
sinks: [{name: app, url: %s}]
sources: [{name: orders, schedule: "@every 1h", url: %s, items: data, key: id}]
`, filepath.Join(t.TempDir(), "s.db"), r.URL, a.URL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	bolt, err := boltstore.Open(cfg.State.Path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	st := &countingStore{Store: bolt}
	src, _ := sources.New(cfg.Sources[0], nil)
	snk, _ := sinks.New(cfg.Sinks[0], nil)
	eng, err := bridge.New(cfg, st, map[string]bridge.Source{"orders": src}, map[string]bridge.Sink{"app": snk},
		bridge.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Poll(context.Background(), "orders"); err != nil {
		t.Fatal(err)
	}
	loads := st.loads.Load()
	a.mu.Lock()
	gets := a.gets
	a.mu.Unlock()
	res, err := eng.Poll(context.Background(), "orders")
	if err != nil || !res.NotModified {
		t.Fatalf("second poll = %+v, %v; want not modified", res, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gets != gets+1 {
		t.Errorf("the unchanged poll made %d requests, want 1", a.gets-gets)
	}
	if n := st.loads.Load() - loads; n != 0 {
		t.Errorf("the unchanged poll read the items %d times, want 0", n)
	}
}
