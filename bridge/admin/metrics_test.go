package admin_test

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// scrape GETs /metrics and returns the exposition text.
func (d *daemon) scrape(t *testing.T) string {
	t.Helper()
	status, body := d.call(t, "GET", "/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	return body
}

// metric returns the value of the series name{labels} in an exposition,
// labels written as k="v" pairs in any order; ok is false if it is absent.
func metric(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		got, rest := series, ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			got, rest = series[:i], strings.TrimSuffix(series[i+1:], "}")
		}
		if got != name {
			continue
		}
		have := map[string]bool{}
		for _, pair := range strings.Split(rest, ",") {
			have[pair] = true
		}
		match := len(labels) == len(have) || (len(labels) == 0 && rest == "")
		for _, l := range labels {
			match = match && have[l]
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		return v, err == nil
	}
	return 0, false
}

// The metrics move as polls and deliveries happen.
func TestMetricsFollowPollsAndDeliveries(t *testing.T) {
	orders, broken, r := newAPI(t, "1", "2"), newAPI(t), newReceiver(t, http.StatusOK)
	broken.setFail(true)
	d := startDaemon(t, testConfig(orders.URL, broken.URL, r.URL), "")

	want := func(text string, v float64, name string, labels ...string) {
		t.Helper()
		got, ok := metric(text, name, labels...)
		if !ok {
			t.Errorf("%s%v: absent", name, labels)
		} else if got != v {
			t.Errorf("%s%v = %v, want %v", name, labels, got, v)
		}
	}
	m := d.scrape(t)
	want(m, 0, "pollbridge_polls_total", `source="orders"`, `result="ok"`)
	want(m, 0, "pollbridge_polls_total", `source="broken"`, `result="error"`)
	want(m, 0, "pollbridge_deliveries_total", `sink="app"`, `result="delivered"`)
	want(m, 1, "pollbridge_build_info", `version="test-1.2.3"`, `goversion="`+runtime.Version()+`"`)
	want(m, 1, "pollbridge_sink_state", `sink="app"`, `state="active"`)
	want(m, 0, "pollbridge_sink_state", `sink="app"`, `state="paused"`)
	want(m, 0, "pollbridge_outbox_deliveries", `sink="app"`, `state="pending"`)
	if _, ok := metric(m, "go_goroutines"); !ok {
		t.Error("no Go runtime metrics")
	}

	// A poll that finds two new items, delivered.
	d.call(t, "POST", "/api/sources/orders/poll", "")
	eventually(t, "2 deliveries", func() bool { return r.received() == 2 })
	eventually(t, "the deliveries counted", func() bool {
		v, _ := metric(d.scrape(t), "pollbridge_deliveries_total", `sink="app"`, `result="delivered"`)
		return v == 2
	})
	m = d.scrape(t)
	want(m, 1, "pollbridge_polls_total", `source="orders"`, `result="ok"`)
	want(m, 2, "pollbridge_source_items", `source="orders"`)
	want(m, 2, "pollbridge_changes_total", `source="orders"`, `type="created"`)
	want(m, 0, "pollbridge_changes_total", `source="orders"`, `type="deleted"`)
	want(m, 2, "pollbridge_delivery_attempts_total", `sink="app"`)
	want(m, 1, "pollbridge_poll_duration_seconds_count", `source="orders"`)
	want(m, 2, "pollbridge_delivery_latency_seconds_count", `sink="app"`)
	if v, _ := metric(m, "pollbridge_delivery_latency_seconds_sum", `sink="app"`); v <= 0 || v > 20 {
		t.Errorf("latency sum %v", v)
	}

	// A failing source.
	d.call(t, "POST", "/api/sources/broken/poll", "")
	want(d.scrape(t), 1, "pollbridge_polls_total", `source="broken"`, `result="error"`)

	// A receiver that fails, then refuses: a retry, then a dead letter.
	r.setStatus(http.StatusServiceUnavailable)
	orders.add("3")
	d.call(t, "POST", "/api/sources/orders/poll", "")
	eventually(t, "a retry counted", func() bool {
		v, _ := metric(d.scrape(t), "pollbridge_deliveries_total", `sink="app"`, `result="retry"`)
		return v >= 1
	})
	r.setStatus(http.StatusBadRequest)
	eventually(t, "a dead letter counted and in the outbox", func() bool {
		m := d.scrape(t)
		dead, _ := metric(m, "pollbridge_deliveries_total", `sink="app"`, `result="dead"`)
		inOutbox, _ := metric(m, "pollbridge_outbox_deliveries", `sink="app"`, `state="dead"`)
		return dead == 1 && inOutbox == 1
	})
	m = d.scrape(t)
	if v, _ := metric(m, "pollbridge_changes_total", `source="orders"`, `type="created"`); v != 3 {
		t.Errorf("changes created = %v, want 3", v)
	}
	if v, _ := metric(m, "pollbridge_delivery_attempts_total", `sink="app"`); v < 4 {
		t.Errorf("attempts = %v, want ≥ 4", v)
	}

	// Pause shows in the sink state.
	d.call(t, "POST", "/api/sinks/app/pause", "")
	m = d.scrape(t)
	want(m, 1, "pollbridge_sink_state", `sink="app"`, `state="paused"`)
	want(m, 0, "pollbridge_sink_state", `sink="app"`, `state="active"`)

	// A store that fails counts store errors.
	d.stop(t)
	d.Store.Close()
	if status, body := d.call(t, "POST", "/api/sources/orders/poll", ""); status != http.StatusBadGateway {
		t.Errorf("poll with a closed store: %d %s", status, body)
	}
	want(d.scrape(t), 1, "pollbridge_store_errors_total", `op="load"`)
}

// promtool accepts the exposition (names, types, help, units). Under CI
// promtool must be installed.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not on PATH: CI installs it (apt-get install prometheus)")
		}
		t.Skip("promtool not on PATH (apt-get install prometheus); CI runs this check")
	}
	orders, r := newAPI(t, "1"), newReceiver(t, http.StatusOK)
	d := startDaemon(t, testConfig(orders.URL, orders.URL, r.URL), "")
	d.call(t, "POST", "/api/sources/orders/poll", "")
	eventually(t, "the delivery", func() bool { return r.received() == 1 })
	text := d.scrape(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	if strings.TrimSpace(out.String()) != "" {
		t.Logf("promtool: %s", out.String())
	}
}
