package config

import (
	"strings"
	"testing"
)

func TestAdminSection(t *testing.T) {
	const base = `
sinks: [{name: app, url: "http://127.0.0.1:8080/hooks"}]
sources: [{name: orders, schedule: "@every 10s", url: "http://127.0.0.1:9000/orders", key: id}]
`
	env := envOf(map[string]string{"ADMIN_TOKEN": "t0ken-value", "EMPTY": ""})
	for _, tc := range []struct {
		admin, want string // want: "" for no error, else a substring
	}{
		{``, ""},
		{`admin: {listen: ""}`, ""},
		{`admin: {listen: 127.0.0.1:9090}`, ""},
		{`admin: {listen: "[::1]:9090"}`, ""},
		{`admin: {listen: localhost:9090}`, ""},
		{`admin: {listen: 0.0.0.0:9090, token: "${ADMIN_TOKEN}"}`, ""},
		{`admin: {listen: ":9090", token: "${ADMIN_TOKEN}"}`, ""},
		{`admin: {listen: 0.0.0.0:9090}`, `test.yaml:4: admin.listen: "0.0.0.0:9090" is not a loopback address: set admin.token too`},
		{`admin: {listen: ":9090"}`, `admin.listen: ":9090" is not a loopback address`},
		{`admin: {listen: "10.0.0.5:9090", token: "${EMPTY:-}"}`, `is not a loopback address`},
		{`admin: {listen: 9090}`, `admin.listen: bad address "9090": want host:port`},
		{`admin: {listen: "127.0.0.1:http"}`, `admin.listen: bad port in "127.0.0.1:http"`},
		{`admin: {listen: 127.0.0.1:9090, token: "a b"}`, `admin.token: must not contain white space`},
		{`admin: {listen: 127.0.0.1:9090, tokn: x}`, `admin.tokn: unknown field`},
	} {
		cfg, err := Parse("test.yaml", []byte(base+tc.admin+"\n"), env)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.admin, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want %q", tc.admin, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "t0ken-value"):
			t.Errorf("%s: error shows the token: %v", tc.admin, err)
		case tc.want == "" && strings.Contains(tc.admin, "ADMIN_TOKEN") && cfg.Admin.Token != "t0ken-value":
			t.Errorf("%s: token %q", tc.admin, cfg.Admin.Token)
		}
	}
}
