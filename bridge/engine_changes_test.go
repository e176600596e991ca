package bridge_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/pollbridge/pollbridge/bridge"
)

// A filter that sends only transitions of status to "paid": the other
// changes are applied to the stored state but never sent.
func TestEngineFilterSendsOnlyTransitionsToPaid(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	a.set("1", map[string]any{"status": "new", "total": 10})
	a.set("2", map[string]any{"status": "new", "total": 20})
	h := start(t, oneSource(a.URL, r.URL, `    filter: item.status == "paid" && previous.status != "paid"
`))
	h.poll(t, "orders")

	a.set("1", map[string]any{"status": "paid", "total": 10}) // new → paid: sent
	a.set("2", map[string]any{"status": "new", "total": 25})  // total only: not sent
	a.set("3", map[string]any{"status": "paid", "total": 30}) // created paid: sent
	a.set("4", map[string]any{"status": "new", "total": 40})  // created new: not sent
	res := h.poll(t, "orders")
	if len(res.Events) != 2 || res.Suppressed != 2 || len(res.FilterErrors) != 0 {
		t.Fatalf("poll: %d events, %d suppressed, errors %v; want 2, 2, none", len(res.Events), res.Suppressed, res.FilterErrors)
	}
	a.set("1", map[string]any{"status": "paid", "total": 11}) // still paid: not sent
	a.del("3")                                                // deleted: not sent
	if res := h.poll(t, "orders"); len(res.Events) != 0 || res.Suppressed != 2 || !res.Committed {
		t.Fatalf("poll: %+v, want 2 changes committed and none sent", res)
	}

	// Every change is in the stored state, sent or not.
	st, err := h.Store.Load(context.Background(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]float64{"1": 11, "2": 25, "4": 40} {
		var item struct{ Total float64 }
		if err := json.Unmarshal(st.Items[key].Data, &item); err != nil || item.Total != want {
			t.Errorf("stored item %s: total %v (%v), want %v", key, item.Total, err, want)
		}
	}
	if _, ok := st.Items["3"]; ok || len(st.Items) != 3 {
		t.Errorf("stored items %v, want 1, 2 and 4", slices.Sorted(maps.Keys(st.Items)))
	}

	eventually(t, "2 deliveries", func() bool { return len(r.deliveries()) >= 2 })
	h.stop(t)
	var got []string
	for _, d := range r.deliveries() {
		got = append(got, d.Type+" "+d.Data.Key)
	}
	slices.Sort(got)
	if want := []string{bridge.ItemCreated + " 3", bridge.ItemUpdated + " 1"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// events: [deleted] with delete_after: 2 sends only deletions, and only
// after two complete polls without the item; the poll that confirms it
// asks for a full answer even though the API would say "not modified".
func TestEngineEventsAndDeleteAfter(t *testing.T) {
	a, r := newAPI(t), newReceiver(t)
	a.set("1", map[string]any{"status": "new"})
	a.set("2", map[string]any{"status": "new"})
	a.set("3", map[string]any{"status": "new"})
	h := start(t, oneSource(a.URL, r.URL, "    events: [deleted]\n    delete_after: 2\n"))
	h.poll(t, "orders")

	a.set("1", map[string]any{"status": "paid"})
	if res := h.poll(t, "orders"); len(res.Events) != 0 || res.Suppressed != 1 {
		t.Fatalf("update: %+v, want it suppressed", res)
	}
	a.del("3")
	if res := h.poll(t, "orders"); len(res.Events) != 0 || res.PendingDeletes != 1 {
		t.Fatalf("first poll without 3: %+v, want 1 pending deletion", res)
	}
	res := h.poll(t, "orders")
	if res.NotModified || len(res.Events) != 1 || res.Events[0].Type != bridge.ItemDeleted || res.Events[0].Key != "3" {
		t.Fatalf("second poll without 3: %+v, want the deletion of 3", res)
	}
	if res := h.poll(t, "orders"); !res.NotModified {
		t.Fatalf("nothing pending: %+v, want a conditional request answered 304", res)
	}
	eventually(t, "the deletion delivered", func() bool { return len(r.deliveries()) == 1 })
	h.stop(t)
	if d := r.deliveries(); len(d) != 1 || d[0].Type != bridge.ItemDeleted || d[0].Data.Key != "3" {
		t.Fatalf("delivered %+v, want only the deletion of 3", d)
	}
}
