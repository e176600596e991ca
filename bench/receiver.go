package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
)

// signatureTolerance is how far webhook-timestamp may be from the clock.
const signatureTolerance = 5 * time.Minute

// hook is one webhook the receiver accepted from pollbridge.
type hook struct {
	At      int64  // arrival, unix nanoseconds
	ID      string // webhook-id
	Type    string // item.created, item.updated or item.deleted
	Source  string // data.source
	Key     string // data.key
	Version int    // version of data.item (data.previous for deletions)
}

// receiver is the webhook receiver: POST /hooks records pollbridge's
// webhooks, POST /floor only answers the post floor's. Both verify every
// Standard Webhooks signature (counting failures) and answer 204. It is safe for concurrent
// use.
type receiver struct {
	key []byte // HMAC key: the secret's base64 part, decoded
	url string // base URL, http://127.0.0.1:PORT
	srv *http.Server

	mu    sync.Mutex
	hooks []hook
	ids   map[string]int // receptions per webhook-id

	sigFailures   atomic.Int64 // requests whose signature did not verify
	floorFailures atomic.Int64 // floor requests whose signature did not verify
}

// newSecret returns a random Standard Webhooks secret, whsec_ + base64.
func newSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make secret: %w", err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b), nil
}

// secretKey decodes a whsec_ secret to its HMAC key.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return nil, fmt.Errorf("decode secret: %w", err)
	}
	return key, nil
}

// sign returns the webhook-signature value of one message.
func sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// startReceiver listens on 127.0.0.1:0 and serves until ctx ends.
func startReceiver(ctx context.Context, secret string, log *slog.Logger) (*receiver, error) {
	key, err := secretKey(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: listen: %w", err)
	}
	r := &receiver{key: key, url: "http://" + ln.Addr().String(), ids: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks", r.serveHook)
	mux.HandleFunc("POST /floor", r.serveFloor)
	r.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { _ = r.srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = r.srv.Shutdown(sctx)
	}()
	return r, nil
}

// verify checks the request's Standard Webhooks signature of body. It
// and sign are written from the specification on purpose, apart from
// sinks.Verify and sinks.Sign: the harness checks pollbridge's
// signatures rather than trusting pollbridge's code to check itself.
func (r *receiver) verify(h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %w", ts, err)
	}
	if skew := time.Since(time.Unix(secs, 0)); skew > signatureTolerance || skew < -signatureTolerance {
		return fmt.Errorf("webhook-timestamp %s is %s off", ts, skew)
	}
	want := sign(r.key, id, secs, body)
	for s := range strings.FieldsSeq(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("no v1 signature matches")
}

// accept reads and verifies one signed POST, counting a bad signature in
// failures, and picks out the fields the checker needs. /hooks and /floor
// both go through it, so both cost the receiver the same. ok is false
// when the body could not be read (the request has been answered).
func (r *receiver) accept(w http.ResponseWriter, req *http.Request, failures *atomic.Int64) (fields []gjson.Result, ok bool) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return nil, false
	}
	if r.verify(req.Header, body) != nil {
		failures.Add(1)
	}
	return gjson.GetManyBytes(body, "type", "data.source", "data.key", "data.item.version", "data.previous.version"), true
}

// serveHook records one of pollbridge's webhooks.
func (r *receiver) serveHook(w http.ResponseWriter, req *http.Request) {
	at := time.Now().UnixNano()
	res, ok := r.accept(w, req, &r.sigFailures)
	if !ok {
		return
	}
	h := hook{At: at, ID: req.Header.Get("webhook-id"), Type: res[0].String(), Source: res[1].String(), Key: res[2].String()}
	if h.Type == "item.deleted" {
		h.Version = int(res[4].Int())
	} else {
		h.Version = int(res[3].Int())
	}
	r.mu.Lock()
	r.hooks = append(r.hooks, h)
	r.ids[h.ID]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// serveFloor answers one of the post floor's requests, after verifying
// and parsing it like a webhook.
func (r *receiver) serveFloor(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.accept(w, req, &r.floorFailures); ok {
		w.WriteHeader(http.StatusNoContent)
	}
}

// distinct returns how many distinct webhook-ids arrived.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

// received returns a copy of every webhook received so far.
func (r *receiver) received() []hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hook(nil), r.hooks...)
}
