package boltstore

import (
	"maps"
	"testing"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// The items decoded into shared memory are the items encoded, each with its
// own key, fingerprint and body; appending to one body never changes the
// next; and a truncated record is an error, not an item.
func TestItemsDecoder(t *testing.T) {
	want := map[string]store.Item{
		"a":        {Fingerprint: "fp-a", Data: []byte(`{"id":"a"}`)},
		"b":        {Fingerprint: "fp-b"}, // no body kept
		"":         {Fingerprint: "", Data: []byte(`{}`)},
		"long key": {Fingerprint: "0123456789abcdef0123456789abcdef", Data: []byte{0, 1, 2, 0xff}},
	}
	order := []string{"", "a", "b", "long key"} // as a cursor would go
	var size itemsSize
	for _, k := range order {
		size.count([]byte(k), encodeItem(want[k]))
	}
	if size.n != 4 || size.keys != 10 || size.fps != 40 || size.data != 16 {
		t.Errorf("size = %+v, want 4 items, 10 key bytes, 40 fingerprint bytes, 16 body bytes", size)
	}
	dec := newItemsDecoder(size)
	for _, k := range order {
		if err := dec.add([]byte(k), encodeItem(want[k])); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]store.Item{}
	dec.fill(got)
	eq := func(a, b store.Item) bool { return a.Fingerprint == b.Fingerprint && string(a.Data) == string(b.Data) }
	if !maps.EqualFunc(got, want, eq) {
		t.Fatalf("decoded %q, want %q", got, want)
	}
	if got["b"].Data != nil {
		t.Errorf("an item without a body got %q, want nil", got["b"].Data)
	}
	_ = append(got["a"].Data, "xx"...) // capped: a copy, not the next body
	if !eq(got["long key"], want["long key"]) || !eq(got[""], want[""]) {
		t.Errorf("appending to one body changed another: %q", got)
	}
	bad := []byte{0x10, 'x'} // says 16 bytes of fingerprint, has 1
	before := size
	size.count([]byte("bad"), bad)
	if want := (itemsSize{n: before.n + 1, keys: before.keys + 3, fps: before.fps, data: before.data}); size != want {
		t.Errorf("size after a truncated record = %+v, want %+v (counted, no bytes sized: add reports it)", size, want)
	}
	if err := dec.add([]byte("bad"), bad); err == nil {
		t.Error("a truncated record decoded")
	}
}
