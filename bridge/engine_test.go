package bridge_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/internal/enginetest"
	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/sinks"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// api is a small REST API on loopback whose items tests mutate, and which
// can be told to misbehave.
type api struct {
	*httptest.Server
	mu    sync.Mutex
	items map[string]map[string]any
	mode  string // "", "500", "html", "truncated", "empty"
	gets  int
}

func newAPI(t *testing.T) *api {
	a := &api{items: map[string]map[string]any{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.gets++
		switch a.mode {
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		case "html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><body>maintenance</body></html>")
			return
		case "truncated":
			io.WriteString(w, `{"data":[{"id":"1","status":"new"},{"id":"2"`)
			return
		}
		keys := make([]string, 0, len(a.items))
		for k := range a.items {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		list := []map[string]any{}
		for _, k := range keys {
			list = append(list, a.items[k])
		}
		if a.mode == "empty" { // a glitch: the items are still there
			list = list[:0]
		}
		body, _ := json.Marshal(map[string]any{"data": list})
		etag := fmt.Sprintf(`"%x"`, sha256.Sum256(body))
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *api) set(id string, fields map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	item := map[string]any{"id": id, "updated_at": time.Now().Format(time.RFC3339Nano)}
	for k, v := range fields {
		item[k] = v
	}
	a.items[id] = item
}

func (a *api) del(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.items, id)
}

func (a *api) setMode(m string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mode = m
}

// delivery is one request a receiver accepted.
type delivery struct {
	ID   string
	Body string
	Type string
	Data struct {
		ID       string          `json:"id"`
		Source   string          `json:"source"`
		Key      string          `json:"key"`
		Item     json.RawMessage `json:"item"`
		Previous json.RawMessage `json:"previous"`
		Changes  []bridge.Change `json:"changes"`
	}
}

// receiver is a webhook receiver on loopback that verifies every signature.
type receiver struct {
	*httptest.Server
	t        *testing.T
	mu       sync.Mutex
	got      []delivery
	attempts map[string][]string // webhook-id → bodies of every attempt
	failNext int                 // answer the next N requests with status
	status   int
	block    chan struct{} // if non-nil, requests wait for it to close
	arrived  int           // requests that reached the handler
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, attempts: map[string][]string{}, status: http.StatusServiceUnavailable}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := sinks.Verify(testSecret, req.Header, body, 5*time.Minute, time.Now()); err != nil {
		r.t.Errorf("receiver: bad signature: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	block := r.block
	r.arrived++
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-req.Context().Done():
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	id := req.Header.Get("webhook-id")
	r.attempts[id] = append(r.attempts[id], string(body))
	if r.failNext > 0 {
		r.failNext--
		w.WriteHeader(r.status)
		return
	}
	var d delivery
	if err := json.Unmarshal(body, &d); err != nil {
		r.t.Errorf("receiver: body is not JSON: %v", err)
	}
	d.ID, d.Body = id, string(body)
	r.got = append(r.got, d)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *receiver) fail(n, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext, r.status = n, status
}

// eventually polls cond until it holds or the deadline passes.
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

// harness runs an engine on a real bolt store, real HTTP sources and real
// webhook sinks.
type harness struct {
	*enginetest.Daemon
}

// start loads yamlText (with %s placeholders already filled), opens a bolt
// store in a temp dir and runs the engine until the test ends.
func start(t *testing.T, yamlText string) *harness {
	t.Helper()
	h := &harness{enginetest.Build(t, yamlText, bridge.Options{})}
	h.Run()
	return h
}

// stop begins the engine's shutdown and waits for Run to return.
func (h *harness) stop(t *testing.T) { h.Stop(t) }

func (h *harness) poll(t *testing.T, source string) bridge.PollResult {
	t.Helper()
	res, err := h.Engine.Poll(context.Background(), source)
	if err != nil {
		t.Fatalf("poll %s: %v", source, err)
	}
	return res
}

// oneSource is a config with one source and one sink; the schedule is long
// so that the test drives polls itself.
func oneSource(apiURL, hookURL, extra string) string {
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
    ignore: [updated_at]
%s`, hookURL, testSecret, apiURL, extra)
}

func TestEngineDeliversEveryChangeOnce(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	a.set("1", map[string]any{"status": "new", "total": 10})
	a.set("2", map[string]any{"status": "new", "total": 20})
	h := start(t, oneSource(a.URL, r.URL, ""))

	if res := h.poll(t, "orders"); !res.Baseline || res.Items != 2 || len(res.Events) != 0 {
		t.Fatalf("first poll = %+v, want a silent baseline of 2 items", res)
	}
	a.set("1", map[string]any{"status": "paid", "total": 10}) // update
	a.set("2", map[string]any{"status": "new", "total": 20})  // only updated_at changes: ignored
	a.set("3", map[string]any{"status": "new", "total": 30})  // create
	if res := h.poll(t, "orders"); len(res.Events) != 2 {
		t.Fatalf("second poll events = %d, want 2", len(res.Events))
	}
	a.del("2")
	h.poll(t, "orders")
	h.poll(t, "orders") // nothing changed: nothing sent

	eventually(t, "3 deliveries", func() bool { return len(r.deliveries()) >= 3 })
	h.stop(t)
	got := r.deliveries()
	if len(got) != 3 {
		t.Fatalf("got %d deliveries, want 3", len(got))
	}
	byType := map[string]delivery{}
	for _, d := range got {
		byType[d.Type] = d
		if d.Data.Source != "orders" || d.Data.ID != d.ID || !strings.HasPrefix(d.ID, "msg_") {
			t.Errorf("bad envelope: id %q data %+v", d.ID, d.Data)
		}
	}
	upd := byType[bridge.ItemUpdated]
	if upd.Data.Key != "1" || len(upd.Data.Changes) != 1 || upd.Data.Changes[0].Path != "/status" ||
		string(upd.Data.Changes[0].Old) != `"new"` || string(upd.Data.Changes[0].New) != `"paid"` {
		t.Errorf("update = %+v", upd.Data)
	}
	if c := byType[bridge.ItemCreated]; c.Data.Key != "3" || c.Data.Item == nil || c.Data.Previous != nil {
		t.Errorf("create = %+v", c.Data)
	}
	if d := byType[bridge.ItemDeleted]; d.Data.Key != "2" || d.Data.Item != nil || !strings.Contains(string(d.Data.Previous), `"total":20`) {
		t.Errorf("delete = %+v", d.Data)
	}
	stats, err := h.Store.Stats(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s := stats["app"]; s.Pending+s.Retrying+s.Dead != 0 {
		t.Errorf("outbox not empty after delivery: %+v", s)
	}
}

// A source that fails, in any way, changes nothing and sends nothing; the
// deletions an empty answer after an error would imply are held back.
func TestEngineBadSourceAnswersInventNothing(t *testing.T) {
	for _, mode := range []string{"500", "html", "truncated"} {
		t.Run(mode, func(t *testing.T) {
			a, r := newAPI(t), newReceiver(t)
			a.set("1", map[string]any{"status": "new"})
			a.set("2", map[string]any{"status": "new"})
			h := start(t, oneSource(a.URL, r.URL, ""))
			h.poll(t, "orders")

			a.setMode(mode)
			if _, err := h.Engine.Poll(context.Background(), "orders"); err == nil {
				t.Fatalf("poll of a %s answer succeeded", mode)
			}
			a.setMode("")
			if res := h.poll(t, "orders"); len(res.Events) != 0 || res.Committed {
				t.Fatalf("poll after recovery: %+v, want nothing", res)
			}
			h.stop(t)
			if n := len(r.deliveries()); n != 0 {
				t.Fatalf("%d webhooks sent for a failing source", n)
			}
		})
	}
	t.Run("empty array after an error", func(t *testing.T) {
		a, r := newAPI(t), newReceiver(t)
		a.set("1", nil)
		a.set("2", nil)
		h := start(t, oneSource(a.URL, r.URL, ""))
		h.poll(t, "orders")
		a.setMode("500")
		h.Engine.Poll(context.Background(), "orders")
		a.setMode("empty")
		if res := h.poll(t, "orders"); len(res.Events) != 0 || res.HeldDeletes != 2 {
			t.Fatalf("empty answer: %+v, want 2 deletions held back and no events", res)
		}
		a.setMode("")
		if res := h.poll(t, "orders"); len(res.Events) != 0 {
			t.Fatalf("after recovery: %d events", len(res.Events))
		}
		h.stop(t)
		if n := len(r.deliveries()); n != 0 {
			t.Fatalf("%d webhooks sent", n)
		}
	})
}

// A receiver that fails, then recovers, gets the event after retries, with
// the same webhook-id and the same body at every attempt.
func TestEngineRetriesUntilReceiverRecovers(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusRequestTimeout} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			a, r := newAPI(t), newReceiver(t)
			h := start(t, oneSource(a.URL, r.URL, ""))
			h.poll(t, "orders")
			r.fail(3, status)
			a.set("1", map[string]any{"status": "new"})
			h.poll(t, "orders")
			eventually(t, "delivery after retries", func() bool { return len(r.deliveries()) == 1 })
			d := r.deliveries()[0]
			r.mu.Lock()
			bodies := r.attempts[d.ID]
			r.mu.Unlock()
			if len(bodies) != 4 {
				t.Fatalf("attempts = %d, want 4 (3 failures + 1 success)", len(bodies))
			}
			for _, b := range bodies {
				if b != bodies[0] {
					t.Fatalf("a retry changed the body:\n%s\n%s", bodies[0], b)
				}
			}
		})
	}
}

// A 4xx is not retried: the event goes to the dead letters at once, is kept,
// and is delivered when replayed.
func TestEnginePermanentFailureIsDeadLetteredAndReplayable(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	h := start(t, oneSource(a.URL, r.URL, ""))
	h.poll(t, "orders")
	r.fail(1, http.StatusBadRequest)
	a.set("1", map[string]any{"status": "new"})
	h.poll(t, "orders")
	var dead []store.Delivery
	eventually(t, "a dead letter", func() bool {
		var err error
		dead, err = h.Store.Dead(context.Background(), "app")
		return err == nil && len(dead) == 1
	})
	if dead[0].Attempts != 1 || !strings.Contains(dead[0].LastError, "400") {
		t.Errorf("dead letter = %+v", dead[0])
	}
	r.mu.Lock()
	attempts := len(r.attempts[dead[0].EventID])
	r.mu.Unlock()
	if attempts != 1 {
		t.Fatalf("a 400 was attempted %d times", attempts)
	}
	if n, err := h.Store.Replay(context.Background(), "app", nil); err != nil || n != 1 {
		t.Fatalf("replay = %d, %v", n, err)
	}
	eventually(t, "replayed delivery", func() bool { return len(r.deliveries()) == 1 })
	if got := r.deliveries()[0].ID; got != dead[0].EventID {
		t.Errorf("replayed webhook-id %s, want %s", got, dead[0].EventID)
	}
}

func TestEngineDeadLettersAfterLastAttempt(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	cfg := strings.Replace(oneSource(a.URL, r.URL, ""), "max_backoff: 100ms}", "max_backoff: 100ms, max_attempts: 3}", 1)
	h := start(t, cfg)
	h.poll(t, "orders")
	r.fail(100, http.StatusInternalServerError)
	a.set("1", nil)
	h.poll(t, "orders")
	eventually(t, "a dead letter", func() bool {
		dead, err := h.Store.Dead(context.Background(), "app")
		return err == nil && len(dead) == 1 && dead[0].Attempts == 3
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, b := range r.attempts {
		if len(b) != 3 {
			t.Errorf("%s attempted %d times, want 3", id, len(b))
		}
	}
}

// One receiver that hangs must not hold up another.
func TestEngineSlowSinkDoesNotDelayOthers(t *testing.T) {
	a, slow, fast := newAPI(t), newReceiver(t), newReceiver(t)
	slow.block = make(chan struct{})
	defer close(slow.block)
	h := start(t, fmt.Sprintf(`
state: {path: STATE_PATH}
shutdown_timeout: 1s
sinks:
  - {name: slow, url: %s, secret: %s, timeout: 30s, concurrency: 1}
  - {name: fast, url: %s, secret: %s}
sources:
  - {name: orders, schedule: "@every 1h", url: %s, items: data, key: id}
`, slow.URL, testSecret, fast.URL, testSecret, a.URL))
	h.poll(t, "orders")
	for i := range 5 {
		a.set(fmt.Sprint(i), nil)
	}
	h.poll(t, "orders")
	eventually(t, "all events at the fast sink", func() bool { return len(fast.deliveries()) == 5 })
	if n := len(slow.deliveries()); n != 0 {
		t.Fatalf("slow sink got %d", n)
	}
}

// The cron scheduler polls on its own: the first tick records the baseline
// and a later tick delivers a change.
func TestEngineSchedulesPolls(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	cfg := strings.Replace(oneSource(a.URL, r.URL, ""), `"@every 1h"`, `"@every 1s"`, 1)
	start(t, cfg)
	eventually(t, "a scheduled poll", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.gets > 0
	})
	a.set("1", nil)
	eventually(t, "a delivery from a scheduled poll", func() bool { return len(r.deliveries()) == 1 })
}

// Shutdown lets a delivery in flight finish before Run returns.
func TestEngineShutdownFinishesInFlightDelivery(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	release := make(chan struct{})
	r.block = release
	h := start(t, oneSource(a.URL, r.URL, ""))
	h.poll(t, "orders")
	a.set("1", nil)
	h.poll(t, "orders")
	// Wait until the request is at the receiver, then shut down.
	eventually(t, "request in flight", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.arrived == 1
	})
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	h.stop(t)
	if n := len(r.deliveries()); n != 1 {
		t.Fatalf("in-flight delivery not finished at shutdown: %d delivered", n)
	}
	stats, err := h.Store.Stats(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if stats["app"].Pending != 0 {
		t.Fatalf("delivered event still in the outbox: %+v", stats["app"])
	}
}

// The API answers with ETags: unchanged answers cost a 304 and no events,
// and a held-back mass deletion is confirmed by the next full answer rather
// than left pending behind 304s.
func TestEngineConditionalRequestsAndHeldDeletions(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	a.set("1", nil)
	a.set("2", nil)
	h := start(t, oneSource(a.URL, r.URL, ""))
	h.poll(t, "orders")
	if res := h.poll(t, "orders"); !res.NotModified {
		t.Fatalf("unchanged answer: %+v, want not modified", res)
	}
	a.del("1") // every item really goes away
	a.del("2")
	if res := h.poll(t, "orders"); res.HeldDeletes != 2 || len(res.Events) != 0 {
		t.Fatalf("first empty answer: %+v, want 2 held deletions", res)
	}
	res := h.poll(t, "orders")
	if res.NotModified || len(res.Events) != 2 {
		t.Fatalf("second empty answer: %+v, want the 2 deletions confirmed", res)
	}
	eventually(t, "2 deletions delivered", func() bool { return len(r.deliveries()) == 2 })
	if res := h.poll(t, "orders"); !res.NotModified {
		t.Fatalf("after confirmation: %+v, want not modified again", res)
	}
}

// A stored event that does not decode (a damaged store) is dead-lettered
// with the reason, never sent, and the deliveries behind it still go out.
func TestEngineUnreadableEventIsDeadLettered(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	h := start(t, oneSource(a.URL, r.URL, ""))
	h.poll(t, "orders") // the baseline: generation 1
	bad := store.Delivery{ID: "bad", EventID: "evt_bad", Sink: "app", Source: "orders", Key: "x",
		Payload: json.RawMessage(`{"id":"evt_bad","type":`)}
	if err := h.Store.Commit(context.Background(), store.Commit{Source: "orders", Generation: 1, Deliveries: []store.Delivery{bad}}); err != nil {
		t.Fatal(err)
	}
	h.Engine.WakeSink("app")
	a.set("1", map[string]any{"status": "new"})
	h.poll(t, "orders")
	var dead []store.Delivery
	eventually(t, "the unreadable event in the dead letters and the good one delivered", func() bool {
		var err error
		dead, err = h.Store.Dead(context.Background(), "app")
		return err == nil && len(dead) == 1 && len(r.deliveries()) == 1
	})
	if dead[0].ID != "bad" || !strings.Contains(dead[0].LastError, "decode stored event") {
		t.Errorf("dead letter = %+v, want the unreadable one with its reason", dead[0])
	}
	r.mu.Lock()
	sent := len(r.attempts["evt_bad"])
	r.mu.Unlock()
	if sent != 0 {
		t.Errorf("the unreadable event was sent %d times", sent)
	}
}
