package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tidwall/gjson"

	"github.com/pollbridge/pollbridge/bridge"
)

// Encode returns the payload of ev, the body of its webhook:
//
//	{"type":"item.updated","timestamp":"2024-05-01T12:00:00.5Z",
//	 "data":{"id":"…","source":"orders","key":"42","item":{…},"previous":{…},
//	   "changes":[{"op":"replace","path":"/status","old":"new","new":"paid"}]}}
//
// timestamp is ev.Time in UTC, RFC 3339 with nanoseconds as needed. item,
// previous and changes are left out when empty (deletions have no item,
// creations no previous), and so are a change's old and new. The raw JSON of
// item, previous, old and new is copied byte for byte; it must be valid JSON.
// The same event always encodes to the same bytes.
func Encode(ev *bridge.Event) ([]byte, error) {
	if ev == nil {
		return nil, errors.New("encode: nil event")
	}
	var b bytes.Buffer
	b.Grow(256 + len(ev.Item) + len(ev.Previous) + 64*len(ev.Changes))
	b.WriteString(`{"type":`)
	writeString(&b, ev.Type)
	b.WriteString(`,"timestamp":`)
	writeString(&b, eventTime(ev))
	b.WriteString(`,"data":`)
	if err := writeData(&b, ev); err != nil {
		return nil, err
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// eventTime is ev.Time as payloads write it: UTC, RFC 3339 with nanoseconds
// as needed.
func eventTime(ev *bridge.Event) string {
	return ev.Time.UTC().Format(time.RFC3339Nano)
}

// writeData writes the data object of ev.
func writeData(b *bytes.Buffer, ev *bridge.Event) error {
	b.WriteString(`{"id":`)
	writeString(b, ev.ID)
	b.WriteString(`,"source":`)
	writeString(b, ev.Source)
	b.WriteString(`,"key":`)
	writeString(b, ev.Key)
	if err := writeRaw(b, "item", ev.Item); err != nil {
		return err
	}
	if err := writeRaw(b, "previous", ev.Previous); err != nil {
		return err
	}
	if len(ev.Changes) > 0 {
		b.WriteString(`,"changes":[`)
		for i, c := range ev.Changes {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"op":`)
			writeString(b, c.Op)
			b.WriteString(`,"path":`)
			writeString(b, c.Path)
			if err := writeRaw(b, "old", c.Old); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			if err := writeRaw(b, "new", c.New); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			b.WriteByte('}')
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return nil
}

// writeString writes s as a JSON string.
// It writes what json.Marshal writes: a string of printable ASCII other
// than " \ < > & (most ids, keys, types and times) is copied as is, any
// other goes through json.Marshal.
func writeString(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			b.Write(q)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}

// writeRaw writes ,"name":raw unless raw is empty.
func writeRaw(b *bytes.Buffer, name string, raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if !gjson.ValidBytes(raw) { // accepts what json.Valid does (sources' FuzzCheckJSON)
		return fmt.Errorf("encode: %s is not valid JSON", name)
	}
	b.WriteString(`,"`)
	b.WriteString(name)
	b.WriteString(`":`)
	b.Write(raw)
	return nil
}
