// Package examples_test checks the deployment files against the code they
// deploy, since nothing else would notice them drifting apart: the
// Dockerfile's build command (run here as Docker would run it, then checked
// to be a static binary), the image's user, port and health check, and
// every document of examples/docker-compose.yml and examples/kubernetes/:
// the pollbridge configs they carry must validate with the variables the
// containers actually get, probes, ports and names must point at things that
// exist, and grace periods must outlast shutdown_timeout.
//
// No Docker or cluster is needed: the files are parsed, not applied.
package examples_test

import (
	"bytes"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pollbridge/pollbridge/bridge/config"
)

const (
	repoRoot    = ".."
	dockerfile  = "../Dockerfile"
	composePath = "docker-compose.yml"
	k8sDir      = "kubernetes"
	adminPort   = "9090"
)

// ---------------------------------------------------------------------------
// Dockerfile

// instr is one Dockerfile instruction, continuation lines joined.
type instr struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
	Line int
}

// stage is one FROM and the instructions under it.
type stage struct {
	Name, Base string
	Instrs     []instr
}

// parseDockerfile splits the Dockerfile into stages. It handles what this
// Dockerfile uses: comments, blank lines, and backslash continuations (with
// comment lines inside them dropped, as Docker does).
func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instr{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := stage{Base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before the first FROM", in.Line, in.Cmd)
		}
		s := &stages[len(stages)-1]
		s.Instrs = append(s.Instrs, in)
	}
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	if len(stages) == 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	return stages
}

// find returns the stage named name.
func find(t *testing.T, stages []stage, name string) stage {
	t.Helper()
	for _, s := range stages {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile: no stage %q", name)
	return stage{}
}

// only returns the one instruction cmd of stage s.
func (s stage) only(t *testing.T, cmd string) instr {
	t.Helper()
	var found []instr
	for _, in := range s.Instrs {
		if in.Cmd == cmd {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		t.Fatalf("Dockerfile: stage %q has %d %s instructions, want 1", s.Name, len(found), cmd)
	}
	return found[0]
}

// execForm decodes an exec-form (JSON array) argument list.
func execForm(t *testing.T, in instr, args string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatalf("Dockerfile:%d: %s %s: not the exec form [\"...\"] (the image has no shell): %v", in.Line, in.Cmd, args, err)
	}
	return argv
}

// flagValue returns the argument after flag in argv.
func flagValue(argv []string, flag string) (string, bool) {
	i := slices.Index(argv, flag)
	if i < 0 || i+1 >= len(argv) {
		return "", false
	}
	return argv[i+1], true
}

// imageConfigPath is the config file the image's CMD runs with.
func imageConfigPath(t *testing.T, final stage) string {
	t.Helper()
	in := final.only(t, "CMD")
	argv := execForm(t, in, in.Args)
	p, ok := flagValue(argv, "-c")
	if len(argv) == 0 || argv[0] != "run" || !ok {
		t.Fatalf("Dockerfile:%d: CMD %v: want [\"run\", \"-c\", FILE]", in.Line, argv)
	}
	return p
}

func TestDockerfileImage(t *testing.T) {
	stages := parseDockerfile(t)
	final := stages[len(stages)-1]
	if final.Name != "" {
		// `docker build` without --target builds the last stage: the image
		// must be the last one, or users get the demo programs.
		t.Errorf("Dockerfile: the last stage is %q; the pollbridge image must be last", final.Name)
	}
	if !strings.Contains(final.Base, "distroless/static") || !strings.HasSuffix(final.Base, ":nonroot") {
		t.Errorf("Dockerfile: final base %s, want distroless static :nonroot", final.Base)
	}

	// USER: numeric and not 0, so Kubernetes' runAsNonRoot can check it
	// without an /etc/passwd lookup.
	user := final.only(t, "USER")
	uid, _, _ := strings.Cut(user.Args, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("Dockerfile:%d: USER %s: want a numeric non-root uid", user.Line, user.Args)
	}

	expose := final.only(t, "EXPOSE")
	if !slices.Contains(strings.Fields(expose.Args), adminPort) && !slices.Contains(strings.Fields(expose.Args), adminPort+"/tcp") {
		t.Errorf("Dockerfile:%d: EXPOSE %s: want the admin port %s", expose.Line, expose.Args, adminPort)
	}

	ep := final.only(t, "ENTRYPOINT")
	if argv := execForm(t, ep, ep.Args); !slices.Equal(argv, []string{"/pollbridge"}) {
		t.Errorf("Dockerfile:%d: ENTRYPOINT %v, want [\"/pollbridge\"]", ep.Line, argv)
	}
	cfgPath := imageConfigPath(t, final)

	// The default config is in the image at the path CMD reads.
	copied := false
	for _, in := range final.Instrs {
		if in.Cmd == "COPY" && strings.HasSuffix(in.Args, " "+cfgPath) {
			copied = true
		}
	}
	if !copied {
		t.Errorf("Dockerfile: nothing is copied to %s, the file CMD runs with", cfgPath)
	}

	// HEALTHCHECK [OPTIONS] CMD ["/pollbridge", "health", "-c", FILE]: the
	// exec form and the same config as the daemon, or the check looks for
	// the admin listener somewhere else.
	hc := final.only(t, "HEALTHCHECK")
	_, cmd, ok := strings.Cut(hc.Args, "CMD ")
	if !ok {
		t.Fatalf("Dockerfile:%d: HEALTHCHECK %s: no CMD", hc.Line, hc.Args)
	}
	argv := execForm(t, hc, strings.TrimSpace(cmd))
	if len(argv) < 2 || argv[0] != "/pollbridge" || argv[1] != "health" {
		t.Errorf("Dockerfile:%d: HEALTHCHECK runs %v, want /pollbridge health", hc.Line, argv)
	}
	if p, _ := flagValue(argv, "-c"); p != cfgPath {
		t.Errorf("Dockerfile:%d: HEALTHCHECK reads config %q, CMD runs with %q", hc.Line, p, cfgPath)
	}
}

// TestDockerBuildStage runs the build stage's go build command as Docker
// would, then checks the binary is static (it must run on distroless/static,
// which has no libc and no dynamic loader), carries no build paths, and
// reports the version passed as a build argument.
func TestDockerBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pollbridge")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	build := find(t, parseDockerfile(t), "build")

	// Build arguments: the ARGs declared in the stage before the RUN, as
	// `docker build --build-arg VERSION=...` would set them. A variable
	// the stage does not declare expands to "" in Docker: an error here.
	const testVersion = "v0.0.0-deploytest"
	vars := map[string]string{}
	var run *instr
	for i, in := range build.Instrs {
		if in.Cmd == "ARG" {
			name, def, _ := strings.Cut(in.Args, "=")
			vars[name] = def
		}
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			if run != nil {
				t.Fatalf("Dockerfile:%d: a second go build in the build stage", in.Line)
			}
			run = &build.Instrs[i]
			if _, ok := vars["VERSION"]; !ok {
				t.Fatalf("Dockerfile:%d: no ARG VERSION before the go build line", in.Line)
			}
			vars["VERSION"] = testVersion
		}
	}
	if run == nil {
		t.Fatal("Dockerfile: no RUN ... go build in the build stage")
	}
	words, err := shellWords(run.Args, vars)
	if err != nil {
		t.Fatalf("Dockerfile:%d: %v", run.Line, err)
	}
	// RUN --mount=... flags belong to Docker, not to the command.
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		words = words[1:]
	}
	env := map[string]string{}
	for len(words) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) {
		k, v, _ := strings.Cut(words[0], "=")
		env[k] = v
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile:%d: want [ENV=VALUE...] go build ..., got %q", run.Line, words)
	}
	args := words[2:]
	for _, w := range args {
		if w == "&&" || w == ";" || w == "|" || w == "||" {
			t.Fatalf("Dockerfile:%d: keep the go build line one command (found %q)", run.Line, w)
		}
	}

	// The properties the image depends on, in the command itself.
	if env["CGO_ENABLED"] != "0" {
		t.Errorf("Dockerfile:%d: CGO_ENABLED=%q, want 0 (static binary)", run.Line, env["CGO_ENABLED"])
	}
	if !slices.Contains(args, "-trimpath") {
		t.Errorf("Dockerfile:%d: go build without -trimpath", run.Line)
	}
	ldflags, _ := flagValue(args, "-ldflags")
	if i := slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "-ldflags=") }); i >= 0 {
		ldflags = strings.TrimPrefix(args[i], "-ldflags=")
	}
	if !strings.Contains(ldflags, "-X main.version="+testVersion) {
		t.Errorf("Dockerfile:%d: -ldflags %q does not set main.version from $VERSION", run.Line, ldflags)
	}
	out := slices.Index(args, "-o")
	if out < 0 || out+1 >= len(args) || args[out+1] != "/pollbridge" {
		t.Fatalf("Dockerfile:%d: want -o /pollbridge (the path the final stage copies)", run.Line)
	}

	bin := filepath.Join(t.TempDir(), "pollbridge")
	args = slices.Clone(args)
	args[out+1] = bin
	cmd := exec.CommandContext(t.Context(), goTool, append([]string{"build"}, args...)...)
	cmd.Dir = repoRoot // the build stage's WORKDIR holds the whole repository
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// The image is Linux whatever builds it.
	cmd.Env = append(cmd.Env, "GOOS=linux")
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, outb)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP header: it is dynamically linked and cannot run on distroless/static")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}

	// -trimpath: neither this checkout's path nor the module cache's
	// appears in the binary.
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(abs+"/")) {
		t.Errorf("the binary contains the build directory %s: -trimpath missing", abs)
	}

	if runtime.GOOS != "linux" {
		t.Skip("built for linux; not running it on", runtime.GOOS)
	}
	ver, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil {
		t.Fatalf("pollbridge version: %v", err)
	}
	if want := "pollbridge " + testVersion + " "; !strings.HasPrefix(string(ver), want) {
		t.Errorf("pollbridge version = %q, want it to start with %q", ver, want)
	}
}

// shellWords splits a shell command line into words the way sh would for
// simple commands: single quotes are literal, double quotes and bare words
// expand ${NAME} and $NAME from vars (an unknown name is an error), and a
// backslash escapes the next character outside single quotes. Unlike sh, an
// unquoted expansion is not split at spaces: the Dockerfile quotes them.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	expand := func(i int) (int, error) { // s[i] == '$'
		rest := s[i+1:]
		var name string
		var n int
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return 0, errors.New("unterminated ${")
			}
			name, n = rest[1:end], end+1
		} else {
			m := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`).FindString(rest)
			name, n = m, len(m)
		}
		v, ok := vars[name]
		if !ok {
			return 0, fmt.Errorf("$%s is not declared (ARG or ENV) in this stage", name)
		}
		w.WriteString(v)
		return i + n, nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated '")
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, errors.New(`unterminated "`)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$", s[i+1]) >= 0 {
					i++
					w.WriteByte(s[i])
					continue
				}
				if s[i] == '$' {
					var err error
					if i, err = expand(i); err != nil {
						return nil, err
					}
					continue
				}
				w.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == '$':
			var err error
			if i, err = expand(i); err != nil {
				return nil, err
			}
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	vars := map[string]string{"V": "1.2 x"}
	got, err := shellWords(`A=0 go build -ldflags="-s -X m.v=${V}" -o '/p $V' \$V x$V`, vars)
	want := []string{"A=0", "go", "build", "-ldflags=-s -X m.v=1.2 x", "-o", "/p $V", "$V", "x1.2 x"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("shellWords = %q, %v; want %q", got, err, want)
	}
	if _, err := shellWords(`go build -X main.version=${NOPE}`, vars); err == nil {
		t.Error("an undeclared variable was accepted")
	}
}

// ---------------------------------------------------------------------------
// pollbridge configs carried by the deployment files

// parseBridgeConfig validates a pollbridge config with exactly the
// environment env: a ${VAR} the container does not get is an error, as it
// would be when the container starts.
func parseBridgeConfig(t *testing.T, name, data string, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(name, []byte(data), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("%s does not validate:\n%v", name, err)
	}
	return cfg
}

// hostPort splits a URL's host and port (the scheme's default port if none).
func hostPort(t *testing.T, raw string) (string, string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "redis": "6379", "rediss": "6379"}[u.Scheme]
	}
	return u.Hostname(), port
}

// ---------------------------------------------------------------------------
// docker-compose.yml

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Configs  map[string]struct {
		Content string `yaml:"content"`
	} `yaml:"configs"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context string            `yaml:"context"`
		Target  string            `yaml:"target"`
		Args    map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Deploy      struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	Configs []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"configs"`
	Volumes         []string `yaml:"volumes"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
}

// composeVar matches what Compose interpolates: $$, ${NAME}, ${NAME:-def},
// ${NAME-def} and $NAME.
var composeVar = regexp.MustCompile(`\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}|[A-Za-z_][A-Za-z0-9_]*)`)

// composeInterpolate does Compose's interpolation with an empty shell
// environment: $$ is $, ${NAME:-default} the default, and a variable without
// a default an error (`docker compose up` must work as it is).
func composeInterpolate(s string) (string, error) {
	var err error
	out := composeVar.ReplaceAllStringFunc(s, func(m string) string {
		sub := composeVar.FindStringSubmatch(m)
		switch {
		case sub[1] == "$":
			return "$"
		case sub[3] != "":
			return sub[4]
		default:
			err = fmt.Errorf("%s has no default: docker compose up needs it set", m)
			return m
		}
	})
	return out, err
}

// commandFlag returns the value of flag in a service's command.
func commandFlag(t *testing.T, svc string, cmd []string, flag string) string {
	t.Helper()
	v, ok := flagValue(cmd, flag)
	if !ok {
		t.Fatalf("compose: service %s: command %q has no %s", svc, cmd, flag)
	}
	return v
}

func TestCompose(t *testing.T) {
	data, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	for _, name := range []string{"redis", "pollbridge", "demoapi", "receiver"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("compose: no service %s", name)
		}
	}
	stages := parseDockerfile(t)
	final := stages[len(stages)-1]

	// Redis persists: AOF, fsync every second, on a named volume.
	redis := c.Services["redis"]
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("compose: redis command %q lacks %s", cmd, want)
		}
	}
	persisted := false
	for _, v := range redis.Volumes {
		vol, target, _ := strings.Cut(v, ":")
		_, declared := c.Volumes[vol]
		persisted = persisted || (target == "/data" && declared)
	}
	if !persisted {
		t.Errorf("compose: redis volumes %q: want a named volume at /data", redis.Volumes)
	}

	// Every build is of this repository's Dockerfile, targets existing.
	for name, s := range c.Services {
		if s.Build == nil {
			continue
		}
		if filepath.Clean(s.Build.Context) != filepath.Clean(repoRoot) {
			t.Errorf("compose: %s builds context %q, want the repository root %q", name, s.Build.Context, repoRoot)
		}
		if s.Build.Target != "" {
			find(t, stages, s.Build.Target)
		}
	}

	pb := c.Services["pollbridge"]
	if pb.Build == nil || pb.Build.Target != "" {
		t.Error("compose: pollbridge must build the Dockerfile's final stage (no target)")
	}
	if pb.Deploy.Replicas < 2 {
		t.Errorf("compose: pollbridge replicas = %d, want 2 or more sharing Redis", pb.Deploy.Replicas)
	}
	env := map[string]string{}
	for k, v := range pb.Environment {
		if env[k], err = composeInterpolate(v); err != nil {
			t.Errorf("compose: pollbridge environment %s: %v", k, err)
		}
	}

	// The config is mounted where the image's CMD and HEALTHCHECK read it.
	wantPath := imageConfigPath(t, final)
	var content string
	for _, m := range pb.Configs {
		if m.Target == wantPath {
			cfg, ok := c.Configs[m.Source]
			if !ok {
				t.Fatalf("compose: pollbridge mounts config %q, not declared", m.Source)
			}
			content = cfg.Content
		}
	}
	if content == "" {
		t.Fatalf("compose: no config with content mounted at %s", wantPath)
	}
	// pollbridge's own ${VAR}s must reach it: written $${VAR}, never
	// expanded by Compose (which would put the secret in the file).
	if m := regexp.MustCompile(`(^|[^$])\$\{`).FindString(content); m != "" {
		t.Errorf("compose: the config's ${...} are expanded by Compose; write $${VAR} for pollbridge")
	}
	content, err = composeInterpolate(content)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseBridgeConfig(t, composePath+" configs", content, env)

	// The image's HEALTHCHECK runs `pollbridge health`, which asks the
	// admin listener: without one every container is marked unhealthy.
	if cfg.Admin.Listen == "" {
		t.Error("compose: the config has no admin.listen; the image's HEALTHCHECK would fail")
	}

	// Shared state: Redis, at the redis service.
	if cfg.State.Redis == nil {
		t.Fatal("compose: pollbridge does not use Redis state; replicas would each keep their own")
	}
	if host, port := hostPort(t, cfg.State.Redis.URL); host != "redis" || port != "6379" {
		t.Errorf("compose: Redis at %s:%s, want the redis service", host, port)
	}

	// The sink is the receiver service, on the address and path it serves.
	rc := c.Services["receiver"]
	for _, s := range cfg.Sinks {
		host, port := hostPort(t, s.URL)
		u, _ := url.Parse(s.URL)
		if host != "receiver" || ":"+port != commandFlag(t, "receiver", rc.Command, "-addr") ||
			u.Path != commandFlag(t, "receiver", rc.Command, "-path") {
			t.Errorf("compose: sink %s posts to %s; the receiver serves %s on %s", s.Name, s.URL,
				commandFlag(t, "receiver", rc.Command, "-path"), commandFlag(t, "receiver", rc.Command, "-addr"))
		}
		if s.Secret == "" {
			t.Errorf("compose: sink %s is unsigned; the receiver rejects unsigned webhooks", s.Name)
		}
	}
	if rc.Environment["APP_WEBHOOK_SECRET"] != pb.Environment["APP_WEBHOOK_SECRET"] {
		t.Error("compose: receiver and pollbridge have different APP_WEBHOOK_SECRETs: every signature would fail")
	}
	for _, s := range cfg.Sources {
		host, port := hostPort(t, s.URL)
		if _, ok := c.Services[host]; !ok {
			t.Errorf("compose: source %s polls %s, not a service", s.Name, host)
		}
		if host == "demoapi" && ":"+port != commandFlag(t, "demoapi", c.Services["demoapi"].Command, "-addr") {
			t.Errorf("compose: source %s polls port %s, demoapi listens on %s", s.Name, port,
				commandFlag(t, "demoapi", c.Services["demoapi"].Command, "-addr"))
		}
	}

	// docker stop waits stop_grace_period before SIGKILL: longer than the drain.
	grace, err := time.ParseDuration(pb.StopGracePeriod)
	if err != nil || grace <= cfg.ShutdownTimeout {
		t.Errorf("compose: pollbridge stop_grace_period %q, want longer than shutdown_timeout %s", pb.StopGracePeriod, cfg.ShutdownTimeout)
	}
}

func TestComposeInterpolate(t *testing.T) {
	got, err := composeInterpolate("a $${X} ${Y:-d} ${Z-e} $$")
	if want := "a ${X} d e $"; err != nil || got != want {
		t.Errorf("composeInterpolate = %q, %v; want %q", got, err, want)
	}
	if _, err := composeInterpolate("${NEEDED}"); err == nil {
		t.Error("a variable without a default was accepted")
	}
}

// ---------------------------------------------------------------------------
// kubernetes/

type meta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// object is any Kubernetes document; node keeps it for a kind-specific decode.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	file       string
	node       *yaml.Node
}

type workload struct { // Deployment, StatefulSet
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64          `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               securityContext `yaml:"securityContext"`
	Containers                    []container     `yaml:"containers"`
	Volumes                       []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type securityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports          []containerPort `yaml:"ports"`
	LivenessProbe  *probe          `yaml:"livenessProbe"`
	ReadinessProbe *probe          `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// port resolves a container port given by number or name.
func (c container) port(p string) string {
	for _, cp := range c.Ports {
		if cp.Name == p {
			return strconv.Itoa(cp.ContainerPort)
		}
	}
	return p
}

// hasPort reports whether the container declares containerPort p.
func (c container) hasPort(p string) bool {
	return slices.ContainsFunc(c.Ports, func(cp containerPort) bool {
		return strconv.Itoa(cp.ContainerPort) == p
	})
}

type service struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type secret struct {
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

// loadK8s reads every document of every *.yaml file in kubernetes/.
func loadK8s(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s/*.yaml (%v)", k8sDir, err)
	}
	var objs []object
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				t.Fatalf("%s: %v", file, err)
			}
			var o object
			if err := n.Decode(&o); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s:%d: a document without apiVersion, kind or metadata.name", file, n.Line)
			}
			o.file, o.node = file, &n
			objs = append(objs, o)
		}
		f.Close()
	}
	return objs
}

// decode decodes o into v, failing the test on error.
func decode[T any](t *testing.T, o object) T {
	t.Helper()
	var v T
	if err := o.node.Decode(&v); err != nil {
		t.Fatalf("%s: %s %s: %v", o.file, o.Kind, o.Metadata.Name, err)
	}
	return v
}

// subset reports whether every label of sel is in labels, with its value.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func TestKubernetes(t *testing.T) {
	objs := loadK8s(t)
	byKind := map[string][]object{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	for _, kind := range []string{"ConfigMap", "Secret", "Deployment", "Service", "StatefulSet"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("kubernetes: no %s", kind)
		}
	}
	named := func(kind, name string) (object, bool) {
		for _, o := range byKind[kind] {
			if o.Metadata.Name == name {
				return o, true
			}
		}
		return object{}, false
	}

	// Workloads select their own pods; Services select a workload's pods
	// and target a port its containers declare.
	workloads := map[string]workload{}
	for _, o := range append(slices.Clone(byKind["Deployment"]), byKind["StatefulSet"]...) {
		w := decode[workload](t, o)
		if !subset(w.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: %s %s: selector %v does not match its pod labels %v", o.file, o.Kind, o.Metadata.Name,
				w.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels)
		}
		workloads[o.Kind+"/"+o.Metadata.Name] = w
	}
	services := map[string][]string{} // name → ports
	for _, o := range byKind["Service"] {
		s := decode[service](t, o)
		var target *workload
		for _, w := range workloads {
			if subset(s.Spec.Selector, w.Spec.Template.Metadata.Labels) {
				target = &w
			}
		}
		if target == nil {
			t.Errorf("%s: Service %s selects no workload's pods", o.file, o.Metadata.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			services[o.Metadata.Name] = append(services[o.Metadata.Name], strconv.Itoa(p.Port))
			found := slices.ContainsFunc(target.Spec.Template.Spec.Containers, func(c container) bool {
				return c.hasPort(c.port(p.TargetPort))
			})
			if !found {
				t.Errorf("%s: Service %s targets port %q, which no container declares", o.file, o.Metadata.Name, p.TargetPort)
			}
		}
	}

	// The pod with the sidecar: a Deployment with a pollbridge container
	// and at least one other (the app).
	var dep object
	var pod podSpec
	var pb, app *container
	for _, o := range byKind["Deployment"] {
		w := workloads["Deployment/"+o.Metadata.Name]
		for i, c := range w.Spec.Template.Spec.Containers {
			if strings.HasPrefix(c.Image, "pollbridge:") || strings.Contains(c.Image, "/pollbridge:") {
				dep, pod = o, w.Spec.Template.Spec
				pb = &pod.Containers[i]
			}
		}
	}
	if pb == nil {
		t.Fatal("kubernetes: no Deployment runs the pollbridge image")
	}
	if len(pod.Containers) < 2 {
		t.Fatalf("%s: Deployment %s runs pollbridge alone; the example is a sidecar next to the app", dep.file, dep.Metadata.Name)
	}
	where := fmt.Sprintf("%s: Deployment %s: container %s", dep.file, dep.Metadata.Name, pb.Name)

	// Config: args -c FILE, FILE in a ConfigMap volume mounted at its dir.
	if len(pb.Args) == 0 || pb.Args[0] != "run" {
		t.Errorf("%s: args %q, want run -c FILE", where, pb.Args)
	}
	cfgPath, ok := flagValue(pb.Args, "-c")
	if !ok {
		t.Fatalf("%s: args %q have no -c FILE", where, pb.Args)
	}
	var cm object
	for _, m := range pb.VolumeMounts {
		if m.MountPath != filepath.Dir(cfgPath) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				if cm, ok = named("ConfigMap", v.ConfigMap.Name); !ok {
					t.Fatalf("%s: mounts ConfigMap %q, not in %s/", where, v.ConfigMap.Name, k8sDir)
				}
			}
		}
	}
	if cm.node == nil {
		t.Fatalf("%s: no ConfigMap volume mounted at %s", where, filepath.Dir(cfgPath))
	}
	bridgeYAML, ok := decode[struct {
		Data map[string]string `yaml:"data"`
	}](t, cm).Data[filepath.Base(cfgPath)]
	if !ok {
		t.Fatalf("%s: ConfigMap %s has no key %s", cm.file, cm.Metadata.Name, filepath.Base(cfgPath))
	}

	// Environment: exactly what the container gets, secrets from the
	// Secret's (placeholder) values. A ${VAR} of the config the container
	// does not get fails validation here, as it would fail the pod.
	env := map[string]string{}
	for _, e := range pb.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			so, ok := named("Secret", ref.Name)
			if !ok {
				t.Fatalf("%s: env %s: no Secret %q", where, e.Name, ref.Name)
			}
			s := decode[secret](t, so)
			v, ok := s.StringData[ref.Key]
			if b, inData := s.Data[ref.Key]; inData {
				raw, err := base64.StdEncoding.DecodeString(b)
				if err != nil {
					t.Fatalf("%s: Secret %s: data.%s is not base64", so.file, ref.Name, ref.Key)
				}
				v, ok = string(raw), true
			}
			if !ok {
				t.Fatalf("%s: env %s: Secret %s has no key %s", where, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		}
	}
	cfg := parseBridgeConfig(t, cm.file+": "+filepath.Base(cfgPath), bridgeYAML, env)

	// Webhooks go to the neighbour over loopback, on a port the app declares.
	for _, s := range cfg.Sinks {
		host, port := hostPort(t, s.URL)
		if host != "127.0.0.1" && host != "localhost" {
			t.Errorf("%s: sink %s posts to %s, want the app in the same pod (127.0.0.1)", cm.file, s.Name, host)
		}
		for i := range pod.Containers {
			if c := &pod.Containers[i]; c != pb && c.hasPort(port) {
				app = c
			}
		}
		if app == nil {
			t.Errorf("%s: sink %s posts to port %s; no other container of the pod declares it", cm.file, s.Name, port)
		}
	}
	// Anything else it reaches (sources, Redis) is a Service of the example.
	remote := []string{}
	for _, s := range cfg.Sources {
		remote = append(remote, s.URL)
	}
	if cfg.State.Redis == nil {
		t.Errorf("%s: state is not Redis: an emptyDir file would lose the outbox with the pod on every rolling update", cm.file)
	} else {
		remote = append(remote, cfg.State.Redis.URL)
	}
	for _, u := range remote {
		host, port := hostPort(t, u)
		if !slices.Contains(services[host], port) {
			t.Errorf("%s: pollbridge reaches %s:%s; no Service %s with port %s in %s/", cm.file, host, port, host, port, k8sDir)
		}
	}

	// The admin listener on the pod IP, at the port the probes, the
	// container port and the scrape annotations use.
	listen := cfg.Admin.Listen
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil || lport != adminPort || (lhost != "" && lhost != "0.0.0.0" && lhost != "::") {
		t.Errorf("%s: admin.listen %q, want 0.0.0.0:%s (the kubelet probes the pod IP)", cm.file, listen, adminPort)
	}
	if !pb.hasPort(adminPort) {
		t.Errorf("%s: no containerPort %s", where, adminPort)
	}
	for _, p := range []struct {
		name string
		pr   *probe
		path string
	}{{"livenessProbe", pb.LivenessProbe, "/healthz"}, {"readinessProbe", pb.ReadinessProbe, "/readyz"}} {
		if p.pr == nil || p.pr.HTTPGet == nil {
			t.Errorf("%s: no %s httpGet", where, p.name)
			continue
		}
		if g := p.pr.HTTPGet; g.Path != p.path || pb.port(g.Port) != adminPort {
			t.Errorf("%s: %s GET %s on port %s, want %s on %s", where, p.name, g.Path, pb.port(g.Port), p.path, adminPort)
		}
	}
	ann := workloads["Deployment/"+dep.Metadata.Name].Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != adminPort {
		t.Errorf("%s: pod annotations %v, want prometheus.io/scrape \"true\" and prometheus.io/port %q", dep.file, ann, adminPort)
	}

	// Rolling restarts: the kubelet's SIGKILL comes after the drain.
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= cfg.ShutdownTimeout {
		t.Errorf("%s: terminationGracePeriodSeconds must be set and longer than shutdown_timeout %s", dep.file, cfg.ShutdownTimeout)
	}

	// Hardening and resources.
	if (pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot) &&
		(pb.SecurityContext.RunAsNonRoot == nil || !*pb.SecurityContext.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot is not set", where)
	}
	if r := pb.SecurityContext.ReadOnlyRootFilesystem; r == nil || !*r {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if a := pb.SecurityContext.AllowPrivilegeEscalation; a == nil || *a {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if pb.Resources.Requests["memory"] == "" || pb.Resources.Limits["memory"] == "" {
		t.Errorf("%s: want memory requests and limits", where)
	}

	// Redis persists: AOF with fsync every second.
	for _, o := range byKind["StatefulSet"] {
		for _, c := range workloads["StatefulSet/"+o.Metadata.Name].Spec.Template.Spec.Containers {
			if !strings.HasPrefix(c.Image, "redis:") {
				continue
			}
			args := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
			for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
				if !strings.Contains(args, want) {
					t.Errorf("%s: redis runs %q, without %s", o.file, args, want)
				}
			}
		}
	}
}
