package bridge

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeEvent gives what json.Unmarshal gives for every event json.Marshal
// writes.
func TestDecodeEventMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.UTC)
	events := []Event{
		{},
		{ID: "e1", Type: ItemCreated, Time: at, Source: "orders", Key: "1", Item: json.RawMessage(`{"id":1,"name":"a"}`)},
		{ID: "e2", Type: ItemDeleted, Time: at.In(time.FixedZone("x", 3600)), Source: "orders", Key: "2", Previous: json.RawMessage(`{"id":2}`)},
		{ID: "e3", Type: ItemUpdated, Time: at, Source: "s", Key: "k", Item: json.RawMessage(`{"a":[1,2,{"b":null}],"c":"d"}`), Previous: json.RawMessage(`{"a":[1]}`),
			Changes: []Change{{Op: "replace", Path: "/a/1", Old: json.RawMessage(`1`), New: json.RawMessage(`2`)}, {Op: "add", Path: "/c", New: json.RawMessage(`"d"`)}, {Op: "remove", Path: "/x~1y", Old: json.RawMessage(`null`)}}},
		{ID: "quote\"back\\slash\ttab\nnl\u2028ls<html>&amp;", Type: "item.updated", Time: at, Source: "ünïcødé 🎉", Key: "\x01ctl", Item: json.RawMessage(`"a string item"`),
			Changes: []Change{{Op: "replace", Path: "", Old: json.RawMessage(`"x"`), New: json.RawMessage(`"y"`)}}},
		{ID: "big", Type: ItemCreated, Time: at, Source: "s", Key: strings.Repeat("k", 10000), Item: json.RawMessage(`[` + strings.Repeat(`1,`, 5000) + `1]`)},
		{ID: "null item", Type: ItemCreated, Time: at, Source: "s", Key: "n", Item: json.RawMessage(`null`)},
	}
	for i, ev := range events {
		payload, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var want Event
		if err := json.Unmarshal(payload, &want); err != nil {
			t.Fatal(err)
		}
		got, err := decodeEvent(payload)
		if err != nil {
			t.Errorf("event %d: decodeEvent(%s): %v", i, payload, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("event %d: decodeEvent(%s)\n = %+v\nwant %+v", i, payload, got, want)
		}
	}
}

// What json.Unmarshal rejects into an Event, decodeEvent rejects too.
func TestDecodeEventRejects(t *testing.T) {
	for _, payload := range []string{
		``, `nope`, `[]`, `"event"`, `{"id":1}`, `{"id":"a",}`, `{"type":true}`, `{"timestamp":"yesterday"}`,
		`{"changes":{}}`, `{"changes":[1]}`, `{"changes":[{"op":2}]}`, `{"id":"a"`, `{"item":}`,
	} {
		var ev Event
		if json.Unmarshal([]byte(payload), &ev) == nil {
			t.Fatalf("json.Unmarshal accepts %q: not a case for this test", payload)
		}
		if _, err := decodeEvent([]byte(payload)); err == nil {
			t.Errorf("decodeEvent(%q) succeeded, want an error", payload)
		}
	}
}

// FuzzDecodeEvent: for any event fields, decodeEvent reads json.Marshal's
// payload as json.Unmarshal does.
func FuzzDecodeEvent(f *testing.F) {
	f.Add("e1", "item.created", "orders", "1", `{"id":1}`, "/a", `"x"`)
	f.Add("\u2028", "", "ü", "\\", `[1,{"a":null}]`, "", `null`)
	f.Fuzz(func(t *testing.T, id, typ, source, key, item, path, old string) {
		ev := Event{ID: id, Type: typ, Source: source, Key: key, Time: time.Unix(1700000000, 5).UTC()}
		if json.Valid([]byte(item)) {
			ev.Item = json.RawMessage(item)
		}
		if json.Valid([]byte(old)) {
			ev.Changes = []Change{{Op: "replace", Path: path, Old: json.RawMessage(old), New: ev.Item}}
		}
		payload, err := json.Marshal(ev)
		if err != nil {
			t.Skip() // not an event Commit could store
		}
		var want Event
		if err := json.Unmarshal(payload, &want); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", payload, err)
		}
		got, err := decodeEvent(payload)
		if err != nil {
			t.Fatalf("decodeEvent(%s): %v", payload, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeEvent(%s)\n = %+v\nwant %+v", payload, got, want)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	payload, _ := json.Marshal(Event{ID: "0193f6a2-7d4e-7b1c-9a5e-2f1d3c4b5a69", Type: ItemUpdated, Time: time.Now(), Source: "orders", Key: "1234",
		Item:     json.RawMessage(`{"id":1234,"customer":"customer-1234","status":"paid","total":12.50,"lines":[{"sku":"a","qty":1}],"updated_at":"2026-11-27T12:00:00Z"}`),
		Previous: json.RawMessage(`{"id":1234,"customer":"customer-1234","status":"new","total":12.50,"lines":[{"sku":"a","qty":1}],"updated_at":"2026-11-27T11:00:00Z"}`),
		Changes:  []Change{{Op: "replace", Path: "/status", Old: json.RawMessage(`"new"`), New: json.RawMessage(`"paid"`)}}})
	b.Run("gjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEvent(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var ev Event
			if err := json.Unmarshal(payload, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
