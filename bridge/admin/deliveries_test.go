package admin_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/admin"
)

// Deliveries by state: a dead letter (422), a retrying delivery (503) and
// a pending one (the sink paused), each with its attempts, last error and
// times, per sink and state, limited; no payload in the answer.
func TestAPIDeliveriesByState(t *testing.T) {
	orders, r := newAPI(t, "1"), newReceiver(t, http.StatusUnprocessableEntity)
	d := startDaemon(t, testConfig(orders.URL, orders.URL, r.URL), "")
	list := func(query string) admin.Deliveries {
		t.Helper()
		var out admin.Deliveries
		d.getJSON(t, "/api/deliveries"+query, "", &out)
		return out
	}
	items := func(out admin.Deliveries) []string {
		var keys []string
		for _, dl := range out.Deliveries {
			keys = append(keys, dl.Source+"/"+dl.Key)
		}
		return keys
	}

	d.call(t, "POST", "/api/sources/orders/poll", "")
	eventually(t, "a dead letter", func() bool { return d.sink(t, "app", "").Outbox.Dead == 1 })
	r.setStatus(http.StatusServiceUnavailable)
	orders.add("2")
	d.call(t, "POST", "/api/sources/orders/poll", "")
	eventually(t, "a retrying delivery", func() bool { return d.sink(t, "app", "").Outbox.Retrying == 1 })
	if status, body := d.call(t, "POST", "/api/sinks/app/pause", ""); status != 200 {
		t.Fatalf("pause: %d %s", status, body)
	}
	beforeCommit := time.Now()
	orders.add("3")
	d.call(t, "POST", "/api/sources/orders/poll", "")
	afterCommit := time.Now()
	if s := d.sink(t, "app", ""); *s.Outbox != (admin.Outbox{Pending: 1, Retrying: 1, Dead: 1}) {
		t.Fatalf("outbox of app = %+v, want one pending, one retrying, one dead", *s.Outbox)
	}

	pending := list("?sink=app&state=pending")
	if pending.Total != 1 || !slices.Equal(items(pending), []string{"orders/3"}) {
		t.Fatalf("pending: %+v", pending)
	}
	p := pending.Deliveries[0]
	if p.State != admin.StatePending || p.Attempts != 0 || p.LastError != "" || p.Type != bridge.ItemCreated ||
		p.Sink != "app" || p.EventID == "" || p.ID == "" || !p.Dead.IsZero() ||
		p.Created.Before(beforeCommit.Add(-time.Second)) || p.Created.After(afterCommit) || p.Due.Before(p.Created) {
		t.Errorf("pending delivery: %+v (committed between %v and %v)", p, beforeCommit, afterCommit)
	}

	retrying := list("?sink=app&state=retrying")
	if retrying.Total != 1 || !slices.Equal(items(retrying), []string{"orders/2"}) {
		t.Fatalf("retrying: %+v", retrying)
	}
	if rd := retrying.Deliveries[0]; rd.State != admin.StateRetrying || rd.Attempts < 1 ||
		!strings.Contains(rd.LastError, "503") || rd.Type != bridge.ItemCreated || rd.Due.IsZero() || rd.Created.IsZero() {
		t.Errorf("retrying delivery: %+v", rd)
	}

	dead := list("?sink=app&state=dead")
	if dead.Total != 1 || !slices.Equal(items(dead), []string{"orders/1"}) {
		t.Fatalf("dead: %+v", dead)
	}
	if dl := dead.Deliveries[0]; dl.State != admin.StateDead || dl.Attempts != 1 || !strings.Contains(dl.LastError, "422") ||
		dl.Dead.IsZero() || !dl.Due.IsZero() || dl.Dead.Before(dl.Created) {
		t.Errorf("dead letter: %+v", dl)
	}

	// Without a state: the live ones (pending and retrying), by due time.
	all := list("?sink=app")
	if all.Total != 2 || len(all.Deliveries) != 2 || !slices.Contains(items(all), "orders/2") || !slices.Contains(items(all), "orders/3") {
		t.Errorf("live deliveries: %+v", all)
	}
	if len(all.Deliveries) == 2 && all.Deliveries[1].Due.Before(all.Deliveries[0].Due) {
		t.Errorf("live deliveries out of due order: %+v", all.Deliveries)
	}
	if one := list("?limit=1"); one.Total != 2 || len(one.Deliveries) != 1 {
		t.Errorf("limit=1: total %d, %d listed", one.Total, len(one.Deliveries))
	}
	if none := list("?sink=nope&state=retrying"); none.Total != 0 || len(none.Deliveries) != 0 {
		t.Errorf("unknown sink: %+v", none)
	}

	for _, q := range []string{"?state=stuck", "?limit=0", "?limit=x", "?limit=-3"} {
		if status, body := d.call(t, "GET", "/api/deliveries"+q, ""); status != http.StatusBadRequest {
			t.Errorf("GET /api/deliveries%s: %d %s", q, status, body)
		}
	}
	status, body := d.call(t, "GET", "/api/deliveries?sink=app", "")
	if status != 200 || strings.Contains(body, `"payload"`) || strings.Contains(body, testSecret) || !strings.Contains(body, `"last_error": "`) {
		t.Errorf("answer shows a payload or the secret, or no last error: %d %s", status, body)
	}
}

// A store that does not answer: 503, counted as a failed live listing and
// a failed ping.
func TestAPIDeliveriesStoreDown(t *testing.T) {
	a, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(a.URL, a.URL, r.URL), "")
	d.stop(t)
	d.Store.Close()
	if status, body := d.call(t, "GET", "/api/deliveries?sink=app", ""); status != http.StatusServiceUnavailable || !strings.Contains(body, "error") {
		t.Errorf("deliveries with a closed store: %d %s", status, body)
	}
	srv := admin.New(admin.Options{Engine: d.Engine}) // d's own listener answers "shutting down"
	if rec := newRecorder(srv, "GET", "/readyz", ""); rec.code != http.StatusServiceUnavailable || !strings.Contains(rec.body, "store unreachable: ping") {
		t.Errorf("readyz with a closed store: %d %q", rec.code, rec.body)
	}
	m := d.scrape(t)
	for _, op := range []string{"live", "ping"} {
		if v, ok := metric(m, "pollbridge_store_errors_total", `op="`+op+`"`); !ok || v < 1 {
			t.Errorf("store errors op=%s = %v (found %v), want ≥ 1", op, v, ok)
		}
	}
}
