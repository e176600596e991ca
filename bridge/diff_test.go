package bridge

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

func items(kv ...string) []Item {
	var out []Item
	for i := 0; i < len(kv); i += 2 {
		out = append(out, Item{Key: kv[i], Data: json.RawMessage(kv[i+1])})
	}
	return out
}

// stateOf builds a stored state as a previous poll would have left it.
func stateOf(t *testing.T, gen uint64, ignore []string, kv ...string) store.State {
	t.Helper()
	st := store.State{Generation: gen, Items: map[string]store.Item{}, Meta: map[string]string{metaFingerprintConfig: fingerprintConfig(ignore)}}
	for _, it := range items(kv...) {
		fp, _, err := Fingerprint(it.Data, ignore)
		if err != nil {
			t.Fatal(err)
		}
		st.Items[it.Key] = store.Item{Fingerprint: fp, Data: it.Data}
	}
	return st
}

type evSummary struct{ Type, Key string }

func summarize(evs []Event) []evSummary {
	var out []evSummary
	for _, e := range evs {
		out = append(out, evSummary{e.Type, e.Key})
	}
	return out
}

func TestDiff(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		old         store.State
		snap        []Item
		opts        DiffOptions
		want        []evSummary
		wantHeld    int
		wantChanged bool
		wantDeleted []string
	}{
		{
			name:        "first poll records a baseline silently",
			old:         store.State{Items: map[string]store.Item{}},
			snap:        items("1", `{"id":1}`, "2", `{"id":2}`),
			wantChanged: true,
		},
		{
			name:        "first poll with emit_initial creates every item",
			old:         store.State{Items: map[string]store.Item{}},
			snap:        items("1", `{"id":1}`, "2", `{"id":2}`),
			opts:        DiffOptions{EmitInitial: true},
			want:        []evSummary{{ItemCreated, "1"}, {ItemCreated, "2"}},
			wantChanged: true,
		},
		{
			name: "unchanged items, other key order, emit nothing and commit nothing",
			old:  stateOf(t, 3, nil, "1", `{"id":1,"a":{"x":1,"y":2}}`),
			snap: items("1", `{"a":{"y":2,"x":1},"id":1}`),
		},
		{
			name: "a change in an ignored field only is no change",
			old:  stateOf(t, 3, []string{"updated_at"}, "1", `{"id":1,"updated_at":"a"}`),
			snap: items("1", `{"id":1,"updated_at":"b"}`),
			opts: DiffOptions{Ignore: []string{"updated_at"}},
		},
		{
			name: "nested ignore with a wildcard",
			old:  stateOf(t, 3, []string{"lines.#.seen"}, "1", `{"id":1,"lines":[{"n":1,"seen":1}]}`),
			snap: items("1", `{"id":1,"lines":[{"n":1,"seen":2}]}`),
			opts: DiffOptions{Ignore: []string{"lines.#.seen"}},
		},
		{
			name:        "create, update and delete together",
			old:         stateOf(t, 3, nil, "1", `{"id":1,"s":"new"}`, "2", `{"id":2}`, "3", `{"id":3}`),
			snap:        items("1", `{"id":1,"s":"paid"}`, "3", `{"id":3}`, "4", `{"id":4}`),
			want:        []evSummary{{ItemUpdated, "1"}, {ItemCreated, "4"}, {ItemDeleted, "2"}},
			wantChanged: true,
			wantDeleted: []string{"2"},
		},
		{
			name:        "a key seen twice counts once, last wins",
			old:         stateOf(t, 3, nil, "1", `{"id":1,"s":"a"}`),
			snap:        items("1", `{"id":1,"s":"b"}`, "1", `{"id":1,"s":"a"}`),
			wantChanged: false,
		},
		{
			name:        "an empty snapshot is a mass deletion and is held back",
			old:         stateOf(t, 3, nil, "1", `{}`, "2", `{}`, "3", `{}`),
			snap:        nil,
			opts:        DiffOptions{MaxDeleteRatio: 0.5},
			wantHeld:    3,
			wantChanged: true, // the hold is remembered in Meta
		},
		{
			name:        "deleting half is allowed at ratio 0.5",
			old:         stateOf(t, 3, nil, "1", `{}`, "2", `{}`),
			snap:        items("1", `{}`),
			opts:        DiffOptions{MaxDeleteRatio: 0.5},
			want:        []evSummary{{ItemDeleted, "2"}},
			wantChanged: true,
			wantDeleted: []string{"2"},
		},
		{
			name:        "ratio 1 disables the guard",
			old:         stateOf(t, 3, nil, "1", `{}`, "2", `{}`),
			snap:        nil,
			opts:        DiffOptions{MaxDeleteRatio: 1},
			want:        []evSummary{{ItemDeleted, "1"}, {ItemDeleted, "2"}},
			wantChanged: true,
			wantDeleted: []string{"1", "2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Source = "orders"
			tt.opts.Now = now
			before := maps.Clone(tt.old.Items)
			res, err := Diff(tt.old, tt.snap, tt.old.Meta, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := summarize(res.Events); !slices.Equal(got, tt.want) {
				t.Errorf("events = %v, want %v", got, tt.want)
			}
			if res.HeldDeletes != tt.wantHeld {
				t.Errorf("held = %d, want %d", res.HeldDeletes, tt.wantHeld)
			}
			if res.Changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", res.Changed, tt.wantChanged)
			}
			if !slices.Equal(res.Commit.Delete, tt.wantDeleted) {
				t.Errorf("deleted = %v, want %v", res.Commit.Delete, tt.wantDeleted)
			}
			if res.Commit.Generation != tt.old.Generation {
				t.Errorf("commit generation = %d, want %d", res.Commit.Generation, tt.old.Generation)
			}
			if !maps.EqualFunc(before, tt.old.Items, func(a, b store.Item) bool { return a.Fingerprint == b.Fingerprint }) {
				t.Error("Diff modified the old state")
			}
			for _, e := range res.Events {
				if e.Source != "orders" || !e.Time.Equal(now) || len(e.ID) < 20 {
					t.Errorf("bad event header %+v", e)
				}
			}
		})
	}
}

func TestDiffEventContents(t *testing.T) {
	old := stateOf(t, 7, nil, "1", `{"id":1,"status":"new","tags":["a"],"gone":true}`, "2", `{"id":2}`, "3", `{"id":3}`)
	snap := items("1", `{"id":1,"status":"paid","tags":["a","b"],"note":"x/y"}`, "3", `{"id":3}`)
	res, err := Diff(old, snap, nil, DiffOptions{Source: "orders", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 {
		t.Fatalf("events = %v", summarize(res.Events))
	}
	upd, del := res.Events[0], res.Events[1]
	wantChanges := []Change{
		{Op: "remove", Path: "/gone", Old: json.RawMessage(`true`)},
		{Op: "add", Path: "/note", New: json.RawMessage(`"x/y"`)},
		{Op: "replace", Path: "/status", Old: json.RawMessage(`"new"`), New: json.RawMessage(`"paid"`)},
		{Op: "replace", Path: "/tags", Old: json.RawMessage(`["a"]`), New: json.RawMessage(`["a","b"]`)},
	}
	if got, _ := json.Marshal(upd.Changes); string(got) != string(mustMarshal(t, wantChanges)) {
		t.Errorf("changes = %s\nwant      %s", got, mustMarshal(t, wantChanges))
	}
	if string(upd.Previous) != string(old.Items["1"].Data) || string(upd.Item) != string(snap[0].Data) {
		t.Errorf("update item/previous wrong: %s / %s", upd.Item, upd.Previous)
	}
	if del.Type != ItemDeleted || string(del.Previous) != `{"id":2}` || del.Item != nil {
		t.Errorf("deletion = %+v", del)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The mass-deletion guard holds a deletion back once and lets it through
// when the next poll shows exactly the same absence.
func TestDiffMassDeletionConfirmedByNextPoll(t *testing.T) {
	opts := DiffOptions{Source: "s", MaxDeleteRatio: 0.5, Now: time.Now()}
	st := stateOf(t, 1, nil, "1", `{}`, "2", `{}`)
	first, err := Diff(st, nil, st.Meta, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Events) != 0 || first.HeldDeletes != 2 || first.Commit.Meta[metaHeldDeletes] == "" {
		t.Fatalf("first poll: events %v held %d meta %v", summarize(first.Events), first.HeldDeletes, first.Commit.Meta)
	}
	st.Generation++
	st.Meta = first.Commit.Meta
	second, err := Diff(st, nil, st.Meta, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(second.Events); len(got) != 2 || got[0].Type != ItemDeleted {
		t.Fatalf("second poll events = %v", got)
	}
	if _, held := second.Commit.Meta[metaHeldDeletes]; held {
		t.Error("confirmed deletion left the hold flag behind")
	}

	// An item coming back in between cancels the hold.
	st2 := stateOf(t, 1, nil, "1", `{}`, "2", `{}`)
	first, _ = Diff(st2, nil, st2.Meta, opts)
	st2.Generation++
	st2.Meta = first.Commit.Meta
	back, _ := Diff(st2, items("1", `{}`, "2", `{}`), st2.Meta, opts)
	if len(back.Events) != 0 || back.Commit.Meta == nil || back.Commit.Meta[metaHeldDeletes] != "" {
		t.Fatalf("items came back: events %v meta %v", summarize(back.Events), back.Commit.Meta)
	}
}

func TestEventIDStable(t *testing.T) {
	a := EventID("s", "1", ItemUpdated, "f1", "f2", 4)
	if a != EventID("s", "1", ItemUpdated, "f1", "f2", 4) {
		t.Fatal("same change, different id")
	}
	for _, other := range []string{
		EventID("s", "1", ItemUpdated, "f1", "f2", 5),
		EventID("s", "2", ItemUpdated, "f1", "f2", 4),
		EventID("t", "1", ItemUpdated, "f1", "f2", 4),
		EventID("s", "1", ItemUpdated, "f2", "f1", 4),
	} {
		if other == a {
			t.Errorf("different changes share id %s", a)
		}
	}
}

func TestFingerprint(t *testing.T) {
	tests := []struct {
		name   string
		a, b   string
		ignore []string
		same   bool
	}{
		{"key order does not matter", `{"a":1,"b":{"c":2,"d":3}}`, `{"b":{"d":3,"c":2},"a":1}`, nil, true},
		{"white space does not matter", `{"a": [1, 2]}`, `{"a":[1,2]}`, nil, true},
		{"array order matters", `{"a":[1,2]}`, `{"a":[2,1]}`, nil, false},
		{"values matter", `{"a":1}`, `{"a":2}`, nil, false},
		{"number text matters", `{"a":1}`, `{"a":1.0}`, nil, false},
		{"big numbers are exact", `{"a":12345678901234567890}`, `{"a":12345678901234567891}`, nil, false},
		{"ignored top-level field", `{"a":1,"u":1}`, `{"a":1,"u":2}`, []string{"u"}, true},
		{"ignored nested field", `{"m":{"e":1,"k":1}}`, `{"m":{"e":2,"k":1}}`, []string{"m.e"}, true},
		{"ignore does not hide siblings", `{"m":{"e":1,"k":1}}`, `{"m":{"e":1,"k":2}}`, []string{"m.e"}, false},
		{"wildcard over objects", `{"m":{"x":{"t":1},"y":{"t":1}}}`, `{"m":{"x":{"t":2},"y":{"t":3}}}`, []string{"m.*.t"}, true},
		{"escaped dot", `{"a.b":1,"c":1}`, `{"a.b":2,"c":1}`, []string{`a\.b`}, true},
		{"missing ignored field is fine", `{"a":1}`, `{"a":1}`, []string{"x.y.z"}, true},
		{"html characters", `{"a":"<&>"}`, `{"a":"\u003c\u0026\u003e"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa, _, err := Fingerprint([]byte(tt.a), tt.ignore)
			if err != nil {
				t.Fatal(err)
			}
			fb, _, err := Fingerprint([]byte(tt.b), tt.ignore)
			if err != nil {
				t.Fatal(err)
			}
			if (fa == fb) != tt.same {
				t.Errorf("same = %v, want %v", fa == fb, tt.same)
			}
		})
	}
	if _, _, err := Fingerprint([]byte(`{"a":`), nil); err == nil {
		t.Error("truncated JSON fingerprinted without error")
	}
}

func TestChangesEscapesPointer(t *testing.T) {
	b, _ := decodeJSON([]byte(`{"a/b":{"c~d":1}}`))
	a, _ := decodeJSON([]byte(`{"a/b":{"c~d":2}}`))
	got := Changes(b, a)
	if len(got) != 1 || got[0].Path != "/a~1b/c~0d" {
		t.Fatalf("changes = %+v", got)
	}
}

func TestEscapePointer(t *testing.T) {
	for in, want := range map[string]string{"": "", "status": "status", "a/b": "a~1b", "~": "~0", "~/": "~0~1", "/~1": "~1~01"} {
		if got := escapePointer(in); got != want {
			t.Errorf("escapePointer(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzFingerprint(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,2,{"b":null}]`, `{"a":{"b":{"c":[1.5e300]}}}`, `"x"`, `{"a":1,"a":2}`, "{\"\xff\":1}"} {
		f.Add([]byte(s), "a.b", "")
		f.Add([]byte(s), "a.#.c", "a")
	}
	f.Fuzz(func(t *testing.T, data []byte, ignore, watch string) {
		fields := Fields{Ignore: []string{ignore}}
		if watch != "" {
			fields.Watch = []string{watch}
		}
		fp, v, err := FingerprintFields(data, fields)
		// Diff's Fingerprinter (from the bytes, for any ignore path the
		// fuzzer makes up) agrees, errors included.
		if got, gerr := NewFingerprinter(fields).Fingerprint(data); got != fp || (gerr == nil) != (err == nil) {
			t.Fatalf("Fingerprinter %q, %v; FingerprintFields %q, %v", got, gerr, fp, err)
		}
		if err != nil {
			return
		}
		// Canonical form is a fixed point: re-fingerprinting it is stable.
		canon, err := canonicalJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		fp2, _, err := Fingerprint(canon, nil)
		if err != nil {
			t.Fatalf("canonical form does not decode: %v", err)
		}
		if fp != fp2 {
			t.Fatalf("fingerprint not stable over its canonical form")
		}
		// A path listed twice, in either list, changes nothing.
		twice := Fields{Ignore: []string{ignore, ignore}}
		if watch != "" {
			twice.Watch = []string{watch, watch}
		}
		if fp3, _, _ := FingerprintFields(data, twice); fp3 != fp {
			t.Fatalf("a path listed twice changed the fingerprint")
		}
	})
}

// Editing `ignore` re-fingerprints the stored items once instead of turning
// every item into a false update.
func TestDiffIgnoreListChange(t *testing.T) {
	old := stateOf(t, 2, nil, "1", `{"id":1,"u":"a"}`, "2", `{"id":2,"u":"a"}`)
	opts := DiffOptions{Source: "s", Ignore: []string{"u"}, Now: time.Now()}
	snap := items("1", `{"id":1,"u":"b"}`, "2", `{"id":2,"u":"a","x":1}`)
	res, err := Diff(old, snap, old.Meta, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(res.Events); len(got) != 1 || got[0] != (evSummary{ItemUpdated, "2"}) {
		t.Fatalf("events = %v, want only the real update of 2", got)
	}
	if _, ok := res.Commit.Upsert["1"]; !ok || res.Commit.Meta[metaFingerprintConfig] != fingerprintConfig(opts.Ignore) {
		t.Fatalf("item 1 not re-fingerprinted: upsert %v meta %v", res.Commit.Upsert, res.Commit.Meta)
	}
	if ch := res.Events[0].Changes; len(ch) != 1 || ch[0].Path != "/x" {
		t.Errorf("changes = %+v", ch)
	}
	// Applied, the next identical poll is a no-op.
	for k, it := range res.Commit.Upsert {
		old.Items[k] = it
	}
	old.Meta, old.Generation = res.Commit.Meta, old.Generation+1
	again, err := Diff(old, snap, old.Meta, opts)
	if err != nil || again.Changed || len(again.Events) != 0 {
		t.Fatalf("second poll: %+v, %v", again, err)
	}

	// Adding a watch list is covered by the same signature: the stored
	// fingerprints are recomputed once, silently, then nothing changes.
	opts.Watch = []string{"x"}
	watched, err := Diff(old, snap, old.Meta, opts)
	if err != nil || len(watched.Events) != 0 || len(watched.Commit.Upsert) != 2 ||
		watched.Commit.Meta[metaFingerprintConfig] != fieldsConfig(Fields{Watch: opts.Watch, Ignore: opts.Ignore}) {
		t.Fatalf("watch added: events %v upserts %d meta %v, %v", summarize(watched.Events), len(watched.Commit.Upsert), watched.Commit.Meta, err)
	}
	old = apply(old, watched)
	if again, err := Diff(old, snap, old.Meta, opts); err != nil || again.Changed {
		t.Fatalf("poll after watch added: %+v, %v", again, err)
	}
}

// With keep_bodies: false only fingerprints are stored; changes are still
// detected from them, and a poll that finds nothing new changes nothing.
func TestDiffWithoutBodies(t *testing.T) {
	opts := DiffOptions{Source: "s", Ignore: []string{"u"}, Now: time.Now(), NoBodies: true}
	first := items("1", `{"id":1,"v":1}`, "2", `{"id":2,"v":1}`, "3", `{"id":3,"v":1}`)
	base, err := Diff(store.State{Items: map[string]store.Item{}, Meta: map[string]string{}}, first, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	for k, it := range base.Commit.Upsert {
		if it.Data != nil || it.Fingerprint == "" {
			t.Fatalf("baseline item %s stored as %+v, want a fingerprint and no data", k, it)
		}
	}
	old := apply(store.State{Items: map[string]store.Item{}, Meta: map[string]string{}}, base)

	snap := items("1", `{"id":1,"v":2}`, "2", `{"id":2,"v":1,"u":"x"}`, "4", `{"id":4,"v":1}`)
	opts.MaxDeleteRatio = 1
	res, err := Diff(old, snap, old.Meta, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []evSummary{{ItemUpdated, "1"}, {ItemCreated, "4"}, {ItemDeleted, "3"}}
	if got := summarize(res.Events); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	for _, ev := range res.Events {
		if ev.Previous != nil || ev.Changes != nil {
			t.Errorf("%s of %s carries previous %s / changes %v; there is nothing stored to take them from", ev.Type, ev.Key, ev.Previous, ev.Changes)
		}
	}
	if up := res.Events[0]; string(up.Item) != `{"id":1,"v":2}` {
		t.Errorf("update carries item %s", up.Item)
	}
	if _, ok := res.Commit.Upsert["2"]; ok {
		t.Error("item 2 changed only in an ignored field but was rewritten")
	}
	old = apply(old, res)
	if again, err := Diff(old, snap, old.Meta, opts); err != nil || len(again.Events) != 0 || len(again.Commit.Upsert) != 0 {
		t.Fatalf("same snapshot again: events %v, upserts %d, %v", summarize(again.Events), len(again.Commit.Upsert), err)
	}

	// A new ignore list cannot be applied to the stored fingerprints (no
	// data): the items take their new fingerprints without an event.
	opts.Ignore = []string{"u", "v"}
	changed, err := Diff(old, snap, old.Meta, opts)
	if err != nil || len(changed.Events) != 0 || len(changed.Commit.Upsert) != 3 {
		t.Fatalf("ignore list changed: events %v, upserts %d, %v", summarize(changed.Events), len(changed.Commit.Upsert), err)
	}
}
