// Package redact keeps secrets and noise out of error messages that quote
// what a remote server said or where it lives. Sources and sinks use it for
// the excerpts of bodies and URLs they put into errors.
package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SnippetLen bounds the length in bytes of the text Snippet returns.
const SnippetLen = 200

// Snippet returns up to SnippetLen bytes of text from b, for an error
// message: printable runes only, white space collapsed, every secret (of at
// least 4 bytes) replaced by "[redacted]", "…" when cut.
func Snippet(b []byte, secrets []string) string {
	if len(b) > 4096 {
		b = b[:4096]
	}
	var sb strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(string(b), "") {
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			space = true
		case unicode.IsPrint(r) && r != utf8.RuneError:
			if space && sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			space = false
			sb.WriteRune(r)
		}
	}
	t := sb.String()
	for _, sec := range secrets {
		if len(sec) >= 4 {
			t = strings.ReplaceAll(t, sec, "[redacted]")
		}
	}
	if len(t) > SnippetLen {
		cut := SnippetLen
		for cut > 0 && !utf8.RuneStart(t[cut]) {
			cut--
		}
		t = t[:cut] + "…"
	}
	return t
}

// URLError drops the *url.Error wrapper that net/http puts around request
// errors, because it quotes the full URL, query and all.
func URLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// HTTPURL parses an absolute http(s) URL. Its errors never quote the URL,
// which may hold a token.
func HTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", URLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("parse url: scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("parse url: no host")
	}
	return u, nil
}
