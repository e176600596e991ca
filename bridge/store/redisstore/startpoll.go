package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// pollStarts groups StartPoll calls. A call made while no batch is in
// flight goes to Redis at once; the calls that arrive while one is in
// flight wait for it to end, and then the first of them to run sends them
// all, in one pipeline. The scheduler fires ticks in small batches, so the
// sources of one batch share a round trip instead of making one each, and
// a lone call waits for nothing. A caller sends one batch at most: however
// steadily calls keep coming, each returns after two round trips or less.
type pollStarts struct {
	mu      sync.Mutex
	queue   []*pollStart
	running bool          // a batch is in flight
	idle    chan struct{} // closed (and replaced) when it lands
}

// pollStart is one queued StartPoll call.
type pollStart struct {
	keys []string
	args []any
	sent bool // taken into a batch (under pollStarts.mu)
	res  []any
	err  error
	done chan struct{} // closed when res and err are set
}

// StartPoll implements store.Store in one script on the source's slot:
// the tick's lease (a key of the source, so Cluster keeps it beside the
// state) and, when held, the generation and meta. Calls made together share
// one pipeline (see pollStarts).
func (s *Store) StartPoll(ctx context.Context, source, tick, owner string, ttl time.Duration) (store.State, bool, error) {
	if source == "" || tick == "" || owner == "" || ttl <= 0 {
		return store.State{}, false, errors.New("start poll: source, tick, owner and a positive ttl are required")
	}
	if err := ctx.Err(); err != nil {
		return store.State{}, false, fmt.Errorf("start poll: %w", err)
	}
	req := &pollStart{
		keys: []string{s.srcKey(source, "lease:"+tick), s.headKey(source), s.metaKey(source)},
		args: []any{owner, (ttl + time.Millisecond - 1).Milliseconds()},
		done: make(chan struct{}),
	}
	q := &s.starts
	q.mu.Lock()
	q.queue = append(q.queue, req)
	for q.running && !req.sent {
		if q.idle == nil {
			q.idle = make(chan struct{})
		}
		idle := q.idle
		q.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			q.mu.Lock()
			if !req.sent { // never sent: nobody takes a lease for a caller gone
				q.queue = slices.DeleteFunc(q.queue, func(r *pollStart) bool { return r == req })
			}
			q.mu.Unlock()
			return store.State{}, false, fmt.Errorf("start poll: %w", ctx.Err())
		}
		q.mu.Lock()
	}
	if req.sent {
		q.mu.Unlock()
		select {
		case <-req.done:
		case <-ctx.Done(): // the call still runs; its lease just expires
			return store.State{}, false, fmt.Errorf("start poll: %w", ctx.Err())
		}
	} else {
		// This caller sends the queue, under its own ctx: if that ends,
		// the calls it carries fail with it. (The engine's ticks share
		// one context, which ends only at shutdown.)
		batch := q.queue
		q.queue, q.running = nil, true
		for _, r := range batch {
			r.sent = true
		}
		q.mu.Unlock()
		s.runStarts(ctx, batch)
		q.mu.Lock()
		q.running = false
		if q.idle != nil {
			close(q.idle) // the queued calls: the first to run sends them
			q.idle = nil
		}
		q.mu.Unlock()
	}
	if req.err != nil {
		return store.State{}, false, fmt.Errorf("start poll: %w", req.err)
	}
	return parseStart(req.res)
}

// runStarts runs the startPoll script for every call of batch, in one
// pipeline, and sets their results.
func (s *Store) runStarts(ctx context.Context, batch []*pollStart) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	if len(batch) == 1 {
		r := batch[0]
		r.res, r.err = s.sc.startPoll.Run(ctx, s.rdb, r.keys, r.args...).Slice()
		return
	}
	cmds := make([]*redis.Cmd, len(batch))
	_, _ = s.pipeScripts(ctx, func(p redis.Pipeliner) {
		for i, r := range batch {
			cmds[i] = s.sc.startPoll.EvalSha(ctx, p, r.keys, r.args...)
		}
	})
	for i, r := range batch {
		r.res, r.err = cmds[i].Slice() // a failed pipeline left its error in each
	}
}

// parseStart reads the startPoll script's reply: {0} when another owner
// holds the lease, {1, generation, meta as a flat list} when the caller does.
func parseStart(res []any) (store.State, bool, error) {
	if len(res) == 0 || res[0] != int64(1) {
		return store.State{}, false, nil
	}
	if len(res) != 3 {
		return store.State{}, false, fmt.Errorf("start poll: unexpected reply of %d values", len(res))
	}
	st := store.State{Items: map[string]store.Item{}, Meta: map[string]string{}}
	if g, ok := res[1].(string); ok {
		var err error
		if st.Generation, err = strconv.ParseUint(g, 10, 64); err != nil {
			return store.State{}, false, fmt.Errorf("start poll: bad generation %q", g)
		}
	}
	flat, _ := res[2].([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		st.Meta[k] = v
	}
	return st, true, nil
}
