package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"golang.org/x/time/rate"

	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
)

// Options tunes an Engine; the zero value is fine for production.
type Options struct {
	// Logger receives the engine's logs. Default slog.Default().
	Logger *slog.Logger
	// IdleWait is how long an idle dispatcher waits before it looks at the
	// outbox again (new commits wake it at once). Default 1s.
	IdleWait time.Duration
	// ReplicaID names this process in poll leases. Default: host name,
	// process id and a random suffix.
	ReplicaID string
}

// Engine runs the sources and sinks of one configuration against a store.
type Engine struct {
	replica     string
	cfg         *config.Config
	store       store.Store
	log         *slog.Logger
	pollers     map[string]*poller
	dispatchers map[string]*dispatcher
}

// New builds an engine. sources and sinks hold one implementation for every
// source and sink named in cfg; the store stays owned by the caller.
func New(cfg *config.Config, st store.Store, sources map[string]Source, sinks map[string]Sink, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleWait <= 0 {
		opts.IdleWait = time.Second
	}
	if opts.ReplicaID == "" {
		opts.ReplicaID = defaultReplicaID()
	}
	e := &Engine{
		replica:     opts.ReplicaID,
		cfg:         cfg,
		store:       st,
		log:         opts.Logger,
		pollers:     map[string]*poller{},
		dispatchers: map[string]*dispatcher{},
	}
	for _, sc := range cfg.Sinks {
		sink, ok := sinks[sc.Name]
		if !ok {
			return nil, fmt.Errorf("sink %q has no implementation", sc.Name)
		}
		e.dispatchers[sc.Name] = &dispatcher{
			cfg:   sc,
			sink:  sink,
			store: st,
			log:   opts.Logger.With("sink", sc.Name),
			idle:  opts.IdleWait,
			wake:  make(chan struct{}, 1),
			gate:  &gate{failuresToOpen: sc.CircuitBreaker.Failures, cooldown: sc.CircuitBreaker.Cooldown},
		}
		if sc.RateLimit > 0 {
			e.dispatchers[sc.Name].limit = rate.NewLimiter(rate.Limit(sc.RateLimit), max(sc.Concurrency, 1))
		}
	}
	routes := map[string]route{}
	for _, sc := range cfg.Sinks {
		r := route{events: sc.Events, filter: sc.CompiledFilter()}
		if r.filter == nil && sc.Filter != "" {
			prog, err := config.CompileFilter(sc.Filter)
			if err != nil {
				return nil, fmt.Errorf("sink %q: compile filter: %w", sc.Name, err)
			}
			r.filter = prog
		}
		routes[sc.Name] = r
	}
	for _, sc := range cfg.Sources {
		src, ok := sources[sc.Name]
		if !ok {
			return nil, fmt.Errorf("source %q has no implementation", sc.Name)
		}
		if _, err := sourceSchedule(sc.Name, sc.Schedule); err != nil {
			return nil, fmt.Errorf("source %q: %w", sc.Name, err)
		}
		for _, name := range sc.Sinks {
			if _, ok := e.dispatchers[name]; !ok {
				return nil, fmt.Errorf("source %q: unknown sink %q", sc.Name, name)
			}
		}
		e.pollers[sc.Name] = &poller{
			cfg:    sc,
			source: src,
			store:  st,
			log:    opts.Logger.With("source", sc.Name),
			notify: e.notify,
			routes: routes,
		}
	}
	return e, nil
}

// notify wakes the dispatchers of the named sinks.
func (e *Engine) notify(sinks []string) {
	for _, name := range sinks {
		if d, ok := e.dispatchers[name]; ok {
			d.notify()
		}
	}
}

// Poll polls one source now, as a scheduled tick would, and commits. It
// returns ErrPollRunning if that source's previous poll is still running.
func (e *Engine) Poll(ctx context.Context, source string) (PollResult, error) {
	p, ok := e.pollers[source]
	if !ok {
		return PollResult{}, fmt.Errorf("unknown source %q", source)
	}
	return p.poll(ctx)
}

// Run schedules every source and dispatches every sink until ctx ends. Then
// it stops scheduling, lets in-flight polls and deliveries finish for up to
// the configured shutdown timeout, cancels what is still running, and
// returns. Run does not close the store.
func (e *Engine) Run(ctx context.Context) error {
	// pollCtx and sendCtx end only when the grace period is over.
	pollCtx, cancelPolls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPolls()
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()

	var dispatching sync.WaitGroup
	for _, d := range e.dispatchers {
		dispatching.Go(func() { d.run(ctx, sendCtx) })
	}

	logger := cronLogger{e.log}
	c := cron.New(cron.WithLogger(logger), cron.WithChain(cron.Recover(logger)))
	for _, sc := range e.cfg.Sources {
		sched, err := sourceSchedule(sc.Name, sc.Schedule)
		if err != nil {
			return err // New checked it already
		}
		p := e.pollers[sc.Name]
		t := &ticker{engine: e, poller: p, sched: sched, interval: scheduleInterval(sched, time.Now())}
		c.Schedule(sched, cron.FuncJob(func() { t.tick(pollCtx) }))
		p.log.Info("scheduled", "schedule", sc.Schedule, "first_poll", sched.Next(time.Now()).Format(time.RFC3339))
	}
	c.Start()
	e.log.Info("pollbridge running", "sources", len(e.pollers), "sinks", len(e.dispatchers))

	<-ctx.Done()
	grace := e.cfg.ShutdownTimeout
	e.log.Info("shutting down; finishing in-flight polls and deliveries", "timeout", grace)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()

	polls := c.Stop().Done()
	sends := make(chan struct{})
	go func() { dispatching.Wait(); close(sends) }()
	for polls != nil || sends != nil {
		select {
		case <-polls:
			polls = nil
		case <-sends:
			sends = nil
		case <-deadline.C:
			e.log.Warn("shutdown timeout reached; cancelling what is still running (its events stay in the outbox)")
			cancelPolls()
			cancelSends()
		}
	}
	e.log.Info("stopped")
	return nil
}

// maxLeaseJitter bounds the random delay before a replica asks for a tick's
// lease.
const maxLeaseJitter = 100 * time.Millisecond

// ticker runs the scheduled ticks of one source.
type ticker struct {
	engine   *Engine
	poller   *poller
	sched    cron.Schedule
	interval time.Duration

	mu      sync.Mutex
	lastErr string // last lease error logged
}

// tick polls the source if this replica wins the tick's lease. Every replica
// fires the same ticks (schedules are on a shared grid); the lease, named
// after the source and the tick's scheduled time, lets exactly one of them
// poll. A replica that dies holds no lease for the next tick, so the others
// carry on within one interval.
func (t *ticker) tick(ctx context.Context) {
	now := time.Now()
	// A short random delay lets a different replica win each race, so the
	// polls spread over the fleet instead of going to the fastest replica.
	jitter := time.NewTimer(rand.N(min(t.interval/10, maxLeaseJitter)) + 1)
	select {
	case <-jitter.C:
	case <-ctx.Done():
		jitter.Stop()
		return
	}
	if t.poller.backingOff(now) {
		return // logged by the poller; another replica may take the tick
	}
	// The scheduled time nearest to now: replicas agree on it as long as
	// their clocks are within half an interval of each other.
	at := t.sched.Next(now.Add(-t.interval / 2))
	name := "poll:" + t.poller.cfg.Name + ":" + strconv.FormatInt(at.Unix(), 10)
	ok, err := t.engine.store.TryLease(ctx, name, t.engine.replica, t.interval)
	t.reportLeaseErr(err)
	if err != nil || !ok {
		if err == nil {
			t.poller.log.Debug("tick polled by another replica", "tick", at.Format(time.RFC3339))
		}
		return
	}
	if _, err := t.poller.poll(ctx); errors.Is(err, ErrPollRunning) {
		t.poller.log.Warn("tick skipped: previous poll still running")
	}
}

// reportLeaseErr logs lease failures (the store is unreachable), repeats
// quietly.
func (t *ticker) reportLeaseErr(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil:
		if t.lastErr != "" {
			t.poller.log.Info("store reachable again; polling resumes")
			t.lastErr = ""
		}
	case err.Error() == t.lastErr:
		t.poller.log.Debug("tick skipped again: store unreachable", "err", err)
	default:
		t.lastErr = err.Error()
		t.poller.log.Error("tick skipped: cannot take the poll lease; polling paused until the store is reachable", "err", err)
	}
}

// defaultReplicaID names this process: host, pid and a random suffix.
func defaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.IntN(1<<16))
}
