package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The example from the Standard Webhooks specification's own tests.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = "1614265330"
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var specTime = time.Unix(1614265330, 0)

func headers(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", sig)
	return h
}

func specVerifier(t *testing.T, now time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return now }
	return v
}

func TestVerifySpecVector(t *testing.T) {
	v := specVerifier(t, specTime)
	if got := v.Sign(specID, specTS, []byte(specBody)); got != specSig {
		t.Fatalf("Sign = %s, want %s", got, specSig)
	}
	tests := []struct {
		name    string
		h       http.Header
		body    string
		now     time.Time
		wantErr string // "" means valid
	}{
		{"spec vector", headers(specID, specTS, specSig), specBody, specTime, ""},
		{"one of several signatures", headers(specID, specTS, "v1,Zm9v v1a,abc "+specSig), specBody, specTime, ""},
		{"4m59s late", headers(specID, specTS, specSig), specBody, specTime.Add(299 * time.Second), ""},
		{"altered body", headers(specID, specTS, specSig), `{"test": 2432232315}`, specTime, "no v1 signature matches"},
		{"other id", headers("msg_other", specTS, specSig), specBody, specTime, "no v1 signature matches"},
		{"wrong version", headers(specID, specTS, "v2"+specSig[2:]), specBody, specTime, "no v1 signature matches"},
		{"bad base64", headers(specID, specTS, "v1,!!!"), specBody, specTime, "no v1 signature matches"},
		{"too old", headers(specID, specTS, specSig), specBody, specTime.Add(5*time.Minute + time.Second), "off"},
		{"too new", headers(specID, specTS, specSig), specBody, specTime.Add(-5*time.Minute - time.Second), "off"},
		{"bad timestamp", headers(specID, "yesterday", specSig), specBody, specTime, "not Unix seconds"},
		{"no signature", headers(specID, specTS, ""), specBody, specTime, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := specVerifier(t, tt.now).Verify(tt.h, []byte(tt.body))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Verify: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Verify: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewVerifierBadSecret(t *testing.T) {
	for _, s := range []string{"", "whsec_not base64!"} {
		if _, err := NewVerifier(s); err == nil {
			t.Errorf("NewVerifier(%q): no error", s)
		}
	}
}

// lockedBuffer collects the receiver's log lines across goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fixture struct {
	url string
	v   *Verifier
	log *lockedBuffer
	out string
}

// start runs a Receiver with a real clock behind an httptest server.
func start(t *testing.T, fail int) *fixture {
	t.Helper()
	v, err := NewVerifier(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "events.jsonl")
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	log := &lockedBuffer{}
	srv := httptest.NewServer(NewReceiver(v, fail, log, f))
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL, v: v, log: log, out: out}
}

// post sends body signed as id, or with sig if it is not empty.
func (f *fixture) post(t *testing.T, id, body, sig string) int {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	if sig == "" {
		sig = f.v.Sign(id, ts, []byte(body))
	}
	req, _ := http.NewRequest("POST", f.url, strings.NewReader(body))
	req.Header = headers(id, ts, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (f *fixture) records(t *testing.T) []record {
	t.Helper()
	b, err := os.ReadFile(f.out)
	if err != nil {
		t.Fatal(err)
	}
	var rs []record
	for line := range strings.Lines(string(b)) {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("out line %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

const updated = `{"type":"item.updated","timestamp":"2025-03-01T12:00:00Z","data":{"source":"orders","key":"2",` +
	`"item":{"id":2,"status":"paid"},"changes":[{"op":"replace","path":"/status","old":"new","new":"paid"}]}}`

func TestReceiveAndDuplicate(t *testing.T) {
	f := start(t, 0)
	if got := f.post(t, "msg_abc", updated, ""); got != http.StatusOK {
		t.Fatalf("first delivery: status %d, log %s", got, f.log)
	}
	if got := f.post(t, "msg_abc", updated, ""); got != http.StatusOK {
		t.Fatalf("duplicate delivery: status %d, want 200 so the sender stops", got)
	}
	want := "verified msg_abc item.updated orders/2 changes: /status new→paid\n" +
		"duplicate webhook-id msg_abc, ignored\n"
	if got := f.log.String(); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
	rs := f.records(t)
	if len(rs) != 1 || rs[0].WebhookID != "msg_abc" || rs[0].Type != "item.updated" {
		t.Fatalf("out records: %+v, want one msg_abc item.updated", rs)
	}
	var data struct{ Key string }
	if err := json.Unmarshal(rs[0].Data, &data); err != nil || data.Key != "2" {
		t.Errorf("recorded data %s: key %q, %v", rs[0].Data, data.Key, err)
	}
}

func TestBadSignature(t *testing.T) {
	f := start(t, 0)
	other, _ := NewVerifier("whsec_" + "c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ==")
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	if got := f.post(t, "msg_x", updated, other.Sign("msg_x", ts, []byte(updated))); got != http.StatusUnauthorized {
		t.Errorf("wrong secret: status %d, want 401", got)
	}
	if got := f.post(t, "msg_y", updated, "v1,bm9wZQ=="); got != http.StatusUnauthorized {
		t.Errorf("garbage signature: status %d, want 401", got)
	}
	if log := f.log.String(); strings.Count(log, "rejected") != 2 || !strings.Contains(log, "no v1 signature matches") {
		t.Errorf("log does not say why:\n%s", log)
	}
	if rs := f.records(t); len(rs) != 0 {
		t.Errorf("rejected events were recorded: %+v", rs)
	}
	// A rejected id is not remembered: the genuine message still gets in.
	if got := f.post(t, "msg_x", updated, ""); got != http.StatusOK {
		t.Errorf("genuine msg_x after a forged one: status %d", got)
	}
}

func TestFail(t *testing.T) {
	f := start(t, 2)
	for i, want := range []int{503, 503, 200, 200} {
		if got := f.post(t, "msg_"+strconv.Itoa(i), updated, ""); got != want {
			t.Errorf("request %d: status %d, want %d", i+1, got, want)
		}
	}
	if rs := f.records(t); len(rs) != 2 || rs[0].WebhookID != "msg_2" || rs[1].WebhookID != "msg_3" {
		t.Errorf("records %+v, want msg_2 and msg_3", rs)
	}
	if n := strings.Count(f.log.String(), "on purpose"); n != 2 {
		t.Errorf("log mentions %d deliberate failures, want 2:\n%s", n, f.log)
	}
}

func TestSummary(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"type":"item.created","data":{"source":"orders","key":"4","item":{"id":4}}}`, "item.created orders/4"},
		{`{"type":"item.deleted","data":{"source":"orders","key":"3"}}`, "item.deleted orders/3"},
		{`{"type":"item.updated","data":{"source":"s","key":"k","changes":[` +
			`{"op":"replace","path":"/total","old":1,"new":2.5},{"op":"add","path":"/tag","new":"vip"},{"op":"remove","path":"/note","old":null}]}}`,
			"item.updated s/k changes: /total 1→2.5, /tag +vip, /note -null"},
		{`{"type":"ping"}`, "ping"},
	}
	for _, tt := range tests {
		var p payload
		if err := json.Unmarshal([]byte(tt.body), &p); err != nil {
			t.Fatal(err)
		}
		if got := summary(p); got != tt.want {
			t.Errorf("summary(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}
