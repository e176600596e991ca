package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// testSecret is the Standard Webhooks specification's example secret.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// envOf returns a lookup function over a fixed environment.
func envOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// testdataEnv is the environment the testdata files are loaded with.
var testdataEnv = map[string]string{
	"APP_WEBHOOK_SECRET": testSecret,
	"ORDERS_TOKEN":       "s3cr3t: #tok",
	"SCHEDULE":           "hourly",
	"BAD_SECRET":         "not-a-whsec-secret",
	"DEPLOY_ENV":         "",
}

// mustErrors asserts that err is a non-nil *Errors and returns its lines.
func mustErrors(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	errs, ok := err.(*Errors)
	if !ok {
		t.Fatalf("error is %T, not *Errors: %v", err, err)
	}
	if len(*errs) == 0 {
		t.Fatal("*Errors is empty")
	}
	return strings.Split(errs.Error(), "\n")
}

func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.bad.yaml files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					want = append(want, w)
				}
			}
			if len(want) == 0 {
				t.Fatal("file has no # want: lines")
			}
			cfg, err := Parse(filepath.Base(file), data, envOf(testdataEnv))
			if cfg != nil {
				t.Errorf("got a config along with the error")
			}
			got := mustErrors(t, err)
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("missing error line\n  want: %s", w)
				}
			}
			for _, g := range got {
				if !slices.Contains(want, g) {
					t.Errorf("unexpected error line\n  got: %s", g)
				}
			}
			if !slices.IsSortedFunc(*err.(*Errors), func(a, b Error) int { return a.Line - b.Line }) {
				t.Errorf("errors not sorted by line:\n%v", err)
			}
		})
	}
}

func TestGoodFile(t *testing.T) {
	got, err := Load("testdata/good.yaml", envOf(testdataEnv))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ratio := func(f float64) *float64 { return &f }
	common := map[string]string{"Accept": "application/json", "User-Agent": "pollbridge-test"}
	want := &Config{
		Path:            "testdata/good.yaml",
		State:           State{Path: "/var/lib/pollbridge/state.db"},
		Log:             Log{Level: "debug", Format: "json"},
		ShutdownTimeout: 20 * time.Second,
		Sinks: []Sink{{
			Name:           "app",
			Type:           "webhook",
			URL:            "http://127.0.0.1:8080/hooks",
			Secret:         testSecret,
			Headers:        map[string]string{"X-Env": "dev"},
			Format:         "standard",
			Timeout:        3 * time.Second,
			Concurrency:    8,
			Retry:          Retry{InitialBackoff: time.Second, MaxBackoff: 10 * time.Minute, MaxAge: 2 * time.Hour, MaxAttempts: 12},
			CircuitBreaker: CircuitBreaker{Failures: 5, Cooldown: 30 * time.Second},
		}, {
			Name:           "debug",
			Type:           "stdout",
			Timeout:        10 * time.Second,
			Concurrency:    4,
			Retry:          Retry{InitialBackoff: 5 * time.Second, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour},
			CircuitBreaker: CircuitBreaker{Failures: 5, Cooldown: 30 * time.Second},
		}, {
			Name:           "audit",
			Type:           "webhook",
			URL:            "https://audit.example.com/in",
			Format:         "standard",
			Timeout:        10 * time.Second,
			Concurrency:    4,
			Retry:          Retry{InitialBackoff: 5 * time.Second, MaxBackoff: time.Hour, MaxAge: 24 * time.Hour},
			CircuitBreaker: CircuitBreaker{Failures: 5, Cooldown: 30 * time.Second},
		}},
		Sources: []Source{{
			Name:     "orders",
			Schedule: "@every 10s",
			URL:      "http://127.0.0.1:9000/orders?token=s3cr3t: #tok",
			Headers: map[string]string{
				"Accept":        "application/json",
				"User-Agent":    "pollbridge-test",
				"Authorization": "Bearer s3cr3t: #tok",
			},
			Timeout:        5 * time.Second,
			MaxBodySize:    512 << 10,
			Items:          "data.items",
			Key:            KeyPaths{"id"},
			Ignore:         []string{"updated_at", "meta.etag"},
			Sinks:          []string{"app", "debug"},
			EmitInitial:    true,
			MaxDeleteRatio: ratio(1),
		}, {
			Name:           "users.v2",
			Schedule:       "*/5 * * * *",
			URL:            "https://api.example.com/users",
			Headers:        common,
			Timeout:        30 * time.Second,
			MaxBodySize:    10 << 20,
			Key:            KeyPaths{"id"},
			Sinks:          []string{"app", "debug", "audit"},
			MaxDeleteRatio: ratio(0.5),
		}, {
			Name:           "status",
			Schedule:       "@hourly",
			URL:            "https://status.example.com/summary.json",
			Timeout:        30 * time.Second,
			MaxBodySize:    1048576,
			Sinks:          []string{"app", "debug", "audit"},
			MaxDeleteRatio: ratio(0.25),
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(good.yaml) =\n%+v\nwant\n%+v", *got, *want)
	}
	if s, ok := got.Sink("audit"); !ok || s.URL != "https://audit.example.com/in" {
		t.Errorf(`Sink("audit") = %+v, %v`, s, ok)
	}
	if _, ok := got.Sink("nope"); ok {
		t.Error(`Sink("nope") found a sink`)
	}
	if s, ok := got.Source("users.v2"); !ok || s.Schedule != "*/5 * * * *" {
		t.Errorf(`Source("users.v2") = %+v, %v`, s, ok)
	}
	if _, ok := got.Source("app"); ok {
		t.Error(`Source("app") found a source`)
	}
}

// minimal is a valid configuration with one sink and one source; %s is
// replaced by extra source settings.
const minimal = `sinks:
  - name: app
    url: http://127.0.0.1:8080/hooks
sources:
  - name: orders
    schedule: "@every 10s"
    url: http://127.0.0.1:9000/orders
    key: id
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse("min.yaml", []byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	sk, src := cfg.Sinks[0], cfg.Sources[0]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"state.path", cfg.State.Path, "./pollbridge.db"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "text"},
		{"shutdown_timeout", cfg.ShutdownTimeout, 15 * time.Second},
		{"sink type", sk.Type, "webhook"},
		{"sink timeout", sk.Timeout, 10 * time.Second},
		{"sink concurrency", sk.Concurrency, 4},
		{"initial_backoff", sk.Retry.InitialBackoff, 5 * time.Second},
		{"max_backoff", sk.Retry.MaxBackoff, time.Hour},
		{"max_age", sk.Retry.MaxAge, 24 * time.Hour},
		{"max_attempts", sk.Retry.MaxAttempts, 0},
		{"source timeout", src.Timeout, 30 * time.Second},
		{"max_body_size", src.MaxBodySize, ByteSize(10 << 20)},
		{"max_delete_ratio", *src.MaxDeleteRatio, 0.5},
		{"source sinks", src.Sinks, []string{"app"}},
		{"emit_initial", src.EmitInitial, false},
		{"keep_bodies", src.KeepsBodies(), true},
		{"path", cfg.Path, "min.yaml"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{
		"TOKEN": "s3cr3t: #not-a-comment ${NOT_EXPANDED}",
		"EMPTY": "",
		"SET":   "from-env",
	}
	for _, c := range []struct {
		name, value string
		want        string // header value after expansion
		wantErr     string // error line, when the value is bad
	}{
		{name: "plain", value: "Bearer ${TOKEN}", want: "Bearer s3cr3t: #not-a-comment ${NOT_EXPANDED}"},
		{name: "set beats default", value: "${SET:-dflt}", want: "from-env"},
		{name: "default when unset", value: "${UNSET:-dflt value}", want: "dflt value"},
		{name: "default when empty", value: "${EMPTY:-dflt}", want: "dflt"},
		{name: "empty without default", value: "x${EMPTY}y", wantErr: "env.yaml:9: sources[0].headers.X-Test: environment variable EMPTY is empty (write ${EMPTY:-} if empty is intended)"},
		{name: "empty allowed by an empty default", value: "x${EMPTY:-}y", want: "xy"},
		{name: "empty default", value: "${UNSET:-}", want: ""},
		{name: "dollar dollar", value: "cost $$5 $${SET}", want: "cost $5 ${SET}"},
		{name: "lone dollar kept", value: "a$b $ c$", want: "a$b $ c$"},
		{name: "two references", value: "${SET}/${SET}", want: "from-env/from-env"},
		{name: "missing", value: "Bearer ${NOPE}", wantErr: "env.yaml:9: sources[0].headers.X-Test: environment variable NOPE is not set"},
		{name: "bad name", value: "${A-B}", wantErr: "env.yaml:9: sources[0].headers.X-Test: bad variable reference: use ${NAME} or ${NAME:-default}, NAME being letters, digits and _ (write $$ for a literal $)"},
		{name: "unterminated", value: "${SET", wantErr: "env.yaml:9: sources[0].headers.X-Test: unterminated ${ (write $$ for a literal $)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := minimal[:strings.Index(minimal, "    key: id")] +
				"    headers:\n      X-Test: '" + strings.ReplaceAll(c.value, "'", "''") + "'\n    key: id\n"
			cfg, err := Parse("env.yaml", []byte(doc), envOf(env))
			if c.wantErr != "" {
				got := mustErrors(t, err)
				if len(got) != 1 || got[0] != c.wantErr {
					t.Errorf("errors = %q, want %q", got, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Sources[0].Headers["X-Test"]; got != c.want {
				t.Errorf("X-Test = %q, want %q", got, c.want)
			}
		})
	}
}

func TestExpandEnvNotInKeys(t *testing.T) {
	doc := strings.Replace(minimal, "    key: id\n", "    key: id\n    headers:\n      X-${SET}: v\n", 1)
	cfg, err := Parse("k.yaml", []byte(doc), envOf(map[string]string{"SET": "x"}))
	lines := mustErrors(t, err)
	if cfg != nil || len(lines) != 1 || !strings.Contains(lines[0], "sources[0].headers.X-${SET}: bad header name") {
		t.Errorf("got %q", lines)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	secrets := map[string]string{
		"SECRET":  "sup3r-s3cret-value",
		"URL":     "http://user:sup3r-s3cret-url@exa mple.com/%zz",
		"TOKEN":   "sup3r-s3cret-token\r\nX-Injected: 1",
		"SCHED":   "*/5 sup3r-s3cret-sched * * *",
		"NAME":    "sup3r s3cret name",
		"TIMEOUT": "sup3r-s3cret-timeout",
		"SIZE":    "sup3r-s3cret-size",
		"RATIO":   "sup3r-s3cret-ratio",
		"BOOL":    "sup3r-s3cret-bool",
		"CONC":    "sup3r-s3cret-conc",
		"PATH":    "sup3r..s3cret",
		"LEVEL":   "sup3r-s3cret-level",
		"TYPE":    "sup3r-s3cret-type",
	}
	doc := `log:
  level: ${LEVEL}
sinks:
  - name: ${NAME}
    type: ${TYPE}
    url: ${URL}
    secret: ${SECRET}
    concurrency: ${CONC}
  - name: app
    url: ${URL}
    secret: whsec_${SECRET}
    headers: {Authorization: "Bearer ${TOKEN}"}
sources:
  - name: orders
    schedule: ${SCHED}
    url: https://api.example.com/x?key=${TOKEN}
    headers: {Authorization: "Bearer ${TOKEN}"}
    timeout: ${TIMEOUT}
    max_body_size: ${SIZE}
    max_delete_ratio: ${RATIO}
    emit_initial: ${BOOL}
    items: ${PATH}
    key: ${PATH}
    sinks: [app, "${NAME}"]
`
	_, err := Parse("secret.yaml", []byte(doc), envOf(secrets))
	lines := mustErrors(t, err)
	if len(lines) < 15 {
		t.Errorf("got %d errors, want one per bad field:\n%s", len(lines), err)
	}
	for _, line := range lines {
		if strings.Contains(line, "s3cret") || strings.Contains(line, "sup3r") {
			t.Errorf("error leaks a secret: %s", line)
		}
	}
	// The same secrets written literally in the file are not shown either.
	literal := strings.NewReplacer("${SECRET}", "hunter2hunter2", "${URL}", "http://a:hunter2hunter2@b c/").Replace(doc)
	_, err = Parse("secret.yaml", []byte(literal), envOf(secrets))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("literal secret leaked or no error: %v", err)
	}
}

func TestAliasesAndMerge(t *testing.T) {
	doc := `x-defaults: &src
  schedule: "@every 1m"
  key: id
  timeout: 7s
x-headers: &h {Accept: application/json}
sinks:
  - name: app
    url: http://127.0.0.1:8080/hooks
sources:
  - <<: *src
    name: a
    url: http://127.0.0.1:9000/a
    timeout: 9s
    headers: *h
  - <<: [{timeout: 3s}, *src]
    name: b
    url: http://127.0.0.1:9000/b
`
	cfg, err := Parse("alias.yaml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Sources[0], cfg.Sources[1]
	if a.Schedule != "@every 1m" || len(a.Key) != 1 || a.Key[0] != "id" || a.Timeout != 9*time.Second || a.Headers["Accept"] != "application/json" {
		t.Errorf("source a = %+v", a)
	}
	if b.Timeout != 3*time.Second || b.Schedule != "@every 1m" {
		t.Errorf("source b = %+v (the first merged mapping must win)", b)
	}
}

func TestHostileYAML(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString("x-big: &big [")
	for i := 0; i < 2000; i++ {
		bomb.WriteString("a,")
	}
	bomb.WriteString("a]\nx-src: &s {name: s, schedule: '@hourly', url: 'http://a/', key: id, ignore: *big}\nsinks: [{name: app, url: 'http://a/'}]\nsources: [")
	for i := 0; i < 1000; i++ {
		bomb.WriteString("*s,")
	}
	bomb.WriteString("*s]\n")
	for _, c := range []struct {
		name, doc, want string
	}{
		{"merge cycle", "sinks: [&a {name: x, url: 'http://a/', <<: *a}]\nsources: []\n", "merge key (<<) refers to the mapping that contains it"},
		{"sequence cycle", "sinks: &a [*a]\nsources: []\n", "sinks[0]: expected a mapping, got a list"},
		{"alias bomb", bomb.String(), "too many values after expanding aliases"},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := Parse("hostile.yaml", []byte(c.doc), nil)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %v, want it to contain %q", err, c.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Parse did not return")
			}
		})
	}
}

func TestSyntaxErrorLine(t *testing.T) {
	long := "sinks:\n" + strings.Repeat("  - name: app\n", 1500) + "  sources:\n"
	for _, c := range []struct {
		doc  string
		want string
	}{
		{"a: 1\nb:\n  - x\n  - y\n c: 2\n", "s.yaml:5: did not find expected key"},
		{"a: 1\nb: [1, 2\nc: 3\n", "s.yaml:2: did not find expected ',' or ']'"},
		{"a: 1\nb: x\n\tc: 3\n", "s.yaml:3: found a tab character that violates indentation"},
		{"a:\n  - name: app\n    url: x\n  sources:\n", "s.yaml:4: did not find expected '-' indicator"},
		{"a: 1\nb: *nope\n", "s.yaml:2: unknown anchor 'nope' referenced"},
		{long, "s.yaml:1502: did not find expected '-' indicator"},
	} {
		start := time.Now()
		_, err := Parse("s.yaml", []byte(c.doc), nil)
		if got := mustErrors(t, err); len(got) != 1 || got[0] != c.want {
			t.Errorf("errors %q, want %q", got, c.want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v", d)
		}
	}
}

func TestLoadUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := Load(path, nil)
	lines := mustErrors(t, err)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], path+": read config: ") {
		t.Errorf("got %q", lines)
	}
}

func TestLoadFromTempDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || cfg.State.Path != DefaultStatePath {
		t.Errorf("Path = %q, State.Path = %q", cfg.Path, cfg.State.Path)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "b.yaml", Line: 14, Col: 5, Field: "sources[1].schedule", Msg: "bad"}, "b.yaml:14: sources[1].schedule: bad"},
		{Error{File: "b.yaml", Line: 3, Msg: "syntax"}, "b.yaml:3: syntax"},
		{Error{File: "b.yaml", Msg: "config is empty"}, "b.yaml: config is empty"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	errs := &Errors{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}}
	if got := errs.Error(); got != "a:1: x\na:2: y" {
		t.Errorf("Errors.Error() = %q", got)
	}
	var target *Errors
	if !errors.As(error(errs), &target) || len(*target) != 2 {
		t.Error("errors.As does not find *Errors")
	}
}

func TestParseByteSize(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{"10MiB", 10 << 20, false},
		{"512KiB", 512 << 10, false},
		{"1GiB", 1 << 30, false},
		{"2TiB", 2 << 40, false},
		{"10MB", 10_000_000, false},
		{"5KB", 5000, false},
		{"5kb", 5000, false},
		{"7 B", 7, false},
		{"1048576", 1 << 20, false},
		{"0", 0, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"1.5MiB", 0, true},
		{"-1", 0, true},
		{"10XB", 0, true},
		{"9999999TiB", 0, true},
		{"99999999999999999999", 0, true},
	} {
		got, err := ParseByteSize(c.in)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.wantErr)
		}
	}
	for _, c := range []struct {
		in   ByteSize
		want string
	}{{10 << 20, "10MiB"}, {1536, "1536"}, {0, "0"}, {3 << 40, "3TiB"}} {
		if got := c.in.String(); got != c.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(c.in), got, c.want)
		}
	}
}

func TestCheckGJSONPath(t *testing.T) {
	const doc = `{"data":{"items":[{"id":1,"name.first":"a","tags":["x"]}]},
		"friends":[{"last":"Murphy","first":"Dale"},{"last":"Craig","first":"Roger"}],
		"a(b":1}`
	for _, c := range []struct {
		path   string
		ok     bool
		exists bool // the path matches something in doc
	}{
		{"data.items", true, true},
		{"data.items.#.id", true, true},
		{"data.items.0.name\\.first", true, true},
		{`friends.#(last=="Murphy").first`, true, true},
		{`friends.#(last=="Mur)phy")#.first`, true, true},
		{"friends|@reverse|0.first", true, true},
		{"{data.items.0.id,friends.0.last}", true, true},
		{"a\\(b", true, true},
		{"id", true, false},
		{"", false, false},
		{".data", false, false},
		{"data.", false, false},
		{"data..items", false, false},
		{"data|", false, false},
		{"friends.#(last==\"Murphy\"", false, false},
		{"a]", false, false},
		{"a(b", false, false},
		{"x\\", false, false},
		{"a\x00b", false, false},
		{`friends.#(last=="Murphy).first`, false, false},
	} {
		err := checkGJSONPath(c.path)
		if (err == nil) != c.ok {
			t.Errorf("checkGJSONPath(%q) = %v, want ok=%v", c.path, err, c.ok)
		}
		if c.ok && gjson.Get(doc, c.path).Exists() != c.exists {
			t.Errorf("gjson.Get(doc, %q).Exists() = %v, want %v", c.path, !c.exists, c.exists)
		}
	}
}

func TestCheckSchedule(t *testing.T) {
	for _, c := range []struct {
		spec string
		ok   bool
	}{
		{"@every 1s", true},
		{"@every 1h30m", true},
		{"@hourly", true},
		{"@daily", true},
		{"0 9 * * 1-5", true},
		{"*/5 * * * *", true},
		{"CRON_TZ=UTC 0 9 * * *", true},
		{"TZ=Europe/Berlin @daily", true},
		{"TZ=Nowhere/Land 0 9 * * *", false},
		{"TZ=../../etc/passwd 0 9 * * *", false},
		{"TZ=UTC", false},
		{"@every 0s", false},
		{"@every -5s", false},
		{"@every", false},
		{"0 0 9 * * *", false},
		{"* * * *", false},
		{"60 * * * *", false},
		{"", false},
	} {
		msg := checkSchedule(c.spec, c.spec, false)
		if (msg == "") != c.ok {
			t.Errorf("checkSchedule(%q) = %q, want ok=%v", c.spec, msg, c.ok)
		}
	}
}

func TestTopLevelBridgeYAML(t *testing.T) {
	const path = "../../bridge.yaml"
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		t.Skip("bridge.yaml does not exist yet at the repository root")
	}
	env := func(name string) (string, bool) {
		switch {
		case strings.Contains(name, "SECRET"):
			return testSecret, true
		case strings.Contains(name, "URL"):
			return "http://127.0.0.1:8080/test", true
		}
		return "test-value", true
	}
	cfg, err := Load(path, env)
	if err != nil {
		t.Fatalf("bridge.yaml does not validate:\n%v", err)
	}
	if len(cfg.Sources) == 0 || len(cfg.Sinks) == 0 {
		t.Errorf("bridge.yaml has %d sources and %d sinks", len(cfg.Sources), len(cfg.Sinks))
	}
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(minimal))
	env := envOf(testdataEnv)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			errs, ok := err.(*Errors)
			if !ok {
				t.Fatalf("error is %T, not *Errors: %v", err, err)
			}
			if len(*errs) == 0 || cfg != nil {
				t.Fatalf("bad result: cfg %v, %d errors", cfg, len(*errs))
			}
			return
		}
		if cfg == nil || len(cfg.Sources) == 0 || len(cfg.Sinks) == 0 {
			t.Fatalf("valid config without sources or sinks: %+v", cfg)
		}
		for _, s := range cfg.Sources {
			if len(s.Sinks) == 0 || s.MaxDeleteRatio == nil || s.Timeout <= 0 {
				t.Fatalf("source %q not defaulted: %+v", s.Name, s)
			}
		}
	})
}

// keep_bodies: false reaches the source (it is on by default).
func TestKeepBodiesOff(t *testing.T) {
	text := strings.Replace(minimal, "    key: id\n", "    key: id\n    keep_bodies: false\n", 1)
	if text == minimal {
		t.Fatal("test setup: no `key: id` line in the minimal config")
	}
	cfg, err := Parse("off.yaml", []byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sources[0].KeepsBodies() {
		t.Error("keep_bodies: false parsed as keeping bodies")
	}
}
