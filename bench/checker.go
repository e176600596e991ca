package main

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// change is one event pollbridge owes: the difference, for one item,
// between two consecutive answers the load API gave pollbridge.
type change struct {
	S       int
	Key     string
	Type    string  // item.created, item.updated or item.deleted
	Version int     // version of the item now (the last known one for deletions)
	Muts    []int64 // times of the mutations it covers
	FetchAt int64   // arrival of the fetch that showed it
}

// tuple identifies a change (or a received webhook) independently of its
// webhook-id.
type tuple struct {
	S       int
	Key     string
	Type    string
	Version int
}

// checkResult compares the webhooks received with the changes owed.
type checkResult struct {
	Expected   int             // changes owed
	Received   int             // webhooks received (all receptions)
	Distinct   int             // distinct webhook-ids received
	Matched    int             // changes owed and received
	Missed     int             // changes owed and never received
	Duplicates int             // receptions of a webhook-id beyond its first
	DupChanges int             // extra webhook-ids carrying a change already received under another id
	Spurious   int             // distinct webhooks that match no owed change
	BadBodies  int             // webhooks whose body lacked type, source, key or version
	Mutations  int             // mutations made
	Collapsed  int             // mutations whose item was created and deleted between two fetches: no event is owed
	Unobserved int             // mutations made after pollbridge's last fetch of their source
	Latencies  []time.Duration // per covered mutation: first webhook − mutation
	Pipeline   []time.Duration // per change: first webhook − the fetch that showed it
	Samples    []string        // a few missed and spurious changes, for the report
}

// checkInput is what the checker needs.
type checkInput struct {
	Sources, Items int
	EmitInitial    bool
	Log            apiLog // the load API's mutation and fetch log
	Hooks          []hook // the webhooks received
}

// check works out the changes pollbridge owes and compares them with the
// webhooks received (see the package doc, "Correctness").
//
// For each source, the answers the API gave pollbridge (first pages, in
// order; each carries the generation of the data served) split the
// mutation log into intervals. The first answer is the baseline: nothing is
// owed for it, or item.created for every item with emit_initial. For each
// later answer, every item touched by a mutation since the previous answer
// owes at most one event: created (absent before, present now), deleted
// (present before, absent now; with the version last served) or updated
// (present in both, another version). An item created and deleted in one
// interval owes nothing (its mutations count as collapsed). Each owed
// change covers the mutations of its interval; the latency of a mutation
// is the arrival of the first webhook of its change minus its time.
func check(in checkInput) checkResult {
	owed, res := owe(in)
	return res.compare(owed, in.Hooks)
}

// owe returns the changes owed (see check), with the mutation counts of
// the result filled in.
func owe(in checkInput) ([]change, checkResult) {
	res := checkResult{Mutations: len(in.Log.Mutations)}
	muts := make([][]mutation, in.Sources)
	for _, m := range in.Log.Mutations {
		if m.S >= 0 && m.S < in.Sources {
			muts[m.S] = append(muts[m.S], m)
		}
	}
	fetches := make([][]served, in.Sources)
	for _, f := range in.Log.Served {
		if f.S >= 0 && f.S < in.Sources {
			fetches[f.S] = append(fetches[f.S], f)
		}
	}
	var owed []change
	for s := range in.Sources {
		slices.SortFunc(muts[s], func(a, b mutation) int { return cmp.Compare(a.G, b.G) })
		slices.SortFunc(fetches[s], func(a, b served) int { return cmp.Compare(a.At, b.At) })
		owed = append(owed, sourceChanges(s, in.Items, in.EmitInitial, muts[s], fetches[s], &res)...)
	}
	return owed, res
}

// compare fills in, from res (as owe returned it), what arrived against
// what is owed.
func (res checkResult) compare(owed []change, hooks []hook) checkResult {
	res.Expected = len(owed)
	first := map[tuple]int64{} // earliest arrival per change
	idsOf := map[tuple]int{}   // distinct webhook-ids per change
	seen := map[string]bool{}  // webhook-ids
	for _, h := range hooks {
		res.Received++
		if seen[h.ID] {
			res.Duplicates++
			continue
		}
		seen[h.ID] = true
		if h.Type == "" || h.Key == "" || h.Version == 0 {
			res.BadBodies++
		}
		s, _ := sourceIndex(h.Source)
		t := tuple{S: s, Key: h.Key, Type: h.Type, Version: h.Version}
		idsOf[t]++
		if at, ok := first[t]; !ok || h.At < at {
			first[t] = h.At
		}
	}
	res.Distinct = len(seen)
	for _, n := range idsOf {
		res.DupChanges += n - 1
	}

	want := make(map[tuple]bool, len(owed))
	for _, c := range owed {
		t := tuple{S: c.S, Key: c.Key, Type: c.Type, Version: c.Version}
		want[t] = true
		at, ok := first[t]
		if !ok {
			res.Missed++
			if len(res.Samples) < 5 {
				res.Samples = append(res.Samples, fmt.Sprintf("missed %s s%d/%s v%d", c.Type, c.S, c.Key, c.Version))
			}
			continue
		}
		res.Matched++
		if len(c.Muts) > 0 {
			res.Pipeline = append(res.Pipeline, time.Duration(at-c.FetchAt))
		}
		for _, m := range c.Muts {
			res.Latencies = append(res.Latencies, time.Duration(at-m))
		}
	}
	for t := range idsOf {
		if !want[t] {
			res.Spurious++
			if len(res.Samples) < 10 {
				res.Samples = append(res.Samples, fmt.Sprintf("spurious %s s%d/%s v%d", t.Type, t.S, t.Key, t.Version))
			}
		}
	}
	return res
}

// itemState is an item as one answer of the API showed it.
type itemState struct {
	exists  bool
	version int
}

// sourceChanges returns the changes owed for source s, given its
// mutations (by generation) and pollbridge's fetches (by time).
func sourceChanges(s, items int, emitInitial bool, muts []mutation, fetches []served, res *checkResult) []change {
	state := make(map[string]int, items) // key → version of the items present
	for n := range items {
		state[itemKey(s, n)] = 1
	}
	var out []change
	next := 0 // first mutation not applied yet
	var last uint64
	observed := false
	for _, f := range fetches {
		if observed && f.G <= last {
			continue // the same data again: nothing owed
		}
		before := map[string]itemState{}
		times := map[string][]int64{}
		for ; next < len(muts) && muts[next].G <= f.G; next++ {
			m := muts[next]
			if _, ok := before[m.K]; !ok {
				v, exists := state[m.K]
				before[m.K] = itemState{exists: exists, version: v}
			}
			switch m.T {
			case mutCreate, mutUpdate:
				state[m.K] = m.V
			case mutDelete:
				delete(state, m.K)
			}
			times[m.K] = append(times[m.K], m.At)
		}
		if !observed {
			observed = true
			last = f.G
			if emitInitial {
				for k, v := range state {
					out = append(out, change{S: s, Key: k, Type: "item.created", Version: v})
				}
			}
			continue
		}
		last = f.G
		for k, b := range before {
			v, exists := state[k]
			c := change{S: s, Key: k, Muts: times[k], FetchAt: f.At}
			switch {
			case !b.exists && exists:
				c.Type, c.Version = "item.created", v
			case b.exists && !exists:
				c.Type, c.Version = "item.deleted", b.version
			case b.exists && exists && v != b.version:
				c.Type, c.Version = "item.updated", v
			default:
				res.Collapsed += len(times[k])
				continue
			}
			out = append(out, c)
		}
	}
	res.Unobserved += len(muts) - next
	return out
}
