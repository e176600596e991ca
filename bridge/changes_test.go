package bridge

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
)

// apply returns the state a store holds after committing res on top of st.
func apply(st store.State, res DiffResult) store.State {
	next := store.State{Generation: st.Generation + 1, Items: maps.Clone(st.Items), Meta: st.Meta}
	if next.Items == nil {
		next.Items = map[string]store.Item{}
	}
	maps.Copy(next.Items, res.Commit.Upsert)
	for _, k := range res.Commit.Delete {
		delete(next.Items, k)
	}
	if res.Commit.Meta != nil {
		next.Meta = res.Commit.Meta
	}
	return next
}

func TestFingerprintFields(t *testing.T) {
	tests := []struct {
		name          string
		fields        Fields
		a, b          string
		same          bool
		wantRelevantA string // canonical JSON of the relevant part of a, if set
	}{
		{
			name:          "watch keeps only the watched field",
			fields:        Fields{Watch: []string{"status"}},
			a:             `{"id":1,"status":"new","total":1}`,
			b:             `{"id":1,"status":"new","total":2}`,
			same:          true,
			wantRelevantA: `{"status":"new"}`,
		},
		{
			name:   "a change in a watched field counts",
			fields: Fields{Watch: []string{"status"}},
			a:      `{"status":"new"}`, b: `{"status":"paid"}`,
		},
		{
			name:          "nested watch keeps the objects on the way",
			fields:        Fields{Watch: []string{"customer.address.city"}},
			a:             `{"customer":{"name":"a","address":{"city":"X","zip":"1"}}}`,
			b:             `{"customer":{"name":"b","address":{"city":"X","zip":"2"}}}`,
			same:          true,
			wantRelevantA: `{"customer":{"address":{"city":"X"}}}`,
		},
		{
			name:   "nested watch sees its own change",
			fields: Fields{Watch: []string{"customer.address.city"}},
			a:      `{"customer":{"address":{"city":"X"}}}`, b: `{"customer":{"address":{"city":"Y"}}}`,
		},
		{
			name:          "wildcard over array elements keeps positions",
			fields:        Fields{Watch: []string{"lines.#.qty"}},
			a:             `{"lines":[{"sku":"a","qty":1},{"sku":"b"},7]}`,
			b:             `{"lines":[{"sku":"c","qty":1},{"sku":"d"},7]}`,
			same:          true,
			wantRelevantA: `{"lines":[{"qty":1},{},null]}`,
		},
		{
			name:   "wildcard sees an element's change",
			fields: Fields{Watch: []string{"lines.#.qty"}},
			a:      `{"lines":[{"qty":1},{"qty":2}]}`, b: `{"lines":[{"qty":1},{"qty":3}]}`,
		},
		{
			name:   "wildcard sees an added element",
			fields: Fields{Watch: []string{"lines.#.qty"}},
			a:      `{"lines":[{"qty":1}]}`, b: `{"lines":[{"qty":1},{"qty":1}]}`,
		},
		{
			name:          "wildcard over object fields",
			fields:        Fields{Watch: []string{"prices.*.amount"}},
			a:             `{"prices":{"eur":{"amount":1,"at":"x"},"usd":{"amount":2,"at":"x"}}}`,
			b:             `{"prices":{"eur":{"amount":1,"at":"y"},"usd":{"amount":2,"at":"z"}}}`,
			same:          true,
			wantRelevantA: `{"prices":{"eur":{"amount":1},"usd":{"amount":2}}}`,
		},
		{
			name:          "several watch paths, overlapping, are united",
			fields:        Fields{Watch: []string{"a.b", "a", "c"}},
			a:             `{"a":{"b":1,"x":2},"c":3,"d":4}`,
			b:             `{"a":{"b":1,"x":2},"c":3,"d":5}`,
			same:          true,
			wantRelevantA: `{"a":{"b":1,"x":2},"c":3}`,
		},
		{
			name:          "overlapping wildcard and whole array",
			fields:        Fields{Watch: []string{"lines.#.qty", "lines"}},
			a:             `{"lines":[{"qty":1,"sku":"a"},5],"x":1}`,
			b:             `{"lines":[{"qty":1,"sku":"a"},5],"x":2}`,
			same:          true,
			wantRelevantA: `{"lines":[{"qty":1,"sku":"a"},5]}`,
		},
		{
			name:          "ignore applies inside a watched field",
			fields:        Fields{Watch: []string{"customer"}, Ignore: []string{"customer.seen_at"}},
			a:             `{"customer":{"name":"a","seen_at":1},"total":1}`,
			b:             `{"customer":{"name":"a","seen_at":2},"total":2}`,
			same:          true,
			wantRelevantA: `{"customer":{"name":"a"}}`,
		},
		{
			name:   "ignore inside watch leaves the rest of the watched field counting",
			fields: Fields{Watch: []string{"customer"}, Ignore: []string{"customer.seen_at"}},
			a:      `{"customer":{"name":"a","seen_at":1}}`, b: `{"customer":{"name":"b","seen_at":1}}`,
		},
		{
			name:          "ignore with wildcards inside a wildcard watch",
			fields:        Fields{Watch: []string{"lines"}, Ignore: []string{"lines.#.seen"}},
			a:             `{"lines":[{"n":1,"seen":1}]}`,
			b:             `{"lines":[{"n":1,"seen":2}]}`,
			same:          true,
			wantRelevantA: `{"lines":[{"n":1}]}`,
		},
		{
			name:          "watched field missing on both sides",
			fields:        Fields{Watch: []string{"status"}},
			a:             `{"id":1}`,
			b:             `{"id":2}`,
			same:          true,
			wantRelevantA: `{}`,
		},
		{
			name:   "watched field appearing counts",
			fields: Fields{Watch: []string{"status"}},
			a:      `{"id":1}`, b: `{"id":1,"status":"new"}`,
		},
		{
			name:          "escaped dot in a watch path",
			fields:        Fields{Watch: []string{`a\.b`}},
			a:             `{"a.b":1,"a":{"b":2}}`,
			b:             `{"a.b":1,"a":{"b":3}}`,
			same:          true,
			wantRelevantA: `{"a.b":1}`,
		},
		{
			name:          "watch on a non-object item keeps nothing",
			fields:        Fields{Watch: []string{"status"}},
			a:             `[1,2]`,
			b:             `[3]`,
			same:          true,
			wantRelevantA: `null`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa, va, err := FingerprintFields([]byte(tt.a), tt.fields)
			if err != nil {
				t.Fatal(err)
			}
			fb, _, err := FingerprintFields([]byte(tt.b), tt.fields)
			if err != nil {
				t.Fatal(err)
			}
			if (fa == fb) != tt.same {
				t.Errorf("same = %v, want %v", fa == fb, tt.same)
			}
			if tt.wantRelevantA != "" {
				if got, _ := canonicalJSON(va); string(got) != tt.wantRelevantA {
					t.Errorf("relevant part = %s, want %s", got, tt.wantRelevantA)
				}
			}
			// Order of the lists never matters.
			rev := Fields{Watch: slices.Clone(tt.fields.Watch), Ignore: slices.Clone(tt.fields.Ignore)}
			slices.Reverse(rev.Watch)
			slices.Reverse(rev.Ignore)
			if fr, _, _ := FingerprintFields([]byte(tt.a), rev); fr != fa {
				t.Error("fingerprint depends on the order of watch or ignore")
			}
			if fieldsConfig(rev) != fieldsConfig(tt.fields) {
				t.Error("fields signature depends on the order of watch or ignore")
			}
		})
	}
}

// Without a watch list the stored signature is the one stored before watch
// lists existed, so upgrading does not re-fingerprint every source; with
// one, it differs from every ignore-only signature.
func TestFieldsConfigCompatible(t *testing.T) {
	ignore := []string{"updated_at"}
	if fieldsConfig(Fields{Ignore: ignore}) != fingerprintConfig(ignore) {
		t.Error("signature without watch changed")
	}
	sigs := map[string]Fields{}
	for _, f := range []Fields{
		{},
		{Ignore: []string{"a"}},
		{Watch: []string{"a"}},
		{Watch: []string{"a"}, Ignore: []string{"b"}},
		{Watch: []string{"b"}, Ignore: []string{"a"}},
		{Watch: []string{"a", "b"}},
	} {
		sig := fieldsConfig(f)
		if other, dup := sigs[sig]; dup {
			t.Errorf("%+v and %+v share signature %s", f, other, sig)
		}
		sigs[sig] = f
	}
}

// With a watch list, updates fire for watched fields only and list only
// their changes; items and previous versions are still whole.
func TestDiffWatch(t *testing.T) {
	fields := Fields{Watch: []string{"status", "lines.#.qty"}, Ignore: []string{"lines.#.seen"}}
	old := stateOfFields(t, 3, fields,
		"1", `{"status":"new","total":1,"lines":[{"qty":1,"seen":1}]}`,
		"2", `{"status":"new","total":1,"lines":[{"qty":1,"seen":1}]}`,
		"3", `{"status":"new","total":1,"lines":[{"qty":1,"seen":1}]}`)
	snap := items(
		"1", `{"status":"paid","total":2,"lines":[{"qty":1,"seen":2}]}`, // status and an unwatched field
		"2", `{"status":"new","total":9,"lines":[{"qty":1,"seen":9}]}`, // unwatched and ignored only
		"3", `{"status":"new","total":1,"lines":[{"qty":2,"seen":1}]}`) // a watched nested field
	res, err := Diff(old, snap, old.Meta, DiffOptions{Source: "s", Watch: fields.Watch, Ignore: fields.Ignore, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(res.Events); !slices.Equal(got, []evSummary{{ItemUpdated, "1"}, {ItemUpdated, "3"}}) {
		t.Fatalf("events = %v", got)
	}
	if _, stored := res.Commit.Upsert["2"]; stored {
		t.Error("an unwatched change was stored as a new version")
	}
	want := map[string]string{
		"1": `[{"op":"replace","path":"/status","old":"new","new":"paid"}]`,
		"3": `[{"op":"replace","path":"/lines/0/qty","old":1,"new":2}]`,
	}
	for _, ev := range res.Events {
		if got := string(mustMarshal(t, ev.Changes)); got != want[ev.Key] {
			t.Errorf("%s changes = %s, want %s", ev.Key, got, want[ev.Key])
		}
		if string(ev.Item) != string(latestData(snap, ev.Key)) || string(ev.Previous) != string(old.Items[ev.Key].Data) {
			t.Errorf("%s: item/previous not whole: %s / %s", ev.Key, ev.Item, ev.Previous)
		}
	}
}

func latestData(its []Item, key string) json.RawMessage {
	for _, it := range slices.Backward(its) {
		if it.Key == key {
			return it.Data
		}
	}
	return nil
}

// stateOfFields is stateOf with a watch list.
func stateOfFields(t *testing.T, gen uint64, f Fields, kv ...string) store.State {
	t.Helper()
	st := store.State{Generation: gen, Items: map[string]store.Item{}, Meta: map[string]string{metaFingerprintConfig: fieldsConfig(f)}}
	for _, it := range items(kv...) {
		fp, _, err := FingerprintFields(it.Data, f)
		if err != nil {
			t.Fatal(err)
		}
		st.Items[it.Key] = store.Item{Fingerprint: fp, Data: it.Data}
	}
	return st
}

// Items missing from fewer than DeleteAfter consecutive polls stay; a
// reappearance starts the count over and is silent when the item did not
// change; the mass-deletion guard looks at the deletions that are due.
func TestDiffDeleteAfter(t *testing.T) {
	type step struct {
		snap        []string // keys present (data {"id":key}) ...
		changed     string   // ... and this key present with other data
		wantDeleted []string
		wantPending int
		wantHeld    int
		wantAbsent  string // Meta "absent" after the step ("" = none)
	}
	five := []string{"1", "2", "3", "4", "5"}
	tests := []struct {
		name        string
		deleteAfter int
		ratio       float64
		steps       []step
	}{
		{
			name:        "default: deleted by the first poll without it",
			deleteAfter: 0,
			steps:       []step{{snap: []string{"1", "2", "3", "4"}, wantDeleted: []string{"5"}}},
		},
		{
			name:        "deleted after three polls in a row",
			deleteAfter: 3,
			steps: []step{
				{snap: []string{"1", "2", "3", "4"}, wantPending: 1, wantAbsent: `{"5":1}`},
				{snap: []string{"1", "2", "3", "4"}, wantPending: 1, wantAbsent: `{"5":2}`},
				{snap: []string{"1", "2", "3", "4"}, wantDeleted: []string{"5"}},
				{snap: []string{"1", "2", "3", "4"}},
			},
		},
		{
			name:        "a reappearance starts over, silently",
			deleteAfter: 2,
			steps: []step{
				{snap: []string{"1", "2", "3", "4"}, wantPending: 1, wantAbsent: `{"5":1}`},
				{snap: five},
				{snap: []string{"1", "2", "3", "4"}, wantPending: 1, wantAbsent: `{"5":1}`},
				{snap: []string{"1", "2", "3", "5"}, wantPending: 1, wantAbsent: `{"4":1}`},
				{snap: []string{"1", "2", "3", "5"}, wantDeleted: []string{"4"}},
			},
		},
		{
			name:        "a reappearance with other data is an update",
			deleteAfter: 2,
			steps: []step{
				{snap: []string{"1", "2", "3", "4"}, wantPending: 1, wantAbsent: `{"5":1}`},
				{snap: []string{"1", "2", "3", "4"}, changed: "5"},
			},
		},
		{
			name:        "mass deletion: counted first, then held once, then confirmed",
			deleteAfter: 2,
			ratio:       0.5,
			steps: []step{
				{snap: []string{"1"}, wantPending: 4, wantAbsent: `{"2":1,"3":1,"4":1,"5":1}`},
				{snap: []string{"1"}, wantHeld: 4, wantAbsent: `{"2":2,"3":2,"4":2,"5":2}`},
				{snap: []string{"1"}, wantDeleted: []string{"2", "3", "4", "5"}},
			},
		},
		{
			name:        "mass deletion held, then the items come back: nothing sent",
			deleteAfter: 2,
			ratio:       0.5,
			steps: []step{
				{snap: nil, wantPending: 5, wantAbsent: `{"1":1,"2":1,"3":1,"4":1,"5":1}`},
				{snap: nil, wantHeld: 5, wantAbsent: `{"1":2,"2":2,"3":2,"4":2,"5":2}`},
				{snap: five},
				{snap: five},
			},
		},
		{
			name:        "staggered absences: the guard counts only the due ones",
			deleteAfter: 2,
			ratio:       0.5,
			steps: []step{
				{snap: []string{"1", "2", "4", "5"}, wantPending: 1, wantAbsent: `{"3":1}`},
				{snap: []string{"1", "2"}, wantDeleted: []string{"3"}, wantPending: 2, wantAbsent: `{"4":1,"5":1}`},
				// 2 of the 4 remaining items due: 50% is not more than half.
				{snap: []string{"1", "2"}, wantDeleted: []string{"4", "5"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := DiffOptions{Source: "s", DeleteAfter: tt.deleteAfter, MaxDeleteRatio: tt.ratio, Now: time.Now()}
			var kv []string
			for _, k := range five {
				kv = append(kv, k, `{"id":"`+k+`"}`)
			}
			st := stateOf(t, 1, nil, kv...)
			for i, s := range tt.steps {
				var snap []Item
				for _, k := range s.snap {
					snap = append(snap, Item{Key: k, Data: json.RawMessage(`{"id":"` + k + `"}`)})
				}
				if s.changed != "" {
					snap = append(snap, Item{Key: s.changed, Data: json.RawMessage(`{"id":"` + s.changed + `","v":2}`)})
				}
				res, err := Diff(st, snap, st.Meta, opts)
				if err != nil {
					t.Fatal(err)
				}
				var wantEvents []evSummary
				if s.changed != "" {
					wantEvents = append(wantEvents, evSummary{ItemUpdated, s.changed})
				}
				for _, k := range s.wantDeleted {
					wantEvents = append(wantEvents, evSummary{ItemDeleted, k})
				}
				if got := summarize(res.Events); !slices.Equal(got, wantEvents) {
					t.Errorf("step %d: events = %v, want %v", i, got, wantEvents)
				}
				if !slices.Equal(res.Commit.Delete, s.wantDeleted) {
					t.Errorf("step %d: deleted = %v, want %v", i, res.Commit.Delete, s.wantDeleted)
				}
				if res.PendingDeletes != s.wantPending || res.HeldDeletes != s.wantHeld {
					t.Errorf("step %d: pending %d held %d, want %d %d", i, res.PendingDeletes, res.HeldDeletes, s.wantPending, s.wantHeld)
				}
				st = apply(st, res)
				if got := st.Meta[metaAbsent]; got != s.wantAbsent {
					t.Errorf("step %d: absent = %q, want %q", i, got, s.wantAbsent)
				}
				for _, k := range s.wantDeleted {
					if _, ok := st.Items[k]; ok {
						t.Errorf("step %d: %s still stored", i, k)
					}
				}
			}
		})
	}
}

// Editing watch or ignore re-fingerprints the stored items, present and
// missing ones, without false updates; a real change in a field that
// counts under the new lists is an update.
func TestDiffWatchListChange(t *testing.T) {
	tests := []struct {
		name     string
		from, to Fields
		stored   string // data of items 1 and 2 (and of missing item 3)
		now1     string // item 1 now: unchanged under the new lists
		now2     string // item 2 now: changed under the new lists
		changes  string // item 2's changes
	}{
		{
			name:    "all fields to a watch list",
			from:    Fields{},
			to:      Fields{Watch: []string{"status"}},
			stored:  `{"status":"new","total":1}`,
			now1:    `{"status":"new","total":2}`,
			now2:    `{"status":"paid","total":2}`,
			changes: `[{"op":"replace","path":"/status","old":"new","new":"paid"}]`,
		},
		{
			name:    "watch list to all fields but an ignored one",
			from:    Fields{Watch: []string{"status"}},
			to:      Fields{Ignore: []string{"seen"}},
			stored:  `{"status":"new","seen":1}`,
			now1:    `{"status":"new","seen":2}`,
			now2:    `{"status":"new","seen":2,"note":"x"}`,
			changes: `[{"op":"add","path":"/note","new":"x"}]`,
		},
		{
			name:    "narrower nested watch",
			from:    Fields{Watch: []string{"customer"}},
			to:      Fields{Watch: []string{"customer.address.#.city"}},
			stored:  `{"customer":{"name":"a","address":[{"city":"X","zip":1}]}}`,
			now1:    `{"customer":{"name":"b","address":[{"city":"X","zip":2}]}}`,
			now2:    `{"customer":{"name":"a","address":[{"city":"Y","zip":1}]}}`,
			changes: `[{"op":"replace","path":"/customer/address/0/city","old":"X","new":"Y"}]`,
		},
		{
			name:    "ignore added inside a watch",
			from:    Fields{Watch: []string{"lines"}},
			to:      Fields{Watch: []string{"lines"}, Ignore: []string{"lines.#.seen"}},
			stored:  `{"lines":[{"n":1,"seen":1}]}`,
			now1:    `{"lines":[{"n":1,"seen":2}]}`,
			now2:    `{"lines":[{"n":2,"seen":1}]}`,
			changes: `[{"op":"replace","path":"/lines/0/n","old":1,"new":2}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := stateOfFields(t, 2, tt.from, "1", tt.stored, "2", tt.stored, "3", tt.stored)
			opts := DiffOptions{Source: "s", Watch: tt.to.Watch, Ignore: tt.to.Ignore, DeleteAfter: 3, Now: time.Now()}
			snap := items("1", tt.now1, "2", tt.now2)
			res, err := Diff(old, snap, old.Meta, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := summarize(res.Events); !slices.Equal(got, []evSummary{{ItemUpdated, "2"}}) {
				t.Fatalf("events = %v, want only the real update of 2", got)
			}
			if got := string(mustMarshal(t, res.Events[0].Changes)); got != tt.changes {
				t.Errorf("changes = %s, want %s", got, tt.changes)
			}
			if res.Commit.Meta[metaFingerprintConfig] != fieldsConfig(tt.to) {
				t.Errorf("signature not updated: %v", res.Commit.Meta)
			}
			// Applied, the next identical poll is a no-op except for the
			// missing item's count, and item 3 comes back silently with
			// data that equals its stored version under the new lists.
			st := apply(old, res)
			again, err := Diff(st, snap, st.Meta, opts)
			if err != nil || len(again.Events) != 0 || len(again.Commit.Upsert) != 0 {
				t.Fatalf("second poll: events %v upserts %v, %v", summarize(again.Events), again.Commit.Upsert, err)
			}
			st = apply(st, again)
			back, err := Diff(st, items("1", tt.now1, "2", tt.now2, "3", tt.now1), st.Meta, opts)
			if err != nil || len(back.Events) != 0 {
				t.Fatalf("item 3 came back: events %v, %v", summarize(back.Events), err)
			}
		})
	}
}

// selectEvents keeps the selected event types and the events the filter
// accepts; a filter that fails keeps the event and reports the error.
func TestSelectEvents(t *testing.T) {
	created := Event{ID: "c", Type: ItemCreated, Source: "orders", Key: "1", Item: json.RawMessage(`{"status":"paid","total":12.5}`)}
	toPaid := Event{ID: "u1", Type: ItemUpdated, Source: "orders", Key: "2",
		Item: json.RawMessage(`{"status":"paid"}`), Previous: json.RawMessage(`{"status":"new"}`),
		Changes: []Change{{Op: "replace", Path: "/status", Old: json.RawMessage(`"new"`), New: json.RawMessage(`"paid"`)}}}
	otherUpdate := Event{ID: "u2", Type: ItemUpdated, Source: "orders", Key: "3",
		Item: json.RawMessage(`{"status":"paid","note":"x"}`), Previous: json.RawMessage(`{"status":"paid"}`),
		Changes: []Change{{Op: "add", Path: "/note", New: json.RawMessage(`"x"`)}}}
	deleted := Event{ID: "d", Type: ItemDeleted, Source: "orders", Key: "4", Previous: json.RawMessage(`{"status":"paid"}`)}
	all := []Event{created, toPaid, otherUpdate, deleted}

	tests := []struct {
		name        string
		types       []string
		filter      string
		want        []string // ids kept
		wantDropped int
		wantErrs    []string // ids whose filter failed
	}{
		{name: "no selection keeps all", want: []string{"c", "u1", "u2", "d"}},
		{name: "types", types: []string{"created", "deleted"}, want: []string{"c", "d"}, wantDropped: 2},
		{name: "transition to paid, previous nil on creations",
			filter: `item.status == "paid" && previous.status != "paid"`,
			want:   []string{"c", "u1"}, wantDropped: 2},
		{name: "by type", filter: `type == "item.deleted"`, want: []string{"d"}, wantDropped: 3},
		{name: "by changed path", filter: `any(changes, .path == "/status" && .old == "new")`, want: []string{"u1"}, wantDropped: 3},
		{name: "numbers are numbers", filter: `(item.total ?? 0) > 10`, want: []string{"c"}, wantDropped: 3},
		{name: "absent old value is nil", filter: `any(changes, .old == nil)`, want: []string{"u2"}, wantDropped: 3},
		{name: "source and key", filter: `source == "orders" && key in ["1", "4"]`, want: []string{"c", "d"}, wantDropped: 2},
		{name: "types and filter together", types: []string{"updated"}, filter: `item.status == "paid"`,
			want: []string{"u1", "u2"}, wantDropped: 2},
		{name: "runtime error keeps the event",
			filter: `item.customer.name == "x"`,
			want:   []string{"c", "u1", "u2", "d"}, wantErrs: []string{"c", "u1", "u2", "d"}},
		{name: "non-bool result at run time keeps the event",
			filter: `item.status`, types: []string{"updated"},
			want: []string{"u1", "u2"}, wantDropped: 2, wantErrs: []string{"u1", "u2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg config.Source
			cfg.Filter = tt.filter
			prog, err := sourceFilter(cfg)
			if err != nil {
				t.Fatal(err)
			}
			kept, dropped, errs := selectEvents(slices.Clone(all), tt.types, prog)
			var ids []string
			for _, e := range kept {
				ids = append(ids, e.ID)
			}
			if !slices.Equal(ids, tt.want) || dropped != tt.wantDropped {
				t.Errorf("kept %v dropped %d, want %v dropped %d", ids, dropped, tt.want, tt.wantDropped)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("errors = %v, want for %v", errs, tt.wantErrs)
			}
			for i, err := range errs {
				if msg := err.Error(); !strings.Contains(msg, "(event "+tt.wantErrs[i]+")") || strings.Contains(msg, "\n") {
					t.Errorf("error %q: want one line naming event %s", msg, tt.wantErrs[i])
				}
			}
		})
	}
}
