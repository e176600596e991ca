package sources

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pollbridge/pollbridge/bridge/config"
)

func TestNextLink(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"github", []string{`<https://api.github.com/repos/o/r/issues?page=2>; rel="next", <https://api.github.com/repos/o/r/issues?page=5>; rel="last"`}, "https://api.github.com/repos/o/r/issues?page=2"},
		{"next not first", []string{`<https://x/?page=1>; rel="prev", <https://x/?page=3>; rel="next"`}, "https://x/?page=3"},
		{"unquoted rel", []string{`</items?cursor=abc>; rel=next`}, "/items?cursor=abc"},
		{"rel list", []string{`<https://x/b>; rel="last next"`}, "https://x/b"},
		{"comma in URL", []string{`<https://x/?a=1,2>; rel="next"`}, "https://x/?a=1,2"},
		{"other params", []string{`<https://x/a>; title="a, b; c"; rel="prev", <https://x/n>; type="x"; rel="NEXT"`}, "https://x/n"},
		{"second header", []string{`<https://x/p>; rel="prev"`, `<https://x/n>; rel="next"`}, "https://x/n"},
		{"no next", []string{`<https://x/p>; rel="prev"`}, ""},
		{"nextish rel", []string{`<https://x/p>; rel="next-archive"`}, ""},
		{"garbage", []string{`rel="next"; <<<>`, `<unterminated; rel="next"`}, ""},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		if got := nextLink(tt.values); got != tt.want {
			t.Errorf("%s: nextLink = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// pagedAPI serves items 1..total, size per page, in the style of h; it
// counts requests.
type pagedAPI struct {
	total, size int
	requests    atomic.Int32
}

func (a *pagedAPI) page(from int) []map[string]any {
	var out []map[string]any
	for i := from; i < from+a.size && i <= a.total; i++ {
		out = append(out, map[string]any{"id": i})
	}
	if out == nil {
		out = []map[string]any{}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func TestPagination(t *testing.T) {
	tests := []struct {
		name     string
		pg       config.Pagination
		items    string
		handler  func(a *pagedAPI, srvURL string) http.HandlerFunc
		total    int
		wantReqs int
		wantErr  string
	}{
		{
			name: "link header", pg: config.Pagination{Type: config.PageLink}, total: 7, wantReqs: 3,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					p, _ := strconv.Atoi(r.URL.Query().Get("page"))
					p = max(p, 1)
					if p*a.size < a.total {
						w.Header().Set("Link", fmt.Sprintf(`<%s/items?page=%d>; rel="next", <%s/items?page=1>; rel="first"`, srvURL, p+1, srvURL))
					}
					writeJSON(w, a.page((p-1)*a.size+1))
				}
			},
		},
		{
			name: "link header relative", pg: config.Pagination{Type: config.PageLink}, total: 5, wantReqs: 2,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Query().Get("page") == "" {
						w.Header().Set("Link", `<?page=2>; rel="next"`)
						writeJSON(w, a.page(1))
						return
					}
					writeJSON(w, a.page(4))
				}
			},
		},
		{
			name: "cursor in body (Slack)", items: "members",
			pg:    config.Pagination{Type: config.PageCursor, Cursor: "response_metadata.next_cursor", Param: "cursor", In: "query"},
			total: 8, wantReqs: 3,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					from := 1
					if c := r.URL.Query().Get("cursor"); c != "" {
						from, _ = strconv.Atoi(strings.TrimPrefix(c, "dXNlcj"))
					}
					next := ""
					if from+a.size <= a.total {
						next = "dXNlcj" + strconv.Itoa(from+a.size)
					}
					writeJSON(w, map[string]any{"ok": true, "members": a.page(from), "response_metadata": map[string]any{"next_cursor": next}})
				}
			},
		},
		{
			name: "last item cursor with has_more (Stripe)", items: "data",
			pg:    config.Pagination{Type: config.PageCursor, LastItemCursor: "id", HasMore: "has_more", Param: "starting_after", In: "query"},
			total: 6, wantReqs: 2,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					from := 1
					if c := r.URL.Query().Get("starting_after"); c != "" {
						n, _ := strconv.Atoi(c)
						from = n + 1
					}
					writeJSON(w, map[string]any{"object": "list", "data": a.page(from), "has_more": from+a.size <= a.total})
				}
			},
		},
		{
			name: "next URL in body (JSON:API)", items: "data",
			pg:    config.Pagination{Type: config.PageNextURL, NextURL: "links.next"},
			total: 4, wantReqs: 2,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					off, _ := strconv.Atoi(r.URL.Query().Get("page[offset]"))
					links := map[string]any{"self": r.URL.String(), "next": nil}
					if off+a.size < a.total {
						links["next"] = "/items?page[offset]=" + strconv.Itoa(off+a.size)
					}
					writeJSON(w, map[string]any{"data": a.page(off + 1), "links": links})
				}
			},
		},
		{
			name: "page number, short page", items: "",
			pg:    config.Pagination{Type: config.PagePage, Param: "page", Start: 1, Size: 3, SizeParam: "per_page", Stop: config.StopShort, In: "query"},
			total: 7, wantReqs: 3,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					p, _ := strconv.Atoi(r.URL.Query().Get("page"))
					if r.URL.Query().Get("per_page") != "3" || p < 1 {
						http.Error(w, "bad paging", 400)
						return
					}
					writeJSON(w, a.page((p-1)*a.size+1))
				}
			},
		},
		{
			name: "page number, exact multiple ends on empty page",
			pg:   config.Pagination{Type: config.PagePage, Param: "page", Start: 1, Size: 3, SizeParam: "per_page", Stop: config.StopShort, In: "query"},
			// 6 items: pages of 3, 3, then an empty one.
			total: 6, wantReqs: 3,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					p, _ := strconv.Atoi(r.URL.Query().Get("page"))
					writeJSON(w, a.page((p-1)*a.size+1))
				}
			},
		},
		{
			name: "page number from 0, stop on empty page",
			pg:   config.Pagination{Type: config.PagePage, Param: "p", Start: 0, Stop: config.StopEmpty, In: "query"},
			// The server caps the page size at 2 whatever is asked.
			total: 5, wantReqs: 4,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					p, _ := strconv.Atoi(r.URL.Query().Get("p"))
					writeJSON(w, a.page(p*a.size+1))
				}
			},
		},
		{
			name: "offset with total", items: "results",
			pg:    config.Pagination{Type: config.PageOffset, Param: "offset", Size: 3, SizeParam: "limit", Stop: config.StopTotal, Total: "count", In: "query"},
			total: 9, wantReqs: 3, // no fourth, empty request
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
					writeJSON(w, map[string]any{"count": a.total, "results": a.page(off + 1)})
				}
			},
		},
		{
			name: "offset steps by the items received",
			pg:   config.Pagination{Type: config.PageOffset, Param: "offset", Size: 10, SizeParam: "limit", Stop: config.StopEmpty, In: "query"},
			// asks for 10, gets 3 (server cap): offsets 0, 3, 6, 9 (empty)
			total: 8, wantReqs: 4,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
					writeJSON(w, a.page(off+1))
				}
			},
		},
		{
			name: "max pages exceeded is an error", pg: config.Pagination{Type: config.PageLink, MaxPages: 2}, total: 7,
			wantErr: "fetch page 3: the API has more than 2 pages (pagination.max_pages): refusing a partial snapshot",
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					p, _ := strconv.Atoi(r.URL.Query().Get("page"))
					p = max(p, 1)
					w.Header().Set("Link", fmt.Sprintf(`</items?page=%d>; rel="next"`, p+1))
					writeJSON(w, a.page((p-1)*a.size+1))
				}
			},
		},
		{
			name: "next URL on another origin is refused", items: "data",
			pg:      config.Pagination{Type: config.PageNextURL, NextURL: "links.next"},
			total:   4,
			wantErr: "fetch page 1: find the next page: next page URL leaves the source's origin http://127.0.0.1:",
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					writeJSON(w, map[string]any{"data": a.page(1), "links": map[string]any{"next": "https://evil.example/steal?x=1"}})
				}
			},
		},
		{
			name: "scheme change is another origin", pg: config.Pagination{Type: config.PageLink}, total: 4,
			wantErr: "leaves the source's origin",
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Link", `<`+strings.Replace(srvURL, "http:", "https:", 1)+`/items?page=2>; rel="next"`)
					writeJSON(w, a.page(1))
				}
			},
		},
		{
			name: "a link back to an earlier page is an error", pg: config.Pagination{Type: config.PageLink}, total: 7,
			wantErr: "fetch page 2: find the next page: next page URL http://127.0.0.1",
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Query().Get("page") == "" {
						w.Header().Set("Link", `</items?page=2>; rel="next"`)
					} else {
						w.Header().Set("Link", `</items>; rel="next"`)
					}
					writeJSON(w, a.page(1))
				}
			},
		},
		{
			name: "repeated cursor is an error", items: "data",
			pg:      config.Pagination{Type: config.PageCursor, Cursor: "next", Param: "cursor", In: "query"},
			total:   4,
			wantErr: "fetch page 2: find the next page: cursor at \"next\": the API returned the cursor it was sent: it loops",
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					writeJSON(w, map[string]any{"data": a.page(1), "next": "same"})
				}
			},
		},
		{
			name: "failed later page fails the fetch", pg: config.Pagination{Type: config.PageLink}, total: 7,
			wantErr: "fetch page 2: status 502 Bad Gateway",
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Query().Get("page") == "2" {
						w.WriteHeader(http.StatusBadGateway)
						return
					}
					w.Header().Set("Link", `</items?page=2>; rel="next"`)
					writeJSON(w, a.page(1))
				}
			},
		},
		{
			name: "bad total", items: "results",
			pg:      config.Pagination{Type: config.PageOffset, Param: "offset", Size: 3, SizeParam: "limit", Stop: config.StopTotal, Total: "count", In: "query"},
			total:   9,
			wantErr: `fetch page 1: find the next page: total at "count": got a string, want a number`,
			handler: func(a *pagedAPI, srvURL string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					writeJSON(w, map[string]any{"count": "many", "results": a.page(1)})
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &pagedAPI{total: tt.total, size: 3}
			if tt.name == "page number from 0, stop on empty page" {
				api.size = 2
			}
			var srvURL string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				api.requests.Add(1)
				tt.handler(api, srvURL)(w, r)
			}))
			defer srv.Close()
			srvURL = srv.URL
			pg := tt.pg
			if pg.MaxPages == 0 {
				pg.MaxPages = 100
			}
			s, err := NewHTTP(config.Source{URL: srv.URL + "/items", Items: tt.items, Key: config.KeyPaths{"id"}, Pagination: &pg}, nil)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := s.Fetch(context.Background(), map[string]string{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if snap != nil {
					t.Errorf("snapshot returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := 1; i <= tt.total; i++ {
				want = append(want, strconv.Itoa(i))
			}
			if got := keys(snap); got != strings.Join(want, ",") {
				t.Errorf("keys = %q, want %q", got, strings.Join(want, ","))
			}
			if n := int(api.requests.Load()); n != tt.wantReqs || snap.Pages != tt.wantReqs || len(snap.Requests) != tt.wantReqs {
				t.Errorf("requests = %d, Pages = %d, len(Requests) = %d; want %d", n, snap.Pages, len(snap.Requests), tt.wantReqs)
			}
			sum := 0
			for _, r := range snap.Requests {
				sum += r.Items
				if r.Status != 200 || r.Bytes == 0 {
					t.Errorf("request info %+v", r)
				}
			}
			if sum != tt.total {
				t.Errorf("items over Requests = %d, want %d", sum, tt.total)
			}
		})
	}
}

func TestPaginationInBody(t *testing.T) {
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", 400)
			return
		}
		var req struct {
			Filter      string `json:"filter"`
			StartCursor string `json:"start_cursor"`
		}
		json.Unmarshal(b, &req)
		if req.StartCursor == "" {
			writeJSON(w, map[string]any{"results": []any{map[string]any{"id": "a"}}, "has_more": true, "next_cursor": "c2"})
			return
		}
		writeJSON(w, map[string]any{"results": []any{map[string]any{"id": "b"}}, "has_more": false, "next_cursor": nil})
	}))
	defer srv.Close()
	s, err := NewHTTP(config.Source{
		URL: srv.URL + "/v1/search", Method: "POST", Body: `{"filter":"open"}`, Items: "results", Key: config.KeyPaths{"id"},
		Pagination: &config.Pagination{Type: config.PageCursor, Cursor: "next_cursor", HasMore: "has_more", Param: "start_cursor", In: "body", MaxPages: 10},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Fetch(context.Background(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if keys(snap) != "a,b" {
		t.Errorf("keys = %q", keys(snap))
	}
	want := []string{`{"filter":"open"}`, `{"filter":"open","start_cursor":"c2"}`}
	if strings.Join(bodies, "\n") != strings.Join(want, "\n") {
		t.Errorf("bodies:\n%s\nwant:\n%s", strings.Join(bodies, "\n"), strings.Join(want, "\n"))
	}
}

// TestPaginationConditionalFirstPage: the validators go with the first page
// only, and a 304 there ends the poll after one request.
func TestPaginationConditionalFirstPage(t *testing.T) {
	var reqs atomic.Int32
	var laterINM atomic.Value
	laterINM.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		if r.URL.Query().Get("page") == "2" {
			laterINM.Store(r.Header.Get("If-None-Match"))
			writeJSON(w, []any{map[string]any{"id": 2}})
			return
		}
		if r.Header.Get("If-None-Match") == `"p1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"p1"`)
		w.Header().Set("Link", `</items?page=2>; rel="next"`)
		writeJSON(w, []any{map[string]any{"id": 1}})
	}))
	defer srv.Close()
	for _, tt := range []struct {
		conditional string
		wantSecond  int32 // requests of the second poll
		wantNotMod  bool
	}{
		{"first_page", 1, true},
		{"never", 2, true}, // the body hash still says nothing changed
	} {
		reqs.Store(0)
		s, err := NewHTTP(config.Source{URL: srv.URL + "/items", Key: config.KeyPaths{"id"},
			Pagination: &config.Pagination{Type: config.PageLink, MaxPages: 5, Conditional: tt.conditional}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := s.Fetch(context.Background(), map[string]string{})
		if err != nil || keys(snap) != "1,2" || reqs.Load() != 2 {
			t.Fatalf("%s: first poll: %v, %v, %d requests", tt.conditional, snap, err, reqs.Load())
		}
		if tt.conditional == "never" && snap.Meta[MetaETag] == "" {
			t.Errorf("never: the ETag should still be stored")
		}
		reqs.Store(0)
		snap2, err := s.Fetch(context.Background(), snap.Meta)
		if err != nil {
			t.Fatal(err)
		}
		if reqs.Load() != tt.wantSecond || snap2.NotModified != tt.wantNotMod || len(snap2.Items) != 0 || snap2.Meta != nil {
			t.Errorf("%s: second poll: %d requests, %+v", tt.conditional, reqs.Load(), snap2)
		}
		if v := laterINM.Load().(string); v != "" {
			t.Errorf("%s: page 2 got If-None-Match %q", tt.conditional, v)
		}
	}
}
