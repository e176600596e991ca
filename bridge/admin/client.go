package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// TokenEnv is the environment variable the CLI reads the admin token from
// when it is given an admin URL instead of a configuration file.
const TokenEnv = "POLLBRIDGE_ADMIN_TOKEN"

// ErrUnreachable wraps the error of a request that found no admin listener
// (nothing listens, or the connection failed): the daemon is not running.
var ErrUnreachable = errors.New("admin listener unreachable")

// Client calls the admin API of a running daemon.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// NewClient makes a client for the admin listener at baseURL (such as
// http://127.0.0.1:9090), sending token when it is not empty.
func NewClient(baseURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: want http://host:port", baseURL)
	}
	return &Client{base: u, token: token, http: &http.Client{Timeout: 2 * time.Minute}}, nil
}

// BaseURL turns an admin.listen address into the URL a local client uses:
// an unspecified host (all interfaces) becomes loopback.
func BaseURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Ready asks /readyz; nil means the daemon is ready.
func (c *Client) Ready(ctx context.Context) error {
	body, status, err := c.do(ctx, http.MethodGet, "/readyz", nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("not ready (%d): %s", status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Dead lists the dead letters of sink ("" = every sink), oldest first.
func (c *Client) Dead(ctx context.Context, sink string) ([]store.Delivery, error) {
	q := url.Values{}
	if sink != "" {
		q.Set("sink", sink)
	}
	var out Dead
	if err := c.call(ctx, http.MethodGet, "/api/dead", q, &out); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out.Dead, nil
}

// Replay moves dead letters back to the outbox, like store.Store.Replay:
// ids by delivery ID, or with ids nil every dead letter of sink ("" =
// every sink). It returns how many moved.
func (c *Client) Replay(ctx context.Context, sink string, ids []string) (int, error) {
	var out Replayed
	if ids == nil {
		q := url.Values{}
		if sink != "" {
			q.Set("sink", sink)
		}
		if err := c.call(ctx, http.MethodPost, "/api/dead/replay", q, &out); err != nil {
			return 0, fmt.Errorf("replay: %w", err)
		}
		return out.Replayed, nil
	}
	n := 0
	for _, id := range ids {
		if err := c.call(ctx, http.MethodPost, "/api/dead/"+url.PathEscape(id)+"/replay", nil, &out); err != nil {
			return n, fmt.Errorf("replay %s: %w", id, err)
		}
		n += out.Replayed
	}
	return n, nil
}

// DryRun asks the daemon to fetch source once and diff it against the
// stored state, committing nothing.
func (c *Client) DryRun(ctx context.Context, source string) (DryRun, error) {
	var out DryRun
	err := c.call(ctx, http.MethodPost, "/api/sources/"+url.PathEscape(source)+"/dry-run", nil, &out)
	return out, err
}

// Poll asks the daemon to poll source now and commit, as a tick would.
func (c *Client) Poll(ctx context.Context, source string) (PollOutcome, error) {
	var out PollOutcome
	err := c.call(ctx, http.MethodPost, "/api/sources/"+url.PathEscape(source)+"/poll", nil, &out)
	return out, err
}

// call makes an API request and decodes the JSON answer into out. A non-2xx
// answer is an error carrying the API's message.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, out any) error {
	body, status, err := c.do(ctx, method, path, q)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		var e apiError
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, status)
		}
		return fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}

// do sends one request and reads the answer (up to 64 MiB).
func (c *Client) do(ctx context.Context, method, path string, q url.Values) ([]byte, int, error) {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return nil, 0, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.base.Host, err)
		}
		return nil, 0, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("read answer of %s: %w", path, err)
	}
	return body, resp.StatusCode, nil
}
