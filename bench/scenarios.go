package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Scenario names, in the order they run.
const (
	scUnchanged   = "unchanged"
	scNotModified = "notmodified"
	scFleet       = "fleet"
	scDrain       = "drain"
	scBigsource   = "bigsource"
	scMillion     = "million"
)

// allScenarios returns every scenario name in running order.
func allScenarios() []string {
	return []string{scUnchanged, scNotModified, scFleet, scDrain, scBigsource, scMillion}
}

// triggeredSchedule is the schedule of sources the harness polls itself
// through the admin API: its first tick is a stable but random point in
// the coming year, so no tick comes during a run (but for bad luck of
// about one in half a million per source and minute).
const triggeredSchedule = "@every 8760h"

// scale sizes one scenario run.
type scale struct {
	Sources, Items int
	Window         time.Duration // measurement window (scheduled scenarios)
	Rate           float64       // mutations per second, all sources (fleet)
	Concurrency    int           // the sink's (fleet, drain)
	DrainCap       time.Duration // longest wait for the drain (drain)
}

// defaultScale returns the scale of a scenario; quick divides it by about
// ten. window, when not 0, replaces the measurement window.
func defaultScale(name string, quick bool, window time.Duration) scale {
	var s scale
	switch name {
	case scUnchanged, scNotModified:
		s = scale{Sources: 500, Items: 100, Window: 20 * time.Second}
		if quick {
			s = scale{Sources: 50, Items: 100, Window: 5 * time.Second}
		}
	case scFleet:
		// 1,000 changes a second need more than the default 4
		// deliveries in flight: a user with this load sets concurrency.
		s = scale{Sources: 1000, Items: 100, Window: 30 * time.Second, Concurrency: 64}
		if quick {
			s = scale{Sources: 100, Items: 100, Window: 10 * time.Second, Concurrency: 64}
		}
		s.Rate = float64(s.Sources*s.Items) / 100 // 1% of the items per second
	case scDrain:
		s = scale{Sources: 100, Items: 1000, Concurrency: 64, DrainCap: 90 * time.Second}
		if quick {
			s.Sources, s.DrainCap = 10, 30*time.Second
		}
	case scBigsource:
		s = scale{Sources: 1, Items: 100000}
		if quick {
			s.Items = 10000
		}
	case scMillion:
		s = scale{Sources: 1000, Items: 1000}
		if quick {
			s.Sources = 100
		}
	}
	if window > 0 && s.Window > 0 {
		s.Window = window
	}
	return s
}

// runScenario runs one scenario on one backend and returns its result;
// failures end up in result.Error.
func (e *env) runScenario(ctx context.Context, name, backend string, sc scale) *result {
	start := time.Now()
	res := &result{Scenario: name, Backend: backend}
	var err error
	switch name {
	case scUnchanged:
		err = e.runSteady(ctx, res, backend, false, sc)
	case scNotModified:
		err = e.runSteady(ctx, res, backend, true, sc)
	case scFleet:
		err = e.runFleet(ctx, res, backend, sc)
	case scDrain:
		err = e.runDrain(ctx, res, backend, sc)
	case scBigsource:
		err = e.runBigsource(ctx, res, backend, sc)
	case scMillion:
		err = e.runMillion(ctx, res, backend, sc)
	default:
		err = fmt.Errorf("unknown scenario %q", name)
	}
	if err != nil {
		res.Error = err.Error()
	}
	res.Elapsed = time.Since(start).Seconds()
	return res
}

// runSteady is unchanged (etag off: a full 200 answer every poll) and
// notmodified (etag on: 304 answers): sources × items polled every second
// and never changing, against the poll or cond floor.
func (e *env) runSteady(ctx context.Context, res *result, backend string, etag bool, sc scale) error {
	const interval = time.Second
	name, floorMode := scUnchanged, floorPoll
	if etag {
		name, floorMode = scNotModified, floorCond
	}
	res.Setup = fmt.Sprintf("%d sources × %d items @every 1s, ETag %v, no mutations; window %s; floor: %s",
		sc.Sources, sc.Items, onOff(etag), sc.Window, floorMode)
	e.say("%s/%s: starting %d sources", name, backend, sc.Sources)
	r, err := e.newRig(ctx, name, backend, rigOptions{
		api:      apiOptions{Sources: sc.Sources, Items: sc.Items, ETag: etag, Seed: 1},
		schedule: "@every 1s",
		// Round trips are counted where their target is (an unchanged
		// poll); the proxy's hop would add to a 304 poll's CPU.
		countRedis: backend == "redis" && !etag,
	})
	if err != nil {
		return err
	}
	defer r.close(ctx)
	offsets, err := r.waitBaseline(ctx, sc.Sources, interval)
	if err != nil {
		return err
	}
	// The floor runs beside pollbridge and is measured over the same
	// window: on a shared machine, the same loop measured alone a minute
	// apart moved by a third.
	if r.floor, err = e.startPacedFloor(ctx, r.api, floorMode, interval, offsets); err != nil {
		return err
	}
	defer func() { _ = r.floor.stop(5 * time.Second) }()
	// A tick to warm the floor up (connections, ETags).
	if err := sleepUntil(ctx, time.Now().Add(interval)); err != nil {
		return err
	}
	e.say("%s/%s: baseline done; measuring pollbridge and the %s floor together for %s", name, backend, floorMode, sc.Window)
	w, err := r.measure(ctx, interval, sc.Window, offsets)
	if err != nil {
		return err
	}
	hooks := r.recv.received()
	if err := r.stopPollbridge(); err != nil {
		return err
	}
	fl := w.floor

	res.pbCPU, res.floorCPU, res.peakRSS = w.pbCPU, fl.CPU, r.peakRSS
	res.check = &checkResult{Received: len(hooks), Spurious: len(hooks)}
	w.pollRows(res, sc.Sources, interval)
	cpuRow := res.add("CPU per 1,000 polls (headline)", per1k(w.pbCPU, w.polls), "s").vs(per1k(fl.CPU, fl.Polls))
	cpuRow.want("ratio ≤ 1 (aim ≤ 0.5)", cpuRow.Ratio != nil && *cpuRow.Ratio <= 1)
	res.add("CPU cores used", w.pbCPU/w.wall.Seconds(), "").vs(fl.CPU / fl.Wall.Seconds())
	nm := w.m1.sum("pollbridge_polls_total", "result", "not_modified") - w.m0.sum("pollbridge_polls_total", "result", "not_modified")
	polled := w.m1.sum("pollbridge_polls_total") - w.m0.sum("pollbridge_polls_total")
	if polled > 0 {
		res.add("polls ending not_modified (metrics)", 100*nm/polled, "%").want("100%", nm == polled)
	}
	if etag {
		res.add("304 answers / polls (API)", 100*float64(w.notMod)/float64(max(w.polls, 1)), "%")
	}
	res.add("new TCP connections per poll (API, pollbridge's and the floor's)", float64(w.newConns)/float64(max(w.polls+fl.Polls, 1)), "")
	res.add("load API CPU per 1,000 polls (pollbridge's and the floor's)", per1k(w.apiCPU, w.polls+fl.Polls), "s")
	w.machineRows(res)
	res.add("peak RSS", mb(r.peakRSS), "MB")
	if r.redis != nil && w.polls > 0 {
		polls := float64(w.polls)
		if r.redis.proxy != nil {
			secs := w.wall.Seconds()
			sinkTrips := float64(w.rc1.SinkRoundTrips - w.rc0.SinkRoundTrips)
			trips := (float64(w.rc1.RoundTrips-w.rc0.RoundTrips) - sinkTrips) / polls
			res.add("Redis round trips per poll (proxy)", trips, "").want("≤ 1 (±1% for polls straddling the window's edges)", trips <= 1.01)
			res.add("Redis commands per poll (proxy)", float64((w.rc1.Commands-w.rc0.Commands)-(w.rc1.SinkCommands-w.rc0.SinkCommands))/polls, "")
			res.add("Redis round trips per second of the idle dispatcher (proxy)", sinkTrips/secs, "/s")
		}
		// The INFO that read info0 is counted in info1.
		res.add("Redis commands per poll (INFO total_commands_processed)", (w.info1-w.info0-1)/polls, "").Target = "info only: counts each command a Lua script runs, and every client of the shared server"
	}
	res.add("webhooks received (none are due)", float64(len(hooks)), "").atMost(0, false)
	res.note("the floor polls each source on pollbridge's own tick grid (offsets read from /api/sources) " +
		"over a keep-alive transport (a connection per source), reads each body, walks every item with gjson and hashes each item; it stores nothing. " +
		"It runs beside pollbridge and is measured over the same window.")
	if r.redis != nil && r.redis.proxy != nil {
		res.note("Redis: pollbridge talks to Redis through a counting proxy in the harness; a round trip is a client write following an answer, " +
			"a MULTI/EXEC pipeline counts each command, EVALSHA one; round trips and commands that touch a sink's keys (PREFIX+\"sink:\", the dispatcher's outbox checks) are counted apart, not per poll.")
	}
	res.note("window %s: pollbridge %.2f CPU s for %d polls; floor %.2f CPU s for %d polls", w.wall.Round(time.Millisecond), w.pbCPU, w.polls, fl.CPU, fl.Polls)
	return nil
}

// runFleet polls 1,000 × 100 items every second while 1% of the items
// change every second, then checks every webhook against the mutations.
func (e *env) runFleet(ctx context.Context, res *result, backend string, sc scale) error {
	const interval = time.Second
	res.Setup = fmt.Sprintf("%d sources × %d items @every 1s, %s mutations/s (80%% updates, 10%% creates, 10%% deletes), sink concurrency %d; window %s",
		sc.Sources, sc.Items, fmtNum(sc.Rate), sc.Concurrency, sc.Window)
	e.say("fleet/%s: starting %d sources", backend, sc.Sources)
	r, err := e.newRig(ctx, scFleet, backend, rigOptions{
		api:         apiOptions{Sources: sc.Sources, Items: sc.Items, Seed: 2},
		schedule:    "@every 1s",
		concurrency: sc.Concurrency,
	})
	if err != nil {
		return err
	}
	defer r.close(ctx)
	offsets, err := r.waitBaseline(ctx, sc.Sources, interval)
	if err != nil {
		return err
	}
	if _, err := r.api.setMutator(ctx, sc.Rate); err != nil {
		return err
	}
	e.say("fleet/%s: baseline done, mutating; measuring %s", backend, sc.Window)
	w, err := r.measure(ctx, interval, sc.Window, offsets)
	if err != nil {
		return err
	}
	if _, err := r.api.setMutator(ctx, 0); err != nil {
		return err
	}
	e.say("fleet/%s: mutations stopped; waiting for pollbridge to catch up", backend)
	cr, err := r.settle(ctx, sc.Sources, sc.Items, false, 30*time.Second)
	if err != nil {
		return err
	}
	backlog := -1
	if cr.Missed > 0 {
		if ob, err := r.pb.outbox(ctx); err == nil {
			backlog = ob.Outbox.Pending + ob.Outbox.Retrying
		}
	}
	if err := r.stopPollbridge(); err != nil {
		return err
	}

	res.pbCPU, res.peakRSS, res.check = w.pbCPU, r.peakRSS, &cr
	w.pollRows(res, sc.Sources, interval)
	secs := w.wall.Seconds()
	res.add("mutations/s (API)", float64(w.mutations)/secs, "/s")
	changes := w.m1.sum("pollbridge_changes_total") - w.m0.sum("pollbridge_changes_total")
	res.add("changes/s (pollbridge_changes_total)", changes/secs, "/s")
	res.add("CPU cores used", w.pbCPU/secs, "").want("< 1", w.pbCPU/secs < 1)
	res.add("CPU per 1,000 polls", per1k(w.pbCPU, w.polls), "s")
	w.machineRows(res)
	skipped := countLines(filepath.Join(r.dir, "pollbridge.log"), "tick skipped: previous poll still running")
	res.add("ticks skipped in the whole run, previous poll still running (pollbridge log)", float64(skipped), "").atMost(0, false)
	e.checkRows(res, r, cr, interval)
	if backlog >= 0 {
		res.add("still in pollbridge's outbox when the wait ended (late, not lost)", float64(backlog), "")
		res.note("missed = owed webhooks not received 30 s after pollbridge had fetched every source's final data")
	}
	res.add("peak RSS", mb(r.peakRSS), "MB")
	res.note("window %s: pollbridge %.2f CPU s, %d polls, %d mutations; load API %.2f CPU s",
		w.wall.Round(time.Millisecond), w.pbCPU, w.polls, w.mutations, w.apiCPU)
	return nil
}

// settle waits until pollbridge fetched every source at its latest data
// (up to timeout), then until every change owed has arrived (up to
// timeout again), and checks the webhooks.
func (r *rig) settle(ctx context.Context, sources, items int, emitInitial bool, timeout time.Duration) (checkResult, error) {
	err := waitFor(ctx, timeout, 100*time.Millisecond, "pollbridge to fetch every source's latest data", func() (bool, error) {
		p, err := r.api.progress(ctx)
		return p.CaughtUp >= sources, err
	})
	if err != nil {
		return checkResult{}, err
	}
	log, err := r.api.log(ctx)
	if err != nil {
		return checkResult{}, err
	}
	owed, base := owe(checkInput{Sources: sources, Items: items, EmitInitial: emitInitial, Log: log})
	var cr checkResult
	err = waitFor(ctx, timeout, 100*time.Millisecond, "every webhook owed", func() (bool, error) {
		if r.recv.distinct() < len(owed) {
			return false, nil
		}
		cr = base.compare(owed, r.recv.received())
		return cr.Missed == 0, nil
	})
	cr = base.compare(owed, r.recv.received())
	if err != nil {
		r.e.log.Warn("not every webhook arrived", "missed", cr.Missed, "err", err)
	}
	return cr, nil
}

// checkRows adds the correctness rows of a check.
func (e *env) checkRows(res *result, r *rig, cr checkResult, interval time.Duration) {
	if interval > 0 && len(cr.Latencies) > 0 {
		lat := cr.Latencies
		res.add("mutation→webhook latency p50", ms(percentile(lat, 0.5)), "ms")
		p99 := percentile(lat, 0.99)
		res.add("mutation→webhook latency p99", ms(p99), "ms").
			want("≤ "+(interval+100*time.Millisecond).String(), p99 <= interval+100*time.Millisecond)
		res.add("mutation→webhook latency max", ms(percentile(lat, 1)), "ms")
		res.add("fetch→webhook latency p50 (pollbridge's own part)", ms(percentile(cr.Pipeline, 0.5)), "ms")
		res.add("fetch→webhook latency p99 (pollbridge's own part)", ms(percentile(cr.Pipeline, 0.99)), "ms")
	}
	res.add("changes owed (from the API's answers)", float64(cr.Expected), "")
	res.add("webhooks received (distinct ids)", float64(cr.Distinct), "")
	res.add("missed", float64(cr.Missed), "").atMost(0, false)
	small := max(1, float64(cr.Expected)/1000)
	res.add("duplicates (same webhook-id again)", float64(cr.Duplicates), "").want("small (≤ 0.1%)", float64(cr.Duplicates) <= small)
	res.add("duplicate changes (same change, another id)", float64(cr.DupChanges), "").atMost(0, false)
	res.add("spurious", float64(cr.Spurious), "").atMost(0, false)
	res.add("signature failures", float64(r.recv.sigFailures.Load()), "").atMost(0, false)
	if cr.Mutations > 0 {
		res.add("mutations collapsed (created and deleted between two polls)", float64(cr.Collapsed), "")
		res.add("mutations never fetched", float64(cr.Unobserved), "").atMost(0, false)
	}
	if cr.BadBodies > 0 {
		res.add("webhooks without type/source/key/version", float64(cr.BadBodies), "").atMost(0, false)
	}
	if len(cr.Samples) > 0 {
		res.note("examples: %s", strings.Join(cr.Samples, "; "))
	}
}

// runDrain queues sources × items item.created events behind a paused
// sink, then resumes it and times the delivery of all of them, against
// the post floor at the same concurrency.
func (e *env) runDrain(ctx context.Context, res *result, backend string, sc scale) error {
	total := sc.Sources * sc.Items
	res.Setup = fmt.Sprintf("%d sources × %d items, emit_initial, sink paused until %s events are queued, concurrency %d; floor: post",
		sc.Sources, sc.Items, fmtNum(float64(total)), sc.Concurrency)
	e.say("drain/%s: starting", backend)
	r, err := e.newRig(ctx, scDrain, backend, rigOptions{
		api:         apiOptions{Sources: sc.Sources, Items: sc.Items, Seed: 3},
		schedule:    triggeredSchedule,
		emitInitial: true,
		concurrency: sc.Concurrency,
	})
	if err != nil {
		return err
	}
	defer r.close(ctx)
	if err := r.pb.pauseSink(ctx); err != nil {
		return err
	}
	t := time.Now()
	events, err := r.pb.pollAll(ctx, sc.Sources, 4)
	if err != nil {
		return err
	}
	queued := time.Since(t)
	e.say("drain/%s: %d events committed in %s; waiting for the outbox gauge", backend, events, queued.Round(time.Millisecond))
	var pending float64
	err = waitFor(ctx, time.Minute, 250*time.Millisecond, "pollbridge_outbox_deliveries pending to reach "+itoa(total), func() (bool, error) {
		m, err := r.pb.metrics(ctx)
		pending = m.sum("pollbridge_outbox_deliveries", "sink", sinkName, "state", "pending")
		return pending >= float64(total), err
	})
	if err != nil {
		return err
	}
	m, err := e.proc.startCPU(r.pb.pid())
	if err != nil {
		return err
	}
	start := time.Now()
	if err := r.pb.resumeSink(ctx); err != nil {
		return err
	}
	profiled := r.profile(ctx, 11*time.Second) // the drain's first 10 s, with -profile
	// A slow drain is cut short so that the whole run keeps to its time:
	// the rate is then what arrived by the cap.
	capped := false
	err = waitFor(ctx, sc.DrainCap, 5*time.Millisecond, "every queued event to arrive", func() (bool, error) {
		return r.recv.distinct() >= total, nil
	})
	delivered := r.recv.distinct()
	elapsed := time.Since(start)
	cpu, _, cerr := m.stop()
	if cerr != nil {
		return cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		capped = true
	}
	e.say("drain/%s: %d delivered in %s", backend, delivered, elapsed.Round(time.Millisecond))
	var cr checkResult
	if capped {
		// Compare what arrived without waiting for the rest: only spurious
		// and duplicate webhooks mean something then.
		log, err := r.api.log(ctx)
		if err != nil {
			return err
		}
		owed, base := owe(checkInput{Sources: sc.Sources, Items: sc.Items, EmitInitial: true, Log: log})
		cr = base.compare(owed, r.recv.received())
	} else if cr, err = r.settle(ctx, sc.Sources, sc.Items, true, 30*time.Second); err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		e.log.Warn("CPU profile", "err", err)
	}
	if err := r.stopPollbridge(); err != nil {
		return err
	}
	e.say("drain/%s: measuring the post floor", backend)
	fl, err := e.runOneOffFloor(ctx, "post", []string{"-mode", floorPost, "-url", r.recv.url + "/floor",
		"-n", itoa(total), "-concurrency", itoa(sc.Concurrency), "-secret", r.cfg.Secret}, 5*time.Minute)
	if err != nil {
		return err
	}
	floorElapsed, floorFailures, err := parseDone(fl.Done)
	if err != nil {
		return err
	}

	rate := float64(delivered) / elapsed.Seconds()
	floorRate := float64(total) / floorElapsed.Seconds()
	target := 5000.0
	if backend == "redis" {
		target = 10000
	}
	res.add("events queued before resume (outbox gauge)", pending, "").want("= "+fmtNum(float64(total)), pending == float64(total))
	res.add("time to commit the queue (polls through the admin API)", queued.Seconds(), "s")
	if capped {
		res.add(fmt.Sprintf("delivered within the %s cap (drain cut short)", sc.DrainCap), float64(delivered), "").
			want("= "+fmtNum(float64(total)), false)
	}
	res.add("deliveries/s", rate, "/s").vs(floorRate).atLeast(target, false)
	res.add("CPU per 1,000 deliveries", per1k(cpu[0], int64(delivered)), "s").vs(per1k(fl.CPU, int64(total)))
	res.add("CPU cores used while draining", cpu[0]/elapsed.Seconds(), "").vs(fl.CPU / floorElapsed.Seconds())
	res.add("floor failed requests", float64(floorFailures), "").atMost(0, false)
	res.add("floor signature failures", float64(r.recv.floorFailures.Load()), "").atMost(0, false)
	if capped {
		cr.Missed = 0 // not delivered yet, not lost: see "delivered within the cap"
		res.note("the drain was cut short at %s: %d of %d events had arrived; \"missed\" is not checked", sc.DrainCap, delivered, total)
	}
	e.checkRows(res, r, cr, 0)
	res.add("peak RSS", mb(r.peakRSS), "MB")
	res.note("the post floor: %d workers each sign (HMAC-SHA256 of id.timestamp.body) and POST a pre-built %d-byte event over a keep-alive transport (MaxIdleConnsPerHost ≥ workers); the ratio is pollbridge's rate over the floor's",
		sc.Concurrency, len(floorEvent()))
	return nil
}

// parseDone reads a post floor's "done ELAPSED_NS FAILURES" line.
func parseDone(s string) (time.Duration, int64, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("post floor: bad done line %q", s)
	}
	ns, err1 := strconv.ParseInt(f[0], 10, 64)
	failures, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || ns <= 0 {
		return 0, 0, fmt.Errorf("post floor: bad done line %q", s)
	}
	return time.Duration(ns), failures, nil
}

// runBigsource polls one source of 100 pages twice through the admin API:
// the baseline, then after 1% of its items changed; the second poll's CPU
// is compared with the floor's fetch and scan of the same pages.
func (e *env) runBigsource(ctx context.Context, res *result, backend string, sc scale) error {
	const pageSize = 1000
	pages := (sc.Items + pageSize - 1) / pageSize
	res.Setup = fmt.Sprintf("1 source × %d items, %d pages of %d (Link rel=next), ETag off, polls through the admin API; 1%% mutated between the two polls; floor: oneshot poll",
		sc.Items, pages, pageSize)
	e.say("bigsource/%s: starting", backend)
	r, err := e.newRig(ctx, scBigsource, backend, rigOptions{
		api:      apiOptions{Sources: 1, Items: sc.Items, PageSize: pageSize, Seed: 4},
		schedule: triggeredSchedule,
		maxPages: pages*2 + 10,
	})
	if err != nil {
		return err
	}
	defer r.close(ctx)
	// Deliveries would mix into the CPU of the polls: hold them.
	if err := r.pb.pauseSink(ctx); err != nil {
		return err
	}
	timedPoll := func() (pollOutcome, float64, time.Duration, error) {
		m, err := e.proc.startCPU(r.pb.pid())
		if err != nil {
			return pollOutcome{}, 0, 0, err
		}
		out, err := r.pb.poll(ctx, sourceName(0))
		if err != nil {
			return out, 0, 0, err
		}
		cpu, wall, err := m.stop()
		if err != nil {
			return out, 0, 0, err
		}
		return out, cpu[0], wall, nil
	}
	base, baseCPU, baseWall, err := timedPoll()
	if err != nil {
		return err
	}
	mutations := sc.Items / 100
	if err := r.api.mutate(ctx, mutations); err != nil {
		return err
	}
	changed, cpu, wall, err := timedPoll()
	if err != nil {
		return err
	}
	if err := r.pb.resumeSink(ctx); err != nil {
		return err
	}
	cr, err := r.settle(ctx, 1, sc.Items, false, 30*time.Second)
	if err != nil {
		return err
	}
	if err := r.stopPollbridge(); err != nil {
		return err
	}
	e.say("bigsource/%s: measuring the oneshot floor", backend)
	fl, err := e.runOneOffFloor(ctx, "oneshot", []string{"-mode", floorOneshot, "-api", r.api.url, "-sources", "1"}, 5*time.Minute)
	if err != nil {
		return err
	}

	res.add("baseline poll: CPU", baseCPU, "s").vs(fl.CPU)
	res.add("baseline poll: wall time", baseWall.Seconds(), "s")
	res.add(fmt.Sprintf("poll after %d mutations: CPU", mutations), cpu, "s").vs(fl.CPU)
	res.add("poll after the mutations: wall time", wall.Seconds(), "s").vs(fl.Wall.Seconds())
	res.add("CPU beyond the fetch (poll − floor)", cpu-fl.CPU, "s").atMost(1, false)
	itemsAfter, _ := strconv.Atoi(fl.Done)
	pagesAfter := (itemsAfter + pageSize - 1) / pageSize
	res.text("pages fetched: baseline, second poll", fmt.Sprintf("%d, %d", base.Pages, changed.Pages)).
		want(fmt.Sprintf("%d, %d (the API's)", pages, pagesAfter), base.Pages == pages && changed.Pages == pagesAfter)
	res.add("events committed by the second poll", float64(changed.Events), "").want("= changes owed", changed.Events == cr.Expected)
	e.checkRows(res, r, cr, 0)
	res.add("peak RSS", mb(r.peakRSS), "MB")
	res.note("floor: one GET of each of the %d pages, the body read, every item walked with gjson (its key read) and hashed with SHA-256 (%s)", pages, fl.Done+" items")
	return nil
}

// runMillion tracks sources × items (a million by default) and reports
// pollbridge's peak memory after the baseline and, with Redis, the memory
// Redis spends per tracked item.
func (e *env) runMillion(ctx context.Context, res *result, backend string, sc scale) error {
	total := sc.Sources * sc.Items
	res.Setup = fmt.Sprintf("%d sources × %d items (%s tracked items, one page each), baseline polls through the admin API, 4 at a time",
		sc.Sources, sc.Items, fmtNum(float64(total)))
	// With item bodies (the default), then with keep_bodies: false.
	for _, opt := range []string{"", "keep_bodies"} {
		name, label, extra := scMillion, "with bodies", ""
		if opt != "" {
			// A rig of its own: a fresh state file and Redis prefix.
			name, label, extra = scMillion+"-nobodies", opt+": false", "    "+opt+": false\n"
		}
		if err := e.millionVariant(ctx, res, name, backend, sc, label, extra); err != nil {
			return err
		}
	}
	return nil
}

// millionVariant runs one configuration of the million scenario in a rig
// called name.
func (e *env) millionVariant(ctx context.Context, res *result, name, backend string, sc scale, label, extra string) error {
	total := sc.Sources * sc.Items
	e.say("million/%s (%s): starting %d sources", backend, label, sc.Sources)
	r, err := e.newRig(ctx, name, backend, rigOptions{
		api:         apiOptions{Sources: sc.Sources, Items: sc.Items, Seed: 5},
		schedule:    triggeredSchedule,
		sourceExtra: extra,
	})
	if err != nil {
		return err
	}
	defer r.close(ctx)
	var memBefore float64
	if r.redis != nil {
		if memBefore, err = r.redis.info(ctx, "memory", "used_memory"); err != nil {
			return err
		}
	}
	m, err := e.proc.startCPU(r.pb.pid())
	if err != nil {
		return err
	}
	if _, err := r.pb.pollAll(ctx, sc.Sources, 4); err != nil {
		return err
	}
	cpus, wall, err := m.stop()
	if err != nil {
		return err
	}
	cpu := cpus[0]
	e.say("million/%s (%s): baseline of %d items in %s", backend, label, total, wall.Round(time.Millisecond))
	peak, cur, err := e.proc.memory(r.pb.pid())
	if err != nil {
		return err
	}
	res.add("baseline CPU ("+label+")", cpu, "s")
	res.add("baseline wall time ("+label+")", wall.Seconds(), "s")
	res.add("baseline CPU per 1,000 items ("+label+")", per1k(cpu, int64(total)), "s")
	res.add("peak RSS after the baseline ("+label+")", mb(peak), "MB").atMost(200, false)
	res.add("RSS after the baseline ("+label+")", mb(cur), "MB")
	if r.redis != nil {
		memAfter, err := r.redis.info(ctx, "memory", "used_memory")
		if err != nil {
			return err
		}
		usage, keys, err := r.redis.memoryUsage(ctx)
		if err != nil {
			return err
		}
		res.add("Redis bytes per tracked item, used_memory delta ("+label+")", (memAfter-memBefore)/float64(total), "B")
		res.add("Redis bytes per tracked item, MEMORY USAGE of the run's keys ("+label+")", float64(usage)/float64(total), "B")
		res.note("%s: %d Redis keys under the run's prefix; used_memory is the whole shared server's (other clients' data included)", label, keys)
	} else {
		if fi, err := os.Stat(r.cfg.StatePath); err == nil {
			res.add("state file bytes per tracked item ("+label+")", float64(fi.Size())/float64(total), "B")
		}
	}
	return nil
}

// countLines counts the lines of file that contain s (0 if unreadable).
func countLines(file, s string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// onOff writes a bool as on or off.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
