package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// maxBody bounds one webhook body.
const maxBody = 5 << 20

// Receiver is the webhook endpoint: it verifies each request, de-duplicates
// on webhook-id, prints a summary and optionally records the event. It is
// safe for concurrent use.
type Receiver struct {
	verifier *Verifier
	fail     int       // answer 503 to this many requests first
	log      io.Writer // one line per request
	out      io.Writer // nil, or where verified events go as JSON lines

	mu       sync.Mutex
	requests int
	// seen holds every webhook-id accepted so far. It grows without bound,
	// which is fine for a demo; a real receiver keeps ids for as long as the
	// sender may retry (pollbridge: the sink's retry.max_age) in its database.
	seen map[string]bool
}

// NewReceiver returns a Receiver that answers 503 to its first fail requests,
// writes one line per request to log and, if out is not nil, one JSON line
// per verified, new event to out.
func NewReceiver(v *Verifier, fail int, log, out io.Writer) *Receiver {
	return &Receiver{verifier: v, fail: fail, log: log, out: out, seen: make(map[string]bool)}
}

// payload is the Standard Webhooks body pollbridge sends.
type payload struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// eventData is the part of data the summary shows.
type eventData struct {
	Source  string          `json:"source"`
	Key     json.RawMessage `json:"key"`
	Changes []struct {
		Op   string          `json:"op"`
		Path string          `json:"path"`
		Old  json.RawMessage `json:"old"`
		New  json.RawMessage `json:"new"`
	} `json:"changes"`
}

// record is one line of the -out file.
type record struct {
	WebhookID string          `json:"webhook_id"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
}

// ServeHTTP handles one webhook POST.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	id := req.Header.Get("webhook-id")

	r.mu.Lock()
	r.requests++
	n := r.requests
	r.mu.Unlock()
	if n <= r.fail {
		r.printf("failing request %d of %d on purpose (-fail): 503 for %s", n, r.fail, id)
		http.Error(w, "failing on purpose (-fail)", http.StatusServiceUnavailable)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		r.printf("rejected %s: read body: %v", id, err)
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if err := r.verifier.Verify(req.Header, body); err != nil {
		r.printf("rejected %q: %v", id, err)
		http.Error(w, "invalid signature: "+err.Error(), http.StatusUnauthorized)
		return
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		r.printf("rejected %s: body is not a JSON object: %v", id, err)
		http.Error(w, "body is not JSON", http.StatusBadRequest)
		return
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[id] {
		// Answer 2xx so the sender stops retrying what we already have.
		r.printfLocked("duplicate webhook-id %s, ignored", id)
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.out != nil {
		line, err := json.Marshal(record{WebhookID: id, Type: p.Type, Data: p.Data})
		if err == nil {
			_, err = r.out.Write(append(line, '\n'))
		}
		if err != nil {
			// Not recorded, so not seen: a 5xx makes the sender retry.
			r.printfLocked("failed to record %s: %v", id, err)
			http.Error(w, "cannot record event", http.StatusInternalServerError)
			return
		}
	}
	r.seen[id] = true
	r.printfLocked("verified %s %s", id, summary(p))
	w.WriteHeader(http.StatusOK)
}

func (r *Receiver) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.printfLocked(format, args...)
}

func (r *Receiver) printfLocked(format string, args ...any) {
	fmt.Fprintf(r.log, format+"\n", args...)
}

// summary renders an event as `item.updated orders/2 changes: /status new→paid`.
func summary(p payload) string {
	var d eventData
	if err := json.Unmarshal(p.Data, &d); err != nil {
		return p.Type
	}
	s := p.Type
	if d.Source != "" || len(d.Key) > 0 {
		s += " " + d.Source + "/" + plain(d.Key)
	}
	if len(d.Changes) == 0 {
		return s
	}
	parts := make([]string, 0, len(d.Changes))
	for _, c := range d.Changes {
		switch c.Op {
		case "add":
			parts = append(parts, c.Path+" +"+plain(c.New))
		case "remove":
			parts = append(parts, c.Path+" -"+plain(c.Old))
		default:
			parts = append(parts, c.Path+" "+plain(c.Old)+"→"+plain(c.New))
		}
	}
	return s + " changes: " + strings.Join(parts, ", ")
}

// plain shows a JSON value compactly, strings without their quotes.
func plain(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "∅"
	}
	var s string
	if raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}
