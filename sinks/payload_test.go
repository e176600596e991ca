package sinks

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
)

var detected = time.Date(2024, 5, 1, 14, 0, 0, 500_000_000, time.FixedZone("CEST", 2*3600))

func TestEncode(t *testing.T) {
	tests := []struct {
		name    string
		ev      bridge.Event
		want    string
		wantErr string
	}{
		{
			name: "updated",
			ev: bridge.Event{
				ID: "evt_1", Type: bridge.ItemUpdated, Time: detected, Source: "orders", Key: "42",
				Item:     json.RawMessage(`{"id":42,"status":"paid"}`),
				Previous: json.RawMessage(`{"id":42,"status":"new"}`),
				Changes:  []bridge.Change{{Op: "replace", Path: "/status", Old: json.RawMessage(`"new"`), New: json.RawMessage(`"paid"`)}},
			},
			want: `{"type":"item.updated","timestamp":"2024-05-01T12:00:00.5Z","data":{"id":"evt_1","source":"orders","key":"42",` +
				`"item":{"id":42,"status":"paid"},"previous":{"id":42,"status":"new"},` +
				`"changes":[{"op":"replace","path":"/status","old":"new","new":"paid"}]}}`,
		},
		{
			name: "created has no previous or changes",
			ev:   bridge.Event{ID: "evt_2", Type: bridge.ItemCreated, Time: detected, Source: "s", Key: "k", Item: json.RawMessage(`{"a":1}`)},
			want: `{"type":"item.created","timestamp":"2024-05-01T12:00:00.5Z","data":{"id":"evt_2","source":"s","key":"k","item":{"a":1}}}`,
		},
		{
			name: "deleted has no item",
			ev:   bridge.Event{ID: "evt_3", Type: bridge.ItemDeleted, Time: detected.Truncate(time.Second), Source: "s", Key: "k", Previous: json.RawMessage(`{"a":1}`)},
			want: `{"type":"item.deleted","timestamp":"2024-05-01T12:00:00Z","data":{"id":"evt_3","source":"s","key":"k","previous":{"a":1}}}`,
		},
		{
			name: "raw bytes kept, add and remove, null values, escaping",
			ev: bridge.Event{
				ID: "e", Type: bridge.ItemUpdated, Time: detected, Source: "s", Key: "a\"<b>",
				Item: json.RawMessage("{ \"x\" : \"<&>\",\n \"y\": null }"),
				Changes: []bridge.Change{
					{Op: "add", Path: "/y", New: json.RawMessage(`null`)},
					{Op: "remove", Path: "/z", Old: json.RawMessage(`[1, 2]`)},
				},
			},
			want: `{"type":"item.updated","timestamp":"2024-05-01T12:00:00.5Z","data":{"id":"e","source":"s","key":"a\"\u003cb\u003e",` +
				"\"item\":{ \"x\" : \"<&>\",\n \"y\": null }," +
				`"changes":[{"op":"add","path":"/y","new":null},{"op":"remove","path":"/z","old":[1, 2]}]}}`,
		},
		{
			name:    "invalid item",
			ev:      bridge.Event{ID: "e", Item: json.RawMessage(`{"a":`)},
			wantErr: "encode: item is not valid JSON",
		},
		{
			name:    "invalid change value",
			ev:      bridge.Event{ID: "e", Changes: []bridge.Change{{Op: "add", New: json.RawMessage(`nope`)}}},
			wantErr: "change 0: encode: new is not valid JSON",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(&tt.ev)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Encode =\n%s\nwant\n%s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("payload is not valid JSON")
			}
			again, _ := Encode(&tt.ev)
			if string(again) != string(got) {
				t.Errorf("second Encode differs:\n%s", again)
			}
		})
	}
	if _, err := Encode(nil); err == nil {
		t.Error("Encode(nil) succeeded")
	}
}

// writeString writes exactly what json.Marshal writes, for every byte alone
// and for strings that mix the fast and the escaped cases.
func TestWriteStringMatchesMarshal(t *testing.T) {
	inputs := []string{"", "item.created", "2026-11-27T12:00:00.5Z", "ünï", "a\u2028b", "<a&b>", "quote\"back\\", "\x7f", "\xff\xfe", "tab\t", strings.Repeat("k", 1000)}
	for c := range 256 {
		inputs = append(inputs, string([]byte{byte(c)}), "x"+string([]byte{byte(c)})+"y")
	}
	for _, s := range inputs {
		want, _ := json.Marshal(s)
		var b bytes.Buffer
		writeString(&b, s)
		if b.String() != string(want) {
			t.Errorf("writeString(%q) = %s, want %s", s, b.String(), want)
		}
	}
}

func FuzzWriteString(f *testing.F) {
	f.Add("orders")
	f.Add("a<b>\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		var b bytes.Buffer
		writeString(&b, s)
		if b.String() != string(want) {
			t.Fatalf("writeString(%q) = %s, want %s", s, b.String(), want)
		}
	})
}
