package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the harness's children too: the
// harness re-executes its own binary with `__child ROLE`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := childMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHarnessTiny runs the harness end to end in a tiny configuration:
// the fleet scenario (5 sources × 20 items, mutations, a 3 s window) on
// bolt, and on Redis too when REDIS_URL is set (as in CI), and the
// unchanged scenario (100 sources × 20 items, a 3 s window) with its floor
// on bolt. It asserts the correctness
// figures and that CPU and memory were measured.
func TestHarnessTiny(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("builds and runs pollbridge")
	}
	backends := []string{"bolt"}
	redisURL := os.Getenv("REDIS_URL")
	if redisURL != "" {
		backends = append(backends, "redis")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := options{repo: ".", backends: backends, redisURL: redisURL}
	e, _, cleanup, err := newEnv(ctx, o, t.Output(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)

	for _, backend := range backends {
		t.Run("fleet/"+backend, func(t *testing.T) {
			res := e.runScenario(ctx, scFleet, backend, scale{Sources: 5, Items: 20, Window: 3 * time.Second, Rate: 10})
			report(t, res)
			cr := res.check
			if cr == nil {
				t.Fatal("no check result")
			}
			if cr.Mutations == 0 || cr.Expected == 0 {
				t.Errorf("mutations %d, changes owed %d: want some", cr.Mutations, cr.Expected)
			}
			if cr.Missed != 0 || cr.Spurious != 0 || cr.BadBodies != 0 || cr.Unobserved != 0 {
				t.Errorf("missed %d, spurious %d, bad bodies %d, never fetched %d: want 0 (%s)",
					cr.Missed, cr.Spurious, cr.BadBodies, cr.Unobserved, strings.Join(cr.Samples, "; "))
			}
			if n := rowValue(res, "signature failures"); n != 0 {
				t.Errorf("signature failures %v, want 0", n)
			}
			if res.pbCPU <= 0 || res.peakRSS <= 0 {
				t.Errorf("pollbridge CPU %v s, peak RSS %d: want both > 0", res.pbCPU, res.peakRSS)
			}
			if len(cr.Latencies) == 0 {
				t.Error("no latencies measured")
			}
		})
	}
	t.Run("unchanged/bolt", func(t *testing.T) {
		// Enough polls that pollbridge's CPU is many /proc ticks (10 ms):
		// an unchanged poll costs about 0.2 ms.
		res := e.runScenario(ctx, scUnchanged, "bolt", scale{Sources: 100, Items: 20, Window: 3 * time.Second})
		report(t, res)
		if res.pbCPU <= 0 || res.floorCPU <= 0 || res.peakRSS <= 0 {
			t.Errorf("pollbridge CPU %v s, floor CPU %v s, peak RSS %d: want all > 0", res.pbCPU, res.floorCPU, res.peakRSS)
		}
		if res.check == nil || res.check.Spurious != 0 {
			t.Errorf("webhooks for unchanged sources: %+v", res.check)
		}
		if n := rowValue(res, "failed polls in the window"); n != 0 {
			t.Errorf("failed polls %v, want 0", n)
		}
	})
}

// report fails t on a scenario error and logs the result's table.
func report(t *testing.T, res *result) {
	t.Helper()
	var b strings.Builder
	res.markdown(&b)
	t.Log(b.String())
	if res.Error != "" {
		t.Fatalf("%s/%s: %s", res.Scenario, res.Backend, res.Error)
	}
}

// rowValue returns the value of the row named metric, or -1.
func rowValue(res *result, metric string) float64 {
	for _, x := range res.Rows {
		if x.Metric == metric && x.Value != nil {
			return *x.Value
		}
	}
	return -1
}

func TestCheckCollapsesBetweenPolls(t *testing.T) {
	// Source 0 has items 0 and 1 at version 1. Between fetch 1 (baseline,
	// generation 0) and fetch 2 (generation 4): item 0 updated twice,
	// item 2 created then deleted, item 1 deleted. Between fetch 2 and
	// fetch 3 (generation 5): item 3 created.
	k0, k1, k2, k3 := itemKey(0, 0), itemKey(0, 1), itemKey(0, 2), itemKey(0, 3)
	log := apiLog{
		Mutations: []mutation{
			{S: 0, K: k0, T: mutUpdate, V: 2, G: 1, At: 10},
			{S: 0, K: k2, T: mutCreate, V: 1, G: 2, At: 20},
			{S: 0, K: k0, T: mutUpdate, V: 3, G: 3, At: 30},
			{S: 0, K: k2, T: mutDelete, V: 1, G: 4, At: 40},
			{S: 0, K: k1, T: mutDelete, V: 1, G: 4, At: 45},
			{S: 0, K: k3, T: mutCreate, V: 1, G: 5, At: 60},
		},
		Served: []served{{S: 0, G: 0, At: 5}, {S: 0, G: 4, At: 50}, {S: 0, G: 4, At: 55}, {S: 0, G: 5, At: 70}},
	}
	hooks := []hook{
		{At: 100, ID: "a", Type: "item.updated", Source: "s0", Key: k0, Version: 3},
		{At: 110, ID: "b", Type: "item.deleted", Source: "s0", Key: k1, Version: 1},
		{At: 120, ID: "b", Type: "item.deleted", Source: "s0", Key: k1, Version: 1}, // redelivery
		{At: 130, ID: "c", Type: "item.created", Source: "s0", Key: k3, Version: 1},
		{At: 140, ID: "d", Type: "item.updated", Source: "s0", Key: k0, Version: 2}, // never owed
	}
	cr := check(checkInput{Sources: 1, Items: 2, Log: log, Hooks: hooks})
	want := checkResult{Expected: 3, Received: 5, Distinct: 4, Matched: 3, Duplicates: 1, Spurious: 1, Mutations: 6, Collapsed: 2}
	got := cr
	got.Latencies, got.Pipeline, got.Samples = nil, nil, nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("check:\n got %+v\nwant %+v", got, want)
	}
	// Item 0's two updates are both covered by the webhook at 100.
	lat := fmt.Sprint(cr.Latencies)
	for _, d := range []string{"90ns", "70ns", "65ns"} {
		if !strings.Contains(lat, d) {
			t.Errorf("latencies %s lack %s", lat, d)
		}
	}
}

func TestRESPCounter(t *testing.T) {
	stream := "*2\r\n$3\r\nGET\r\n$10\r\npre:sink:a\r\n" +
		"*3\r\n$4\r\nHGET\r\n$8\r\npre:{s1}\r\n$3\r\ngen\r\n" +
		"PING\r\n" +
		"*1\r\n$4\r\nEXEC\r\n"
	// Feed it in every chunk size: the counts must not depend on reads.
	for size := 1; size <= len(stream); size++ {
		r := respCounter{marker: []byte("pre:sink:")}
		var cmds, marked int64
		for i := 0; i < len(stream); i += size {
			c, m := r.feed([]byte(stream[i:min(i+size, len(stream))]))
			cmds, marked = cmds+c, marked+m
		}
		if cmds != 4 || marked != 1 {
			t.Fatalf("chunks of %d: %d commands, %d marked; want 4, 1", size, cmds, marked)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	before := parseMetrics(`# HELP x
lag_bucket{le="0.01"} 0
lag_bucket{le="0.1"} 0
lag_bucket{le="+Inf"} 0
`)
	after := parseMetrics(`lag_bucket{le="0.01"} 50
lag_bucket{le="0.1"} 100
lag_bucket{le="+Inf"} 100
other{a="b",c="d"} 3
`)
	if v, ok := histogramQuantile(before, after, "lag", 0.5); !ok || v != 0.01 {
		t.Errorf("p50 = %v, %v; want 0.01", v, ok)
	}
	if v, ok := histogramQuantile(before, after, "lag", 0.99); !ok || v < 0.098 || v > 0.1 {
		t.Errorf("p99 = %v, %v; want 0.0982", v, ok)
	}
	if got := after.sum("other", "c", "d"); got != 3 {
		t.Errorf("sum = %v, want 3", got)
	}
}

// testLogger logs warnings to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
