package sinks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pollbridge/pollbridge/bridge/redact"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

// DefaultTimeout bounds one delivery attempt when config.Sink.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// maxDrain is how much of a receiver's answer is read (then discarded) so
// the connection can be reused.
const maxDrain = 64 << 10

var _ bridge.Sink = (*Webhook)(nil)

// errSendTimeout is the context cause when an attempt runs out of its own
// time (not the caller's); it reads and matches as context.DeadlineExceeded.
var errSendTimeout = fmt.Errorf("%w", context.DeadlineExceeded)

// Webhook is a sink that POSTs Standard Webhooks signed payloads to one URL.
// It is safe for concurrent use.
type Webhook struct {
	url     string
	origin  string // scheme://host, for errors
	key     []byte // HMAC key; nil sends unsigned requests
	headers http.Header
	format  *Format
	timeout time.Duration
	client  *http.Client
	secrets []string  // scrubbed from error snippets
	macs    sync.Pool // HMAC-SHA256 hashes keyed with key, reset before use
	now     func() time.Time
}

// NewWebhook returns a webhook sink for cfg. client is used for every
// request (nil: a client of its own with http.DefaultTransport's settings
// and an idle connection for each delivery in flight); it is not modified,
// the sink works on a shallow copy that does not follow redirects. It fails
// for a URL that is not http(s), a secret that is not "whsec_" + base64 and
// a bad payload format (see NewFormat).
func NewWebhook(cfg config.Sink, client *http.Client) (*Webhook, error) {
	u, err := redact.HTTPURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	format, err := NewFormat(cfg)
	if err != nil {
		return nil, fmt.Errorf("payload format: %w", err)
	}
	w := &Webhook{
		url:     cfg.URL,
		origin:  u.Scheme + "://" + u.Host,
		headers: make(http.Header),
		format:  format,
		timeout: cfg.Timeout,
		now:     time.Now,
	}
	if w.timeout <= 0 {
		w.timeout = DefaultTimeout
	}
	if cfg.Secret != "" {
		key, err := decodeSecret(cfg.Secret)
		if err != nil {
			return nil, err
		}
		w.key = key
		w.macs.New = func() any { return hmac.New(sha256.New, key) }
		w.secrets = append(w.secrets, cfg.Secret, strings.TrimPrefix(cfg.Secret, secretPrefix))
	}
	w.headers.Set("User-Agent", "pollbridge")
	for k, v := range cfg.Headers {
		w.headers.Set(k, v)
		w.secrets = append(w.secrets, v)
	}
	for _, k := range []string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"} {
		w.headers.Del(k)
	}

	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Keep a connection per delivery in flight: Go's default of 2
		// idle connections per host would close the others after each
		// request and dial again for the next.
		t.MaxIdleConnsPerHost = max(cfg.Concurrency, 2)
		// And no lower overall cap (Go's default is 100): a full idle pool
		// fails the request that tries to return its connection to it
		// ("putIdleConn: too many idle connections"), after the receiver
		// got it, so the event would be sent twice.
		t.MaxIdleConns = 0
		client = &http.Client{Transport: t}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	w.client = &c
	return w, nil
}

// Send makes one attempt to POST the payload of ev in the configured format
// (see Format.Render; Encode for the default standard format) with the
// headers webhook-id (ev.ID), webhook-timestamp (now, so fresh at every
// attempt), webhook-signature (when a secret is configured; it signs the
// body as sent, whatever the format), content-type, user-agent, the
// format's own headers and the configured headers (which cannot replace the
// webhook-* ones). The attempt is bounded by the configured timeout and by
// ctx.
//
// It returns nil for a 2xx answer. 408, 429 and 5xx answers are retryable
// *bridge.DeliveryError with RetryAfter from a Retry-After header (seconds
// or HTTP date); redirects (not followed) and other 4xx answers are
// permanent ones, and so is an event that cannot be rendered (a template
// that fails on it, for example). Network
// errors and timeouts are plain errors, to be retried. Errors quote a short
// printable excerpt of the receiver's answer, never the secret, the
// configured header values or the URL's path and query.
func (w *Webhook) Send(ctx context.Context, ev *bridge.Event) error {
	// A header map of its own (the transport reads it while other
	// deliveries run), sized for the content-type and webhook-* headers so
	// that setting them does not grow it. The configured values are
	// shared, capacity clipped: headers are only ever Set here, and an
	// Add would copy rather than write into them.
	header := make(http.Header, len(w.headers)+4)
	for k, v := range w.headers {
		header[k] = slices.Clip(v)
	}
	body, err := w.format.Render(ev, header)
	if err != nil {
		return &bridge.DeliveryError{Permanent: true, Err: err}
	}
	if ev.ID == "" {
		return &bridge.DeliveryError{Permanent: true, Err: errors.New("event has no id")}
	}

	ctx, cancel := context.WithTimeoutCause(ctx, w.timeout, errSendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return &bridge.DeliveryError{Permanent: true, Err: fmt.Errorf("build request: %w", redact.URLError(err))}
	}
	req.Header = header
	now := w.now()
	req.Header.Set("Webhook-Id", ev.ID)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	if w.key != nil {
		h := w.macs.Get().(hash.Hash)
		req.Header.Set("Webhook-Signature", signatureWith(h, ev.ID, now.Unix(), body))
		w.macs.Put(h)
	}

	resp, err := w.client.Do(req)
	if err != nil {
		err = redact.URLError(err)
		if context.Cause(ctx) == errSendTimeout {
			return fmt.Errorf("POST %s: timed out after %s: %w", w.origin, w.timeout, err)
		}
		return fmt.Errorf("POST %s: %w", w.origin, err)
	}
	var answer []byte // only a failure's answer is quoted
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	} else {
		answer, _ = io.ReadAll(io.LimitReader(resp.Body, maxDrain))
	}
	resp.Body.Close()
	return w.classify(resp, answer, now)
}

// classify turns a receiver's answer into Send's result.
func (w *Webhook) classify(resp *http.Response, answer []byte, now time.Time) error {
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	de := &bridge.DeliveryError{Status: code}
	text := http.StatusText(code)
	if text == "" {
		text = "unexpected status"
	}
	switch {
	case code >= 300 && code <= 399:
		de.Permanent = true
		text = "redirects are not followed"
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		de.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	case code >= 400 && code <= 499:
		de.Permanent = true
	}
	if s := redact.Snippet(answer, w.secrets); s != "" {
		de.Err = fmt.Errorf("%s: %q", text, s)
	} else {
		de.Err = errors.New(text)
	}
	return de
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP date,
// as a wait from now; 0 when absent, invalid or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		switch {
		case n <= 0:
			return 0
		case n > int64(math.MaxInt64/time.Second):
			return math.MaxInt64 // not a policy cap: avoids overflow
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
