package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newServer starts the API on loopback with a clock the test moves.
func newServer(t *testing.T) (*httptest.Server, *API, *time.Time) {
	t.Helper()
	now := t0
	api := NewAPI(func() time.Time { return now }, 1)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv, api, &now
}

// do sends a request and returns the status and body.
func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func listOrders(t *testing.T, url string) []Order {
	t.Helper()
	status, body, _ := do(t, "GET", url+"/orders", "")
	if status != http.StatusOK {
		t.Fatalf("GET /orders: status %d, body %s", status, body)
	}
	var got struct{ Data []Order }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET /orders: %v in %s", err, body)
	}
	return got.Data
}

func TestListSeeded(t *testing.T) {
	srv, _, _ := newServer(t)
	status, body, h := do(t, "GET", srv.URL+"/orders", "")
	if status != http.StatusOK || h.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", status, h.Get("Content-Type"))
	}
	want := `{"data":[` +
		`{"id":1,"customer":"ada","status":"new","total":12.5,"updated_at":"2025-03-01T12:00:00Z"},` +
		`{"id":2,"customer":"grace","status":"paid","total":42,"updated_at":"2025-03-01T12:00:00Z"},` +
		`{"id":3,"customer":"linus","status":"shipped","total":7.99,"updated_at":"2025-03-01T12:00:00Z"}]}` + "\n"
	if body != want {
		t.Errorf("body:\n got %s\nwant %s", body, want)
	}
}

func TestETag(t *testing.T) {
	srv, _, _ := newServer(t)
	_, _, h := do(t, "GET", srv.URL+"/orders", "")
	etag := h.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req, _ := http.NewRequest("GET", srv.URL+"/orders", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag: status %d, want 304", resp.StatusCode)
	}
	do(t, "DELETE", srv.URL+"/orders/1", "")
	_, _, h = do(t, "GET", srv.URL+"/orders", "")
	if h.Get("ETag") == etag {
		t.Error("ETag did not change after a deletion")
	}
}

func TestCRUD(t *testing.T) {
	srv, _, now := newServer(t)

	status, body, h := do(t, "POST", srv.URL+"/orders", `{"customer":"ken","total":3.25}`)
	if status != http.StatusCreated || h.Get("Location") != "/orders/4" {
		t.Fatalf("POST: status %d, Location %q, body %s", status, h.Get("Location"), body)
	}
	var created Order
	json.Unmarshal([]byte(body), &created)
	if created != (Order{ID: 4, Customer: "ken", Status: "new", Total: 3.25, UpdatedAt: t0}) {
		t.Errorf("POST returned %+v", created)
	}

	*now = t0.Add(90 * time.Second)
	status, body, _ = do(t, "PATCH", srv.URL+"/orders/4", `{"status":"paid"}`)
	if status != http.StatusOK {
		t.Fatalf("PATCH: status %d, body %s", status, body)
	}
	status, body, _ = do(t, "GET", srv.URL+"/orders/4", "")
	var got Order
	json.Unmarshal([]byte(body), &got)
	if status != http.StatusOK || got != (Order{ID: 4, Customer: "ken", Status: "paid", Total: 3.25, UpdatedAt: t0.Add(90 * time.Second)}) {
		t.Errorf("GET after PATCH: status %d, %+v", status, got)
	}

	if status, _, _ := do(t, "PUT", srv.URL+"/orders/4", `{"total":5}`); status != http.StatusOK {
		t.Errorf("PUT: status %d", status)
	}
	if status, _, _ := do(t, "DELETE", srv.URL+"/orders/4", ""); status != http.StatusNoContent {
		t.Errorf("DELETE: status %d, want 204", status)
	}
	if status, _, _ := do(t, "GET", srv.URL+"/orders/4", ""); status != http.StatusNotFound {
		t.Errorf("GET deleted order: status %d, want 404", status)
	}
	if n := len(listOrders(t, srv.URL)); n != 3 {
		t.Errorf("%d orders after create+delete, want 3", n)
	}
}

func TestBadRequests(t *testing.T) {
	srv, _, _ := newServer(t)
	tests := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/orders", `{"total":1}`, 400},                     // no customer
		{"POST", "/orders", `{"customer":"x","colour":"red"}`, 400}, // unknown field
		{"POST", "/orders", `{"customer":`, 400},                    // bad JSON
		{"PATCH", "/orders/1", `{"status":"lost"}`, 400},
		{"PATCH", "/orders/1", `{"total":-1}`, 400},
		{"PATCH", "/orders/99", `{"status":"paid"}`, 404},
		{"GET", "/orders/abc", "", 400},
		{"DELETE", "/orders/99", "", 404},
		{"POST", "/_chaos", `{"mode":"sometimes"}`, 400},
	}
	for _, tt := range tests {
		status, body, _ := do(t, tt.method, srv.URL+tt.path, tt.body)
		if status != tt.want {
			t.Errorf("%s %s %s: status %d, want %d (%s)", tt.method, tt.path, tt.body, status, tt.want, body)
		}
	}
	// A rejected PATCH changes nothing.
	if o := listOrders(t, srv.URL)[0]; o.Status != "new" || o.Total != 12.5 {
		t.Errorf("order 1 changed by rejected requests: %+v", o)
	}
}

func TestChaos(t *testing.T) {
	srv, _, _ := newServer(t)
	tests := []struct {
		mode       string
		wantStatus int
		check      func(body string) bool
	}{
		{"500", 500, func(string) bool { return true }},
		{"html", 200, func(b string) bool { return strings.HasPrefix(b, "<!doctype html>") }},
		{"truncated", 200, func(b string) bool { return strings.HasPrefix(b, `{"data":[`) && !json.Valid([]byte(b)) }},
		{"empty", 200, func(b string) bool { return b == "{\"data\":[]}\n" }},
	}
	for _, tt := range tests {
		if status, body, _ := do(t, "POST", srv.URL+"/_chaos", `{"mode":"`+tt.mode+`","count":2}`); status != 200 {
			t.Fatalf("POST /_chaos %s: status %d, %s", tt.mode, status, body)
		}
		for i := range 2 {
			status, body, _ := do(t, "GET", srv.URL+"/orders", "")
			if status != tt.wantStatus || !tt.check(body) {
				t.Errorf("%s, request %d: status %d, body %q", tt.mode, i+1, status, body)
			}
		}
		// Single orders are not affected, and the third list is normal again.
		if status, _, _ := do(t, "GET", srv.URL+"/orders/1", ""); status != 200 {
			t.Errorf("%s: GET /orders/1 status %d", tt.mode, status)
		}
		if n := len(listOrders(t, srv.URL)); n != 3 {
			t.Errorf("%s: after count ran out, %d orders, want 3", tt.mode, n)
		}
	}

	do(t, "POST", srv.URL+"/_chaos", `{"mode":"500","count":100}`)
	do(t, "POST", srv.URL+"/_chaos", `{"mode":"ok"}`)
	if n := len(listOrders(t, srv.URL)); n != 3 {
		t.Errorf("after mode ok: %d orders, want 3", n)
	}
}

func TestMutate(t *testing.T) {
	_, api, _ := newServer(t)
	var created, advanced, deleted int
	for range 300 {
		before := snapshot(api)
		msg := api.Mutate()
		after := snapshot(api)
		switch {
		case len(after) == len(before)+1:
			created++
		case len(after) == len(before)-1:
			deleted++
			for id, o := range before {
				if _, ok := after[id]; !ok && o.Status != StatusShipped {
					t.Fatalf("%q deleted order %d in status %s", msg, id, o.Status)
				}
			}
		case len(after) == len(before):
			advanced++
			var moved int
			for id, o := range after {
				if b := before[id]; b.Status != o.Status {
					moved++
					if !(b.Status == StatusNew && o.Status == StatusPaid || b.Status == StatusPaid && o.Status == StatusShipped) {
						t.Fatalf("%q moved order %d from %s to %s", msg, id, b.Status, o.Status)
					}
				}
			}
			if moved != 1 {
				t.Fatalf("%q changed %d statuses, want 1", msg, moved)
			}
		default:
			t.Fatalf("%q changed the order count from %d to %d", msg, len(before), len(after))
		}
	}
	if created == 0 || advanced == 0 || deleted == 0 {
		t.Errorf("300 mutations: %d created, %d advanced, %d deleted; want some of each", created, advanced, deleted)
	}
}

func snapshot(a *API) map[int]Order {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[int]Order, len(a.orders))
	for id, o := range a.orders {
		m[id] = *o
	}
	return m
}
