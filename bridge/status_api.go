package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Source health, as SourceInfo.Health gives it.
const (
	SourcePending    = "pending"     // not polled yet on this replica
	SourceOK         = "ok"          // the last poll succeeded
	SourceFailing    = "failing"     // the last poll failed; the next tick polls
	SourceBackingOff = "backing_off" // failing, and scheduled ticks are skipped
)

// pingTimeout bounds the store check that readiness makes.
const pingTimeout = 3 * time.Second

// SourceInfo is a source's status with its schedule and health: what the
// admin API and status page show.
type SourceInfo struct {
	SourceStatus
	// Schedule is the schedule as configured.
	Schedule string `json:"schedule"`
	// NextPoll is when the next scheduled tick will poll, backoff
	// included (while the engine runs).
	NextPoll time.Time `json:"next_poll,omitzero"`
	// Health is SourcePending, SourceOK, SourceFailing or SourceBackingOff.
	Health string `json:"health"`
}

// SourceInfos reports every source's status, schedule and health at now,
// in configuration order. It is safe for concurrent use.
func (e *Engine) SourceInfos(now time.Time) []SourceInfo {
	cfg := e.Config()
	out := make([]SourceInfo, 0, len(cfg.Sources))
	for _, sc := range cfg.Sources {
		if info, ok := e.SourceInfo(sc.Name, now); ok {
			out = append(out, info)
		}
	}
	return out
}

// SourceInfo reports one source's status, schedule and health at now, and
// whether there is a source called name.
func (e *Engine) SourceInfo(name string, now time.Time) (SourceInfo, bool) {
	p, ok := e.poller(name)
	if !ok {
		return SourceInfo{}, false
	}
	p.mu.Lock()
	st, pause := p.status, p.pause
	p.mu.Unlock()
	st.Name = p.cfg.Name
	info := SourceInfo{SourceStatus: st, Schedule: p.cfg.Schedule}
	sched, err := sourceSchedule(p.cfg.Name, p.cfg.Schedule)
	if err != nil {
		return info, true // unreachable: New checked every schedule
	}
	// The first tick that backingOff lets through.
	slack := min(pause/4, time.Second)
	next := sched.Next(now)
	skipped := false
	for i := 0; i < 100000 && next.Add(slack).Before(st.BackoffUntil); i++ {
		next, skipped = sched.Next(next), true
	}
	info.NextPoll = next
	switch {
	case st.LastPoll.IsZero():
		info.Health = SourcePending
	case st.LastError == "":
		info.Health = SourceOK
	case skipped:
		info.Health = SourceBackingOff
	default:
		info.Health = SourceFailing
	}
	return info, true
}

// setOutcome records in st the result of a poll that started at start.
func setOutcome(st *SourceStatus, start time.Time, res PollResult, err error) {
	st.LastResult = pollResult(res, err)
	if err == nil && !res.Baseline && (len(res.Events) > 0 || res.Suppressed > 0) {
		st.LastChange = start
	}
}

// WakeSink makes the named sink's dispatcher look at the outbox now, for
// example after dead letters were replayed. Unknown names are ignored.
func (e *Engine) WakeSink(name string) {
	e.notify([]string{name})
}

// Store returns the store the engine runs on (instrumented when the engine
// has Metrics).
func (e *Engine) Store() store.Store { return e.store }

// CheckStore reports whether the store answers its Ping within a short
// timeout.
func (e *Engine) CheckStore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return e.store.Ping(ctx)
}

// DryRunSource fetches the named source once and diffs the answer against
// its stored state, committing nothing: what `pollbridge poll` shows,
// computed by the running daemon (which holds the store). It returns the
// state the diff was made against too.
func (e *Engine) DryRunSource(ctx context.Context, name string) (*Snapshot, DiffResult, store.State, error) {
	p, ok := e.poller(name)
	if !ok {
		return nil, DiffResult{}, store.State{}, fmt.Errorf("unknown source %q", name)
	}
	state, err := e.store.Load(ctx, name)
	if err != nil {
		return nil, DiffResult{}, store.State{}, fmt.Errorf("load state: %w", err)
	}
	snap, diff, err := DryRun(ctx, p.cfg, p.source, state)
	return snap, diff, state, err
}
