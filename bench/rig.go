package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// env is what every scenario run shares: binaries, directories, Redis and
// the /proc reader.
type env struct {
	exe      string // this harness binary: children are started from it
	bin      string // the pollbridge binary
	repo     string // the pollbridge repository
	dir      string // temporary files of this run
	redisURL string
	runID    string // makes Redis key prefixes unique
	proc     procReader
	log      *slog.Logger
	quick    bool
	window   time.Duration // overrides the measurement windows; 0: defaults
	profile  string        // directory for CPU profiles of pollbridge; "": none
	keep     bool          // keep files for a post-mortem: the API's log too
	status   io.Writer     // progress lines
}

// say writes a progress line.
func (e *env) say(format string, args ...any) {
	if e.status != nil {
		fmt.Fprintf(e.status, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

// rigOptions configures the processes of one run.
type rigOptions struct {
	api         apiOptions
	schedule    string
	maxPages    int
	emitInitial bool
	concurrency int
	countRedis  bool   // put the counting proxy between pollbridge and Redis
	sourceExtra string // extra YAML for every source
}

// rig is one run's processes: the load API, the receiver, pollbridge and,
// for the redis backend, the Redis connection.
type rig struct {
	e        *env
	name     string
	dir      string
	backend  string
	api      *apiChild
	recv     *receiver
	stopRecv context.CancelFunc
	redis    *redisRig // nil for bolt
	pb       *pollbridge
	cfg      pbConfig
	cfgPath  string
	peakRSS  int64  // pollbridge's VmHWM, read when it stops
	floor    *child // a paced floor measured in pollbridge's windows; nil: none
}

// newRig starts the load API and the receiver, writes and validates the
// pollbridge configuration, and starts pollbridge. Close it when done; on
// an error it has closed what it started and returns nil.
func (e *env) newRig(ctx context.Context, name, backend string, o rigOptions) (_ *rig, err error) {
	dir := filepath.Join(e.dir, name+"-"+backend)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("rig: %w", err)
	}
	r := &rig{e: e, name: name, dir: dir, backend: backend}
	defer func() {
		if err != nil {
			r.close(ctx)
		}
	}()
	if r.api, err = startAPI(ctx, e.exe, dir, o.api); err != nil {
		return nil, err
	}
	secret, err := newSecret()
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.stopRecv = cancel
	if r.recv, err = startReceiver(rctx, secret, e.log); err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	r.cfg = pbConfig{
		APIURL:      r.api.url,
		Sources:     o.api.Sources,
		Schedule:    o.schedule,
		MaxPages:    o.maxPages,
		EmitInitial: o.emitInitial,
		AdminAddr:   admin,
		SinkURL:     r.recv.url + "/hooks",
		Secret:      secret,
		Concurrency: o.concurrency,
		StatePath:   filepath.Join(dir, "pb.db"),
		SourceExtra: o.sourceExtra,
	}
	if backend == "redis" {
		prefix := fmt.Sprintf("pbbench:%s:%s:", e.runID, name)
		if r.redis, err = openRedis(ctx, e.redisURL, prefix, o.countRedis, e.log); err != nil {
			return nil, err
		}
		r.cfg.RedisURL, r.cfg.RedisPrefix = r.redis.url, prefix
	}
	r.cfgPath = filepath.Join(dir, "pollbridge.yaml")
	if err = os.WriteFile(r.cfgPath, []byte(r.cfg.yaml()), 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	if err = validateConfig(ctx, e.bin, r.cfgPath); err != nil {
		return nil, err
	}
	if r.pb, err = startPollbridge(ctx, e.bin, r.cfgPath, admin, filepath.Join(dir, "pollbridge.log"), e.profile != ""); err != nil {
		return nil, err
	}
	return r, nil
}

// stopPollbridge records pollbridge's memory and stops it.
func (r *rig) stopPollbridge() error {
	if r.pb == nil {
		return nil
	}
	var memErr error
	if r.pb.running() {
		r.peakRSS, _, memErr = r.e.proc.memory(r.pb.pid())
	}
	err := r.pb.stop(15 * time.Second)
	r.pb = nil
	return errors.Join(memErr, err)
}

// close stops everything the rig started and deletes its Redis keys.
func (r *rig) close(ctx context.Context) {
	if err := r.stopPollbridge(); err != nil {
		r.e.log.Warn("stop pollbridge", "err", err)
	}
	if r.api != nil && r.e.keep && r.api.running() {
		if log, err := r.api.log(ctx); err == nil {
			if b, err := json.Marshal(log); err == nil {
				_ = os.WriteFile(filepath.Join(r.dir, "api-log.json"), b, 0o644)
			}
		}
	}
	if r.api != nil {
		if err := r.api.stop(5 * time.Second); err != nil {
			r.e.log.Warn("stop load API", "err", err)
		}
	}
	if r.stopRecv != nil {
		r.stopRecv()
	}
	if r.redis != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := r.redis.cleanup(cctx); err != nil {
			r.e.log.Warn("redis clean-up", "err", err)
		}
	}
}

// waitBaseline waits until pollbridge fetched every source once and that
// many polls completed (the baseline is recorded), then returns each
// source's tick offset on the grid of interval (see tickOffsets).
func (r *rig) waitBaseline(ctx context.Context, sources int, interval time.Duration) ([]time.Duration, error) {
	err := waitFor(ctx, time.Minute, 100*time.Millisecond, "every source's first fetch", func() (bool, error) {
		p, err := r.api.progress(ctx)
		return p.Polled >= sources, err
	})
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, time.Minute, 250*time.Millisecond, "the baseline polls to complete", func() (bool, error) {
		m, err := r.pb.metrics(ctx)
		return m.labelsWith("pollbridge_polls_total", "source") >= sources, err
	})
	if err != nil {
		return nil, err
	}
	return r.pb.tickOffsets(ctx, sources, interval)
}

// window is what one measurement window of a scheduled run saw.
type window struct {
	t0, t1        time.Time
	wall          time.Duration
	pbCPU, apiCPU float64
	selfCPU       float64  // the harness: receiver, Redis proxy
	machineBusy   float64  // CPU seconds the machine was busy, all processes
	redisCPU      float64  // Redis server's (INFO used_cpu_user + sys); 0 for bolt
	polls, notMod int64    // first pages served to pollbridge; 304s among them
	floor         floorRun // the rig's floor over the same window, if it has one
	newConns      int64
	m0, m1        scrape // /metrics just before and just after
	rc0, rc1      redisCounts
	info0, info1  float64 // Redis total_commands_processed
	lags          []time.Duration
	mutations     int // made in the window
}

// measure measures pollbridge for length, starting at the next whole
// tick of interval plus a half: CPU from /proc, polls and schedule lag
// (against each source's tick offset) at the API, /metrics and Redis
// counters at the edges.
func (r *rig) measure(ctx context.Context, interval, length time.Duration, offsets []time.Duration) (*window, error) {
	w := &window{}
	var err error
	t0 := time.Now().Truncate(interval).Add(interval + interval/2)
	if w.m0, err = r.pb.metrics(ctx); err != nil {
		return nil, err
	}
	if err := sleepUntil(ctx, t0); err != nil {
		return nil, err
	}
	c0, err := r.api.counters(ctx)
	if err != nil {
		return nil, err
	}
	var redisCPU0 float64
	if r.redis != nil {
		if r.redis.proxy != nil {
			w.rc0 = r.redis.proxy.counts()
		}
		if w.info0, err = r.redis.info(ctx, "stats", "total_commands_processed"); err != nil {
			return nil, err
		}
		if redisCPU0, err = r.redis.cpu(ctx); err != nil {
			return nil, err
		}
	}
	busy0, err := r.e.proc.machineCPU()
	if err != nil {
		return nil, err
	}
	pids := []int{r.pb.pid(), r.api.pid(), os.Getpid()}
	if r.floor != nil {
		pids = append(pids, r.floor.pid())
	}
	m, err := r.e.proc.startCPU(pids...)
	if err != nil {
		return nil, err
	}
	w.t0 = time.Now()
	profiled := r.profile(ctx, length)
	if err := sleepUntil(ctx, t0.Add(length)); err != nil {
		return nil, err
	}
	cpu, wall, err := m.stop()
	if err != nil {
		return nil, err
	}
	busy1, err := r.e.proc.machineCPU()
	if err != nil {
		return nil, err
	}
	w.t1, w.wall, w.pbCPU, w.apiCPU, w.selfCPU, w.machineBusy = time.Now(), wall, cpu[0], cpu[1], cpu[2], busy1-busy0
	if r.redis != nil {
		redisCPU1, err := r.redis.cpu(ctx)
		if err != nil {
			return nil, err
		}
		w.redisCPU = redisCPU1 - redisCPU0
	}
	if err := <-profiled; err != nil {
		r.e.log.Warn("CPU profile", "err", err)
	}
	if r.redis != nil {
		if w.info1, err = r.redis.info(ctx, "stats", "total_commands_processed"); err != nil {
			return nil, err
		}
		if r.redis.proxy != nil {
			w.rc1 = r.redis.proxy.counts()
		}
	}
	c1, err := r.api.counters(ctx)
	if err != nil {
		return nil, err
	}
	d := c1.delta(c0, classPollbridge)
	w.polls, w.notMod, w.newConns = d.FirstPages, d.NotModified, c1.NewConns-c0.NewConns
	if r.floor != nil {
		// The API's CPU and new connections are for both clients.
		w.floor = floorRun{CPU: cpu[3], APICPU: w.apiCPU, Wall: wall, Polls: c1.delta(c0, classFloor).FirstPages, NewConns: w.newConns}
	}
	if w.m1, err = r.pb.metrics(ctx); err != nil {
		return nil, err
	}
	log, err := r.api.log(ctx)
	if err != nil {
		return nil, err
	}
	w.lags = scheduleLags(log.Served, w.t0, w.t1, interval, offsets)
	for _, mu := range log.Mutations {
		if mu.At >= w.t0.UnixNano() && mu.At < w.t1.UnixNano() {
			w.mutations++
		}
	}
	return w, nil
}

// profile fetches a CPU profile of pollbridge covering the next length
// (less a second) into the profile directory, when there is one. The
// channel gives the outcome.
func (r *rig) profile(ctx context.Context, length time.Duration) <-chan error {
	out := make(chan error, 1)
	secs := int((length - time.Second).Seconds())
	if r.e.profile == "" || secs < 1 {
		out <- nil
		return out
	}
	path := filepath.Join(r.e.profile, r.name+"-"+r.backend+".pprof")
	go func() {
		out <- r.pb.download(ctx, "/debug/pprof/profile?seconds="+itoa(secs), path)
	}()
	return out
}

// scheduleLags returns, for pollbridge's fetches in [from, to), how late
// each arrived after its tick: arrival minus the arrival truncated to the
// grid of interval shifted by the source's offset (a fetch in the second
// half of an interval counts as early for the next tick, negative).
func scheduleLags(fetches []served, from, to time.Time, interval time.Duration, offsets []time.Duration) []time.Duration {
	var out []time.Duration
	for _, f := range fetches {
		at := time.Unix(0, f.At)
		if at.Before(from) || !at.Before(to) {
			continue
		}
		var off time.Duration
		if f.S < len(offsets) {
			off = offsets[f.S]
		}
		shifted := at.Add(-off)
		lag := shifted.Sub(shifted.Truncate(interval))
		if lag > interval/2 {
			lag -= interval
		}
		out = append(out, lag)
	}
	return out
}

// pollRows adds the rows every scheduled run reports: polls per second
// against the schedule, lag at the API and from /metrics, CPU, failed
// polls.
func (w *window) pollRows(res *result, sources int, interval time.Duration) {
	secs := w.wall.Seconds()
	scheduled := float64(sources) / interval.Seconds()
	res.add(fmt.Sprintf("polls/s (scheduled %s/s)", fmtNum(scheduled)), float64(w.polls)/secs, "/s").
		want("≥ 99% of scheduled", float64(w.polls)/secs >= 0.99*scheduled)
	lags := append([]time.Duration(nil), w.lags...)
	res.add("schedule lag p50 at the API", ms(percentile(lags, 0.50)), "ms")
	res.add("schedule lag p99 at the API", ms(percentile(lags, 0.99)), "ms").Target = "none set (includes pollbridge's deliberate lease jitter)"
	res.add("schedule lag max at the API", ms(percentile(lags, 1)), "ms")
	if v, ok := histogramQuantile(w.m0, w.m1, "pollbridge_schedule_lag_seconds", 0.99); ok {
		res.add("schedule lag p99 (pollbridge_schedule_lag_seconds)", v*1000, "ms")
	} else {
		res.text("schedule lag p99 (pollbridge_schedule_lag_seconds)", "metric not exported")
	}
	failed := w.m1.sum("pollbridge_polls_total", "result", "error") - w.m0.sum("pollbridge_polls_total", "result", "error")
	res.add("failed polls in the window", failed, "").atMost(0, false)
}

// machineRows adds what else kept the machine busy during the window.
func (w *window) machineRows(res *result) {
	secs := w.wall.Seconds()
	res.add(fmt.Sprintf("machine CPU busy, every process (of %d cores; /proc/stat, tick-sampled)", runtime.NumCPU()), w.machineBusy/secs, "cores")
	res.add("of which: the load API", w.apiCPU/secs, "cores")
	if w.floor.Wall > 0 {
		res.add("of which: the floor, beside pollbridge", w.floor.CPU/secs, "cores")
	}
	res.add("of which: the harness (receiver, Redis proxy)", w.selfCPU/secs, "cores")
	if w.redisCPU > 0 {
		res.add("of which: Redis (shared server)", w.redisCPU/secs, "cores")
	}
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mb converts bytes to MiB.
func mb(n int64) float64 { return float64(n) / (1 << 20) }

// per1k returns cpu per 1,000 of n (0 for none).
func per1k(cpu float64, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return cpu / float64(n) * 1000
}
