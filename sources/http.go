package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/redact"
)

// Defaults for zero config values (config normally fills them in).
const (
	// DefaultTimeout bounds one fetch when config.Source.Timeout is 0.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBodySize limits a response body when
	// config.Source.MaxBodySize is 0.
	DefaultMaxBodySize = 10 << 20
)

// Keys of Snapshot.Meta written by HTTP.
const (
	// MetaETag holds the ETag of the last 2xx response (of the first page).
	MetaETag = "etag"
	// MetaLastModified holds the Last-Modified of the last 2xx response
	// (of the first page).
	MetaLastModified = "last_modified"
	// MetaBodyHash holds the SHA-256 of all pages' bodies (and of the
	// settings that shape the items), hex.
	MetaBodyHash = "body_sha256"
)

// userAgent is sent with every request unless the config overrides it.
const userAgent = "pollbridge"

// hiddenValue replaces the values of configured query parameters in
// RequestInfo.URL.
const hiddenValue = "REDACTED"

var _ bridge.Source = (*HTTP)(nil)

// errFetchTimeout is the context cause when a fetch runs out of its own
// time (not the caller's); it reads and matches as context.DeadlineExceeded.
var errFetchTimeout = fmt.Errorf("%w", context.DeadlineExceeded)

// New returns the source described by cfg, without per-host rate limits
// (NewRegistry(nil, nil).New). A daemon builds its sources with one
// Registry instead, so that they share the limits of the hosts list.
//
// client is used for every request; nil means the client that every source
// of the Registry shares, whose transport is http.DefaultTransport's with
// up to 128 idle connections per host. The client is not modified: New
// works on a shallow copy whose redirect policy drops cfg.Headers and credentials when a
// redirect leaves the origin of cfg.URL, and whose transport carries the
// TLS settings (which need an *http.Transport).
func New(cfg config.Source, client *http.Client) (bridge.Source, error) {
	return NewRegistry(nil, nil).New(cfg, client)
}

// HTTP is a source that fetches one JSON endpoint, all its pages. It is
// safe for concurrent use, though the engine never overlaps fetches of one
// source.
type HTTP struct {
	name        string
	url         *url.URL // cfg.URL with cfg.Query
	method      string
	body        []byte
	headers     http.Header
	host        string // Host header override from cfg.Headers
	timeout     time.Duration
	maxBody     int64
	itemsPath   string
	keyPaths    []string
	client      *http.Client
	auth        *authorizer
	pager       *paginator // nil: one page
	maxPages    int
	conditional bool // send validators (on the first page)
	limiter     *rate.Limiter
	reg         *Registry
	salt        []byte // digest of the settings that shape the items
	secrets     []string
	hidden      map[string]bool // query parameters whose values are hidden
	sleep       func(context.Context, time.Duration) error
	now         func() time.Time
	lastItems   atomic.Int64             // items of the last snapshot, to size the next one's set
	lastShown   atomic.Pointer[shownURL] // the last URL of a RequestInfo, shown
}

// maxPooledBody is the largest body buffer kept for reuse; a rare giant
// answer is not held on to.
const maxPooledBody = 4 << 20

// NewHTTP returns an HTTP source for cfg (see New).
func NewHTTP(cfg config.Source, client *http.Client) (*HTTP, error) {
	return NewRegistry(nil, nil).NewHTTP(cfg, client)
}

// NewHTTP returns an HTTP source for cfg that shares the Registry's host
// limits (see New).
func (r *Registry) NewHTTP(cfg config.Source, client *http.Client) (*HTTP, error) {
	u, err := redact.HTTPURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	s := &HTTP{
		name:      cfg.Name,
		headers:   make(http.Header),
		method:    strings.ToUpper(cfg.Method),
		timeout:   cfg.Timeout,
		maxBody:   int64(cfg.MaxBodySize),
		itemsPath: cfg.Items,
		keyPaths:  cfg.Key,
		reg:       r,
		hidden:    map[string]bool{},
		sleep:     sleepCtx,
		now:       time.Now,
	}
	switch s.method {
	case "":
		s.method = http.MethodGet
	case http.MethodGet, http.MethodPost:
	default:
		return nil, fmt.Errorf("method %q: want GET or POST", cfg.Method)
	}
	for k := range u.Query() {
		s.hidden[k] = true
	}
	if len(cfg.Query) > 0 {
		q := u.Query()
		for k, v := range cfg.Query {
			q.Set(k, v)
			s.hidden[k] = true
			s.secrets = append(s.secrets, v)
		}
		u.RawQuery = q.Encode()
	}
	s.url = u
	if cfg.Body != "" {
		if !json.Valid([]byte(cfg.Body)) {
			return nil, errors.New("body: not valid JSON (the value is not shown)")
		}
		s.body = []byte(cfg.Body)
		s.headers.Set("Content-Type", "application/json")
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodySize
	}
	s.headers.Set("Accept", "application/json")
	s.headers.Set("User-Agent", userAgent)
	for k, v := range cfg.Headers {
		if strings.EqualFold(k, "Host") {
			s.host = v
			continue
		}
		s.headers.Set(k, v)
		s.secrets = append(s.secrets, v)
	}

	if client == nil {
		client = r.client
	}
	if client, err = clientWithTLS(client, cfg.TLS, cfg.Name, r.log); err != nil {
		return nil, err
	}
	if s.auth, err = newAuthorizer(cfg.Auth, client); err != nil {
		return nil, err
	}
	if s.auth != nil {
		s.secrets = append(s.secrets, s.auth.static...)
		if s.auth.hiddenParam != "" {
			s.hidden[s.auth.hiddenParam] = true
		}
	}
	c := *client
	c.CheckRedirect = s.checkRedirect(client.CheckRedirect)
	s.client = &c

	s.maxPages, s.conditional = 1, true
	if pg := cfg.Pagination; pg != nil {
		s.pager = &paginator{cfg: *pg, origin: u}
		s.maxPages = pg.MaxPages
		if s.maxPages <= 0 {
			s.maxPages = config.DefaultMaxPages
		}
		s.conditional = pg.Conditional != "never"
		if pg.In == "body" {
			var obj map[string]json.RawMessage
			if json.Unmarshal(s.body, &obj) != nil || obj == nil {
				return nil, errors.New("pagination.in: body needs a body that is a JSON object")
			}
		}
	}
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst)
	}
	s.salt = settingsDigest(cfg)
	return s, nil
}

// settingsDigest hashes the settings that decide what a body means (items,
// key, ignore, watch, filter, ...), so that a changed configuration is
// never answered by the unchanged-body shortcut. Request and credential
// settings are left out: they reach the body itself.
func settingsDigest(cfg config.Source) []byte {
	cfg.URL, cfg.Headers, cfg.Query, cfg.Body, cfg.TLS, cfg.Auth = "", nil, nil, "", nil, nil
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil // no digest: the shortcut stays off
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// checkRedirect wraps next (nil: at most 10 redirects) so that the
// configured headers and credentials are not sent to another origin.
func (s *HTTP) checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != s.url.Scheme || req.URL.Host != s.url.Host {
			for k := range req.Header {
				if k != "Accept" && k != "User-Agent" && k != "Content-Type" {
					req.Header.Del(k)
				}
			}
			req.Host = ""
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// Fetch fetches every page of the endpoint and returns every item listed.
//
// meta is the Meta of the previous snapshot. Its "etag" and "last_modified"
// become If-None-Match and If-Modified-Since of the first page (GET only;
// with pagination unless conditional: never), and a 304 answer returns
// Snapshot{NotModified: true, Meta: nil}. When all pages are read, their
// hash is compared with meta's "body_sha256": equal also returns
// NotModified, before any item is extracted. An empty meta asks for an
// unconditional fetch: neither shortcut applies. Otherwise the returned
// Meta is a copy of meta with "etag" and "last_modified" set from the first
// page's response (or removed when it has none) and "body_sha256" set.
// The whole fetch, rate-limit and Retry-After waits included, is bounded by
// the configured timeout and by ctx.
//
// Any failure (transport, non-2xx status, oversized or unacceptable body, a
// page past max_pages, a next URL on another origin, an item without a
// key) is an error and no snapshot. Errors name the page and the step;
// they never contain credentials, header values or the URL's query. A 429
// or 503 the fetch cannot wait for is a *RetryAfterError.
func (s *HTTP) Fetch(ctx context.Context, meta map[string]string) (*bridge.Snapshot, error) {
	snap, err := s.fetch(ctx, meta)
	if err != nil {
		return nil, s.scrub(err)
	}
	return snap, nil
}

func (s *HTTP) fetch(ctx context.Context, meta map[string]string) (*bridge.Snapshot, error) {
	ctx, cancel := s.reg.deadlines.within(ctx, s.timeout, time.Now())
	defer cancel()

	var reqs []bridge.RequestInfo
	var pages []page
	var first pageResult
	var h hash.Hash          // of every page, made at the first 2xx
	var seen map[string]bool // the URLs read, when paginating
	req := pageReq{url: s.url, body: s.body}
	sent := ""
	if s.pager != nil {
		var err error
		if req, sent, err = s.pager.first(s); err != nil {
			return nil, fmt.Errorf("fetch page 1: %w", err)
		}
	}
	total := 0
	for n := 1; ; n++ {
		if n > s.maxPages {
			return nil, fmt.Errorf("fetch page %d: the API has more than %d pages (pagination.max_pages): refusing a partial snapshot", n, s.maxPages)
		}
		conditional := n == 1 && s.conditional && s.method == http.MethodGet
		res, err := s.fetchPage(ctx, req, meta, conditional, &reqs)
		if err != nil {
			return nil, fmt.Errorf("fetch page %d: %w", n, err)
		}
		if res.notModified {
			return &bridge.Snapshot{NotModified: true, Pages: n, Requests: reqs}, nil
		}
		if n == 1 {
			first = res
			h = sha256.New()
			h.Write(s.salt)
		}
		var lenBuf [8]byte
		binary.BigEndian.PutUint64(lenBuf[:], uint64(len(res.body)))
		h.Write(lenBuf[:])
		h.Write(res.body)
		if s.pager == nil && s.unchanged(meta, h) {
			// Byte for byte the answer that was accepted last time:
			// nothing to check, nothing to extract.
			s.release(res.buf)
			return &bridge.Snapshot{NotModified: true, Pages: 1, Requests: reqs}, nil
		}
		if err := s.checkBody(res); err != nil {
			s.release(res.buf)
			return nil, fmt.Errorf("fetch page %d: %w", n, err)
		}
		pg := newPage(res.body) // a copy: the buffer goes back to the pool
		s.release(res.buf)
		pages = append(pages, pg)
		doc := pg.doc
		if s.pager == nil {
			break // its items are counted as they are extracted, in one pass
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		seen[req.url.String()] = true
		count, last, err := pageItems(doc, s.itemsPath)
		if err != nil {
			return nil, fmt.Errorf("fetch page %d: %w", n, err)
		}
		reqs[len(reqs)-1].Items = count
		total += count
		next, nextSent, err := s.pager.next(s, &pageState{
			n: n, url: req.url, header: res.header, body: doc,
			items: count, last: last, seen: total, sent: sent,
		}, seen)
		if err != nil {
			return nil, fmt.Errorf("fetch page %d: find the next page: %w", n, err)
		}
		if next == nil {
			break
		}
		req, sent = *next, nextSent
	}

	// (A single page was compared already, before its JSON check.)
	if s.pager != nil && s.unchanged(meta, h) {
		return &bridge.Snapshot{NotModified: true, Pages: len(pages), Requests: reqs}, nil
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if s.pager == nil {
		total = int(s.lastItems.Load()) // sizes the set like the last answer
	}
	set := newItemSet(total)
	for i, pg := range pages {
		count, err := extract(pg, s.itemsPath, s.keyPaths, &set)
		if err != nil {
			return nil, fmt.Errorf("fetch page %d: %w", i+1, err)
		}
		if s.pager == nil {
			reqs[len(reqs)-1].Items = count
		}
	}
	s.lastItems.Store(int64(len(set.items)))
	out := make(map[string]string, len(meta)+3)
	maps.Copy(out, meta)
	setOrDelete(out, MetaETag, first.etag)
	setOrDelete(out, MetaLastModified, first.lastModified)
	if s.salt != nil {
		out[MetaBodyHash] = sum
	} else {
		delete(out, MetaBodyHash)
	}
	return &bridge.Snapshot{Items: set.items, Meta: out, Pages: len(pages), Requests: reqs}, nil
}

// unchanged reports whether h, the hash of every page read, equals the
// body hash in meta: the answer is the one the last snapshot was made of.
// It never holds for an empty meta (an unconditional fetch).
func (s *HTTP) unchanged(meta map[string]string, h hash.Hash) bool {
	if s.salt == nil || len(meta) == 0 || meta[MetaBodyHash] == "" {
		return false
	}
	var sum [sha256.Size]byte
	want, err := hex.DecodeString(meta[MetaBodyHash])
	return err == nil && bytes.Equal(h.Sum(sum[:0]), want)
}

// pageResult is one page's answer.
type pageResult struct {
	notModified  bool
	etag         string
	lastModified string
	header       http.Header
	body         []byte        // the body, in buf
	buf          *bytes.Buffer // from the Registry's pool; nil for a 304
}

// release returns a body buffer to the pool.
func (s *HTTP) release(buf *bytes.Buffer) {
	if buf != nil && buf.Cap() <= maxPooledBody {
		s.reg.bufs.Put(buf)
	}
}

// fetchPage makes the request r and returns its checked body. It waits for
// the rate limits, applies credentials, retries once with a new token on a
// 401 (OAuth2) and once after a Retry-After that fits the deadline on a 429
// or 503, and appends every attempt to reqs.
func (s *HTTP) fetchPage(ctx context.Context, r pageReq, meta map[string]string, conditional bool, reqs *[]bridge.RequestInfo) (pageResult, error) {
	refreshed, waited := false, false
	for {
		if err := s.waitLimits(ctx, r.url); err != nil {
			return pageResult{}, err
		}
		req, token, sentConditional, err := s.newRequest(ctx, r, meta, conditional)
		if err != nil {
			return pageResult{}, err
		}
		start := s.now()
		info := bridge.RequestInfo{Method: req.Method, URL: s.shownURL(req.URL)}
		resp, err := s.client.Do(req)
		if err != nil {
			info.Duration = s.now().Sub(start)
			*reqs = append(*reqs, info)
			return pageResult{}, s.requestError(ctx, r.url, err)
		}
		info.Status = resp.StatusCode
		res, retry, err := s.readResponse(ctx, r, resp, sentConditional, &info, token, &refreshed, &waited)
		resp.Body.Close()
		info.Duration = s.now().Sub(start)
		*reqs = append(*reqs, info)
		if retry != nil {
			if err := retry(); err != nil {
				return pageResult{}, err
			}
			continue
		}
		return res, err
	}
}

// newRequest builds the request for r with headers, credentials and, when
// conditional and meta has them, the validators.
func (s *HTTP) newRequest(ctx context.Context, r pageReq, meta map[string]string, conditional bool) (*http.Request, string, bool, error) {
	// What http.NewRequestWithContext makes, from the parsed URL: parsing
	// its text again was 2% of a 304 poll. A copy, because credentials may
	// add to its query.
	u := *r.url
	req := (&http.Request{
		Method:     s.method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       strings.TrimSuffix(u.Host, ":"),
	}).WithContext(ctx)
	if r.body != nil {
		body := r.body
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Body, _ = req.GetBody()
		if len(body) == 0 {
			req.Body, req.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		}
	}
	// The configured headers, sharing their value slices: everything below
	// replaces values (Set), never appends to them. Cheaper than Clone,
	// which copies every value into one new slice.
	req.Header = make(http.Header, len(s.headers)+2)
	for k, v := range s.headers {
		if r.body != nil || k != "Content-Type" {
			req.Header[k] = v[:len(v):len(v)]
		}
	}
	if s.host != "" {
		req.Host = s.host
	}
	sent := false
	if conditional {
		if v := meta[MetaETag]; v != "" {
			req.Header.Set("If-None-Match", v)
			sent = true
		}
		if v := meta[MetaLastModified]; v != "" {
			req.Header.Set("If-Modified-Since", v)
			sent = true
		}
	}
	token, err := s.auth.apply(ctx, req)
	if err != nil {
		return nil, "", false, err
	}
	return req, token, sent, nil
}

// readResponse checks one answer. It returns either the page, an error,
// or a retry function to call before trying the same request again.
func (s *HTTP) readResponse(ctx context.Context, r pageReq, resp *http.Response, conditional bool,
	info *bridge.RequestInfo, token string, refreshed, waited *bool) (pageResult, func() error, error) {
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified:
		if !conditional {
			return pageResult{}, nil, errors.New("status 304 Not Modified without a conditional request")
		}
		return pageResult{notModified: true}, nil, nil
	case code == http.StatusUnauthorized && s.auth.refreshable() && !*refreshed:
		*refreshed = true
		drain(resp.Body)
		return pageResult{}, func() error {
			s.auth.oauth.invalidate(token)
			return nil
		}, nil
	case (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable):
		if wait, ok := retryAfter(resp.Header, s.now()); ok {
			at := s.now().Add(wait)
			deadline, has := ctx.Deadline()
			if *waited || (has && at.After(deadline)) {
				drain(resp.Body)
				return pageResult{}, nil, &RetryAfterError{Status: code, At: at, Retried: *waited}
			}
			*waited = true
			drain(resp.Body)
			return pageResult{}, func() error {
				if err := s.sleep(ctx, wait); err != nil {
					return fmt.Errorf("wait %s for Retry-After: %w", wait, err)
				}
				return nil
			}, nil
		}
	}

	rd, err := decodedBody(resp)
	if err != nil {
		return pageResult{}, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		excerpt, _ := io.ReadAll(io.LimitReader(rd, 4096))
		info.Bytes = int64(len(excerpt))
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized && *refreshed {
			hint = " (after fetching a new OAuth2 token)"
		}
		return pageResult{}, nil, fmt.Errorf("status %s%s%s", statusText(resp), hint, s.snippet(excerpt))
	}
	buf, err := s.readBody(resp, rd)
	if err != nil {
		return pageResult{}, nil, s.requestError(ctx, r.url, err)
	}
	info.Bytes = int64(buf.Len())
	return pageResult{
		etag:         resp.Header.Get("ETag"),
		lastModified: resp.Header.Get("Last-Modified"),
		header:       resp.Header,
		body:         buf.Bytes(),
		buf:          buf,
	}, nil, nil
}

// checkBody refuses a page whose body is not acceptable JSON (see
// checkJSON), saying why.
func (s *HTTP) checkBody(res pageResult) error {
	err := checkJSON(res.body)
	if err == nil {
		return nil
	}
	size := fmt.Sprintf("%d bytes", len(res.body))
	if len(res.body) == 0 {
		size = "empty body"
	}
	if err.Error() == "body is not valid JSON" {
		return fmt.Errorf("response is not valid JSON (content type %q, %s)%s",
			res.header.Get("Content-Type"), size, s.snippet(res.body))
	}
	return fmt.Errorf("response refused: %w", err)
}

// drain reads a little of a body that is thrown away, so the connection
// can be reused.
func drain(r io.Reader) {
	io.Copy(io.Discard, io.LimitReader(r, 64<<10))
}

// bodyTooLargeError is returned by readBody when the body exceeds the limit.
type bodyTooLargeError struct{ limit int64 }

func (e *bodyTooLargeError) Error() string {
	return fmt.Sprintf("response body exceeds %d bytes", e.limit)
}

// decodedBody returns the body of resp decompressed. The transport
// decompresses gzip only when it asked for it; a server may gzip anyway (or
// the client may disable compression), so that is handled here.
func decodedBody(resp *http.Response) (io.Reader, error) {
	if resp.Uncompressed {
		return resp.Body, nil
	}
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return resp.Body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("decompress body: %w", err)
		}
		return zr, nil
	default:
		return nil, fmt.Errorf("unsupported content encoding %q", enc)
	}
}

// readBody reads r, the decoded body of resp, up to the configured limit,
// into a buffer from the Registry's pool (see release).
func (s *HTTP) readBody(resp *http.Response, r io.Reader) (*bytes.Buffer, error) {
	buf, _ := s.reg.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if n := resp.ContentLength; n > 0 && n <= s.maxBody && r == io.Reader(resp.Body) {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(r, s.maxBody+1)); err != nil {
		s.release(buf)
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(buf.Len()) > s.maxBody {
		s.release(buf)
		return nil, &bodyTooLargeError{limit: s.maxBody}
	}
	return buf, nil
}

// requestError explains a transport or read error without the URL's query.
func (s *HTTP) requestError(ctx context.Context, u *url.URL, err error) error {
	var tooLarge *bodyTooLargeError
	if errors.As(err, &tooLarge) {
		return err
	}
	err = redact.URLError(err)
	if context.Cause(ctx) == errFetchTimeout {
		return fmt.Errorf("%s %s: timed out after %s: %w", s.method, redactURL(u), s.timeout, err)
	}
	return fmt.Errorf("%s %s: %w", s.method, redactURL(u), err)
}

// snippet returns ": \"<excerpt>\"" of body for errors, or "" when there is
// nothing printable. Credentials and header values are scrubbed.
func (s *HTTP) snippet(body []byte) string {
	t := redact.Snippet(body, s.allSecrets())
	if t == "" {
		return ""
	}
	return fmt.Sprintf(": %q", t)
}

// allSecrets lists every value to keep out of messages, also in the
// escaped forms a server may echo from a URL.
func (s *HTTP) allSecrets() []string {
	base := append(s.secrets[:len(s.secrets):len(s.secrets)], s.auth.secrets()...)
	out := base
	for _, sec := range base {
		for _, esc := range []string{url.QueryEscape(sec), url.PathEscape(sec)} {
			if esc != sec {
				out = append(out, esc)
			}
		}
	}
	return out
}

// scrub replaces any secret that reached an error message by "[redacted]":
// a last line of defence for messages that quote what a server said.
func (s *HTTP) scrub(err error) error {
	msg := err.Error()
	clean := msg
	for _, sec := range s.allSecrets() {
		if len(sec) >= 4 {
			clean = strings.ReplaceAll(clean, sec, "[redacted]")
		}
	}
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

// scrubbedError is an error whose message had secrets removed; it still
// matches what it wraps with errors.Is and errors.As.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// statusText renders "500 Internal Server Error".
func statusText(resp *http.Response) string {
	if t := http.StatusText(resp.StatusCode); t != "" {
		return fmt.Sprintf("%d %s", resp.StatusCode, t)
	}
	return fmt.Sprint(resp.StatusCode)
}

// redactURL renders u without user info, query or fragment.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// shownURL is a URL and its displayURL.
type shownURL struct {
	u   url.URL
	out string
}

// shownURL is displayURL(u), remembered for the last URL: a source
// usually requests the same one every poll.
func (s *HTTP) shownURL(u *url.URL) string {
	if last := s.lastShown.Load(); last != nil && last.u == *u {
		return last.out
	}
	out := s.displayURL(u)
	s.lastShown.Store(&shownURL{u: *u, out: out})
	return out
}

// displayURL renders u for RequestInfo: no user info or fragment, the
// values of configured query parameters (which may hold keys) replaced by
// REDACTED, and any secret scrubbed. Pagination parameters stay readable.
func (s *HTTP) displayURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if s.hidden[k] {
				q[k] = []string{hiddenValue}
			}
		}
		r.RawQuery = q.Encode()
	}
	out := r.String()
	for _, sec := range s.allSecrets() {
		if len(sec) >= 4 {
			out = strings.ReplaceAll(out, sec, "[redacted]")
		}
	}
	return out
}

func setOrDelete(m map[string]string, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

// Describe renders a snapshot's requests for `pollbridge poll`, one line
// each: method, URL (secrets hidden), status, items, bytes and time.
func Describe(reqs []bridge.RequestInfo) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		status := "no answer"
		if r.Status != 0 {
			status = fmt.Sprint(r.Status)
		}
		out[i] = fmt.Sprintf("%s %s → %s, %d item(s), %d bytes, %s", r.Method, r.URL, status, r.Items, r.Bytes, r.Duration.Round(time.Millisecond))
	}
	return out
}
