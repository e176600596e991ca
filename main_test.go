package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/sinks"
)

// These tests build the pollbridge binary and run it as a user would: real
// processes, real HTTP servers on loopback, a real state file.

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pollbridge-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "pollbridge")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build pollbridge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is how a finished pollbridge command ended.
type result struct {
	code           int
	stdout, stderr string
}

func runCmd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIUsageAndVersion(t *testing.T) {
	if r := runCmd(t, nil); r.code != 2 || !strings.Contains(r.stderr, "Usage:") {
		t.Errorf("no args: %+v", r)
	}
	if r := runCmd(t, nil, "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %+v", r)
	}
	for _, cmd := range [][]string{{"run", "-h"}, {"validate", "-h"}, {"poll", "-h"}, {"dlq", "list", "-h"}, {"dlq", "replay", "-h"}} {
		r := runCmd(t, nil, cmd...)
		if r.code != 0 || !strings.Contains(r.stderr, "Usage: pollbridge "+cmd[0]) {
			t.Errorf("%v: code %d, stderr %q", cmd, r.code, r.stderr)
		}
	}
	if r := runCmd(t, nil, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "pollbridge ") {
		t.Errorf("version: %+v", r)
	}
	if r := runCmd(t, nil, "poll", "-c", "x.yaml"); r.code != 2 || !strings.Contains(r.stderr, "SOURCE") {
		t.Errorf("poll without SOURCE: %+v", r)
	}
}

func TestCLIValidate(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", `
sinks:
  - name: app
    url: http://127.0.0.1:1/hooks
    secret: ${APP_WEBHOOK_SECRET}
sources:
  - name: orders
    schedule: "@every 10s"
    url: http://127.0.0.1:1/orders
    items: data
    key: id
`)
	r := runCmd(t, []string{"APP_WEBHOOK_SECRET=" + secret}, "validate", "-c", good)
	if r.code != 0 || !strings.Contains(r.stdout, "ok") {
		t.Fatalf("good config: %+v", r)
	}
	r = runCmd(t, nil, "validate", "-c", good) // APP_WEBHOOK_SECRET not set
	if r.code == 0 || !strings.Contains(r.stderr, good+":5: sinks[0].secret:") || !strings.Contains(r.stderr, "APP_WEBHOOK_SECRET") {
		t.Fatalf("missing variable: %+v", r)
	}
	bad := writeFile(t, dir, "bad.yaml", `
sinks:
  - name: app
    url: http://127.0.0.1:1/hooks
sources:
  - name: orders
    schedule: "every ten seconds"
    url: http://127.0.0.1:1/orders
    key: id
    sinks: [nope]
    colour: blue
`)
	r = runCmd(t, nil, "validate", "-c", bad)
	if r.code != 1 || !strings.HasPrefix(r.stderr, bad+":7: ") {
		t.Fatalf("bad config: exit code %d, stderr %q; want 1 and FILE:LINE: lines", r.code, r.stderr)
	}
	for _, want := range []string{bad + ":7: sources[0].schedule:", bad + ":10: sources[0].sinks", bad + ":11: sources[0].colour:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// run refuses the same file before starting anything.
	if r2 := runCmd(t, nil, "run", "-c", bad); r2.code != 1 || !strings.Contains(r2.stderr, bad+":7:") {
		t.Errorf("run with a bad config: %+v", r2)
	}
	if r := runCmd(t, nil, "validate", "-c", filepath.Join(dir, "missing.yaml")); r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("missing file: want one line on stderr, got %+v", r)
	}
}

// demoAPI is a REST API on loopback whose items the tests change. Every
// version of every item carries a version number, so a test can tell a real
// change from an invented one.
type demoAPI struct {
	*httptest.Server
	mu      sync.Mutex
	items   map[string]map[string]any
	version int
	served  map[string]bool // "key@version" of every item version served
}

func newDemoAPI(t *testing.T) *demoAPI {
	a := &demoAPI{items: map[string]map[string]any{}, served: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		keys := make([]string, 0, len(a.items))
		for k := range a.items {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		list := []map[string]any{}
		for _, k := range keys {
			list = append(list, a.items[k])
			a.served[fmt.Sprintf("%s@%v", k, a.items[k]["version"])] = true
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"data": list})
	}))
	t.Cleanup(a.Close)
	return a
}

// put creates or changes item key, returning its new version.
func (a *demoAPI) put(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.version++
	a.items[key] = map[string]any{"id": key, "version": a.version}
	return a.version
}

func (a *demoAPI) del(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.items, key)
}

func (a *demoAPI) snapshot() map[string]float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]float64{}
	for k, it := range a.items {
		out[k] = float64(it["version"].(int))
	}
	return out
}

// hookReceiver verifies and records webhooks; it can hang or fail on demand.
type hookReceiver struct {
	*httptest.Server
	t        *testing.T
	mu       sync.Mutex
	events   []hook          // accepted, in arrival order
	hang     bool            // hold requests until the client gives up
	status   int             // answer with this status instead of 204 (0: 204)
	delay    time.Duration   // how long each request takes
	inFlight map[string]int  // requests being handled, by X-Replica header
	inHang   chan struct{}   // receives when a request starts hanging
	ids      map[string]bool // webhook-ids accepted
}

type hook struct {
	ID   string
	Type string
	Data struct {
		Source string         `json:"source"`
		Key    string         `json:"key"`
		Item   map[string]any `json:"item"`
	}
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{t: t, ids: map[string]bool{}, inHang: make(chan struct{}, 100), inFlight: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := sinks.Verify(secret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("bad signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		replica := r.Header.Get("X-Replica")
		h.mu.Lock()
		hang, status, delay := h.hang, h.status, h.delay
		h.inFlight[replica]++
		h.mu.Unlock()
		time.Sleep(delay) // a slow receiver: deliveries stay in flight a while
		defer func() {
			h.mu.Lock()
			h.inFlight[replica]--
			h.mu.Unlock()
		}()
		if hang {
			h.inHang <- struct{}{}
			<-r.Context().Done()
			return
		}
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		var ev hook
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("body: %v", err)
		}
		ev.ID = r.Header.Get("webhook-id")
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.ids[ev.ID] = true
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) set(hang bool, status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hang, h.status = hang, status
}

func (h *hookReceiver) got() []hook {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hook(nil), h.events...)
}

// daemon is a running `pollbridge run`.
type daemon struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDaemon(t *testing.T, cfgPath string, env ...string) *daemon {
	t.Helper()
	return startDaemonArgs(t, []string{"run", "-c", cfgPath}, env...)
}

// startDaemonArgs runs pollbridge with args until the test ends.
func startDaemonArgs(t *testing.T, args []string, env ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	d := &daemon{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("pollbridge log:\n%s", d.stderr.String())
		}
	})
	return d
}

func (d *daemon) kill9(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

func (d *daemon) term(t *testing.T) {
	t.Helper()
	// Before its signal handler is installed a process dies of SIGTERM.
	waitFor(t, "pollbridge to be running", 10*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "pollbridge running")
	})
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("pollbridge did not stop on SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("pollbridge exited %d after SIGTERM", code)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func daemonConfig(t *testing.T, dir, apiURL, hookURL, extraSink string) string {
	return writeFile(t, dir, "bridge.yaml", fmt.Sprintf(`
state: {path: %s}
log: {level: debug}
shutdown_timeout: 2s
sinks:
  - name: app
    url: %s
    secret: %s
    timeout: 1s
    retry: {initial_backoff: 50ms, max_backoff: 200ms}
%s
sources:
  - name: orders
    schedule: "@every 1s"
    url: %s
    items: data
    key: id
`, filepath.Join(dir, "state.db"), hookURL, secret, extraSink, apiURL))
}

// checkConverged asserts that the webhooks received tell exactly the story
// of the API: every event is about an item version the API really served,
// and replaying the events per key ends in the API's final state.
func checkConverged(t *testing.T, api *demoAPI, baseline map[string]float64, got []hook) {
	t.Helper()
	final := api.snapshot()
	seen := map[string]bool{}
	state := maps.Clone(baseline)
	for _, ev := range got {
		if seen[ev.ID] {
			continue // an at-least-once redelivery: same id, receivers skip it
		}
		seen[ev.ID] = true
		switch ev.Type {
		case "item.created", "item.updated":
			v := ev.Data.Item["version"].(float64)
			api.mu.Lock()
			real := api.served[fmt.Sprintf("%s@%v", ev.Data.Key, v)]
			api.mu.Unlock()
			if !real {
				t.Errorf("invented event: %s %s version %v was never served", ev.Type, ev.Data.Key, v)
			}
			state[ev.Data.Key] = v
		case "item.deleted":
			delete(state, ev.Data.Key)
		default:
			t.Errorf("unknown event type %q", ev.Type)
		}
	}
	for k, v := range final {
		if state[k] != v {
			t.Errorf("item %s: webhooks say version %v, API has %v (a change was missed)", k, state[k], v)
		}
	}
	for k := range state {
		if _, ok := final[k]; !ok {
			t.Errorf("item %s: webhooks say it exists, API deleted it", k)
		}
	}
}

// kill -9 while a delivery is in flight: after a restart the event is
// delivered, with the same webhook-id.
func TestKill9MidDispatchDeliversAfterRestart(t *testing.T) {
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	api.put("a")
	baseline := api.snapshot()
	cfg := daemonConfig(t, dir, api.URL, recv.URL, "")
	d := startDaemon(t, cfg)
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })

	recv.set(true, 0)
	api.put("b")
	select {
	case <-recv.inHang:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery attempt")
	}
	d.kill9(t)
	if n := len(recv.got()); n != 0 {
		t.Fatalf("%d events accepted before the kill", n)
	}

	recv.set(false, 0)
	startDaemon(t, cfg)
	waitFor(t, "the delivery after restart", 10*time.Second, func() bool { return len(recv.got()) >= 1 })
	got := recv.got()
	if got[0].Type != "item.created" || got[0].Data.Key != "b" {
		t.Fatalf("got %+v", got[0])
	}
	checkConverged(t, api, baseline, got)
}

// kill -9 at arbitrary moments while the API changes: no change is lost and
// none is invented.
func TestKill9AtAnyMomentLosesAndInventsNothing(t *testing.T) {
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	for _, k := range []string{"a", "b", "c", "d"} {
		api.put(k)
	}
	baseline := api.snapshot()
	cfg := daemonConfig(t, dir, api.URL, recv.URL, "")
	d := startDaemon(t, cfg)
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })

	keys := []string{"a", "b", "c", "d", "e", "f"}
	for round := range 6 {
		// Change a few items, give the daemon a moment, kill it.
		for i := range 3 {
			k := keys[(round*3+i)%len(keys)]
			if (round+i)%4 == 3 {
				api.del(k)
			} else {
				api.put(k)
			}
		}
		time.Sleep(time.Duration(300+round*170) * time.Millisecond) // the "any moment" of the kill
		d.kill9(t)
		d = startDaemon(t, cfg)
	}
	// Let the last daemon catch up with the final state.
	want := api.snapshot()
	waitFor(t, "convergence", 20*time.Second, func() bool {
		state := maps.Clone(baseline)
		for _, ev := range recv.got() {
			if ev.Type == "item.deleted" {
				delete(state, ev.Data.Key)
			} else {
				state[ev.Data.Key] = ev.Data.Item["version"].(float64)
			}
		}
		if len(state) != len(want) {
			return false
		}
		for k, v := range want {
			if state[k] != v {
				return false
			}
		}
		return true
	})
	d.term(t)
	checkConverged(t, api, baseline, recv.got())
}

// A 4xx dead-letters the event; `dlq list` shows it and `dlq replay`
// delivers it on the next run.
func TestCLIDeadLetters(t *testing.T) {
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	cfg := daemonConfig(t, dir, api.URL, recv.URL, "")
	d := startDaemon(t, cfg)
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })
	recv.set(false, http.StatusUnprocessableEntity)
	api.put("x")
	waitFor(t, "a dead letter", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "moved to dead letters") })
	d.term(t)

	r := runCmd(t, nil, "dlq", "list", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "item.created") || !strings.Contains(r.stdout, "orders/x") || !strings.Contains(r.stdout, "422") {
		t.Fatalf("dlq list: %+v", r)
	}
	if r := runCmd(t, nil, "dlq", "replay", "-c", cfg); r.code != 2 {
		t.Errorf("replay without -all or ids: %+v", r)
	}
	if r := runCmd(t, nil, "dlq", "replay", "-c", cfg, "-all"); r.code != 0 || !strings.Contains(r.stdout, "replayed 1") {
		t.Fatalf("dlq replay: %+v", r)
	}
	recv.set(false, 0)
	d = startDaemon(t, cfg)
	waitFor(t, "the replayed delivery", 10*time.Second, func() bool { return len(recv.got()) == 1 })
	d.term(t)
	if r := runCmd(t, nil, "dlq", "list", "-c", cfg); !strings.Contains(r.stdout, "no dead letters") {
		t.Errorf("dlq list after replay: %+v", r)
	}
}

// `poll` shows items and would-be events and commits nothing.
func TestCLIPollIsADryRun(t *testing.T) {
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	api.put("a")
	cfg := daemonConfig(t, dir, api.URL, recv.URL, "")
	r := runCmd(t, nil, "poll", "-c", cfg, "orders")
	if r.code != 0 || !strings.Contains(r.stdout, "1 item(s)") || !strings.Contains(r.stdout, "baseline") {
		t.Fatalf("poll with no state: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		t.Fatal("poll created the state file")
	}
	d := startDaemon(t, cfg)
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })
	d.term(t)
	api.put("a")
	api.put("b")
	for range 2 { // twice: the first dry run must not have committed
		r = runCmd(t, nil, "poll", "-c", cfg, "orders")
		if r.code != 0 || !strings.Contains(r.stdout, "2 event(s)") || !strings.Contains(r.stdout, `"type":"item.updated"`) || !strings.Contains(r.stdout, `"type":"item.created"`) {
			t.Fatalf("poll: %+v", r)
		}
	}
	if n := len(recv.got()); n != 0 {
		t.Fatalf("poll sent %d webhooks", n)
	}
	if r := runCmd(t, nil, "poll", "-c", cfg, "nope"); r.code != 1 || !strings.Contains(r.stderr, `no source "nope"`) {
		t.Errorf("unknown source: %+v", r)
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess runs a helper program until the test ends.
func startProcess(t *testing.T, stdout io.Writer, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = stdout, stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// The quickstart as the README runs it: the shipped bridge.yaml, the demo
// API and the receiver (on free ports instead of 9000 and 8080). Verified
// webhooks must arrive well within a minute.
func TestQuickstartDeliversVerifiedWebhooks(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "./examples/demoapi", "./examples/receiver").CombinedOutput()
	if err != nil {
		t.Fatalf("build examples: %v\n%s", err, out)
	}
	apiAddr, hookAddr := freeAddr(t), freeAddr(t)
	text, err := os.ReadFile("bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("127.0.0.1:9000", apiAddr, "127.0.0.1:8080", hookAddr, "127.0.0.1:9090", freeAddr(t),
		"./pollbridge.db", filepath.Join(dir, "state.db")).Replace(string(text))
	cfgPath := writeFile(t, dir, "bridge.yaml", cfg)

	const demoSecret = "whsec_cG9sbGJyaWRnZSBxdWlja3N0YXJ0IGRlbW8ga2V5ISE="
	receiverOut := &syncBuffer{}
	startProcess(t, io.Discard, filepath.Join(dir, "demoapi"), "-addr", apiAddr, "-mutate", "300ms")
	startProcess(t, receiverOut, filepath.Join(dir, "receiver"), "-addr", hookAddr, "-secret", demoSecret)
	t.Setenv("APP_WEBHOOK_SECRET", demoSecret)
	if r := runCmd(t, nil, "validate", "-c", cfgPath); r.code != 0 {
		t.Fatalf("shipped bridge.yaml does not validate: %+v", r)
	}
	d := startDaemon(t, cfgPath)
	start := time.Now()
	waitFor(t, "verified webhooks at the receiver", 60*time.Second, func() bool {
		return strings.Count(receiverOut.String(), "verified msg_") >= 3
	})
	t.Logf("3 verified webhooks %v after start", time.Since(start).Round(time.Millisecond))
	if strings.Contains(receiverOut.String(), "\nrejected ") {
		t.Errorf("receiver rejected a webhook:\n%s", receiverOut.String())
	}
	d.term(t)
}
