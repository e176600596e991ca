package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// childArg, as the first argument, makes the binary a child of the
// harness: `bench __child api ...` or `bench __child floor ...`.
const childArg = "__child"

// main runs the harness, or one of its children when the first argument
// is childArg.
func main() {
	if len(os.Args) > 1 && os.Args[1] == childArg {
		if err := childMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// childMain runs the child role named by args[0].
func childMain(args []string) error {
	if len(args) == 0 {
		return errors.New("no child role given")
	}
	switch args[0] {
	case "api":
		return apiMain(args[1:])
	case "floor":
		return floorMain(args[1:])
	}
	return fmt.Errorf("unknown child role %q", args[0])
}

// options are the command line's settings.
type options struct {
	scenarios []string
	backends  []string
	quick     bool
	jsonPath  string
	window    time.Duration
	redisURL  string
	bin       string
	repo      string
	keep      bool
	profile   string
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench [flags]\n\n"+
			"Measures pollbridge, run as a separate process, against a synthetic API and\n"+
			"receiver, and compares it with floor loops that do only the unavoidable work.\n"+
			"Scenarios: %s. See bench/doc.go.\n\n", strings.Join(allScenarios(), ", "))
		fs.PrintDefaults()
	}
	scenarios := fs.String("scenario", "all", "comma-separated scenarios to run, or all")
	backends := fs.String("backend", "bolt,redis", "comma-separated state backends: bolt, redis")
	quick := fs.Bool("quick", false, "scale every scenario down about 10x (a smoke run)")
	jsonPath := fs.String("json", "", "also write the results as JSON to `FILE`")
	window := fs.Duration("window", 0, "measurement window of the scheduled scenarios (0: 20s/30s, 5s/10s with -quick)")
	defRedis := os.Getenv("REDIS_URL")
	if defRedis == "" {
		defRedis = "redis://127.0.0.1:6379"
	}
	redisURL := fs.String("redis", defRedis, "Redis for the redis backend (keys get a unique prefix and are deleted afterwards)")
	bin := fs.String("bin", "", "a pollbridge binary to measure (default: go build the repository)")
	repo := fs.String("repo", ".", "the pollbridge repository (or a directory inside it)")
	keep := fs.Bool("keep", false, "keep the temporary directory (configs, logs, state files)")
	profile := fs.String("profile", "", "save a CPU profile of pollbridge over each measurement window into `DIR` (runs pollbridge with -pprof)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o := options{quick: *quick, jsonPath: *jsonPath, window: *window, redisURL: *redisURL, bin: *bin, repo: *repo, keep: *keep, profile: *profile}
	if *scenarios == "all" || *scenarios == "" {
		o.scenarios = allScenarios()
	} else {
		for s := range strings.SplitSeq(*scenarios, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(allScenarios(), s) {
				return options{}, fmt.Errorf("-scenario: unknown scenario %q (have %s)", s, strings.Join(allScenarios(), ", "))
			}
			o.scenarios = append(o.scenarios, s)
		}
	}
	for b := range strings.SplitSeq(*backends, ",") {
		b = strings.TrimSpace(b)
		if b != "bolt" && b != "redis" {
			return options{}, fmt.Errorf("-backend: unknown backend %q (have bolt, redis)", b)
		}
		o.backends = append(o.backends, b)
	}
	return o, nil
}

// run is the harness's main: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := harness(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	for _, r := range results {
		if r.Error != "" {
			return 1
		}
	}
	return 0
}

// newEnv prepares a run: the temporary directory, the pollbridge binary
// and the Redis check. cleanup removes what it made.
func newEnv(ctx context.Context, o options, status io.Writer, log *slog.Logger) (e *env, redisVersion string, cleanup func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", nil, fmt.Errorf("find the harness binary: %w", err)
	}
	repo, err := findRepo(o.repo)
	if err != nil {
		return nil, "", nil, err
	}
	dir, err := os.MkdirTemp("", "pbbench-")
	if err != nil {
		return nil, "", nil, fmt.Errorf("temporary directory: %w", err)
	}
	cleanup = func() {
		if o.keep {
			fmt.Fprintf(status, "kept %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	e = &env{exe: exe, repo: repo, dir: dir, redisURL: o.redisURL, runID: hex.EncodeToString(id),
		proc: newProcReader(ctx), log: log, quick: o.quick, window: o.window, status: status, bin: o.bin, keep: o.keep}
	if o.profile != "" {
		if e.profile, err = filepath.Abs(o.profile); err == nil {
			err = os.MkdirAll(e.profile, 0o755)
		}
		if err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("-profile: %w", err)
		}
	}
	if e.bin == "" {
		e.say("building pollbridge from %s", repo)
		if e.bin, err = buildPollbridge(ctx, repo, dir); err != nil {
			cleanup()
			return nil, "", nil, err
		}
	}
	if slices.Contains(o.backends, "redis") {
		if redisVersion, err = checkRedis(ctx, o.redisURL); err != nil {
			cleanup()
			return nil, "", nil, err
		}
	}
	return e, redisVersion, cleanup, nil
}

// checkRedis pings Redis and returns its version.
func checkRedis(ctx context.Context, rawURL string) (string, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return "", fmt.Errorf("-redis: %w", err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("redis at %s: %w", opts.Addr, err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "unknown", nil
}

// harness runs the selected scenarios on the selected backends, printing
// each result as a markdown table as it completes.
func harness(ctx context.Context, o options, stdout, stderr io.Writer) ([]*result, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, redisVersion, cleanup, err := newEnv(ctx, o, stderr, log)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	m := describeMachine(e, redisVersion)
	m.markdown(stdout)
	mode := "default scale"
	if o.quick {
		mode = "-quick (about 1/10 scale)"
	}
	fmt.Fprintf(stdout, "\nscenarios: %s; backends: %s; %s\n", strings.Join(o.scenarios, ","), strings.Join(o.backends, ","), mode)
	start := time.Now()
	var results []*result
	for _, name := range o.scenarios {
		for _, backend := range o.backends {
			if ctx.Err() != nil {
				break
			}
			r := e.runScenario(ctx, name, backend, defaultScale(name, o.quick, o.window))
			r.markdown(stdout)
			results = append(results, r)
		}
	}
	summary(stdout, results, time.Since(start))
	if o.jsonPath != "" {
		if err := writeResultsJSON(o.jsonPath, m, results); err != nil {
			return results, err
		}
	}
	return results, ctx.Err()
}

// summary prints the targets missed and the errors.
func summary(w io.Writer, results []*result, elapsed time.Duration) {
	met, missed := 0, []string{}
	for _, r := range results {
		if r.Error != "" {
			missed = append(missed, fmt.Sprintf("%s/%s: ERROR %s", r.Scenario, r.Backend, r.Error))
		}
		for _, x := range r.Rows {
			if x.Pass == nil {
				continue
			}
			if *x.Pass {
				met++
				continue
			}
			v := x.Text
			if v == "" {
				v = fmtVal(x.Value, x.Unit)
			}
			if x.Ratio != nil && strings.HasPrefix(x.Target, "ratio") {
				v = "ratio " + fmtRatio(*x.Ratio)
			}
			missed = append(missed, fmt.Sprintf("%s/%s: %s = %s (target %s)", r.Scenario, r.Backend, x.Metric, v, x.Target))
		}
	}
	fmt.Fprintf(w, "\n### summary\n\n%d targets met, %d missed or failed; total %s\n", met, len(missed), elapsed.Round(time.Second))
	for _, s := range missed {
		fmt.Fprintf(w, "\n- %s", s)
	}
	fmt.Fprintln(w)
}
