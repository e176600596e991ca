package redact

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestSnippet(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		secrets []string
		want    string
	}{
		{"collapses white space", "a \n\t b\r\nc", nil, "a b c"},
		{"drops control and invalid bytes", "a\x00b\xffc", nil, "abc"},
		{"redacts secrets", `{"token":"s3cr3t-value"}`, []string{"s3cr3t-value"}, `{"token":"[redacted]"}`},
		{"ignores tiny secrets", "abc", []string{"b"}, "abc"},
		{"cuts long text on a rune boundary", strings.Repeat("é", 300), nil, strings.Repeat("é", SnippetLen/2) + "…"},
		{"empty", " \n ", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Snippet([]byte(tt.in), tt.secrets); got != tt.want {
				t.Errorf("Snippet = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestURLErrorHidesTheURL(t *testing.T) {
	inner := errors.New("connection refused")
	err := &url.Error{Op: "Get", URL: "http://h/p?token=abc", Err: inner}
	if got := URLError(err); got != inner || strings.Contains(got.Error(), "token") {
		t.Errorf("URLError = %v", got)
	}
	if plain := errors.New("x"); URLError(plain) != plain {
		t.Error("a plain error was changed")
	}
}

func TestHTTPURL(t *testing.T) {
	for _, bad := range []string{"ftp://h/x", "http://", "http://u:pw-SECRET@h\x7f/"} {
		_, err := HTTPURL(bad)
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("HTTPURL(%q) = %v, want an error that hides the URL", bad, err)
		}
	}
	if u, err := HTTPURL("https://api.example.com/v1?x=1"); err != nil || u.Host != "api.example.com" {
		t.Errorf("good URL: %v, %v", u, err)
	}
}
