package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

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
	// Events are the events committed (empty for a dry run's commit).
	Events []Event
	// HeldDeletes counts deletions held back by the mass-deletion guard.
	HeldDeletes int
	// Committed reports whether anything was written to the store.
	Committed bool
}

// poller polls one source.
type poller struct {
	cfg    config.Source
	source Source
	store  store.Store
	log    *slog.Logger
	notify func(sinks []string)

	running sync.Mutex // held for the whole poll: runs never overlap

	mu      sync.Mutex
	lastErr string // last error logged, to log repeats quietly
}

// poll fetches the source, diffs it against the stored state and commits the
// new state with its deliveries in one step. A failed fetch changes nothing.
func (p *poller) poll(ctx context.Context) (PollResult, error) {
	if !p.running.TryLock() {
		return PollResult{}, ErrPollRunning
	}
	defer p.running.Unlock()
	res, err := p.pollLocked(ctx)
	p.report(res, err)
	return res, err
}

func (p *poller) pollLocked(ctx context.Context) (PollResult, error) {
	state, err := p.store.Load(ctx, p.cfg.Name)
	if err != nil {
		return PollResult{}, fmt.Errorf("load state: %w", err)
	}
	fetchMeta := state.Meta
	if state.Meta[metaHeldDeletes] != "" {
		// A held-back deletion is confirmed or dropped by the next full
		// answer: a "304 Not Modified" would leave it held forever.
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
	for try := 1; ; try++ {
		diff, err := diffSnapshot(p.cfg, state, snap, time.Now())
		if err != nil {
			return res, err
		}
		res.Items, res.Baseline, res.HeldDeletes = diff.Items, diff.Baseline, diff.HeldDeletes
		if !diff.Changed {
			return res, nil
		}
		commit := diff.Commit
		commit.Deliveries, err = deliveries(diff.Events, p.cfg.Sinks, time.Now())
		if err != nil {
			return res, err
		}
		err = p.store.Commit(ctx, commit)
		if err == nil {
			res.Events, res.Committed = diff.Events, true
			if len(diff.Events) > 0 {
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

// report logs the outcome of a poll; a failure that repeats the previous
// one is logged at debug level only.
func (p *poller) report(res PollResult, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil && err.Error() == p.lastErr:
		p.log.Debug("poll failed again", "err", err)
	case err != nil:
		p.lastErr = err.Error()
		p.log.Warn("poll failed; state unchanged, no events", "err", err)
	default:
		if p.lastErr != "" {
			p.log.Info("poll recovered")
			p.lastErr = ""
		}
		if res.HeldDeletes > 0 {
			p.log.Warn("mass deletion held back until the next poll confirms it",
				"deletions", res.HeldDeletes, "items", res.Items, "max_delete_ratio", p.maxDeleteRatio())
		}
		p.log.Debug("polled", "items", res.Items, "events", len(res.Events),
			"baseline", res.Baseline, "not_modified", res.NotModified)
		if res.Baseline && res.Committed {
			p.log.Info("baseline recorded", "items", res.Items)
		}
	}
}

func (p *poller) maxDeleteRatio() float64 {
	if p.cfg.MaxDeleteRatio == nil {
		return 0
	}
	return *p.cfg.MaxDeleteRatio
}

// diffSnapshot diffs a fetched snapshot against state as cfg says.
func diffSnapshot(cfg config.Source, state store.State, snap *Snapshot, now time.Time) (DiffResult, error) {
	meta := state.Meta
	if snap.Meta != nil {
		meta = maps.Clone(snap.Meta)
	}
	ratio := 0.0
	if cfg.MaxDeleteRatio != nil {
		ratio = *cfg.MaxDeleteRatio
	}
	return Diff(state, snap.Items, meta, DiffOptions{
		Source:         cfg.Name,
		Ignore:         cfg.Ignore,
		EmitInitial:    cfg.EmitInitial,
		MaxDeleteRatio: ratio,
		Now:            now,
	})
}

// deliveries makes one outbox delivery per event and sink.
func deliveries(events []Event, sinks []string, now time.Time) ([]store.Delivery, error) {
	out := make([]store.Delivery, 0, len(events)*len(sinks))
	for i := range events {
		ev := &events[i]
		payload, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		for _, sink := range sinks {
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
	return out, nil
}

// DryRun fetches src once and diffs the snapshot against state without
// committing anything: what `pollbridge poll` shows. It fetches
// unconditionally (no If-None-Match), so the items are always shown.
func DryRun(ctx context.Context, cfg config.Source, src Source, state store.State) (*Snapshot, DiffResult, error) {
	snap, err := src.Fetch(ctx, map[string]string{})
	if err != nil {
		return nil, DiffResult{}, fmt.Errorf("fetch: %w", err)
	}
	if snap.NotModified {
		return snap, DiffResult{}, nil
	}
	diff, err := diffSnapshot(cfg, state, snap, time.Now())
	return snap, diff, err
}
