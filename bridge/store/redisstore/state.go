package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Load returns the stored state of source, read in one MULTI/EXEC. An
// unknown source has Generation 0 and empty, non-nil maps.
func (s *Store) Load(ctx context.Context, source string) (store.State, error) {
	return s.load(ctx, source, true)
}

// LoadMeta implements store.Store: Load without the items.
func (s *Store) LoadMeta(ctx context.Context, source string) (store.State, error) {
	return s.load(ctx, source, false)
}

func (s *Store) load(ctx context.Context, source string, withItems bool) (store.State, error) {
	st := store.State{Items: map[string]store.Item{}, Meta: map[string]string{}}
	if err := ctx.Err(); err != nil {
		return store.State{}, fmt.Errorf("load state: %w", err)
	}
	if source == "" {
		return st, nil
	}
	var gen *redis.StringCmd
	var items, meta *redis.MapStringStringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		gen = p.HGet(ctx, s.headKey(source), "gen")
		if withItems {
			items = p.HGetAll(ctx, s.itemsKey(source))
		}
		meta = p.HGetAll(ctx, s.metaKey(source))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return store.State{}, fmt.Errorf("load state: %w", err)
	}
	cmds := []redis.Cmder{gen, meta}
	if withItems {
		cmds = append(cmds, items)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return store.State{}, fmt.Errorf("load state: %w", err)
		}
	}
	if g, err := gen.Result(); err == nil {
		if st.Generation, err = strconv.ParseUint(g, 10, 64); err != nil {
			return store.State{}, fmt.Errorf("load state: bad generation %q", g)
		}
	}
	vals := itemsVal(items)
	st.Items = make(map[string]store.Item, len(vals))
	for k, v := range vals {
		it, err := decodeItem(v)
		if err != nil {
			return store.State{}, fmt.Errorf("load state: item %q: %w", k, err)
		}
		st.Items[k] = it
	}
	for k, v := range meta.Val() {
		st.Meta[k] = v
	}
	return st, nil
}

// Commit applies c in one Lua script on the source's hash slot: items,
// meta, the generation and the deliveries are all written, or nothing is.
// It fails with an error wrapping store.ErrConflict unless c.Generation is
// the stored generation.
//
// Deliveries get Created and Due set to the commit time (whole
// milliseconds) when zero, and a per-source commit-order sequence. A
// delivery for an item that has an outstanding delivery to the same sink
// waits behind it (see store.Store). A delivery whose ID is already in the source's outbox or dead letters is
// skipped, as is a repeat within c: the first one stays. Delivery IDs must
// be unique per source (the engine's include the source); two sources may
// not share one. Deletes are applied before upserts.
//
// After the script, Commit records the new deliveries in each sink's ready
// index. That is a separate step: if it fails, or the process dies before
// it, Commit still reports success and the repair pass (see the package
// doc) makes the deliveries claimable within its bound.
func (s *Store) Commit(ctx context.Context, c store.Commit) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if c.Generation == 0 {
		// Register the source before it has any data, so that the repair
		// pass always knows every source that may have deliveries.
		if err := s.rdb.SAdd(ctx, s.sourcesKey(), c.Source).Err(); err != nil {
			return fmt.Errorf("commit: register source: %w", err)
		}
	}
	keys, args := s.commitArgs(c, time.Now().Truncate(time.Millisecond))
	res, err := s.sc.commit.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if len(res) > 0 && res[0] == "conflict" && len(res) == 2 {
		return fmt.Errorf("commit: computed on generation %d, stored generation is %s: %w", c.Generation, res[1], store.ErrConflict)
	}
	if len(res) == 0 || res[0] != "ok" || (len(res)-1)%3 != 0 {
		return fmt.Errorf("commit: unexpected script reply %q", res)
	}
	if s.skipSync.Load() {
		return nil
	}
	var entries []indexEntry
	for i := 1; i < len(res); i += 3 {
		entries = append(entries, indexEntry{source: c.Source, sink: res[i], version: res[i+1], earliest: res[i+2]})
	}
	// The commit is done; a failure here is repaired later (see above).
	_ = s.syncIndex(ctx, entries, s.sourcesKey(), c.Source)
	return nil
}

// commitArgs builds the KEYS and ARGV of the commit script.
func (s *Store) commitArgs(c store.Commit, now time.Time) ([]string, []any) {
	keys := []string{s.headKey(c.Source), s.itemsKey(c.Source), s.metaKey(c.Source), s.outKey(c.Source)}
	var sinks []string
	sinkIdx := map[string]int{}
	for _, d := range c.Deliveries {
		if _, ok := sinkIdx[d.Sink]; !ok {
			sinks = append(sinks, d.Sink)
			sinkIdx[d.Sink] = len(sinks)
			keys = append(keys, s.dueKey(c.Source, d.Sink), s.fifoKey(c.Source, d.Sink), s.liveKey(c.Source, d.Sink))
		}
	}
	replace := "0"
	if c.Meta != nil {
		replace = "1"
	}
	args := make([]any, 0, 6+len(sinks)+len(c.Delete)+2*len(c.Upsert)+2*len(c.Meta)+5*len(c.Deliveries))
	args = append(args, strconv.FormatUint(c.Generation, 10), replace,
		len(c.Delete), len(c.Upsert), len(c.Meta), len(c.Deliveries))
	for _, sink := range sinks {
		args = append(args, sink)
	}
	for _, k := range c.Delete {
		args = append(args, k)
	}
	for k, it := range c.Upsert {
		args = append(args, k, encodeItem(it))
	}
	for k, v := range c.Meta {
		args = append(args, k, v)
	}
	for _, d := range c.Deliveries {
		if d.Created.IsZero() {
			d.Created = now
		}
		if d.Due.IsZero() {
			d.Due = now
		}
		d.Dead = time.Time{}
		args = append(args, sinkIdx[d.Sink], d.ID, score(ceilMs(d.Due)), d.Key, recordTail(d))
	}
	return keys, args
}

// itemsVal is the result of an HGETALL of items, or nothing when it was not
// asked for.
func itemsVal(c *redis.MapStringStringCmd) map[string]string {
	if c == nil {
		return nil
	}
	return c.Val()
}
