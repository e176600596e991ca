package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fetchHeader = `sinks:
  - name: app
    url: http://127.0.0.1:8080/hooks
sources:
`

func TestFetchSettings(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fetchHeader + `  - name: issues
    schedule: "@every 1m"
    url: https://api.github.com/repos/o/r/issues
    query: {state: all, per_page: "100"}
    auth: {bearer: "${GH_TOKEN}"}
    pagination: {type: link}
    rate_limit: 1.3
    key: number
  - name: search
    schedule: "@every 1m"
    url: https://api.example.com/search
    method: post
    body: '{"filter": "open"}'
    tls: {ca_file: ` + ca + `}
    auth:
      oauth2:
        token_url: https://auth.example.com/token
        client_id: me
        client_secret: ${SECRET}
        scopes: [read]
        params: {audience: api}
    pagination: {type: cursor, cursor: next, has_more: more, in: body, param: start_cursor, max_pages: 7}
    items: results
    key: [org, id]
  - name: pages
    schedule: "@every 1m"
    url: https://api.example.com/things
    auth: {basic: {username: "${KEY}"}}
    pagination: {type: page, size: 50}
    items: data
    key: id
  - name: offsets
    schedule: "@every 1m"
    url: https://api.example.com/things
    auth: {api_key: {query: api_key, value: "${KEY}"}}
    pagination: {type: offset, size: 20, total: meta.count}
    items: data
    key: [id]
hosts:
  - host: API.example.com
    rate_limit: 10
    rate_burst: 5
  - host: api.github.com:443
    rate_limit: 1.3
`
	env := map[string]string{"GH_TOKEN": "ghp_x", "SECRET": "sec", "KEY": "sk_test"}
	cfg, err := Parse("fetch.yaml", []byte(doc), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	is, se, pg, of := cfg.Sources[0], cfg.Sources[1], cfg.Sources[2], cfg.Sources[3]
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("issues.Query", is.Query, map[string]string{"state": "all", "per_page": "100"})
	check("issues.Auth", *is.Auth, Auth{Bearer: "ghp_x"})
	check("issues.Pagination", *is.Pagination, Pagination{Type: PageLink, MaxPages: DefaultMaxPages, Conditional: "first_page"})
	check("issues.Method", is.Method, "")
	check("issues.rate", [2]any{is.RateLimit, is.RateBurst}, [2]any{1.3, 1})
	check("issues.Key", is.Key, KeyPaths{"number"})
	check("search.Method", se.Method, "POST")
	check("search.Key", se.Key, KeyPaths{"org", "id"})
	check("search.TLS", *se.TLS, TLS{CAFile: ca})
	check("search.OAuth2", *se.Auth.OAuth2, OAuth2{TokenURL: "https://auth.example.com/token", ClientID: "me", ClientSecret: "sec",
		Scopes: []string{"read"}, Params: map[string]string{"audience": "api"}})
	check("search.Pagination", *se.Pagination, Pagination{Type: PageCursor, Cursor: "next", HasMore: "more", In: "body", Param: "start_cursor",
		MaxPages: 7, Conditional: "first_page"})
	check("pages.Pagination", *pg.Pagination, Pagination{Type: PagePage, Param: "page", In: "query", Start: 1, Size: 50, SizeParam: "per_page",
		Stop: StopShort, MaxPages: 100, Conditional: "first_page"})
	check("pages.Basic", *pg.Auth.Basic, BasicAuth{Username: "sk_test"})
	check("offsets.Pagination", *of.Pagination, Pagination{Type: PageOffset, Param: "offset", In: "query", Start: 0, Size: 20, SizeParam: "limit",
		Stop: StopTotal, Total: "meta.count", MaxPages: 100, Conditional: "first_page"})
	check("offsets.Key", of.Key, KeyPaths{"id"})
	check("hosts", cfg.Hosts, []Host{{Host: "api.example.com", RateLimit: 10, RateBurst: 5}, {Host: "api.github.com:443", RateLimit: 1.3, RateBurst: 1}})
}

func TestFetchSettingsErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string // source settings after name, schedule, url
		want []string
	}{
		{name: "method and body", src: "    method: PUT\n    body: '{nope ${SECRET}'\n    key: id\n",
			want: []string{`fetch.yaml:8: sources[0].method: bad method "PUT": want GET or POST`,
				`fetch.yaml:9: sources[0].body: not valid JSON (the value is not shown)`}},
		{name: "key list", src: "    items: data\n    key: [id, \"\", id]\n",
			want: []string{`fetch.yaml:9: sources[0].key[1]: bad gjson path "": empty path`,
				`fetch.yaml:9: sources[0].key[2]: path "id" is listed twice`}},
		{name: "empty key list", src: "    items: data\n    key: []\n",
			want: []string{`fetch.yaml:9: sources[0].key: empty list: give at least one gjson path`}},
		{name: "no auth scheme", src: "    auth: {}\n",
			want: []string{`fetch.yaml:8: sources[0].auth: set one of bearer, basic, api_key or oauth2`}},
		{name: "two auth schemes", src: "    auth:\n      bearer: ${SECRET}\n      basic: {username: u}\n",
			want: []string{`fetch.yaml:9: sources[0].auth: set only one of bearer, basic, api_key or oauth2 (found bearer, basic)`}},
		{name: "api key", src: "    auth:\n      api_key: {header: X Key, value: \"${EMPTY:-}\"}\n",
			want: []string{"fetch.yaml:9: sources[0].auth.api_key.header: bad header name \"X Key\"",
				`fetch.yaml:9: sources[0].auth.api_key.value: required: the key, e.g. ${API_KEY}`}},
		{name: "oauth2", src: "    auth:\n      oauth2:\n        token_url: ftp://x/${SECRET}\n        client_id: c\n        auth_style: body\n        params: {scope: x}\n",
			want: []string{`fetch.yaml:10: sources[0].auth.oauth2.client_secret: required, e.g. ${CLIENT_SECRET}`,
				`fetch.yaml:10: sources[0].auth.oauth2.token_url: must be an absolute http:// or https:// URL`,
				`fetch.yaml:12: sources[0].auth.oauth2.auth_style: bad auth_style "body": want header or params (absent: try both)`,
				`fetch.yaml:13: sources[0].auth.oauth2.params.scope: set by pollbridge; use scopes, client_id or client_secret`}},
		{name: "pagination type", src: "    pagination: {type: pages}\n",
			want: []string{`fetch.yaml:8: sources[0].pagination.type: bad type "pages": want link, next_url, cursor, page or offset`}},
		{name: "pagination fields", src: "    pagination:\n      type: link\n      cursor: next\n      max_pages: 0\n      conditional: always\n",
			want: []string{`fetch.yaml:10: sources[0].pagination.cursor: not used by link pagination; remove it`,
				`fetch.yaml:11: sources[0].pagination.max_pages: must be 1 or more, got 0`,
				`fetch.yaml:12: sources[0].pagination.conditional: bad value "always": want first_page or never`}},
		{name: "cursor", src: "    pagination: {type: cursor, in: body}\n",
			want: []string{`fetch.yaml:8: sources[0].pagination.cursor: required: gjson path to the next cursor in the body (or set last_item_cursor)`,
				`fetch.yaml:8: sources[0].pagination.in: in: body needs a body (a JSON object) to put the parameter in`}},
		{name: "cursor both", src: "    pagination: {type: cursor, cursor: a, last_item_cursor: b..c}\n",
			want: []string{`sources[0].pagination.last_item_cursor: bad gjson path "b..c"`,
				`sources[0].pagination.last_item_cursor: set cursor or last_item_cursor, not both`}},
		{name: "next_url", src: "    pagination: {type: next_url}\n",
			want: []string{`fetch.yaml:8: sources[0].pagination.next_url: required: gjson path to the next page's URL, e.g. links.next`}},
		{name: "offset", src: "    pagination: {type: offset, stop: short, size_param: n}\n",
			want: []string{`sources[0].pagination.size: required for offset pagination`,
				`sources[0].pagination.size_param: set size too`, `sources[0].pagination.stop: stop: short needs size`}},
		{name: "page stop", src: "    pagination: {type: page, stop: total, start: -1, size: 0}\n",
			want: []string{`sources[0].pagination.start: must be 0 or more, got -1`, `sources[0].pagination.size: must be 1 or more, got 0`,
				`sources[0].pagination.stop: stop: total needs total`}},
		{name: "rate", src: "    rate_limit: -1\n    rate_burst: 0\n",
			want: []string{`fetch.yaml:8: sources[0].rate_limit: must be a positive number of requests per second (0 or absent: no limit), got -1`,
				`fetch.yaml:9: sources[0].rate_burst: must be 1 or more, got 0`}},
		{name: "burst without rate", src: "    rate_burst: 3\n",
			want: []string{`fetch.yaml:8: sources[0].rate_burst: set rate_limit too, or remove it`}},
		{name: "tls", src: "    tls: {ca_file: /nonexistent/ca.pem, cert_file: /nonexistent/c.pem}\n",
			want: []string{`sources[0].tls.ca_file: cannot read "/nonexistent/ca.pem": no such file or directory`,
				`sources[0].tls.cert_file: set key_file too`}},
		{name: "unknown auth key", src: "    auth: {bearer: x, token: y}\n",
			want: []string{`fetch.yaml:8: sources[0].auth.token: unknown field`}},
	}
	env := map[string]string{"SECRET": "hunter2-very-secret"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := fetchHeader + "  - name: s\n    schedule: \"@every 1m\"\n    url: https://api.example.com/x\n" + tt.src
			_, err := Parse("fetch.yaml", []byte(doc), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("missing %q in:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("secret in errors:\n%s", msg)
			}
		})
	}
}

func TestHostsErrors(t *testing.T) {
	doc := fetchHeader + `  - name: s
    schedule: "@every 1m"
    url: https://api.example.com/x
hosts:
  - host: https://api.example.com/
    rate_limit: 1
  - host: api.example.com
  - host: API.example.com
    rate_limit: 2
  - host: h:99999
    rate_limit: 1
  - rate_limit: 1
`
	_, err := Parse("h.yaml", []byte(doc), nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		`h.yaml:9: hosts[0].host: bad host "https://api.example.com/": want a host name such as api.github.com, or host:port, without scheme or path`,
		`h.yaml:11: hosts[1].rate_limit: required: requests per second, e.g. 1.3 for 5000 an hour`,
		`h.yaml:12: hosts[2].host: duplicate host "API.example.com" (first at line 11)`,
		`h.yaml:14: hosts[3].host: bad port in "h:99999"`,
		`h.yaml:16: hosts[4].host: required: a host name such as api.github.com, or host:port`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, err)
		}
	}
}
