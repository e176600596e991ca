package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

// newSource starts an httptest server with h and returns a source for it.
func newSource(t *testing.T, h http.HandlerFunc, cfg config.Source, client *http.Client) *HTTP {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if cfg.URL == "" {
		cfg.URL = srv.URL + "/items"
	}
	s, err := NewHTTP(cfg, client)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func keys(snap *bridge.Snapshot) string {
	var ks []string
	for _, it := range snap.Items {
		ks = append(ks, it.Key)
	}
	return strings.Join(ks, ",")
}

func TestFetch(t *testing.T) {
	bigJSON := []byte(`["` + strings.Repeat("x", 200) + `"]`) // 204 bytes
	tests := []struct {
		name     string
		cfg      config.Source
		client   *http.Client
		handler  http.HandlerFunc
		wantKeys string
		wantErr  string
		noErr    []string // substrings the error must not contain
	}{
		{
			name: "array of items",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `[{"id":1},{"id":"two"}]`)
			},
			wantKeys: "1,two",
		},
		{
			name: "object with items path",
			cfg:  config.Source{Items: "data", Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"data":[{"id":7},{"id":8},{"id":7}],"total":3}`)
			},
			wantKeys: "7,8",
		},
		{
			name: "single object",
			cfg:  config.Source{},
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"status":"green"}`)
			},
			wantKeys: "",
		},
		{
			name: "gzip negotiated by the transport",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Accept-Encoding") != "gzip" {
					http.Error(w, "want gzip", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Encoding", "gzip")
				w.Write(gzipped(t, []byte(`[{"id":"z"}]`)))
			},
			wantKeys: "z",
		},
		{
			name:   "gzip sent unasked",
			cfg:    config.Source{Key: config.KeyPaths{"id"}},
			client: &http.Client{Transport: &http.Transport{DisableCompression: true}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Accept-Encoding") != "" {
					http.Error(w, "did not expect Accept-Encoding", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Encoding", "gzip")
				w.Write(gzipped(t, []byte(`[{"id":"u"}]`)))
			},
			wantKeys: "u",
		},
		{
			name:   "unsupported encoding",
			cfg:    config.Source{Key: config.KeyPaths{"id"}},
			client: &http.Client{Transport: &http.Transport{DisableCompression: true}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", "br")
				w.Write([]byte{1, 2, 3})
			},
			wantErr: `fetch page 1: unsupported content encoding "br"`,
		},
		{
			name: "server error with body snippet",
			cfg:  config.Source{Key: config.KeyPaths{"id"}, Headers: map[string]string{"X-Api-Key": "k3y-s3cr3t"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, "upstream\x00 database\n\n  is down; key "+r.Header.Get("X-Api-Key")+" "+strings.Repeat("z", 500))
			},
			wantErr: `fetch page 1: status 500 Internal Server Error: "upstream database is down; key [redacted] zzz`,
			noErr:   []string{"k3y-s3cr3t", "\x00", strings.Repeat("z", 201)},
		},
		{
			name: "not found",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNotFound)
			},
			wantErr: `fetch page 1: status 404 Not Found`,
		},
		{
			name: "HTML",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, "<!DOCTYPE html><html><title>Sign in</title></html>")
			},
			wantErr: `fetch page 1: response is not valid JSON (content type "text/html; charset=utf-8", 50 bytes): "<!DOCTYPE html>`,
		},
		{
			name: "truncated JSON",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `[{"id":1},{"id":`)
			},
			wantErr: `response is not valid JSON (content type "application/json", 16 bytes)`,
		},
		{
			name: "truncated gzip",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				z := gzipped(t, []byte(`[{"id":1},{"id":2}]`))
				w.Header().Set("Content-Encoding", "gzip")
				w.Write(z[:len(z)-6])
			},
			wantErr: `fetch page 1: GET http://`,
		},
		{
			name: "empty body",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
			},
			wantErr: `response is not valid JSON (content type "application/json", empty body)`,
		},
		{
			name: "body at the limit",
			cfg:  config.Source{Key: config.KeyPaths{"@this"}, MaxBodySize: config.ByteSize(len(bigJSON))},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write(bigJSON)
			},
			wantKeys: strings.Repeat("x", 200),
		},
		{
			name: "body over the limit",
			cfg:  config.Source{Key: config.KeyPaths{"@this"}, MaxBodySize: config.ByteSize(len(bigJSON) - 1)},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write(bigJSON)
			},
			wantErr: `fetch page 1: response body exceeds 203 bytes`,
		},
		{
			name: "decompressed body over the limit",
			cfg:  config.Source{Key: config.KeyPaths{"id"}, MaxBodySize: 1000},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", "gzip")
				w.Write(gzipped(t, []byte(`[{"id":"`+strings.Repeat("a", 5000)+`"}]`)))
			},
			wantErr: `response body exceeds 1000 bytes`,
		},
		{
			name: "default limit",
			cfg:  config.Source{Key: config.KeyPaths{"@this"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`"`))
				w.Write(bytes.Repeat([]byte("a"), 10<<20))
				w.Write([]byte(`"`))
			},
			wantErr: `fetch page 1: response body exceeds 10485760 bytes`,
		},
		{
			name: "missing key",
			cfg:  config.Source{Items: "data", Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"data":[{"id":1},{"id":2},{"id":3},{"ID":4}]}`)
			},
			wantErr: `fetch page 1: decode items at "data": item 3 has no key at "id"`,
		},
		{
			name: "304 without a conditional request",
			cfg:  config.Source{Key: config.KeyPaths{"id"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNotModified)
			},
			wantErr: `fetch page 1: status 304 Not Modified without a conditional request`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, tt.handler, tt.cfg, tt.client)
			snap, err := s.Fetch(context.Background(), map[string]string{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				for _, bad := range tt.noErr {
					if strings.Contains(err.Error(), bad) {
						t.Errorf("err %q contains %q", err, bad)
					}
				}
				if snap != nil {
					t.Errorf("snapshot %+v returned with error", snap)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := keys(snap); got != tt.wantKeys {
				t.Errorf("keys = %q, want %q", got, tt.wantKeys)
			}
			if snap.NotModified || snap.Pages != 1 || snap.Meta == nil {
				t.Errorf("snapshot = %+v, want modified, 1 page, non-nil Meta", snap)
			}
		})
	}
}

func TestFetchConditional(t *testing.T) {
	const etag = `W/"v2"`
	const lastMod = "Wed, 21 Oct 2015 07:28:00 GMT"
	var gotINM, gotIMS string
	s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
		gotINM, gotIMS = r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")
		if gotINM == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", lastMod)
		io.WriteString(w, `[{"id":1}]`)
	}, config.Source{Key: config.KeyPaths{"id"}}, nil)
	ctx := context.Background()

	in := map[string]string{"cursor": "c1", MetaETag: `"v1"`}
	snap, err := s.Fetch(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if gotINM != `"v1"` || gotIMS != "" {
		t.Errorf("first request: If-None-Match %q, If-Modified-Since %q", gotINM, gotIMS)
	}
	want := map[string]string{"cursor": "c1", MetaETag: etag, MetaLastModified: lastMod, MetaBodyHash: snap.Meta[MetaBodyHash]}
	if len(snap.Meta[MetaBodyHash]) != 64 || !equalMaps(snap.Meta, want) {
		t.Errorf("Meta = %v, want %v", snap.Meta, want)
	}
	if in[MetaETag] != `"v1"` {
		t.Errorf("Fetch modified its meta argument: %v", in)
	}

	snap, err = s.Fetch(ctx, snap.Meta)
	if err != nil {
		t.Fatal(err)
	}
	if gotINM != etag || gotIMS != lastMod {
		t.Errorf("second request: If-None-Match %q, If-Modified-Since %q", gotINM, gotIMS)
	}
	if !snap.NotModified || snap.Meta != nil || len(snap.Items) != 0 {
		t.Errorf("snapshot = %+v, want NotModified with nil Meta and no items", snap)
	}
}

func TestFetchDropsStaleValidators(t *testing.T) {
	s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"id":1}]`)
	}, config.Source{Key: config.KeyPaths{"id"}}, nil)
	snap, err := s.Fetch(context.Background(), map[string]string{
		"cursor": "c", MetaETag: `"old"`, MetaLastModified: "Wed, 21 Oct 2015 07:28:00 GMT",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"cursor": "c", MetaBodyHash: snap.Meta[MetaBodyHash]}; len(snap.Meta[MetaBodyHash]) != 64 || !equalMaps(snap.Meta, want) {
		t.Errorf("Meta = %v, want %v", snap.Meta, want)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestFetchHeaders(t *testing.T) {
	var got http.Header
	var gotHost, gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotHost, gotQuery = r.Header.Clone(), r.Host, r.URL.RawQuery
		io.WriteString(w, `[]`)
	}))
	defer srv.Close()
	s, err := NewHTTP(config.Source{
		URL: srv.URL + "/v1/items?limit=100",
		Key: config.KeyPaths{"id"},
		Headers: map[string]string{
			"Authorization": "Bearer t0ken",
			"x-custom":      "yes",
			"Host":          "api.example.com",
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(context.Background(), map[string]string{}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"Accept":          "application/json",
		"User-Agent":      "pollbridge",
		"Authorization":   "Bearer t0ken",
		"X-Custom":        "yes",
		"Accept-Encoding": "gzip",
	} {
		if v := got.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if gotHost != "api.example.com" || gotQuery != "limit=100" {
		t.Errorf("host %q, query %q", gotHost, gotQuery)
	}
}

func TestFetchConfigOverridesAccept(t *testing.T) {
	var accept string
	s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		io.WriteString(w, `[]`)
	}, config.Source{Key: config.KeyPaths{"id"}, Headers: map[string]string{"Accept": "application/vnd.github+json"}}, nil)
	if _, err := s.Fetch(context.Background(), map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if accept != "application/vnd.github+json" {
		t.Errorf("Accept = %q", accept)
	}
}

func TestFetchRedirectDropsHeadersAcrossOrigins(t *testing.T) {
	var otherAuth, otherUA string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherAuth, otherUA = r.Header.Get("X-Api-Key"), r.Header.Get("User-Agent")
		io.WriteString(w, `[{"id":"moved"}]`)
	}))
	defer other.Close()
	var sameAuth string
	s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/items":
			http.Redirect(w, r, "/same", http.StatusFound)
		case "/same":
			sameAuth = r.Header.Get("X-Api-Key")
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
		}
	}, config.Source{Key: config.KeyPaths{"id"}, Headers: map[string]string{"X-Api-Key": "abc123"}}, nil)
	snap, err := s.Fetch(context.Background(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if keys(snap) != "moved" {
		t.Errorf("keys = %q", keys(snap))
	}
	if sameAuth != "abc123" {
		t.Errorf("same-origin redirect lost the header: %q", sameAuth)
	}
	if otherAuth != "" || otherUA != "pollbridge" {
		t.Errorf("other origin got X-Api-Key %q, User-Agent %q", otherAuth, otherUA)
	}
}

func TestFetchTimeout(t *testing.T) {
	s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}, config.Source{Key: config.KeyPaths{"id"}, Timeout: 50 * time.Millisecond, Headers: map[string]string{"X-Api-Key": "hunter22"}}, nil)
	start := time.Now()
	snap, err := s.Fetch(context.Background(), map[string]string{})
	if err == nil || snap != nil {
		t.Fatalf("Fetch = %v, %v; want a timeout error", snap, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Errorf("err = %v, want a timeout after 50ms", err)
	}
	if strings.Contains(err.Error(), "hunter22") {
		t.Errorf("err leaks a header value: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Fetch took %v", d)
	}
}

func TestFetchTimeoutDuringBody(t *testing.T) {
	s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"id":1},`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}, config.Source{Key: config.KeyPaths{"id"}, Timeout: 50 * time.Millisecond}, nil)
	_, err := s.Fetch(context.Background(), map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

func TestFetchCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
		cancel()
		<-r.Context().Done()
	}, config.Source{Key: config.KeyPaths{"id"}}, nil)
	_, err := s.Fetch(ctx, map[string]string{})
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestFetchErrorHidesQuery(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // connection refused from now on
	s, err := NewHTTP(config.Source{URL: url + "/items?api_key=s3cret", Key: config.KeyPaths{"id"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Fetch(context.Background(), map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "fetch page 1: GET "+url+"/items: ") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err leaks the query: %v", err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		url     string
		wantErr string
	}{
		{url: "https://api.example.com/v1/items"},
		{url: "ftp://example.com/x", wantErr: `scheme "ftp" is not http or https`},
		{url: "http://exa mple.com/?token=s3cret", wantErr: "parse url: "},
		{url: "/relative", wantErr: "scheme"},
	}
	for _, tt := range tests {
		src, err := New(config.Source{URL: tt.url, Key: config.KeyPaths{"id"}}, nil)
		if tt.wantErr == "" {
			if err != nil || src == nil {
				t.Errorf("New(%q) = %v, %v", tt.url, src, err)
			}
			continue
		}
		if src != nil {
			t.Errorf("New(%q) returned a source with an error", tt.url)
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("New(%q) err = %v, want %q", tt.url, err, tt.wantErr)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%q) err leaks the URL: %v", tt.url, err)
		}
	}
}

func TestNewDoesNotModifyClient(t *testing.T) {
	c := &http.Client{}
	if _, err := New(config.Source{URL: "http://127.0.0.1/", Key: config.KeyPaths{"id"}}, c); err != nil {
		t.Fatal(err)
	}
	if c.CheckRedirect != nil {
		t.Error("New changed the caller's client")
	}
}
