package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func testEvent() *bridge.Event {
	return &bridge.Event{
		ID: "evt_abc", Type: bridge.ItemUpdated, Time: detected, Source: "orders", Key: "42",
		Item:     json.RawMessage(`{"id":42,"status":"paid"}`),
		Previous: json.RawMessage(`{"id":42,"status":"new"}`),
		Changes:  []bridge.Change{{Op: "replace", Path: "/status", Old: json.RawMessage(`"new"`), New: json.RawMessage(`"paid"`)}},
	}
}

// request is what the test receiver saw.
type request struct {
	header http.Header
	body   []byte
}

// receiver records requests and answers with h (nil: 204).
type receiver struct {
	mu   sync.Mutex
	reqs []request
}

func newReceiver(t *testing.T, h http.HandlerFunc) (*receiver, *httptest.Server) {
	t.Helper()
	rc := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, request{header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		if h == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

func newWebhook(t *testing.T, cfg config.Sink) *Webhook {
	t.Helper()
	w, err := NewWebhook(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebhookSignsAndRepeats(t *testing.T) {
	rc, srv := newReceiver(t, nil)
	w := newWebhook(t, config.Sink{URL: srv.URL + "/hook", Secret: testSecret})
	clock := time.Unix(1_700_000_000, 0)
	w.now = func() time.Time { clock = clock.Add(time.Second); return clock }

	ev := testEvent()
	for range 2 {
		if err := w.Send(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	want, _ := Encode(ev)
	for i, r := range reqs {
		if !bytes.Equal(r.body, want) {
			t.Errorf("request %d body\n%s\nwant\n%s", i, r.body, want)
		}
		if id := r.header.Get("webhook-id"); id != "evt_abc" {
			t.Errorf("request %d webhook-id = %q", i, id)
		}
		if err := Verify(testSecret, r.header, r.body, time.Minute, clock); err != nil {
			t.Errorf("request %d does not verify: %v", i, err)
		}
	}
	if a, b := reqs[0].header.Get("webhook-timestamp"), reqs[1].header.Get("webhook-timestamp"); a != "1700000001" || b != "1700000002" {
		t.Errorf("timestamps %q, %q: want a fresh one per attempt", a, b)
	}
	if reqs[0].header.Get("webhook-signature") == reqs[1].header.Get("webhook-signature") {
		t.Error("signature did not change with the timestamp")
	}
}

// Concurrent sends of one sink share its HMAC hashes: every signature
// still verifies, however the hashes are handed around.
func TestWebhookSignsConcurrentSends(t *testing.T) {
	rc, srv := newReceiver(t, nil)
	w := newWebhook(t, config.Sink{URL: srv.URL, Secret: testSecret, Concurrency: 8})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 8 {
				ev := testEvent()
				ev.ID = fmt.Sprintf("evt_%d_%d", g, i)
				if err := w.Send(t.Context(), ev); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	reqs := rc.requests()
	if len(reqs) != 64 {
		t.Fatalf("%d requests, want 64", len(reqs))
	}
	for _, r := range reqs {
		if err := Verify(testSecret, r.header, r.body, time.Minute, time.Now()); err != nil {
			t.Errorf("%s does not verify: %v", r.header.Get("webhook-id"), err)
		}
	}
}

func TestWebhookHeaders(t *testing.T) {
	rc, srv := newReceiver(t, nil)
	w := newWebhook(t, config.Sink{URL: srv.URL, Headers: map[string]string{
		"Authorization":     "Bearer tok",
		"x-tenant":          "t1",
		"webhook-id":        "forged",
		"Webhook-Signature": "forged",
	}})
	if err := w.Send(context.Background(), testEvent()); err != nil {
		t.Fatal(err)
	}
	h := rc.requests()[0].header
	for k, want := range map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "pollbridge",
		"Authorization":     "Bearer tok",
		"X-Tenant":          "t1",
		"Webhook-Id":        "evt_abc",
		"Webhook-Signature": "", // no secret: unsigned
	} {
		if got := h.Values(k); strings.Join(got, "|") != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if h.Get("Webhook-Timestamp") == "" {
		t.Error("no webhook-timestamp")
	}
}

func TestWebhookClassify(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		status     int
		retryAfter string
		body       string
		wantOK     bool
		permanent  bool
		wantAfter  time.Duration
		wantErr    string
	}{
		{status: 200, wantOK: true},
		{status: 204, wantOK: true},
		{status: 301, permanent: true, wantErr: "status 301: redirects are not followed"},
		{status: 400, body: `{"error":"bad payload"}`, permanent: true, wantErr: `status 400: Bad Request: "{\"error\":\"bad payload\"}"`},
		{status: 404, permanent: true, wantErr: "status 404: Not Found"},
		{status: 408, wantErr: "status 408: Request Timeout"},
		{status: 410, permanent: true, wantErr: "status 410: Gone"},
		{status: 429, retryAfter: "7", wantAfter: 7 * time.Second},
		{status: 429, retryAfter: now.Add(90 * time.Second).Format(http.TimeFormat), wantAfter: 90 * time.Second},
		{status: 429, retryAfter: now.Add(-time.Hour).Format(http.TimeFormat), wantAfter: 0},
		{status: 429, retryAfter: "soon", wantAfter: 0},
		{status: 500, body: "<html>\n<h1>Oops</h1>\x00\x01" + strings.Repeat(" x", 300), wantErr: `status 500: Internal Server Error: "<html> <h1>Oops</h1> x x`},
		{status: 503, retryAfter: "120", wantAfter: 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status)+" "+tt.retryAfter, func(t *testing.T) {
			var redirected atomic.Bool
			_, srv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					redirected.Store(true)
					return
				}
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.status >= 300 && tt.status < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			w := newWebhook(t, config.Sink{URL: srv.URL})
			w.now = func() time.Time { return now }
			err := w.Send(context.Background(), testEvent())
			if redirected.Load() {
				t.Error("redirect was followed")
			}
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
				return
			}
			var de *bridge.DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Send = %v (%T), want a *bridge.DeliveryError", err, err)
			}
			if de.Status != tt.status || de.Permanent != tt.permanent || de.RetryAfter != tt.wantAfter {
				t.Errorf("DeliveryError{Status %d, Permanent %v, RetryAfter %v}, want {%d, %v, %v}",
					de.Status, de.Permanent, de.RetryAfter, tt.status, tt.permanent, tt.wantAfter)
			}
			if bridge.IsPermanent(err) != tt.permanent {
				t.Errorf("IsPermanent = %v", !tt.permanent)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
			}
			if len(err.Error()) > 300 {
				t.Errorf("err is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestWebhookErrorsHideSecrets(t *testing.T) {
	const headerValue = "Bearer sup3r-s3cret"
	_, srv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "rejected "+r.Header.Get("Authorization")+" for signature key "+testSecret)
	})
	w := newWebhook(t, config.Sink{URL: srv.URL + "/hooks/T0/tok3n?sig=qs3cret", Secret: testSecret,
		Headers: map[string]string{"Authorization": headerValue}})
	err := w.Send(context.Background(), testEvent())
	if err == nil {
		t.Fatal("Send succeeded")
	}
	for _, bad := range []string{headerValue, "sup3r-s3cret", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "tok3n", "qs3cret"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("err %q contains %q", err, bad)
		}
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("err %q: want the echoed secrets redacted", err)
	}

	srv.Close() // connection refused from now on
	err = w.Send(context.Background(), testEvent())
	if err == nil || strings.Contains(err.Error(), "tok3n") || strings.Contains(err.Error(), "qs3cret") {
		t.Errorf("err = %v: want a network error without the URL's path", err)
	}
}

func TestWebhookNetworkErrorsAreRetryable(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		_, srv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})
		w := newWebhook(t, config.Sink{URL: srv.URL, Timeout: 50 * time.Millisecond})
		err := w.Send(context.Background(), testEvent())
		if err == nil || bridge.IsPermanent(err) {
			t.Fatalf("Send = %v, want a retryable error", err)
		}
		var de *bridge.DeliveryError
		if errors.As(err, &de) {
			t.Errorf("timeout is a DeliveryError: %v", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 50ms") {
			t.Errorf("err = %v, want a timeout after 50ms", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		w := newWebhook(t, config.Sink{URL: srv.URL})
		err := w.Send(context.Background(), testEvent())
		if err == nil || bridge.IsPermanent(err) {
			t.Fatalf("Send = %v, want a retryable error", err)
		}
		if !strings.Contains(err.Error(), "POST "+srv.URL+": ") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		_, srv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
			cancel()
			<-r.Context().Done()
		})
		w := newWebhook(t, config.Sink{URL: srv.URL})
		err := w.Send(ctx, testEvent())
		if !errors.Is(err, context.Canceled) || bridge.IsPermanent(err) {
			t.Fatalf("Send = %v, want context.Canceled", err)
		}
	})
}

func TestWebhookDrainsAnswer(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	_, srv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		io.WriteString(w, strings.Repeat("ok ", 1000))
	})
	w := newWebhook(t, config.Sink{URL: srv.URL})
	for range 3 {
		if err := w.Send(context.Background(), testEvent()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 1 {
		t.Errorf("%d connections for 3 sequential sends, want 1 (reused)", len(conns))
	}
}

func TestWebhookBadEventIsPermanent(t *testing.T) {
	rc, srv := newReceiver(t, nil)
	w := newWebhook(t, config.Sink{URL: srv.URL})
	bad := []*bridge.Event{
		{ID: "e", Item: json.RawMessage(`{`)},
		{Item: json.RawMessage(`{}`)},
	}
	for _, ev := range bad {
		if err := w.Send(context.Background(), ev); !bridge.IsPermanent(err) {
			t.Errorf("Send(%+v) = %v, want a permanent error", ev, err)
		}
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests sent for bad events", n)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		cfg     config.Sink
		want    string // type name
		wantErr string
	}{
		{cfg: config.Sink{URL: "https://example.com/hook"}, want: "*sinks.Webhook"},
		{cfg: config.Sink{Type: "webhook", URL: "http://127.0.0.1:9/x", Secret: testSecret}, want: "*sinks.Webhook"},
		{cfg: config.Sink{Type: "stdout"}, want: "*sinks.Stdout"},
		{cfg: config.Sink{Type: "kafka"}, wantErr: `unknown sink type "kafka"`},
		{cfg: config.Sink{URL: "ftp://example.com"}, wantErr: `scheme "ftp"`},
		{cfg: config.Sink{URL: "https://example.com/t0ken x\x7f"}, wantErr: "parse url: "},
		{cfg: config.Sink{URL: "https://example.com", Secret: "whsec_n0t*val!d"}, wantErr: "invalid secret"},
	}
	for _, tt := range tests {
		s, err := New(tt.cfg, nil)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New(%+v) err = %v, want %q", tt.cfg, err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "n0t*val") || strings.Contains(err.Error(), "t0ken")) {
				t.Errorf("err leaks config: %v", err)
			}
			if s != nil {
				t.Errorf("New returned a sink with an error")
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%+v) = %v", tt.cfg, err)
			continue
		}
		if got := typeName(s); got != tt.want {
			t.Errorf("New(%+v) = %s, want %s", tt.cfg, got, tt.want)
		}
	}
}

func typeName(s bridge.Sink) string {
	switch s.(type) {
	case *Webhook:
		return "*sinks.Webhook"
	case *Stdout:
		return "*sinks.Stdout"
	}
	return "?"
}

func TestNewDoesNotModifyClient(t *testing.T) {
	c := &http.Client{}
	if _, err := New(config.Sink{URL: "http://127.0.0.1/"}, c); err != nil {
		t.Fatal(err)
	}
	if c.CheckRedirect != nil {
		t.Error("New changed the caller's client")
	}
}

// The default client keeps an idle connection for every delivery in flight
// and has no overall cap on idle connections: Go's cap of 100 fails a
// request that the receiver already accepted when more are in flight, and
// the event would be sent twice.
func TestWebhookKeepsAConnectionPerDeliveryInFlight(t *testing.T) {
	w := newWebhook(t, config.Sink{URL: "http://127.0.0.1:1/hook", Concurrency: 200})
	tr, ok := w.client.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is a %T", w.client.Transport)
	}
	if tr.MaxIdleConnsPerHost != 200 || tr.MaxIdleConns != 0 {
		t.Errorf("MaxIdleConnsPerHost %d, MaxIdleConns %d; want 200 and 0 (no cap)", tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
	}
}
