package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event types.
const (
	ItemCreated = "item.created"
	ItemUpdated = "item.updated"
	ItemDeleted = "item.deleted"
)

// Event is one detected change of one item of one source.
type Event struct {
	// ID is stable for the change: a redelivery, and a re-detection after a
	// crash before commit, keep it. It is the webhook-id.
	ID string `json:"id"`
	// Type is ItemCreated, ItemUpdated or ItemDeleted.
	Type string `json:"type"`
	// Time is when the change was detected.
	Time time.Time `json:"timestamp"`
	// Source names the source.
	Source string `json:"source"`
	// Key is the item's key.
	Key string `json:"key"`
	// Item is the item now (nil for deletions).
	Item json.RawMessage `json:"item,omitempty"`
	// Previous is the last known item before the change (nil for creations).
	Previous json.RawMessage `json:"previous,omitempty"`
	// Changes lists the field-level changes of an update.
	Changes []Change `json:"changes,omitempty"`
}

// Change is one field-level change of an updated item.
type Change struct {
	// Op is "add", "remove" or "replace", as in JSON Patch.
	Op string `json:"op"`
	// Path is a JSON Pointer (RFC 6901) into the item.
	Path string `json:"path"`
	// Old is the value before (absent for "add").
	Old json.RawMessage `json:"old,omitempty"`
	// New is the value after (absent for "remove").
	New json.RawMessage `json:"new,omitempty"`
}

// Item is one item found by a source.
type Item struct {
	// Key is the item's unique key within its source.
	Key string
	// Data is the item's JSON.
	Data json.RawMessage
}

// Snapshot is what one fetch of a source found.
type Snapshot struct {
	// Items are every item of the source, all pages included.
	Items []Item
	// NotModified reports that the API said nothing changed (HTTP 304):
	// Items is empty and must not be diffed.
	NotModified bool
	// Meta is the conditional-request state to store for the next fetch
	// (for example ETag). Nil keeps the stored Meta as it is.
	Meta map[string]string
	// Pages counts the responses fetched.
	Pages int
	// Requests describes each HTTP request of the fetch, retries included,
	// for `pollbridge poll` and debugging. Optional.
	Requests []RequestInfo
}

// RequestInfo describes one HTTP request of a fetch. It holds no secrets.
type RequestInfo struct {
	// Method is the HTTP method.
	Method string
	// URL is the request URL without user info, and with the values of
	// configured query parameters (which may hold keys) hidden.
	URL string
	// Status is the HTTP status (0 if no answer came).
	Status int
	// Items counts the items the page listed (0 for a 304 or an error).
	Items int
	// Bytes is the size of the (decoded) body read.
	Bytes int64
	// Duration is the time from sending to the end of the body.
	Duration time.Duration
}

// Source fetches complete snapshots of one API endpoint.
//
// Fetch must return an error, and no snapshot, if it could not read every
// item (a failed page, a bad body): a partial snapshot would turn into false
// deletions. meta is the Meta stored after the previous fetch (never nil);
// an empty meta asks for an unconditional fetch (no If-None-Match).
type Source interface {
	Fetch(ctx context.Context, meta map[string]string) (*Snapshot, error)
}

// Sink delivers events to one receiver.
//
// Send delivers one event and returns nil only when the receiver accepted
// it. A failure worth no retry, or one that says when to retry, is returned
// as (or wraps) a *DeliveryError; any other error is retried on schedule.
// Send must produce the same body bytes every time for the same event.
type Sink interface {
	Send(ctx context.Context, ev *Event) error
}

// DeliveryError is a failed delivery that carries advice for the retry loop.
type DeliveryError struct {
	// Status is the receiver's HTTP status, if there was one.
	Status int
	// Permanent says retrying cannot help (for example HTTP 400).
	Permanent bool
	// RetryAfter, when > 0, is the least wait the receiver asked for.
	RetryAfter time.Duration
	// Err describes the failure.
	Err error
}

func (e *DeliveryError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("status %d: %v", e.Status, e.Err)
	}
	return e.Err.Error()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// IsPermanent reports whether err says a delivery must not be retried.
func IsPermanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent
}
