// Package store defines the Store seam of pollbridge: where a source's last
// known items live, and the outbox that holds every committed event until its
// sink has accepted it.
//
// A poll loads a source's State, diffs a fresh snapshot against it, and hands
// the result to Commit, which writes the new items and the deliveries they
// imply in one atomic step guarded by the state's generation. Dispatchers then
// Claim due deliveries per sink and Settle the Outcome of each attempt (ack,
// retry or bury); the events of one item reach each sink in the order they
// were detected (see Store). Backends live in sub-packages (boltstore for the
// embedded default, redisstore for a fleet) and all of them pass the
// conformance suite in storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrConflict is returned by Commit when the stored generation of the source
// is not the one the commit was computed against: another writer committed
// first. The caller must Load again and recompute its diff.
var ErrConflict = errors.New("state changed since it was loaded (generation conflict)")

// ErrNotFound is returned when a delivery named by ID does not exist.
var ErrNotFound = errors.New("not found")

// Item is the stored form of one item of a source.
type Item struct {
	// Fingerprint is the hash of the item's relevant fields.
	Fingerprint string `json:"fp"`
	// Data is the item's JSON as last seen when its fingerprint changed.
	Data json.RawMessage `json:"data"`
}

// State is everything the store knows about one source.
type State struct {
	// Generation counts the commits made for the source; 0 means the source
	// was never committed (no baseline yet).
	Generation uint64
	// Items maps each item key to its stored form. Never nil after Load.
	Items map[string]Item
	// Meta holds small per-source values that are not items: conditional
	// request validators (ETag, Last-Modified), body hashes, guard flags.
	// Never nil after Load.
	Meta map[string]string
}

// PollTick names one scheduled poll for Store.StartPolls: a source and one
// of its ticks (replicas name a tick alike, after its scheduled time).
type PollTick struct {
	Source, Tick string
}

// PollStart is Store.StartPolls's answer for one PollTick.
type PollStart struct {
	// State is the source's state without items (Items empty, not nil),
	// when Held; else the zero State.
	State State
	// Held reports whether the caller holds the tick's lease: it polls.
	Held bool
	// Err is why the lease could not be asked for (Held is false).
	Err error
}

// Commit is the outcome of one poll of one source: a delta to the stored
// items and the deliveries it implies, applied atomically.
type Commit struct {
	// Source names the source.
	Source string
	// Generation is the generation the diff was computed against. Commit
	// fails with ErrConflict unless it equals the stored generation; on
	// success the stored generation becomes Generation+1.
	Generation uint64
	// Upsert adds or replaces items by key.
	Upsert map[string]Item
	// Delete removes items by key.
	Delete []string
	// Meta, when non-nil, replaces the source's Meta entirely.
	Meta map[string]string
	// Deliveries are added to the outbox, each due at its Due (a zero Due
	// means the commit time), in the order given. A delivery for an item
	// that already has an outstanding delivery to the same sink waits
	// behind it (see Store). A delivery whose ID is already in the outbox
	// or the dead letters is skipped: the first copy stays.
	Deliveries []Delivery
}

// Validate reports what makes c unfit for any backend: an empty source
// name, an empty item key to upsert, a delivery without an ID or a sink.
// Backends call it before they write anything.
func (c Commit) Validate() error {
	if c.Source == "" {
		return errors.New("empty source name")
	}
	for k := range c.Upsert {
		if k == "" {
			return errors.New("upsert of an empty item key")
		}
	}
	for _, d := range c.Deliveries {
		if d.ID == "" || d.Sink == "" {
			return fmt.Errorf("delivery %q to sink %q: empty id or sink", d.ID, d.Sink)
		}
	}
	return nil
}

// Delivery is one event bound for one sink, as kept in the outbox.
type Delivery struct {
	// ID identifies the delivery in the store: unique per (event, sink).
	ID string `json:"id"`
	// EventID is the event's stable id (the webhook-id); a redelivery and a
	// re-detection of the same change keep it.
	EventID string `json:"event_id"`
	// Sink names the sink the event goes to.
	Sink string `json:"sink"`
	// Source and Key name the source and item the event is about.
	Source string `json:"source"`
	Key    string `json:"key"`
	// Payload is the encoded event (JSON of bridge.Event); opaque to the store.
	Payload json.RawMessage `json:"payload"`
	// Attempts counts the failed delivery attempts so far.
	Attempts int `json:"attempts"`
	// Created is when the delivery entered the outbox.
	Created time.Time `json:"created"`
	// Due is when the delivery may next be claimed. A delivery waiting
	// behind an older one of its item is claimable only once that one is
	// acked or buried; Due then becomes that time if it was earlier.
	Due time.Time `json:"due"`
	// LastError describes the last failed attempt, if any.
	LastError string `json:"last_error,omitempty"`
	// Dead is when the delivery was moved to the dead letters (zero if not).
	Dead time.Time `json:"dead,omitzero"`
}

// Op is what Settle records for a finished attempt.
type Op int

// The outcomes of a delivery attempt, as Store.Settle records them.
const (
	// OpAck: delivered. The delivery leaves the outbox; the next delivery
	// of its item, if any, becomes claimable at once.
	OpAck Op = iota + 1
	// OpRetry: failed, to be attempted again. The delivery is stored with
	// its Attempts and LastError as the caller set them and becomes
	// claimable again at Outcome.Due. It stays the head of its item: the
	// younger deliveries of the item keep waiting until it is acked or
	// buried.
	OpRetry
	// OpBury: failed for good. The delivery, with its Attempts and
	// LastError, moves to the dead letters and releases its item: the next
	// delivery of the item, if any, becomes claimable at once.
	OpBury
)

// Outcome is one finished delivery attempt, for Store.Settle.
type Outcome struct {
	// Op says what to record.
	Op Op
	// Delivery is the delivery as claimed, with Attempts and LastError as
	// the caller set them for OpRetry or OpBury.
	Delivery Delivery
	// Due is when a retried delivery (OpRetry) may be claimed again; zero
	// means now. The other ops ignore it.
	Due time.Time
}

// DefaultLiveLimit is how many deliveries Store.Live returns at most when
// its limit is zero or less.
const DefaultLiveLimit = 1000

// SinkStats counts the outbox of one sink.
type SinkStats struct {
	// Pending counts deliveries that have not failed yet, including claimed
	// ones and ones waiting behind an older delivery of their item.
	Pending int
	// Retrying counts deliveries waiting for another attempt after a failure.
	Retrying int
	// Dead counts dead letters.
	Dead int
}

// Store keeps source state and the outbox. All methods are safe for
// concurrent use and honour ctx for blocking work.
//
// Order per item: the outstanding (not yet acked, not dead) deliveries of
// one item, that is one (Sink, Source, Key), form a queue in commit order.
// Only its head, the oldest, can be claimed; the younger ones wait, however
// long the head keeps failing and being retried. When the head is acked or
// buried the next one becomes claimable at once. So each sink receives the
// events of an item in detection order, one at a time, while the items
// around it go on: one failing item never holds up another, and a sink
// never holds up another sink (the order is per sink). A dead letter
// releases its item, so one bad event does not block an item forever; a
// replayed dead letter joins the end of its item's queue. Waiting costs
// Claim nothing: its cost does not grow with the waiting deliveries.
type Store interface {
	// Load returns the state of a source; an unknown source has an empty
	// State with Generation 0.
	Load(ctx context.Context, source string) (State, error)
	// LoadMeta is Load without the items (Items is empty): the cheap read a
	// poll needs before it knows whether anything changed.
	LoadMeta(ctx context.Context, source string) (State, error)
	// Commit applies c atomically: items, meta and deliveries are all
	// written or none is. It returns ErrConflict on a generation mismatch.
	Commit(ctx context.Context, c Commit) error

	// Claim returns up to max deliveries of sink that are due at now, oldest
	// due first (commit order among equals), and hides them from other
	// claims until now+lease. Only the head of each item is claimable, so a
	// batch holds at most one delivery per item. A claimed delivery whose
	// outcome is not settled before its lease runs out can be claimed
	// again (its item stays blocked meanwhile).
	Claim(ctx context.Context, sink string, now time.Time, max int, lease time.Duration) ([]Delivery, error)
	// Settle records the outcomes of finished attempts: each one acks,
	// retries or buries its delivery as its Op says (see OpAck, OpRetry,
	// OpBury). It settles them in one transaction or round trip where the
	// backend can: a dispatcher settles the attempts that finished
	// together, so the store's per-write cost (an fsync, a round trip) is
	// paid per batch, not per event. It returns one error per outcome, in
	// order: nil when recorded; ErrNotFound (wrapped) for a delivery that
	// is no longer in the outbox or is a dead letter (its lease ran out and
	// another worker finished it, or an earlier outcome did). An outcome's
	// error never keeps the others from being recorded.
	Settle(ctx context.Context, outcomes []Outcome) []error
	// Dead lists the dead letters of sink, or of every sink when sink is "",
	// oldest first.
	Dead(ctx context.Context, sink string) ([]Delivery, error)
	// Replay moves dead letters back into the outbox, due now with their
	// attempts reset. Each one joins the end of its item's queue, behind
	// the item's outstanding deliveries (several of one item in their
	// original commit order). ids selects them by delivery ID; nil replays
	// every dead letter of sink ("" = every sink). It returns how many
	// moved; an unknown id is ErrNotFound.
	Replay(ctx context.Context, sink string, ids []string) (int, error)
	// Stats counts the outbox per sink at now; deliveries waiting behind
	// the head of their item count as Pending (Retrying if they failed
	// before).
	Stats(ctx context.Context, now time.Time) (map[string]SinkStats, error)
	// Live lists the live deliveries of sink, or of every sink when sink
	// is "": every one in the outbox that is not dead, claimed ones and
	// ones waiting behind the head of their item included. They come in
	// order of Due, commit order among equal Due times, with their
	// Attempts, LastError, Due (for a claimed one, the time it was due
	// when claimed) and Created; at most limit of them (DefaultLiveLimit
	// when limit <= 0). Live is for operators: its cost grows with the
	// deliveries it returns (and, for a backend that keeps outboxes per
	// source, with the number of sources), not with the outbox; it is not
	// a snapshot across sources.
	Live(ctx context.Context, sink string, limit int) ([]Delivery, error)

	// StartPolls begins the scheduled polls of ticks, usually the sources
	// of one schedule that tick together: for each, it takes the tick's
	// lease for owner until ttl has passed and, only when owner holds it,
	// returns the source's state without items (as LoadMeta does). It
	// returns one PollStart per tick, in order; a tick without a Source or
	// a Tick, an empty owner or a ttl <= 0 is that tick's error.
	//
	// A tick's lease is refused (Held false, no error) while another owner
	// holds it; an owner that holds it extends it to ttl from now. A lease
	// that its holder does not extend expires once ttl has passed, and
	// then any owner can take it. Leases of different sources or ticks are
	// independent. Replicas sharing a store use them so that each tick of
	// a source is polled by one of them.
	//
	// For a shared backend the whole call is one round trip: the store
	// cost of a tick that finds nothing changed.
	StartPolls(ctx context.Context, owner string, ttl time.Duration, ticks []PollTick) []PollStart

	// Replicas records that owner is alive until ttl has passed and
	// reports how many owners are alive now, owner included. Every replica
	// calls it every few seconds: a lone replica takes its ticks' leases at
	// once, while several spread their attempts so that the polls spread
	// over the fleet.
	Replicas(ctx context.Context, owner string, ttl time.Duration) (int, error)

	// Ping reports whether the store answers, as cheaply as the backend
	// can tell: a readiness probe. It fails once the store is closed.
	Ping(ctx context.Context) error

	// Close releases the store. It does not wait for ctx-less work.
	Close() error
}
