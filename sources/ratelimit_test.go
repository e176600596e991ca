package sources

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/config"
)

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		v      string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"Fri, 02 Jan 2026 03:05:05 GMT", time.Minute, true},
		{"Fri, 02 Jan 2026 03:00:00 GMT", 0, true}, // in the past
		{"99999999999999", 365 * 24 * time.Hour, true},
		{"-5", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.v != "" {
			h.Set("Retry-After", tt.v)
		}
		got, ok := retryAfter(h, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.v, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRetryAfterResponses(t *testing.T) {
	tests := []struct {
		name      string
		answers   []int  // status of each request; 200 = the page
		after     string // Retry-After of the refusals
		timeout   time.Duration
		wantReqs  int32
		wantSlept []time.Duration
		wantErr   string
		wantRetry bool // a *RetryAfterError
	}{
		{name: "429 then ok", answers: []int{429, 200}, after: "2", wantReqs: 2, wantSlept: []time.Duration{2 * time.Second}},
		{name: "503 then ok", answers: []int{503, 200}, after: "0", wantReqs: 2, wantSlept: []time.Duration{0}},
		{name: "refused twice", answers: []int{429, 429}, after: "1", wantReqs: 2, wantSlept: []time.Duration{time.Second},
			wantErr: "fetch page 1: status 429 Too Many Requests: the API asks to retry after", wantRetry: true},
		{name: "beyond the timeout", answers: []int{429}, after: "3600", timeout: time.Minute, wantReqs: 1,
			wantErr: "(later than the fetch timeout allows)", wantRetry: true},
		{name: "429 without Retry-After", answers: []int{429}, wantReqs: 1, wantErr: "fetch page 1: status 429 Too Many Requests: \"slow down\""},
		{name: "500 is not retried", answers: []int{500}, after: "1", wantReqs: 1, wantErr: "status 500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				if i >= len(tt.answers) || tt.answers[i] == 200 {
					io.WriteString(w, `[{"id":1}]`)
					return
				}
				if tt.after != "" {
					w.Header().Set("Retry-After", tt.after)
				}
				w.WriteHeader(tt.answers[i])
				io.WriteString(w, "slow down")
			}))
			defer srv.Close()
			s, err := NewHTTP(config.Source{URL: srv.URL, Key: config.KeyPaths{"id"}, Timeout: tt.timeout}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var slept []time.Duration
			s.sleep = func(ctx context.Context, d time.Duration) error {
				slept = append(slept, d)
				return nil
			}
			snap, err := s.Fetch(context.Background(), map[string]string{})
			if got := n.Load(); got != tt.wantReqs {
				t.Errorf("requests = %d, want %d", got, tt.wantReqs)
			}
			if len(slept) != len(tt.wantSlept) || (len(slept) > 0 && slept[0] != tt.wantSlept[0]) {
				t.Errorf("slept %v, want %v", slept, tt.wantSlept)
			}
			if tt.wantErr == "" {
				if err != nil || keys(snap) != "1" || len(snap.Requests) != len(tt.answers) || snap.Requests[0].Status != tt.answers[0] {
					t.Fatalf("Fetch = %+v, %v", snap, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			var rae *RetryAfterError
			if errors.As(err, &rae) != tt.wantRetry {
				t.Errorf("errors.As RetryAfterError = %v, want %v", !tt.wantRetry, tt.wantRetry)
			}
			if rae != nil {
				if d := time.Until(rae.RetryAt()); d <= 0 || d > time.Hour+time.Minute {
					t.Errorf("RetryAt in %v", d)
				}
			}
		})
	}
}

// TestRetryAfterWaitIsCanceled: the real wait ends with the context.
func TestRetryAfterWaitIsCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	s, err := NewHTTP(config.Source{URL: srv.URL, Key: config.KeyPaths{"id"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.sleep = func(ctx context.Context, d time.Duration) error {
		cancel() // the caller gives up during the wait
		return sleepCtx(ctx, d)
	}
	start := time.Now()
	_, err = s.Fetch(ctx, map[string]string{})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "wait 20s for Retry-After") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the wait was not canceled")
	}
}

// countingServer answers every request with a one-item page and a Link to
// a next page while page < pages.
func countingServer(t *testing.T, pages int) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		p := r.URL.Query().Get("page")
		if p == "" {
			p = "1"
		}
		if int(p[0]-'0') < pages {
			w.Header().Set("Link", `</items?page=`+string(p[0]+1)+`>; rel="next"`)
		}
		io.WriteString(w, `[{"id":`+p+`}]`)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestSourceRateLimit(t *testing.T) {
	srv, n := countingServer(t, 3)
	// One request an hour, two at once: the third page cannot be fetched
	// within the timeout, which fails at once rather than after waiting.
	s, err := NewHTTP(config.Source{URL: srv.URL + "/items", Key: config.KeyPaths{"id"}, RateLimit: 1.0 / 3600, RateBurst: 2,
		Pagination: &config.Pagination{Type: config.PageLink, MaxPages: 10}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Fetch(context.Background(), map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "fetch page 3: wait for rate limit: the next free slot is after the fetch timeout") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("requests = %d, want 2 (the burst)", n.Load())
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the fetch waited")
	}
}

func TestHostRateLimitShared(t *testing.T) {
	srv, n := countingServer(t, 1)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	reg := NewRegistry(&config.Config{Hosts: []config.Host{{Host: "127.0.0.1", RateLimit: 1.0 / 3600, RateBurst: 2}}}, nil)
	newSrc := func(name, url string) *HTTP {
		s, err := reg.NewHTTP(config.Source{Name: name, URL: url, Key: config.KeyPaths{"id"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := newSrc("a", srv.URL+"/a"), newSrc("b", srv.URL+"/b")
	other := newSrc("c", "http://localhost:"+strings.Split(hostPort, ":")[1]+"/c") // another host name
	ctx := context.Background()
	for _, s := range []*HTTP{a, b} {
		if _, err := s.Fetch(ctx, map[string]string{}); err != nil {
			t.Fatal(err)
		}
	}
	// The host's burst is spent by a and b together.
	if _, err := a.Fetch(ctx, map[string]string{}); err == nil || !strings.Contains(err.Error(), "wait for rate limit") {
		t.Fatalf("third request to the host: err = %v, want a rate limit error", err)
	}
	if n.Load() != 2 {
		t.Errorf("requests = %d, want 2", n.Load())
	}
	for range 3 {
		if _, err := other.Fetch(ctx, map[string]string{}); err != nil {
			t.Fatalf("a host without a limit: %v", err)
		}
	}

	// host:port entries win over host names.
	reg2 := NewRegistry(&config.Config{Hosts: []config.Host{
		{Host: "127.0.0.1", RateLimit: 1.0 / 3600, RateBurst: 1},
		{Host: strings.ToUpper(hostPort), RateLimit: 1000, RateBurst: 10},
	}}, nil)
	s, err := reg2.NewHTTP(config.Source{URL: srv.URL, Key: config.KeyPaths{"id"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Fetch(ctx, map[string]string{}); err != nil {
			t.Fatalf("host:port limit should apply: %v", err)
		}
	}
}

// The sources of one Registry share one client whose transport keeps many
// idle connections per host: Go's default of 2 made most polls of sources
// on one API dial a new connection.
func TestRegistrySourcesShareAPooledClient(t *testing.T) {
	reg := NewRegistry(nil, nil)
	a, err := reg.NewHTTP(config.Source{Name: "a", URL: "http://127.0.0.1:1/a", Key: config.KeyPaths{"id"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.NewHTTP(config.Source{Name: "b", URL: "http://127.0.0.1:1/b", Key: config.KeyPaths{"id"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.client.Transport != b.client.Transport {
		t.Error("two sources of one Registry have transports of their own")
	}
	tr, ok := a.client.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is a %T", a.client.Transport)
	}
	if tr.MaxIdleConnsPerHost != maxIdleConnsPerHost || tr.MaxIdleConns != 0 {
		t.Errorf("MaxIdleConnsPerHost %d, MaxIdleConns %d; want %d and 0 (no cap)", tr.MaxIdleConnsPerHost, tr.MaxIdleConns, maxIdleConnsPerHost)
	}
}
