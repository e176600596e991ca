package bridge

import (
	"strings"
	"testing"
)

// canonicalIgnores are ignore lists the canonicalizer is checked with.
var canonicalIgnores = [][]string{
	nil,
	{"updated_at"},
	{"a", "a.b"},
	{"*"},
	{"#"},
	{"*.x", "b"},
	{"#.x"},
	{"lines.#.qty", "meta.etag", "missing.deep.path"},
	{""},
	{"a\\.b"},
	{"é", "\u2028"},
}

// decoderCanonical is the canonical form the slow way: decode, strip,
// encode. This is what every stored fingerprint was computed from.
func decoderCanonical(data []byte, ignore []string) ([]byte, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	return canonicalJSON(relevant(v, Fields{Ignore: ignore}))
}

// checkCanonical fails t when the canonicalizer vouches for data and writes
// anything but what the decoder and encoder write, or when it refuses data
// the decoder takes and mustVouch is set.
func checkCanonical(t *testing.T, data []byte, ignore []string, mustVouch bool) {
	t.Helper()
	fp := NewFingerprinter(Fields{Ignore: ignore})
	fast, ok := fp.canon.canonical(data)
	want, err := decoderCanonical(data, ignore)
	switch {
	case ok && err != nil:
		t.Fatalf("ignore %q: canonicalizer took %q, the decoder refuses it: %v", ignore, data, err)
	case ok && string(fast) != string(want):
		t.Fatalf("ignore %q: %q\ncanonicalizer %q\ndecoder       %q", ignore, data, fast, want)
	case !ok && err == nil && mustVouch:
		t.Fatalf("ignore %q: canonicalizer refused %q, which decodes", ignore, data)
	}
	// The fingerprint is FingerprintFields', whichever way it was made.
	got, gerr := fp.Fingerprint(data)
	wantFP, _, werr := FingerprintFields(data, Fields{Ignore: ignore})
	if got != wantFP || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
		t.Fatalf("ignore %q: %q: fingerprint %q, %v; FingerprintFields %q, %v", ignore, data, got, gerr, wantFP, werr)
	}
}

func TestCanonicalMatchesDecoder(t *testing.T) {
	valid := []string{
		`{"id":1,"name":"a"}`,
		`{"name":"a","id":1}`,
		` { "b" : [ 1 , 2 , { "z" : null , "a" : true } ] , "a" : false } `,
		`{"a":1,"a":2}`,
		`{"b":1,"a":2,"b":3,"a":4}`,
		`{"a":{"b":1,"c":2},"x":[{"x":1,"y":2},{"y":3}]}`,
		`{"updated_at":"2026","id":7}`,
		`[]`, `{}`, `[{}]`, `[[],[[]]]`, `null`, `true`, `false`, `0`, `-0`, `1.0`, `-12.50e+07`, `1E3`, `1e-3`,
		`"plain"`, `"tab\tnew\nline"`, `"quote\"back\\slash\/solidus"`, `"\b\f\r"`,
		`"\u0041\u00e9\u2028\u2029\u0001\u001f\u007f"`,
		`"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`,
		"\"raw \u2028 and \u2029\"", "\"raw é ü 日本 😀 \x7f\"",
		"\"invalid \xff\xfe utf8 \xc3\"", "{\"k\xff\":1,\"k\":2}",
		`{"é":1,"e":2,"\u00e9":3}`, `{"\"":1,"\\":2,"a":3,"":4}`,
		`{"a\\.b":1,"a":{"b":2}}`,
		`{"lines":[{"sku":"a","qty":1},{"sku":"b"},3],"meta":{"etag":"x","v":1}}`,
		`{"a":{"b":1,"c":2},"b":{"x":1,"y":2},"c":[{"x":1},{"x":2,"y":3}]}`,
		`[{"x":1,"y":2},{"y":3,"x":4},5]`,
		"{\"\u2028\":1,\"x\":2}",
		"\t\r\n{\"a\":1}\n",
	}
	invalid := []string{
		``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a" 1}`, `{a:1}`,
		`01`, `1.`, `.5`, `-`, `1e`, `1e+`, `+1`, `tru`, `nul`, `truex`, `"abc`, `"\x"`, `"\u12"`, `"\u12g4"`,
		"\"ctl \x01\"", `{"a":1}x`, `{"a":1} {"b":2}`, `[1]]`, `'a'`, `NaN`,
	}
	for _, ig := range canonicalIgnores {
		for _, s := range valid {
			checkCanonical(t, []byte(s), ig, true)
		}
		for _, s := range invalid {
			checkCanonical(t, []byte(s), ig, false)
			if _, ok := NewFingerprinter(Fields{Ignore: ig}).canon.canonical([]byte(s)); ok {
				t.Fatalf("canonicalizer took invalid %q", s)
			}
		}
	}
	// Deeper than it follows: the decoder's way, same fingerprint.
	deep := strings.Repeat("[", maxCanonDepth+5) + strings.Repeat("]", maxCanonDepth+5)
	if _, ok := NewFingerprinter(Fields{}).canon.canonical([]byte(deep)); ok {
		t.Fatal("canonicalizer followed nesting deeper than maxCanonDepth")
	}
	checkCanonical(t, []byte(deep), nil, false)
}

// TestFingerprinterReuse checks that one fingerprinter's reused buffers
// carry nothing from one item into the next.
func TestFingerprinterReuse(t *testing.T) {
	items := []string{
		`{"z":{"y":[1,{"b":2,"a":1}]},"a":"\u00e9"}`,
		`{"b":1}`,
		`[{"k":"v","a":{"c":1,"b":2}}]`,
		`{"a":`,
		`{"b":2,"a":1}`,
	}
	fp := NewFingerprinter(Fields{Ignore: []string{"a"}})
	for round := range 2 {
		for _, s := range items {
			got, err := fp.Fingerprint([]byte(s))
			want, _, werr := FingerprintFields([]byte(s), Fields{Ignore: []string{"a"}})
			if got != want || (err == nil) != (werr == nil) {
				t.Fatalf("round %d, %s: %q, %v; want %q, %v", round, s, got, err, want, werr)
			}
		}
	}
}

// TestFingerprinterWatch checks that a watch list takes FingerprintFields'
// way.
func TestFingerprinterWatch(t *testing.T) {
	f := Fields{Watch: []string{"status"}, Ignore: []string{"x"}}
	fp := NewFingerprinter(f)
	if fp.canon != nil {
		t.Fatal("a watch list must not use the canonicalizer")
	}
	got, err := fp.Fingerprint([]byte(`{"status":"paid","total":3}`))
	want, _, _ := FingerprintFields([]byte(`{"status":"paid","total":4}`), f)
	if err != nil || got != want {
		t.Fatalf("fingerprint %q, %v; want %q", got, err, want)
	}
}

// FuzzCanonical checks the canonicalizer against the decoder on any input:
// whatever it vouches for, it writes exactly as decode, strip and encode do.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"name":"a","tags":["x","y"],"n":{"b":1.50,"a":-2e3}}`,
		`{"a":1,"a":{"b":2}}`, `"\ud83d\ude00\u2028\u0000"`, "\"\xff\"", `[{"x":1,"y":2},[]]`,
		`{"updated_at":"t","lines":[{"qty":1}]}`, `{"é":1,"\u00e9":2}`,
	} {
		for ig := range canonicalIgnores {
			f.Add([]byte(s), uint8(ig))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, ig uint8) {
		checkCanonical(t, data, canonicalIgnores[int(ig)%len(canonicalIgnores)], false)
	})
}

// TestAppendJSONString checks the string encoder against encoding/json's
// (without HTML escaping) on its own, invalid UTF-8 included, which the
// canonicalizer never hands it (decoding replaces it first).
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "<&>", "quote\" back\\", "\b\f\n\r\t\x00\x1f\x7f", "é 日本 😀", "\u2028\u2029", "bad \xff\xfe end \xc3"} {
		want, err := canonicalJSON(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, []byte(s)); string(got) != string(want) {
			t.Errorf("%q: %s, encoding/json: %s", s, got, want)
		}
	}
}
