package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadConfig writes a configuration with the given sinks and sources.
func reloadConfig(t *testing.T, dir, sinksYAML, sourcesYAML string) string {
	return writeFile(t, dir, "bridge.yaml", fmt.Sprintf(`
state: {path: %s}
log: {level: debug}
shutdown_timeout: 2s
sinks:
%s
sources:
%s`, filepath.Join(dir, "state.db"), sinksYAML, sourcesYAML))
}

func sinkYAML(name, url string) string {
	return fmt.Sprintf("  - {name: %s, url: %s, secret: %s, timeout: 1s, retry: {initial_backoff: 50ms, max_backoff: 200ms}}\n", name, url, secret)
}

func sourceYAML(name, url, sink string) string {
	return fmt.Sprintf("  - {name: %s, schedule: \"@every 1s\", url: %s, items: data, key: id, sinks: [%s]}\n", name, url, sink)
}

// SIGHUP applies an edited file: a new source and sink start, a changed
// sink takes over its undelivered events, and a broken file is rejected
// with file:line errors while the running configuration carries on.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	api1, api2 := newDemoAPI(t), newDemoAPI(t)
	down, up, audit := newHookReceiver(t), newHookReceiver(t), newHookReceiver(t)
	cfg := reloadConfig(t, dir, sinkYAML("app", down.URL), sourceYAML("orders", api1.URL, "app"))
	d := startDaemon(t, cfg)
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })

	// The app's receiver is down: the event waits in the outbox.
	down.set(false, http.StatusServiceUnavailable)
	api1.put("a")
	waitFor(t, "a failed attempt", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "will retry") })

	// Point the app sink elsewhere, add a source with its own sink.
	reloadConfig(t, dir, sinkYAML("app", up.URL)+sinkYAML("audit", audit.URL),
		sourceYAML("orders", api1.URL, "app")+sourceYAML("invoices", api2.URL, "audit"))
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "configuration reloaded") })
	waitFor(t, "the waiting event at the new URL", 10*time.Second, func() bool { return len(up.got()) == 1 })
	if h := up.got()[0]; h.Data.Key != "a" || h.Type != "item.created" {
		t.Fatalf("moved event = %+v", h)
	}
	waitFor(t, "the new source's baseline", 10*time.Second, func() bool {
		return strings.Count(d.stderr.String(), "baseline recorded") == 2
	})
	api2.put("x")
	waitFor(t, "the new source's event", 10*time.Second, func() bool { return len(audit.got()) == 1 })

	// A broken file is refused with file:line errors; nothing stops.
	writeFile(t, dir, "bridge.yaml", "sinks:\n  - name: app\n    ur1: http://x\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the rejection", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "reload rejected") })
	if log := d.stderr.String(); !strings.Contains(log, cfg+":3: sinks[0].ur1: unknown field") {
		t.Errorf("rejection does not name file:line:\n%s", log)
	}
	api1.put("b")
	waitFor(t, "delivery under the old configuration", 10*time.Second, func() bool { return len(up.got()) == 2 })
	d.term(t)
}

// With -watch, saving the file is enough.
func TestReloadOnFileChange(t *testing.T) {
	dir := t.TempDir()
	api1, api2 := newDemoAPI(t), newDemoAPI(t)
	recv := newHookReceiver(t)
	cfg := reloadConfig(t, dir, sinkYAML("app", recv.URL), sourceYAML("orders", api1.URL, "app"))
	d := startDaemonArgs(t, []string{"run", "-c", cfg, "-watch"})
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })
	reloadConfig(t, dir, sinkYAML("app", recv.URL), sourceYAML("orders", api1.URL, "app")+sourceYAML("invoices", api2.URL, "app"))
	waitFor(t, "the reload", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "configuration reloaded") })
	waitFor(t, "the new source's baseline", 10*time.Second, func() bool {
		return strings.Count(d.stderr.String(), "baseline recorded") == 2
	})
	api2.put("y")
	waitFor(t, "the new source's event", 10*time.Second, func() bool { return len(recv.got()) == 1 })
	d.term(t)
}

// A reload that changes the state backend is refused: the store is opened
// once, at start.
func TestReloadRefusesAnotherStateBackend(t *testing.T) {
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	cfg := reloadConfig(t, dir, sinkYAML("app", recv.URL), sourceYAML("orders", api.URL, "app"))
	d := startDaemon(t, cfg)
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })
	text := strings.Replace(readFile(t, cfg), "state.db", "other.db", 1)
	writeFile(t, dir, "bridge.yaml", text)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal", 10*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "changing the state backend needs a restart")
	})
	if strings.Contains(d.stderr.String(), "configuration reloaded") {
		t.Error("the reload was applied")
	}
	api.put("a")
	waitFor(t, "delivery under the old configuration", 10*time.Second, func() bool { return len(recv.got()) == 1 })
	d.term(t)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
