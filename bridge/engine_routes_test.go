package bridge_test

import (
	"fmt"
	"slices"
	"testing"
)

// Each sink of a source can take its own event types and filter.
func TestEnginePerSinkEventsAndFilter(t *testing.T) {
	a, all, audit, paid := newAPI(t), newReceiver(t), newReceiver(t), newReceiver(t)
	h := start(t, fmt.Sprintf(`
state: {path: STATE_PATH}
sinks:
  - {name: all, url: %s, secret: %s}
  - {name: audit, url: %s, secret: %s, events: [deleted]}
  - {name: paid, url: %s, secret: %s, filter: 'item != nil && item.status == "paid"'}
sources:
  - {name: orders, schedule: "@every 1h", url: %s, items: data, key: id}
`, all.URL, testSecret, audit.URL, testSecret, paid.URL, testSecret, a.URL))
	a.set("1", map[string]any{"status": "new"})
	h.poll(t, "orders")
	a.set("1", map[string]any{"status": "paid"})
	a.set("2", map[string]any{"status": "new"})
	h.poll(t, "orders")
	a.del("1")
	h.poll(t, "orders")

	eventually(t, "all deliveries", func() bool {
		return len(all.deliveries()) == 3 && len(audit.deliveries()) == 1 && len(paid.deliveries()) == 1
	})
	types := func(r *receiver) []string {
		var out []string
		for _, d := range r.deliveries() {
			out = append(out, d.Type+"/"+d.Data.Key)
		}
		slices.Sort(out)
		return out
	}
	if got := types(audit); !slices.Equal(got, []string{"item.deleted/1"}) {
		t.Errorf("audit got %v", got)
	}
	if got := types(paid); !slices.Equal(got, []string{"item.updated/1"}) {
		t.Errorf("paid got %v", got)
	}
	h.stop(t)
	if n := len(all.deliveries()) + len(audit.deliveries()) + len(paid.deliveries()); n != 5 {
		t.Errorf("%d deliveries in all, want 5", n)
	}
}
