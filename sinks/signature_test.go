package sinks

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks specification's own test vector.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignSpecVector(t *testing.T) {
	for _, secret := range []string{specSecret, strings.TrimPrefix(specSecret, "whsec_")} {
		got, err := Sign(secret, specID, time.Unix(specTS, 0), []byte(specBody))
		if err != nil {
			t.Fatal(err)
		}
		if got != specSig {
			t.Errorf("Sign(%q) = %q, want %q", secret, got, specSig)
		}
	}
}

func TestSignBadSecret(t *testing.T) {
	for _, secret := range []string{"whsec_not*base64!", "whsec_", ""} {
		_, err := Sign(secret, specID, time.Unix(specTS, 0), []byte(specBody))
		if err == nil {
			t.Errorf("Sign(%q) succeeded", secret)
		} else if secret != "" && secret != "whsec_" && strings.Contains(err.Error(), "base64!") {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(specTS, 0)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	good := hdr("webhook-id", specID, "webhook-timestamp", "1614265330", "webhook-signature", specSig)
	tests := []struct {
		name    string
		secret  string
		header  http.Header
		body    string
		tol     time.Duration
		now     time.Time
		wantErr string
	}{
		{name: "spec vector", header: good},
		{name: "several signatures", header: hdr("webhook-id", specID, "webhook-timestamp", "1614265330",
			"webhook-signature", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,xyz "+specSig)},
		{name: "within tolerance", header: good, now: now.Add(4 * time.Minute)},
		{name: "tampered body", header: good, body: `{"test": 2432232315}`, wantErr: "no matching signature"},
		{name: "wrong secret", header: good, secret: "whsec_" + strings.Repeat("A", 32), wantErr: "no matching signature"},
		{name: "wrong id", header: hdr("webhook-id", "msg_other", "webhook-timestamp", "1614265330", "webhook-signature", specSig), wantErr: "no matching signature"},
		{name: "too old", header: good, now: now.Add(6 * time.Minute), wantErr: "timestamp is 6m0s old"},
		{name: "too new", header: good, now: now.Add(-10 * time.Second), tol: 5 * time.Second, wantErr: "in the future"},
		{name: "bad timestamp", header: hdr("webhook-id", specID, "webhook-timestamp", "soon", "webhook-signature", specSig), wantErr: "not unix seconds"},
		{name: "missing signature", header: hdr("webhook-id", specID, "webhook-timestamp", "1614265330"), wantErr: "missing webhook-signature"},
		{name: "missing id", header: hdr("webhook-timestamp", "1614265330", "webhook-signature", specSig), wantErr: "missing webhook-id"},
		{name: "only unknown versions", header: hdr("webhook-id", specID, "webhook-timestamp", "1614265330",
			"webhook-signature", "v2,"+strings.TrimPrefix(specSig, "v1,")), wantErr: "no matching signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, body, n := specSecret, specBody, now
			if tt.secret != "" {
				secret = tt.secret
			}
			if tt.body != "" {
				body = tt.body
			}
			if !tt.now.IsZero() {
				n = tt.now
			}
			err := Verify(secret, tt.header, []byte(body), tt.tol, n)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Verify = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
