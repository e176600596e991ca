package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
)

// storeOpTimeout bounds one store call made on behalf of a finished
// delivery; it is independent of shutdown so that acks still land.
const storeOpTimeout = 10 * time.Second

// dispatcher delivers the outbox of one sink. Each sink has its own, so a
// slow or dead receiver never delays another.
type dispatcher struct {
	cfg   config.Sink
	sink  Sink
	store store.Store
	log   *slog.Logger
	idle  time.Duration // how long to wait before re-checking an empty outbox
	wake  chan struct{} // a commit added deliveries for this sink
	gate  *gate         // circuit breaker, pause and 410 disabling
	limit *rate.Limiter // nil: no rate limit

	metrics *Metrics // nil: none

	mu      sync.Mutex
	lastErr string // last store error logged, to log repeats quietly
}

// notify wakes the dispatcher without blocking.
func (d *dispatcher) notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// lease is how long a claimed delivery stays hidden from other claims: long
// enough for an attempt to finish and be recorded.
func (d *dispatcher) lease() time.Duration { return 2*d.cfg.Timeout + 5*time.Second }

// run claims and delivers until ctx ends, then waits for the deliveries in
// flight. Those run on workers, under sendCtx, which ends only when the
// shutdown grace period is over.
func (d *dispatcher) run(ctx, sendCtx context.Context, workers *workers) {
	slots := make(chan struct{}, max(d.cfg.Concurrency, 1))
	rec := newRecorder(d.store, d.log, cap(slots))
	var inflight sync.WaitGroup
	var next *claimAhead // the next batch, claimed while this one is sent
	defer rec.close()    // after the deliveries in flight: their outcomes land
	defer inflight.Wait()
	defer func() { // run ended before sending a batch claimed ahead
		if next != nil {
			batch, _, _ := next.wait()
			d.handBack(rec, batch)
		}
	}()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		// Only this loop takes slots, so the free ones stay free. The
		// first free slots are sent to at once; the deliveries beyond
		// them are claimed ahead and wait for slots (takeSlot).
		var (
			batch       []store.Delivery
			err         error
			want, free  int
			probe, full bool
		)
		if next != nil {
			// Claimed while the previous batch was sent: every slot
			// was taken then, so all of it is claimed ahead.
			batch, want, err = next.wait()
			next = nil
			if err == nil && len(batch) > 0 && !d.gate.active() {
				// Paused, or the circuit opened meanwhile.
				<-slots
				d.handBack(rec, batch)
				continue
			}
		} else {
			// While the sink is healthy, claim up to two more batches
			// ahead: they are sent as slots free up, so one claim (a
			// store write) serves many deliveries instead of the one or
			// two slots freed meanwhile. A rate-limited sink claims no
			// further than its free slots, and only as many as the
			// limiter lets go now (below).
			free = 1 + cap(slots) - len(slots)
			want = free + 2*cap(slots)
			if d.limit != nil {
				want = free
			}
			var wait time.Duration
			want, probe, wait = d.gate.admit(time.Now(), want)
			if want == 0 {
				<-slots
				if !d.waitForWork(ctx, wait) {
					return
				}
				continue
			}
			if d.limit != nil {
				// The rate limit is paid before claiming, never while a
				// claim is held: a long wait must not outlast the lease.
				if d.limit.Wait(ctx) != nil {
					if probe {
						d.gate.release()
					}
					return
				}
				if !probe && !d.gate.active() { // paused meanwhile
					<-slots
					continue
				}
				extra := min(want-1, int(d.limit.Tokens()))
				if extra > 0 && !d.limit.AllowN(time.Now(), extra) {
					extra = 0
				}
				want = 1 + extra
			}
			batch, err = d.store.Claim(ctx, d.cfg.Name, time.Now(), want, d.lease())
		}
		d.reportStoreErr(err)
		if err != nil || len(batch) == 0 {
			<-slots
			if probe {
				d.gate.release()
			}
			if !d.waitForWork(ctx, 0) {
				return
			}
			continue
		}
		// A full batch suggests more is due: the next claim then runs
		// while the last slots' worth of this one is sent, instead of
		// after it, when the slots freed meanwhile would sit idle.
		full = len(batch) == want && d.limit == nil && !probe
		for i, dl := range batch {
			if full && next == nil && len(batch)-i == cap(slots) && d.gate.active() {
				next = d.claimNext(ctx, slots)
			}
			if i > 0 && !d.takeSlot(ctx, slots, i >= free) {
				// Shutdown, a pause or an open circuit: hand the rest
				// back unchanged, claimable again at once.
				d.handBack(rec, batch[i:])
				break
			}
			inflight.Add(1)
			workers.Go(func() {
				defer inflight.Done()
				defer func() { <-slots }()
				d.deliver(sendCtx, rec, dl)
			})
		}
	}
}

// claimAhead is a Claim running in the background for the batch after the
// one being sent.
type claimAhead struct {
	done  chan struct{}
	want  int
	batch []store.Delivery
	err   error
}

// claimNext starts claiming the next batch while the last slots' worth of
// the current one (cap(slots) deliveries) waits to be sent. It claims as
// many as that and the free slots: the last of them starts after at most
// 2×cap(slots) attempts finish, as in a batch claimed at once (see run),
// so none waits much longer for its slot than its lease allows.
func (d *dispatcher) claimNext(ctx context.Context, slots chan struct{}) *claimAhead {
	a := &claimAhead{done: make(chan struct{}), want: 2*cap(slots) - len(slots)}
	go func() {
		defer close(a.done)
		a.batch, a.err = d.store.Claim(ctx, d.cfg.Name, time.Now(), a.want, d.lease())
	}()
	return a
}

// wait waits for the claim and returns its batch, how many it asked for
// and its error.
func (a *claimAhead) wait() ([]store.Delivery, int, error) {
	<-a.done
	return a.batch, a.want, a.err
}

// handBack returns claimed deliveries to the outbox unchanged, claimable
// again at once.
func (d *dispatcher) handBack(rec *recorder, batch []store.Delivery) {
	for _, dl := range batch {
		rec.record(store.Outcome{Op: store.OpRetry, Delivery: dl, Due: time.Now()})
	}
}

// takeSlot waits for a free delivery slot for a delivery claimed ahead
// (ahead: claimed beyond the slots free at the claim). It gives up when
// ctx ends or, for one claimed ahead, when the sink stops being active.
func (d *dispatcher) takeSlot(ctx context.Context, slots chan struct{}, ahead bool) bool {
	if !ahead {
		slots <- struct{}{}
		return true
	}
	for {
		if !d.gate.active() {
			return false
		}
		select {
		case slots <- struct{}{}:
			if !d.gate.active() { // the attempt that freed the slot opened the circuit
				<-slots
				return false
			}
			return true
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond): // look at the gate again
		}
	}
}

// waitForWork waits for a wake-up or wait (0: the idle interval); false
// when ctx ends.
func (d *dispatcher) waitForWork(ctx context.Context, wait time.Duration) bool {
	if wait <= 0 || wait > d.idle {
		wait = d.idle
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.wake:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// deliver makes one attempt and records its outcome: ack on success, a
// scheduled retry on a retryable failure, a dead letter otherwise.
func (d *dispatcher) deliver(ctx context.Context, rec *recorder, dl store.Delivery) {
	// The delivery's logger is made only when something is logged: most
	// deliveries succeed and log nothing.
	attempt := dl // as it was before this attempt
	log := func() *slog.Logger {
		return d.log.With("event_id", attempt.EventID, "source", attempt.Source, "key", attempt.Key, "attempt", attempt.Attempts+1)
	}
	ev, err := decodeEvent(dl.Payload)
	if err != nil {
		dl.Attempts++
		dl.LastError = fmt.Sprintf("decode stored event: %v", err)
		rec.record(store.Outcome{Op: store.OpBury, Delivery: dl})
		d.metrics.failed(d.cfg.Name, DeliveryDead)
		log().Error("dead-lettered an unreadable event", "err", err)
		return
	}
	// A rate limit was paid when the delivery was claimed (see run).
	d.metrics.attempt(d.cfg.Name)
	sendErr := d.sink.Send(ctx, &ev)
	if sendErr != nil && ctx.Err() != nil {
		// Shutdown cut the attempt short: it does not count. The claim
		// expires and the delivery is retried (after restart, at once).
		d.gate.release()
		log().Info("delivery interrupted by shutdown; it stays in the outbox")
		return
	}
	if sendErr == nil {
		d.breakerResult(true, false)
		rec.record(store.Outcome{Op: store.OpAck, Delivery: dl})
		d.metrics.delivered(d.cfg.Name, ev.Time)
		if d.log.Enabled(ctx, slog.LevelDebug) {
			log().Debug("delivered")
		}
		return
	}
	var de *DeliveryError
	if errors.As(sendErr, &de) && de.Status == http.StatusGone {
		// The receiver says this endpoint is gone for good: stop sending
		// anything to it, keep the event, and say so loudly.
		d.gate.disable("receiver answered 410 Gone")
		d.gate.release()
		rec.record(store.Outcome{Op: store.OpRetry, Delivery: dl, Due: time.Now()})
		d.metrics.failed(d.cfg.Name, DeliveryGone)
		log().Error("receiver answered 410 Gone: sink disabled, events kept in the outbox until it is resumed", "err", sendErr)
		return
	}
	// A permanent refusal still proves the receiver is up.
	d.breakerResult(IsPermanent(sendErr), !IsPermanent(sendErr))

	dl.Attempts++
	dl.LastError = sendErr.Error()
	now := time.Now()
	switch {
	case IsPermanent(sendErr):
		rec.record(store.Outcome{Op: store.OpBury, Delivery: dl})
		d.metrics.failed(d.cfg.Name, DeliveryDead)
		log().Warn("delivery failed permanently; moved to dead letters", "err", sendErr)
	case d.exhausted(dl, now):
		rec.record(store.Outcome{Op: store.OpBury, Delivery: dl})
		d.metrics.failed(d.cfg.Name, DeliveryDead)
		log().Warn("delivery retries exhausted; moved to dead letters", "err", sendErr, "attempts", dl.Attempts)
	default:
		wait := d.backoff(dl.Attempts, sendErr)
		rec.record(store.Outcome{Op: store.OpRetry, Delivery: dl, Due: now.Add(wait)})
		d.metrics.failed(d.cfg.Name, DeliveryRetry)
		log().Info("delivery failed; will retry", "err", sendErr, "retry_in", wait.Round(time.Millisecond))
	}
}

// breakerResult feeds an attempt's outcome to the circuit breaker and logs
// its transitions.
func (d *dispatcher) breakerResult(ok, retryable bool) {
	opened, closed := d.gate.result(ok, retryable, time.Now())
	switch {
	case opened:
		d.log.Warn("circuit open: receiver keeps failing; pausing deliveries", "cooldown", d.cfg.CircuitBreaker.Cooldown)
	case closed:
		d.log.Info("circuit closed: receiver recovered; deliveries resume")
	}
}

// exhausted reports whether a failed delivery has used up its retries.
func (d *dispatcher) exhausted(dl store.Delivery, now time.Time) bool {
	r := d.cfg.Retry
	if r.MaxAttempts > 0 && dl.Attempts >= r.MaxAttempts {
		return true
	}
	return r.MaxAge > 0 && now.Sub(dl.Created) >= r.MaxAge
}

// backoff is the wait before attempt n+1 after n failures: exponential from
// InitialBackoff, capped at MaxBackoff, with ±20% jitter, and never shorter
// than a Retry-After the receiver sent.
func (d *dispatcher) backoff(failures int, err error) time.Duration {
	return retryDelay(d.cfg.Retry, failures, err, rand.Float64())
}

// retryDelay computes the backoff; r01 is a random number in [0, 1).
func retryDelay(r config.Retry, failures int, err error, r01 float64) time.Duration {
	wait := r.InitialBackoff
	for i := 1; i < failures && wait < r.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, r.MaxBackoff)
	wait = time.Duration(float64(wait) * (0.8 + 0.4*r01))
	var de *DeliveryError
	if errors.As(err, &de) && de.RetryAfter > wait {
		wait = de.RetryAfter
	}
	return wait
}

// maxSettle bounds how many outcomes one Store.Settle call records.
const maxSettle = 512

// recorder records the outcomes of a dispatcher's attempts in the store.
// Outcomes that finish while a Settle call is running are recorded
// together by the next one: under load one store write (an fsync, a round
// trip) covers many deliveries, and an outcome alone is written at once,
// with no delay to wait for company.
type recorder struct {
	store store.Store
	log   *slog.Logger
	queue chan store.Outcome
	done  chan struct{}
}

// newRecorder starts a recorder; queued outcomes beyond size make record
// wait, which holds back the dispatcher when the store is slow.
func newRecorder(st store.Store, log *slog.Logger, size int) *recorder {
	r := &recorder{store: st, log: log, queue: make(chan store.Outcome, max(size, 1)), done: make(chan struct{})}
	go r.loop()
	return r
}

// record queues the outcome of a finished attempt. Until it is recorded
// the delivery keeps its claim; if recording fails the claim expires and
// the event is attempted again: at least once, never lost.
func (r *recorder) record(o store.Outcome) {
	r.queue <- o
}

// close records what is queued and stops the recorder. No record call may
// follow or run concurrently.
func (r *recorder) close() {
	close(r.queue)
	<-r.done
}

func (r *recorder) loop() {
	defer close(r.done)
	batch := make([]store.Outcome, 0, maxSettle)
	for first := range r.queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxSettle {
			select {
			case p, ok := <-r.queue:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		r.settle(batch)
	}
}

// settle records a batch and logs the outcomes that could not be.
func (r *recorder) settle(batch []store.Outcome) {
	// Independent of shutdown, so that the outcomes still land.
	ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
	defer cancel()
	for i, err := range r.store.Settle(ctx, batch) {
		if err == nil {
			continue
		}
		dl, what := batch[i].Delivery, opName(batch[i].Op)
		log := r.log.With("event_id", dl.EventID, "source", dl.Source, "key", dl.Key, "failed_attempts", dl.Attempts)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// The lease ran out mid-attempt and another worker took over.
			log.Info("delivery outcome already recorded by another worker", "op", what)
		default:
			log.Error("could not record delivery outcome; it will be attempted again", "op", what, "err", err)
		}
	}
}

// opName names an outcome's op in logs.
func opName(op store.Op) string {
	switch op {
	case store.OpAck:
		return "ack"
	case store.OpRetry:
		return "retry"
	case store.OpBury:
		return "bury"
	}
	return fmt.Sprintf("op %d", op)
}

// reportStoreErr logs claim errors, repeats quietly.
func (d *dispatcher) reportStoreErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err == nil:
		if d.lastErr != "" {
			d.log.Info("outbox reachable again")
			d.lastErr = ""
		}
	case errors.Is(err, context.Canceled):
	case err.Error() == d.lastErr:
		d.log.Debug("claim failed again", "err", err)
	default:
		d.lastErr = err.Error()
		d.log.Error("claim deliveries; dispatch paused", "err", err)
	}
}
