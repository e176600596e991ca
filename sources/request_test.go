package sources

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

func TestRequestShape(t *testing.T) {
	var got struct {
		method, query, body, ctype, custom string
		length                             int64    // Content-Length
		chunked                            []string // Transfer-Encoding
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.query, got.body = r.Method, r.URL.RawQuery, string(b)
		got.length, got.chunked = r.ContentLength, r.TransferEncoding
		got.ctype, got.custom = r.Header.Get("Content-Type"), r.Header.Get("X-Custom")
		io.WriteString(w, `{"hits":[{"id":1}]}`)
	}))
	defer srv.Close()
	tests := []struct {
		name                       string
		cfg                        config.Source
		method, query, body, ctype string
	}{
		{name: "GET with query", cfg: config.Source{URL: srv.URL + "/s?a=1&b=2", Query: map[string]string{"b": "3", "c": "x y"}},
			method: "GET", query: "a=1&b=3&c=x+y"},
		{name: "POST with JSON body", cfg: config.Source{URL: srv.URL + "/s", Method: "post", Body: `{"query":{"match":"x"}}`},
			method: "POST", body: `{"query":{"match":"x"}}`, ctype: "application/json"},
		{name: "POST with own content type", cfg: config.Source{URL: srv.URL + "/s", Method: "POST", Body: `[]`,
			Headers: map[string]string{"Content-Type": "application/vnd.api+json"}},
			method: "POST", body: `[]`, ctype: "application/vnd.api+json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Items, cfg.Key = "hits", config.KeyPaths{"id"}
			s, err := NewHTTP(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := s.Fetch(context.Background(), map[string]string{})
			if err != nil {
				t.Fatal(err)
			}
			if got.method != tt.method || got.query != tt.query || got.body != tt.body || got.ctype != tt.ctype {
				t.Errorf("got %+v, want %s %q %q %q", got, tt.method, tt.query, tt.body, tt.ctype)
			}
			if got.length != int64(len(tt.body)) || got.chunked != nil {
				t.Errorf("Content-Length %d, Transfer-Encoding %q; want %d and none", got.length, got.chunked, len(tt.body))
			}
			if keys(snap) != "1" {
				t.Errorf("keys %q", keys(snap))
			}
		})
	}
	if _, err := NewHTTP(config.Source{URL: srv.URL, Method: "DELETE"}, nil); err == nil {
		t.Error("DELETE accepted")
	}
	if _, err := NewHTTP(config.Source{URL: srv.URL, Body: "{nope"}, nil); err == nil || strings.Contains(err.Error(), "nope") {
		t.Errorf("bad body: err = %v", err)
	}
}

func TestCompositeKeys(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		key     config.KeyPaths
		want    string
		wantErr string
	}{
		{name: "two parts", body: `[{"org":"acme","id":42},{"org":"acme","id":"42"},{"org":"a,b","id":1.50}]`, key: config.KeyPaths{"org", "id"},
			want: `["acme",42]|["acme","42"]|["a,b",1.50]`},
		{name: "escaping keeps parts apart", body: `[{"a":"x\",\"y","b":"z"},{"a":"x","b":"y\",\"z"}]`, key: config.KeyPaths{"a", "b"},
			want: `["x\",\"y","z"]|["x","y\",\"z"]`},
		{name: "bools and nested paths", body: `[{"m":{"t":true},"n":"<&>"}]`, key: config.KeyPaths{"m.t", "n"}, want: `[true,"<&>"]`},
		{name: "one path is the plain key", body: `[{"id":"p"}]`, key: config.KeyPaths{"id"}, want: `p`},
		{name: "control characters escaped", body: `[{"a":"l1\nl2","b":1}]`, key: config.KeyPaths{"a", "b"}, want: `["l1\u000al2",1]`},
		{name: "missing part", body: `[{"org":"acme","id":1},{"org":"acme"}]`, key: config.KeyPaths{"org", "id"},
			wantErr: `decode top-level items: item 1 has no key at "id"`},
		{name: "object part", body: `[{"org":{},"id":1}]`, key: config.KeyPaths{"org", "id"},
			wantErr: `item 0 has an object as key at "org"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := ExtractKeys([]byte(tt.body), "", tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ks []string
			for _, it := range items {
				ks = append(ks, it.Key)
			}
			if got := strings.Join(ks, "|"); got != tt.want {
				t.Errorf("keys %s, want %s", got, tt.want)
			}
		})
	}
}

// TestBodyHashShortcut: an unchanged body (all pages) is NotModified
// without Meta; an empty meta fetches and extracts anyway; a changed
// setting changes the hash.
func TestBodyHashShortcut(t *testing.T) {
	var body atomic.Value
	body.Store(`[{"id":1},{"id":2}]`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body.Load().(string))
	}))
	defer srv.Close()
	cfg := config.Source{URL: srv.URL, Key: config.KeyPaths{"id"}}
	s, err := NewHTTP(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := s.Fetch(ctx, map[string]string{})
	if err != nil || len(first.Items) != 2 || len(first.Meta[MetaBodyHash]) != 64 {
		t.Fatalf("first = %+v, %v", first, err)
	}
	same, err := s.Fetch(ctx, first.Meta)
	if err != nil || !same.NotModified || same.Items != nil || same.Meta != nil || same.Pages != 1 || len(same.Requests) != 1 {
		t.Fatalf("unchanged = %+v, %v; want NotModified, no items, nil Meta", same, err)
	}
	forced, err := s.Fetch(ctx, map[string]string{})
	if err != nil || forced.NotModified || len(forced.Items) != 2 || forced.Meta[MetaBodyHash] != first.Meta[MetaBodyHash] {
		t.Fatalf("empty meta = %+v, %v; want a full snapshot", forced, err)
	}
	body.Store(`[{"id":1},{"id":2,"v":1}]`)
	changed, err := s.Fetch(ctx, first.Meta)
	if err != nil || changed.NotModified || len(changed.Items) != 2 || changed.Meta[MetaBodyHash] == first.Meta[MetaBodyHash] {
		t.Fatalf("changed = %+v, %v", changed, err)
	}
	cfg.Ignore = []string{"v"}
	s2, err := NewHTTP(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s2.Fetch(ctx, changed.Meta)
	if err != nil || other.NotModified {
		t.Fatalf("same body, other settings = %+v, %v; want a full snapshot", other, err)
	}
}

func TestRequestInfoHidesSecrets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "" {
			w.Header().Set("Link", `</v1/items?token=t0p-s3cret&page=2>; rel="next"`)
		}
		io.WriteString(w, `[{"id":"`+r.URL.Query().Get("page")+`"}]`)
	}))
	defer srv.Close()
	s, err := NewHTTP(config.Source{URL: "http://user:pa55word@" + strings.TrimPrefix(srv.URL, "http://") + "/v1/items?token=t0p-s3cret#frag",
		Query: map[string]string{"state": "all"}, Key: config.KeyPaths{"id"}, Pagination: &config.Pagination{Type: config.PageLink, MaxPages: 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{srv.URL + "/v1/items?state=REDACTED&token=REDACTED", srv.URL + "/v1/items?page=2&token=REDACTED"}
	var snap *bridge.Snapshot
	for round := range 3 { // the shown URL is remembered: each page still shows its own
		snap, err = s.Fetch(context.Background(), map[string]string{})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range snap.Requests {
			if r.URL != want[i] || r.Method != "GET" || r.Status != 200 || r.Items != 1 || r.Bytes == 0 || r.Duration <= 0 {
				t.Errorf("fetch %d, request %d = %+v, want URL %s", round, i, r, want[i])
			}
		}
	}
	lines := Describe(snap.Requests)
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "GET "+want[1]+" → 200, 1 item(s), ") {
		t.Errorf("Describe = %q", lines)
	}
	for _, l := range lines {
		if strings.Contains(l, "s3cret") || strings.Contains(l, "pa55word") {
			t.Errorf("leak: %s", l)
		}
	}
}

func TestRedirectDropsCredentials(t *testing.T) {
	var otherAuth atomic.Value
	otherAuth.Store("")
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherAuth.Store(r.Header.Get("Authorization") + r.Header.Get("X-Key"))
		io.WriteString(w, `[{"id":1}]`)
	}))
	defer other.Close()
	for _, auth := range []config.Auth{{Bearer: "b34rer"}, {APIKey: &config.APIKey{Header: "X-Key", Value: "k3y-value"}}} {
		s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		}, config.Source{Key: config.KeyPaths{"id"}, Auth: &auth}, nil)
		if _, err := s.Fetch(context.Background(), map[string]string{}); err != nil {
			t.Fatal(err)
		}
		if v := otherAuth.Load().(string); v != "" {
			t.Errorf("other origin got credentials %q", v)
		}
	}
}

// tlsCAFile writes the certificate of a TLS test server as a PEM file.
func tlsCAFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"id":"tls"}]`)
	}))
	defer srv.Close()
	ctx := context.Background()
	base := config.Source{Name: "secure", URL: srv.URL, Key: config.KeyPaths{"id"}}

	// Without the CA: verification fails.
	s, err := NewHTTP(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(ctx, map[string]string{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate error", err)
	}

	// With ca_file: it works, and nothing is logged.
	var logs bytes.Buffer
	reg := NewRegistry(nil, slog.New(slog.NewTextHandler(&logs, nil)))
	cfg := base
	cfg.TLS = &config.TLS{CAFile: tlsCAFile(t, srv)}
	s, err = reg.NewHTTP(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap, err := s.Fetch(ctx, map[string]string{}); err != nil || keys(snap) != "tls" {
		t.Fatalf("with ca_file: %v, %v", snap, err)
	}
	if logs.Len() != 0 {
		t.Errorf("unexpected log: %s", logs.String())
	}

	// insecure_skip_verify: works, and a warning names the source.
	cfg.TLS = &config.TLS{InsecureSkipVerify: true}
	s, err = reg.NewHTTP(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(ctx, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "insecure_skip_verify") || !strings.Contains(l, "source=secure") {
		t.Errorf("log = %q, want a warning", l)
	}

	// Bad files are errors naming the field.
	for _, tc := range []struct {
		tls  config.TLS
		want string
	}{
		{config.TLS{CAFile: filepath.Join(t.TempDir(), "missing.pem")}, "tls.ca_file: "},
		{config.TLS{CAFile: writeFile(t, "not a certificate")}, "tls.ca_file: no PEM certificate found"},
		{config.TLS{CertFile: writeFile(t, "x"), KeyFile: writeFile(t, "y")}, "tls.cert_file/key_file: "},
		{config.TLS{CertFile: writeFile(t, "x")}, "tls: set both cert_file and key_file"},
	} {
		cfg.TLS = &tc.tls
		if _, err := reg.NewHTTP(cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("TLS %+v: err = %v, want %q", tc.tls, err, tc.want)
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(content)
	f.Close()
	return f.Name()
}

// Requests share the configured header values instead of copying them: what
// one request adds (validators, credentials) never reaches the next one or
// the configured headers.
func TestRequestsDoNotShareWhatTheyAdd(t *testing.T) {
	var seen []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Clone())
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, `{"hits":[{"id":1}]}`)
	}))
	defer srv.Close()
	s, err := NewHTTP(config.Source{URL: srv.URL + "/s", Items: "hits", Key: config.KeyPaths{"id"},
		Headers: map[string]string{"X-Custom": "a"},
		Auth:    &config.Auth{Bearer: "tok-123456"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := s.headers.Clone()
	if _, err := s.Fetch(t.Context(), map[string]string{MetaETag: `"v0"`}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(t.Context(), map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Fatalf("%d requests, want 2", len(seen))
	}
	if seen[0].Get("If-None-Match") != `"v0"` || seen[1].Get("If-None-Match") != "" {
		t.Errorf("If-None-Match: %q then %q, want the validator on the conditional request only",
			seen[0].Get("If-None-Match"), seen[1].Get("If-None-Match"))
	}
	for i, h := range seen {
		if h.Get("X-Custom") != "a" || h.Get("Authorization") != "Bearer tok-123456" || len(h.Values("X-Custom")) != 1 {
			t.Errorf("request %d headers %v, want X-Custom a and the bearer token, once each", i, h)
		}
	}
	if fmt.Sprint(s.headers) != fmt.Sprint(before) {
		t.Errorf("configured headers became %v, were %v", s.headers, before)
	}
}

// A single page's request counts the items the page listed, as a
// paginated one does (items that share a key count each time), although
// no separate pass counts them.
func TestRequestInfoCountsSinglePageItems(t *testing.T) {
	for _, tt := range []struct {
		name, body, items string
		key               config.KeyPaths
		listed, distinct  int
	}{
		{"array", `[{"id":1},{"id":2},{"id":1}]`, "", config.KeyPaths{"id"}, 3, 2},
		{"nested array", `{"data":[{"id":1},{"id":2}]}`, "data", config.KeyPaths{"id"}, 2, 2},
		{"empty array", `{"data":[]}`, "data", config.KeyPaths{"id"}, 0, 0},
		{"top-level object", `{"id":1}`, "", nil, 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			s, err := NewHTTP(config.Source{URL: srv.URL, Items: tt.items, Key: tt.key}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for poll := 1; poll <= 2; poll++ { // the second poll's set is sized from the first
				snap, err := s.Fetch(t.Context(), map[string]string{})
				if err != nil {
					t.Fatal(err)
				}
				if len(snap.Requests) != 1 || snap.Requests[0].Items != tt.listed || len(snap.Items) != tt.distinct {
					t.Errorf("poll %d: requests %+v, %d items; want one request of %d items, %d distinct", poll, snap.Requests, len(snap.Items), tt.listed, tt.distinct)
				}
			}
		})
	}
}
