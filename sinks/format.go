package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"text/template"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

// CloudEvents constants.
const (
	// CloudEventsSpecVersion is the specversion of every CloudEvent sent.
	CloudEventsSpecVersion = "1.0"
	// CloudEventsTypePrefix starts the CloudEvents type of every event:
	// item.updated is sent as dev.pollbridge.item.updated.
	CloudEventsTypePrefix = "dev.pollbridge."
	// CloudEventsContentType is the content-type of structured CloudEvents.
	CloudEventsContentType = "application/cloudevents+json"
)

// Format renders events in one payload format of webhook sinks
// (config.Sink.Format): the body of a request and the headers describing
// it. The same event always renders to the same bytes, so a retried event
// is byte-identical. A Format is safe for concurrent use.
type Format struct {
	kind        string // config.Format*
	ceBinary    bool
	ceSource    string // with config.SourcePlaceholder
	tmpl        *template.Template
	contentType string // of template bodies
	jsonBody    bool   // template bodies must be valid JSON
}

// NewFormat returns the payload format of cfg. Empty settings take their
// defaults (config.DefaultSinkFormat...), so a Sink that did not go through
// config.Load works too. It fails for an unknown format or mode, a template
// that does not parse and a bad content type.
func NewFormat(cfg config.Sink) (*Format, error) {
	f := &Format{kind: cfg.Format}
	if f.kind == "" {
		f.kind = config.DefaultSinkFormat
	}
	switch f.kind {
	case config.FormatStandard:
	case config.FormatCloudEvents:
		switch cfg.CloudEventsMode {
		case "", config.CloudEventsStructured:
		case config.CloudEventsBinary:
			f.ceBinary = true
		default:
			return nil, fmt.Errorf("unknown cloudevents mode %q (want structured or binary)", cfg.CloudEventsMode)
		}
		f.ceSource = cfg.CloudEventsSource
		if f.ceSource == "" {
			f.ceSource = config.DefaultCloudEventsSource
		}
	case config.FormatTemplate:
		if cfg.Template == "" {
			return nil, errors.New("format template needs a template")
		}
		t, err := config.ParseTemplate(cfg.Template)
		if err != nil {
			return nil, fmt.Errorf("parse template: %w", err)
		}
		f.tmpl = t
		f.contentType = cfg.ContentType
		if f.contentType == "" {
			f.contentType = config.DefaultContentType
		}
		if !config.ValidMediaType(f.contentType) {
			return nil, fmt.Errorf("bad content type %q", f.contentType)
		}
		mt, _, _ := mime.ParseMediaType(f.contentType)
		f.jsonBody = mt == "application/json" || strings.HasSuffix(mt, "+json")
	default:
		return nil, fmt.Errorf("unknown format %q (want standard, cloudevents or template)", cfg.Format)
	}
	return f, nil
}

// Render returns the body of the request for ev and sets in h the headers
// that describe it: content-type (for format standard only when h has none,
// so a configured one wins) and, in CloudEvents binary mode, the ce-*
// attribute headers. Every failure is one retrying cannot cure: an event
// that cannot be encoded, a template that fails on it, or a template body
// that is not valid JSON under a JSON content type.
func (f *Format) Render(ev *bridge.Event, h http.Header) ([]byte, error) {
	if ev == nil {
		return nil, errors.New("encode: nil event")
	}
	switch f.kind {
	case config.FormatCloudEvents:
		return f.cloudEvent(ev, h)
	case config.FormatTemplate:
		body, err := f.execute(ev)
		if err != nil {
			return nil, err
		}
		h.Set("Content-Type", f.contentType)
		return body, nil
	default:
		body, err := Encode(ev)
		if err != nil {
			return nil, err
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
		return body, nil
	}
}

// cloudEvent renders ev as a CloudEvent 1.0: in structured mode the JSON
// envelope
//
//	{"specversion":"1.0","id":"…","source":"pollbridge/orders",
//	 "type":"dev.pollbridge.item.updated","subject":"42",
//	 "time":"2024-05-01T12:00:00.5Z","datacontenttype":"application/json",
//	 "data":{…the data object of Encode…}}
//
// (subject left out for the empty key, which CloudEvents does not allow),
// in binary mode the data object as body and the attributes as ce-*
// headers, percent-encoded as the HTTP binding requires.
func (f *Format) cloudEvent(ev *bridge.Event, h http.Header) ([]byte, error) {
	if ev.ID == "" {
		return nil, errors.New("cloudevents: event has no id")
	}
	source := strings.ReplaceAll(f.ceSource, config.SourcePlaceholder, ev.Source)
	if source == "" {
		return nil, errors.New("cloudevents: empty source")
	}
	attrs := [][2]string{
		{"specversion", CloudEventsSpecVersion},
		{"id", ev.ID},
		{"source", source},
		{"type", CloudEventsTypePrefix + ev.Type},
	}
	if ev.Key != "" {
		attrs = append(attrs, [2]string{"subject", ev.Key})
	}
	attrs = append(attrs, [2]string{"time", eventTime(ev)})

	var b bytes.Buffer
	if f.ceBinary {
		if err := writeData(&b, ev); err != nil {
			return nil, err
		}
		for _, a := range attrs {
			h.Set("Ce-"+a[0], percentEncode(a[1]))
		}
		h.Set("Content-Type", "application/json")
		return b.Bytes(), nil
	}
	for i, a := range attrs {
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		writeString(&b, a[0])
		b.WriteByte(':')
		writeString(&b, a[1])
	}
	b.WriteString(`,"datacontenttype":"application/json","data":`)
	if err := writeData(&b, ev); err != nil {
		return nil, err
	}
	b.WriteByte('}')
	h.Set("Content-Type", CloudEventsContentType)
	return b.Bytes(), nil
}

// percentEncode encodes a CloudEvents attribute for an HTTP header value:
// space, '"', '%' and every byte outside printable ASCII become %XX (upper
// case hex), which for UTF-8 text is the binding's per-character rule.
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TemplateData is the dot of a payload template: one event, with its JSON
// decoded so that templates can reach into it ({{.Item.status}}).
//
// JSON objects become map[string]any, arrays []any, numbers json.Number
// (printed exactly as the API wrote them; compare them as strings:
// {{if eq .Item.total "12.5"}}), strings, bools and nil.
type TemplateData struct {
	// Type is item.created, item.updated or item.deleted.
	Type string
	// ID is the event id, the same as the webhook-id header.
	ID string
	// Source is the source name.
	Source string
	// Key is the item's key.
	Key string
	// Time is when the change was detected, in UTC.
	Time time.Time
	// Item is the item now; for deletions an empty map (so .Item.status is
	// <no value>, and null for json).
	Item any
	// Previous is the item before the change; an empty map for creations.
	Previous any
	// Changes are the field-level changes of an update.
	Changes []TemplateChange
}

// TemplateChange is one field-level change, as templates see it.
type TemplateChange struct {
	// Op is add, remove or replace.
	Op string
	// Path is a JSON Pointer into the item, such as /status.
	Path string
	// Old is the value before (nil for add).
	Old any
	// New is the value after (nil for remove).
	New any
}

// execute runs the template on ev.
func (f *Format) execute(ev *bridge.Event) ([]byte, error) {
	data := TemplateData{
		Type: ev.Type, ID: ev.ID, Source: ev.Source, Key: ev.Key, Time: ev.Time.UTC(),
		Changes: make([]TemplateChange, len(ev.Changes)),
	}
	var err error
	if data.Item, err = decodeItem("item", ev.Item); err != nil {
		return nil, err
	}
	if data.Previous, err = decodeItem("previous", ev.Previous); err != nil {
		return nil, err
	}
	for i, c := range ev.Changes {
		tc := TemplateChange{Op: c.Op, Path: c.Path}
		if tc.Old, err = decodeJSON("old", c.Old); err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		if tc.New, err = decodeJSON("new", c.New); err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
		data.Changes[i] = tc
	}
	var b bytes.Buffer
	if err := f.tmpl.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("execute template: %s", templateError(err))
	}
	if f.jsonBody {
		// The body is not quoted: a template may write secrets into it.
		var syn *json.SyntaxError
		if err := json.Unmarshal(b.Bytes(), new(json.RawMessage)); errors.As(err, &syn) {
			return nil, fmt.Errorf("execute template: the body is not valid JSON as content type %s requires (at byte %d: %v); write values with {{json ...}}",
				f.contentType, syn.Offset, syn)
		} else if err != nil {
			return nil, fmt.Errorf("execute template: the body is not valid JSON as content type %s requires (%v); write values with {{json ...}}", f.contentType, err)
		}
	}
	return b.Bytes(), nil
}

// templateError shortens text/template's execution errors:
// `template: template:1:9: executing "template" at <.Item.a.b>: ...`
// reads `template line 1:9: at <.Item.a.b>: ...`.
func templateError(err error) string {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "template: template:")
	if !ok {
		return msg
	}
	return "template line " + strings.Replace(rest, `executing "template" at `, "at ", 1)
}

// decodeItem decodes an item for a template; absent, it is an empty map.
func decodeItem(name string, raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return map[string]any(nil), nil
	}
	return decodeJSON(name, raw)
}

// decodeJSON decodes raw JSON with numbers as json.Number; absent, nil.
func decodeJSON(name string, raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("encode: %s is not valid JSON", name)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", name, err)
	}
	return v, nil
}
