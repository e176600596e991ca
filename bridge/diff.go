package bridge

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// metaHeldDeletes is the Meta key that remembers a mass deletion held back
// by the previous poll, so that the next poll can confirm it.
const metaHeldDeletes = "held_deletes"

// metaFingerprintConfig is the Meta key that records which watch and ignore
// lists the stored fingerprints were computed with.
const metaFingerprintConfig = "fingerprint_config"

// metaAbsent is the Meta key that counts, per item key, the consecutive
// complete polls a stored item has been missing from (a JSON object
// {"key": count}), for DeleteAfter. Absent when no item is missing.
const metaAbsent = "absent"

// fieldsConfig identifies a watch and an ignore list (order does not
// matter). Without a watch list it is fingerprintConfig(ignore), the
// signature stored before watch lists existed.
func fieldsConfig(f Fields) string {
	if len(f.Watch) == 0 {
		return fingerprintConfig(f.Ignore)
	}
	h := sha256.New()
	for _, list := range [][]string{f.Watch, f.Ignore} {
		for _, p := range slices.Sorted(slices.Values(list)) {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	return "v2:" + hex.EncodeToString(h.Sum(nil)[:8])
}

// fingerprintConfig identifies an ignore list (order does not matter).
func fingerprintConfig(ignore []string) string {
	sorted := slices.Sorted(slices.Values(ignore))
	h := sha256.New()
	for _, p := range sorted {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "v1:" + hex.EncodeToString(h.Sum(nil)[:8])
}

// DiffOptions says how to diff one source.
type DiffOptions struct {
	// Source names the source (it goes into events and event ids).
	Source string
	// Watch, when not empty, lists the only fields that count for change
	// detection (see FingerprintFields).
	Watch []string
	// Ignore lists the fields left out of change detection (see
	// FingerprintFields), inside watched fields too.
	Ignore []string
	// EmitInitial sends item.created for every item of the first poll
	// instead of silently recording a baseline.
	EmitInitial bool
	// MaxDeleteRatio holds back a poll that would delete more than this
	// share of the stored items, until the next poll shows the same
	// deletions again. 0 or >= 1 disables the guard. It looks only at the
	// deletions that DeleteAfter lets through in this diff.
	MaxDeleteRatio float64
	// DeleteAfter is how many consecutive diffs an item must be missing
	// from before it is deleted; 0 and 1 mean the first.
	DeleteAfter int
	// Now is the detection time stamped on events.
	Now time.Time
	// NoBodies stores fingerprints only (config keep_bodies: false): new
	// and updated items are committed without Data. Stored items without
	// Data give updates without Previous and Changes and deletions without
	// Previous, and when watch or ignore changed they take their new
	// fingerprint without an event (there is nothing to recompute it from).
	NoBodies bool
}

// DiffResult is the outcome of a diff: the events and the store delta that
// implies them. Commit.Deliveries is left for the caller to fill.
type DiffResult struct {
	// Events are the detected changes, creations and updates in snapshot
	// order, then deletions in key order.
	Events []Event
	// Commit is the delta to store (Source, Generation, Upsert, Delete, Meta).
	Commit store.Commit
	// Baseline reports that this was the source's first poll.
	Baseline bool
	// Items counts the distinct items of the snapshot.
	Items int
	// HeldDeletes counts deletions held back by the mass-deletion guard.
	HeldDeletes int
	// PendingDeletes counts stored items missing from the snapshot that
	// DeleteAfter keeps for now.
	PendingDeletes int
	// Changed reports whether anything must be committed.
	Changed bool

	// Suppressed counts detected events that are not sent: their type is
	// not in the source's events list or its filter is false. Diff leaves
	// it 0; a poll and DryRun fill it (and drop those events from Events).
	Suppressed int
	// FilterErrors are the errors of filter evaluations that failed; those
	// events are sent anyway. Diff leaves it nil.
	FilterErrors []error
}

// Diff compares a complete snapshot of a source with its stored state. It is
// a pure function: old is not modified. meta is the Meta to store with the
// new state (the stored Meta updated with the fetch's validators).
//
// Items present in the snapshot but not in old are created; present in both
// with another fingerprint are updated (with field-level changes); present in
// old only are deleted once they have been missing from opts.DeleteAfter
// consecutive diffs (the counts are kept in Meta; an item that comes back
// starts again from 0), unless the mass-deletion guard holds them back. The
// first poll (old.Generation 0) records a baseline and emits nothing unless
// opts.EmitInitial. A key seen twice in the snapshot counts once (the last
// occurrence wins).
func Diff(old store.State, items []Item, meta map[string]string, opts DiffOptions) (DiffResult, error) {
	res := DiffResult{
		Baseline: old.Generation == 0,
		Commit: store.Commit{
			Source:     opts.Source,
			Generation: old.Generation,
			Upsert:     map[string]store.Item{},
		},
	}
	emitCreated := !res.Baseline || opts.EmitInitial

	// Last occurrence of a key wins; order of first appearance is kept.
	last := make(map[string]int, len(items)) // key → index of its last occurrence; -1 once diffed
	for i, it := range items {
		last[it.Key] = i
	}
	res.Items = len(last)

	// Stored fingerprints were computed with the watch and ignore lists of
	// their time; if these changed since, recompute them so that editing
	// `watch` or `ignore` does not turn every item into a false update.
	fields := Fields{Watch: opts.Watch, Ignore: opts.Ignore}
	fpr := NewFingerprinter(fields)
	cfgSig := fieldsConfig(fields)
	rehash := !res.Baseline && old.Meta[metaFingerprintConfig] != cfgSig

	stored := func(fp string, data json.RawMessage) store.Item {
		if opts.NoBodies {
			return store.Item{Fingerprint: fp}
		}
		return store.Item{Fingerprint: fp, Data: data}
	}
	for _, it := range items {
		key := it.Key
		j := last[key]
		if j < 0 {
			continue // diffed at its first occurrence
		}
		last[key] = -1
		data := items[j].Data
		prev, existed := old.Items[key]
		if existed && !rehash && bytes.Equal(prev.Data, data) {
			continue // byte-identical to the stored version: same fingerprint
		}
		fp, err := fpr.Fingerprint(data)
		if err != nil {
			return DiffResult{}, fmt.Errorf("item %q: %w", key, err)
		}
		if existed && rehash && prev.Data == nil {
			// Stored without its JSON: the old fingerprint cannot be
			// recomputed under the new rules, so take the new one as is.
			if prev.Fingerprint != fp {
				res.Commit.Upsert[key] = stored(fp, data)
			}
			continue
		}
		if existed && rehash {
			if prev.Fingerprint, err = fpr.Fingerprint(prev.Data); err != nil {
				return DiffResult{}, fmt.Errorf("stored item %q: %w", key, err)
			}
			if prev.Fingerprint == fp && old.Items[key].Fingerprint != fp {
				res.Commit.Upsert[key] = prev // same item, fingerprint under the new rules
			}
		}
		switch {
		case !existed:
			res.Commit.Upsert[key] = stored(fp, data)
			if emitCreated {
				res.Events = append(res.Events, newEvent(opts, old.Generation, ItemCreated, key, "", fp, data, nil, nil))
			}
		case prev.Fingerprint != fp:
			res.Commit.Upsert[key] = stored(fp, data)
			var changes []Change
			if prev.Data != nil {
				before, err := relevantValue(prev.Data, fields)
				if err != nil {
					return DiffResult{}, fmt.Errorf("stored item %q: %w", key, err)
				}
				cur, err := relevantValue(data, fields)
				if err != nil {
					return DiffResult{}, fmt.Errorf("item %q: %w", key, err)
				}
				changes = Changes(before, cur)
			}
			res.Events = append(res.Events, newEvent(opts, old.Generation, ItemUpdated, key, prev.Fingerprint, fp, data, prev.Data, changes))
		}
	}

	// Missing items: count the diffs they have been missing from; those
	// missing long enough are due for deletion.
	absent := parseAbsent(old.Meta[metaAbsent])
	nextAbsent := map[string]int{}
	var due []string
	for key := range old.Items {
		if _, ok := last[key]; ok {
			continue // present (again): its count starts over
		}
		n := absent[key] + 1
		if n >= max(opts.DeleteAfter, 1) {
			due = append(due, key)
		} else {
			res.PendingDeletes++
		}
		nextAbsent[key] = n
	}
	slices.Sort(due)

	newMeta := maps.Clone(meta)
	if newMeta == nil {
		newMeta = map[string]string{}
	}
	delete(newMeta, metaHeldDeletes)
	newMeta[metaFingerprintConfig] = cfgSig
	if len(due) > 0 && massDeletion(len(due), len(old.Items), opts.MaxDeleteRatio) {
		sig := deletionSignature(due)
		if old.Meta[metaHeldDeletes] != sig {
			// First sighting: hold back, remember, and wait for the next poll.
			newMeta[metaHeldDeletes] = sig
			res.HeldDeletes = len(due)
			due = nil
		}
	}
	for _, key := range due {
		prev := old.Items[key]
		delete(nextAbsent, key)
		res.Commit.Delete = append(res.Commit.Delete, key)
		res.Events = append(res.Events, newEvent(opts, old.Generation, ItemDeleted, key, prev.Fingerprint, "", nil, prev.Data, nil))
	}
	delete(newMeta, metaAbsent)
	if len(nextAbsent) > 0 {
		newMeta[metaAbsent] = formatAbsent(nextAbsent)
	}
	if rehash {
		// Missing items that stay have their fingerprints under the new
		// rules too, so that they can come back without a false update.
		for key := range nextAbsent {
			prev := old.Items[key]
			if prev.Data == nil {
				continue // nothing to recompute from (keep_bodies: false)
			}
			fp, err := fpr.Fingerprint(prev.Data)
			if err != nil {
				return DiffResult{}, fmt.Errorf("stored item %q: %w", key, err)
			}
			if fp != prev.Fingerprint {
				res.Commit.Upsert[key] = store.Item{Fingerprint: fp, Data: prev.Data}
			}
		}
	}

	if !maps.Equal(newMeta, old.Meta) {
		res.Commit.Meta = newMeta
	}
	res.Changed = res.Baseline || len(res.Commit.Upsert) > 0 || len(res.Commit.Delete) > 0 ||
		res.Commit.Meta != nil || len(res.Events) > 0
	return res, nil
}

// parseAbsent decodes the metaAbsent value. A value that does not decode
// (never written by this code) counts as no absences: deletions are then
// delayed, never invented.
func parseAbsent(s string) map[string]int {
	m := map[string]int{}
	if s != "" {
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return map[string]int{}
		}
	}
	return m
}

// formatAbsent encodes absence counts for metaAbsent (keys sorted, so the
// same counts always give the same text).
func formatAbsent(m map[string]int) string {
	b, err := json.Marshal(m)
	if err != nil {
		return "" // a map[string]int always encodes
	}
	return string(b)
}

// massDeletion reports whether deleting n of total items exceeds ratio.
func massDeletion(n, total int, ratio float64) bool {
	if ratio <= 0 || ratio >= 1 || total == 0 {
		return false
	}
	return float64(n)/float64(total) > ratio
}

// deletionSignature identifies a set of deleted keys (sorted).
func deletionSignature(keys []string) string {
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return strconv.Itoa(len(keys)) + ":" + hex.EncodeToString(h.Sum(nil)[:8])
}

// eventIDEncoding is lowercase base32 without padding: URL- and header-safe.
var eventIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// EventID derives the stable id of a change from what identifies it: the
// source, the item key, the event type, the fingerprints before and after,
// and the generation of the state it was detected against. Re-detecting the
// same change after a crash before commit gives the same id; the same
// transition happening again later (A→B, B→A, A→B) gives a new one.
func EventID(source, key, typ, oldFP, newFP string, generation uint64) string {
	h := sha256.New()
	for _, s := range []string{source, key, typ, oldFP, newFP, strconv.FormatUint(generation, 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "msg_" + eventIDEncoding.EncodeToString(h.Sum(nil)[:20])
}

func newEvent(opts DiffOptions, gen uint64, typ, key, oldFP, newFP string, item, prev json.RawMessage, changes []Change) Event {
	return Event{
		ID:       EventID(opts.Source, key, typ, oldFP, newFP, gen),
		Type:     typ,
		Time:     opts.Now.UTC(),
		Source:   opts.Source,
		Key:      key,
		Item:     item,
		Previous: prev,
		Changes:  changes,
	}
}

// Changes lists the field-level differences from before to after, two
// decoded JSON values, as JSON Pointer paths. Objects are compared field by
// field; arrays of equal length element by element; arrays of different
// length, and values of different kinds, are replaced whole.
func Changes(before, after any) []Change {
	var out []Change
	collectChanges(&out, "", before, after)
	return out
}

func collectChanges(out *[]Change, path string, before, after any) {
	switch b := before.(type) {
	case map[string]any:
		a, ok := after.(map[string]any)
		if !ok {
			break
		}
		keys := slices.Sorted(maps.Keys(b))
		for k := range a {
			if _, ok := b[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := path + "/" + escapePointer(k)
			bv, inB := b[k]
			av, inA := a[k]
			switch {
			case !inB:
				*out = append(*out, Change{Op: "add", Path: p, New: mustJSON(av)})
			case !inA:
				*out = append(*out, Change{Op: "remove", Path: p, Old: mustJSON(bv)})
			default:
				collectChanges(out, p, bv, av)
			}
		}
		return
	case []any:
		a, ok := after.([]any)
		if !ok || len(a) != len(b) {
			break
		}
		for i := range b {
			collectChanges(out, path+"/"+strconv.Itoa(i), b[i], a[i])
		}
		return
	}
	if !reflect.DeepEqual(before, after) {
		*out = append(*out, Change{Op: "replace", Path: path, Old: mustJSON(before), New: mustJSON(after)})
	}
}

// escapePointer escapes a JSON Pointer reference token (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s // most keys: no Replacer to build
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// mustJSON encodes a value that came from decodeJSON; that cannot fail.
func mustJSON(v any) json.RawMessage {
	b, err := canonicalJSON(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}
