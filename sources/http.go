package sources

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pollbridge/pollbridge/bridge/redact"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
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
	// MetaETag holds the ETag of the last 2xx response.
	MetaETag = "etag"
	// MetaLastModified holds the Last-Modified of the last 2xx response.
	MetaLastModified = "last_modified"
)

// userAgent is sent with every request unless the config overrides it.
const userAgent = "pollbridge"

var _ bridge.Source = (*HTTP)(nil)

// errFetchTimeout is the context cause when a fetch runs out of its own
// time (not the caller's); it reads and matches as context.DeadlineExceeded.
var errFetchTimeout = fmt.Errorf("%w", context.DeadlineExceeded)

// New returns the source described by cfg. Only HTTP sources exist for now.
//
// client is used for every request; nil means a client with
// http.DefaultTransport. The client is not modified: New works on a shallow
// copy whose redirect policy drops cfg.Headers when a redirect leaves the
// origin of cfg.URL (they often carry API keys).
func New(cfg config.Source, client *http.Client) (bridge.Source, error) {
	s, err := NewHTTP(cfg, client)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

// HTTP is a source that GETs one JSON endpoint. It is safe for concurrent
// use, though the engine never overlaps fetches of one source.
type HTTP struct {
	url       *url.URL
	headers   http.Header
	host      string // Host header override from cfg.Headers
	timeout   time.Duration
	maxBody   int64
	itemsPath string
	keyPath   string
	client    *http.Client
	secrets   []string // header values, scrubbed from errors
}

// NewHTTP returns an HTTP source for cfg (see New).
func NewHTTP(cfg config.Source, client *http.Client) (*HTTP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL itself may hold a token
		}
		return nil, fmt.Errorf("parse url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("parse url: scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("parse url: no host")
	}
	s := &HTTP{
		url:       u,
		headers:   make(http.Header),
		timeout:   cfg.Timeout,
		maxBody:   int64(cfg.MaxBodySize),
		itemsPath: cfg.Items,
		keyPath:   cfg.Key,
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
		client = &http.Client{}
	}
	c := *client
	c.CheckRedirect = s.checkRedirect(client.CheckRedirect)
	s.client = &c
	return s, nil
}

// checkRedirect wraps next (nil: at most 10 redirects) so that the configured
// headers are not sent to another origin.
func (s *HTTP) checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != s.url.Scheme || req.URL.Host != s.url.Host {
			for k := range s.headers {
				if k != "Accept" && k != "User-Agent" {
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

// Fetch GETs the endpoint and returns every item it lists.
//
// meta is the Meta of the previous snapshot: its "etag" and "last_modified"
// become If-None-Match and If-Modified-Since, and a 304 answer returns
// Snapshot{NotModified: true, Meta: nil}. Otherwise the returned Meta is a
// copy of meta with "etag" and "last_modified" set from the response, or
// removed when the response has none. The whole fetch is bounded by the
// configured timeout and by ctx.
//
// Any failure (transport, non-2xx status, oversized or non-JSON body, an item
// without a key) is an error and no snapshot. Errors name the page and the
// step; they never contain header values or the URL's query.
func (s *HTTP) Fetch(ctx context.Context, meta map[string]string) (*bridge.Snapshot, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.timeout, errFetchTimeout)
	defer cancel()

	const page = 1 // pagination will loop here, sharing set and the deadline
	var set itemSet
	res, err := s.fetchPage(ctx, s.url, meta, &set)
	if err != nil {
		return nil, fmt.Errorf("fetch page %d: %w", page, err)
	}
	if res.notModified {
		return &bridge.Snapshot{NotModified: true, Pages: page}, nil
	}

	out := make(map[string]string, len(meta)+2)
	maps.Copy(out, meta)
	setOrDelete(out, MetaETag, res.etag)
	setOrDelete(out, MetaLastModified, res.lastModified)
	return &bridge.Snapshot{Items: set.items, Meta: out, Pages: page}, nil
}

// pageResult is what one response said besides its items.
type pageResult struct {
	notModified  bool
	etag         string
	lastModified string
}

// fetchPage GETs u and adds its items to set.
func (s *HTTP) fetchPage(ctx context.Context, u *url.URL, meta map[string]string, set *itemSet) (pageResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return pageResult{}, fmt.Errorf("build request: %w", redact.URLError(err))
	}
	req.Header = s.headers.Clone()
	if s.host != "" {
		req.Host = s.host
	}
	conditional := false
	if v := meta[MetaETag]; v != "" {
		req.Header.Set("If-None-Match", v)
		conditional = true
	}
	if v := meta[MetaLastModified]; v != "" {
		req.Header.Set("If-Modified-Since", v)
		conditional = true
	}

	resp, err := s.client.Do(req)
	if err != nil {
		return pageResult{}, s.requestError(ctx, u, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusNotModified {
		if !conditional {
			return pageResult{}, errors.New("status 304 Not Modified without a conditional request")
		}
		return pageResult{notModified: true}, nil
	}

	r, err := decodedBody(resp)
	if err != nil {
		return pageResult{}, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		excerpt, _ := io.ReadAll(io.LimitReader(r, 4096))
		return pageResult{}, fmt.Errorf("status %s%s", statusText(resp), s.snippet(excerpt))
	}
	body, err := s.readBody(resp, r)
	if err != nil {
		return pageResult{}, s.requestError(ctx, u, err)
	}
	if !json.Valid(body) {
		size := fmt.Sprintf("%d bytes", len(body))
		if len(body) == 0 {
			size = "empty body"
		}
		return pageResult{}, fmt.Errorf("response is not valid JSON (content type %q, %s)%s",
			resp.Header.Get("Content-Type"), size, s.snippet(body))
	}
	if err := extract(string(body), s.itemsPath, s.keyPath, set); err != nil {
		return pageResult{}, err
	}
	return pageResult{
		etag:         resp.Header.Get("ETag"),
		lastModified: resp.Header.Get("Last-Modified"),
	}, nil
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

// readBody reads r, the decoded body of resp, up to the configured limit.
func (s *HTTP) readBody(resp *http.Response, r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= s.maxBody && r == io.Reader(resp.Body) {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(r, s.maxBody+1)); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(buf.Len()) > s.maxBody {
		return nil, &bodyTooLargeError{limit: s.maxBody}
	}
	return buf.Bytes(), nil
}

// requestError explains a transport or read error without the URL's query.
func (s *HTTP) requestError(ctx context.Context, u *url.URL, err error) error {
	var tooLarge *bodyTooLargeError
	if errors.As(err, &tooLarge) {
		return err
	}
	err = redact.URLError(err)
	if context.Cause(ctx) == errFetchTimeout {
		return fmt.Errorf("GET %s: timed out after %s: %w", redactURL(u), s.timeout, err)
	}
	return fmt.Errorf("GET %s: %w", redactURL(u), err)
}

// snippet returns ": \"<excerpt>\"" of body for errors, or "" when there is
// nothing printable. Configured header values are scrubbed.
func (s *HTTP) snippet(body []byte) string {
	t := redact.Snippet(body, s.secrets)
	if t == "" {
		return ""
	}
	return fmt.Sprintf(": %q", t)
}

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

func setOrDelete(m map[string]string, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}
