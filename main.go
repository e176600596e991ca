// Command pollbridge turns pull-only REST APIs into push notifications: it
// polls the sources described in a YAML file on their schedules, diffs what
// it finds against the stored state, and POSTs a signed webhook for every
// item created, updated or deleted.
//
// Usage:
//
//	pollbridge run      [-c bridge.yaml]          run the daemon
//	pollbridge validate [-c bridge.yaml]          check a configuration file
//	pollbridge poll     [-c bridge.yaml] SOURCE   fetch once and show what would be sent
//	pollbridge dlq list   [-c bridge.yaml] [-sink NAME]
//	pollbridge dlq replay [-c bridge.yaml] [-sink NAME] (-all | ID...)
//	pollbridge health   [-c bridge.yaml]          exit 0 if the running daemon is ready
//	pollbridge version
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/admin"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/boltstore"
	"github.com/pollbridge/pollbridge/bridge/store/redisstore"
	"github.com/pollbridge/pollbridge/sinks"
	"github.com/pollbridge/pollbridge/sources"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

func main() {
	err := runCLI(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		// Configuration problems are printed as they are, one
		// FILE:LINE: field: problem line each; anything else is one line.
		var cfgErr *config.Errors
		if errors.As(err, &cfgErr) {
			fmt.Fprintln(os.Stderr, strings.TrimSpace(cfgErr.Error()))
		} else {
			fmt.Fprintln(os.Stderr, "pollbridge: "+oneLine(err.Error(), 2000))
		}
		os.Exit(1)
	}
}

const topUsage = `pollbridge turns pull-only REST APIs into signed webhooks.

Usage:
  pollbridge run      [-c FILE]          run the daemon (default FILE: bridge.yaml)
  pollbridge validate [-c FILE]          check a configuration file and exit
  pollbridge poll     [-c FILE] SOURCE   fetch SOURCE once, print its items and the
                                         events a diff would emit; commits nothing
  pollbridge dlq list   [-c FILE] [-sink NAME]
                                         list dead letters
  pollbridge dlq replay [-c FILE] [-sink NAME] (-all | ID...)
                                         put dead letters back in the outbox
  pollbridge health   [-c FILE]          exit 0 if the running daemon is ready
  pollbridge version                     print the version

poll, dlq and health take -admin URL to work through a running daemon's admin
API (by default, through admin.listen of the configuration when it answers).

Run 'pollbridge COMMAND -h' for a command's flags.
`

// runCLI runs one command line. Errors it returns are printed by main; usage
// errors are printed here and returned wrapped in errUsage.
func runCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "poll":
		return cmdPoll(ctx, rest, stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, rest, stdout, stderr)
	case "health":
		return cmdHealth(ctx, rest, stdout, stderr) // cli_admin.go
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, topUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "pollbridge: unknown command %q\n\n%s", cmd, topUsage)
		return errUsage
	}
}

// newFlags makes a FlagSet for a subcommand with its help text.
func newFlags(name, synopsis, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pollbridge %s\n\n%s\n\nFlags:\n", synopsis, help)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping flag errors to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// configFlag adds the -c flag every config-reading command has.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("c", "bridge.yaml", "configuration `FILE`")
}

// loadConfig loads and validates the configuration with the process
// environment. Its error lists every problem, one FILE:LINE: line each.
func loadConfig(path string) (*config.Config, error) {
	return config.Load(path, os.LookupEnv)
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", "validate [-c FILE]",
		"Checks a configuration file: YAML syntax, unknown keys, environment variables,\n"+
			"names, schedules, URLs, gjson paths. Prints every problem as FILE:LINE: field: what\n"+
			"is wrong, and exits non-zero if there is any. Nothing is fetched or started.", stderr)
	path := configFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pollbridge validate: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d sources, %d sinks)\n", cfg.Path, len(cfg.Sources), len(cfg.Sinks))
	return nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("run", "run [-c FILE] [-watch]",
		"Runs the daemon: polls every source on its schedule, commits changes and their\n"+
			"events to the store, and delivers the events to the sinks. SIGINT or SIGTERM\n"+
			"stops scheduling, lets in-flight polls and deliveries finish (up to\n"+
			"shutdown_timeout), and closes the store. Undelivered events stay in the\n"+
			"outbox and are delivered after the next start.\n\n"+
			"SIGHUP (or, with -watch, a change to FILE) reloads the configuration: added,\n"+
			"changed and removed sources and sinks take effect without losing state or\n"+
			"in-flight deliveries. A file with errors is rejected (the errors are logged)\n"+
			"and the running configuration stays.", stderr)
	path := configFlag(fs)
	watch := fs.Bool("watch", false, "reload when the configuration file changes")
	pprof := fs.Bool("pprof", false, "serve runtime profiles at /debug/pprof/ on the admin listener")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pollbridge run: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)
	srcs, snks, err := buildPlugins(cfg, logger)
	if err != nil {
		return err
	}
	st, err := openRunStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	metrics := bridge.NewMetrics(version)
	eng, err := bridge.New(cfg, st, srcs, snks, bridge.Options{Logger: logger, Metrics: metrics})
	if err != nil {
		return err
	}
	stopAdmin, err := startAdmin(ctx, cfg, eng, metrics, logger, *pprof) // cli_admin.go
	if err != nil {
		return err
	}
	defer stopAdmin()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process at once
	}()
	reloads := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading the configuration", "file", *path)
			case <-reloads:
				logger.Info("configuration file changed: reloading", "file", *path)
			}
			reload(eng, *path, logger)
		}
	}()
	if *watch {
		go watchFile(ctx, *path, time.Second, func() {
			select {
			case reloads <- struct{}{}:
			default:
			}
		})
	}
	return eng.Run(ctx)
}

// buildPlugins makes the sources and sinks of cfg.
func buildPlugins(cfg *config.Config, logger *slog.Logger) (map[string]bridge.Source, map[string]bridge.Sink, error) {
	srcs := map[string]bridge.Source{}
	reg := sources.NewRegistry(cfg, logger) // shares per-host rate limits
	for _, sc := range cfg.Sources {
		s, err := reg.New(sc, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("source %s: %w", sc.Name, err)
		}
		srcs[sc.Name] = s
	}
	snks := map[string]bridge.Sink{}
	for _, sc := range cfg.Sinks {
		s, err := sinks.New(sc, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		snks[sc.Name] = s
	}
	return srcs, snks, nil
}

// reload applies the configuration file at path to a running engine, or
// logs why it cannot and leaves the running configuration alone.
func reload(eng *bridge.Engine, path string, logger *slog.Logger) {
	cfg, err := loadConfig(path)
	if err != nil {
		var cfgErr *config.Errors
		if errors.As(err, &cfgErr) {
			for _, e := range *cfgErr {
				logger.Error("reload rejected; the running configuration stays", "err", e.Error())
			}
		} else {
			logger.Error("reload rejected; the running configuration stays", "err", err)
		}
		return
	}
	old := eng.Config()
	if !sameBackend(old.State, cfg.State) {
		logger.Error("reload rejected: changing the state backend needs a restart; the running configuration stays")
		return
	}
	if old.Admin != cfg.Admin || old.Log != cfg.Log {
		logger.Warn("reload: admin and log settings take effect at the next restart; the rest is applied now")
	}
	srcs, snks, err := buildPlugins(cfg, logger)
	if err == nil {
		err = eng.Reload(cfg, srcs, snks)
	}
	if err != nil {
		logger.Error("reload rejected; the running configuration stays", "err", err)
	}
}

// sameBackend reports whether two state settings name the same backend.
func sameBackend(a, b config.State) bool {
	if (a.Redis == nil) != (b.Redis == nil) {
		return false
	}
	if a.Redis != nil {
		return *a.Redis == *b.Redis
	}
	return a.Path == b.Path
}

// watchFile calls changed whenever the file at path changes (size, time or
// contents), checking every interval until ctx ends.
func watchFile(ctx context.Context, path string, interval time.Duration, changed func()) {
	read := func() []byte {
		b, _ := os.ReadFile(path)
		return b
	}
	last := read()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if cur := read(); !bytes.Equal(cur, last) {
			last = cur
			changed()
		}
	}
}

// openRunStore opens the configured store for the daemon. Redis may come up
// after pollbridge (a sidecar starts with its pod): the daemon waits for it,
// logging, until ctx ends.
func openRunStore(ctx context.Context, cfg *config.Config, logger *slog.Logger) (store.Store, error) {
	r := cfg.State.Redis
	if r == nil {
		st, err := boltstore.Open(cfg.State.Path, boltstore.Options{})
		if err == nil {
			logger.Info("state", "backend", "bolt", "path", cfg.State.Path)
		}
		return st, err
	}
	redisstore.RouteClientLogs(logger) // go-redis's own logs, at debug
	wait := time.Second
	for {
		st, err := redisstore.Open(ctx, redisstore.Options{URL: r.URL, Prefix: r.Prefix})
		if err == nil {
			logger.Info("state", "backend", "redis", "prefix", r.Prefix)
			return st, nil
		}
		logger.Error("waiting for Redis", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open state: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// newLogger builds the slog logger the configuration asks for.
func newLogger(lc config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openState opens the store for a CLI command. A missing state file is an
// empty state for read-only commands (nil store, no error).
func openState(cfg *config.Config, readOnly bool) (store.Store, error) {
	if r := cfg.State.Redis; r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return redisstore.Open(ctx, redisstore.Options{URL: r.URL, Prefix: r.Prefix})
	}
	if readOnly {
		if _, err := os.Stat(cfg.State.Path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	st, err := boltstore.Open(cfg.State.Path, boltstore.Options{ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func cmdPoll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("poll", "poll [-c FILE] [-admin URL] SOURCE",
		"Fetches SOURCE once, prints the items it found and the webhooks a diff against\n"+
			"the stored state would send. Commits nothing and sends nothing: use it to debug a\n"+
			"source definition. The state file is read if it exists. A running daemon holds\n"+
			"it locked: then the daemon makes the dry run, through its admin API (-admin, or\n"+
			"admin.listen in FILE).", stderr)
	path := configFlag(fs)
	adminURL := adminFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "pollbridge poll: name exactly one SOURCE")
		fs.Usage()
		return errUsage
	}
	if done, err := pollRemote(ctx, *adminURL, nil, fs.Arg(0), stdout); done {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	sc, ok := cfg.Source(name)
	if !ok {
		var names []string
		for _, s := range cfg.Sources {
			names = append(names, s.Name)
		}
		return fmt.Errorf("no source %q in %s (sources: %s)", name, cfg.Path, strings.Join(names, ", "))
	}
	if done, err := pollRemote(ctx, "", cfg, name, stdout); done {
		return err
	}
	src, err := sources.NewRegistry(cfg, newLogger(cfg.Log, stderr)).New(sc, nil)
	if err != nil {
		return fmt.Errorf("source %s: %w", name, err)
	}
	state := store.State{Items: map[string]store.Item{}, Meta: map[string]string{}}
	st, err := openState(cfg, true)
	if err != nil {
		return err
	}
	if st != nil {
		state, err = st.Load(ctx, name)
		st.Close()
		if err != nil {
			return fmt.Errorf("load state of %s: %w", name, err)
		}
	}
	snap, diff, err := bridge.DryRun(ctx, sc, src, state)
	if err != nil {
		return fmt.Errorf("source %s: %w", name, err)
	}
	return printDryRun(stdout, admin.NewDryRun(sc, snap, state, diff)) // cli_admin.go
}

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const help = "Dead letters are events a sink refused for good (4xx) or that ran out of retries.\n" +
		"They are kept in the store until replayed. With Redis state these commands work\n" +
		"while the daemons run. A running daemon holds an embedded state file locked: then\n" +
		"they go through its admin API (-admin URL, or admin.listen in the configuration)."
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintf(stderr, "Usage: pollbridge dlq list|replay [flags]\n\n%s\n", help)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	sub, args := args[0], args[1:]
	synopsis := "dlq list [-c FILE] [-admin URL] [-sink NAME]"
	if sub == "replay" {
		synopsis = "dlq replay [-c FILE] [-admin URL] [-sink NAME] (-all | ID...)"
	}
	fs := newFlags("dlq "+sub, synopsis, help, stderr)
	path := configFlag(fs)
	adminURL := adminFlag(fs)
	sink := fs.String("sink", "", "only dead letters of sink `NAME`")
	all := false
	if sub == "replay" {
		fs.BoolVar(&all, "all", false, "replay every dead letter (of -sink, if given)")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if done, err := dlqRemote(ctx, *adminURL, nil, sub, fs, *sink, all, stdout, stderr); done {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *sink != "" {
		if _, ok := cfg.Sink(*sink); !ok {
			return fmt.Errorf("no sink %q in %s", *sink, cfg.Path)
		}
	}
	if done, err := dlqRemote(ctx, "", cfg, sub, fs, *sink, all, stdout, stderr); done {
		return err
	}
	if sub == "list" {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "pollbridge dlq list: unexpected argument %q\n", fs.Arg(0))
			return errUsage
		}
		st, err := openState(cfg, true)
		if err != nil || st == nil {
			if err == nil {
				fmt.Fprintln(stdout, "no dead letters (no state file yet)")
			}
			return err
		}
		defer st.Close()
		dead, err := st.Dead(ctx, *sink)
		if err != nil {
			return fmt.Errorf("list dead letters: %w", err)
		}
		return printDead(stdout, dead)
	}
	if all == (fs.NArg() > 0) {
		fmt.Fprintln(stderr, "pollbridge dlq replay: give either -all or one or more IDs")
		fs.Usage()
		return errUsage
	}
	st, err := openState(cfg, false)
	if err != nil {
		return err
	}
	defer st.Close()
	var ids []string
	if !all {
		ids = fs.Args()
	}
	n, err := st.Replay(ctx, *sink, ids)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	fmt.Fprintf(stdout, "replayed %d dead letter(s); pollbridge run delivers them\n", n)
	return nil
}

// printDead prints dead letters as a table.
func printDead(w io.Writer, dead []store.Delivery) error {
	if len(dead) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSINK\tEVENT\tITEM\tATTEMPTS\tDEAD SINCE\tLAST ERROR")
	for _, d := range dead {
		var ev bridge.Event
		typ := "?"
		if json.Unmarshal(d.Payload, &ev) == nil {
			typ = ev.Type
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%d\t%s\t%s\n", d.ID, d.Sink, typ, d.Source, d.Key,
			d.Attempts, d.Dead.Local().Format(time.DateTime), oneLine(d.LastError, 100))
	}
	return tw.Flush()
}

// oneLine squeezes s onto one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// versionString describes this build.
func versionString() string {
	v := "pollbridge " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		v += " (" + bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += ", " + s.Value[:12]
			}
		}
		v += ")"
	}
	return v
}

// This file holds the CLI's side of the admin listener: starting it with the
// daemon, `pollbridge health`, and running `poll` and `dlq` against a
// running daemon (whose embedded state file is locked) through its API.

// adminFlag adds the -admin flag.
func adminFlag(fs *flag.FlagSet) *string {
	return fs.String("admin", "", "work through the admin API of the daemon at `URL` (such as http://127.0.0.1:9090);\n"+
		"the token, if one is needed, comes from $"+admin.TokenEnv+". Default: admin.listen of\n"+
		"the configuration when a daemon answers there")
}

// startAdmin starts the admin listener of cfg, if it has one, until the
// returned stop function is called. When ctx ends it drains (/readyz 503).
func startAdmin(ctx context.Context, cfg *config.Config, eng *bridge.Engine, m *bridge.Metrics, logger *slog.Logger, pprof bool) (stop func(), err error) {
	if cfg.Admin.Listen == "" {
		return func() {}, nil
	}
	srv, err := admin.Start(ctx, cfg.Admin.Listen, admin.Options{
		Engine: eng, Metrics: m, Token: cfg.Admin.Token, Logger: logger, Version: version, Pprof: pprof,
	})
	if err != nil {
		return nil, err
	}
	return func() {
		if err := srv.Close(); err != nil {
			logger.Warn("admin listener did not close cleanly", "err", err)
		}
	}, nil
}

// flagClient is the admin client for an -admin URL; the token comes from
// the environment (never the command line, where ps shows it).
func flagClient(url string) (*admin.Client, error) {
	return admin.NewClient(url, os.Getenv(admin.TokenEnv))
}

// configClient is the admin client for cfg's admin listener, nil when it
// has none.
func configClient(cfg *config.Config) *admin.Client {
	if cfg.Admin.Listen == "" {
		return nil
	}
	c, err := admin.NewClient(admin.BaseURL(cfg.Admin.Listen), cfg.Admin.Token)
	if err != nil {
		return nil
	}
	return c
}

func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("health", "health [-c FILE] [-admin URL]",
		"Asks the running daemon whether it is ready (GET /readyz on the admin listener:\n"+
			"configuration loaded, store reachable, not shutting down). Exits 0 when it is,\n"+
			"1 when it is not or does not answer: a container HEALTHCHECK. Needs admin.listen\n"+
			"in FILE, or -admin.", stderr)
	path := configFlag(fs)
	adminURL := fs.String("admin", "", "the daemon's admin listener `URL` (default: from admin.listen in FILE)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after `DURATION`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pollbridge health: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	base := *adminURL
	if base == "" {
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
		}
		if cfg.Admin.Listen == "" {
			return fmt.Errorf("%s: admin.listen is not set: health asks the admin listener (or give -admin URL)", cfg.Path)
		}
		base = admin.BaseURL(cfg.Admin.Listen)
	}
	c, err := admin.NewClient(base, "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}

// pollViaAdmin prints a dry run of source made by the running daemon.
func pollViaAdmin(ctx context.Context, c *admin.Client, source string, stdout io.Writer) error {
	dr, err := c.DryRun(ctx, source)
	if err != nil {
		return fmt.Errorf("poll %s through the admin API: %w", source, err)
	}
	return printDryRun(stdout, dr)
}

// printDryRun prints what `pollbridge poll` shows.
func printDryRun(w io.Writer, dr admin.DryRun) error {
	fmt.Fprintf(w, "source %s: %d page(s), %d item(s)\n", dr.Source, dr.Pages, len(dr.Items))
	for _, line := range sources.Describe(dr.Requests) {
		fmt.Fprintf(w, "  %s\n", line)
	}
	for _, it := range dr.Items {
		fmt.Fprintf(w, "  %-12s %s\n", it.Key, it.Data)
	}
	switch {
	case dr.StateGeneration == 0 && !dr.EmitInitial:
		fmt.Fprintf(w, "\nno stored state yet: the first poll records these %d items as the baseline and sends nothing\n", dr.DiffItems)
		return nil
	case dr.StateGeneration == 0:
		fmt.Fprintln(w, "\nno stored state yet; emit_initial is set, so every item is sent as item.created")
	default:
		fmt.Fprintf(w, "\nstored state: %d item(s), generation %d\n", dr.StateItems, dr.StateGeneration)
	}
	if dr.HeldDeletes > 0 {
		fmt.Fprintf(w, "%d deletion(s) would be held back by max_delete_ratio until the next poll confirms them\n", dr.HeldDeletes)
	}
	if dr.PendingDeletes > 0 {
		fmt.Fprintf(w, "%d missing item(s) not deleted yet: delete_after wants more absent polls\n", dr.PendingDeletes)
	}
	if dr.Suppressed > 0 {
		fmt.Fprintf(w, "%d change(s) detected but not sent (events / filter)\n", dr.Suppressed)
	}
	for _, msg := range dr.FilterErrors {
		fmt.Fprintf(w, "filter failed (the event is sent anyway): %s\n", msg)
	}
	fmt.Fprintf(w, "%d event(s) would be sent to %s (nothing committed):\n", len(dr.Events), strings.Join(dr.Sinks, ", "))
	for i := range dr.Events {
		body, err := sinks.Encode(&dr.Events[i])
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s\n", body)
	}
	return nil
}

// dlqViaAdmin runs `dlq list` or `dlq replay` through the admin API. ids
// are the delivery IDs to replay (nil with all).
func dlqViaAdmin(ctx context.Context, c *admin.Client, sub, sink string, ids []string, stdout io.Writer) error {
	if sub == "list" {
		dead, err := c.Dead(ctx, sink)
		if err != nil {
			return err
		}
		return printDead(stdout, dead)
	}
	n, err := c.Replay(ctx, sink, ids)
	if err != nil {
		if n > 0 {
			fmt.Fprintf(stdout, "replayed %d dead letter(s) before the error\n", n)
		}
		return err
	}
	fmt.Fprintf(stdout, "replayed %d dead letter(s); the running daemon delivers them now\n", n)
	return nil
}

// unreachable reports whether err says that no daemon answered, so a
// command may fall back to opening the store itself.
func unreachable(err error) bool { return errors.Is(err, admin.ErrUnreachable) }

// adminFor picks the admin client for a command: the one at url when url is
// set, else cfg's listener (cfg may be nil). fallback reports that a
// connection failure means "no daemon runs" and the command may open the
// store itself; c is nil when there is no admin listener to ask.
func adminFor(url string, cfg *config.Config) (c *admin.Client, fallback bool, err error) {
	switch {
	case url != "":
		c, err = flagClient(url)
		return c, false, err
	case cfg != nil:
		return configClient(cfg), true, nil
	}
	return nil, false, nil
}

// pollRemote makes `poll`'s dry run through the admin API (see adminFor).
// done is false when the command must do it itself.
func pollRemote(ctx context.Context, url string, cfg *config.Config, source string, stdout io.Writer) (done bool, err error) {
	c, fallback, err := adminFor(url, cfg)
	if c == nil || err != nil {
		return err != nil, err
	}
	err = pollViaAdmin(ctx, c, source, stdout)
	if fallback && unreachable(err) {
		return false, nil
	}
	return true, err
}

// dlqRemote runs `dlq list|replay` through the admin API (see adminFor).
// done is false when the command must open the store itself.
func dlqRemote(ctx context.Context, url string, cfg *config.Config, sub string, fs *flag.FlagSet, sink string, all bool, stdout, stderr io.Writer) (done bool, err error) {
	c, fallback, err := adminFor(url, cfg)
	if c == nil || err != nil {
		return err != nil, err
	}
	var ids []string
	switch {
	case sub == "list" && fs.NArg() > 0:
		fmt.Fprintf(stderr, "pollbridge dlq list: unexpected argument %q\n", fs.Arg(0))
		return true, errUsage
	case sub == "replay" && all == (fs.NArg() > 0):
		fmt.Fprintln(stderr, "pollbridge dlq replay: give either -all or one or more IDs")
		fs.Usage()
		return true, errUsage
	case sub == "replay" && !all:
		ids = fs.Args()
	}
	err = dlqViaAdmin(ctx, c, sub, sink, ids, stdout)
	if fallback && unreachable(err) {
		return false, nil
	}
	return true, err
}
