package sources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/pollbridge/pollbridge/bridge"
)

// Extract finds the items of a JSON document and their keys.
//
// itemsPath is a gjson path to the array of items. When it is empty, the
// elements of a top-level array are the items, and a top-level object is a
// single item. When it is set it must resolve to an array: a missing path,
// null or any other value is an error, an empty array is zero items.
//
// keyPath is a gjson path, relative to an item, to the item's key: a string
// is used as is, a number as its JSON text (so 42 and 42.0 are different
// keys), a bool as "true" or "false". An item without a key (the path is
// missing or null) is an error, and so is an object or array key: either
// would otherwise turn into false deletions or collisions. keyPath may only
// be empty for a single top-level object, whose key is then "". ExtractKeys
// takes several key paths (a composite key).
//
// The body must be acceptable JSON (see MaxDepth): valid UTF-8, nested at
// most MaxDepth deep, and without duplicate keys in any object.
//
// When several items share a key the last one wins, at the position of the
// first (paginating by offset can show an item twice). Item indexes in errors
// count from 0, as gjson paths do. The items share one copy of body, so
// body may be reused after Extract returns. Extract is a pure function and
// safe for concurrent use.
func Extract(body []byte, itemsPath, keyPath string) ([]bridge.Item, error) {
	var keys []string
	if keyPath != "" {
		keys = []string{keyPath}
	}
	return ExtractKeys(body, itemsPath, keys)
}

// ExtractKeys is Extract with a key made of the values at several paths
// (config.KeyPaths): with one path the key is that value as Extract says;
// with more it is the compact JSON array of the values in path order, such
// as ["acme",42], where a string keeps its JSON quoting, so no two
// different value lists give one key. Every path must find a string, number
// or bool.
func ExtractKeys(body []byte, itemsPath string, keyPaths []string) ([]bridge.Item, error) {
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	var set itemSet
	if _, err := extract(newPage(body), itemsPath, keyPaths, &set); err != nil {
		return nil, err
	}
	return set.items, nil
}

// page is one answer's body, read only: the items extracted from it, their
// keys and the string gjson reads it as all share its memory, instead of
// a copy of the body as a string and another of each item (those item
// copies were a quarter of the bytes the fleet allocated).
type page struct {
	data []byte
	doc  string // data, without a copy
}

// newPage copies body into a page.
func newPage(body []byte) page {
	data := bytes.Clone(body)
	return page{data: data, doc: unsafe.String(unsafe.SliceData(data), len(data))}
}

// bytesOf returns raw, the text of a value of the page, as a slice of the
// page (capped, so that appending to it copies) when gjson says where it
// is and the bytes there are raw's, else as a copy.
func (p page) bytesOf(raw string, index int) json.RawMessage {
	if end := index + len(raw); index >= 0 && end <= len(p.data) && p.doc[index:end] == raw {
		return p.data[index:end:end]
	}
	return json.RawMessage(raw)
}

// extract adds the items of pg, which must be valid JSON, to set and
// returns how many items it lists (a top-level object counts as one;
// items that share a key count each time, as pageItems counts them).
func extract(pg page, itemsPath string, keyPath []string, set *itemSet) (int, error) {
	doc := pg.doc
	if itemsPath == "" {
		root := gjson.Parse(doc)
		switch {
		case root.IsArray():
			if len(keyPath) == 0 {
				return 0, errors.New("decode top-level items: a key path is required for an array of items")
			}
			n, err := addElements(pg, root, keyPath, set)
			if err != nil {
				return 0, fmt.Errorf("decode top-level items: %w", err)
			}
			return n, nil
		case root.IsObject():
			key := ""
			if len(keyPath) > 0 {
				k, err := itemKey(root, keyPath)
				if err != nil {
					return 0, fmt.Errorf("decode top-level object: %w", err)
				}
				key = k
			}
			set.add(key, pg.bytesOf(root.Raw, root.Index))
			return 1, nil
		default:
			return 0, fmt.Errorf("decode top-level items: got %s, want an array or an object", kind(root))
		}
	}

	arr := gjson.Get(doc, itemsPath)
	switch {
	case !arr.Exists():
		return 0, fmt.Errorf("decode items at %q: path not found", itemsPath)
	case !arr.IsArray():
		return 0, fmt.Errorf("decode items at %q: got %s, want an array", itemsPath, kind(arr))
	case len(keyPath) == 0:
		return 0, fmt.Errorf("decode items at %q: a key path is required for an array of items", itemsPath)
	}
	n, err := addElements(pg, arr, keyPath, set)
	if err != nil {
		return 0, fmt.Errorf("decode items at %q: %w", itemsPath, err)
	}
	return n, nil
}

// addElements adds every element of the array arr, read from pg, to set
// and returns how many there were.
func addElements(pg page, arr gjson.Result, keyPath []string, set *itemSet) (int, error) {
	var err error
	i := 0
	arr.ForEach(func(_, v gjson.Result) bool {
		var key string
		key, err = itemKey(v, keyPath)
		if err != nil {
			err = fmt.Errorf("item %d %w", i, err)
			return false
		}
		set.add(key, pg.bytesOf(v.Raw, v.Index))
		i++
		return true
	})
	return i, err
}

// itemKey returns the key of item at keyPath (one or more paths, see
// ExtractKeys). Its errors read well after "item N ".
func itemKey(item gjson.Result, keyPath []string) (string, error) {
	if len(keyPath) == 1 {
		return keyPart(item, keyPath[0])
	}
	b := []byte{'['}
	for i, p := range keyPath {
		part, err := keyPart(item, p)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b = append(b, ',')
		}
		if item.Get(p).Type == gjson.String {
			b = appendJSONString(b, part)
		} else {
			b = append(b, part...)
		}
	}
	return string(append(b, ']')), nil
}

// appendJSONString appends s as a JSON string, escaping only what JSON
// requires (no HTML escapes), so keys stay readable.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// keyPart returns the key value of item at one path.
func keyPart(item gjson.Result, keyPath string) (string, error) {
	k := item.Get(keyPath)
	switch k.Type {
	case gjson.String:
		return k.Str, nil
	case gjson.Number:
		return k.Raw, nil
	case gjson.True:
		return "true", nil
	case gjson.False:
		return "false", nil
	case gjson.Null:
		if !k.Exists() {
			return "", fmt.Errorf("has no key at %q", keyPath)
		}
		return "", fmt.Errorf("has no key at %q (null)", keyPath)
	default:
		return "", fmt.Errorf("has %s as key at %q, want a string, number or bool", kind(k), keyPath)
	}
}

// kind names the JSON type of r for error messages.
func kind(r gjson.Result) string {
	switch {
	case !r.Exists():
		return "nothing"
	case r.IsArray():
		return "an array"
	case r.IsObject():
		return "an object"
	}
	switch r.Type {
	case gjson.Null:
		return "null"
	case gjson.String:
		return "a string"
	case gjson.Number:
		return "a number"
	default:
		return "a bool"
	}
}

// itemSet collects items in order, keeping the last item of each key. It is
// shared by the pages of one fetch.
type itemSet struct {
	items []bridge.Item
	index map[string]int
}

// newItemSet returns a set with room for n items (0: none known).
func newItemSet(n int) itemSet {
	return itemSet{items: make([]bridge.Item, 0, n), index: make(map[string]int, n)}
}

// add records data as the item of key.
func (s *itemSet) add(key string, data json.RawMessage) {
	if i, ok := s.index[key]; ok {
		s.items[i].Data = data
		return
	}
	if s.index == nil {
		s.index = make(map[string]int)
	}
	s.index[key] = len(s.items)
	s.items = append(s.items, bridge.Item{Key: key, Data: data})
}

// pageItems returns how many items doc, valid JSON, lists at itemsPath (a
// top-level object counts as one) and the last of them, for pagination.
func pageItems(doc, itemsPath string) (int, gjson.Result, error) {
	arr := gjson.Parse(doc)
	if itemsPath != "" {
		arr = gjson.Get(doc, itemsPath)
		switch {
		case !arr.Exists():
			return 0, gjson.Result{}, fmt.Errorf("decode items at %q: path not found", itemsPath)
		case !arr.IsArray():
			return 0, gjson.Result{}, fmt.Errorf("decode items at %q: got %s, want an array", itemsPath, kind(arr))
		}
	} else if !arr.IsArray() {
		return 1, arr, nil
	}
	n := 0
	var last gjson.Result
	arr.ForEach(func(_, v gjson.Result) bool {
		n++
		last = v
		return true
	})
	return n, last, nil
}
