package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Claim returns up to limit deliveries of sink due at now and hides them from
// other claims until now+lease (both in whole milliseconds: due times round
// up, now rounds down, so nothing is handed out early). limit must be positive
// and lease longer than zero.
//
// Claim finds the sources with due deliveries in the sink's ready index,
// so its cost does not grow with idle sources; only the head of each item
// is in a due ZSET, so it does not grow with the deliveries waiting behind
// one either. Within a source the batch is
// oldest due first, commit order among equals; across sources it is filled
// source by source in the order of their earliest due delivery, and then
// sorted by due time. The source due first is asked for the whole batch
// first, so a backlog in one source is claimed in one script; beyond it, a
// page of the index costs two pipelines, however many sources it names:
// one counts each source's due deliveries, one claims (a lone source skips
// the count).
// If a source fails midway, Claim returns what it claimed so far (the
// error shows again on the next call); with nothing claimed it returns the
// error.
//
// At most every Options.RepairInterval, Claim first runs the repair pass
// (see the package doc).
func (s *Store) Claim(ctx context.Context, sink string, now time.Time, limit int, lease time.Duration) ([]store.Delivery, error) {
	if limit <= 0 || lease <= 0 {
		return nil, fmt.Errorf("claim: limit %d and lease %v must be positive", limit, lease)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if err := s.maybeRepair(ctx); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	nowMs, untilMs := floorMs(now), ceilMs(now.Add(lease))
	var (
		hits     []claimHit
		entries  = map[string]indexEntry{} // the last answer of each source
		claimErr error
	)
	// collect keeps what a round claimed, even from a source whose answer
	// partly failed: those deliveries are hidden now. It reports whether
	// Claim should stop.
	collect := func(answers []claimAnswer, err error) bool {
		for _, a := range answers {
			if a.entry.source != "" {
				entries[a.source] = a.entry
			}
			hits = append(hits, a.hits...)
			if a.err != nil {
				claimErr = fmt.Errorf("source %q: %w", a.source, a.err)
			}
		}
		if err != nil && claimErr == nil {
			claimErr = err
		}
		return claimErr != nil || len(hits) >= limit
	}
	page := int64(max(limit, 16))
	for offset := int64(0); len(hits) < limit; offset += page {
		cands, err := s.readyPage(ctx, sink, nowMs, offset, page)
		if err != nil {
			claimErr = fmt.Errorf("read ready index: %w", err)
			break
		}
		last := int64(len(cands)) < page
		// The source due first is asked for everything first: when it
		// has enough (a backlog), nothing else is read.
		if offset == 0 && len(cands) > 0 {
			if collect(s.claimRound(ctx, sink, cands[:1], []int{limit - len(hits)}, nowMs, untilMs)) {
				break
			}
			cands = cands[1:]
		}
		// Two pipelines for the rest of the page: how many are due in
		// each source, then the claims, filled source by source in the
		// index's order (a batch from few sources settles in few
		// scripts). A source counted empty is still asked, for nothing:
		// its answer refreshes its stale index entry. A lone source
		// needs no count: it is asked for the rest.
		if len(cands) > 0 {
			counts := []int64{int64(limit - len(hits))}
			if len(cands) > 1 {
				if counts, err = s.dueCounts(ctx, sink, cands, nowMs); err != nil {
					claimErr = err
					break
				}
			}
			var round []string
			var quotas []int
			for i, left := 0, limit-len(hits); i < len(cands) && left > 0; i++ {
				q := int(min(counts[i], int64(left)))
				round, quotas = append(round, cands[i]), append(quotas, q)
				left -= q
			}
			if collect(s.claimRound(ctx, sink, round, quotas, nowMs, untilMs)) {
				break
			}
		}
		if last {
			break
		}
	}
	// The claims are made. Their index entries can wait for the next
	// round trip (see Store.lagging).
	s.lag(slices.Collect(maps.Values(entries)))
	if len(hits) == 0 && claimErr != nil {
		return nil, fmt.Errorf("claim: %w", claimErr)
	}
	slices.SortStableFunc(hits, func(a, b claimHit) int { return cmp.Compare(a.score, b.score) })
	out := make([]store.Delivery, len(hits))
	for i, h := range hits {
		out[i] = h.d
	}
	return out, nil
}

// claimHit is one delivery Claim took, with its due score.
type claimHit struct {
	d     store.Delivery
	score float64
}

// dueCounts counts, in one pipeline, the due deliveries (item heads due at
// nowMs) of sink in each source.
func (s *Store) dueCounts(ctx context.Context, sink string, sources []string, nowMs int64) ([]int64, error) {
	cmds := make([]*redis.IntCmd, len(sources))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, src := range sources {
			cmds[i] = p.ZCount(ctx, s.dueKey(src, sink), "-inf", score(nowMs))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count due deliveries: %w", err)
	}
	counts := make([]int64, len(sources))
	for i, c := range cmds {
		counts[i] = c.Val()
	}
	return counts, nil
}

// claimAnswer is what the claim script did for one source of a round.
type claimAnswer struct {
	source string
	hits   []claimHit
	entry  indexEntry
	err    error
}

// claimRound runs the claim script for every source of round in one
// pipeline, asking source i for quotas[i] deliveries (pipeScripts retries
// the calls that found no script, and only those: a claim is not
// idempotent). The error is the pipeline's, if it failed.
func (s *Store) claimRound(ctx context.Context, sink string, round []string, quotas []int, nowMs, untilMs int64) ([]claimAnswer, error) {
	cmds := make([]*redis.Cmd, len(round))
	_, err := s.pipeScripts(ctx, func(p redis.Pipeliner) {
		for i, src := range round {
			keys := []string{s.headKey(src), s.outKey(src), s.dueKey(src, sink)}
			cmds[i] = s.sc.claim.EvalSha(ctx, p, keys, nowMs, untilMs, quotas[i], sink)
		}
	})
	answers := make([]claimAnswer, len(round))
	for i, src := range round {
		a := &answers[i]
		a.source = src
		a.hits, a.entry, a.err = parseClaim(src, sink, cmds[i])
	}
	return answers, err
}

// parseClaim reads the claim script's answer: the index version, the
// earliest due score left, then each claimed record and its score.
func parseClaim(src, sink string, c *redis.Cmd) ([]claimHit, indexEntry, error) {
	res, err := c.Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("unexpected script reply %v", res)
	}
	if err != nil {
		return nil, indexEntry{}, err
	}
	ver, _ := res[0].(string)
	earliest, _ := res[1].(string)
	var hits []claimHit
	recs, _ := res[2].([]any)
	for i := 0; i+1 < len(recs); i += 2 {
		raw, _ := recs[i].(string)
		r, derr := decodeRecord(raw)
		if derr != nil {
			err = derr // the others are claimed all the same
			continue
		}
		sc, _ := recs[i+1].(string)
		f, _ := strconv.ParseFloat(sc, 64)
		hits = append(hits, claimHit{r.d, f})
	}
	return hits, indexEntry{src, sink, ver, earliest}, err
}

// Settle implements store.Store. An ack removes the delivery from the
// outbox; a retry takes its Attempts and LastError, ends its claim and
// makes it claimable at Due (now, when Due is zero; in whole milliseconds,
// rounded up), still the head of its item; a burial takes its Attempts and
// LastError and moves it to the dead letters of its sink, stamped with the
// current time. When an ack or a burial removes the head of an item, the
// next delivery of the item becomes due at once. A delivery that is not in
// the outbox (already acked, or dead) is store.ErrNotFound.
//
// The outcomes of one (source, sink) are settled by one script, and the
// scripts of every pair go in one pipeline (one round trip); the
// ready-index updates they call for go in a second. An outcome whose
// delivery is not where its Source and Sink say (or that names none) is
// settled on its own by settle, which looks the delivery up.
func (s *Store) Settle(ctx context.Context, outcomes []store.Outcome) []error {
	errs := make([]error, len(outcomes))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("settle: %w", err)
		}
		return errs
	}
	type call struct {
		op, at, lastErr string
		atMs            int64
	}
	calls := make([]call, len(outcomes))
	type pair struct{ source, sink string }
	groups := map[pair][]int{} // outcome indexes, in order
	var order []pair
	now := time.Now()
	for i, o := range outcomes {
		switch o.Op {
		case store.OpAck:
			calls[i] = call{op: "ack"}
		case store.OpRetry:
			due := o.Due
			if due.IsZero() {
				due = now
			}
			calls[i] = call{op: "retry", at: nanoString(due), atMs: ceilMs(due), lastErr: o.Delivery.LastError}
		case store.OpBury:
			calls[i] = call{op: "bury", at: nanoString(now), atMs: ceilMs(now), lastErr: o.Delivery.LastError}
		default:
			errs[i] = fmt.Errorf("settle %q: unknown op %d", o.Delivery.ID, o.Op)
			continue
		}
		d := o.Delivery
		if d.ID == "" || d.Source == "" || d.Sink == "" {
			continue // settled on its own below
		}
		k := pair{d.Source, d.Sink}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	// A delivery this makes due is due now, in whole milliseconds rounded
	// down: a Claim right after sees it.
	due := now.Truncate(time.Millisecond)
	cmds := make([]*redis.Cmd, len(order))
	// A failed pipeline leaves its error in every command it did not run.
	_, _ = s.pipeScripts(ctx, func(p redis.Pipeliner) {
		for g, k := range order {
			keys := []string{s.headKey(k.source), s.outKey(k.source), s.dueKey(k.source, k.sink), s.deadKey(k.source, k.sink),
				s.fifoKey(k.source, k.sink), s.liveKey(k.source, k.sink)}
			args := []any{k.sink, nanoString(due), floorMs(due)}
			for _, i := range groups[k] {
				c := calls[i]
				args = append(args, c.op, outcomes[i].Delivery.ID, outcomes[i].Delivery.Attempts, c.at, c.atMs, c.lastErr)
			}
			cmds[g] = s.sc.settleMany.EvalSha(ctx, p, keys, args...)
		}
	})
	settled := make([]bool, len(outcomes))
	var entries []indexEntry
	for g, k := range order {
		idx := groups[k]
		res, err := cmds[g].StringSlice()
		if err == nil && len(res) != len(idx)+3 {
			err = fmt.Errorf("unexpected script reply %q", res)
		}
		if err != nil {
			for _, i := range idx {
				errs[i], settled[i] = fmt.Errorf("%s %q: %w", calls[i].op, outcomes[i].Delivery.ID, err), true
			}
			continue
		}
		for n, i := range idx {
			switch code := res[n]; {
			case code == "ok":
				settled[i] = true
			case code == "dead":
				errs[i], settled[i] = fmt.Errorf("%s %q: it is a dead letter: %w", calls[i].op, outcomes[i].Delivery.ID, store.ErrNotFound), true
			}
			// "missing" or "sink:...": not where Source and Sink say.
		}
		if ver, earliest, sync := res[len(idx)], res[len(idx)+1], res[len(idx)+2]; sync == "1" && ver != "" {
			entries = append(entries, indexEntry{k.source, k.sink, ver, earliest})
		}
	}
	if len(entries) > 0 {
		_ = s.syncIndex(ctx, entries) // else repaired later
	}
	for i, o := range outcomes {
		if errs[i] != nil || settled[i] {
			continue
		}
		c := calls[i]
		if err := s.settle(ctx, c.op, o.Delivery, c.at, c.atMs, c.lastErr); err != nil {
			errs[i] = fmt.Errorf("%s %q: %w", c.op, o.Delivery.ID, err)
		}
	}
	return errs
}

// settle runs the settle script for d alone. It looks for d in the outbox
// of d.Source first (where the engine's deliveries are) and, failing that,
// in every known source. After a retry, or an ack or bury that made the
// next delivery of d's item due, it records the source's new earliest due
// time in the ready index.
func (s *Store) settle(ctx context.Context, op string, d store.Delivery, at string, atMs int64, lastErr string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.ID == "" {
		return store.ErrNotFound
	}
	src, sink, located := d.Source, d.Sink, false
	for range 4 {
		if src == "" {
			located = true
			var r *record
			var err error
			if src, r, err = s.locate(ctx, d.ID); err != nil {
				return err
			}
			sink = r.d.Sink
		}
		keys := []string{s.headKey(src), s.outKey(src), s.dueKey(src, sink), s.deadKey(src, sink), s.fifoKey(src, sink),
			s.liveKey(src, sink)}
		// A delivery this makes due is due now, in whole milliseconds
		// rounded down: a Claim right after sees it.
		now := time.Now().Truncate(time.Millisecond)
		res, err := s.sc.settleMany.Run(ctx, s.rdb, keys, sink, nanoString(now), floorMs(now),
			op, d.ID, d.Attempts, at, atMs, lastErr).StringSlice()
		if err != nil {
			return err
		}
		if len(res) != 4 {
			return fmt.Errorf("unexpected script reply %q", res)
		}
		switch code := res[0]; {
		case code == "ok":
			if res[3] == "1" {
				_ = s.syncIndex(ctx, []indexEntry{{src, sink, res[1], res[2]}}) // else repaired later
			}
			return nil
		case code == "dead":
			return fmt.Errorf("it is a dead letter: %w", store.ErrNotFound)
		case strings.HasPrefix(code, "sink:"):
			sink = strings.TrimPrefix(code, "sink:")
		case code == "missing":
			if located {
				return store.ErrNotFound
			}
			src = ""
		default:
			return fmt.Errorf("unexpected script reply %q", res)
		}
	}
	return store.ErrNotFound // it kept moving: it was acked or buried meanwhile
}

// locate finds the source whose outbox holds delivery id, scanning every
// known source. It returns store.ErrNotFound when none does.
func (s *Store) locate(ctx context.Context, id string) (string, *record, error) {
	var found string
	var rec *record
	errFound := errors.New("found")
	err := s.forSources(ctx, func(batch []string) error {
		cmds := make([]*redis.StringCmd, len(batch))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, src := range batch {
				cmds[i] = p.HGet(ctx, s.outKey(src), id)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for i, c := range cmds {
			v, err := c.Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return err // a node of a cluster may fail alone
			}
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			found, rec = batch[i], r
			return errFound
		}
		return nil
	})
	switch {
	case errors.Is(err, errFound):
		return found, rec, nil
	case err != nil:
		return "", nil, fmt.Errorf("look up delivery: %w", err)
	}
	return "", nil, store.ErrNotFound
}

// deadRecord is a dead letter and the source whose outbox holds it.
type deadRecord struct {
	source string
	r      *record
}

// Dead lists the dead letters of sink, or of every sink when sink is "",
// in the order they died. It reads every known source.
func (s *Store) Dead(ctx context.Context, sink string) ([]store.Delivery, error) {
	recs, err := s.deadRecords(ctx, sink)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out := make([]store.Delivery, len(recs))
	for i, r := range recs {
		out[i] = r.r.d
	}
	return out, nil
}

func (s *Store) deadRecords(ctx context.Context, sink string) ([]deadRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []deadRecord
	err := s.forSources(ctx, func(batch []string) error {
		sinks := map[string][]string{}
		if sink == "" {
			var err error
			if sinks, err = s.sourceSinks(ctx, batch); err != nil {
				return err
			}
		} else {
			for _, src := range batch {
				sinks[src] = []string{sink}
			}
		}
		type listed struct {
			source string
			cmd    *redis.Cmd
		}
		var ls []listed
		_, err := s.pipeScripts(ctx, func(p redis.Pipeliner) {
			for _, src := range batch {
				if len(sinks[src]) == 0 {
					continue
				}
				keys := []string{s.outKey(src)}
				for _, k := range sinks[src] {
					keys = append(keys, s.deadKey(src, k))
				}
				ls = append(ls, listed{src, s.sc.dead.EvalSha(ctx, p, keys)})
			}
		})
		if err != nil {
			return err
		}
		for _, l := range ls {
			raws, err := l.cmd.StringSlice()
			if err != nil {
				return fmt.Errorf("source %q: %w", l.source, err)
			}
			for _, raw := range raws {
				r, err := decodeRecord(raw)
				if err != nil {
					return fmt.Errorf("source %q: %w", l.source, err)
				}
				if !r.d.Dead.IsZero() {
					out = append(out, deadRecord{l.source, r})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b deadRecord) int {
		return cmp.Or(a.r.d.Dead.Compare(b.r.d.Dead), cmp.Compare(a.source, b.source), cmp.Compare(a.r.seq, b.r.seq))
	})
	return out, nil
}

// Replay moves dead letters back into the outbox, due now, with Attempts 0
// (LastError is kept for the record). ids selects them by delivery ID, and
// then sink, if not "", must be theirs; nil ids selects every dead letter of
// sink ("" = every sink). An id that is not a dead letter fails Replay with
// store.ErrNotFound before anything moves. Dead letters of one source move
// atomically; those of several sources move source by source. The replayed
// deliveries join the outbox in their original commit order, each behind
// the outstanding deliveries of its item (or as its head when there are
// none).
func (s *Store) Replay(ctx context.Context, sink string, ids []string) (int, error) {
	n, err := s.replay(ctx, sink, ids)
	if err != nil {
		return n, fmt.Errorf("replay: %w", err)
	}
	return n, nil
}

func (s *Store) replay(ctx context.Context, sink string, ids []string) (int, error) {
	recs, err := s.deadRecords(ctx, sink)
	if err != nil {
		return 0, err
	}
	type pair struct{ source, sink string }
	groups := map[pair][]any{}
	var order []pair
	add := func(r deadRecord) {
		p := pair{r.source, r.r.d.Sink}
		if _, ok := groups[p]; !ok {
			order = append(order, p)
		}
		groups[p] = append(groups[p], r.r.d.ID)
	}
	if ids == nil {
		for _, r := range recs {
			add(r)
		}
		for p := range groups {
			groups[p] = nil // the script moves every dead letter of the pair
		}
	} else {
		byID := map[string][]deadRecord{}
		for _, r := range recs {
			byID[r.r.d.ID] = append(byID[r.r.d.ID], r)
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			if len(byID[id]) == 0 {
				return 0, fmt.Errorf("dead letter %q: %w", id, store.ErrNotFound)
			}
			for _, r := range byID[id] {
				add(r)
			}
		}
	}
	now := time.Now().Truncate(time.Millisecond)
	n := 0
	var entries []indexEntry
	defer func() { _ = s.syncIndex(context.WithoutCancel(ctx), entries) }()
	for _, p := range order {
		keys := []string{s.headKey(p.source), s.outKey(p.source), s.dueKey(p.source, p.sink), s.deadKey(p.source, p.sink),
			s.fifoKey(p.source, p.sink), s.liveKey(p.source, p.sink)}
		args := append([]any{p.sink, nanoString(now), score(ceilMs(now))}, groups[p]...)
		res, err := s.sc.replay.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil {
			return n, err
		}
		if len(res) == 2 && res[0] == "missing" {
			return n, fmt.Errorf("dead letter %v: %w (it moved meanwhile)", res[1], store.ErrNotFound)
		}
		if len(res) != 4 || res[0] != "ok" {
			return n, fmt.Errorf("unexpected script reply %v", res)
		}
		moved, _ := res[1].(int64)
		n += int(moved)
		ver, _ := res[2].(string)
		earliest, _ := res[3].(string)
		entries = append(entries, indexEntry{p.source, p.sink, ver, earliest})
	}
	return n, nil
}

// Stats counts the outbox per sink, reading every known source. Every sink
// that ever had a delivery is listed, with zero counts when it has none now.
// Deliveries waiting behind an older one of their item count as Pending (or
// Retrying, if they failed before). now is not used: counts do not depend on
// due times.
func (s *Store) Stats(ctx context.Context, now time.Time) (map[string]store.SinkStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	out := map[string]store.SinkStats{}
	err := s.forSources(ctx, func(batch []string) error {
		sinks, err := s.sourceSinks(ctx, batch)
		if err != nil {
			return err
		}
		type counted struct {
			source string
			cmd    *redis.Cmd
		}
		var cs []counted
		_, err = s.pipeScripts(ctx, func(p redis.Pipeliner) {
			for _, src := range batch {
				if len(sinks[src]) == 0 {
					continue
				}
				keys := []string{s.headKey(src)}
				args := make([]any, 0, len(sinks[src]))
				for _, k := range sinks[src] {
					keys = append(keys, s.dueKey(src, k), s.deadKey(src, k))
					args = append(args, k)
				}
				cs = append(cs, counted{src, s.sc.stats.EvalSha(ctx, p, keys, args...)})
			}
		})
		if err != nil {
			return err
		}
		for _, c := range cs {
			vals, err := c.cmd.Int64Slice()
			if err != nil || len(vals) != 3*len(sinks[c.source]) {
				return fmt.Errorf("count source %q: unexpected reply %v: %w", c.source, vals, err)
			}
			for i, k := range sinks[c.source] {
				live, retrying, dead := vals[3*i], vals[3*i+1], vals[3*i+2]
				st := out[k]
				st.Pending += int(live - retrying)
				st.Retrying += int(retrying)
				st.Dead += int(dead)
				out[k] = st
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return out, nil
}
