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
	owner string
	ttl   int64 // ms
	reqs  []*pollStart
	sent  bool          // taken into a batch (under pollStarts.mu)
	done  chan struct{} // closed when every request's res and err are set
}

// tickKeys are the names of a source's keys that StartPolls sends with
// every tick, made once.
type tickKeys struct {
	lease      string // the start of a lease key; the tick ends it
	head, meta any    // boxed once: go-redis takes arguments as []any
}

// tickKeysOf returns the cached tickKeys of source.
func (s *Store) tickKeysOf(source string) *tickKeys {
	if k, ok := s.tickKeys.Load(source); ok {
		return k.(*tickKeys)
	}
	k, _ := s.tickKeys.LoadOrStore(source, &tickKeys{
		lease: s.srcKey(source, "lease:"),
		head:  s.headKey(source),
		meta:  s.metaKey(source),
	})
	return k.(*tickKeys)
}

// pollStart is one tick of a StartPolls call: its keys, then its answer.
type pollStart struct {
	keys [3]any // lease, head, meta
	held bool
	st   store.State
	err  error
}

// startsPerScript is how many ticks one startPolls script takes at most,
// so that one script never holds Redis for long.
const startsPerScript = 128

// StartPolls implements store.Store with the startPolls script: each tick's
// lease (a key of the source, so Cluster keeps it beside the state) and,
// when held, the generation and meta. On one Redis server, one script takes
// up to startsPerScript ticks; in a Cluster, where a script's keys must
// share a slot, each tick has its own. The scripts of a call, and of the
// calls made meanwhile, share one pipeline (see pollStarts).
func (s *Store) StartPolls(ctx context.Context, owner string, ttl time.Duration, ticks []store.PollTick) []store.PollStart {
	out := make([]store.PollStart, len(ticks))
	fail := func(i int, err error) {
		out[i] = store.PollStart{Err: fmt.Errorf("start poll %s: %w", ticks[i].Source, err)}
	}
	call := &startCall{owner: owner, ttl: (ttl + time.Millisecond - 1).Milliseconds(), done: make(chan struct{})}
	reqs := make([]pollStart, len(ticks))
	for i, t := range ticks {
		switch {
		case t.Source == "" || t.Tick == "" || owner == "" || ttl <= 0:
			fail(i, errors.New("source, tick, owner and a positive ttl are required"))
			call.reqs = append(call.reqs, nil)
		default:
			r := &reqs[i]
			k := s.tickKeysOf(t.Source)
			r.keys = [3]any{k.lease + t.Tick, k.head, k.meta}
			call.reqs = append(call.reqs, r)
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
			out[i] = store.PollStart{State: r.st, Held: r.held}
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

// runStarts runs the startPolls scripts of every request of batch, in one
// pipeline, and sets their results. A script's ticks share an owner and a
// TTL: calls that differ (sources on another interval, another engine on
// this Store) start a script of their own.
func (s *Store) runStarts(ctx context.Context, batch []*startCall) {
	defer func() {
		for _, c := range batch {
			close(c.done)
		}
	}()
	per := startsPerScript
	if _, cluster := s.rdb.(*redis.ClusterClient); cluster {
		per = 1
	}
	// scripts: the requests of each script call, in order.
	type script struct {
		owner string
		ttl   int64
		reqs  []*pollStart
	}
	var scripts []script
	for _, c := range batch {
		for _, r := range c.reqs {
			if r == nil {
				continue
			}
			if n := len(scripts); n == 0 || len(scripts[n-1].reqs) == per ||
				scripts[n-1].owner != c.owner || scripts[n-1].ttl != c.ttl {
				scripts = append(scripts, script{owner: c.owner, ttl: c.ttl})
			}
			sc := &scripts[len(scripts)-1]
			sc.reqs = append(sc.reqs, r)
		}
	}
	// The commands are built by hand, not with Script.EvalSha, which would
	// box every key anew. pipeScripts loads the script if Redis lacks it.
	cmds := make([]*redis.Cmd, len(scripts))
	_, _ = s.pipeScripts(ctx, func(p redis.Pipeliner) {
		for i, sc := range scripts {
			args := make([]any, 0, 5+3*len(sc.reqs))
			args = append(args, "evalsha", s.sc.startPolls.Hash(), 3*len(sc.reqs))
			for _, r := range sc.reqs {
				args = append(args, r.keys[:]...)
			}
			cmds[i] = redis.NewCmd(ctx, append(args, sc.owner, sc.ttl)...)
			_ = p.Process(ctx, cmds[i])
		}
	})
	for i, sc := range scripts {
		reply, err := cmds[i].Text() // a failed pipeline left its error in each
		if err == nil {
			err = parseStarts(reply, sc.reqs)
		}
		if err != nil {
			for _, r := range sc.reqs {
				r.err = err
			}
		}
	}
}

// parseStarts reads the startPolls script's reply (see startPollsLua) into
// reqs, the ticks it was asked for, in order. The meta strings share the
// reply's memory.
func parseStarts(reply string, reqs []*pollStart) error {
	r := startReply{s: reply}
	for _, req := range reqs {
		switch r.byte() {
		case '0':
			req.held = false
		case 'E':
			if msg := r.field(); !r.bad {
				req.err = errors.New(msg) // Redis's own words, e.g. WRONGTYPE
			}
		case '1':
			fields := r.num()
			if fields > len(r.s) {
				r.bad = true
				break
			}
			gen := r.field()
			var g uint64
			if gen != "" {
				var err error
				if g, err = strconv.ParseUint(gen, 10, 64); err != nil {
					return fmt.Errorf("bad generation %q", gen)
				}
			}
			req.held = true
			req.st = store.State{Generation: g, Items: map[string]store.Item{}, Meta: make(map[string]string, fields)}
			for i := 0; i < fields && !r.bad; i++ {
				k := r.field()
				req.st.Meta[k] = r.field()
			}
		default:
			r.bad = true
		}
		if r.bad {
			return fmt.Errorf("unexpected reply %.40q", reply)
		}
	}
	if r.s != "" {
		return fmt.Errorf("unexpected reply %.40q: %d bytes left", reply, len(r.s))
	}
	return nil
}

// startReply reads the startPolls script's reply; bad is set, and reading
// goes on harmlessly, once it does not fit.
type startReply struct {
	s   string
	bad bool
}

// byte reads one byte.
func (r *startReply) byte() byte {
	if r.s == "" {
		r.bad = true
		return 0
	}
	b := r.s[0]
	r.s = r.s[1:]
	return b
}

// num reads a decimal number and the ':' after it.
func (r *startReply) num() int {
	n, i := 0, 0
	for ; i < len(r.s) && r.s[i] >= '0' && r.s[i] <= '9' && n < 1<<30; i++ {
		n = n*10 + int(r.s[i]-'0')
	}
	if i == 0 || i == len(r.s) || r.s[i] != ':' {
		r.bad = true
		return 0
	}
	r.s = r.s[i+1:]
	return n
}

// field reads a <length>:<bytes> field.
func (r *startReply) field() string {
	n := r.num()
	if r.bad || n > len(r.s) {
		r.bad = true
		return ""
	}
	f := r.s[:n]
	r.s = r.s[n:]
	return f
}
