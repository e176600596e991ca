package bridge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// Fingerprint returns the hash of an item's relevant fields and the decoded
// value it was computed from.
//
// The item is decoded (numbers kept as their JSON text), the fields named by
// ignore are removed, and the rest is encoded canonically: object keys
// sorted, no insignificant white space. So key order never matters; array
// order does (a reordered array is a change), and numbers are compared by
// their text (1 and 1.0 differ). An ignore path is a dot path relative to the
// item ("updated_at", "meta.etag"); "*" or "#" as a segment matches every
// field of an object or every element of an array, and "\." escapes a dot.
func Fingerprint(data []byte, ignore []string) (string, any, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return "", nil, err
	}
	for _, p := range ignore {
		v = removePath(v, splitPath(p))
	}
	canon, err := canonicalJSON(v)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:16]), v, nil
}

// decodeJSON decodes one JSON value, keeping numbers as json.Number.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode item: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode item: trailing data after the JSON value")
	}
	return v, nil
}

// canonicalJSON encodes v with sorted object keys and no HTML escaping.
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode item: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// splitPath splits a dot path into segments; "\." is a literal dot.
func splitPath(p string) []string {
	var segs []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			cur.WriteByte(p[i])
		case p[i] == '.':
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(segs, cur.String())
}

// removePath deletes the field at segs from v (in place for objects and
// arrays) and returns v.
func removePath(v any, segs []string) any {
	if len(segs) == 0 {
		return v
	}
	seg, rest := segs[0], segs[1:]
	wild := seg == "*" || seg == "#"
	switch t := v.(type) {
	case map[string]any:
		if wild {
			for k, child := range t {
				if len(rest) == 0 {
					delete(t, k)
				} else {
					t[k] = removePath(child, rest)
				}
			}
			return t
		}
		child, ok := t[seg]
		if !ok {
			return t
		}
		if len(rest) == 0 {
			delete(t, seg)
		} else {
			t[seg] = removePath(child, rest)
		}
	case []any:
		if wild {
			if len(rest) == 0 {
				return []any{}
			}
			for i := range t {
				t[i] = removePath(t[i], rest)
			}
		}
	}
	return v
}
