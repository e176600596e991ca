package bridge

import (
	"time"
)

// SourceStatus is what this replica knows about the polls of one source
// since it started.
type SourceStatus struct {
	// Name names the source.
	Name string `json:"name"`
	// LastPoll is when the last finished poll started (zero: none yet).
	LastPoll time.Time `json:"last_poll,omitzero"`
	// LastDuration is how long the last finished poll took.
	LastDuration time.Duration `json:"last_duration"`
	// LastSuccess is when the last successful poll started.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the error of the last poll, "" if it succeeded.
	LastError string `json:"last_error,omitempty"`
	// ConsecutiveFailures counts the failed polls since the last success.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// BackoffUntil is when the source's backoff ends: scheduled ticks
	// before it are skipped. Zero when the last poll succeeded.
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	// Items counts the distinct items of the last full answer (a "304 Not
	// Modified" keeps the count).
	Items int `json:"items"`
	// LastEvents counts the events the last successful poll committed for
	// delivery.
	LastEvents int `json:"last_events"`
	// LastResult is PollOK, PollNotModified or PollError for the last
	// finished poll ("" before the first).
	LastResult string `json:"last_result,omitempty"`
	// LastChange is when the last poll that detected changes (sent or
	// not; a baseline does not count) started.
	LastChange time.Time `json:"last_change,omitzero"`
}

// SourceStatus reports the polling state of a source on this replica, and
// whether there is a source called name. It is safe for concurrent use.
func (e *Engine) SourceStatus(name string) (SourceStatus, bool) {
	p, ok := e.poller(name)
	if !ok {
		return SourceStatus{}, false
	}
	return p.currentStatus(), true
}

// SourceStatuses reports every source's status, in configuration order.
func (e *Engine) SourceStatuses() []SourceStatus {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]SourceStatus, 0, len(e.cfg.Sources))
	for _, sc := range e.cfg.Sources {
		if p, ok := e.pollers[sc.Name]; ok {
			out = append(out, p.currentStatus())
		}
	}
	return out
}

// currentStatus returns a copy of the poller's status.
func (p *poller) currentStatus() SourceStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	st.Name = p.cfg.Name
	return st
}
