package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/admin"
	"github.com/pollbridge/pollbridge/bridge/internal/enginetest"
	"github.com/pollbridge/pollbridge/sinks"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// api is a REST API on loopback serving {"data": [items]} or failing.
type api struct {
	*httptest.Server
	mu    sync.Mutex
	items []map[string]any
	fail  bool
}

func newAPI(t *testing.T, ids ...string) *api {
	a := &api{}
	for _, id := range ids {
		a.items = append(a.items, map[string]any{"id": id, "status": "new"})
	}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.fail {
			http.Error(w, "upstream exploded", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"data": a.items})
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *api) setFail(fail bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = fail
}

func (a *api) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.items = append(a.items, map[string]any{"id": id, "status": "new"})
}

// receiver is a webhook receiver on loopback that verifies signatures and
// answers with a settable status.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	got    []string // webhook-ids accepted
}

func newReceiver(t *testing.T, status int) *receiver {
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := sinks.Verify(testSecret, req.Header, body, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("receiver: bad signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.status/100 == 2 {
			r.got = append(r.got, req.Header.Get("webhook-id"))
		}
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) setStatus(s int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = s
}

func (r *receiver) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// daemon is an engine on a real bbolt file, real sources and sinks, with
// the admin listener on a loopback port.
type daemon struct {
	*enginetest.Daemon
	metrics *bridge.Metrics
	admin   *admin.Server
	url     string // the admin listener's base URL
}

// testConfig has source "orders" (emit_initial, so its first poll sends
// events; a failure pauses it for 1s, much less than its interval) and
// source "broken" (a failure pauses it for 2h, longer than its interval) at
// their APIs, and sink "app".
func testConfig(ordersURL, brokenURL, hookURL string) string {
	return fmt.Sprintf(`
state: {path: STATE_PATH}
shutdown_timeout: 5s
sinks:
  - name: app
    url: %s
    secret: %s
    retry: {initial_backoff: 20ms, max_backoff: 100ms}
sources:
  - name: orders
    schedule: "@every 1h"
    url: %s
    items: data
    key: id
    emit_initial: true
    backoff: {initial: 1s, max: 1s}
  - name: broken
    schedule: "@every 1h"
    url: %s
    items: data
    key: id
    backoff: {initial: 2h, max: 8h}
`, hookURL, testSecret, ordersURL, brokenURL)
}

// startDaemon runs yamlText's engine (STATE_PATH filled in) with an admin
// listener using token, until the test ends.
func startDaemon(t *testing.T, yamlText, token string) *daemon {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m := bridge.NewMetrics("test-1.2.3")
	d := &daemon{Daemon: enginetest.Build(t, yamlText, bridge.Options{Logger: logger, Metrics: m}), metrics: m}
	srv, err := admin.Start(d.Context(), "127.0.0.1:0", admin.Options{Engine: d.Engine, Metrics: m, Token: token, Logger: logger, Version: "test-1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	d.admin, d.url = srv, "http://"+srv.Addr().String()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close admin: %v", err)
		}
	})
	d.Run() // stopped at the end, before the admin listener closes
	return d
}

// stop begins the engine's shutdown (the admin listener drains) and waits
// for Run to return.
func (d *daemon) stop(t *testing.T) { d.Stop(t) }

func (d *daemon) call(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, d.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// getJSON GETs path (status 200 expected) and decodes it into v.
func (d *daemon) getJSON(t *testing.T, path, token string, v any) {
	t.Helper()
	status, body := d.call(t, http.MethodGet, path, token)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// sink returns the sink's info from /api/sinks.
func (d *daemon) sink(t *testing.T, name, token string) admin.SinkInfo {
	t.Helper()
	var out admin.Sinks
	d.getJSON(t, "/api/sinks", token, &out)
	for _, s := range out.Sinks {
		if s.Name == name {
			if s.Outbox == nil {
				t.Fatalf("sink %s: no outbox counts: %s", name, out.OutboxError)
			}
			return s
		}
	}
	t.Fatalf("no sink %s in %+v", name, out)
	return admin.SinkInfo{}
}

// eventually polls cond until it holds or 10 seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorded is an answer of a handler called in process.
type recorded struct {
	code int
	body string
}

// newRequest makes a request to a loopback Host, with a token if given.
func newRequest(method, path, token string) *http.Request {
	req := httptest.NewRequest(method, "http://127.0.0.1:9090"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// serve runs req through srv's handler.
func serve(srv *admin.Server, req *http.Request) recorded {
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	return recorded{rec.Code, rec.Body.String()}
}

// newRecorder calls srv's handler with a new request.
func newRecorder(srv *admin.Server, method, path, token string) recorded {
	return serve(srv, newRequest(method, path, token))
}
