// Package enginetest runs a whole Engine from a YAML config for the tests
// of bridge and bridge/admin: real HTTP sources and webhook sinks, and a
// bbolt store in the test's temporary directory.
package enginetest

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/boltstore"
	"github.com/pollbridge/pollbridge/sinks"
	"github.com/pollbridge/pollbridge/sources"
)

// Daemon is an Engine built from a config, with its store.
type Daemon struct {
	Config *config.Config
	Store  *boltstore.Store
	Engine *bridge.Engine

	ctx    context.Context
	cancel context.CancelFunc // nil after Stop
	done   chan error         // nil until Run
}

// Build parses yamlText, with STATE_PATH replaced by a file in the test's
// temporary directory, opens its bbolt store and builds its sources, sinks
// and engine. opts.Logger defaults to one that writes warnings and errors
// to stderr; IdleWait defaults to 10 ms. The store is closed when the test
// ends.
func Build(t *testing.T, yamlText string, opts bridge.Options) *Daemon {
	t.Helper()
	return BuildWith(t, yamlText, opts, nil)
}

// BuildWith is Build with the engine's store wrapped by wrap (nil: none),
// so that a test can watch the calls the engine makes. Daemon.Store stays
// the bbolt store underneath.
func BuildWith(t *testing.T, yamlText string, opts bridge.Options, wrap func(store.Store) store.Store) *Daemon {
	t.Helper()
	yamlText = strings.ReplaceAll(yamlText, "STATE_PATH", t.TempDir()+"/state.db")
	cfg, err := config.Parse("test.yaml", []byte(yamlText), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	st, err := boltstore.Open(cfg.State.Path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srcs := map[string]bridge.Source{}
	for _, sc := range cfg.Sources {
		if srcs[sc.Name], err = sources.New(sc, nil); err != nil {
			t.Fatal(err)
		}
	}
	snks := map[string]bridge.Sink{}
	for _, sc := range cfg.Sinks {
		if snks[sc.Name], err = sinks.New(sc, nil); err != nil {
			t.Fatal(err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if opts.IdleWait == 0 {
		opts.IdleWait = 10 * time.Millisecond
	}
	var engStore store.Store = st
	if wrap != nil {
		engStore = wrap(st)
	}
	eng, err := bridge.New(cfg, engStore, srcs, snks, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{Config: cfg, Store: st, Engine: eng, ctx: ctx, cancel: cancel}
	t.Cleanup(func() { d.Stop(t) }) // before the store closes
	return d
}

// Context is the context the engine runs under: it ends when Stop is
// called, so what shares it (an admin listener) shuts down with the engine.
func (d *Daemon) Context() context.Context { return d.ctx }

// Run starts the engine. It runs until Stop, or until the test ends.
func (d *Daemon) Run() {
	d.done = make(chan error, 1)
	go func() { d.done <- d.Engine.Run(d.ctx) }()
}

// Stop ends the Context and waits for Run to return (at most 20 s). A
// second Stop does nothing.
func (d *Daemon) Stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	if d.done == nil {
		return // never run
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("engine did not stop")
	}
}
