package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A running daemon with an admin listener: `health` follows it, and `dlq`
// and `poll` work through its API although it holds the state file locked.
func TestCLIAgainstARunningDaemon(t *testing.T) {
	const token = "cli-admin-token"
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	addr := freeAddr(t)
	cfg := daemonConfig(t, dir, api.URL, recv.URL, "")
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "bridge.yaml", string(text)+"admin: {listen: "+addr+", token: \"${TEST_ADMIN_TOKEN}\"}\n")
	env := []string{"TEST_ADMIN_TOKEN=" + token}
	url := "http://" + addr

	if r := runCmd(t, env, "health", "-c", cfg); r.code != 1 || !strings.Contains(r.stderr, "unreachable") {
		t.Fatalf("health with no daemon: %+v", r)
	}
	d := startDaemon(t, cfg, env...)
	waitFor(t, "the baseline", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "baseline recorded") })
	if r := runCmd(t, env, "health", "-c", cfg); r.code != 0 || strings.TrimSpace(r.stdout) != "ready" {
		t.Fatalf("health: %+v", r)
	}
	if r := runCmd(t, nil, "health", "-admin", url); r.code != 0 {
		t.Fatalf("health -admin (no token needed): %+v", r)
	}

	recv.set(false, http.StatusUnprocessableEntity)
	api.put("x")
	waitFor(t, "a dead letter", 10*time.Second, func() bool { return strings.Contains(d.stderr.String(), "moved to dead letters") })

	// Through admin.listen of the configuration: the file is locked.
	r := runCmd(t, env, "dlq", "list", "-c", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "orders/x") || !strings.Contains(r.stdout, "422") || !strings.Contains(r.stdout, "item.created") {
		t.Fatalf("dlq list -c: %+v", r)
	}
	// Through -admin: the token comes from the environment.
	if r := runCmd(t, nil, "dlq", "list", "-admin", url); r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("dlq list -admin without token: %+v", r)
	}
	if r := runCmd(t, []string{"POLLBRIDGE_ADMIN_TOKEN=" + token}, "dlq", "list", "-admin", url, "-sink", "app"); r.code != 0 || !strings.Contains(r.stdout, "orders/x") {
		t.Fatalf("dlq list -admin: %+v", r)
	}
	if r := runCmd(t, []string{"POLLBRIDGE_ADMIN_TOKEN=" + token}, "dlq", "replay", "-admin", url); r.code != 2 {
		t.Errorf("dlq replay -admin without -all or ids: %+v", r)
	}
	recv.set(false, 0) // from here on the receiver accepts: only "x" is dead
	api.put("y")
	r = runCmd(t, []string{"POLLBRIDGE_ADMIN_TOKEN=" + token}, "poll", "-admin", url, "orders")
	if r.code != 0 || !strings.Contains(r.stdout, "source orders: 1 page(s), 2 item(s)") || !strings.Contains(r.stdout, "stored state:") {
		t.Fatalf("poll -admin: %+v", r)
	}
	if r := runCmd(t, env, "poll", "-c", cfg, "orders"); r.code != 0 || !strings.Contains(r.stdout, "stored state:") {
		t.Fatalf("poll -c with a running daemon: %+v", r)
	}

	if r := runCmd(t, env, "dlq", "replay", "-c", cfg, "-all"); r.code != 0 || !strings.Contains(r.stdout, "replayed 1") {
		t.Fatalf("dlq replay -c: %+v", r)
	}
	waitFor(t, "the replayed event", 10*time.Second, func() bool {
		for _, h := range recv.got() {
			if h.Data.Key == "x" {
				return true
			}
		}
		return false
	})
	d.term(t)
	if r := runCmd(t, env, "health", "-c", cfg); r.code != 1 {
		t.Errorf("health after the daemon stopped: %+v", r)
	}
	// No daemon: dlq falls back to the state file.
	if r := runCmd(t, env, "dlq", "list", "-c", cfg); r.code != 0 || !strings.Contains(r.stdout, "no dead letters") {
		t.Errorf("dlq list without a daemon: %+v", r)
	}
}

// A daemon whose admin address is taken does not start.
func TestAdminListenerAddressInUse(t *testing.T) {
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	cfg := daemonConfig(t, dir, api.URL, recv.URL, "")
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(api.URL, "http://") // taken by the API
	writeFile(t, dir, "bridge.yaml", string(text)+"admin: {listen: "+addr+"}\n")
	if r := runCmd(t, nil, "run", "-c", cfg); r.code != 1 || !strings.Contains(r.stderr, "admin listener") {
		t.Fatalf("run with a taken admin address: %+v", r)
	}
	if r := runCmd(t, nil, "health", "-c", filepath.Join(dir, "nope.yaml")); r.code != 1 {
		t.Errorf("health with a missing file: %+v", r)
	}
}
