package sources

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pollbridge/pollbridge/bridge/config"
)

func TestAuthSchemes(t *testing.T) {
	const secret = "s3cr3t-Key/+="
	tests := []struct {
		name  string
		auth  config.Auth
		check func(r *http.Request) bool
	}{
		{"bearer", config.Auth{Bearer: secret}, func(r *http.Request) bool {
			return r.Header.Get("Authorization") == "Bearer "+secret
		}},
		{"basic with key as user name", config.Auth{Basic: &config.BasicAuth{Username: secret}}, func(r *http.Request) bool {
			u, p, ok := r.BasicAuth()
			return ok && u == secret && p == ""
		}},
		{"basic", config.Auth{Basic: &config.BasicAuth{Username: "me", Password: secret}}, func(r *http.Request) bool {
			u, p, ok := r.BasicAuth()
			return ok && u == "me" && p == secret
		}},
		{"api key header", config.Auth{APIKey: &config.APIKey{Header: "X-Api-Key", Value: secret}}, func(r *http.Request) bool {
			return r.Header.Get("X-Api-Key") == secret && r.Header.Get("Authorization") == ""
		}},
		{"api key query", config.Auth{APIKey: &config.APIKey{Query: "api_key", Value: secret}}, func(r *http.Request) bool {
			return r.URL.Query().Get("api_key") == secret && r.URL.Query().Get("state") == "open"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tt.check(r) {
					// Echo the credentials back: they must be scrubbed.
					w.WriteHeader(http.StatusUnauthorized)
					io.WriteString(w, "bad credentials "+r.Header.Get("Authorization")+r.Header.Get("X-Api-Key")+r.URL.RawQuery)
					return
				}
				if r.URL.Query().Get("page") == "" {
					w.Header().Set("Link", `</items?state=open&page=2&api_key=`+r.URL.Query().Get("api_key")+`>; rel="next"`)
				}
				io.WriteString(w, `[{"id":"`+r.URL.Query().Get("page")+`"}]`)
			}))
			defer srv.Close()
			auth := tt.auth
			s, err := NewHTTP(config.Source{URL: srv.URL + "/items?state=open", Key: config.KeyPaths{"id"}, Auth: &auth,
				Pagination: &config.Pagination{Type: config.PageLink, MaxPages: 5}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := s.Fetch(context.Background(), map[string]string{})
			if err != nil {
				t.Fatal(err)
			}
			if keys(snap) != ",2" {
				t.Errorf("keys = %q", keys(snap))
			}
			for _, r := range snap.Requests {
				if strings.Contains(r.URL, "s3cr3t") || strings.Contains(r.URL, url64(secret)) {
					t.Errorf("RequestInfo.URL leaks the secret: %s", r.URL)
				}
			}
			if tt.name == "api key query" && !strings.Contains(snap.Requests[1].URL, "api_key=REDACTED") {
				t.Errorf("page 2 URL = %s, want api_key=REDACTED", snap.Requests[1].URL)
			}

			// Wrong credentials: the server echoes what it got.
			bad := tt.auth
			switch {
			case bad.Bearer != "":
				bad.Bearer = "wrong-" + secret
			case bad.Basic != nil:
				bad.Basic = &config.BasicAuth{Username: "x" + bad.Basic.Username, Password: "y" + bad.Basic.Password}
			case bad.APIKey != nil:
				k := *bad.APIKey
				k.Value = "wrong-" + secret
				bad.APIKey = &k
			}
			s, err = NewHTTP(config.Source{URL: srv.URL + "/items?state=open", Key: config.KeyPaths{"id"}, Auth: &bad}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Fetch(context.Background(), map[string]string{})
			if err == nil || !strings.Contains(err.Error(), "status 401 Unauthorized") {
				t.Fatalf("err = %v, want a 401", err)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

// url64 is how a secret may appear inside a basic Authorization header.
func url64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// tokenServer is an OAuth2 token endpoint for client credentials that
// counts the tokens it issues.
type tokenServer struct {
	issued atomic.Int32
	mu     sync.Mutex
	valid  map[string]bool
}

func (ts *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, sec, ok := r.BasicAuth()
	if r.Method != http.MethodPost || r.FormValue("grant_type") != "client_credentials" || !ok || id != "client-1" || sec != "cl1ent-s3cret" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"invalid_client","error_description":"bad secret `+sec+`"}`)
		return
	}
	n := ts.issued.Add(1)
	tok := "tok-" + string(rune('a'+n-1)) + "-xyz"
	ts.mu.Lock()
	if ts.valid == nil {
		ts.valid = map[string]bool{}
	}
	ts.valid[tok] = true
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"access_token":"`+tok+`","token_type":"bearer","expires_in":3600,"scope":"`+r.FormValue("scope")+`"}`)
}

func (ts *tokenServer) revokeAll() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.valid = map[string]bool{}
}

func (ts *tokenServer) ok(r *http.Request) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return found && ts.valid[tok]
}

func TestOAuth2(t *testing.T) {
	ts := &tokenServer{}
	tokSrv := httptest.NewServer(ts)
	defer tokSrv.Close()
	var apiReqs atomic.Int32
	var alwaysReject atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiReqs.Add(1)
		if alwaysReject.Load() || !ts.ok(r) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"message":"token expired: `+r.Header.Get("Authorization")+`"}`)
			return
		}
		io.WriteString(w, `[{"id":1}]`)
	}))
	defer api.Close()
	cfg := config.Source{URL: api.URL + "/items", Key: config.KeyPaths{"id"}, Auth: &config.Auth{OAuth2: &config.OAuth2{
		TokenURL: tokSrv.URL + "/oauth/token", ClientID: "client-1", ClientSecret: "cl1ent-s3cret",
		Scopes: []string{"read"}, AuthStyle: "header",
	}}}
	s, err := NewHTTP(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fetch := func() error {
		_, err := s.Fetch(ctx, map[string]string{})
		return err
	}

	// Two polls: one token, two API requests.
	for range 2 {
		if err := fetch(); err != nil {
			t.Fatal(err)
		}
	}
	if ts.issued.Load() != 1 || apiReqs.Load() != 2 {
		t.Errorf("tokens %d, API requests %d; want 1, 2 (token cached)", ts.issued.Load(), apiReqs.Load())
	}

	// The token is revoked: a 401, a new token, the request again.
	ts.revokeAll()
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	if ts.issued.Load() != 2 || apiReqs.Load() != 4 {
		t.Errorf("after revocation: tokens %d, API requests %d; want 2, 4", ts.issued.Load(), apiReqs.Load())
	}

	// The API refuses every token: one refresh and one retry only.
	alwaysReject.Store(true)
	err = fetch()
	if err == nil || !strings.Contains(err.Error(), "status 401 Unauthorized (after fetching a new OAuth2 token)") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "tok-") {
		t.Errorf("error leaks the access token: %v", err)
	}
	if ts.issued.Load() != 3 || apiReqs.Load() != 6 {
		t.Errorf("refused: tokens %d, API requests %d; want 3, 6", ts.issued.Load(), apiReqs.Load())
	}

	// A wrong client secret: the endpoint's answer is shown, the secret is not.
	bad := cfg
	o := *cfg.Auth.OAuth2
	o.ClientSecret = "wr0ng-s3cret"
	o.TokenURL += "?tenant=t0psecret"
	bad.Auth = &config.Auth{OAuth2: &o}
	s2, err := NewHTTP(bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.Fetch(ctx, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "fetch oauth2 token from "+tokSrv.URL+"/oauth/token: status 401 Unauthorized") ||
		!strings.Contains(err.Error(), `invalid_client`) {
		t.Fatalf("err = %v", err)
	}
	for _, leak := range []string{"wr0ng-s3cret", "t0psecret"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error leaks %q: %v", leak, err)
		}
	}

	// An unreachable token endpoint.
	tokSrv.Close()
	o2 := *cfg.Auth.OAuth2
	o2.TokenURL = tokSrv.URL + "/oauth/token?key=t0psecret"
	bad.Auth = &config.Auth{OAuth2: &o2}
	s3, err := NewHTTP(bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s3.Fetch(ctx, map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "fetch oauth2 token from") || strings.Contains(err.Error(), "t0psecret") {
		t.Fatalf("err = %v", err)
	}
}
