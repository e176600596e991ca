package sources

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/pollbridge/pollbridge/bridge/config"
)

// pageReq is one request to make: its URL and body.
type pageReq struct {
	url  *url.URL
	body []byte
}

// pageState is what the page just fetched says, for finding the next one.
type pageState struct {
	n      int         // 1-based number of the page
	url    *url.URL    // its URL
	header http.Header // its response headers
	body   string      // its body, valid JSON
	items  int         // items it listed
	last   gjson.Result
	seen   int    // items listed by all pages so far, this one included
	sent   string // the cursor, page number or offset sent for it
}

// paginator finds the pages of one fetch. It is immutable; the state of a
// fetch travels in pageState and the seen set of fetch.
type paginator struct {
	cfg    config.Pagination
	origin *url.URL
}

// first returns the first page's request, base with the start page number
// or offset and the page size added.
func (p *paginator) first(s *HTTP) (pageReq, string, error) {
	switch p.cfg.Type {
	case config.PagePage, config.PageOffset:
		start := strconv.Itoa(p.cfg.Start)
		r, err := s.withParams(p.numberParams(start))
		return r, start, err
	}
	return pageReq{url: s.url, body: s.body}, "", nil
}

// numberParams returns the page-number or offset parameter and the size.
func (p *paginator) numberParams(v string) []param {
	ps := []param{{name: p.cfg.Param, value: v, number: true}}
	if p.cfg.SizeParam != "" {
		ps = append(ps, param{name: p.cfg.SizeParam, value: strconv.Itoa(p.cfg.Size), number: true})
	}
	return ps
}

// next returns the request for the page after st, or nil after the last
// page, and the cursor, page number or offset it sends.
func (p *paginator) next(s *HTTP, st *pageState, seen map[string]bool) (*pageReq, string, error) {
	c := &p.cfg
	if c.HasMore != "" {
		hm := gjson.Get(st.body, c.HasMore)
		switch hm.Type {
		case gjson.True:
		case gjson.False, gjson.Null:
			return nil, "", nil
		default:
			return nil, "", fmt.Errorf("has_more at %q: got %s, want true or false", c.HasMore, kind(hm))
		}
	}
	switch c.Type {
	case config.PageLink:
		next := nextLink(st.header.Values("Link"))
		if next == "" {
			return nil, "", nil
		}
		return p.follow(s, st, next, seen)
	case config.PageNextURL:
		v := gjson.Get(st.body, c.NextURL)
		switch v.Type {
		case gjson.Null:
			return nil, "", nil
		case gjson.String:
			if v.Str == "" {
				return nil, "", nil
			}
			return p.follow(s, st, v.Str, seen)
		default:
			return nil, "", fmt.Errorf("next URL at %q: got %s, want a string", c.NextURL, kind(v))
		}
	case config.PageCursor:
		return p.nextCursor(s, st)
	case config.PagePage, config.PageOffset:
		return p.nextNumber(s, st)
	}
	return nil, "", fmt.Errorf("unknown pagination type %q", c.Type)
}

// follow returns the request for a next-page URL found in a page: resolved
// against the page's URL, refused when it leaves the source's origin (the
// credentials would go with it) or repeats a page of this fetch.
func (p *paginator) follow(s *HTTP, st *pageState, raw string, seen map[string]bool) (*pageReq, string, error) {
	ref, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, "", errors.New("next page URL does not parse (the value is not shown)")
	}
	u := st.url.ResolveReference(ref)
	if !strings.EqualFold(u.Scheme, p.origin.Scheme) || !strings.EqualFold(u.Host, p.origin.Host) {
		return nil, "", fmt.Errorf("next page URL leaves the source's origin %s (it points to %s): refused, the credentials would go with it",
			redactURL(&url.URL{Scheme: p.origin.Scheme, Host: p.origin.Host}), redactURL(&url.URL{Scheme: u.Scheme, Host: u.Host}))
	}
	u.Fragment, u.RawFragment = "", ""
	if seen[u.String()] {
		return nil, "", fmt.Errorf("next page URL %s was fetched before in this poll: the API loops", s.displayURL(u))
	}
	return &pageReq{url: u, body: s.body}, "", nil
}

// nextCursor implements cursor pagination.
func (p *paginator) nextCursor(s *HTTP, st *pageState) (*pageReq, string, error) {
	c := &p.cfg
	var v gjson.Result
	where := ""
	if c.LastItemCursor != "" {
		if st.items == 0 {
			return nil, "", nil
		}
		v = st.last.Get(c.LastItemCursor)
		where = fmt.Sprintf("cursor at %q of the last item", c.LastItemCursor)
	} else {
		v = gjson.Get(st.body, c.Cursor)
		where = fmt.Sprintf("cursor at %q", c.Cursor)
	}
	var cur string
	switch v.Type {
	case gjson.Null:
		if c.LastItemCursor != "" {
			return nil, "", fmt.Errorf("%s: not found", where)
		}
		return nil, "", nil
	case gjson.String:
		cur = v.Str
	case gjson.Number:
		cur = v.Raw
	default:
		return nil, "", fmt.Errorf("%s: got %s, want a string or number", where, kind(v))
	}
	if cur == "" {
		return nil, "", nil
	}
	if cur == st.sent {
		return nil, "", fmt.Errorf("%s: the API returned the cursor it was sent: it loops", where)
	}
	r, err := s.withParams([]param{{name: c.Param, value: cur}})
	if err != nil {
		return nil, "", err
	}
	return &r, cur, nil
}

// nextNumber implements page-number and offset pagination.
func (p *paginator) nextNumber(s *HTTP, st *pageState) (*pageReq, string, error) {
	c := &p.cfg
	if st.items == 0 {
		return nil, "", nil
	}
	switch c.Stop {
	case config.StopShort:
		if st.items < c.Size {
			return nil, "", nil
		}
	case config.StopTotal:
		t := gjson.Get(st.body, c.Total)
		if t.Type != gjson.Number {
			return nil, "", fmt.Errorf("total at %q: got %s, want a number", c.Total, kind(t))
		}
		if float64(st.seen) >= t.Num {
			return nil, "", nil
		}
	}
	cur, err := strconv.Atoi(st.sent)
	if err != nil {
		return nil, "", fmt.Errorf("page parameter %q is not a number", st.sent)
	}
	step := 1
	if c.Type == config.PageOffset {
		step = st.items
	}
	v := strconv.Itoa(cur + step)
	r, err := s.withParams(p.numberParams(v))
	if err != nil {
		return nil, "", err
	}
	return &r, v, nil
}

// param is one pagination parameter to send.
type param struct {
	name, value string
	number      bool // a JSON number when sent in the body
}

// withParams returns the first page's request with ps set in the query or,
// for in: body, as top-level fields of the JSON body.
func (s *HTTP) withParams(ps []param) (pageReq, error) {
	if s.pager != nil && s.pager.cfg.In == "body" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(s.body, &obj); err != nil || obj == nil {
			return pageReq{}, errors.New("pagination in: body needs a body that is a JSON object")
		}
		for _, p := range ps {
			if p.number {
				obj[p.name] = json.RawMessage(p.value)
			} else {
				b, _ := json.Marshal(p.value)
				obj[p.name] = b
			}
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return pageReq{}, fmt.Errorf("encode body: %w", err)
		}
		return pageReq{url: s.url, body: b}, nil
	}
	u := *s.url
	q := u.Query()
	for _, p := range ps {
		q.Set(p.name, p.value)
	}
	u.RawQuery = q.Encode()
	return pageReq{url: &u, body: s.body}, nil
}

// nextLink returns the target of the first rel="next" link in Link header
// values (RFC 8288), or "".
func nextLink(values []string) string {
	for _, v := range values {
		for v != "" {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				// Not a link-value: skip to the next comma.
				i := strings.IndexByte(v, ',')
				if i < 0 {
					break
				}
				v = v[i+1:]
				continue
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			target := v[1:end]
			v = v[end+1:]
			isNext := false
			// Parameters up to the next comma outside quotes.
			for {
				v = strings.TrimLeft(v, " \t")
				if !strings.HasPrefix(v, ";") {
					break
				}
				v = strings.TrimLeft(v[1:], " \t")
				name, value, rest := linkParam(v)
				v = rest
				if strings.EqualFold(name, "rel") {
					for _, r := range strings.Fields(value) {
						if strings.EqualFold(r, "next") {
							isNext = true
						}
					}
				}
			}
			if isNext {
				return target
			}
		}
	}
	return ""
}

// linkParam splits one link parameter, name=value or name="value", off the
// front of s.
func linkParam(s string) (name, value, rest string) {
	i := 0
	for i < len(s) && s[i] != '=' && s[i] != ';' && s[i] != ',' {
		i++
	}
	name = strings.TrimSpace(s[:i])
	if i >= len(s) || s[i] != '=' {
		return name, "", s[i:]
	}
	s = strings.TrimLeft(s[i+1:], " \t")
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
			}
			b.WriteByte(s[j])
		}
		if j < len(s) {
			j++
		}
		return name, b.String(), s[j:]
	}
	j := 0
	for j < len(s) && s[j] != ';' && s[j] != ',' {
		j++
	}
	return name, strings.TrimSpace(s[:j]), s[j:]
}
