package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// plantedSecrets are values that must never appear in any output.
var plantedSecrets = []string{
	"tok-PLANTED-4f1d2c", // a source bearer token
	"pw-PLANTED-93ab77",  // a source basic-auth password
	"hdr-PLANTED-0c55e1", // a sink header value
	"qry-PLANTED-a81f30", // an API key sent as a query parameter
}

// echoServer answers every request with an error whose body repeats the
// request's headers and URL, as careless servers do.
func echoServer(t *testing.T, status int) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		fmt.Fprintf(w, "denied %s %v", r.URL, r.Header)
	}))
	t.Cleanup(s.Close)
	return s
}

// Secrets from the environment never reach logs, command output, metrics or
// admin API answers, even when the remote side echoes them back in errors.
func TestSecretsNeverAppearInOutput(t *testing.T) {
	dir := t.TempDir()
	api, api2, hook := echoServer(t, http.StatusInternalServerError), echoServer(t, http.StatusUnauthorized), echoServer(t, http.StatusBadRequest)
	demo := newDemoAPI(t)
	demo.put("a") // its item.created goes to the sink, which echoes and refuses it
	adminAddr := freeAddr(t)
	const adminToken = "adm-PLANTED-77e0b1"
	env := []string{
		"ADMIN_TOKEN=" + adminToken,
		"SRC_TOKEN=" + plantedSecrets[0], "SRC_PASSWORD=" + plantedSecrets[1],
		"HOOK_HEADER=" + plantedSecrets[2], "API_KEY=" + plantedSecrets[3],
		"APP_WEBHOOK_SECRET=" + secret,
	}
	cfg := writeFile(t, dir, "bridge.yaml", fmt.Sprintf(`
state: {path: %s}
log: {level: debug, format: json}
shutdown_timeout: 1s
admin: {listen: "%s", token: "${ADMIN_TOKEN}"}
sinks:
  - name: app
    url: %s
    secret: ${APP_WEBHOOK_SECRET}
    headers: {X-Api-Key: "${HOOK_HEADER}"}
sources:
  - name: orders
    schedule: "@every 1s"
    url: %s
    key: id
    auth: {bearer: "${SRC_TOKEN}"}
  - name: users
    schedule: "@every 1s"
    url: %s
    key: id
    auth: {basic: {username: me, password: "${SRC_PASSWORD}"}}
    query: {api_key: "${API_KEY}"}
  - name: fine
    schedule: "@every 1s"
    url: %s
    items: data
    key: id
    emit_initial: true
`, filepath.Join(dir, "state.db"), adminAddr, hook.URL, api.URL, api2.URL, demo.URL))

	d := startDaemon(t, cfg, env...)
	waitFor(t, "both sources to fail", 15*time.Second, func() bool {
		log := d.stderr.String()
		return strings.Contains(log, `"source":"orders"`) && strings.Contains(log, `"source":"users"`) &&
			strings.Count(log, "poll failed") >= 2 && strings.Contains(log, "moved to dead letters")
	})
	outputs := map[string]string{}
	for _, path := range []string{"/metrics", "/api/info", "/api/sources", "/api/sinks", "/api/dead", "/api/deliveries?state=dead", "/"} {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
		outputs["admin "+path] = string(body)
	}
	if !strings.Contains(outputs["admin /api/dead"], "status 400") || !strings.Contains(outputs["admin /api/deliveries?state=dead"], "status 400") || !strings.Contains(outputs["admin /api/sources"], "orders") || !strings.Contains(outputs["admin /metrics"], "pollbridge_polls_total") {
		t.Errorf("admin answers lack the expected content: %q %q", outputs["admin /api/dead"], outputs["admin /api/sources"])
	}
	d.term(t)
	outputs["daemon log"] = d.stderr.String()
	for _, args := range [][]string{{"poll", "-c", cfg, "orders"}, {"poll", "-c", cfg, "users"}, {"validate", "-c", cfg}, {"dlq", "list", "-c", cfg}} {
		r := runCmd(t, env, args...)
		outputs[strings.Join(args[:1], " ")+" "+args[len(args)-1]] = r.stdout + r.stderr
	}
	for name, out := range outputs {
		for _, s := range append(plantedSecrets, strings.TrimPrefix(secret, "whsec_"), adminToken) {
			if strings.Contains(out, s) {
				t.Errorf("%s contains the planted secret %q:\n%s", name, s, out)
			}
		}
	}
}
