package bridge_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store/boltstore"
	"github.com/pollbridge/pollbridge/sinks"
	"github.com/pollbridge/pollbridge/sources"
)

// BenchmarkPoll measures one poll of a 100-item page that has not changed,
// answered 304 (not_modified) or 200 with the same body (unchanged), on the
// embedded store. The API is an httptest server in the same process, so
// its work is counted too; the load harness (bench/) measures pollbridge
// alone.
func BenchmarkPoll(b *testing.B) {
	var page strings.Builder
	page.WriteString("[")
	for i := range 100 {
		if i > 0 {
			page.WriteString(",")
		}
		fmt.Fprintf(&page, `{"id":%d,"customer":"customer-%d","status":"new","total":%d.50,"lines":[{"sku":"a","qty":1}],"updated_at":"2026-11-27T12:00:00Z"}`, i, i, i)
	}
	page.WriteString("]")
	body := page.String()
	for _, tc := range []struct {
		name string
		etag bool
	}{{"not_modified", true}, {"unchanged", false}} {
		b.Run(tc.name, func(b *testing.B) {
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.etag {
					if r.Header.Get("If-None-Match") == `"v1"` {
						w.WriteHeader(http.StatusNotModified)
						return
					}
					w.Header().Set("ETag", `"v1"`)
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(body))
			}))
			defer api.Close()
			cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
state: {path: %s}
sinks: [{name: app, url: http://127.0.0.1:9/}]
sources: [{name: orders, schedule: "@every 1h", url: %s, key: id}]
`, filepath.Join(b.TempDir(), "s.db"), api.URL)), nil)
			if err != nil {
				b.Fatal(err)
			}
			st, err := boltstore.Open(cfg.State.Path, boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			src, _ := sources.New(cfg.Sources[0], nil)
			snk, _ := sinks.New(cfg.Sinks[0], nil)
			eng, err := bridge.New(cfg, st, map[string]bridge.Source{"orders": src}, map[string]bridge.Sink{"app": snk},
				bridge.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, err := eng.Poll(ctx, "orders"); err != nil { // the baseline
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				res, err := eng.Poll(ctx, "orders")
				if err != nil || !res.NotModified {
					b.Fatalf("poll = %+v, %v; want not modified", res, err)
				}
			}
		})
	}
}
