package sinks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// secretPrefix starts a Standard Webhooks secret.
const secretPrefix = "whsec_"

// DefaultTolerance is the timestamp tolerance Verify uses when given 0.
const DefaultTolerance = 5 * time.Minute

// Sign returns the Standard Webhooks signature of a message:
// "v1," + base64(HMAC-SHA256(key, msgID + "." + unix(ts) + "." + body)), where
// key is the base64 text of secret after its "whsec_" prefix (the prefix may
// be omitted). It fails only for a bad secret, and its errors never contain
// the secret.
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return "", err
	}
	return signatureWith(hmac.New(sha256.New, key), msgID, ts.Unix(), body), nil
}

// signatureWith is the signature header value ("v1," and the base64 MAC)
// made with h, an HMAC-SHA256 keyed with the key; it resets h first.
func signatureWith(h hash.Hash, msgID string, ts int64, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(macWith(h, msgID, ts, body))
}

// Verify checks a Standard Webhooks request as a receiver would: header must
// hold webhook-id, webhook-timestamp and webhook-signature, the timestamp must
// be within tolerance of now (0: DefaultTolerance), and one of the
// space-separated signatures must be a "v1," signature of body by secret.
// It returns nil only for a valid request.
func Verify(secret string, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	key, err := decodeSecret(secret)
	if err != nil {
		return err
	}
	id := header.Get("webhook-id")
	tsText := header.Get("webhook-timestamp")
	sigs := header.Get("webhook-signature")
	switch {
	case id == "":
		return errors.New("verify: missing webhook-id header")
	case tsText == "":
		return errors.New("verify: missing webhook-timestamp header")
	case sigs == "":
		return errors.New("verify: missing webhook-signature header")
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("verify: webhook-timestamp %q is not unix seconds", tsText)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	switch d := now.Sub(time.Unix(ts, 0)); {
	case d > tolerance:
		return fmt.Errorf("verify: timestamp is %s old, more than %s", d.Round(time.Second), tolerance)
	case d < -tolerance:
		return fmt.Errorf("verify: timestamp is %s in the future, more than %s", (-d).Round(time.Second), tolerance)
	}
	want := mac(key, id, ts, body)
	for _, sig := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("verify: no matching signature")
}

// decodeSecret returns the HMAC key of a "whsec_" secret.
func decodeSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil || len(key) == 0 {
		return nil, errors.New(`invalid secret: want "whsec_" followed by base64`)
	}
	return key, nil
}

// mac computes the raw signature of one message.
func mac(key []byte, msgID string, ts int64, body []byte) []byte {
	return macWith(hmac.New(sha256.New, key), msgID, ts, body)
}

// macWith is mac with h, an HMAC-SHA256 keyed with the key (a sink reuses
// its own); it resets h first.
func macWith(h hash.Hash, msgID string, ts int64, body []byte) []byte {
	h.Reset()
	var buf [24]byte
	h.Write([]byte(msgID))
	h.Write(append(strconv.AppendInt(append(buf[:0], '.'), ts, 10), '.'))
	h.Write(body)
	return h.Sum(nil)
}
