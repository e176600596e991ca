// Package sources_test checks the example source definitions in this
// folder: each test loads one YAML file as pollbridge would, points it (via
// the environment) at a local server that replays the documented behaviour
// of that kind of API, fetches, and checks the items and the requests made.
package sources_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/sources"
)

// load loads file with env as the environment and builds its only source.
func load(t *testing.T, file string, env map[string]string) (config.Source, bridge.Source) {
	t.Helper()
	cfg, err := config.Load(file, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	if len(cfg.Sources) != 1 {
		t.Fatalf("%s: %d sources, want 1", file, len(cfg.Sources))
	}
	src, err := sources.NewRegistry(cfg, nil).New(cfg.Sources[0], nil)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return cfg.Sources[0], src
}

// keysOf lists a snapshot's item keys.
func keysOf(snap *bridge.Snapshot) string {
	var ks []string
	for _, it := range snap.Items {
		ks = append(ks, it.Key)
	}
	return strings.Join(ks, " ")
}

func writeJSON(w http.ResponseWriter, ctype string, v any) {
	w.Header().Set("Content-Type", ctype)
	json.NewEncoder(w).Encode(v)
}

// noSecret fails if any of snap's request lines shows secret.
func noSecret(t *testing.T, snap *bridge.Snapshot, secret string) {
	t.Helper()
	for _, line := range sources.Describe(snap.Requests) {
		if strings.Contains(line, secret) {
			t.Errorf("request line shows the secret: %s", line)
		}
	}
}

// TestGitHubIssues: Link pagination, bearer token, ETag: the second poll is
// one request answered 304.
func TestGitHubIssues(t *testing.T) {
	const token = "ghp_exampleToken123"
	var requests atomic.Int32
	var srvURL string
	issues := []map[string]any{}
	for n := 5; n >= 1; n-- { // newest update first
		issues = append(issues, map[string]any{"number": n, "title": fmt.Sprintf("issue %d", n), "state": "open", "updated_at": "2026-01-0" + strconv.Itoa(n) + "T00:00:00Z"})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		q := r.URL.Query()
		switch {
		case r.URL.Path != "/repos/octo/hello/issues":
			http.NotFound(w, r)
			return
		case r.Header.Get("Authorization") != "Bearer "+token:
			writeJSON(w, "application/json", map[string]any{"message": "Bad credentials"})
			return
		case q.Get("state") != "all" || q.Get("sort") != "updated" || r.Header.Get("X-GitHub-Api-Version") == "":
			http.Error(w, "unexpected query", http.StatusBadRequest)
			return
		}
		perPage, _ := strconv.Atoi(q.Get("per_page"))
		page, _ := strconv.Atoi(q.Get("page"))
		page = max(page, 1)
		const etag = `W/"6b3a1f"`
		if page == 1 && r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		from, to := (page-1)*perPage, min(page*perPage, len(issues))
		last := (len(issues) + perPage - 1) / perPage
		link := func(p int, rel string) string {
			u := *r.URL
			qq := u.Query()
			qq.Set("page", strconv.Itoa(p))
			u.RawQuery = qq.Encode()
			return fmt.Sprintf(`<%s%s>; rel="%s"`, srvURL, u.RequestURI(), rel)
		}
		var links []string
		if page < last {
			links = append(links, link(page+1, "next"), link(last, "last"))
		}
		if page > 1 {
			links = append(links, link(1, "first"), link(page-1, "prev"))
		}
		if len(links) > 0 {
			w.Header().Set("Link", strings.Join(links, ", "))
		}
		if page == 1 {
			w.Header().Set("ETag", etag)
		}
		writeJSON(w, "application/json; charset=utf-8", issues[from:to])
	}))
	defer srv.Close()
	srvURL = srv.URL

	_, src := load(t, "github-issues.yaml", map[string]string{
		"GITHUB_API": srv.URL, "GITHUB_REPO": "octo/hello", "GITHUB_TOKEN": token, "GITHUB_PER_PAGE": "2",
	})
	ctx := context.Background()
	snap, err := src.Fetch(ctx, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(snap); got != "5 4 3 2 1" {
		t.Errorf("keys = %q", got)
	}
	if requests.Load() != 3 || snap.Pages != 3 {
		t.Errorf("first poll: %d requests, %d pages; want 3", requests.Load(), snap.Pages)
	}
	noSecret(t, snap, token)

	requests.Store(0)
	again, err := src.Fetch(ctx, snap.Meta)
	if err != nil {
		t.Fatal(err)
	}
	if !again.NotModified || requests.Load() != 1 || len(again.Requests) != 1 || again.Requests[0].Status != http.StatusNotModified {
		t.Errorf("second poll: NotModified %v, %d requests, %+v; want one request answered 304", again.NotModified, requests.Load(), again.Requests)
	}
}

// TestStripeCustomers: has_more + starting_after, basic auth with the key
// as user name.
func TestStripeCustomers(t *testing.T) {
	const key = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
	var requests atomic.Int32
	var customers []map[string]any
	for i := 1; i <= 5; i++ {
		customers = append(customers, map[string]any{"id": fmt.Sprintf("cus_%03d", i), "object": "customer", "email": fmt.Sprintf("c%d@example.com", i)})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		user, pass, ok := r.BasicAuth()
		if !ok || user != key || pass != "" {
			w.WriteHeader(http.StatusUnauthorized)
			writeJSON(w, "application/json", map[string]any{"error": map[string]any{"type": "invalid_request_error", "message": "Invalid API Key provided"}})
			return
		}
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		from := 0
		if after := r.URL.Query().Get("starting_after"); after != "" {
			for i, c := range customers {
				if c["id"] == after {
					from = i + 1
				}
			}
		}
		to := min(from+limit, len(customers))
		writeJSON(w, "application/json", map[string]any{"object": "list", "url": "/v1/customers", "data": customers[from:to], "has_more": to < len(customers)})
	}))
	defer srv.Close()

	_, src := load(t, "stripe-customers.yaml", map[string]string{"STRIPE_API": srv.URL, "STRIPE_SECRET_KEY": key, "STRIPE_PAGE_SIZE": "2"})
	snap, err := src.Fetch(context.Background(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(snap); got != "cus_001 cus_002 cus_003 cus_004 cus_005" {
		t.Errorf("keys = %q", got)
	}
	if requests.Load() != 3 {
		t.Errorf("requests = %d, want 3", requests.Load())
	}
	if !strings.Contains(snap.Requests[2].URL, "starting_after=cus_004") {
		t.Errorf("third request %s, want starting_after=cus_004", snap.Requests[2].URL)
	}
	noSecret(t, snap, key)
}

// TestJSONAPIArticles: links.next (relative), API key header, composite
// key [type, id].
func TestJSONAPIArticles(t *testing.T) {
	const key = "ak_live_abcdef"
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("X-Api-Key") != key || r.Header.Get("Accept") != "application/vnd.api+json" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		size, _ := strconv.Atoi(r.URL.Query().Get("page[size]"))
		num, _ := strconv.Atoi(r.URL.Query().Get("page[number]"))
		num = max(num, 1)
		var data []any
		for i := (num-1)*size + 1; i <= min(num*size, 3); i++ {
			data = append(data, map[string]any{"type": "articles", "id": strconv.Itoa(i), "attributes": map[string]any{"title": "JSON:API paints my bikeshed!"}})
		}
		links := map[string]any{"self": r.URL.RequestURI()}
		if num*size < 3 {
			links["next"] = fmt.Sprintf("/api/articles?page%%5Bnumber%%5D=%d&page%%5Bsize%%5D=%d", num+1, size)
		} else {
			links["next"] = nil
		}
		writeJSON(w, "application/vnd.api+json", map[string]any{"data": data, "links": links, "meta": map[string]any{"total": 3}})
	}))
	defer srv.Close()

	_, src := load(t, "jsonapi-articles.yaml", map[string]string{"ARTICLES_API": srv.URL, "ARTICLES_API_KEY": key, "ARTICLES_PAGE_SIZE": "2"})
	snap, err := src.Fetch(context.Background(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(snap); got != `["articles","1"] ["articles","2"] ["articles","3"]` {
		t.Errorf("keys = %s", got)
	}
	if requests.Load() != 2 {
		t.Errorf("requests = %d, want 2", requests.Load())
	}
}

// TestOAuth2Orders: client credentials from a token endpoint; the token is
// reused; a 401 fetches a new one and retries once.
func TestOAuth2Orders(t *testing.T) {
	const clientSecret = "cs_9f8e7d6c5b4a"
	var tokens, apiRequests atomic.Int32
	var mu sync.Mutex
	valid := map[string]bool{}
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, sec, _ := r.BasicAuth()
		if r.FormValue("client_id") != "" { // sent in the body instead
			id, sec = r.FormValue("client_id"), r.FormValue("client_secret")
		}
		if r.URL.Path != "/oauth/token" || r.FormValue("grant_type") != "client_credentials" || id != "orders-bridge" || sec != clientSecret ||
			r.FormValue("scope") != "orders.read" || r.FormValue("audience") != "https://api.example.com" {
			w.WriteHeader(http.StatusUnauthorized)
			writeJSON(w, "application/json", map[string]any{"error": "invalid_client"})
			return
		}
		tok := fmt.Sprintf("at_%d", tokens.Add(1))
		mu.Lock()
		valid[tok] = true
		mu.Unlock()
		writeJSON(w, "application/json", map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	}))
	defer auth.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiRequests.Add(1)
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		ok := valid[tok]
		mu.Unlock()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeJSON(w, "application/json", map[string]any{"orders": []any{map[string]any{"id": "ord_1", "status": "open"}, map[string]any{"id": "ord_2", "status": "open"}}})
	}))
	defer api.Close()

	_, src := load(t, "oauth2-orders.yaml", map[string]string{
		"ORDERS_API": api.URL, "ORDERS_TOKEN_URL": auth.URL + "/oauth/token", "ORDERS_CLIENT_ID": "orders-bridge", "ORDERS_CLIENT_SECRET": clientSecret,
	})
	ctx := context.Background()
	for range 2 {
		snap, err := src.Fetch(ctx, map[string]string{})
		if err != nil {
			t.Fatal(err)
		}
		if keysOf(snap) != "ord_1 ord_2" {
			t.Errorf("keys = %q", keysOf(snap))
		}
		noSecret(t, snap, clientSecret)
	}
	if tokens.Load() != 1 || apiRequests.Load() != 2 {
		t.Errorf("two polls: %d tokens, %d API requests; want 1, 2", tokens.Load(), apiRequests.Load())
	}
	mu.Lock()
	clear(valid) // the API revokes every token
	mu.Unlock()
	snap, err := src.Fetch(ctx, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if tokens.Load() != 2 || apiRequests.Load() != 4 || len(snap.Requests) != 2 || snap.Requests[0].Status != http.StatusUnauthorized {
		t.Errorf("after revocation: %d tokens, %d API requests, %+v; want 2, 4, a 401 then a 200", tokens.Load(), apiRequests.Load(), snap.Requests)
	}
}

// TestStatusPage: one document, one item with key "", and an unchanged
// body recognised by its hash.
func TestStatusPage(t *testing.T) {
	var requests atomic.Int32
	body := `{"page":{"id":"kctbh9vrtdwd","name":"GitHub","url":"https://www.githubstatus.com","time_zone":"Etc/UTC","updated_at":"2026-11-27T12:00:00.000Z"},` +
		`"status":{"indicator":"none","description":"All Systems Operational"}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	defer srv.Close()

	_, src := load(t, "status-page.yaml", map[string]string{"STATUS_URL": srv.URL + "/api/v2/status.json"})
	ctx := context.Background()
	snap, err := src.Fetch(ctx, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Items) != 1 || snap.Items[0].Key != "" || string(snap.Items[0].Data) != body {
		t.Fatalf("items = %+v, want the whole document as one item", snap.Items)
	}
	again, err := src.Fetch(ctx, snap.Meta)
	if err != nil {
		t.Fatal(err)
	}
	if !again.NotModified || requests.Load() != 2 {
		t.Errorf("second poll: NotModified %v after %d requests; want true after 2", again.NotModified, requests.Load())
	}
}

// TestPagedTickets: ?page=N&per_page=M, stop on a short page, API key in
// the query (hidden in request lines).
func TestPagedTickets(t *testing.T) {
	const key = "tk_0123456789"
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		q := r.URL.Query()
		if q.Get("api_key") != key {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		page, _ := strconv.Atoi(q.Get("page"))
		per, _ := strconv.Atoi(q.Get("per_page"))
		var tickets []any
		for i := (page-1)*per + 1; i <= min(page*per, 7); i++ {
			tickets = append(tickets, map[string]any{"id": 100 + i, "subject": "help"})
		}
		if tickets == nil {
			tickets = []any{}
		}
		writeJSON(w, "application/json", map[string]any{"tickets": tickets, "page": page})
	}))
	defer srv.Close()

	_, src := load(t, "paged-tickets.yaml", map[string]string{"TICKETS_API": srv.URL, "TICKETS_API_KEY": key, "TICKETS_PAGE_SIZE": "3"})
	snap, err := src.Fetch(context.Background(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(snap); got != "101 102 103 104 105 106 107" {
		t.Errorf("keys = %q", got)
	}
	if requests.Load() != 3 {
		t.Errorf("requests = %d, want 3 (pages of 3, 3 and 1)", requests.Load())
	}
	noSecret(t, snap, key)
	if !strings.Contains(snap.Requests[0].URL, "api_key=REDACTED") {
		t.Errorf("request line %s, want api_key=REDACTED", snap.Requests[0].URL)
	}
}
