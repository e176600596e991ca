package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"text/template"
)

// Payload formats of webhook sinks (Sink.Format).
const (
	FormatStandard    = "standard"
	FormatCloudEvents = "cloudevents"
	FormatTemplate    = "template"
)

// CloudEvents content modes (Sink.CloudEventsMode).
const (
	CloudEventsStructured = "structured"
	CloudEventsBinary     = "binary"
)

// Defaults of the payload format settings.
const (
	DefaultSinkFormat        = FormatStandard
	DefaultCloudEventsMode   = CloudEventsStructured
	DefaultCloudEventsSource = "pollbridge/{source}"
	DefaultContentType       = "application/json"
	// SourcePlaceholder stands for the source name in CloudEventsSource.
	SourcePlaceholder = "{source}"
)

// templateName names payload templates; ParseTemplate's errors drop it.
const templateName = "template"

// ParseTemplate parses the payload template text of a sink, with the
// helper functions templates may call:
//
//	json X   X marshalled as JSON (strings quoted and escaped, maps with
//	         sorted keys, HTML characters not escaped)
//
// A key missing from a map prints as "<no value>" and is null for json, as
// in text/template's default. The template is safe to execute
// concurrently. Errors read "template line N: what is wrong".
func ParseTemplate(text string) (*template.Template, error) {
	t, err := template.New(templateName).Funcs(template.FuncMap{"json": templateJSON}).Parse(text)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "template: "+templateName+":")
		if msg != err.Error() {
			return nil, errors.New("template line " + msg)
		}
		return nil, err
	}
	return t, nil
}

// templateJSON is the template helper json.
func templateJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// sinkFormat defaults and validates the payload format settings of webhook
// sink s at path p.
func (d *decoder) sinkFormat(p string, s *Sink) {
	if s.Format == "" {
		s.Format = DefaultSinkFormat
	}
	only := func(field, format string) {
		if d.isSet(p + "." + field) {
			d.errAt(p+"."+field, "only used with format: %s", format)
		}
	}
	switch s.Format {
	case FormatStandard:
	case FormatCloudEvents:
		if s.CloudEventsMode == "" {
			s.CloudEventsMode = DefaultCloudEventsMode
		} else if !oneOf(s.CloudEventsMode, CloudEventsStructured, CloudEventsBinary) {
			d.errAt(p+".cloudevents_mode", "bad mode %q: want structured or binary", d.orig(p+".cloudevents_mode"))
		}
		if s.CloudEventsSource == "" {
			s.CloudEventsSource = DefaultCloudEventsSource
		} else if msg := checkCloudEventsSource(s.CloudEventsSource); msg != "" {
			d.errAt(p+".cloudevents_source", "bad source %q: %s", d.orig(p+".cloudevents_source"), msg)
		}
		for name := range s.Headers {
			if l := strings.ToLower(name); l == "content-type" || strings.HasPrefix(l, "ce-") {
				d.errAt(join(p+".headers", name), "reserved: pollbridge sets this header in format cloudevents")
			}
		}
	case FormatTemplate:
		f := p + ".template"
		switch {
		case d.failed(f):
		case s.Template == "":
			d.errAt(f, "required with format template: a Go text/template that writes the request body")
		default:
			if _, err := ParseTemplate(s.Template); err != nil {
				d.errAt(f, "%v", err)
			}
		}
		if s.ContentType == "" {
			s.ContentType = DefaultContentType
		} else if !ValidMediaType(s.ContentType) {
			d.errAt(p+".content_type", "bad media type %q: want for example application/json or text/plain; charset=utf-8", d.orig(p+".content_type"))
		}
		for name := range s.Headers {
			if strings.EqualFold(name, "content-type") {
				d.errAt(join(p+".headers", name), "set content_type instead")
			}
		}
	default:
		d.errAt(p+".format", "bad format %q: want standard, cloudevents or template", d.orig(p+".format"))
		return
	}
	if s.Format != FormatCloudEvents {
		only("cloudevents_mode", FormatCloudEvents)
		only("cloudevents_source", FormatCloudEvents)
	}
	if s.Format != FormatTemplate {
		only("template", FormatTemplate)
		only("content_type", FormatTemplate)
	}
}

// noFormat reports payload format settings on a stdout sink at path p,
// which always prints the standard payload.
func (d *decoder) noFormat(p string) {
	for _, field := range []string{"format", "cloudevents_mode", "cloudevents_source", "template", "content_type"} {
		if d.isSet(p + "." + field) {
			d.errAt(p+"."+field, "not used by stdout sinks (they print the standard payload); remove it")
		}
	}
}

// ValidMediaType reports whether s is a media type such as application/json
// or text/plain; charset=utf-8, fit for a content-type header.
func ValidMediaType(s string) bool {
	mt, _, err := mime.ParseMediaType(s)
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return false
	}
	typ, sub, ok := strings.Cut(mt, "/")
	return ok && typ != "" && sub != ""
}

// checkCloudEventsSource returns what is wrong with a cloudevents_source
// value, or "". With {source} replaced by a source name it must be a
// non-empty URI reference (RFC 3986): printable ASCII without spaces or
// "<>\^`{|}, and "%" only before two hex digits.
func checkCloudEventsSource(s string) string {
	r := strings.ReplaceAll(s, SourcePlaceholder, "x")
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0:
			return fmt.Sprintf("not a URI reference: character %q is not allowed (write {source} for the source name)", c)
		case c == '%' && (i+2 >= len(r) || !isHex(r[i+1]) || !isHex(r[i+2])):
			return `not a URI reference: "%" must start a %XX escape`
		}
	}
	if _, err := url.Parse(r); err != nil {
		return "not a URI reference"
	}
	return ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
