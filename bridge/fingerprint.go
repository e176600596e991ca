package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Fields says which fields of an item count for change detection.
type Fields struct {
	// Watch, when not empty, lists the only fields that count.
	Watch []string
	// Ignore lists fields that never count, inside watched ones too.
	Ignore []string
}

// Fingerprint is FingerprintFields with an ignore list and no watch list.
func Fingerprint(data []byte, ignore []string) (string, any, error) {
	return FingerprintFields(data, Fields{Ignore: ignore})
}

// FingerprintFields returns the hash of an item's relevant fields and the
// decoded value it was computed from (the relevant fields only).
//
// The item is decoded (numbers kept as their JSON text), reduced to the
// fields named by f.Watch when there are any, stripped of the fields named
// by f.Ignore, and encoded canonically: object keys sorted, no insignificant
// white space. So key order never matters; array order does (a reordered
// array is a change), and numbers are compared by their text (1 and 1.0
// differ).
//
// A path is a dot path relative to the item ("updated_at", "meta.etag");
// "*" or "#" as a segment matches every field of an object or every element
// of an array, and "\." escapes a dot. A watched path keeps the objects and
// arrays on its way: watching "lines.#.qty" keeps every element of lines,
// reduced to its qty ({} for an object without one, null for an element
// that is not an object), so array positions stay those of the item.
//
// Diff computes the same fingerprints without decoding (see
// Fingerprinter); this is the definition it is tested against.
func FingerprintFields(data []byte, f Fields) (string, any, error) {
	v, err := relevantValue(data, f)
	if err != nil {
		return "", nil, err
	}
	canon, err := canonicalJSON(v)
	if err != nil {
		return "", nil, err
	}
	return hashCanonical(canon), v, nil
}

// relevantValue decodes an item and reduces it to the fields f selects.
func relevantValue(data []byte, f Fields) (any, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	return relevant(v, f), nil
}

// relevant reduces a decoded item to the fields f selects. It may reuse
// and modify parts of v.
func relevant(v any, f Fields) any {
	if len(f.Watch) > 0 {
		var out any
		matched := false
		for _, p := range f.Watch {
			if pv, ok := project(v, splitPath(p)); ok {
				out, matched = union(out, pv), true
			}
		}
		if !matched {
			out = emptyLike(v)
		}
		v = out
	}
	for _, p := range f.Ignore {
		v = removePath(v, splitPath(p))
	}
	return v
}

// project returns the part of v at segs, with the objects and arrays on
// the way, and whether anything matched. Objects keep only the fields that
// matched; arrays (under a wildcard) keep every element, an element that
// matched nothing becoming emptyLike(element).
func project(v any, segs []string) (any, bool) {
	if len(segs) == 0 {
		return v, true
	}
	seg, rest := segs[0], segs[1:]
	wild := seg == "*" || seg == "#"
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, child := range t {
			if !wild && k != seg {
				continue
			}
			if pv, ok := project(child, rest); ok {
				out[k] = pv
			}
		}
		return out, len(out) > 0
	case []any:
		if !wild {
			return nil, false
		}
		out := make([]any, len(t))
		matched := false
		for i, child := range t {
			if pv, ok := project(child, rest); ok {
				out[i], matched = pv, true
			} else {
				out[i] = emptyLike(child)
			}
		}
		return out, matched
	}
	return nil, false
}

// emptyLike is what an unmatched value projects to: {} for an object, null
// for anything else.
func emptyLike(v any) any {
	if _, ok := v.(map[string]any); ok {
		return map[string]any{}
	}
	return nil
}

// union merges two projections of the same value: objects field by field,
// arrays (of equal length, as projections of one array are) element by
// element; otherwise the non-null one wins. It may modify a.
func union(a, b any) any {
	switch at := a.(type) {
	case map[string]any:
		if bt, ok := b.(map[string]any); ok {
			for k, bv := range bt {
				if av, ok := at[k]; ok {
					at[k] = union(av, bv)
				} else {
					at[k] = bv
				}
			}
			return at
		}
	case []any:
		if bt, ok := b.([]any); ok && len(at) == len(bt) {
			for i := range at {
				at[i] = union(at[i], bt[i])
			}
			return at
		}
	}
	if a == nil {
		return b
	}
	return a
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
