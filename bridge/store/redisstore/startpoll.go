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

// pollStarts groups StartPolls calls. A call made while no batch is in
// flight goes to Redis at once; the calls that arrive while one is in
// flight wait for it to end, and then the first of them to run sends them
// all, in one pipeline. The engine asks for the ticks of a schedule's
// sources in one call, and ticks that are spread over time (replicas
// sharing the store) still share a round trip when they meet. A caller
// sends one batch at most: however steadily calls keep coming, each
// returns after two round trips or less.
type pollStarts struct {
	mu      sync.Mutex
	queue   []*startCall
	running bool          // a batch is in flight
	idle    chan struct{} // closed (and replaced) when it lands
}

// startCall is one queued StartPolls call.
type startCall struct {
	reqs []*pollStart
	sent bool          // taken into a batch (under pollStarts.mu)
	done chan struct{} // closed when every request's res and err are set
}

// pollStart is the script call of one tick.
type pollStart struct {
	keys []string
	args []any
	res  []any
	err  error
}

// StartPolls implements store.Store with one script per tick, on the
// source's slot: the tick's lease (a key of the source, so Cluster keeps it
// beside the state) and, when held, the generation and meta. The scripts of
// a call, and of the calls made meanwhile, share one pipeline (see
// pollStarts).
func (s *Store) StartPolls(ctx context.Context, owner string, ttl time.Duration, ticks []store.PollTick) []store.PollStart {
	out := make([]store.PollStart, len(ticks))
	fail := func(i int, err error) {
		out[i] = store.PollStart{Err: fmt.Errorf("start poll %s: %w", ticks[i].Source, err)}
	}
	call := &startCall{done: make(chan struct{})}
	for i, t := range ticks {
		switch {
		case t.Source == "" || t.Tick == "" || owner == "" || ttl <= 0:
			fail(i, errors.New("source, tick, owner and a positive ttl are required"))
			call.reqs = append(call.reqs, nil)
		default:
			call.reqs = append(call.reqs, &pollStart{
				keys: []string{s.srcKey(t.Source, "lease:"+t.Tick), s.headKey(t.Source), s.metaKey(t.Source)},
				args: []any{owner, (ttl + time.Millisecond - 1).Milliseconds()},
			})
		}
	}
	if err := s.runCall(ctx, call); err != nil {
		for i, r := range call.reqs {
			if r != nil {
				fail(i, err)
			}
		}
		return out
	}
	for i, r := range call.reqs {
		switch {
		case r == nil:
		case r.err != nil:
			fail(i, r.err)
		default:
			st, held, err := parseStart(r.res)
			if err != nil {
				fail(i, err)
				continue
			}
			out[i] = store.PollStart{State: st, Held: held}
		}
	}
	return out
}

// runCall queues call and returns once its scripts have run: sent by this
// caller, or by another one's batch (see pollStarts). The error is ctx's
// when it ended first.
func (s *Store) runCall(ctx context.Context, call *startCall) error {
	if !slices.ContainsFunc(call.reqs, func(r *pollStart) bool { return r != nil }) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q := &s.starts
	q.mu.Lock()
	q.queue = append(q.queue, call)
	for q.running && !call.sent {
		if q.idle == nil {
			q.idle = make(chan struct{})
		}
		idle := q.idle
		q.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			q.mu.Lock()
			if !call.sent { // never sent: nobody takes a lease for a caller gone
				q.queue = slices.DeleteFunc(q.queue, func(c *startCall) bool { return c == call })
			}
			q.mu.Unlock()
			return ctx.Err()
		}
		q.mu.Lock()
	}
	if call.sent {
		q.mu.Unlock()
		select {
		case <-call.done:
			return nil
		case <-ctx.Done(): // the scripts still run; their leases just expire
			return ctx.Err()
		}
	}
	// This caller sends the queue, under its own ctx: if that ends, the
	// calls it carries fail with it. (The engine's ticks share one
	// context, which ends only at shutdown.)
	batch := q.queue
	q.queue, q.running = nil, true
	for _, c := range batch {
		c.sent = true
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
	return nil
}

// runStarts runs the startPoll script of every request of batch, in one
// pipeline (one plain call when there is one), and sets their results.
func (s *Store) runStarts(ctx context.Context, batch []*startCall) {
	var reqs []*pollStart
	for _, c := range batch {
		for _, r := range c.reqs {
			if r != nil {
				reqs = append(reqs, r)
			}
		}
	}
	defer func() {
		for _, c := range batch {
			close(c.done)
		}
	}()
	if len(reqs) == 1 {
		r := reqs[0]
		r.res, r.err = s.sc.startPoll.Run(ctx, s.rdb, r.keys, r.args...).Slice()
		return
	}
	cmds := make([]*redis.Cmd, len(reqs))
	_, _ = s.pipeScripts(ctx, func(p redis.Pipeliner) {
		for i, r := range reqs {
			cmds[i] = s.sc.startPoll.EvalSha(ctx, p, r.keys, r.args...)
		}
	})
	for i, r := range reqs {
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
		return store.State{}, false, fmt.Errorf("unexpected reply of %d values", len(res))
	}
	st := store.State{Items: map[string]store.Item{}, Meta: map[string]string{}}
	if g, ok := res[1].(string); ok {
		var err error
		if st.Generation, err = strconv.ParseUint(g, 10, 64); err != nil {
			return store.State{}, false, fmt.Errorf("bad generation %q", g)
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
