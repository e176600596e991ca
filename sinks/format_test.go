package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// chatTemplate is the Slack/Mattermost example of docs/formats.md.
const chatTemplate = `{"text": {{printf "order %s is now %v" .Key .Item.status | json}}}`

// dumpRequest renders what a receiver saw for golden files: content-type,
// the ce-* headers (sorted), a blank line and the body.
func dumpRequest(r request) []byte {
	var b bytes.Buffer
	var names []string
	for k := range r.header {
		if l := strings.ToLower(k); l == "content-type" || strings.HasPrefix(l, "ce-") {
			names = append(names, l)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		b.WriteString(k + ": " + r.header.Get(k) + "\n")
	}
	b.WriteString("\n")
	b.Write(r.body)
	b.WriteString("\n")
	return b.Bytes()
}

// dataObject is the "data" member of ev's standard payload, byte for byte.
func dataObject(t *testing.T, ev *bridge.Event) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeData(&b, ev); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFormatsGolden sends the same event twice through a real webhook in
// every format and checks the request against testdata/NAME.golden, that
// both attempts carry the same webhook-id and body bytes, and that the
// signature verifies over the body actually received.
func TestFormatsGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Sink
	}{
		{"standard", config.Sink{}},
		{"cloudevents-structured", config.Sink{Format: "cloudevents"}},
		{"cloudevents-binary", config.Sink{Format: "cloudevents", CloudEventsMode: "binary",
			CloudEventsSource: "https://pollbridge.example.com/{source}"}},
		{"template-chat", config.Sink{Format: "template", Template: chatTemplate}},
		{"template-text", config.Sink{Format: "template", ContentType: "text/plain; charset=utf-8", Template: `{{.Type}} {{.Source}}/{{.Key}} at {{.Time.Format "2006-01-02T15:04:05Z07:00"}}
{{range .Changes}}{{.Op}} {{.Path}}: {{json .Old}} -> {{json .New}}
{{end}}total {{.Item.total}}, was {{.Previous.total}}; item {{json .Item}}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, srv := newReceiver(t, nil)
			cfg := tt.cfg
			cfg.URL, cfg.Secret = srv.URL, testSecret
			w := newWebhook(t, cfg)
			clock := time.Unix(1_700_000_000, 0)
			w.now = func() time.Time { clock = clock.Add(time.Second); return clock }

			ev := testEvent()
			ev.Item = json.RawMessage(`{"id":42,"status":"paid","total":12345678901234567890.50}`)
			ev.Previous = json.RawMessage(`{"id":42,"status":"new","total":12345678901234567890.50}`)
			for range 2 {
				if err := w.Send(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			reqs := rc.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			for i, r := range reqs {
				if err := Verify(testSecret, r.header, r.body, time.Minute, clock); err != nil {
					t.Errorf("request %d does not verify over its body: %v", i, err)
				}
				if id := r.header.Get("webhook-id"); id != ev.ID {
					t.Errorf("request %d webhook-id = %q, want %q", i, id, ev.ID)
				}
			}
			if !bytes.Equal(reqs[0].body, reqs[1].body) {
				t.Errorf("retry changed the body:\n%s\n%s", reqs[0].body, reqs[1].body)
			}
			if a, b := reqs[0].header.Get("webhook-timestamp"), reqs[1].header.Get("webhook-timestamp"); a == b {
				t.Errorf("retry kept webhook-timestamp %s", a)
			}

			got := dumpRequest(reqs[0])
			file := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("request differs from %s:\n%s\nwant\n%s", file, got, want)
			}
		})
	}
}

// TestStandardFormatUnchanged pins format standard to Encode, byte for byte.
func TestStandardFormatUnchanged(t *testing.T) {
	for _, cfg := range []config.Sink{{}, {Format: "standard"}} {
		f, err := NewFormat(cfg)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		got, err := f.Render(testEvent(), h)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Encode(testEvent())
		if !bytes.Equal(got, want) || h.Get("Content-Type") != "application/json" {
			t.Errorf("format %q: %s %q, want Encode's bytes and application/json", cfg.Format, got, h.Get("Content-Type"))
		}
		h = http.Header{"Content-Type": {"application/x.custom+json"}}
		if _, err := f.Render(testEvent(), h); err != nil || h.Get("Content-Type") != "application/x.custom+json" {
			t.Errorf("a configured content-type was replaced: %q", h.Get("Content-Type"))
		}
	}
}

func TestCloudEventsStructured(t *testing.T) {
	f, err := NewFormat(config.Sink{Format: "cloudevents"})
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent()
	h := http.Header{}
	body, err := f.Render(ev, h)
	if err != nil {
		t.Fatal(err)
	}
	if ct := h.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Errorf("content-type = %q", ct)
	}
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "ce-") {
			t.Errorf("structured mode sent header %s", k)
		}
	}
	var ce map[string]json.RawMessage
	if err := json.Unmarshal(body, &ce); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	str := func(k string) string {
		var s string
		if err := json.Unmarshal(ce[k], &s); err != nil {
			t.Errorf("%s = %s, not a string", k, ce[k])
		}
		return s
	}
	for k, want := range map[string]string{
		"specversion": "1.0", "id": "evt_abc", "source": "pollbridge/orders", "type": "dev.pollbridge.item.updated",
		"subject": "42", "datacontenttype": "application/json",
	} {
		if got := str(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if tm, err := time.Parse(time.RFC3339, str("time")); err != nil || !tm.Equal(ev.Time) {
		t.Errorf("time = %s (%v), want %s", ce["time"], err, ev.Time)
	}
	data := dataObject(t, ev)
	if !bytes.Equal(ce["data"], data) {
		t.Errorf("data = %s, want the standard data object %s", ce["data"], data)
	}
	if len(ce) != 8 {
		t.Errorf("%d attributes, want 8: %s", len(ce), body)
	}

	// The empty key (a source that is one object) has no subject: a
	// CloudEvents subject must not be empty.
	ev.Key = ""
	body, _ = f.Render(ev, http.Header{})
	ce = nil
	if err := json.Unmarshal(body, &ce); err != nil || ce["subject"] != nil {
		t.Errorf("empty key: %s (%v), want no subject", body, err)
	}
}

func TestCloudEventsBinaryHeaders(t *testing.T) {
	rc, srv := newReceiver(t, nil)
	w := newWebhook(t, config.Sink{URL: srv.URL, Format: "cloudevents", CloudEventsMode: "binary",
		Headers: map[string]string{"X-Env": "dev"}})
	ev := testEvent()
	ev.Key = `a b"%/é€😀` + "\n"
	ev.Type = bridge.ItemDeleted
	ev.Item, ev.Changes = nil, nil
	if err := w.Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	r := rc.requests()[0]
	for k, want := range map[string]string{
		"ce-specversion":     "1.0",
		"ce-id":              "evt_abc",
		"ce-source":          "pollbridge/orders",
		"ce-type":            "dev.pollbridge.item.deleted",
		"ce-subject":         "a%20b%22%25/%C3%A9%E2%82%AC%F0%9F%98%80%0A",
		"ce-time":            "2024-05-01T12:00:00.5Z",
		"ce-datacontenttype": "", // the binding forbids it: content-type says it
		"content-type":       "application/json",
		"x-env":              "dev",
		"webhook-id":         "evt_abc",
	} {
		if got := strings.Join(r.header.Values(k), "|"); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	want := dataObject(t, ev)
	if !bytes.Equal(r.body, want) {
		t.Errorf("body = %s, want the data object %s", r.body, want)
	}
}

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"plain-ASCII_~!#&'()*+,/:;<=>?@[\\]^`{|}": "plain-ASCII_~!#&'()*+,/:;<=>?@[\\]^`{|}",
		"Euro € 😀":      "Euro%20%E2%82%AC%20%F0%9F%98%80", // the binding's own example
		`"100%"`:        "%22100%25%22",
		"tab\there\x7f": "tab%09here%7F",
		"":              "",
	} {
		if got := percentEncode(in); got != want {
			t.Errorf("percentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTemplateRender(t *testing.T) {
	deleted := &bridge.Event{ID: "evt_d", Type: bridge.ItemDeleted, Time: detected, Source: "orders", Key: "7",
		Previous: json.RawMessage(`{"id":7,"status":"paid"}`)}
	tests := []struct {
		name, tmpl, ctype string
		ev                *bridge.Event
		want              string
		wantErr           string
	}{
		{name: "chat example escapes the key", tmpl: chatTemplate,
			ev:   func() *bridge.Event { e := testEvent(); e.Key = `4"2</b>`; return e }(),
			want: `{"text": "order 4\"2</b> is now paid"}`},
		{name: "deletion: item is empty", tmpl: `{"was": {{json .Previous.status}}, "now": {{json .Item.status}}, "item": {{json .Item}}}`,
			ev: deleted, want: `{"was": "paid", "now": null, "item": null}`},
		{name: "if on an absent item", tmpl: `{{if .Item}}changed{{else}}gone{{end}}`, ctype: "text/plain", ev: deleted, want: "gone"},
		{name: "numbers keep their text", tmpl: `{{.Item.n}} {{json .Item.n}} {{if eq .Item.s "x"}}eq{{end}}`, ctype: "text/plain",
			ev:   &bridge.Event{ID: "e", Item: json.RawMessage(`{"n":12345678901234567890.50,"s":"x"}`)},
			want: "12345678901234567890.50 12345678901234567890.50 eq"},
		{name: "changes decoded", tmpl: `{{range .Changes}}{{.Op}} {{.Path}} {{.Old}}>{{.New}};{{end}}`, ctype: "text/plain",
			ev: testEvent(), want: "replace /status new>paid;"},
		{name: "execution error", tmpl: `{"x": {{json .Item.status.deep}}}`, ev: testEvent(),
			wantErr: `execute template: template line 1:18: at <.Item.status.deep>: can't evaluate field deep in type interface {}`},
		{name: "index out of range", tmpl: `{{index .Changes 3}}`, ctype: "text/plain", ev: testEvent(),
			wantErr: "execute template: template line 1:2: at <index .Changes 3>: error calling index: index out of range: 3"},
		{name: "invalid JSON body", tmpl: `{"text": "order {{.Key}} is {{.Item.status}}"`, ev: testEvent(),
			wantErr: "execute template: the body is not valid JSON as content type application/json requires (at byte 27: unexpected end of JSON input); write values with {{json ...}}"},
		{name: "+json media type is checked too", tmpl: `{{.Key}}x`, ctype: "application/vnd.x+json", ev: testEvent(),
			wantErr: "the body is not valid JSON as content type application/vnd.x+json requires (at byte 3: invalid character 'x' after top-level value)"},
		{name: "text is not checked", tmpl: `{{.Key}}x`, ctype: "text/plain", ev: testEvent(), want: "42x"},
		{name: "bad item JSON", tmpl: `{{.Key}}`, ctype: "text/plain", ev: &bridge.Event{ID: "e", Item: json.RawMessage(`{`)},
			wantErr: "encode: item is not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFormat(config.Sink{Format: "template", Template: tt.tmpl, ContentType: tt.ctype})
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			got, err := f.Render(tt.ev, h)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v\nwant %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("body = %s\nwant   %s", got, tt.want)
			}
			wantCT := tt.ctype
			if wantCT == "" {
				wantCT = "application/json"
			}
			if ct := h.Get("Content-Type"); ct != wantCT {
				t.Errorf("content-type = %q, want %q", ct, wantCT)
			}
		})
	}
}

// TestTemplateFailureIsPermanent checks that a template failing on an event
// dead-letters it at once, without a request, and that the error says why.
func TestTemplateFailureIsPermanent(t *testing.T) {
	rc, srv := newReceiver(t, nil)
	w := newWebhook(t, config.Sink{URL: srv.URL, Secret: testSecret, Format: "template", Template: `{{index .Item "lines" 9}}`})
	err := w.Send(context.Background(), testEvent())
	var de *bridge.DeliveryError
	if !bridge.IsPermanent(err) || !strings.Contains(err.Error(), "execute template: template line 1:2: at <index .Item \"lines\" 9>") {
		t.Fatalf("Send = %v, want a permanent template error", err)
	} else if de = err.(*bridge.DeliveryError); de.Status != 0 {
		t.Errorf("status %d, want none", de.Status)
	}
	if strings.Contains(err.Error(), "whsec_") {
		t.Errorf("error leaks the secret: %v", err)
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestNewFormatErrors(t *testing.T) {
	for _, tt := range []struct {
		cfg     config.Sink
		wantErr string
	}{
		{config.Sink{Format: "slack"}, `unknown format "slack"`},
		{config.Sink{Format: "cloudevents", CloudEventsMode: "batched"}, `unknown cloudevents mode "batched"`},
		{config.Sink{Format: "template"}, "format template needs a template"},
		{config.Sink{Format: "template", Template: "{{.Key"}, "parse template: template line 1: unclosed action"},
		{config.Sink{Format: "template", Template: "x", ContentType: "json"}, `bad content type "json"`},
	} {
		_, err := NewFormat(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewFormat(%+v) = %v, want %q", tt.cfg, err, tt.wantErr)
		}
		_, err = NewWebhook(config.Sink{URL: "http://127.0.0.1:1", Format: tt.cfg.Format, CloudEventsMode: tt.cfg.CloudEventsMode,
			Template: tt.cfg.Template, ContentType: tt.cfg.ContentType}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "payload format: ") {
			t.Errorf("NewWebhook = %v, want a payload format error", err)
		}
	}
}

// TestStdoutIgnoresFormat checks that a stdout sink prints the standard
// payload whatever the webhook sinks of the same file use.
func TestStdoutIgnoresFormat(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(`sinks:
  - name: ce
    url: http://127.0.0.1:8080/b
    format: cloudevents
  - name: out
    type: stdout
sources:
  - name: orders
    schedule: "@every 10s"
    url: http://127.0.0.1:9000/orders
    key: id
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := cfg.Sink("out")
	if sc.Format != "" {
		t.Errorf("stdout sink got format %q", sc.Format)
	}
	if s, err := New(sc, nil); err != nil {
		t.Fatal(err)
	} else if _, ok := s.(*Stdout); !ok {
		t.Fatalf("New = %T, want *Stdout", s)
	}
	var buf bytes.Buffer
	if err := NewStdout(&buf).Send(context.Background(), testEvent()); err != nil {
		t.Fatal(err)
	}
	want, _ := Encode(testEvent())
	if got := strings.TrimSuffix(buf.String(), "\n"); got != string(want) {
		t.Errorf("stdout printed %s, want %s", got, want)
	}
}

// TestFormatConcurrentRender renders from many goroutines at once (run with
// -race): one Format serves every delivery in flight to its sink.
func TestFormatConcurrentRender(t *testing.T) {
	for _, cfg := range []config.Sink{
		{Format: "template", Template: chatTemplate},
		{Format: "cloudevents", CloudEventsMode: "binary"},
	} {
		f, err := NewFormat(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f.Render(testEvent(), http.Header{})
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				got, err := f.Render(testEvent(), http.Header{})
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("Render = %s, %v; want %s", got, err, want)
				}
			})
		}
		wg.Wait()
	}
}
