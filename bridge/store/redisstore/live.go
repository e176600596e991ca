package redisstore

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// liveMinPage is the smallest first page Live reads from one (source, sink)
// pair.
const liveMinPage = 8

// Live lists the live deliveries of sink ("" = every sink) in order of Due
// (whole milliseconds), commit order among equals within a source and
// source name across sources; at most limit of them
// (store.DefaultLiveLimit when limit <= 0).
//
// Every (source, sink) pair keeps its live deliveries in a live ZSET
// scored by due time (see the package doc). Live reads a first page of
// each pair's ZSET, its size shared out from limit, merges the pages, and
// reads further pages (each twice the last) only from the pairs the merge
// takes from; then it reads the records of the chosen deliveries alone. So
// its cost grows with limit and the number of pairs, not with the outbox.
// It is not a snapshot: a delivery acked meanwhile is left out, one
// retried meanwhile shows its new Due.
func (s *Store) Live(ctx context.Context, sink string, limit int) ([]store.Delivery, error) {
	if limit <= 0 {
		limit = store.DefaultLiveLimit
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list live deliveries: %w", err)
	}
	out, err := s.live(ctx, sink, limit)
	if err != nil {
		return nil, fmt.Errorf("list live deliveries: %w", err)
	}
	return out, nil
}

// livePair is one (source, sink) pair that Live merges.
type livePair struct {
	source, sink string
	buf          []liveEntry // read and not taken yet, in ZSET order
	last         liveEntry   // the last entry read: the next page starts after it
	page         int         // the size of the last page asked for
	done         bool        // the last page was short: the pair has no more
}

// liveEntry is one member of a live ZSET with its score.
type liveEntry struct {
	member   string // 20-digit seq, then the delivery ID
	score    float64
	rawScore string // as Redis wrote it
}

// picked is an entry the merge chose, with its pair.
type picked struct {
	source string
	e      liveEntry
}

func (s *Store) live(ctx context.Context, sink string, limit int) ([]store.Delivery, error) {
	var pairs []*livePair
	err := s.forSources(ctx, func(batch []string) error {
		if sink != "" {
			for _, src := range batch {
				pairs = append(pairs, &livePair{source: src, sink: sink})
			}
			return nil
		}
		sinks, err := s.sourceSinks(ctx, batch)
		if err != nil {
			return err
		}
		for _, src := range batch {
			for _, k := range sinks[src] {
				pairs = append(pairs, &livePair{source: src, sink: k})
			}
		}
		return nil
	})
	if err != nil || len(pairs) == 0 {
		return nil, err
	}

	// First pages: twice a fair share of limit each, so that an even
	// spread needs no second page.
	first := min(limit, max(liveMinPage, (2*limit+len(pairs)-1)/len(pairs)))
	for batch := range slices.Chunk(pairs, scanBatch) {
		if err := s.livePages(ctx, batch, first); err != nil {
			return nil, err
		}
	}
	h := make(pairHeap, 0, len(pairs))
	for _, p := range pairs {
		if len(p.buf) > 0 {
			h = append(h, p)
		}
	}
	heap.Init(&h)
	var chosen []picked
	seen := map[string]bool{} // source NUL member: a member that moved between pages is read twice
	for len(chosen) < limit && h.Len() > 0 {
		p := h[0]
		e := p.buf[0]
		p.buf = p.buf[1:]
		if k := p.source + "\x00" + e.member; !seen[k] {
			seen[k] = true
			chosen = append(chosen, picked{p.source, e})
		}
		if len(p.buf) == 0 && !p.done && len(chosen) < limit {
			if err := s.livePages(ctx, []*livePair{p}, min(2*p.page, limit-len(chosen))); err != nil {
				return nil, err
			}
		}
		if len(p.buf) == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return s.liveRecords(ctx, chosen)
}

// livePages reads the next page, of up to count entries, of each pair in
// one pipeline (all pairs given must fit one; see scanBatch).
func (s *Store) livePages(ctx context.Context, pairs []*livePair, count int) error {
	count = max(count, 1)
	cmds := make([]*redis.Cmd, len(pairs))
	_, err := s.pipeScripts(ctx, func(pl redis.Pipeliner) {
		for i, p := range pairs {
			keys := []string{s.headKey(p.source), s.dueKey(p.source, p.sink), s.fifoKey(p.source, p.sink),
				s.outKey(p.source), s.liveKey(p.source, p.sink)}
			cmds[i] = s.sc.live.EvalSha(ctx, pl, keys, p.sink, p.last.member, p.last.rawScore, count)
		}
	})
	for i, p := range pairs {
		vals, cerr := cmds[i].StringSlice()
		if cerr != nil {
			return fmt.Errorf("read live deliveries of source %q: %w", p.source, cerr)
		}
		if len(vals)%2 != 0 {
			return fmt.Errorf("read live deliveries of source %q: unexpected reply %q", p.source, vals)
		}
		p.page, p.done = count, len(vals)/2 < count
		for j := 0; j < len(vals); j += 2 {
			f, err := strconv.ParseFloat(vals[j+1], 64)
			if err != nil || len(vals[j]) <= 20 {
				return fmt.Errorf("read live deliveries of source %q: bad entry %q %q", p.source, vals[j], vals[j+1])
			}
			p.last = liveEntry{member: vals[j], score: f, rawScore: vals[j+1]}
			p.buf = append(p.buf, p.last)
		}
	}
	return err
}

// liveRecords reads the records of the chosen entries, source by source
// in one pipeline, and returns the deliveries still live, in order.
func (s *Store) liveRecords(ctx context.Context, chosen []picked) ([]store.Delivery, error) {
	if len(chosen) == 0 {
		return nil, nil
	}
	bySource := map[string][]string{}
	var sources []string
	for _, c := range chosen {
		if _, ok := bySource[c.source]; !ok {
			sources = append(sources, c.source)
		}
		bySource[c.source] = append(bySource[c.source], c.e.member[20:])
	}
	cmds := make([]*redis.SliceCmd, len(sources))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, src := range sources {
			cmds[i] = p.HMGet(ctx, s.outKey(src), bySource[src]...)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	type found struct {
		source string
		r      *record
	}
	var recs []found
	for i, src := range sources {
		vals, err := cmds[i].Result()
		if err != nil {
			return nil, fmt.Errorf("read deliveries of source %q: %w", src, err)
		}
		for _, v := range vals {
			raw, ok := v.(string)
			if !ok {
				continue // acked meanwhile
			}
			r, err := decodeRecord(raw)
			if err != nil {
				return nil, fmt.Errorf("source %q: %w", src, err)
			}
			if r.d.Dead.IsZero() {
				recs = append(recs, found{src, r})
			}
		}
	}
	slices.SortStableFunc(recs, func(a, b found) int {
		return cmp.Or(cmp.Compare(ceilMs(a.r.d.Due), ceilMs(b.r.d.Due)), cmp.Compare(a.source, b.source), cmp.Compare(a.r.seq, b.r.seq))
	})
	out := make([]store.Delivery, len(recs))
	for i, f := range recs {
		out[i] = f.r.d
	}
	return out, nil
}

// pairHeap orders pairs by their next entry: score, then source, then
// member (commit order within a source).
type pairHeap []*livePair

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	return cmp.Or(cmp.Compare(a.buf[0].score, b.buf[0].score), cmp.Compare(a.source, b.source),
		cmp.Compare(a.buf[0].member, b.buf[0].member), cmp.Compare(a.sink, b.sink)) < 0
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(*livePair)) }
func (h *pairHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
