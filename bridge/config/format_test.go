package config

import (
	"bytes"
	"strings"
	"testing"
)

// formatSources completes a sinks: section into a whole configuration.
const formatSources = `sources:
  - name: orders
    schedule: "@every 10s"
    url: http://127.0.0.1:9000/orders
    key: id
`

func TestSinkFormatDefaults(t *testing.T) {
	yaml := `sinks:
  - name: std
    url: http://127.0.0.1:8080/a
  - name: ce
    url: http://127.0.0.1:8080/b
    format: cloudevents
  - name: cebin
    url: http://127.0.0.1:8080/c
    format: cloudevents
    cloudevents_mode: binary
    cloudevents_source: https://pollbridge.example.com/{source}
  - name: chat
    url: http://127.0.0.1:8080/d
    format: template
    template: |
      {{- $k := .Key -}}
      {"text": {{printf "order %s is now %v" $k .Item.status | json}}}
  - name: plain
    url: http://127.0.0.1:8080/e
    format: template
    template: "{{.Key}} ${WORD}"
    content_type: text/plain; charset=utf-8
  - name: out
    type: stdout
` + formatSources
	cfg, err := Parse("f.yaml", []byte(yaml), envOf(map[string]string{"WORD": "changed"}))
	if err != nil {
		t.Fatal(err)
	}
	type fields struct{ format, mode, source, tmpl, ctype string }
	want := map[string]fields{
		"std":   {format: "standard"},
		"ce":    {format: "cloudevents", mode: "structured", source: "pollbridge/{source}"},
		"cebin": {format: "cloudevents", mode: "binary", source: "https://pollbridge.example.com/{source}"},
		"chat": {format: "template", ctype: "application/json",
			tmpl: "{{- $k := .Key -}}\n{\"text\": {{printf \"order %s is now %v\" $k .Item.status | json}}}\n"},
		"plain": {format: "template", ctype: "text/plain; charset=utf-8", tmpl: "{{.Key}} changed"},
		"out":   {}, // stdout sinks print the standard payload and get no format
	}
	for _, s := range cfg.Sinks {
		got := fields{s.Format, s.CloudEventsMode, s.CloudEventsSource, s.Template, s.ContentType}
		if got != want[s.Name] {
			t.Errorf("sink %s: got %+v, want %+v", s.Name, got, want[s.Name])
		}
	}
}

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name, text string
		data       any
		want       string
		wantErr    string
	}{
		{name: "json escapes", text: `{"text": {{json .}}}`, data: "a \"quoted\" <b>\n", want: `{"text": "a \"quoted\" <b>\n"}`},
		{name: "json of a map sorts keys", text: `{{json .}}`, data: map[string]any{"b": 1, "a": []any{true, nil}}, want: `{"a":[true,null],"b":1}`},
		{name: "json of a missing key is null", text: `{{json .x}}`, data: map[string]any{}, want: `null`},
		{name: "missing key prints no value", text: `{{.x}}`, data: map[string]any{}, want: `<no value>`},
		{name: "json as a pipeline stage", text: `{{.a | json}}`, data: map[string]any{"a": "x"}, want: `"x"`},
		{name: "unknown function", text: "ok\n{{nope .}}", wantErr: `template line 2: function "nope" not defined`},
		{name: "unclosed action", text: "{{if .x}}", wantErr: "template line 1: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tt.text)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := tmpl.Execute(&b, tt.data); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got %s, want %s", b.String(), tt.want)
			}
		})
	}
}

func TestCheckCloudEventsSource(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr string
	}{
		{in: "pollbridge/{source}"},
		{in: "https://example.com/pollbridge/{source}?x=1#f"},
		{in: "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},
		{in: "/sensors/tn-1234567/alerts%20x"},
		{in: "a b", wantErr: "character ' '"},
		{in: "{src}", wantErr: "character '{'"},
		{in: "x\u00e9", wantErr: "is not allowed"},
		{in: "100%", wantErr: `"%" must start`},
		{in: "%zz", wantErr: `"%" must start`},
		{in: "http://[::1", wantErr: "not a URI reference"},
	} {
		got := checkCloudEventsSource(tt.in)
		if (got == "") != (tt.wantErr == "") || !strings.Contains(got, tt.wantErr) {
			t.Errorf("checkCloudEventsSource(%q) = %q, want %q", tt.in, got, tt.wantErr)
		}
	}
}

func TestValidMediaType(t *testing.T) {
	for in, want := range map[string]bool{
		"application/json":                true,
		"text/plain; charset=utf-8":       true,
		"application/vnd.api+json":        true,
		"json":                            false,
		"application/":                    false,
		"text/plain; charset":             false,
		"":                                false,
		"text/plain\r\nX-Injected: yes":   false,
		"application/json; charset=\"x\"": true,
	} {
		if got := ValidMediaType(in); got != want {
			t.Errorf("ValidMediaType(%q) = %v, want %v", in, got, want)
		}
	}
}
