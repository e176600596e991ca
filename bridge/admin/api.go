package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/store"
)

// Info is the answer of GET /api/info.
type Info struct {
	// Version is the pollbridge version.
	Version string `json:"version"`
	// GoVersion is the Go version that built it.
	GoVersion string `json:"go_version"`
	// Started is when the admin listener started.
	Started time.Time `json:"started"`
	// Draining reports that shutdown has begun.
	Draining bool `json:"draining"`
}

// Sources is the answer of GET /api/sources.
type Sources struct {
	Sources []bridge.SourceInfo `json:"sources"`
}

// PollOutcome is the answer of POST /api/sources/{name}/poll.
type PollOutcome struct {
	// Result is ok, not_modified or error.
	Result string `json:"result"`
	// Error is the poll's error, if it failed.
	Error string `json:"error,omitempty"`
	// Items counts the items fetched; Pages the responses.
	Items int `json:"items"`
	Pages int `json:"pages"`
	// Events counts the events committed for delivery; Suppressed the
	// changes that the events list and filters did not send.
	Events     int `json:"events"`
	Suppressed int `json:"suppressed"`
	// Baseline reports that the poll recorded the first state.
	Baseline bool `json:"baseline,omitempty"`
	// HeldDeletes and PendingDeletes count deletions held back by
	// max_delete_ratio and delete_after.
	HeldDeletes    int `json:"held_deletes,omitempty"`
	PendingDeletes int `json:"pending_deletes,omitempty"`
}

// Outbox counts the deliveries of one sink in the store.
type Outbox struct {
	// Pending counts deliveries not failed yet (in flight included).
	Pending int `json:"pending"`
	// Retrying counts deliveries waiting for another attempt.
	Retrying int `json:"retrying"`
	// Dead counts dead letters.
	Dead int `json:"dead"`
}

// SinkInfo is one sink in GET /api/sinks: its state on this replica and
// its outbox in the store (shared by every replica).
type SinkInfo struct {
	// Name names the sink.
	Name string `json:"name"`
	bridge.SinkStatus
	// Outbox counts its deliveries; absent when the store did not answer.
	Outbox *Outbox `json:"outbox,omitempty"`
}

// Sinks is the answer of GET /api/sinks.
type Sinks struct {
	Sinks []SinkInfo `json:"sinks"`
	// OutboxError says why the outbox counts are missing.
	OutboxError string `json:"outbox_error,omitempty"`
}

// Dead is the answer of GET /api/dead.
type Dead struct {
	// Dead lists dead letters, oldest first, at most limit of them.
	Dead []store.Delivery `json:"dead"`
	// Total counts them all.
	Total int `json:"total"`
}

// Delivery states, as GET /api/deliveries takes and gives them.
const (
	StatePending  = "pending"  // in the outbox, not failed yet (in flight and waiting behind an older one of its item included)
	StateRetrying = "retrying" // in the outbox after a failed attempt
	StateDead     = "dead"     // a dead letter
)

// DefaultDeliveriesLimit is how many deliveries GET /api/deliveries lists
// without ?limit; store.DefaultLiveLimit is the most it lists.
const DefaultDeliveriesLimit = 100

// DeliveryInfo is one delivery in GET /api/deliveries: what an operator
// needs to see where it stands, without its payload.
type DeliveryInfo struct {
	// ID is the delivery's ID (per event and sink); EventID the
	// webhook-id.
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	// Sink, Source and Key name where it goes and what item it is about.
	Sink   string `json:"sink"`
	Source string `json:"source"`
	Key    string `json:"key"`
	// Type is the event type (item.created, item.updated, item.deleted).
	Type string `json:"type"`
	// State is StatePending, StateRetrying or StateDead.
	State string `json:"state"`
	// Attempts counts the failed attempts; LastError describes the last
	// one (redacted when it was recorded).
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
	// Created is when the delivery entered the outbox.
	Created time.Time `json:"created"`
	// Due is when a live delivery may next be attempted (a claimed one:
	// when it was due); Dead is when a dead letter was buried.
	Due  time.Time `json:"due,omitzero"`
	Dead time.Time `json:"dead,omitzero"`
}

// Deliveries is the answer of GET /api/deliveries.
type Deliveries struct {
	// Deliveries lists them: live ones by due time, dead ones oldest first.
	Deliveries []DeliveryInfo `json:"deliveries"`
	// Total counts the deliveries of the sink (every sink without
	// ?sink) in the state asked for, listed or not.
	Total int `json:"total"`
}

// Replayed is the answer of the replay endpoints.
type Replayed struct {
	// Replayed counts the dead letters moved back to the outbox.
	Replayed int `json:"replayed"`
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Info{
		Version:   s.opts.Version,
		GoVersion: runtime.Version(),
		Started:   s.started.UTC(),
		Draining:  s.draining.Load(),
	})
}

func (s *Server) sources(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Sources{Sources: s.opts.Engine.SourceInfos(time.Now())})
}

func (s *Server) source(w http.ResponseWriter, r *http.Request) {
	info, ok := s.opts.Engine.SourceInfo(r.PathValue("name"), time.Now())
	if !ok {
		writeError(w, http.StatusNotFound, "no source "+strconv.Quote(r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// pollNow polls a source at once, as a scheduled tick would (backoff does
// not hold it back), and commits.
func (s *Server) pollNow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.opts.Engine.SourceStatus(name); !ok {
		writeError(w, http.StatusNotFound, "no source "+strconv.Quote(name))
		return
	}
	// The poll runs to its end even if the client goes away: a cancelled
	// poll would count as a failure. Close cancels it.
	res, err := s.opts.Engine.Poll(s.ctx, name)
	out := PollOutcome{
		Result: bridge.PollOK, Items: res.Items, Pages: res.Pages, Events: len(res.Events),
		Suppressed: res.Suppressed, Baseline: res.Baseline, HeldDeletes: res.HeldDeletes, PendingDeletes: res.PendingDeletes,
	}
	switch {
	case errors.Is(err, bridge.ErrPollRunning):
		writeError(w, http.StatusConflict, "source "+name+": "+err.Error())
		return
	case err != nil:
		out.Result, out.Error = bridge.PollError, err.Error()
		s.log.Info("poll requested through the admin API failed", "source", name, "err", err)
		writeJSON(w, http.StatusBadGateway, out)
		return
	case res.NotModified:
		out.Result = bridge.PollNotModified
	}
	s.log.Info("polled on request through the admin API", "source", name, "events", out.Events)
	writeJSON(w, http.StatusOK, out)
}

// dryRun fetches a source and diffs it against the stored state without
// committing: `pollbridge poll` against a running daemon.
func (s *Server) dryRun(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	sc, ok := s.opts.Engine.Config().Source(name)
	if !ok {
		writeError(w, http.StatusNotFound, "no source "+strconv.Quote(name))
		return
	}
	snap, diff, state, err := s.opts.Engine.DryRunSource(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusBadGateway, "source "+name+": "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, NewDryRun(sc, snap, state, diff))
}

// sinkInfos describes the named sinks (every configured one when names is
// nil) with their outbox counts.
func (s *Server) sinkInfos(r *http.Request, names []string) Sinks {
	if names == nil {
		for _, sc := range s.opts.Engine.Config().Sinks {
			names = append(names, sc.Name)
		}
	}
	stats, err := s.opts.Engine.Store().Stats(r.Context(), time.Now())
	out := Sinks{Sinks: make([]SinkInfo, 0, len(names))}
	if err != nil {
		out.OutboxError = err.Error()
	}
	for _, name := range names {
		st, ok := s.opts.Engine.SinkStatus(name)
		if !ok {
			continue
		}
		info := SinkInfo{Name: name, SinkStatus: st}
		if err == nil {
			c := stats[name]
			info.Outbox = &Outbox{Pending: c.Pending, Retrying: c.Retrying, Dead: c.Dead}
		}
		out.Sinks = append(out.Sinks, info)
	}
	return out
}

func (s *Server) sinks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.sinkInfos(r, nil))
}

// sinkAnswer writes the named sink's info, or 404.
func (s *Server) sinkAnswer(w http.ResponseWriter, r *http.Request, name string) {
	out := s.sinkInfos(r, []string{name})
	if len(out.Sinks) == 0 {
		writeError(w, http.StatusNotFound, "no sink "+strconv.Quote(name))
		return
	}
	writeJSON(w, http.StatusOK, out.Sinks[0])
}

func (s *Server) sink(w http.ResponseWriter, r *http.Request) {
	s.sinkAnswer(w, r, r.PathValue("name"))
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.opts.Engine.PauseSink(name); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	s.sinkAnswer(w, r, name)
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.opts.Engine.ResumeSink(name); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	s.sinkAnswer(w, r, name)
}

// replaySink moves every dead letter of a configured sink back to its
// outbox.
func (s *Server) replaySink(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.opts.Engine.SinkStatus(name); !ok {
		writeError(w, http.StatusNotFound, "no sink "+strconv.Quote(name))
		return
	}
	s.replay(w, r, name, nil)
}

// replayAll moves every dead letter (of ?sink=NAME, if given; any sink
// name the store knows) back to the outbox.
func (s *Server) replayAll(w http.ResponseWriter, r *http.Request) {
	s.replay(w, r, r.URL.Query().Get("sink"), nil)
}

// replayOne moves one dead letter, by delivery ID, back to the outbox.
func (s *Server) replayOne(w http.ResponseWriter, r *http.Request) {
	s.replay(w, r, "", []string{r.PathValue("id")})
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, sink string, ids []string) {
	n, err := s.opts.Engine.Store().Replay(r.Context(), sink, ids)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no dead letter "+strconv.Quote(ids[0]))
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "replay: "+err.Error())
		return
	}
	// Wake the dispatchers: the replayed deliveries are due now.
	if sink != "" {
		s.opts.Engine.WakeSink(sink)
	} else {
		for _, sc := range s.opts.Engine.Config().Sinks {
			s.opts.Engine.WakeSink(sc.Name)
		}
	}
	s.log.Info("dead letters replayed through the admin API", "sink", sink, "replayed", n)
	writeJSON(w, http.StatusOK, Replayed{Replayed: n})
}

// dead lists dead letters: ?sink=NAME for one sink, ?limit=N for the
// oldest N only.
func (s *Server) dead(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := -1
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "limit: want a number ≥ 0")
			return
		}
		limit = n
	}
	dead, err := s.opts.Engine.Store().Dead(r.Context(), q.Get("sink"))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "list dead letters: "+err.Error())
		return
	}
	out := Dead{Dead: dead, Total: len(dead)}
	if out.Dead == nil {
		out.Dead = []store.Delivery{}
	}
	if limit >= 0 && len(out.Dead) > limit {
		out.Dead = slices.Clip(out.Dead[:limit])
	}
	writeJSON(w, http.StatusOK, out)
}

// deliveries lists deliveries by state: ?sink=NAME for one sink (any name
// the store knows), ?state=pending|retrying|dead (default: pending and
// retrying), ?limit=N (default DefaultDeliveriesLimit, at most
// store.DefaultLiveLimit). Pending and retrying deliveries are picked from
// the store.DefaultLiveLimit live ones due first, so the list may show
// fewer than Total.
func (s *Server) deliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sink, state := q.Get("sink"), q.Get("state")
	switch state {
	case "", StatePending, StateRetrying, StateDead:
	default:
		writeError(w, http.StatusBadRequest, "state: want pending, retrying or dead")
		return
	}
	limit := DefaultDeliveriesLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: want a number ≥ 1")
			return
		}
		limit = min(n, store.DefaultLiveLimit)
	}
	st := s.opts.Engine.Store()
	out := Deliveries{Deliveries: []DeliveryInfo{}}
	if state == StateDead {
		dead, err := st.Dead(r.Context(), sink)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "list dead letters: "+err.Error())
			return
		}
		out.Total = len(dead)
		for _, d := range dead[:min(limit, len(dead))] {
			out.Deliveries = append(out.Deliveries, deliveryInfo(d, StateDead))
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	scan := limit
	if state != "" {
		scan = store.DefaultLiveLimit
	}
	live, err := st.Live(r.Context(), sink, scan)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "list deliveries: "+err.Error())
		return
	}
	stats, err := st.Stats(r.Context(), time.Now())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "count deliveries: "+err.Error())
		return
	}
	for name, c := range stats {
		if sink == "" || name == sink {
			switch state {
			case StatePending:
				out.Total += c.Pending
			case StateRetrying:
				out.Total += c.Retrying
			default:
				out.Total += c.Pending + c.Retrying
			}
		}
	}
	for _, d := range live {
		ds := StatePending
		if d.Attempts > 0 {
			ds = StateRetrying
		}
		if state != "" && ds != state {
			continue
		}
		if len(out.Deliveries) == limit {
			break
		}
		out.Deliveries = append(out.Deliveries, deliveryInfo(d, ds))
	}
	writeJSON(w, http.StatusOK, out)
}

// deliveryInfo describes d, in state, without its payload (whose event
// type it reads).
func deliveryInfo(d store.Delivery, state string) DeliveryInfo {
	var ev struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(d.Payload, &ev) // a payload that is not an event has no type
	info := DeliveryInfo{
		ID: d.ID, EventID: d.EventID, Sink: d.Sink, Source: d.Source, Key: d.Key, Type: ev.Type, State: state,
		Attempts: d.Attempts, LastError: d.LastError, Created: d.Created.UTC(), Due: d.Due.UTC(), Dead: d.Dead.UTC(),
	}
	if state == StateDead {
		info.Due = time.Time{} // when it was last due; it no longer is
	}
	return info
}
