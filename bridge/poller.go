package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
)

// maxCommitTries bounds how often a poll re-diffs after a generation
// conflict (another writer committed the same source first).
const maxCommitTries = 3

// ErrPollRunning is returned when a poll of a source is requested while the
// previous one is still running: runs of one source never overlap.
var ErrPollRunning = errors.New("previous poll still running")

// PollResult summarizes one poll.
type PollResult struct {
	// Items counts the distinct items fetched.
	Items int
	// Pages counts the responses fetched.
	Pages int
	// NotModified reports that the API answered "not modified".
	NotModified bool
	// Baseline reports that this poll recorded the first state.
	Baseline bool
	// Events are the events committed for delivery: the detected changes
	// that the source's events list and filter select.
	Events []Event
	// Suppressed counts detected changes not sent (events list or filter);
	// the stored state reflects them all the same.
	Suppressed int
	// FilterErrors are the filter evaluations that failed; those events
	// were sent anyway (a broken filter must not lose changes).
	FilterErrors []error
	// HeldDeletes counts deletions held back by the mass-deletion guard.
	HeldDeletes int
	// PendingDeletes counts missing items that delete_after keeps for now.
	PendingDeletes int
	// Committed reports whether anything was written to the store.
	Committed bool
}

// poller polls one source.
type poller struct {
	cfg      config.Source
	routesMu sync.Mutex
	routes   map[string]route // per-sink events and filters; see setRoutes
	source   Source
	store    store.Store
	log      *slog.Logger
	notify   func(sinks []string)
	metrics  *Metrics // nil: none

	running sync.Mutex // held for the whole poll: runs never overlap

	filterOnce sync.Once
	filter     *vm.Program // compiled cfg.Filter; nil: no filter
	filterErr  error

	mu      sync.Mutex
	series  *sourceSeries // the source's metrics, once looked up
	lastErr string        // last error logged, to log repeats quietly
	status  SourceStatus
	pause   time.Duration // current backoff pause, 0 when not backing off
}

// backingOff reports whether a scheduled tick at now must be skipped
// because the source is backing off after failed polls, and logs the skip
// at debug level. Explicit polls (Engine.Poll) do not ask.
func (p *poller) backingOff(now time.Time) bool {
	p.mu.Lock()
	until, pause := p.status.BackoffUntil, p.pause
	p.mu.Unlock()
	// The tick due right at the end of the pause polls, even if it fires a
	// little earlier, relative to its scheduled time, than the tick whose
	// poll started the pause.
	if slack := min(pause/4, time.Second); now.Add(slack).Before(until) {
		p.log.Debug("tick skipped: source backing off", "until", until.Format(time.RFC3339))
		return true
	}
	return false
}

// poll fetches the source, diffs it against the stored state and commits the
// new state with its deliveries in one step. A failed fetch changes nothing.
// It polls even while the source backs off (see backingOff).
func (p *poller) poll(ctx context.Context) (PollResult, error) {
	if !p.running.TryLock() {
		return PollResult{}, ErrPollRunning
	}
	defer p.running.Unlock()
	start := time.Now()
	res, err := p.pollLocked(ctx)
	p.report(start, res, err)
	return res, err
}

// filterProgram returns the source's compiled filter (nil when it has
// none), compiling it on first use if config validation did not.
func (p *poller) filterProgram() (*vm.Program, error) {
	p.filterOnce.Do(func() {
		p.filter, p.filterErr = sourceFilter(p.cfg)
	})
	return p.filter, p.filterErr
}

// pollStarted is the poll of the scheduled tick at, whose lease this
// replica holds (see startTicks), from state, the source's state without
// items that came with the lease. Its caller holds p.running. The outcome
// goes to the status, metrics and logs, as for poll.
func (p *poller) pollStarted(ctx context.Context, at time.Time, state store.State) {
	start := time.Now()
	p.metrics.observeLag(start.Sub(at))
	res, err := p.pollFrom(ctx, state)
	p.report(start, res, err)
}

func (p *poller) pollLocked(ctx context.Context) (PollResult, error) {
	// Only the meta before the fetch: a "not modified" answer (304 or an
	// unchanged body hash) ends the poll without reading the items.
	state, err := p.store.LoadMeta(ctx, p.cfg.Name)
	if err != nil {
		return PollResult{}, fmt.Errorf("load state: %w", err)
	}
	return p.pollFrom(ctx, state)
}

// pollFrom polls on from state, the source's stored state without items.
func (p *poller) pollFrom(ctx context.Context, state store.State) (PollResult, error) {
	filter, err := p.filterProgram()
	if err != nil {
		return PollResult{}, err
	}
	fetchMeta := state.Meta
	if state.Meta[metaHeldDeletes] != "" || state.Meta[metaAbsent] != "" {
		// A held-back or pending deletion is confirmed or dropped by the
		// next full answer: a "304 Not Modified" would leave it pending
		// forever.
		fetchMeta = map[string]string{}
	}
	snap, err := p.source.Fetch(ctx, fetchMeta)
	if err != nil {
		return PollResult{}, fmt.Errorf("fetch: %w", err)
	}
	res := PollResult{Pages: snap.Pages, NotModified: snap.NotModified}
	if snap.NotModified {
		return res, nil
	}
	if state, err = p.store.Load(ctx, p.cfg.Name); err != nil {
		return res, fmt.Errorf("load state: %w", err)
	}
	for try := 1; ; try++ {
		diff, err := diffSnapshot(p.cfg, filter, state, snap, time.Now())
		if err != nil {
			return res, err
		}
		res.Items, res.Baseline, res.HeldDeletes = diff.Items, diff.Baseline, diff.HeldDeletes
		res.PendingDeletes, res.Suppressed, res.FilterErrors = diff.PendingDeletes, diff.Suppressed, diff.FilterErrors
		if !diff.Changed {
			return res, nil
		}
		commit := diff.Commit
		var sinkFilterErrs []error
		commit.Deliveries, sinkFilterErrs, err = deliveries(diff.Events, p.cfg.Sinks, p.sinkRoutes(), time.Now())
		for _, ferr := range sinkFilterErrs {
			p.log.Warn("sink filter failed; the event was sent to that sink anyway", "err", ferr)
		}
		if err != nil {
			return res, err
		}
		err = p.store.Commit(ctx, commit)
		if err == nil {
			res.Events, res.Committed = diff.Events, true
			if len(commit.Deliveries) > 0 {
				p.notify(p.cfg.Sinks)
			}
			return res, nil
		}
		if !errors.Is(err, store.ErrConflict) || try == maxCommitTries {
			return res, fmt.Errorf("commit: %w", err)
		}
		// Someone else committed first: diff the same snapshot against
		// the state they left, never against the stale one.
		if state, err = p.store.Load(ctx, p.cfg.Name); err != nil {
			return res, fmt.Errorf("reload state after conflict: %w", err)
		}
	}
}

// report records the outcome of a poll that started at start in the
// source's status and logs it; a failure that repeats the previous one is
// logged at debug level only. Failures put the source into backoff.
func (p *poller) report(start time.Time, res PollResult, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &p.status
	st.LastPoll, st.LastDuration = start, time.Since(start)
	setOutcome(st, start, res, err) // status_api.go
	if p.series == nil && p.metrics != nil {
		p.series = p.metrics.sourceSeries(p.cfg.Name)
	}
	p.metrics.observePoll(p.cfg.Name, p.series, st.LastDuration, res, err)
	if err != nil {
		st.LastError = err.Error()
		st.ConsecutiveFailures++
		p.pause = p.backoff(st.ConsecutiveFailures)
		st.BackoffUntil = start.Add(p.pause)
	}
	switch {
	case err != nil && err.Error() == p.lastErr:
		p.log.Debug("poll failed again", "err", err, "failures", st.ConsecutiveFailures)
	case err != nil:
		p.lastErr = err.Error()
		p.log.Warn("poll failed; state unchanged, no events", "err", err)
	}
	if err != nil {
		if st.ConsecutiveFailures == 1 {
			p.log.Info("source backing off: scheduled polls pause, doubling with each further failure, until a poll succeeds",
				"pause", p.pause, "max_pause", cmp.Or(p.cfg.Backoff.Max, config.DefaultPollBackoffMax))
		} else {
			p.log.Debug("backoff extended", "pause", p.pause, "until", st.BackoffUntil.Format(time.RFC3339))
		}
		return
	}

	if p.lastErr != "" || st.ConsecutiveFailures > 0 {
		p.log.Info("poll recovered", "failures", st.ConsecutiveFailures)
		p.lastErr = ""
	}
	st.LastError, st.ConsecutiveFailures, st.BackoffUntil, p.pause = "", 0, time.Time{}, 0
	st.LastSuccess = start
	st.LastEvents = len(res.Events)
	if !res.NotModified {
		st.Items = res.Items
	}
	if res.HeldDeletes > 0 {
		p.log.Warn("mass deletion held back until the next poll confirms it",
			"deletions", res.HeldDeletes, "items", res.Items, "max_delete_ratio", p.maxDeleteRatio())
	}
	if n := len(res.FilterErrors); n > 0 {
		p.log.Warn("filter failed; those events were sent unfiltered", "events", n, "err", res.FilterErrors[0])
	}
	if p.log.Enabled(context.Background(), slog.LevelDebug) { // its arguments allocate
		p.log.Debug("polled", "items", res.Items, "events", len(res.Events), "suppressed", res.Suppressed,
			"pending_deletes", res.PendingDeletes, "baseline", res.Baseline, "not_modified", res.NotModified)
	}
	if res.Baseline && res.Committed {
		p.log.Info("baseline recorded", "items", res.Items)
	}
}

// backoff is the pause after the given number of consecutive failures:
// Backoff.Initial (default: one schedule interval), doubled per further
// failure, capped at Backoff.Max (default 10m).
func (p *poller) backoff(failures int) time.Duration {
	maxPause := cmp.Or(p.cfg.Backoff.Max, config.DefaultPollBackoffMax)
	d := p.cfg.Backoff.Initial
	if d <= 0 {
		sched, err := scheduleParser.Parse(p.cfg.Schedule)
		if err != nil {
			return 0 // unreachable: the engine checked the schedule
		}
		d = scheduleInterval(sched, time.Now())
	}
	if d <= 0 {
		return 0
	}
	for i := 1; i < failures && d < maxPause; i++ {
		d *= 2
	}
	return min(d, maxPause)
}

func (p *poller) maxDeleteRatio() float64 {
	if p.cfg.MaxDeleteRatio == nil {
		return 0
	}
	return *p.cfg.MaxDeleteRatio
}

// diffSnapshot diffs a fetched snapshot against state as cfg says, and
// keeps in the result's Events only those that cfg's events list and filter
// (the compiled cfg.Filter, or nil) select.
func diffSnapshot(cfg config.Source, filter *vm.Program, state store.State, snap *Snapshot, now time.Time) (DiffResult, error) {
	meta := state.Meta
	if snap.Meta != nil {
		meta = maps.Clone(snap.Meta)
	}
	ratio := 0.0
	if cfg.MaxDeleteRatio != nil {
		ratio = *cfg.MaxDeleteRatio
	}
	diff, err := Diff(state, snap.Items, meta, DiffOptions{
		Source:         cfg.Name,
		Watch:          cfg.Watch,
		Ignore:         cfg.Ignore,
		EmitInitial:    cfg.EmitInitial,
		MaxDeleteRatio: ratio,
		DeleteAfter:    cfg.DeleteAfter,
		Now:            now,
		NoBodies:       !cfg.KeepsBodies(),
	})
	if err != nil {
		return DiffResult{}, err
	}
	diff.Events, diff.Suppressed, diff.FilterErrors = selectEvents(diff.Events, cfg.Events, filter)
	return diff, nil
}

// sourceFilter returns cfg's compiled filter, nil when it has none.
func sourceFilter(cfg config.Source) (*vm.Program, error) {
	if prog := cfg.CompiledFilter(); prog != nil || cfg.Filter == "" {
		return prog, nil
	}
	prog, err := config.CompileFilter(cfg.Filter)
	if err != nil {
		return nil, fmt.Errorf("compile filter: %w", err)
	}
	return prog, nil
}

// selectEvents keeps the events whose type is in types (short names:
// created, updated, deleted; empty means all) and for which filter, when
// not nil, is true. It returns them, how many it dropped, and the errors of
// the filter evaluations that failed: those events are kept, because a
// filter that cannot decide must not lose a change.
func selectEvents(events []Event, types []string, filter *vm.Program) (kept []Event, dropped int, errs []error) {
	kept = events[:0:0]
	for i := range events {
		ev := &events[i]
		if len(types) > 0 && !slices.Contains(types, strings.TrimPrefix(ev.Type, "item.")) {
			dropped++
			continue
		}
		if filter != nil {
			ok, err := evalFilter(filter, ev)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("filter on %s of %q (event %s): %w", ev.Type, ev.Key, ev.ID, err))
			case !ok:
				dropped++
				continue
			}
		}
		kept = append(kept, *ev)
	}
	return kept, dropped, errs
}

// evalFilter runs a compiled filter (see config.CompileFilter) on ev.
func evalFilter(filter *vm.Program, ev *Event) (bool, error) {
	item, err := filterValue(ev.Item)
	if err != nil {
		return false, fmt.Errorf("decode item: %w", err)
	}
	prev, err := filterValue(ev.Previous)
	if err != nil {
		return false, fmt.Errorf("decode previous: %w", err)
	}
	changes := make([]map[string]any, len(ev.Changes))
	for i, c := range ev.Changes {
		var old, nu any
		if c.Old != nil {
			if err := json.Unmarshal(c.Old, &old); err != nil {
				return false, fmt.Errorf("decode change %s: %w", c.Path, err)
			}
		}
		if c.New != nil {
			if err := json.Unmarshal(c.New, &nu); err != nil {
				return false, fmt.Errorf("decode change %s: %w", c.Path, err)
			}
		}
		changes[i] = map[string]any{"op": c.Op, "path": c.Path, "old": old, "new": nu}
	}
	out, err := expr.Run(filter, map[string]any{
		"type":     ev.Type,
		"source":   ev.Source,
		"key":      ev.Key,
		"item":     item,
		"previous": prev,
		"changes":  changes,
	})
	if err != nil {
		// expr appends the expression and a caret on further lines.
		msg, _, _ := strings.Cut(err.Error(), "\n")
		return false, errors.New(msg)
	}
	ok, isBool := out.(bool)
	if !isBool {
		return false, fmt.Errorf("filter gave %T, not a bool", out)
	}
	return ok, nil
}

// filterValue decodes JSON for a filter: numbers as float64, and absent
// (nil) as a nil map, on which field access gives nil rather than an error.
func filterValue(raw json.RawMessage) (any, error) {
	if raw == nil {
		return map[string]any(nil), nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// route is what a sink accepts: its events list and filter (nil: all).
type route struct {
	events []string
	filter *vm.Program
}

// accepts reports whether the sink takes ev. A filter that fails to
// evaluate lets the event through (a broken filter must not lose changes)
// and returns the error for logging.
func (r route) accepts(ev *Event) (bool, error) {
	if len(r.events) > 0 && !slices.Contains(r.events, strings.TrimPrefix(ev.Type, "item.")) {
		return false, nil
	}
	if r.filter == nil {
		return true, nil
	}
	ok, err := evalFilter(r.filter, ev)
	if err != nil {
		return true, err
	}
	return ok, nil
}

// setRoutes sets the sinks' routes (a reload may change them while the
// poller keeps running).
func (p *poller) setRoutes(r map[string]route) {
	p.routesMu.Lock()
	defer p.routesMu.Unlock()
	p.routes = r
}

func (p *poller) sinkRoutes() map[string]route {
	p.routesMu.Lock()
	defer p.routesMu.Unlock()
	return p.routes
}

// deliveries makes one outbox delivery per event and sink that accepts it
// (routes by sink name; a sink without a route takes everything). It
// returns the errors of sink filters that failed to evaluate.
func deliveries(events []Event, sinks []string, routes map[string]route, now time.Time) ([]store.Delivery, []error, error) {
	out := make([]store.Delivery, 0, len(events)*len(sinks))
	var filterErrs []error
	for i := range events {
		ev := &events[i]
		payload, err := json.Marshal(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		for _, sink := range sinks {
			ok, err := routes[sink].accepts(ev)
			if err != nil {
				filterErrs = append(filterErrs, fmt.Errorf("sink %s filter on %s of %q: %w", sink, ev.Type, ev.Key, err))
			}
			if !ok {
				continue
			}
			out = append(out, store.Delivery{
				ID:      ev.ID + "." + sink,
				EventID: ev.ID,
				Sink:    sink,
				Source:  ev.Source,
				Key:     ev.Key,
				Payload: payload,
				Created: now,
				Due:     now,
			})
		}
	}
	return out, filterErrs, nil
}

// DryRun fetches src once and diffs the snapshot against state without
// committing anything: what `pollbridge poll` shows. It fetches
// unconditionally (no If-None-Match), so the items are always shown. The
// result's Events are those a poll would send (see DiffResult.Suppressed).
func DryRun(ctx context.Context, cfg config.Source, src Source, state store.State) (*Snapshot, DiffResult, error) {
	filter, err := sourceFilter(cfg)
	if err != nil {
		return nil, DiffResult{}, err
	}
	snap, err := src.Fetch(ctx, map[string]string{})
	if err != nil {
		return nil, DiffResult{}, fmt.Errorf("fetch: %w", err)
	}
	if snap.NotModified {
		return snap, DiffResult{}, nil
	}
	diff, err := diffSnapshot(cfg, filter, state, snap, time.Now())
	return snap, diff, err
}
