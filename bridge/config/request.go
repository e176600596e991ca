package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// This file holds the settings of how a source fetches: request shape,
// TLS, authentication, pagination and rate limits, with their validation.

// Defaults of the fetching settings.
const (
	// DefaultMaxPages bounds the pages of one fetch.
	DefaultMaxPages = 100
	// DefaultRateBurst is the burst of a rate limit that sets none.
	DefaultRateBurst = 1
)

// Pagination types.
const (
	PageLink    = "link"     // the Link response header, rel="next"
	PageNextURL = "next_url" // a URL in the body
	PageCursor  = "cursor"   // a cursor from the body, sent as a parameter
	PagePage    = "page"     // a page number parameter
	PageOffset  = "offset"   // an item offset parameter
)

// Stop conditions of page and offset pagination.
const (
	StopEmpty = "empty" // a page without items is the end
	StopShort = "short" // a page with fewer items than Size is the last
	StopTotal = "total" // the end comes after Total items
)

// KeyPaths are the gjson paths, relative to an item, whose values make up
// the item's key. YAML takes one path (key: id) or a list (key: [org, id]).
//
// With one path the key is the value itself: a string as it is, a number
// as its JSON text, a bool as true or false. With several paths the key is
// the compact JSON array of the values in the order of the paths, e.g.
// ["acme",42]: unambiguous whatever the values contain, and easy for a
// receiver to split. A list of one path is the same as the path alone.
type KeyPaths []string

// TLS configures TLS for a source's https requests.
type TLS struct {
	// CAFile is a PEM file of the certificate authorities to trust instead
	// of the system's (for a private CA).
	CAFile string `yaml:"ca_file"`
	// CertFile is a PEM client certificate for mutual TLS; set KeyFile too.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
	// InsecureSkipVerify accepts any server certificate. Default false:
	// turning it on lets anyone on the path read the credentials, so a
	// warning is logged at start.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Auth adds credentials to a source's requests. Set exactly one scheme.
// Values should come from the environment (${VAR}); they never appear in
// errors, logs or `pollbridge poll` output.
type Auth struct {
	// Bearer is a token sent as "Authorization: Bearer <token>".
	Bearer string `yaml:"bearer"`
	// Basic is HTTP basic authentication.
	Basic *BasicAuth `yaml:"basic"`
	// APIKey is a key sent in a header or a query parameter.
	APIKey *APIKey `yaml:"api_key"`
	// OAuth2 fetches a token with the client-credentials grant and sends it
	// as a bearer token. The token is kept until it expires; a 401 answer
	// drops it, and the request is retried once with a new one.
	OAuth2 *OAuth2 `yaml:"oauth2"`
}

// BasicAuth is HTTP basic authentication.
type BasicAuth struct {
	// Username is required (Stripe: the secret key).
	Username string `yaml:"username"`
	// Password may be empty.
	Password string `yaml:"password"`
}

// APIKey is a key sent in a header or a query parameter. Set Header or
// Query.
type APIKey struct {
	// Header is the header that carries the key, e.g. X-Api-Key.
	Header string `yaml:"header"`
	// Query is the query parameter that carries the key, e.g. api_key.
	Query string `yaml:"query"`
	// Value is the key.
	Value string `yaml:"value"`
}

// OAuth2 is the OAuth 2.0 client-credentials grant (RFC 6749, 4.4).
type OAuth2 struct {
	// TokenURL is the token endpoint.
	TokenURL string `yaml:"token_url"`
	// ClientID identifies the client.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates the client.
	ClientSecret string `yaml:"client_secret"`
	// Scopes are requested with the token (space-separated "scope").
	Scopes []string `yaml:"scopes"`
	// Params are extra form parameters of the token request, e.g.
	// audience.
	Params map[string]string `yaml:"params"`
	// AuthStyle is how the client credentials reach the token endpoint:
	// header (HTTP basic) or params (form fields). Empty: try header, then
	// params, and remember what worked.
	AuthStyle string `yaml:"auth_style"`
}

// Pagination says how a source finds its next page. Every page is fetched
// before the items are diffed; a failed page fails the whole fetch.
type Pagination struct {
	// Type is link (the Link header's rel="next"), next_url (a URL in the
	// body), cursor (a value from the body sent back as a parameter), page
	// (a page number) or offset (an item offset). Required.
	Type string `yaml:"type"`
	// MaxPages bounds the pages of one fetch; an API that has more fails
	// the poll rather than giving a partial snapshot. Default 100.
	MaxPages int `yaml:"max_pages"`
	// Conditional is first_page (default: If-None-Match/If-Modified-Since
	// on the first page, and a 304 ends the poll) or never. first_page is
	// right when every change reaches the first page (sort by update time,
	// newest first); otherwise use never, and the hash of all pages still
	// spares unchanged polls the diff.
	Conditional string `yaml:"conditional"`

	// NextURL (next_url) is the gjson path to the next page's URL, e.g.
	// links.next or _links.next.href; a relative URL is resolved against
	// the page's. Missing, null or "" ends the fetch.
	NextURL string `yaml:"next_url"`

	// Cursor (cursor) is the gjson path, in the body, to the next cursor,
	// e.g. response_metadata.next_cursor. Missing, null or "" ends the
	// fetch.
	Cursor string `yaml:"cursor"`
	// LastItemCursor (cursor) takes the cursor from the last item of the
	// page instead, at this gjson path relative to the item (Stripe: id).
	// An empty page ends the fetch.
	LastItemCursor string `yaml:"last_item_cursor"`
	// HasMore (cursor, page, offset) is the gjson path to a boolean that is
	// true while more pages follow, e.g. has_more.
	HasMore string `yaml:"has_more"`
	// Param is the parameter that carries the cursor, page number or
	// offset. Default cursor, page or offset.
	Param string `yaml:"param"`
	// In is where Param (and SizeParam) go: query (default) or body (a
	// top-level field of the JSON Body, for POST search APIs).
	In string `yaml:"in"`

	// Start (page, offset) is the first page number or offset. Default 1
	// for page, 0 for offset.
	Start int `yaml:"start"`
	// Size (page, offset) is the page size to ask for, sent as SizeParam.
	// Required for offset.
	Size int `yaml:"size"`
	// SizeParam (page, offset) is the parameter that carries Size. Default
	// per_page for page, limit for offset.
	SizeParam string `yaml:"size_param"`
	// Stop (page, offset) is when the last page has come: empty (a page
	// without items), short (fewer items than Size) or total (Total items
	// seen). An empty page always ends the fetch. Default: total when
	// Total is set, else short when Size is set, else empty.
	Stop string `yaml:"stop"`
	// Total (page, offset) is the gjson path to the total number of items.
	Total string `yaml:"total"`
}

// Host sets limits shared by all sources whose requests go to one host.
type Host struct {
	// Host is a host name (any port) or host:port, as in the source URLs.
	Host string `yaml:"host"`
	// RateLimit caps the requests per second to this host, summed over
	// every source. Required.
	RateLimit float64 `yaml:"rate_limit"`
	// RateBurst is how many requests may go at once. Default 1.
	RateBurst int `yaml:"rate_burst"`
}

// keyPaths checks a source's key: one gjson path or a list of them.
// required says an items path is set, so the items need keys.
func (d *decoder) keyPaths(f string, k *KeyPaths, required bool) {
	if d.failed(f) {
		return
	}
	_, list := d.at[f+"[0]"]
	emptyList := d.isSet(f) && len(*k) == 0 // key: []
	if !list && len(*k) == 1 && (*k)[0] == "" {
		*k = nil // key: "" is no key, as before lists existed
	}
	if len(*k) == 0 {
		*k = nil
		switch {
		case emptyList:
			d.errAt(f, "empty list: give at least one gjson path")
		case required:
			d.errAt(f, "required: gjson path to each item's unique key")
		}
		return
	}
	seen := map[string]bool{}
	for i, path := range *k {
		g := f
		if list {
			g = fmt.Sprintf("%s[%d]", f, i)
		}
		if d.failed(g) {
			continue
		}
		d.gjsonPath(g, path)
		if seen[path] {
			d.errAt(g, "path %q is listed twice", d.orig(g))
		}
		seen[path] = true
	}
}

// request defaults and validates how a source fetches: method, query,
// body, TLS, auth, pagination and rate limit.
func (d *decoder) request(p string, s *Source) {
	switch m := strings.ToUpper(s.Method); m {
	case "", "GET", "POST":
		s.Method = m
	default:
		d.errAt(p+".method", "bad method %q: want GET or POST", d.orig(p+".method"))
	}
	for name := range s.Query {
		if name == "" {
			d.errAt(join(p+".query", name), "empty parameter name")
		}
	}
	bodyObject := false
	if s.Body != "" && !d.failed(p+".body") {
		b := []byte(s.Body)
		if !json.Valid(b) {
			d.errAt(p+".body", "not valid JSON (the value is not shown)")
		} else {
			var obj map[string]json.RawMessage
			bodyObject = json.Unmarshal(b, &obj) == nil
		}
	}
	if t := s.TLS; t != nil {
		d.tls(p+".tls", t, s.URL)
	}
	if a := s.Auth; a != nil {
		d.auth(p+".auth", a)
	}
	if pg := s.Pagination; pg != nil {
		d.pagination(p+".pagination", pg, s.Body != "", bodyObject)
	}
	d.rate(p+".rate_limit", p+".rate_burst", s.RateLimit, &s.RateBurst, false)
}

// rate checks a rate limit and defaults its burst.
func (d *decoder) rate(f, fb string, limit float64, burst *int, required bool) {
	switch {
	case d.failed(f):
	case limit < 0:
		d.errAt(f, "must be a positive number of requests per second (0 or absent: no limit), got %s", d.orig(f))
	case limit == 0 && required:
		d.errAt(f, "required: requests per second, e.g. 1.3 for 5000 an hour")
	}
	switch {
	case d.failed(fb):
	case !d.isSet(fb):
		if limit > 0 {
			*burst = DefaultRateBurst
		}
	case *burst < 1:
		d.errAt(fb, "must be 1 or more, got %d", *burst)
	case limit == 0 && !required:
		d.errAt(fb, "set rate_limit too, or remove it")
	}
}

// tls checks TLS settings; the files must be readable now.
func (d *decoder) tls(p string, t *TLS, rawURL string) {
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == "http" {
		d.errAt(p, "only used for https:// URLs; remove it or use https")
	}
	for _, f := range []struct{ field, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" || d.failed(p+"."+f.field) {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			d.errAt(p+"."+f.field, "cannot read %q: %v", d.orig(p+"."+f.field), unwrapPath(err))
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			d.errAt(p+".key_file", "set cert_file too (a client certificate needs both)")
		} else {
			d.errAt(p+".cert_file", "set key_file too (a client certificate needs both)")
		}
	}
}

// unwrapPath drops the path from an *os.PathError, which the message
// already quotes as written.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// auth checks that exactly one scheme is set, and that scheme. Secret
// values are never quoted.
func (d *decoder) auth(p string, a *Auth) {
	var set []string
	if d.isSet(p + ".bearer") {
		set = append(set, "bearer")
		if a.Bearer == "" {
			d.errAt(p+".bearer", "empty token")
		} else if strings.ContainsAny(a.Bearer, "\r\n\x00") {
			d.errAt(p+".bearer", "token must not contain CR, LF or NUL (the value is not shown)")
		}
	}
	if b := a.Basic; b != nil {
		set = append(set, "basic")
		if b.Username == "" && !d.failed(p+".basic.username") {
			d.errAt(p+".basic.username", "required (for an API key as user name, the password may stay empty)")
		}
		if strings.Contains(b.Username, ":") {
			d.errAt(p+".basic.username", `must not contain ":" (the value is not shown)`)
		}
	}
	if k := a.APIKey; k != nil {
		set = append(set, "api_key")
		q := p + ".api_key"
		switch {
		case k.Header != "" && k.Query != "":
			d.errAt(q+".query", "set header or query, not both")
		case k.Header == "" && k.Query == "":
			if !d.failed(q+".header") && !d.failed(q+".query") {
				d.errAt(q, "set header (e.g. X-Api-Key) or query (e.g. api_key)")
			}
		case k.Header != "" && !validToken(k.Header):
			d.errAt(q+".header", "bad header name %q: use letters, digits and !#$%%&'*+-.^_`|~", d.orig(q+".header"))
		}
		if k.Value == "" && !d.failed(q+".value") {
			d.errAt(q+".value", "required: the key, e.g. ${API_KEY}")
		} else if k.Header != "" && strings.ContainsAny(k.Value, "\r\n\x00") {
			d.errAt(q+".value", "must not contain CR, LF or NUL (the value is not shown)")
		}
	}
	if o := a.OAuth2; o != nil {
		set = append(set, "oauth2")
		q := p + ".oauth2"
		d.url(q+".token_url", o.TokenURL)
		if o.ClientID == "" && !d.failed(q+".client_id") {
			d.errAt(q+".client_id", "required")
		}
		if o.ClientSecret == "" && !d.failed(q+".client_secret") {
			d.errAt(q+".client_secret", "required, e.g. ${CLIENT_SECRET}")
		}
		if !oneOf(o.AuthStyle, "", "header", "params") {
			d.errAt(q+".auth_style", "bad auth_style %q: want header or params (absent: try both)", d.orig(q+".auth_style"))
		}
		for k := range o.Params {
			if oneOf(k, "grant_type", "scope", "client_id", "client_secret") {
				d.errAt(join(q+".params", k), "set by pollbridge; use scopes, client_id or client_secret")
			}
		}
	}
	switch len(set) {
	case 0:
		d.errAt(p, "set one of bearer, basic, api_key or oauth2")
	case 1:
	default:
		d.errAt(p, "set only one of bearer, basic, api_key or oauth2 (found %s)", strings.Join(set, ", "))
	}
}

// pagination defaults and validates a pagination block. hasBody and
// bodyObject describe the source's body, which in: body needs.
func (d *decoder) pagination(p string, pg *Pagination, hasBody, bodyObject bool) {
	if !d.isSet(p + ".max_pages") {
		pg.MaxPages = DefaultMaxPages
	} else if pg.MaxPages < 1 {
		d.errAt(p+".max_pages", "must be 1 or more, got %d", pg.MaxPages)
	}
	if pg.Conditional == "" {
		pg.Conditional = "first_page"
	} else if !oneOf(pg.Conditional, "first_page", "never") {
		d.errAt(p+".conditional", "bad value %q: want first_page or never", d.orig(p+".conditional"))
	}
	// used lists the fields each type reads besides type, max_pages and
	// conditional.
	used := map[string][]string{
		PageLink:    nil,
		PageNextURL: {"next_url"},
		PageCursor:  {"cursor", "last_item_cursor", "has_more", "param", "in"},
		PagePage:    {"param", "in", "start", "size", "size_param", "stop", "total", "has_more"},
		PageOffset:  {"param", "in", "start", "size", "size_param", "stop", "total", "has_more"},
	}
	fields, ok := used[pg.Type]
	if !ok {
		if !d.failed(p + ".type") {
			if pg.Type == "" {
				d.errAt(p+".type", "required: link, next_url, cursor, page or offset")
			} else {
				d.errAt(p+".type", "bad type %q: want link, next_url, cursor, page or offset", d.orig(p+".type"))
			}
		}
		return
	}
	for _, f := range []string{"next_url", "cursor", "last_item_cursor", "has_more", "param", "in", "start", "size", "size_param", "stop", "total"} {
		if d.isSet(p+"."+f) && !oneOf(f, fields...) {
			d.errAt(p+"."+f, "not used by %s pagination; remove it", pg.Type)
		}
	}
	for _, f := range []struct {
		name string
		path string
	}{{"next_url", pg.NextURL}, {"cursor", pg.Cursor}, {"last_item_cursor", pg.LastItemCursor}, {"has_more", pg.HasMore}, {"total", pg.Total}} {
		if f.path != "" {
			d.gjsonPath(p+"."+f.name, f.path)
		}
	}
	if pg.Type == PageLink {
		return
	}
	if pg.Type == PageNextURL {
		if pg.NextURL == "" && !d.failed(p+".next_url") {
			d.errAt(p+".next_url", "required: gjson path to the next page's URL, e.g. links.next")
		}
		return
	}
	if pg.Param == "" {
		pg.Param = pg.Type // cursor, page, offset
	}
	if pg.In == "" {
		pg.In = "query"
	} else if !oneOf(pg.In, "query", "body") {
		d.errAt(p+".in", "bad value %q: want query or body", d.orig(p+".in"))
	} else if pg.In == "body" && !bodyObject {
		if hasBody {
			d.errAt(p+".in", "in: body needs a body that is a JSON object")
		} else {
			d.errAt(p+".in", "in: body needs a body (a JSON object) to put the parameter in")
		}
	}
	if pg.Type == PageCursor {
		switch {
		case pg.Cursor != "" && pg.LastItemCursor != "":
			d.errAt(p+".last_item_cursor", "set cursor or last_item_cursor, not both")
		case pg.Cursor == "" && pg.LastItemCursor == "":
			if !d.failed(p+".cursor") && !d.failed(p+".last_item_cursor") {
				d.errAt(p+".cursor", "required: gjson path to the next cursor in the body (or set last_item_cursor)")
			}
		}
		return
	}
	// page and offset
	if !d.isSet(p + ".start") {
		if pg.Type == PagePage {
			pg.Start = 1
		}
	} else if pg.Start < 0 {
		d.errAt(p+".start", "must be 0 or more, got %d", pg.Start)
	}
	switch {
	case d.failed(p + ".size"):
	case d.isSet(p+".size") && pg.Size < 1:
		d.errAt(p+".size", "must be 1 or more, got %d", pg.Size)
	case pg.Type == PageOffset && !d.isSet(p+".size"):
		d.errAt(p+".size", "required for offset pagination: the page size to ask for")
	}
	if pg.Size > 0 && pg.SizeParam == "" {
		pg.SizeParam = map[string]string{PagePage: "per_page", PageOffset: "limit"}[pg.Type]
	} else if pg.SizeParam != "" && !d.isSet(p+".size") {
		d.errAt(p+".size_param", "set size too: the page size to send")
	}
	if pg.SizeParam != "" && pg.SizeParam == pg.Param {
		d.errAt(p+".size_param", "same as param %q", pg.Param)
	}
	switch pg.Stop {
	case "":
		switch {
		case pg.Total != "":
			pg.Stop = StopTotal
		case pg.Size > 0:
			pg.Stop = StopShort
		default:
			pg.Stop = StopEmpty
		}
	case StopEmpty:
	case StopShort:
		if pg.Size < 1 && !d.failed(p+".size") {
			d.errAt(p+".stop", "stop: short needs size")
		}
	case StopTotal:
		if pg.Total == "" && !d.failed(p+".total") {
			d.errAt(p+".stop", "stop: total needs total, the gjson path to the item count")
		}
	default:
		d.errAt(p+".stop", "bad value %q: want empty, short or total", d.orig(p+".stop"))
	}
	if pg.Stop != StopTotal && pg.Total != "" && d.isSet(p+".stop") {
		d.errAt(p+".total", "only used with stop: total")
	}
}

// hosts validates the top-level hosts list.
func (d *decoder) hosts(hs []Host) {
	lines := map[string]int{}
	for i := range hs {
		p := fmt.Sprintf("hosts[%d]", i)
		h := &hs[i]
		f := p + ".host"
		switch {
		case d.failed(f):
		case h.Host == "":
			d.errAt(f, "required: a host name such as api.github.com, or host:port")
		default:
			u, err := url.Parse("//" + h.Host)
			if err != nil || u.Host != h.Host || u.Hostname() == "" || u.User != nil || u.Path != "" {
				d.errAt(f, "bad host %q: want a host name such as api.github.com, or host:port, without scheme or path", d.orig(f))
				break
			}
			if port := u.Port(); port != "" {
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
					d.errAt(f, "bad port in %q", d.orig(f))
					break
				}
			}
			h.Host = strings.ToLower(h.Host)
			if first, dup := lines[h.Host]; dup {
				d.errAt(f, "duplicate host %q (first at line %d)", d.orig(f), first)
				break
			}
			lines[h.Host] = d.loc(f).line
		}
		d.rate(p+".rate_limit", p+".rate_burst", h.RateLimit, &h.RateBurst, true)
	}
}
