package sinks

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

// benchEvent is an item.updated event of an order-like item.
func benchEvent() *bridge.Event {
	return &bridge.Event{
		ID:       "msg_p5jxn8aqm9lwm0d4lojxek5ahq2kscwd",
		Type:     bridge.ItemUpdated,
		Time:     time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC),
		Source:   "orders",
		Key:      "s1-i0042",
		Item:     json.RawMessage(`{"id":"s1-i0042","status":"paid","amount":1042,"currency":"EUR","customer":"cus_0042","note":"lorem ipsum dolor","version":2,"updated_at":"2026-11-27T16:00:01.123Z"}`),
		Previous: json.RawMessage(`{"id":"s1-i0042","status":"open","amount":1042,"currency":"EUR","customer":"cus_0042","note":"lorem ipsum dolor","version":1,"updated_at":"2026-11-27T16:00:00.123Z"}`),
		Changes:  []bridge.Change{{Op: "replace", Path: "/status", Old: json.RawMessage(`"open"`), New: json.RawMessage(`"paid"`)}},
	}
}

// BenchmarkSign measures the Standard Webhooks signature of one payload.
func BenchmarkSign(b *testing.B) {
	body, err := Encode(benchEvent())
	if err != nil {
		b.Fatal(err)
	}
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ts := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(secret, "msg_p5jxn8aqm9lwm0d4lojxek5ahq2kscwd", ts, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeSign measures what a delivery costs before it is sent:
// encoding the event as the standard payload and signing it.
func BenchmarkEncodeSign(b *testing.B) {
	ev := benchEvent()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	b.ReportAllocs()
	for b.Loop() {
		body, err := Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Sign(secret, ev.ID, time.Now(), body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSend measures one whole delivery: encode, sign and POST an
// event to a loopback receiver that answers 204, over a keep-alive
// connection (the receiver's own work is in the numbers too).
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	w, err := NewWebhook(config.Sink{Name: "bench", URL: srv.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, srv.Client())
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Send(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
	}
}
