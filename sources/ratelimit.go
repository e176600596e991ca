package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

// Registry builds the sources of one configuration and holds what they
// share: the per-host rate limiters of the top-level hosts list, the
// logger for construction warnings, the HTTP client, the pool of body
// buffers and the fetch deadlines (deadline.go). Build every source of a
// process with one Registry, so that sources calling the same host share
// its limit and its connections. A Registry is safe for concurrent use.
type Registry struct {
	hosts  map[string]*rate.Limiter // "host" or "host:port", lower case
	log    *slog.Logger
	client *http.Client // shared by sources built without a client of their own
	bufs   sync.Pool    // *bytes.Buffer for response bodies, reused by every source
	// deadlines ends fetches after their timeout, sharing one context
	// among fetches that begin together.
	deadlines deadlines
}

// maxIdleConnsPerHost is how many idle keep-alive connections the sources
// of one Registry keep per host. Many sources often poll one API at the
// same moment; Go's default of 2 would close the other connections after
// every poll and dial new ones on the next (the largest cost of an
// unchanged poll before this limit was raised).
const maxIdleConnsPerHost = 128

// newTransport returns the transport a Registry's sources share: Go's
// default transport with room for many idle connections per host.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no overall limit; IdleConnTimeout still closes them
	t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	return t
}

// NewRegistry returns a Registry for cfg's hosts (cfg may be nil: no
// per-host limits). logger receives warnings such as a disabled TLS
// verification; nil means slog.Default().
func NewRegistry(cfg *config.Config, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.Default()
	}
	r := &Registry{hosts: map[string]*rate.Limiter{}, log: logger, client: &http.Client{Transport: newTransport()}}
	if cfg != nil {
		for _, h := range cfg.Hosts {
			if h.RateLimit > 0 {
				r.hosts[strings.ToLower(h.Host)] = newLimiter(h.RateLimit, h.RateBurst)
			}
		}
	}
	return r
}

// New returns the source described by cfg, sharing the Registry's host
// limits. client is as for the package-level New.
func (r *Registry) New(cfg config.Source, client *http.Client) (bridge.Source, error) {
	s, err := r.NewHTTP(cfg, client)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

// hostLimiter returns the limiter shared by requests to u's host: an entry
// for host:port wins over one for the host name alone. Nil: no limit.
func (r *Registry) hostLimiter(u *url.URL) *rate.Limiter {
	if r == nil || len(r.hosts) == 0 {
		return nil
	}
	host := strings.ToLower(u.Host)
	if l, ok := r.hosts[host]; ok {
		return l
	}
	return r.hosts[strings.ToLower(u.Hostname())]
}

// newLimiter returns a token bucket of perSecond with burst (at least 1).
func newLimiter(perSecond float64, burst int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
}

// waitLimits waits for a token of the source's limiter and then of the
// limiter of u's host. A wait that would end after ctx's deadline fails at
// once.
func (s *HTTP) waitLimits(ctx context.Context, u *url.URL) error {
	for _, l := range []*rate.Limiter{s.limiter, s.reg.hostLimiter(u)} {
		if l == nil {
			continue
		}
		if err := l.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("wait for rate limit: %w", context.Cause(ctx))
			}
			return errors.New("wait for rate limit: the next free slot is after the fetch timeout")
		}
	}
	return nil
}

// RetryAfterError is a fetch that the API refused with 429 Too Many
// Requests or 503 Service Unavailable and a Retry-After this fetch could
// not wait for (it would pass the timeout, or the one retry was refused
// too). RetryAt says when the API will take requests again; an engine that
// backs off may use it (errors.As, or the RetryAt method).
type RetryAfterError struct {
	// Status is 429 or 503.
	Status int
	// At is when the API said to retry.
	At time.Time
	// Retried reports whether the request was already retried once.
	Retried bool
}

func (e *RetryAfterError) Error() string {
	msg := fmt.Sprintf("status %d %s: the API asks to retry after %s", e.Status, http.StatusText(e.Status), e.At.UTC().Format(time.RFC3339))
	if e.Retried {
		return msg + " (refused again after waiting once)"
	}
	return msg + " (later than the fetch timeout allows)"
}

// RetryAt returns when the API said to retry.
func (e *RetryAfterError) RetryAt() time.Time { return e.At }

// retryAfter parses a Retry-After header (seconds or an HTTP date) into
// the wait from now. ok is false when the header is absent or bad.
func retryAfter(h http.Header, now time.Time) (wait time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(365*24*time.Hour/time.Second) {
			secs = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
