package bridge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Fingerprinter computes the fingerprints of many items (a diff's), the
// same as FingerprintFields, reusing its buffers from item to item. Without
// a watch list it writes an item's canonical form straight from its bytes
// (canonicalizer), about eight times faster; with one, or for input the
// canonicalizer does not vouch for, it takes FingerprintFields' way. Both
// give the same fingerprint, so stored fingerprints stay valid. A
// Fingerprinter is not safe for concurrent use.
type Fingerprinter struct {
	fields Fields
	canon  *canonicalizer // nil: every item takes FingerprintFields' way
}

// NewFingerprinter returns a Fingerprinter for the fields f selects.
func NewFingerprinter(f Fields) *Fingerprinter {
	fp := &Fingerprinter{fields: f}
	if len(f.Watch) == 0 {
		fp.canon = &canonicalizer{}
		for _, p := range f.Ignore {
			fp.canon.ignore = append(fp.canon.ignore, splitPath(p))
		}
	}
	return fp
}

// Fingerprint is FingerprintFields(data, fields)'s fingerprint.
func (fp *Fingerprinter) Fingerprint(data []byte) (string, error) {
	if fp.canon != nil {
		if canon, ok := fp.canon.canonical(data); ok {
			return hashCanonical(canon), nil
		}
	}
	s, _, err := FingerprintFields(data, fp.fields)
	return s, err
}

// hashCanonical is the fingerprint of an item's canonical JSON.
func hashCanonical(canon []byte) string {
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:16])
}

// canonicalizer writes the canonical JSON of an item (see FingerprintFields)
// straight from its bytes, without decoding it into Go values: byte for
// byte what canonicalJSON writes for the item decoded by decodeJSON and
// stripped of the ignore paths by relevant. That is the Go encoder's form:
// object keys sorted by their decoded bytes (of a key given twice, the last
// one counts), no white space, numbers as written, strings re-escaped the
// encoder's way. About eight times cheaper than the decode and encode it
// replaces, it is what makes a baseline, a changed item and a poll that
// keeps no bodies cheap. Input it does not vouch for (invalid JSON, deeper than
// maxCanonDepth, data after the value) it leaves to the decoder, which
// gives the error.
type canonicalizer struct {
	ignore  [][]string // the ignore paths, split (see removePath)
	out     []byte
	tmp     []byte        // an object's members in key order
	members []canonMember // the members of the objects being written, innermost last
	str     []byte        // a string being decoded
}

// canonMember is one member of an object being written.
type canonMember struct {
	key        []byte // decoded
	start, end int    // its `"key":value` in out
}

// maxCanonDepth bounds the nesting the canonicalizer follows; deeper items
// take the decoder's way.
const maxCanonDepth = 200

// canonical returns the canonical JSON of data, valid until the next call,
// and false when data is not one JSON value it vouches for.
func (c *canonicalizer) canonical(data []byte) ([]byte, bool) {
	c.out, c.members = c.out[:0], c.members[:0]
	i, ok := c.value(data, skipSpace(data, 0), c.ignore, 0)
	if !ok || skipSpace(data, i) != len(data) {
		return nil, false
	}
	return c.out, true
}

// value writes the value at data[i:], minus what paths remove, and returns
// the index after it.
func (c *canonicalizer) value(data []byte, i int, paths [][]string, depth int) (int, bool) {
	if i >= len(data) || depth > maxCanonDepth {
		return 0, false
	}
	switch b := data[i]; {
	case b == '{':
		return c.object(data, i, paths, depth)
	case b == '[':
		return c.array(data, i, paths, depth)
	case b == '"':
		end, simple, ok := scanString(data, i)
		if !ok {
			return 0, false
		}
		if simple {
			c.out = append(c.out, data[i:end]...)
			return end, true
		}
		c.str = unquoteJSON(c.str[:0], data[i+1:end-1])
		c.out = appendJSONString(c.out, c.str)
		return end, true
	case b == '-' || '0' <= b && b <= '9':
		end, ok := scanNumber(data, i)
		if !ok {
			return 0, false
		}
		c.out = append(c.out, data[i:end]...)
		return end, true
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if string(data[i:min(i+len(lit), len(data))]) == lit {
			c.out = append(c.out, lit...)
			return i + len(lit), true
		}
	}
	return 0, false
}

// object writes the object at data[i:] with its members sorted by key.
func (c *canonicalizer) object(data []byte, i int, paths [][]string, depth int) (int, bool) {
	c.out = append(c.out, '{')
	start, base := len(c.out), len(c.members)
	defer func() { c.members = c.members[:base] }()
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		c.out = append(c.out, '}')
		return i + 1, true
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, false
		}
		end, simple, ok := scanString(data, i)
		if !ok {
			return 0, false
		}
		raw := data[i:end]
		key := raw[1 : len(raw)-1]
		if !simple {
			key = unquoteJSON(nil, key) // kept until the object is written
		}
		if i = skipSpace(data, end); i >= len(data) || data[i] != ':' {
			return 0, false
		}
		drop, child := memberPaths(paths, key)
		before := len(c.out)
		if len(c.members) > base {
			c.out = append(c.out, ',')
		}
		at := len(c.out)
		if simple {
			c.out = append(c.out, raw...)
		} else {
			c.out = appendJSONString(c.out, key)
		}
		c.out = append(c.out, ':')
		if i, ok = c.value(data, skipSpace(data, i+1), child, depth+1); !ok {
			return 0, false
		}
		if drop {
			c.out = c.out[:before]
		} else {
			c.members = append(c.members, canonMember{key: key, start: at, end: len(c.out)})
		}
		var more bool
		if i, more, ok = afterElement(data, i, '}'); !ok {
			return 0, false
		}
		if !more {
			break
		}
	}
	ms := c.members[base:]
	sorted := true
	for k := 1; k < len(ms) && sorted; k++ {
		sorted = bytes.Compare(ms[k-1].key, ms[k].key) < 0
	}
	if !sorted {
		// Stable, so that of equal keys the last one given stays last.
		slices.SortStableFunc(ms, func(a, b canonMember) int { return bytes.Compare(a.key, b.key) })
		c.tmp = c.tmp[:0]
		for k, m := range ms {
			if k+1 < len(ms) && bytes.Equal(m.key, ms[k+1].key) {
				continue // given again later: the decoder keeps the last
			}
			if len(c.tmp) > 0 {
				c.tmp = append(c.tmp, ',')
			}
			c.tmp = append(c.tmp, c.out[m.start:m.end]...)
		}
		c.out = append(c.out[:start], c.tmp...)
	}
	c.out = append(c.out, '}')
	return i, true
}

// array writes the array at data[i:].
func (c *canonicalizer) array(data []byte, i int, paths [][]string, depth int) (int, bool) {
	c.out = append(c.out, '[')
	start := len(c.out)
	empty, child := elementPaths(paths)
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		c.out = append(c.out, ']')
		return i + 1, true
	}
	for n := 0; ; n++ {
		if n > 0 {
			c.out = append(c.out, ',')
		}
		var ok, more bool
		if i, ok = c.value(data, i, child, depth+1); !ok {
			return 0, false
		}
		if i, more, ok = afterElement(data, i, ']'); !ok {
			return 0, false
		}
		if !more {
			break
		}
	}
	if empty {
		c.out = c.out[:start] // removePath: a wildcard's last segment empties an array
	}
	c.out = append(c.out, ']')
	return i, true
}

// afterElement reads what follows a member or element that ends at
// data[i]: a comma (more: it returns the index of the next one) or close,
// the container's end (it returns the index after it).
func afterElement(data []byte, i int, close byte) (next int, more, ok bool) {
	switch i = skipSpace(data, i); {
	case i < len(data) && data[i] == ',':
		return skipSpace(data, i+1), true, true
	case i < len(data) && data[i] == close:
		return i + 1, false, true
	}
	return 0, false, false
}

// memberPaths applies ignore paths to an object member (as removePath
// does): drop when one of them ends at it, and the rest of those that go
// on inside it.
func memberPaths(paths [][]string, key []byte) (drop bool, child [][]string) {
	return pathsAt(paths, func(seg string) bool { return seg == string(key) })
}

// elementPaths applies ignore paths to an array's elements: only wildcards
// reach them; one that ends there empties the array.
func elementPaths(paths [][]string) (empty bool, child [][]string) {
	return pathsAt(paths, func(string) bool { return false })
}

// pathsAt splits the paths that reach a member or element (a wildcard, or
// a first segment named matches) into whether one ends there and the rest
// of those that go on inside it.
func pathsAt(paths [][]string, named func(seg string) bool) (ends bool, child [][]string) {
	for _, p := range paths {
		if p[0] != "*" && p[0] != "#" && !named(p[0]) {
			continue
		}
		if len(p) == 1 {
			ends = true
		} else {
			child = append(child, p[1:])
		}
	}
	return ends, child
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString checks the JSON string that starts at data[i] (a quote) and
// returns the index after its closing quote, and whether the Go encoder
// writes its decoded value back as the same bytes (simple: no escapes, no
// invalid UTF-8, no U+2028 or U+2029).
func scanString(data []byte, i int) (end int, simple, ok bool) {
	simple = true
	for j := i + 1; j < len(data); {
		switch b := data[j]; {
		case b == '"':
			return j + 1, simple, true
		case b == '\\':
			simple = false
			if j+1 >= len(data) {
				return 0, false, false
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(data) {
					return 0, false, false
				}
				for _, h := range data[j+2 : j+6] {
					if hexValue(h) < 0 {
						return 0, false, false
					}
				}
				j += 6
			default:
				return 0, false, false
			}
		case b < ' ':
			return 0, false, false
		case b < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(data[j:])
			if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
				simple = false
			}
			j += size
		}
	}
	return 0, false, false
}

// scanNumber checks the JSON number at data[i:] and returns the index after
// it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(data []byte, i int) (int, bool) {
	digits := func(i int) int {
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = digits(i)
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

// hexValue is the value of a hex digit, or -1.
func hexValue(b byte) rune {
	switch {
	case '0' <= b && b <= '9':
		return rune(b - '0')
	case 'a' <= b && b <= 'f':
		return rune(b - 'a' + 10)
	case 'A' <= b && b <= 'F':
		return rune(b - 'A' + 10)
	}
	return -1
}

// unquoteJSON appends the decoded bytes of a string's contents (between
// its quotes, checked by scanString) to dst, as encoding/json decodes them:
// invalid UTF-8 and unpaired surrogates become U+FFFD.
func unquoteJSON(dst, s []byte) []byte {
	u4 := func(s []byte) rune { // the rune of a \uXXXX at s, or -1
		if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
			return -1
		}
		var r rune
		for _, h := range s[2:6] {
			v := hexValue(h)
			if v < 0 {
				return -1
			}
			r = r*16 + v
		}
		return r
	}
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\' && s[r+1] == 'u':
			rr := u4(s[r:])
			r += 6
			if utf16.IsSurrogate(rr) {
				if dec := utf16.DecodeRune(rr, u4(s[r:])); dec != unicode.ReplacementChar {
					dst = utf8.AppendRune(dst, dec)
					r += 6
					break
				}
				rr = unicode.ReplacementChar
			}
			dst = utf8.AppendRune(dst, rr)
		case c == '\\':
			e := s[r+1]
			switch e {
			case 'b':
				e = '\b'
			case 'f':
				e = '\f'
			case 'n':
				e = '\n'
			case 'r':
				e = '\r'
			case 't':
				e = '\t'
			}
			dst = append(dst, e)
			r += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			dst = utf8.AppendRune(dst, rr)
			r += size
		}
	}
	return dst
}

// appendJSONString appends s as a JSON string the way encoding/json writes
// it without HTML escaping: \" \\ \b \f \n \r \t, \u00XX for the other
// control characters, \ufffd for invalid UTF-8, \u2028 and \u2029.
func appendJSONString(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
