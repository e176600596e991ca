package sources

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestExtract(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		itemsPath string
		keyPath   string
		want      []string // "key=data"
		wantErr   string
	}{
		{name: "top-level array", body: `[{"id":1,"n":"a"},{"id":2,"n":"b"}]`, keyPath: "id",
			want: []string{`1={"id":1,"n":"a"}`, `2={"id":2,"n":"b"}`}},
		{name: "items path", body: `{"data":{"items":[{"id":"x"},{"id":"y"}]},"next":null}`, itemsPath: "data.items", keyPath: "id",
			want: []string{`x={"id":"x"}`, `y={"id":"y"}`}},
		{name: "single object without key", body: `{"status":"ok"}`,
			want: []string{`={"status":"ok"}`}},
		{name: "single object with key", body: `{"id":"me","v":1}`, keyPath: "id",
			want: []string{`me={"id":"me","v":1}`}},
		{name: "single object missing key", body: `{"v":1}`, keyPath: "id",
			wantErr: `decode top-level object: has no key at "id"`},
		{name: "empty array", body: `{"data":[]}`, itemsPath: "data", keyPath: "id", want: []string{}},
		{name: "empty top-level array", body: `[]`, keyPath: "id", want: []string{}},
		{name: "numeric keys keep their JSON text", body: `[{"id":42},{"id":-1.5e3},{"id":42.0}]`, keyPath: "id",
			want: []string{`42={"id":42}`, `-1.5e3={"id":-1.5e3}`, `42.0={"id":42.0}`}},
		{name: "string keys unescaped", body: `[{"id":"a\"b"},{"id":"caf\u00e9"},{"id":""}]`, keyPath: "id",
			want: []string{`a"b={"id":"a\"b"}`, `café={"id":"caf\u00e9"}`, `={"id":""}`}},
		{name: "bool keys", body: `[{"ok":true},{"ok":false}]`, keyPath: "ok",
			want: []string{`true={"ok":true}`, `false={"ok":false}`}},
		{name: "nested key path", body: `[{"meta":{"id":"n1"}}]`, keyPath: "meta.id",
			want: []string{`n1={"meta":{"id":"n1"}}`}},
		{name: "scalar items keyed by themselves", body: `["a","b",3]`, keyPath: "@this",
			want: []string{`a="a"`, `b="b"`, `3=3`}},
		{name: "duplicate key keeps last at first position", body: `[{"id":1,"v":"old"},{"id":2},{"id":1,"v":"new"}]`, keyPath: "id",
			want: []string{`1={"id":1,"v":"new"}`, `2={"id":2}`}},
		{name: "raw data kept as is", body: "[ {\"id\": 1,\n \"x\" : [1, 2]} ]", keyPath: "id",
			want: []string{"1={\"id\": 1,\n \"x\" : [1, 2]}"}},
		{name: "missing key", body: `[{"id":1},{"id":2},{"id":3},{"name":"x"}]`, keyPath: "id",
			wantErr: `decode top-level items: item 3 has no key at "id"`},
		{name: "null key", body: `{"data":[{"id":null}]}`, itemsPath: "data", keyPath: "id",
			wantErr: `decode items at "data": item 0 has no key at "id" (null)`},
		{name: "object key", body: `[{"id":{"a":1}}]`, keyPath: "id",
			wantErr: `item 0 has an object as key at "id", want a string, number or bool`},
		{name: "array key", body: `[{"id":[1]}]`, keyPath: "id",
			wantErr: `item 0 has an array as key at "id"`},
		{name: "missing items path", body: `{"items":[]}`, itemsPath: "data", keyPath: "id",
			wantErr: `decode items at "data": path not found`},
		{name: "null items", body: `{"data":null}`, itemsPath: "data", keyPath: "id",
			wantErr: `decode items at "data": got null, want an array`},
		{name: "object items", body: `{"data":{"id":1}}`, itemsPath: "data", keyPath: "id",
			wantErr: `decode items at "data": got an object, want an array`},
		{name: "array without key path", body: `[{"id":1}]`,
			wantErr: `a key path is required for an array of items`},
		{name: "items path without key path", body: `{"data":[]}`, itemsPath: "data",
			wantErr: `decode items at "data": a key path is required`},
		{name: "top-level scalar", body: `"hello"`, keyPath: "id",
			wantErr: `got a string, want an array or an object`},
		{name: "invalid JSON", body: `[{"id":1},`, keyPath: "id", wantErr: "not valid JSON"},
		{name: "empty body", body: ``, keyPath: "id", wantErr: "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := Extract([]byte(tt.body), tt.itemsPath, tt.keyPath)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if items != nil {
					t.Errorf("items = %v on error, want nil", items)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			got := make([]string, 0, len(items))
			for _, it := range items {
				got = append(got, it.Key+"="+string(it.Data))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("items:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestExtractCopiesData(t *testing.T) {
	body := []byte(`[{"id":1,"v":"aaaa"}]`)
	items, err := Extract(body, "", "id")
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = ' '
	}
	if got := string(items[0].Data); got != `{"id":1,"v":"aaaa"}` {
		t.Errorf("Data changed with the body buffer: %q", got)
	}
}

// TestExtractSharesPage checks the items against gjson's own reading of
// the body, for paths where gjson knows each element's position (the items
// are slices of one copy of the page) and for modifiers and queries, where
// it may not (they are copies), and that an item's Data cannot grow into
// the next one.
func TestExtractSharesPage(t *testing.T) {
	body := []byte(` {"data":{"list":[{"id":1,"v":2}, {"id":2,"v":5},` + "\n" + `{"id":3,"v":9}]},"top":[{"id":"x"}]}`)
	for _, path := range []string{"data.list", "data.list|@reverse", "data.list.#(v>3)#", "@this.data.list", "top"} {
		t.Run(path, func(t *testing.T) {
			items, err := Extract(body, path, "id")
			if err != nil {
				t.Fatal(err)
			}
			want := gjson.Get(string(body), path).Array()
			if len(items) != len(want) || len(items) == 0 {
				t.Fatalf("%d items, gjson reads %d", len(items), len(want))
			}
			for i, it := range items {
				if string(it.Data) != want[i].Raw || it.Key != want[i].Get("id").String() {
					t.Fatalf("item %d: %q %s, gjson reads %s", i, it.Key, it.Data, want[i].Raw)
				}
			}
			for i := 0; i+1 < len(items); i++ {
				next := string(items[i+1].Data)
				_ = append(items[i].Data, "XXXXXXXX"...)
				if string(items[i+1].Data) != next {
					t.Fatalf("appending to item %d changed item %d: %s", i, i+1, items[i+1].Data)
				}
			}
		})
	}
}

func FuzzExtract(f *testing.F) {
	seeds := []struct{ body, items, key string }{
		{`[{"id":1},{"id":2}]`, "", "id"},
		{`{"data":[{"id":"a","x":[1,{"y":null}]}]}`, "data", "id"},
		{`{"id":"solo"}`, "", ""},
		{`{"data":{"list":[{"k":{"id":true}}]}}`, "data.list", "k.id"},
		{`[{"id":1},{"id":1}]`, "", "id"},
		{`{"data":null}`, "data", "id"},
		{`["a","b"]`, "", "@this"},
		{`[{"id":"\u00e9\ud83d\ude00"}]`, "", "id"},
		{`{"a":[{"b":[{"id":1}]}]}`, "a.#.b", "id"},
		{`[1, 2.5e10, -0]`, "", "@this"},
		{`[{"id":1},`, "", "id"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.items, s.key)
	}
	f.Fuzz(func(t *testing.T, body []byte, itemsPath, keyPath string) {
		items, err := Extract(body, itemsPath, keyPath)
		if err != nil {
			if items != nil {
				t.Fatalf("items %v returned with error %v", items, err)
			}
			return
		}
		seen := make(map[string]bool, len(items))
		for i, it := range items {
			if !json.Valid(it.Data) {
				t.Fatalf("item %d (key %q) has invalid JSON data %q", i, it.Key, it.Data)
			}
			if seen[it.Key] {
				t.Fatalf("key %q returned twice", it.Key)
			}
			seen[it.Key] = true
		}
	})
}
