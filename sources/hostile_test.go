package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pollbridge/pollbridge/bridge/config"
)

func TestHostileBodies(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		name     string
		body     string
		items    string
		key      config.KeyPaths
		wantErr  string // "" means accepted
		wantKeys string
	}{
		{name: "nesting far too deep", body: `{"data":` + deep(200000) + `}`, items: "data", key: config.KeyPaths{"id"},
			wantErr: "fetch page 1: response refused: body nests arrays and objects deeper than 1000 levels (at offset 1007)"},
		{name: "nesting at the limit", body: `[{"id":1,"x":` + deep(MaxDepth-2) + `}]`, key: config.KeyPaths{"id"}, wantKeys: "1"},
		{name: "nesting one past the limit", body: `[{"id":1,"x":` + deep(MaxDepth-1) + `}]`, key: config.KeyPaths{"id"},
			wantErr: "deeper than 1000 levels"},
		{name: "huge integers are kept exactly", body: `[{"id":123456789012345678901234567890},{"id":9007199254740993}]`, key: config.KeyPaths{"id"},
			wantKeys: "123456789012345678901234567890,9007199254740993"},
		{name: "huge exponent", body: `[{"id":"a","n":1e999999999}]`, key: config.KeyPaths{"id"}, wantKeys: "a"},
		{name: "100,000-digit number", body: `[{"id":"a","n":` + strings.Repeat("7", 100000) + `}]`, key: config.KeyPaths{"id"}, wantKeys: "a"},
		{name: "duplicate key in an item", body: `{"data":[{"id":1},{"id":2,"status":"new","status":"paid"}]}`, items: "data", key: config.KeyPaths{"id"},
			wantErr: `fetch page 1: response refused: body has duplicate key "status" at offset 41`},
		{name: "duplicate key, one escaped", body: `[{"id":1,"\u0069d":2}]`, key: config.KeyPaths{"id"}, wantErr: `duplicate key "id"`},
		{name: "duplicate key in a large object", body: `[{"id":1` + manyKeys(100) + `,"k50":0}]`, key: config.KeyPaths{"id"}, wantErr: `duplicate key "k50"`},
		{name: "same key in sibling and nested objects", body: `[{"id":1,"x":{"id":1},"y":[{"id":1},{"id":1}]},{"id":2}]`, key: config.KeyPaths{"id"}, wantKeys: "1,2"},
		{name: "invalid UTF-8", body: "[{\"id\":\"caf\xe9\"}]", key: config.KeyPaths{"id"},
			wantErr: "fetch page 1: response refused: body is not valid UTF-8 (first bad byte at offset 11)"},
		{name: "overlong UTF-8", body: "[{\"id\":\"\xc0\xaf\"}]", key: config.KeyPaths{"id"}, wantErr: "not valid UTF-8"},
		{name: "escaped lone surrogate is valid JSON", body: `[{"id":"\ud800"}]`, key: config.KeyPaths{"id"}, wantKeys: "\ufffd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tt.body)
			}, config.Source{Items: tt.items, Key: tt.key}, nil)
			snap, err := s.Fetch(context.Background(), map[string]string{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if snap != nil {
					t.Error("snapshot with an error")
				}
				if !utf8.ValidString(err.Error()) || len(err.Error()) > 1000 {
					t.Errorf("error is not short valid text: %q", err.Error())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(snap); got != tt.wantKeys {
				t.Errorf("keys = %q, want %q", got, tt.wantKeys)
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(`,"k`)
		b.WriteString(strconv.Itoa(i))
		b.WriteString(`":0`)
	}
	return b.String()
}

// repeatReader yields pattern over and over.
type repeatReader struct {
	pattern []byte
	off     int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pattern[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pattern)
	}
	return n, nil
}

// TestHugeBodyStreamed: a 100 MB answer, generated as it is sent, fails at
// max_body_size without reading (or keeping) the rest.
func TestHugeBodyStreamed(t *testing.T) {
	const size = 100 << 20
	var written int64
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "[")
		n, _ := io.CopyN(w, &repeatReader{pattern: []byte(`{"id":1234567},`)}, size)
		written = n
	}))
	defer srv.Close()
	s, err := NewHTTP(config.Source{URL: srv.URL, Key: config.KeyPaths{"id"}, MaxBodySize: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	snap, err := s.Fetch(context.Background(), map[string]string{})
	runtime.ReadMemStats(&after)
	if err == nil || snap != nil || !strings.Contains(err.Error(), "fetch page 1: response body exceeds 1048576 bytes") {
		t.Fatalf("Fetch = %v, %v", snap, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("fetch allocated %d MB for a 1 MB limit", alloc>>20)
	}
	srv.CloseClientConnections()
	<-done
	if written >= size {
		t.Errorf("the server could send all %d bytes: the body was read past the limit", written)
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[1,2,{"a":2}]}`, `{"a":1,"a":2}`, `{"a":{"b":1},"a\u0000":2}`, `{"\u0061":1,"a":2}`,
		`[[[[[]]]]]`, `"\"{"`, `{"a":"}","b":"{"}`, `{"a":[{"a":1,"a":1}]}`, "\xff", `{"a":1,`, `}]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := checkJSON(body)
		valid := json.Valid(body) && utf8.Valid(body)
		if err == nil && !valid {
			t.Fatalf("checkJSON accepted invalid JSON %q", body)
		}
		if valid && err != nil && !strings.Contains(err.Error(), "duplicate key") && !strings.Contains(err.Error(), "deeper than") {
			t.Fatalf("checkJSON refused valid JSON %q: %v", body, err)
		}
		if valid {
			dup := hasDuplicateKeys(t, body)
			if gotDup := err != nil && strings.Contains(err.Error(), "duplicate key"); gotDup != dup && !strings.Contains(errString(err), "deeper") {
				t.Fatalf("duplicate keys in %q: checkJSON %v, reference %v", body, err, dup)
			}
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// hasDuplicateKeys is the reference: it walks body with json.Decoder.
func hasDuplicateKeys(t *testing.T, body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		object    bool
		keys      map[string]bool
		expectKey bool
	}
	var stack []*level
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Skipf("json.Decoder cannot tokenize %q: %v", body, err)
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &level{object: v == '{', keys: map[string]bool{}, expectKey: true})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.expectKey {
				if top.keys[v] {
					return true
				}
				top.keys[v] = true
				top.expectKey = false
				continue
			}
		}
		if top != nil && top.object {
			top.expectKey = true
		}
	}
}
