package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/redisstore/redistest"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

const faultPassword = "s3cret-pw"

// storeCalls calls every Store method once; d is a delivery to act on.
func storeCalls(s *Store, d store.Delivery) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"Load": func(ctx context.Context) error { _, err := s.Load(ctx, "src"); return err },
		"Commit": func(ctx context.Context) error {
			return s.Commit(ctx, store.Commit{Source: "src", Generation: 1, Meta: map[string]string{"etag": "x"}})
		},
		"Claim": func(ctx context.Context) error {
			_, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
			return err
		},
		"Settle(retry)": func(ctx context.Context) error { return storetest.Retry(ctx, s, d, time.Now()) },
		"Settle(bury)":  func(ctx context.Context) error { return storetest.Bury(ctx, s, d) },
		"Dead":          func(ctx context.Context) error { _, err := s.Dead(ctx, ""); return err },
		"Replay":        func(ctx context.Context) error { _, err := s.Replay(ctx, "", nil); return err },
		"Stats":         func(ctx context.Context) error { _, err := s.Stats(ctx, time.Now()); return err },
		"Live":          func(ctx context.Context) error { _, err := s.Live(ctx, "", 10); return err },
		"Ping":          func(ctx context.Context) error { return s.Ping(ctx) },
		"Settle": func(ctx context.Context) error {
			return errors.Join(s.Settle(ctx, []store.Outcome{{Op: store.OpAck, Delivery: d}})...)
		},
		"StartPoll": func(ctx context.Context) error {
			_, _, err := storetest.StartPoll(ctx, s, "src", "t", "me", time.Second)
			return err
		},
		"Replicas": func(ctx context.Context) error { _, err := s.Replicas(ctx, "me", time.Second); return err },
	}
}

func seedOne(t *testing.T, s *Store) store.Delivery {
	t.Helper()
	d := store.Delivery{ID: "d1", EventID: "evt_d1", Sink: "hook", Source: "src", Key: "k", Payload: json.RawMessage(`{"a":1}`)}
	if err := s.Commit(t.Context(), store.Commit{Source: "src", Generation: 0,
		Upsert: map[string]store.Item{"k": {Fingerprint: "f", Data: json.RawMessage(`{"id":"k"}`)}}, Deliveries: []store.Delivery{d}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	ds, err := s.Claim(t.Context(), "hook", time.Now(), 10, time.Minute)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Claim = %v, %v; want d1", ds, err)
	}
	return ds[0]
}

// TestRedisDownAndBack stops, kills and restarts a redis-server of its own:
// every method fails within its ctx deadline while Redis hangs, fails fast
// with the network error while it is gone, never shows the password, and
// the same Store works again once a server is back on the port.
func TestRedisDownAndBack(t *testing.T) {
	srv := redistest.StartServer(t, "--requirepass", faultPassword)
	url := "redis://:" + faultPassword + "@" + srv.Addr() + "/0"
	s := openStore(t, url, Options{RepairInterval: time.Hour})
	d := seedOne(t, s)

	check := func(phase, name string, err error, took, limit time.Duration) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: %s succeeded", phase, name)
			return
		}
		if took > limit {
			t.Errorf("%s: %s took %v, want at most %v", phase, name, took, limit)
		}
		if strings.Contains(err.Error(), faultPassword) {
			t.Errorf("%s: %s error shows the password: %v", phase, name, err)
		}
	}

	// A hung server (SIGSTOP): calls end at their ctx deadline.
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for name, call := range storeCalls(s, d) {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		start := time.Now()
		err := call(ctx)
		cancel()
		t.Logf("hung %s: %v %v", name, time.Since(start), err)
		// Well below the 2s read timeout: the ctx deadline ended the call.
		check("hung", name, err, time.Since(start), 1500*time.Millisecond)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errorsAsNet(err) {
			t.Errorf("hung: %s error %v wraps neither the deadline nor a network error", name, err)
		}
	}
	if err := srv.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// A dead server: calls fail fast with the network error.
	srv.Kill()
	for name, call := range storeCalls(s, d) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		start := time.Now()
		err := call(ctx)
		cancel()
		check("down", name, err, time.Since(start), 2500*time.Millisecond)
		if err != nil && !errorsAsNet(err) {
			t.Errorf("down: %s error %v does not wrap a network error", name, err)
		}
	}

	// Back on the same port, empty (no persistence): the same Store works.
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	var st store.State
	var err error
	for {
		if st, err = s.Load(t.Context(), "src"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Load after the restart still fails: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Generation != 0 || len(st.Items) != 0 {
		t.Errorf("Load after a restart without persistence = %+v, want an empty state", st)
	}
	d2 := seedOne(t, s)
	if err := storetest.Ack(t.Context(), s, d2); err != nil {
		t.Errorf("Settle(ack) after the restart: %v", err)
	}
	if _, held, err := storetest.StartPoll(t.Context(), s, "src", "after-restart", "me", time.Second); err != nil || !held {
		t.Errorf("StartPoll after the restart = held %v, %v; want held", held, err)
	}
	for name, call := range storeCalls(s, d) {
		if strings.HasPrefix(name, "Settle") {
			continue // d is gone with the old data
		}
		if err := call(t.Context()); err != nil {
			t.Errorf("after the restart: %s: %v", name, err)
		}
	}
}

func TestOpenErrorsHideTheURL(t *testing.T) {
	for _, tc := range []struct{ name, url, want string }{
		{"refused", "redis://:" + faultPassword + "@127.0.0.1:1/0", "connection refused"},
		{"bad escape", "redis://:" + faultPassword + "%zz@127.0.0.1:1/0", "parse redis url"},
		{"bad scheme", "http://:" + faultPassword + "@127.0.0.1:1/0", "invalid URL scheme"},
		{"bad cluster option", "redis://:" + faultPassword + "@127.0.0.1:1?addr=127.0.0.1:2&dial_timeout=x", "dial_timeout"},
		{"empty", "", "no redis url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := Open(ctx, Options{URL: tc.url})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), faultPassword) {
				t.Errorf("error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	if _, err := Open(t.Context(), Options{URL: "redis://127.0.0.1:1", Prefix: "a{b}:"}); err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("Open with braces in the prefix: %v, want a prefix error", err)
	}
}

// TestClientDefaults checks the timeouts and retry settings, and that the
// URL can override them.
func TestClientDefaults(t *testing.T) {
	c, err := newClient("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.DialTimeout != 2*time.Second || o.ReadTimeout != 2*time.Second || o.WriteTimeout != 2*time.Second ||
		o.MaxRetries != 0 || o.DialerRetries != 1 || !o.ContextTimeoutEnabled {
		t.Errorf("defaults: dial %v read %v write %v retries %d dialer retries %d ctx %v",
			o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled)
	}
	c2, err := newClient("redis://127.0.0.1:1/0?dial_timeout=5s&max_retries=2")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if o := c2.(*redis.Client).Options(); o.DialTimeout != 5*time.Second || o.MaxRetries != 2 {
		t.Errorf("URL overrides: dial %v retries %d, want 5s and 2", o.DialTimeout, o.MaxRetries)
	}
	c3, err := newClient("redis://127.0.0.1:1?addr=127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	cc, ok := c3.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("a URL with addr= gave a %T, want a cluster client", c3)
	}
	if o := cc.Options(); len(o.Addrs) != 2 || o.DialTimeout != 2*time.Second || o.MaxRetries != -1 {
		t.Errorf("cluster options: addrs %v dial %v retries %d", o.Addrs, o.DialTimeout, o.MaxRetries)
	}
}

// logSink collects log records.
type logSink struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (h *logSink) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *logSink) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logSink) WithGroup(string) slog.Handler      { return h }

func TestRouteClientLogs(t *testing.T) {
	sink := &logSink{}
	RouteClientLogs(slog.New(sink))
	t.Cleanup(func() { RouteClientLogs(nil) })
	c, err := newClient("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Fatal("PING to port 1 succeeded")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.recs) == 0 {
		t.Fatal("the failed dial logged nothing through the routed logger")
	}
	for _, r := range sink.recs {
		if r.Level != slog.LevelDebug || !strings.Contains(r.Message, "connection refused") {
			t.Errorf("routed record = %v %q, want a debug line about the refused dial", r.Level, r.Message)
		}
	}
}
