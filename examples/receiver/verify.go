package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Tolerance is how far webhook-timestamp may be from the receiver's clock.
// It bounds replays of captured requests.
const Tolerance = 5 * time.Minute

// Verifier checks Standard Webhooks signatures
// (https://www.standardwebhooks.com): the webhook-signature header holds
// space-separated "v1,<base64>" entries, each a candidate HMAC-SHA256 of
// webhook-id + "." + webhook-timestamp + "." + body, keyed with the
// base64-decoded part of the secret after "whsec_". A Verifier is safe for
// concurrent use.
type Verifier struct {
	key []byte
	// Now is the clock for the timestamp check; nil means time.Now.
	Now func() time.Time
}

// NewVerifier returns a Verifier for a "whsec_<base64>" secret (the prefix
// is optional).
func NewVerifier(secret string) (*Verifier, error) {
	if secret == "" {
		return nil, errors.New("empty secret")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return nil, fmt.Errorf("secret is not whsec_ followed by base64: %w", err)
	}
	return &Verifier{key: key}, nil
}

// Sign returns the "v1,<base64>" signature of one message. Senders use it;
// here it documents the scheme and serves the tests.
func (v *Verifier) Sign(id, timestamp string, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(v.mac(id, timestamp, body))
}

func (v *Verifier) mac(id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(id + "." + timestamp + "."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify returns nil if h carries a valid signature of body made no more
// than Tolerance from now; otherwise an error saying what is wrong.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	id := h.Get("webhook-id")
	ts := h.Get("webhook-timestamp")
	sigs := h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	}

	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if skew := now().Sub(time.Unix(secs, 0)); skew > Tolerance || skew < -Tolerance {
		return fmt.Errorf("webhook-timestamp %s is %s off (allowed: %s)", ts, skew.Round(time.Second), Tolerance)
	}

	want := v.mac(id, ts, body)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue // other schemes (v1a, ...) are not ours to check
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) { // constant time
			return nil
		}
	}
	return errors.New("no v1 signature matches (wrong secret, or the body was altered)")
}
