package admin

import (
	"encoding/json"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
	"github.com/pollbridge/pollbridge/bridge/store"
)

// DryRun is what `pollbridge poll` shows: one fetch of a source diffed
// against its stored state, nothing committed. It is the answer of POST
// /api/sources/{name}/dry-run, and the CLI builds one locally too.
type DryRun struct {
	// Source names the source; Sinks are those its events go to.
	Source string   `json:"source"`
	Sinks  []string `json:"sinks"`
	// EmitInitial is the source's emit_initial setting.
	EmitInitial bool `json:"emit_initial"`
	// Pages counts the responses; Requests describes them (no secrets).
	Pages    int                  `json:"pages"`
	Requests []bridge.RequestInfo `json:"requests"`
	// NotModified reports that the API answered "not modified".
	NotModified bool `json:"not_modified,omitempty"`
	// Items are the items fetched.
	Items []DryRunItem `json:"items"`
	// StateGeneration and StateItems describe the stored state the diff
	// was made against (generation 0: no baseline yet).
	StateGeneration uint64 `json:"state_generation"`
	StateItems      int    `json:"state_items"`
	// DiffItems counts the distinct items diffed.
	DiffItems int `json:"diff_items"`
	// HeldDeletes, PendingDeletes and Suppressed are as in
	// bridge.DiffResult; FilterErrors are its filter errors as text.
	HeldDeletes    int      `json:"held_deletes"`
	PendingDeletes int      `json:"pending_deletes"`
	Suppressed     int      `json:"suppressed"`
	FilterErrors   []string `json:"filter_errors,omitempty"`
	// Events are the events a poll would send.
	Events []bridge.Event `json:"events"`
}

// DryRunItem is one item of a DryRun.
type DryRunItem struct {
	Key  string          `json:"key"`
	Data json.RawMessage `json:"data"`
}

// NewDryRun describes a dry run of source sc: the snapshot fetched, the
// state it was diffed against and the diff.
func NewDryRun(sc config.Source, snap *bridge.Snapshot, state store.State, diff bridge.DiffResult) DryRun {
	out := DryRun{
		Source:          sc.Name,
		Sinks:           sc.Sinks,
		EmitInitial:     sc.EmitInitial,
		Pages:           snap.Pages,
		Requests:        snap.Requests,
		NotModified:     snap.NotModified,
		Items:           make([]DryRunItem, len(snap.Items)),
		StateGeneration: state.Generation,
		StateItems:      len(state.Items),
		DiffItems:       diff.Items,
		HeldDeletes:     diff.HeldDeletes,
		PendingDeletes:  diff.PendingDeletes,
		Suppressed:      diff.Suppressed,
		Events:          diff.Events,
	}
	for i, it := range snap.Items {
		out.Items[i] = DryRunItem{Key: it.Key, Data: it.Data}
	}
	for _, err := range diff.FilterErrors {
		out.FilterErrors = append(out.FilterErrors, err.Error())
	}
	return out
}
