package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// redisRig is the harness's view of the shared Redis for one run: a
// client for INFO and clean-up, the run's key prefix, and optionally a
// counting proxy that pollbridge talks through.
type redisRig struct {
	client *redis.Client
	url    string // what pollbridge is given: the server's, or the proxy's
	prefix string
	proxy  *redisProxy // nil when not counting
}

// openRedis connects to rawURL and, with counting set, starts a counting
// proxy in front of it.
func openRedis(ctx context.Context, rawURL, prefix string, counting bool, log *slog.Logger) (*redisRig, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	c := redis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis at %s: %w", opts.Addr, err)
	}
	r := &redisRig{client: c, url: rawURL, prefix: prefix}
	if counting {
		p, err := startRedisProxy(ctx, opts.Addr, prefix+"sink:", log)
		if err != nil {
			c.Close()
			return nil, err
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			c.Close()
			p.close()
			return nil, fmt.Errorf("redis url: %w", err)
		}
		u.Host = p.addr
		r.url, r.proxy = u.String(), p
	}
	return r, nil
}

// info returns one numeric field of INFO section.
func (r *redisRig) info(ctx context.Context, section, field string) (float64, error) {
	s, err := r.client.Info(ctx, section).Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO %s: %w", section, err)
	}
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("redis INFO %s: %s: %w", section, field, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("redis INFO %s: no field %s", section, field)
}

// cpu returns the CPU seconds the Redis server has used (INFO cpu).
func (r *redisRig) cpu(ctx context.Context) (float64, error) {
	user, err := r.info(ctx, "cpu", "used_cpu_user")
	if err != nil {
		return 0, err
	}
	sys, err := r.info(ctx, "cpu", "used_cpu_sys")
	return user + sys, err
}

// keys returns every key of the run's prefix.
func (r *redisRig) keys(ctx context.Context) ([]string, error) {
	var out []string
	iter := r.client.Scan(ctx, 0, r.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("redis SCAN %s*: %w", r.prefix, err)
	}
	return out, nil
}

// memoryUsage sums MEMORY USAGE (exact: SAMPLES 0) over the run's keys.
func (r *redisRig) memoryUsage(ctx context.Context) (int64, int, error) {
	keys, err := r.keys(ctx)
	if err != nil {
		return 0, 0, err
	}
	var total int64
	for i := 0; i < len(keys); i += 500 {
		batch := keys[i:min(i+500, len(keys))]
		cmds, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, 0, fmt.Errorf("redis MEMORY USAGE: %w", err)
		}
		for _, c := range cmds {
			if n, err := c.(*redis.IntCmd).Result(); err == nil {
				total += n
			}
		}
	}
	return total, len(keys), nil
}

// cleanup deletes every key of the run's prefix (never anything else),
// and stops the proxy and the client.
func (r *redisRig) cleanup(ctx context.Context) error {
	keys, err := r.keys(ctx)
	for i := 0; err == nil && i < len(keys); i += 1000 {
		// DEL, not UNLINK: memory is freed before the next run reads
		// used_memory.
		err = r.client.Del(ctx, keys[i:min(i+1000, len(keys))]...).Err()
	}
	if r.proxy != nil {
		r.proxy.close()
	}
	r.client.Close()
	if err != nil {
		return fmt.Errorf("redis clean-up of %s*: %w", r.prefix, err)
	}
	return nil
}

// redisProxy forwards TCP connections to Redis and counts, from the
// client's byte stream, the commands sent (RESP arrays; a pipeline or
// MULTI block counts each command, an EVALSHA counts one) and the round
// trips (a client write that follows an answer, per connection), and
// apart those that touch a sink's keys (the dispatcher's outbox work;
// pollbridge's redisstore names them PREFIX + "sink:{NAME}:...").
type redisProxy struct {
	addr     string
	ln       net.Listener
	upstream string
	log      *slog.Logger

	marker []byte // the keys of sinks start with it

	commands, roundTrips         atomic.Int64
	sinkCommands, sinkRoundTrips atomic.Int64 // those touching a sink's keys

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// redisCounts is a snapshot of a proxy's counters.
type redisCounts struct {
	Commands, RoundTrips         int64
	SinkCommands, SinkRoundTrips int64 // touching a sink's keys: the dispatcher's
}

// startRedisProxy listens on loopback and forwards to upstream; commands
// with an argument starting with marker count as a sink's.
func startRedisProxy(ctx context.Context, upstream, marker string, log *slog.Logger) (*redisProxy, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redis proxy: listen: %w", err)
	}
	p := &redisProxy{addr: ln.Addr().String(), ln: ln, upstream: upstream, marker: []byte(marker), log: log, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// counts returns the counters now.
func (p *redisProxy) counts() redisCounts {
	return redisCounts{
		Commands: p.commands.Load(), RoundTrips: p.roundTrips.Load(),
		SinkCommands: p.sinkCommands.Load(), SinkRoundTrips: p.sinkRoundTrips.Load(),
	}
}

// accept serves connections until the listener closes.
func (p *redisProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve copies one connection both ways.
func (p *redisProxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		p.log.Warn("redis proxy: dial", "err", err)
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns[client], p.conns[server] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var answered atomic.Bool // the server wrote since the client last did
	answered.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() {
		rc := respCounter{marker: p.marker}
		sinkTrip := false // this round trip touched a sink's keys
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if answered.Swap(false) {
					p.roundTrips.Add(1)
					sinkTrip = false
				}
				cmds, marked := rc.feed(buf[:n])
				p.commands.Add(cmds)
				p.sinkCommands.Add(marked)
				if marked > 0 && !sinkTrip {
					sinkTrip = true
					p.sinkRoundTrips.Add(1)
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		server.Close()
	})
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				answered.Store(true)
				if _, werr := client.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		client.Close()
	})
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// close stops accepting, closes every connection and waits.
func (p *redisProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// respCounter counts complete commands in a RESP request stream fed in
// arbitrary chunks, and those with an argument that starts with marker.
type respCounter struct {
	marker  []byte
	line    []byte // partial header line
	elems   int    // bulk strings left in the current array
	skip    int    // bytes of bulk data (with CRLF) left to skip
	head    []byte // first bytes of the current bulk string
	touches bool   // the current command has an argument starting with marker
}

// feed consumes b and returns the commands it completed, and how many of
// those had an argument starting with the marker.
func (r *respCounter) feed(b []byte) (cmds, marked int64) {
	end := func() {
		cmds++
		if r.touches {
			marked++
		}
		r.touches, r.elems = false, 0
	}
	for len(b) > 0 {
		if r.skip > 0 {
			n := min(r.skip, len(b))
			if want := len(r.marker) - len(r.head); want > 0 {
				r.head = append(r.head, b[:min(want, n)]...)
			}
			r.skip -= n
			b = b[n:]
			if r.skip == 0 {
				if len(r.marker) > 0 && bytes.HasPrefix(r.head, r.marker) {
					r.touches = true
				}
				r.head = r.head[:0]
				if r.elems--; r.elems == 0 {
					end()
				}
			}
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			r.line = append(r.line, b...)
			return cmds, marked
		}
		r.line = append(r.line, b[:i+1]...)
		b = b[i+1:]
		line := bytes.TrimRight(r.line, "\r\n")
		r.line = r.line[:0]
		switch {
		case r.elems == 0 && len(line) > 0 && line[0] == '*':
			if n, _ := strconv.Atoi(string(line[1:])); n > 0 {
				r.elems = n
			} else {
				end()
			}
		case r.elems == 0:
			if len(line) > 0 {
				end() // an inline command
			}
		case len(line) > 0 && line[0] == '$':
			n, _ := strconv.Atoi(string(line[1:]))
			if n >= 0 {
				r.skip = n + 2
			} else if r.elems--; r.elems == 0 {
				end()
			}
		default: // not a bulk string: give up on this array
			end()
		}
	}
	return cmds, marked
}
