package bridge

import (
	"fmt"
	"time"
)

// SinkStatus is what this replica's dispatcher knows about one sink.
type SinkStatus struct {
	// State is SinkActive, SinkOpen, SinkProbing, SinkPaused or SinkDisabled.
	State string `json:"state"`
	// Reason explains a state other than active.
	Reason string `json:"reason,omitempty"`
	// ConsecutiveFailures counts retryable failures since the last success.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// OpenUntil is when an open circuit will probe again.
	OpenUntil time.Time `json:"open_until,omitzero"`
}

// SinkStatus reports the delivery state of a sink on this replica.
func (e *Engine) SinkStatus(name string) (SinkStatus, bool) {
	d, ok := e.dispatcher(name)
	if !ok {
		return SinkStatus{}, false
	}
	state, reason, failures, until := d.gate.state(time.Now())
	return SinkStatus{State: state, Reason: reason, ConsecutiveFailures: failures, OpenUntil: until}, true
}

// PauseSink stops deliveries to a sink on this replica; events wait in the
// outbox.
func (e *Engine) PauseSink(name string) error {
	d, ok := e.dispatcher(name)
	if !ok {
		return fmt.Errorf("unknown sink %q", name)
	}
	d.gate.setPaused(true)
	d.log.Info("sink paused")
	return nil
}

// ResumeSink resumes a paused or disabled sink on this replica and closes
// its circuit.
func (e *Engine) ResumeSink(name string) error {
	d, ok := e.dispatcher(name)
	if !ok {
		return fmt.Errorf("unknown sink %q", name)
	}
	d.gate.setPaused(false)
	d.notify()
	d.log.Info("sink resumed")
	return nil
}
