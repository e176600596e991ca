package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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
	// Metrics, when set, receives the engine's Prometheus metrics
	// (see metrics.go). Default: none.
	Metrics *Metrics
}

// Engine runs the sources and sinks of one configuration against a store.
// Reload swaps in a new configuration while it runs.
type Engine struct {
	replica string
	store   store.Store
	log     *slog.Logger
	idle    time.Duration

	mu          sync.RWMutex
	cfg         *config.Config
	pollers     map[string]*poller
	dispatchers map[string]*dispatcher
	run         *runState // nil unless Run is running
	metrics     *Metrics  // nil: none

	// replicas alive on the store, counted every replicaBeat while Run
	// runs; 0 when not known. See ticker.tick.
	replicas atomic.Int32
}

// runState is what Run owns while it runs.
type runState struct {
	ctx         context.Context // ends when shutdown begins
	pollCtx     context.Context // ends at the shutdown deadline
	sendCtx     context.Context // ends at the shutdown deadline
	cron        *cron.Cron
	stopClaims  map[string]context.CancelFunc // per dispatcher
	dispatching sync.WaitGroup
	retired     []*cron.Cron // replaced by reloads; their jobs may still run
	workers     *workers     // run the polls and the deliveries
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
	e := &Engine{replica: opts.ReplicaID, store: opts.Metrics.instrumentStore(st), log: opts.Logger, idle: opts.IdleWait, metrics: opts.Metrics}
	pollers, dispatchers, err := e.build(cfg, sources, sinks)
	if err != nil {
		return nil, err
	}
	e.cfg, e.pollers, e.dispatchers = cfg, pollers, dispatchers
	opts.Metrics.bind(e)
	return e, nil
}

// build makes the pollers and dispatchers of cfg. Those whose configuration
// did not change since the engine's current one are reused as they are
// (with their state: backoff, circuit breaker, running poll).
func (e *Engine) build(cfg *config.Config, sources map[string]Source, sinks map[string]Sink) (map[string]*poller, map[string]*dispatcher, error) {
	dispatchers := map[string]*dispatcher{}
	routes := map[string]route{}
	for _, sc := range cfg.Sinks {
		if old, ok := e.dispatchers[sc.Name]; ok && sameConfig(old.cfg, sc) {
			dispatchers[sc.Name] = old
		} else {
			sink, ok := sinks[sc.Name]
			if !ok {
				return nil, nil, fmt.Errorf("sink %q has no implementation", sc.Name)
			}
			d := &dispatcher{
				cfg:   sc,
				sink:  sink,
				store: e.store,
				log:   e.log.With("sink", sc.Name),
				idle:  e.idle,
				wake:  make(chan struct{}, 1),
				gate:  &gate{failuresToOpen: sc.CircuitBreaker.Failures, cooldown: sc.CircuitBreaker.Cooldown},
			}
			d.metrics = e.metrics
			if sc.RateLimit > 0 {
				d.limit = rate.NewLimiter(rate.Limit(sc.RateLimit), max(sc.Concurrency, 1))
			}
			dispatchers[sc.Name] = d
		}
		r := route{events: sc.Events, filter: sc.CompiledFilter()}
		if r.filter == nil && sc.Filter != "" {
			prog, err := config.CompileFilter(sc.Filter)
			if err != nil {
				return nil, nil, fmt.Errorf("sink %q: compile filter: %w", sc.Name, err)
			}
			r.filter = prog
		}
		routes[sc.Name] = r
	}
	pollers := map[string]*poller{}
	for _, sc := range cfg.Sources {
		if _, err := sourceSchedule(sc.Name, sc.Schedule); err != nil {
			return nil, nil, fmt.Errorf("source %q: %w", sc.Name, err)
		}
		for _, name := range sc.Sinks {
			if _, ok := dispatchers[name]; !ok {
				return nil, nil, fmt.Errorf("source %q: unknown sink %q", sc.Name, name)
			}
		}
		if old, ok := e.pollers[sc.Name]; ok && sameConfig(old.cfg, sc) && e.cfg != nil && sameConfig(e.cfg.Hosts, cfg.Hosts) {
			old.setRoutes(routes)
			pollers[sc.Name] = old
			continue
		}
		src, ok := sources[sc.Name]
		if !ok {
			return nil, nil, fmt.Errorf("source %q has no implementation", sc.Name)
		}
		p := &poller{
			cfg:    sc,
			source: src,
			store:  e.store,
			log:    e.log.With("source", sc.Name),
			notify: e.notify,
		}
		p.metrics = e.metrics
		p.setRoutes(routes)
		pollers[sc.Name] = p
	}
	return pollers, dispatchers, nil
}

// sameConfig reports whether two configuration values are equal in every
// exported field (compiled filters are derived from those).
func sameConfig(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// notify wakes the dispatchers of the named sinks.
func (e *Engine) notify(sinks []string) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, name := range sinks {
		if d, ok := e.dispatchers[name]; ok {
			d.notify()
		}
	}
}

// poller returns the named source's poller.
func (e *Engine) poller(name string) (*poller, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	p, ok := e.pollers[name]
	return p, ok
}

// dispatcher returns the named sink's dispatcher.
func (e *Engine) dispatcher(name string) (*dispatcher, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	d, ok := e.dispatchers[name]
	return d, ok
}

// Config returns the configuration the engine runs now.
func (e *Engine) Config() *config.Config {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.cfg
}

// Poll polls one source now, as a scheduled tick would, and commits. It
// returns ErrPollRunning if that source's previous poll is still running.
func (e *Engine) Poll(ctx context.Context, source string) (PollResult, error) {
	p, ok := e.poller(source)
	if !ok {
		return PollResult{}, fmt.Errorf("unknown source %q", source)
	}
	return p.poll(ctx)
}

// Reload switches the engine to cfg: sources and sinks that were added
// start, removed ones stop, changed ones restart, unchanged ones keep
// running untouched. Nothing stored is lost: a removed source keeps its
// state, a removed or changed sink's undelivered events stay in the outbox
// (a changed sink's new dispatcher delivers them), and deliveries in flight
// finish. If cfg cannot be applied, Reload returns an error and the old
// configuration keeps running. sources and sinks must hold implementations
// for every source and sink of cfg; those of unchanged ones are not used.
func (e *Engine) Reload(cfg *config.Config, sources map[string]Source, sinks map[string]Sink) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	pollers, dispatchers, err := e.build(cfg, sources, sinks)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var added, removed, changed []string
	for name, d := range e.dispatchers {
		if nd, ok := dispatchers[name]; !ok || nd != d {
			if e.run != nil {
				e.run.stopClaims[name]() // in-flight deliveries finish
			}
		}
	}
	for name, p := range e.pollers {
		switch np, ok := pollers[name]; {
		case !ok:
			removed = append(removed, "source "+name)
		case np != p:
			changed = append(changed, "source "+name)
		}
	}
	for name := range pollers {
		if _, ok := e.pollers[name]; !ok {
			added = append(added, "source "+name)
		}
	}
	for name, d := range dispatchers {
		switch od, ok := e.dispatchers[name]; {
		case !ok:
			added = append(added, "sink "+name)
		case od != d:
			changed = append(changed, "sink "+name)
		}
	}
	for name := range e.dispatchers {
		if _, ok := dispatchers[name]; !ok {
			removed = append(removed, "sink "+name)
		}
	}
	old := e.dispatchers
	e.cfg, e.pollers, e.dispatchers = cfg, pollers, dispatchers
	if r := e.run; r != nil {
		for name, d := range dispatchers {
			if old[name] != d {
				e.startDispatcher(d)
			}
		}
		r.retired = append(r.retired, r.cron)
		r.cron.Stop() // its running jobs finish under pollCtx
		r.cron = e.schedule()
		r.cron.Start()
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	e.log.Info("configuration reloaded", "added", added, "removed", removed, "changed", changed)
	return nil
}

// startDispatcher runs d until Run's shutdown or a reload replaces it.
// Callers hold e.mu and e.run is set.
func (e *Engine) startDispatcher(d *dispatcher) {
	r := e.run
	ctx, stop := context.WithCancel(r.ctx)
	r.stopClaims[d.cfg.Name] = stop
	r.dispatching.Go(func() { d.run(ctx, r.sendCtx, r.workers) })
	d.notify() // look at the outbox at once: it may hold older events
}

// schedule makes a cron that ticks every source, one entry per tickGroup.
// Callers hold e.mu and e.run is set.
func (e *Engine) schedule() *cron.Cron {
	logger := cronLogger{e.log}
	c := cron.New(cron.WithLogger(logger), cron.WithChain(cron.Recover(logger)))
	pollCtx := e.run.pollCtx
	for _, g := range e.tickGroups() {
		g.workers = e.run.workers
		c.Schedule(g.sched, cron.FuncJob(func() { g.tick(pollCtx) }))
	}
	return c
}

// tickGroups groups the sources whose schedules are the same, offset
// included, in the configuration's order. Callers hold e.mu.
func (e *Engine) tickGroups() []*tickGroup {
	type groupKey struct {
		spec   string
		offset time.Duration
	}
	groups := map[groupKey]*tickGroup{}
	var order []*tickGroup
	for _, sc := range e.cfg.Sources {
		sched, err := sourceSchedule(sc.Name, sc.Schedule)
		if err != nil {
			continue // build checked every schedule
		}
		p := e.pollers[sc.Name]
		t := &ticker{engine: e, poller: p, sched: sched, interval: scheduleInterval(sched, time.Now())}
		key := groupKey{sc.Schedule, scheduleOffset(sched)}
		g := groups[key]
		if g == nil {
			g = &tickGroup{sched: sched}
			groups[key] = g
			order = append(order, g)
		}
		g.tickers = append(g.tickers, t)
		p.log.Info("scheduled", "schedule", sc.Schedule, "first_poll", sched.Next(time.Now()).Format(time.RFC3339))
	}
	return order
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

	e.mu.Lock()
	if e.run != nil {
		e.mu.Unlock()
		return errors.New("engine is already running")
	}
	r := &runState{ctx: ctx, pollCtx: pollCtx, sendCtx: sendCtx, stopClaims: map[string]context.CancelFunc{}, workers: newWorkers()}
	defer r.workers.stop()
	counting := make(chan struct{})
	go func() { defer close(counting); e.countReplicas(ctx) }()
	defer func() { <-counting }()
	e.run = r
	for _, d := range e.dispatchers {
		e.startDispatcher(d)
	}
	r.cron = e.schedule()
	r.cron.Start()
	e.log.Info("pollbridge running", "sources", len(e.pollers), "sinks", len(e.dispatchers))
	grace := e.cfg.ShutdownTimeout
	e.mu.Unlock()

	<-ctx.Done()
	e.mu.Lock()
	e.log.Info("shutting down; finishing in-flight polls and deliveries", "timeout", grace)
	crons := append(r.retired, r.cron)
	e.mu.Unlock()
	deadline := time.NewTimer(grace)
	defer deadline.Stop()

	polls := make(chan struct{})
	go func() {
		for _, c := range crons {
			<-c.Stop().Done()
		}
		close(polls)
	}()
	sends := make(chan struct{})
	go func() { r.dispatching.Wait(); close(sends) }()
	for pollsC, sendsC := (<-chan struct{})(polls), (<-chan struct{})(sends); pollsC != nil || sendsC != nil; {
		select {
		case <-pollsC:
			pollsC = nil
		case <-sendsC:
			sendsC = nil
		case <-deadline.C:
			e.log.Warn("shutdown timeout reached; cancelling what is still running (its events stay in the outbox)")
			cancelPolls()
			cancelSends()
		}
	}
	e.mu.Lock()
	e.run = nil
	e.mu.Unlock()
	e.log.Info("stopped")
	return nil
}

// replicaBeat is how often a running engine tells the store it is alive;
// replicaTTL is how long one such beat counts.
const (
	replicaBeat = time.Second
	replicaTTL  = 3 * replicaBeat
)

// countReplicas tells the store that this replica is alive, at once and
// then every replicaBeat until ctx ends, and keeps the number of live
// replicas the store reports in e.replicas (0 when the store did not
// answer, which makes ticks spread their lease attempts).
func (e *Engine) countReplicas(ctx context.Context) {
	beat := time.NewTicker(replicaBeat)
	defer beat.Stop()
	for {
		n, err := e.store.Replicas(ctx, e.replica, replicaTTL)
		if err != nil {
			n = 0 // logged by the ticks' lease attempts, which fail too
		}
		e.replicas.Store(int32(n))
		e.metrics.setReplicas(n)
		select {
		case <-beat.C:
		case <-ctx.Done():
			return
		}
	}
}

// maxLeaseJitter bounds the random delay before a replica asks for a tick's
// lease when replicas share the store.
const maxLeaseJitter = 25 * time.Millisecond

// tickGroup is the sources that share one schedule, offset included: they
// tick at the same instants, so cron keeps one entry, and starts one
// goroutine a tick, for all of them. (robfig/cron sorts its entries at every
// wake-up: with an entry per source that sort was 6% of pollbridge's CPU at
// 500 sources.)
type tickGroup struct {
	sched   cron.Schedule
	tickers []*ticker
	workers *workers
}

// tick runs the tick of every source of g and waits for their polls, so
// that cron knows the job runs until the last poll ends. A lone replica
// asks the store for all the ticks' leases in one StartPolls call (on Redis,
// one round trip for the whole group) and then polls the sources it holds:
// each on a worker (see workers) but the last, which runs here, on the
// goroutine that would otherwise only wait. Replicas that share the store
// first wait a short random delay per source, so that a different replica
// wins each race and the polls spread over the fleet instead of going to
// the fastest replica. A panic in a poll is raised again here, where cron's
// Recover logs it.
//
// The wait is one WaitGroup, so the end of the group's polls wakes this
// goroutine once, not once per poll: at 500 polls a second every goroutine
// wake-up is a visible share of a poll's cost.
func (g *tickGroup) tick(ctx context.Context) {
	now := time.Now()
	var tasks []func()
	if alone := len(g.tickers) > 0 && g.tickers[0].engine.replicas.Load() == 1; alone {
		tasks = startTicks(ctx, now, g.tickers)
	} else {
		tasks = make([]func(), 0, len(g.tickers))
		for _, t := range g.tickers {
			tasks = append(tasks, func() {
				if t.jitter(ctx) {
					for _, poll := range startTicks(ctx, now, []*ticker{t}) {
						poll()
					}
				}
			})
		}
	}
	if len(tasks) == 0 {
		return
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first any // the first poll's panic
	)
	guarded := func(f func()) {
		defer func() {
			if p := recover(); p != nil {
				mu.Lock()
				if first == nil {
					first = p
				}
				mu.Unlock()
			}
		}()
		f()
	}
	last := len(tasks) - 1
	for _, f := range tasks[:last] {
		wg.Add(1)
		g.workers.Go(func() {
			defer wg.Done()
			guarded(f)
		})
	}
	guarded(tasks[last])
	wg.Wait()
	if first != nil {
		panic(first)
	}
}

// ticker runs the scheduled ticks of one source.
type ticker struct {
	engine   *Engine
	poller   *poller
	sched    cron.Schedule
	interval time.Duration

	mu      sync.Mutex
	failing bool // the last lease attempt failed (logged once)
}

// jitter waits a random delay of up to a tenth of the interval (at most
// maxLeaseJitter) before a replica that shares the store asks for a tick's
// lease. It reports false when ctx ended first.
func (t *ticker) jitter(ctx context.Context) bool {
	timer := time.NewTimer(rand.N(min(t.interval/10, maxLeaseJitter)) + 1)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// startTicks begins the tick that fired at now of every ticker of ts (which
// share one schedule) in one Store.StartPolls call: every replica fires the
// same ticks (schedules are on a shared grid), and the lease, named after
// the source and the tick's scheduled time, lets exactly one of them poll.
// A replica that dies holds no lease for the next tick, so the others
// carry on within one interval. Sources that back off or whose previous
// poll still runs skip the tick. It returns a function per tick this
// replica holds, which polls the source.
func startTicks(ctx context.Context, now time.Time, ts []*ticker) []func() {
	ready := make([]*ticker, 0, len(ts))
	ats := make([]time.Time, 0, len(ts))
	ticks := make([]store.PollTick, 0, len(ts))
	for _, t := range ts {
		if t.poller.backingOff(now) {
			continue // logged by the poller; another replica may take the tick
		}
		if !t.poller.running.TryLock() {
			t.poller.log.Warn("tick skipped: previous poll still running")
			continue
		}
		// The scheduled time nearest to now: replicas agree on it as long
		// as their clocks are within half an interval of each other.
		at := t.sched.Next(now.Add(-t.interval / 2))
		ready, ats = append(ready, t), append(ats, at)
		ticks = append(ticks, store.PollTick{Source: t.poller.cfg.Name, Tick: strconv.FormatInt(at.UnixMilli(), 10)})
	}
	if len(ready) == 0 {
		return nil
	}
	e := ready[0].engine
	started := func() []store.PollStart {
		// A panicking backend (raised again for cron's Recover to log)
		// must not leave the sources locked: no later tick would poll them.
		defer func() {
			if p := recover(); p != nil {
				for _, t := range ready {
					t.poller.running.Unlock()
				}
				panic(p)
			}
		}()
		return e.store.StartPolls(ctx, e.replica, ready[0].interval, ticks)
	}()
	if len(started) != len(ready) { // a broken backend: poll nothing
		err := fmt.Errorf("start polls: %d answers for %d ticks", len(started), len(ready))
		started = make([]store.PollStart, len(ready))
		for i := range started {
			started[i].Err = err
		}
	}
	var polls []func()
	for i, r := range started {
		t, at := ready[i], ats[i]
		t.reportLeaseErr(r.Err)
		if !r.Held {
			t.poller.running.Unlock()
			if r.Err == nil {
				t.poller.log.Debug("tick polled by another replica", "tick", at.Format(time.RFC3339Nano))
			}
			continue
		}
		polls = append(polls, func() {
			defer t.poller.running.Unlock()
			t.poller.pollStarted(ctx, at, r.State)
		})
	}
	return polls
}

// reportLeaseErr logs lease failures (the store is unreachable) once, when
// they begin, and the recovery; the failures in between go to debug. The
// errors name each tick's lease, so they are not compared by text.
func (t *ticker) reportLeaseErr(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil:
		if t.failing {
			t.poller.log.Info("store reachable again; polling resumes")
			t.failing = false
		}
	case t.failing:
		t.poller.log.Debug("tick skipped again: store unreachable", "err", err)
	default:
		t.failing = true
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
