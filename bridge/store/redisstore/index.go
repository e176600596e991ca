package redisstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// indexEntry is the state of one (source, sink) pair as a source-slot
// script saw it: its index version and earliest due score ("" when it has
// nothing in its due ZSET).
type indexEntry struct {
	source, sink, version, earliest string
}

// syncIndex records entries, and the lagging ones claims left, in their
// sinks' ready indexes, in one pipeline, and adds the register sources to
// the set of known sources. An entry older than the one recorded is
// ignored, so concurrent syncs of one pair converge on the newest state
// whatever order they arrive in.
func (s *Store) syncIndex(ctx context.Context, entries []indexEntry, register ...string) error {
	entries = append(s.takeLagging(), entries...)
	if len(entries) == 0 && len(register) == 0 {
		return nil
	}
	_, err := s.pipeScripts(ctx, func(p redis.Pipeliner) {
		for _, src := range register {
			p.SAdd(ctx, s.sourcesKey(), src)
		}
		s.queueSync(ctx, p, entries)
	})
	if err != nil {
		return fmt.Errorf("update ready index: %w", err)
	}
	return nil
}

// queueSync adds the sync script of each entry to p.
func (s *Store) queueSync(ctx context.Context, p redis.Pipeliner, entries []indexEntry) {
	for _, e := range entries {
		if e.version == "" {
			continue
		}
		s.sc.sync.EvalSha(ctx, p, []string{s.readyKey(e.sink), s.readyVerKey(e.sink)}, e.source, e.version, e.earliest)
	}
}

// lag keeps a claim's index entries for a later round trip (see
// Store.lagging); of one pair, the later claim's.
func (s *Store) lag(entries []indexEntry) {
	if len(entries) == 0 {
		return
	}
	s.laggingMu.Lock()
	defer s.laggingMu.Unlock()
	if s.lagging == nil {
		s.lagging = map[[2]string]indexEntry{}
	}
	for _, e := range entries {
		s.lagging[[2]string{e.source, e.sink}] = e
	}
}

// takeLagging returns the lagging entries and forgets them: whoever takes
// them writes them (a failed write is left to the repair pass).
func (s *Store) takeLagging() []indexEntry {
	s.laggingMu.Lock()
	defer s.laggingMu.Unlock()
	if len(s.lagging) == 0 {
		return nil
	}
	out := slices.Collect(maps.Values(s.lagging))
	clear(s.lagging)
	return out
}

// readyPage reads one page of sink's ready index, the sources with
// deliveries due at nowMs, earliest first; the lagging entries are written
// first, in the same round trip.
func (s *Store) readyPage(ctx context.Context, sink string, nowMs, offset, count int64) ([]string, error) {
	by := &redis.ZRangeBy{Min: "-inf", Max: score(nowMs), Offset: offset, Count: count}
	lagging := s.takeLagging()
	if len(lagging) == 0 {
		return s.rdb.ZRangeByScore(ctx, s.readyKey(sink), by).Result()
	}
	var page *redis.StringSliceCmd
	_, _ = s.pipeScripts(ctx, func(p redis.Pipeliner) {
		s.queueSync(ctx, p, lagging)
		page = p.ZRangeByScore(ctx, s.readyKey(sink), by)
	})
	return page.Result()
}

// maybeRepair starts the repair pass when this Store's turn has come (at
// most once per repairEvery) and no other Store sharing the prefix repaired
// within the last 90% of repairEvery. The turn is shorter than the interval
// so that the Store that repaired last always gets the next turn unless
// another one took it first: the fleet repairs at least once per interval
// while that Store keeps claiming. The pass runs in the background: its
// cost grows with the number of sources, and claims must not wait for it.
// A pass that fails gives its turn back and is tried again at the next
// Claim; the index it repairs is a hint, so claims go on meanwhile (and a
// Redis that is down fails them on their own).
func (s *Store) maybeRepair(ctx context.Context) error {
	now := time.Now().UnixNano()
	next := s.nextRepair.Load()
	if now < next || !s.nextRepair.CompareAndSwap(next, now+int64(s.repairEvery)) {
		return nil
	}
	turn := s.repairEvery - s.repairEvery/10
	ok, err := s.rdb.SetNX(ctx, s.repairKey(), s.owner, turn).Result()
	if err != nil {
		s.nextRepair.Store(0)
		return fmt.Errorf("repair ready index: take turn: %w", err)
	}
	if !ok {
		return nil
	}
	s.repairs.Go(func() {
		rctx, cancel := context.WithTimeout(s.life, turn) // Close ends it
		defer cancel()
		if err := s.repair(rctx); err != nil {
			s.nextRepair.Store(0)
			// Give the turn back so that another Store can try at once.
			s.sc.unlease.Run(context.WithoutCancel(ctx), s.rdb, []string{s.repairKey()}, s.owner)
		}
	})
	return nil
}

// repair rebuilds every sink's ready index from the sources' own state: for
// every known source and each of its sinks it reads the index version and
// the earliest due score in one script, then records them (syncIndex
// ignores what is not newer than the index already holds).
func (s *Store) repair(ctx context.Context) error {
	err := s.forSources(ctx, func(batch []string) error {
		sinks, err := s.sourceSinks(ctx, batch)
		if err != nil {
			return err
		}
		type peeked struct {
			source string
			sinks  []string
			cmd    *redis.Cmd
		}
		var ps []peeked
		_, err = s.pipeScripts(ctx, func(p redis.Pipeliner) {
			for _, src := range batch {
				if len(sinks[src]) == 0 {
					continue
				}
				keys := []string{s.headKey(src)}
				args := make([]any, 0, len(sinks[src]))
				for _, sink := range sinks[src] {
					keys = append(keys, s.dueKey(src, sink))
					args = append(args, sink)
				}
				ps = append(ps, peeked{src, sinks[src], s.sc.peek.EvalSha(ctx, p, keys, args...)})
			}
		})
		if err != nil {
			return err
		}
		var entries []indexEntry
		for _, pk := range ps {
			vals, err := pk.cmd.StringSlice()
			if err != nil || len(vals) != 2*len(pk.sinks) {
				return fmt.Errorf("read index state of source %q: unexpected reply %q: %w", pk.source, vals, err)
			}
			for i, sink := range pk.sinks {
				entries = append(entries, indexEntry{pk.source, sink, vals[2*i], vals[2*i+1]})
			}
		}
		return s.syncIndex(ctx, entries)
	})
	if err != nil {
		return fmt.Errorf("repair ready index: %w", err)
	}
	return nil
}

// forSources calls fn with the known sources, scanBatch at a time.
func (s *Store) forSources(ctx context.Context, fn func(batch []string) error) error {
	seen := map[string]bool{}
	var all []string
	iter := s.rdb.SScan(ctx, s.sourcesKey(), 0, "", scanBatch).Iterator()
	for iter.Next(ctx) {
		if src := iter.Val(); !seen[src] { // SSCAN may repeat a member
			seen[src] = true
			all = append(all, src)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("list sources: %w", err)
	}
	slices.Sort(all)
	for batch := range slices.Chunk(all, scanBatch) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(batch); err != nil {
			return err
		}
	}
	return nil
}

// sourceSinks returns the sinks each source of batch ever had deliveries for.
func (s *Store) sourceSinks(ctx context.Context, batch []string) (map[string][]string, error) {
	cmds := make([]*redis.StringSliceCmd, len(batch))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, src := range batch {
			cmds[i] = p.HKeys(ctx, s.headKey(src))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("list sinks of sources: %w", err)
	}
	out := make(map[string][]string, len(batch))
	for i, src := range batch {
		if err := cmds[i].Err(); err != nil {
			return nil, fmt.Errorf("list sinks of source %q: %w", src, err)
		}
		for _, f := range cmds[i].Val() {
			if sink, ok := strings.CutPrefix(f, "v:"); ok {
				out[src] = append(out[src], sink)
			}
		}
		slices.Sort(out[src])
	}
	return out, nil
}
