package bridge

import (
	"sync"
	"time"
)

// Sink states, as SinkStatus reports them.
const (
	SinkActive   = "active"   // delivering
	SinkOpen     = "open"     // circuit open: waiting for the cooldown
	SinkProbing  = "probing"  // circuit half-open: one probe delivery at a time
	SinkPaused   = "paused"   // paused by an operator
	SinkDisabled = "disabled" // the receiver answered 410 Gone
)

// gate decides whether a sink's dispatcher may claim deliveries: a circuit
// breaker (consecutive retryable failures open it for a cooldown, then one
// probe at a time until a success closes it), an operator's pause, and the
// disabling that a 410 Gone causes. It is safe for concurrent use.
type gate struct {
	failuresToOpen int
	cooldown       time.Duration

	mu        sync.Mutex
	failures  int       // consecutive retryable failures
	openUntil time.Time // while the circuit is open
	probing   bool      // a probe is in flight
	half      bool      // cooldown over: probing until a success
	paused    bool
	disabled  string // why the sink is disabled, "" if it is not
}

// admit returns how many deliveries may be claimed now (at most want),
// whether that one is a probe (the caller must call release if it claims
// nothing), and if none may, how long to wait before asking again (0: until
// woken or the idle interval).
func (g *gate) admit(now time.Time, want int) (n int, probe bool, wait time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.paused || g.disabled != "":
		return 0, false, 0
	case now.Before(g.openUntil):
		return 0, false, g.openUntil.Sub(now)
	case !g.openUntil.IsZero() || g.half:
		g.openUntil, g.half = time.Time{}, true
		if g.probing {
			return 0, false, 0
		}
		g.probing = true
		return 1, true, 0
	}
	return want, false, 0
}

// active reports whether deliveries flow freely: not paused, not disabled,
// circuit closed.
func (g *gate) active() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.paused && g.disabled == "" && g.openUntil.IsZero() && !g.half
}

// result records the outcome of one attempt. retryable is true for failures
// that count towards opening the circuit; ok for a success. It reports
// whether the circuit just opened or closed, for logging.
func (g *gate) result(ok, retryable bool, now time.Time) (opened, closed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	wasProbe := g.probing
	g.probing = false
	switch {
	case ok:
		closed = g.half
		g.failures, g.half = 0, false
	case retryable:
		g.failures++
		if g.failuresToOpen > 0 && (g.failures >= g.failuresToOpen || wasProbe) && g.openUntil.IsZero() {
			g.openUntil, g.half = now.Add(g.cooldown), false
			opened = true
		}
	}
	return opened, closed
}

// release gives back a probe slot that was not used, or whose attempt did
// not count (shutdown).
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing = false
}

// setPaused pauses or resumes; resuming also re-enables a disabled sink and
// closes the circuit.
func (g *gate) setPaused(p bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused = p
	if !p {
		g.disabled, g.failures, g.openUntil, g.half = "", 0, time.Time{}, false
	}
}

// disable stops the sink until an operator resumes it.
func (g *gate) disable(why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.disabled = why
}

// state describes the gate for SinkStatus.
func (g *gate) state(now time.Time) (state, reason string, failures int, openUntil time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.disabled != "":
		return SinkDisabled, g.disabled, g.failures, time.Time{}
	case g.paused:
		return SinkPaused, "paused by an operator", g.failures, time.Time{}
	case now.Before(g.openUntil):
		return SinkOpen, "circuit open after consecutive failures", g.failures, g.openUntil
	case g.half || !g.openUntil.IsZero():
		return SinkProbing, "circuit half-open: probing", g.failures, time.Time{}
	}
	return SinkActive, "", g.failures, time.Time{}
}
