package admin_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/admin"
)

// The probes: alive always, ready until shutdown begins or while the store
// does not answer.
func TestProbes(t *testing.T) {
	a, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(a.URL, a.URL, r.URL), "")
	if status, body := d.call(t, "GET", "/healthz", ""); status != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("healthz: %d %q", status, body)
	}
	if status, body := d.call(t, "GET", "/readyz", ""); status != 200 {
		t.Fatalf("readyz while running: %d %q", status, body)
	}
	c, err := admin.NewClient(d.url, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(t.Context()); err != nil {
		t.Fatalf("client Ready: %v", err)
	}

	d.stop(t) // shutdown begins (and ends): not ready, still alive
	eventually(t, "readyz to answer 503", func() bool {
		status, _ := d.call(t, "GET", "/readyz", "")
		return status == http.StatusServiceUnavailable
	})
	if _, body := d.call(t, "GET", "/readyz", ""); !strings.Contains(body, "shutting down") {
		t.Errorf("readyz body: %q", body)
	}
	if status, _ := d.call(t, "GET", "/healthz", ""); status != 200 {
		t.Errorf("healthz after shutdown began: %d", status)
	}
	if err := c.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("client Ready while shutting down: %v", err)
	}
}

// A store that does not answer makes the daemon unready.
func TestReadyzChecksTheStore(t *testing.T) {
	a, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(a.URL, a.URL, r.URL), "")
	srv := admin.New(admin.Options{Engine: d.Engine})
	d.stop(t)
	d.Store.Close()
	rec := newRecorder(srv, "GET", "/readyz", "")
	if rec.code != http.StatusServiceUnavailable || !strings.Contains(rec.body, "store unreachable") {
		t.Fatalf("readyz with a closed store: %d %q", rec.code, rec.body)
	}
}

// With a token, everything but the probes and the page wants it.
func TestTokenGuardsEverythingButProbesAndPage(t *testing.T) {
	const token = "correct horse battery staple"
	a, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(a.URL, a.URL, r.URL), token)
	for _, path := range []string{"/healthz", "/readyz", "/"} {
		if status, _ := d.call(t, "GET", path, ""); status != 200 {
			t.Errorf("GET %s without token: %d", path, status)
		}
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/metrics"}, {"GET", "/api/sources"}, {"GET", "/api/sinks"}, {"GET", "/api/dead"}, {"GET", "/api/deliveries"},
		{"POST", "/api/sinks/app/pause"}, {"POST", "/api/sources/orders/poll"}, {"POST", "/api/dead/replay"},
	} {
		for _, tok := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
			status, body := d.call(t, tc.method, tc.path, tok)
			if status != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s", tc.method, tc.path, tok, status, body)
			}
			if strings.Contains(body, token) {
				t.Errorf("%s %s: answer shows the token", tc.method, tc.path)
			}
		}
	}
	if st, _ := d.Engine.SinkStatus("app"); st.State != bridge.SinkActive {
		t.Fatalf("an unauthorized pause took effect: %+v", st)
	}
	if status, body := d.call(t, "GET", "/metrics", token); status != 200 || !strings.Contains(body, "pollbridge_build_info") {
		t.Errorf("metrics with token: %d", status)
	}
	if status, _ := d.call(t, "POST", "/api/sinks/app/pause", token); status != 200 {
		t.Errorf("pause with token: %d", status)
	}
	if st, _ := d.Engine.SinkStatus("app"); st.State != bridge.SinkPaused {
		t.Errorf("pause with token did not pause: %+v", st)
	}
	// No token configured: nothing asks for one.
	srv := admin.New(admin.Options{Engine: d.Engine})
	if rec := newRecorder(srv, "GET", "/api/sources", ""); rec.code != 200 {
		t.Errorf("no token configured: %d %s", rec.code, rec.body)
	}
}

// Without a token only loopback Host names are served (no DNS rebinding),
// and other origins cannot make a browser change anything.
func TestBrowserAttacksAreRefused(t *testing.T) {
	a, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(a.URL, a.URL, r.URL), "")
	srv := admin.New(admin.Options{Engine: d.Engine})

	req := newRequest("GET", "/api/sources", "")
	req.Host = "attacker.example:9090"
	if rec := serve(srv, req); rec.code != http.StatusMisdirectedRequest {
		t.Errorf("rebound Host: %d %s", rec.code, rec.body)
	}
	for _, host := range []string{"localhost:9090", "127.0.0.1:9090", "[::1]:9090"} {
		req := newRequest("GET", "/api/sources", "")
		req.Host = host
		if rec := serve(srv, req); rec.code != 200 {
			t.Errorf("Host %s: %d %s", host, rec.code, rec.body)
		}
	}

	req = newRequest("POST", "/api/sinks/app/pause", "")
	req.Header.Set("Origin", "http://attacker.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if rec := serve(srv, req); rec.code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d %s", rec.code, rec.body)
	}
	if st, _ := d.Engine.SinkStatus("app"); st.State != bridge.SinkActive {
		t.Fatalf("a cross-site pause took effect: %+v", st)
	}
	req = newRequest("POST", "/api/sinks/app/pause", "")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if rec := serve(srv, req); rec.code != 200 {
		t.Errorf("same-origin POST: %d %s", rec.code, rec.body)
	}
}

// Sources: status and health, poll now, errors shown.
func TestAPISourcesAndPollNow(t *testing.T) {
	orders, broken, r := newAPI(t, "1", "2"), newAPI(t, "x"), newReceiver(t, http.StatusOK)
	broken.setFail(true)
	d := startDaemon(t, testConfig(orders.URL, broken.URL, r.URL), "")

	var out admin.Sources
	d.getJSON(t, "/api/sources", "", &out)
	if len(out.Sources) != 2 || out.Sources[0].Name != "orders" || out.Sources[0].Health != bridge.SourcePending ||
		out.Sources[0].Schedule != "@every 1h" || out.Sources[0].NextPoll.IsZero() {
		t.Fatalf("sources before any poll: %+v", out)
	}

	status, body := d.call(t, "POST", "/api/sources/orders/poll", "")
	if status != 200 || !strings.Contains(body, `"result": "ok"`) || !strings.Contains(body, `"items": 2`) || !strings.Contains(body, `"events": 2`) {
		t.Fatalf("poll orders: %d %s", status, body)
	}
	eventually(t, "2 deliveries", func() bool { return r.received() == 2 })

	status, body = d.call(t, "POST", "/api/sources/broken/poll", "")
	if status != http.StatusBadGateway || !strings.Contains(body, `"result": "error"`) || !strings.Contains(body, "500") {
		t.Fatalf("poll broken: %d %s", status, body)
	}
	var info bridge.SourceInfo
	d.getJSON(t, "/api/sources/broken", "", &info)
	if info.Health != bridge.SourceBackingOff || !strings.Contains(info.LastError, "500") || info.LastResult != bridge.PollError ||
		info.ConsecutiveFailures != 1 || info.NextPoll.Add(time.Second).Before(info.BackoffUntil) {
		t.Errorf("broken after a failure (pause 2h > interval): %+v", info)
	}
	info = bridge.SourceInfo{}
	d.getJSON(t, "/api/sources/orders", "", &info)
	if info.Health != bridge.SourceOK || info.Items != 2 || info.LastResult != bridge.PollOK || info.LastPoll.IsZero() || info.LastError != "" {
		t.Errorf("orders: %+v", info)
	}
	orders.setFail(true)
	d.call(t, "POST", "/api/sources/orders/poll", "")
	// Once its 1s pause is over, no tick is skipped: failing, not backing off.
	eventually(t, "orders failing", func() bool {
		info = bridge.SourceInfo{}
		d.getJSON(t, "/api/sources/orders", "", &info)
		return info.Health == bridge.SourceFailing
	})
	if !strings.Contains(info.LastError, "500") || info.Items != 2 || info.ConsecutiveFailures != 1 {
		t.Errorf("orders after a failure: %+v", info)
	}
	orders.setFail(false)

	orders.add("3")
	d.call(t, "POST", "/api/sources/orders/poll", "")
	info = bridge.SourceInfo{}
	d.getJSON(t, "/api/sources/orders", "", &info)
	if info.LastChange.IsZero() || info.LastChange.Before(info.LastPoll) || info.Items != 3 {
		t.Errorf("orders after a change: %+v", info)
	}

	if status, _ := d.call(t, "POST", "/api/sources/nope/poll", ""); status != 404 {
		t.Errorf("poll unknown source: %d", status)
	}
	if status, _ := d.call(t, "GET", "/api/sources/nope", ""); status != 404 {
		t.Errorf("unknown source: %d", status)
	}
	if status, body := d.call(t, "GET", "/api/nothing", ""); status != 404 || !strings.Contains(body, "no such endpoint") {
		t.Errorf("unknown endpoint: %d %s", status, body)
	}
}

// Dead letters: listed with attempts and last error, counted per sink,
// replayed by ID and per sink.
func TestAPIDeadLettersAndReplay(t *testing.T) {
	orders, r := newAPI(t, "1", "2"), newReceiver(t, http.StatusUnprocessableEntity)
	d := startDaemon(t, testConfig(orders.URL, orders.URL, r.URL), "")
	d.call(t, "POST", "/api/sources/orders/poll", "")
	eventually(t, "2 dead letters", func() bool { return d.sink(t, "app", "").Outbox.Dead == 2 })

	var dead admin.Dead
	d.getJSON(t, "/api/dead?sink=app", "", &dead)
	if dead.Total != 2 || len(dead.Dead) != 2 {
		t.Fatalf("dead: %+v", dead)
	}
	for _, dl := range dead.Dead {
		if dl.Attempts != 1 || !strings.Contains(dl.LastError, "422") || dl.Sink != "app" || dl.Dead.IsZero() {
			t.Errorf("dead letter: %+v", dl)
		}
	}
	d.getJSON(t, "/api/dead?limit=1", "", &dead)
	if dead.Total != 2 || len(dead.Dead) != 1 {
		t.Errorf("dead?limit=1: total %d, %d listed", dead.Total, len(dead.Dead))
	}
	if status, _ := d.call(t, "GET", "/api/dead?limit=-1", ""); status != 400 {
		t.Errorf("bad limit: %d", status)
	}

	r.setStatus(http.StatusNoContent)
	d.getJSON(t, "/api/dead", "", &dead)
	first := dead.Dead[0].ID
	status, body := d.call(t, "POST", "/api/dead/"+first+"/replay", "")
	if status != 200 || !strings.Contains(body, `"replayed": 1`) {
		t.Fatalf("replay one: %d %s", status, body)
	}
	eventually(t, "the replayed dead letter delivered", func() bool { return r.received() == 1 })
	if status, _ := d.call(t, "POST", "/api/dead/"+first+"/replay", ""); status != 404 {
		t.Errorf("replay it again: %d", status)
	}

	status, body = d.call(t, "POST", "/api/sinks/app/replay", "")
	if status != 200 || !strings.Contains(body, `"replayed": 1`) {
		t.Fatalf("replay sink: %d %s", status, body)
	}
	eventually(t, "both delivered", func() bool { return r.received() == 2 })
	eventually(t, "an empty outbox", func() bool { s := d.sink(t, "app", "").Outbox; return *s == admin.Outbox{} })
	if status, _ := d.call(t, "POST", "/api/sinks/nope/replay", ""); status != 404 {
		t.Errorf("replay unknown sink: %d", status)
	}
}

// Pause holds deliveries in the outbox, resume sends them.
func TestAPIPauseResume(t *testing.T) {
	orders, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(orders.URL, orders.URL, r.URL), "")
	status, body := d.call(t, "POST", "/api/sinks/app/pause", "")
	if status != 200 || !strings.Contains(body, `"state": "paused"`) {
		t.Fatalf("pause: %d %s", status, body)
	}
	d.call(t, "POST", "/api/sources/orders/poll", "")
	if s := d.sink(t, "app", ""); s.Outbox.Pending != 1 || s.State != bridge.SinkPaused {
		t.Fatalf("paused sink: %+v %+v", s, s.Outbox)
	}
	if r.received() != 0 {
		t.Fatal("a paused sink delivered")
	}
	if status, body := d.call(t, "POST", "/api/sinks/app/resume", ""); status != 200 || !strings.Contains(body, `"state": "active"`) {
		t.Fatalf("resume: %d %s", status, body)
	}
	eventually(t, "the held delivery", func() bool { return r.received() == 1 })
	if status, _ := d.call(t, "POST", "/api/sinks/nope/pause", ""); status != 404 {
		t.Errorf("pause unknown sink: %d", status)
	}
}

// The client: dry run, dead letters and replay through a running daemon;
// an address nobody listens on is ErrUnreachable.
func TestClient(t *testing.T) {
	const token = "s3cret"
	orders, r := newAPI(t, "1"), newReceiver(t, http.StatusGone)
	d := startDaemon(t, testConfig(orders.URL, orders.URL, r.URL), token)
	c, err := admin.NewClient(d.url+"/", token)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dr, err := c.DryRun(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if dr.Source != "orders" || len(dr.Items) != 1 || dr.StateGeneration != 0 || len(dr.Events) != 1 || dr.Events[0].Type != bridge.ItemCreated {
		t.Fatalf("dry run: %+v", dr)
	}
	if _, err := c.DryRun(ctx, "orders"); err != nil { // committed nothing: same again
		t.Fatal(err)
	}
	if res, err := c.Poll(ctx, "orders"); err != nil || res.Events != 1 {
		t.Fatalf("poll: %+v %v", res, err)
	}
	// 410 Gone disables the sink; resume it with a receiver that refuses.
	eventually(t, "the sink disabled", func() bool { st, _ := d.Engine.SinkStatus("app"); return st.State == bridge.SinkDisabled })
	r.setStatus(http.StatusBadRequest)
	if err := d.Engine.ResumeSink("app"); err != nil {
		t.Fatal(err)
	}
	var dead []string
	eventually(t, "a dead letter", func() bool {
		dls, err := c.Dead(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		dead = nil
		for _, dl := range dls {
			dead = append(dead, dl.ID)
		}
		return len(dead) == 1
	})
	if _, err := c.Replay(ctx, "", []string{"no-such-id"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("replay unknown id: %v", err)
	}
	r.setStatus(http.StatusOK)
	if n, err := c.Replay(ctx, "", dead); n != 1 || err != nil {
		t.Fatalf("replay: %d %v", n, err)
	}
	eventually(t, "the delivery", func() bool { return r.received() == 1 })

	bad, _ := admin.NewClient(d.url, "wrong")
	if _, err := bad.Dead(ctx, ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	gone, _ := admin.NewClient("http://"+addr, "")
	if _, err := gone.Dead(ctx, ""); !errors.Is(err, admin.ErrUnreachable) {
		t.Errorf("nobody listening: %v", err)
	}
	if err := gone.Ready(context.Background()); !errors.Is(err, admin.ErrUnreachable) {
		t.Errorf("nobody listening, Ready: %v", err)
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9090": "http://127.0.0.1:9090",
		":9090":          "http://127.0.0.1:9090",
		"0.0.0.0:9090":   "http://127.0.0.1:9090",
		"[::]:9090":      "http://[::1]:9090",
		"[::1]:9090":     "http://[::1]:9090",
		"localhost:80":   "http://localhost:80",
	} {
		if got := admin.BaseURL(in); got != want {
			t.Errorf("BaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Profiles are served only when asked for, and behind the token.
func TestPprofBehindFlagAndToken(t *testing.T) {
	a, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(a.URL, a.URL, r.URL), "")
	off := admin.New(admin.Options{Engine: d.Engine})
	if rec := newRecorder(off, "GET", "/debug/pprof/", ""); rec.code != http.StatusNotFound {
		t.Errorf("pprof without the flag: %d, want 404", rec.code)
	}
	on := admin.New(admin.Options{Engine: d.Engine, Pprof: true, Token: "s3cret"})
	if rec := newRecorder(on, "GET", "/debug/pprof/", ""); rec.code != http.StatusUnauthorized {
		t.Errorf("pprof without the token: %d, want 401", rec.code)
	}
	rec := newRecorder(on, "GET", "/debug/pprof/goroutine?debug=1", "s3cret")
	if rec.code != http.StatusOK || !strings.Contains(rec.body, "goroutine profile") {
		t.Errorf("pprof with the flag and token: %d %.200s", rec.code, rec.body)
	}
}
