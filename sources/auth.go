package sources

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/redact"
)

// authorizer adds a source's credentials to its requests.
type authorizer struct {
	header      string // header to set, e.g. Authorization
	value       string // its value
	queryParam  string // query parameter to set, for api_key in the query
	queryValue  string
	oauth       *oauthTokens
	static      []string // secrets to scrub from messages
	hiddenParam string   // query parameter whose value is hidden in output
}

// newAuthorizer returns the authorizer for a, or nil when a is nil.
// tokenClient is used for requests to an OAuth2 token endpoint.
func newAuthorizer(a *config.Auth, tokenClient *http.Client) (*authorizer, error) {
	if a == nil {
		return nil, nil
	}
	z := &authorizer{}
	n := 0
	if a.Bearer != "" {
		n++
		z.header, z.value = "Authorization", "Bearer "+a.Bearer
		z.static = append(z.static, a.Bearer)
	}
	if b := a.Basic; b != nil {
		n++
		enc := base64.StdEncoding.EncodeToString([]byte(b.Username + ":" + b.Password))
		z.header, z.value = "Authorization", "Basic "+enc
		z.static = append(z.static, b.Username, b.Password, enc)
	}
	if k := a.APIKey; k != nil {
		n++
		switch {
		case k.Header != "" && k.Query == "":
			z.header, z.value = k.Header, k.Value
		case k.Query != "" && k.Header == "":
			z.queryParam, z.queryValue = k.Query, k.Value
			z.hiddenParam = k.Query
		default:
			return nil, errors.New("auth.api_key: set header or query")
		}
		if k.Value == "" {
			return nil, errors.New("auth.api_key.value: empty")
		}
		z.static = append(z.static, k.Value)
	}
	if o := a.OAuth2; o != nil {
		n++
		t, err := newOAuthTokens(o, tokenClient)
		if err != nil {
			return nil, err
		}
		z.oauth = t
		z.static = append(z.static, o.ClientSecret)
	}
	if n != 1 {
		return nil, errors.New("auth: set exactly one of bearer, basic, api_key or oauth2")
	}
	return z, nil
}

// apply sets the credentials on req. It returns the OAuth2 access token it
// used ("" for other schemes), for invalidate.
func (z *authorizer) apply(ctx context.Context, req *http.Request) (string, error) {
	if z == nil {
		return "", nil
	}
	if z.header != "" {
		req.Header.Set(z.header, z.value)
	}
	if z.queryParam != "" {
		q := req.URL.Query()
		q.Set(z.queryParam, z.queryValue)
		req.URL.RawQuery = q.Encode()
	}
	if z.oauth != nil {
		tok, err := z.oauth.token(ctx)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return tok, nil
	}
	return "", nil
}

// refreshable reports whether a 401 may be cured by a new token.
func (z *authorizer) refreshable() bool { return z != nil && z.oauth != nil }

// secrets returns the values to scrub from messages, the current OAuth2
// token included.
func (z *authorizer) secrets() []string {
	if z == nil {
		return nil
	}
	out := z.static
	if z.oauth != nil {
		if t := z.oauth.current(); t != "" {
			out = append(out[:len(out):len(out)], t)
		}
	}
	return out
}

// oauthTokens caches one client-credentials token. It is safe for
// concurrent use.
type oauthTokens struct {
	cfg      *clientcredentials.Config
	client   *http.Client
	tokenURL *url.URL
	secret   string

	mu  sync.Mutex
	tok *oauth2.Token
}

func newOAuthTokens(o *config.OAuth2, client *http.Client) (*oauthTokens, error) {
	u, err := url.Parse(o.TokenURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("auth.oauth2.token_url: not an absolute http(s) URL (the value is not shown)")
	}
	params := url.Values{}
	for k, v := range o.Params {
		params.Set(k, v)
	}
	style := oauth2.AuthStyleAutoDetect
	switch o.AuthStyle {
	case "header":
		style = oauth2.AuthStyleInHeader
	case "params":
		style = oauth2.AuthStyleInParams
	}
	return &oauthTokens{
		cfg: &clientcredentials.Config{
			ClientID:       o.ClientID,
			ClientSecret:   o.ClientSecret,
			TokenURL:       o.TokenURL,
			Scopes:         o.Scopes,
			EndpointParams: params,
			AuthStyle:      style,
		},
		client:   client,
		tokenURL: u,
		secret:   o.ClientSecret,
	}, nil
}

// token returns a valid access token, fetching one when none is cached or
// the cached one expired. Concurrent callers wait for one fetch.
func (t *oauthTokens) token(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok.Valid() {
		return t.tok.AccessToken, nil
	}
	tok, err := t.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, t.client))
	if err != nil {
		return "", t.tokenError(ctx, err)
	}
	if tok.AccessToken == "" {
		return "", errors.New("fetch oauth2 token: the token endpoint returned no access_token")
	}
	t.tok = tok
	return tok.AccessToken, nil
}

// invalidate drops the cached token if it is still used, the one a
// request was refused with.
func (t *oauthTokens) invalidate(used string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != nil && t.tok.AccessToken == used {
		t.tok = nil
	}
}

// current returns the cached access token, or "".
func (t *oauthTokens) current() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok == nil {
		return ""
	}
	return t.tok.AccessToken
}

// tokenError rewrites an error of the oauth2 package, which quotes the
// token URL and the endpoint's whole answer, into one that names the
// endpoint without its query and shows a scrubbed excerpt.
func (t *oauthTokens) tokenError(ctx context.Context, err error) error {
	where := redactURL(t.tokenURL)
	if ctx.Err() != nil {
		return fmt.Errorf("fetch oauth2 token from %s: %w", where, context.Cause(ctx))
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := ""
		if re.Response != nil {
			msg = "status " + statusText(re.Response)
		}
		if re.ErrorCode != "" {
			msg += fmt.Sprintf(" (error %q)", redact.Snippet([]byte(re.ErrorCode), []string{t.secret}))
		}
		if ex := redact.Snippet(re.Body, []string{t.secret, t.cfg.ClientID}); ex != "" {
			msg += fmt.Sprintf(": %q", ex)
		}
		return fmt.Errorf("fetch oauth2 token from %s: %s", where, strings.TrimSpace(msg))
	}
	// Other errors are flattened strings that may quote the full URL.
	text := strings.ReplaceAll(err.Error(), t.cfg.TokenURL, where)
	text = redact.Snippet([]byte(text), []string{t.secret})
	return fmt.Errorf("fetch oauth2 token from %s: %s", where, text)
}
