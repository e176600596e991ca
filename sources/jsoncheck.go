package sources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// MaxDepth bounds how deeply arrays and objects may nest in a response
// body. Real APIs stay far below it; a deeper body is an attack or a bug,
// and an error.
const MaxDepth = 1000

// maxLinearKeys is the object size up to which duplicate keys are found by
// comparing with every earlier key; larger objects use a map.
const maxLinearKeys = 16

// checkJSON reports why body is not JSON that pollbridge accepts: invalid
// UTF-8, nesting deeper than MaxDepth, an object with the same key twice
// (parsers disagree on which one wins, so the item would be ambiguous), or
// invalid JSON. The grammar is checked by gjson.ValidBytes, which accepts
// exactly what encoding/json's Valid does (FuzzCheckJSON compares them) at
// about twice the speed. It allocates only for objects with many keys.
func checkJSON(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("body is not valid UTF-8 (first bad byte at offset %d)", firstInvalidUTF8(body))
	}
	if err := checkStructure(body); err != nil {
		return err
	}
	if !gjson.ValidBytes(body) {
		return errors.New("body is not valid JSON")
	}
	return nil
}

// firstInvalidUTF8 returns the offset of the first byte of b that does not
// start a valid UTF-8 sequence, or len(b).
func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// frame is one open array or object during checkStructure.
type frame struct {
	object    bool
	expectKey bool
	keys      [][]byte            // raw keys, while few
	set       map[string]struct{} // decoded keys, once many
}

// checkStructure finds nesting deeper than MaxDepth and duplicate object
// keys. It does not check the grammar (gjson.ValidBytes does): on input that is
// not JSON it stops quietly.
func checkStructure(b []byte) error {
	var stack []frame // reused across objects of the same depth
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			start := i + 1
			escaped := false
			j := start
			for ; j < len(b); j++ {
				if b[j] == '\\' {
					escaped = true
					j++
					continue
				}
				if b[j] == '"' {
					break
				}
			}
			if j >= len(b) {
				return nil // unterminated string: the grammar check reports it
			}
			if depth > 0 {
				f := &stack[depth-1]
				if f.object && f.expectKey {
					f.expectKey = false
					if err := f.addKey(b[start:j], escaped); err != nil {
						return fmt.Errorf("body has %v at offset %d", err, start-1)
					}
				}
			}
			i = j
		case '{', '[':
			depth++
			if depth > MaxDepth {
				return fmt.Errorf("body nests arrays and objects deeper than %d levels (at offset %d)", MaxDepth, i)
			}
			if len(stack) < depth {
				stack = append(stack, frame{})
			}
			f := &stack[depth-1]
			f.object, f.expectKey, f.keys, f.set = b[i] == '{', b[i] == '{', f.keys[:0], nil
		case '}', ']':
			if depth == 0 {
				return nil
			}
			depth--
		case ',':
			if depth > 0 && stack[depth-1].object {
				stack[depth-1].expectKey = true
			}
		}
	}
	return nil
}

// addKey records the raw (still escaped) key of an object and reports a
// duplicate.
func (f *frame) addKey(raw []byte, escaped bool) error {
	key := raw
	if escaped {
		var s string
		if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s); err != nil {
			return nil // bad escape: the grammar check reports it
		}
		key = []byte(s)
	}
	dup := func() error {
		k := string(key)
		if len(k) > 64 {
			k = k[:64] + "…"
		}
		return fmt.Errorf("duplicate key %q", k)
	}
	if f.set != nil {
		if _, ok := f.set[string(key)]; ok {
			return dup()
		}
		f.set[string(key)] = struct{}{}
		return nil
	}
	for _, k := range f.keys {
		if bytes.Equal(k, key) {
			return dup()
		}
	}
	if len(f.keys) < maxLinearKeys {
		f.keys = append(f.keys, key)
		return nil
	}
	f.set = make(map[string]struct{}, 2*maxLinearKeys)
	for _, k := range f.keys {
		f.set[string(k)] = struct{}{}
	}
	f.set[string(key)] = struct{}{}
	return nil
}
