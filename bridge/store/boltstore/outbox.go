package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Claim returns up to max deliveries of sink due at now, oldest due first and
// in commit order among equal times, and hides them from other claims until
// now+lease. max must be positive and lease longer than zero. Only the head
// of each item (see store.Store) is in due/<sink>, so Claim never looks at
// the deliveries waiting behind one.
func (s *Store) Claim(ctx context.Context, sink string, now time.Time, max int, lease time.Duration) ([]store.Delivery, error) {
	if max <= 0 || lease <= 0 {
		return nil, fmt.Errorf("claim: max %d and lease %v must be positive", max, lease)
	}
	limit := timePrefix(nanos(now))
	// A dispatcher asks about once a second even when nothing waits, and
	// bbolt writes and fsyncs its meta page for every write transaction,
	// changed or not: a read transaction answers "nothing due" without one.
	var anyDue bool
	if err := s.view(ctx, func(tx *bolt.Tx) error {
		anyDue = firstDue(tx, sink, limit)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if !anyDue {
		return nil, nil
	}
	var out []store.Delivery
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = nil
		due, _ := sinkBucket(tx, bucketDue, sink, false)
		if due == nil {
			return nil
		}
		var hits [][]byte // delivery IDs
		c := due.Cursor()
		for k, v := c.First(); k != nil && len(hits) < max; k, v = c.Next() {
			if bytes.Compare(k[:8], limit) > 0 {
				break
			}
			hits = append(hits, bytes.Clone(v[1:]))
		}
		ob, claimed := outbox(tx), tx.Bucket([]byte(bucketClaimed))
		until := nanos(now.Add(lease))
		for _, id := range hits {
			r, err := indexedRecord(ob, id)
			if err != nil {
				return err
			}
			// The record is not rewritten: claimed/ keeps where its due
			// entry went (see getRecord).
			if err := moveDueIndex(tx, r, until); err != nil {
				return err
			}
			if err := claimed.Put(id, binary.BigEndian.AppendUint64(nil, uint64(until))); err != nil {
				return fmt.Errorf("mark %q claimed: %w", id, err)
			}
			out = append(out, r.d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return out, nil
}

// firstDue reports whether sink has a delivery due at limit (a timePrefix)
// or earlier.
func firstDue(tx *bolt.Tx, sink string, limit []byte) bool {
	due, _ := sinkBucket(tx, bucketDue, sink, false)
	if due == nil {
		return false
	}
	k, _ := due.Cursor().First()
	return k != nil && bytes.Compare(k[:8], limit) <= 0
}

// Settle implements store.Store: every outcome in one transaction, so one
// fsync for the batch. An ack removes the delivery from the outbox; a retry
// takes its Attempts and LastError, ends its claim and makes it claimable
// at Due (now, when Due is zero), still the head of its item; a burial
// takes its Attempts and LastError and moves it to the dead letters of its
// sink, stamped with the current time. When an ack or a burial removes the
// head of an item, the next delivery of the item becomes due at once.
//
// An outcome whose delivery is not in the outbox (already acked, or dead)
// fails with store.ErrNotFound, and one with an unknown Op with an error of
// its own, before anything is written for it; the others are recorded all
// the same. Any other failure rolls the whole batch back and is every
// outcome's error.
func (s *Store) Settle(ctx context.Context, outcomes []store.Outcome) []error {
	errs := make([]error, len(outcomes))
	now := time.Now()
	err := s.update(ctx, func(tx *bolt.Tx) error {
		for i, o := range outcomes {
			errs[i] = nil
			err := settle(tx, o, now)
			switch {
			case err == nil:
			case errors.Is(err, store.ErrNotFound), errors.Is(err, errUnknownOp):
				errs[i] = fmt.Errorf("settle %q: %w", o.Delivery.ID, err) // nothing written for it
			default:
				return fmt.Errorf("settle %q: %w", o.Delivery.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("settle: %w", err)
		}
	}
	return errs
}

var errUnknownOp = errors.New("unknown op")

// settle records o in tx as of now. It fails with store.ErrNotFound when
// the delivery is not live, and with errUnknownOp, having written nothing
// in either case.
func settle(tx *bolt.Tx, o store.Outcome, now time.Time) error {
	r, err := liveRecord(tx, o.Delivery.ID)
	if err != nil {
		return err
	}
	switch o.Op {
	case store.OpAck:
		if err := unlink(tx, r, now); err != nil {
			return err
		}
		return outbox(tx).Delete([]byte(r.d.ID))
	case store.OpRetry:
		due := o.Due
		if due.IsZero() {
			due = now
		}
		return retry(tx, r, o.Delivery, due)
	case store.OpBury:
		return bury(tx, r, o.Delivery, now)
	}
	return fmt.Errorf("%w %d", errUnknownOp, o.Op)
}

// retry is settle's OpRetry: r, d's live record, takes d's Attempts and
// LastError and is due at due.
func retry(tx *bolt.Tx, r *record, d store.Delivery, due time.Time) error {
	head, err := isHead(tx, r)
	if err != nil {
		return err
	}
	if err := dropLive(tx, r); err != nil {
		return err
	}
	r.d.Attempts, r.d.LastError, r.d.Due = d.Attempts, d.LastError, due
	if err := putLive(tx, r); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bucketClaimed)).Delete([]byte(d.ID)); err != nil {
		return err
	}
	fifo, err := sinkBucket(tx, bucketFifo, r.d.Sink, true)
	if err != nil {
		return err
	}
	if err := fifo.Put(r.fifoKey(), r.dueValue()); err != nil { // the retrying flag
		return err
	}
	if !head {
		// It waits behind an older delivery of its item (only a caller
		// that never claimed it can retry it): it keeps waiting.
		r.at = nanos(due)
		return putRecord(outbox(tx), r)
	}
	return moveDue(tx, r, nanos(due))
}

// bury is settle's OpBury: r, d's live record, takes d's Attempts and
// LastError and goes to the dead letters, stamped now.
func bury(tx *bolt.Tx, r *record, d store.Delivery, now time.Time) error {
	if err := unlink(tx, r, now); err != nil {
		return err
	}
	r.d.Attempts, r.d.LastError, r.d.Dead = d.Attempts, d.LastError, now
	r.at = nanos(now)
	dead, err := sinkBucket(tx, bucketDead, r.d.Sink, true)
	if err != nil {
		return err
	}
	if err := dead.Put(r.key(), []byte(r.d.ID)); err != nil {
		return err
	}
	return putRecord(outbox(tx), r)
}

// unlink takes a live record out of due/<sink>, claimed, live/<sink> and
// the fifo of its item, and when it was the item's head makes the next one
// the head, due at now or its own due time, whichever is later.
func unlink(tx *bolt.Tx, r *record, now time.Time) error {
	if err := dropLive(tx, r); err != nil {
		return err
	}
	due, err := sinkBucket(tx, bucketDue, r.d.Sink, false)
	if err != nil {
		return err
	}
	head := false
	if due != nil && due.Get(r.key()) != nil {
		head = true
		if err := due.Delete(r.key()); err != nil {
			return err
		}
	}
	if err := tx.Bucket([]byte(bucketClaimed)).Delete([]byte(r.d.ID)); err != nil {
		return err
	}
	fifo, err := sinkBucket(tx, bucketFifo, r.d.Sink, false)
	if err != nil || fifo == nil {
		return err
	}
	if err := fifo.Delete(r.fifoKey()); err != nil {
		return err
	}
	if !head {
		return nil
	}
	_, v := headOf(fifo, r)
	if v == nil {
		return nil
	}
	next, err := indexedRecord(outbox(tx), v[1:])
	if err != nil {
		return err
	}
	if due.Get(next.key()) != nil {
		return nil // already due (cannot happen while the fifo is consistent)
	}
	if next.d.Due.Before(now) {
		if err := dropLive(tx, next); err != nil {
			return err
		}
		next.d.Due = now
		if err := putLive(tx, next); err != nil {
			return err
		}
	}
	next.at = nanos(next.d.Due)
	if err := due.Put(next.key(), next.dueValue()); err != nil {
		return fmt.Errorf("promote delivery %q: %w", next.d.ID, err)
	}
	return putRecord(outbox(tx), next)
}

// enqueue adds a live record, new to the outbox or replayed, at the end of
// the fifo of its item and to live/<sink>. When no older delivery of the
// item is outstanding it becomes the head: due/<sink> gets its entry at
// r.at. It saves r.
func enqueue(tx *bolt.Tx, r *record) error {
	if err := enqueueIndexes(tx, r); err != nil {
		return err
	}
	return putRecord(outbox(tx), r)
}

// enqueueIndexes is enqueue without saving r.
func enqueueIndexes(tx *bolt.Tx, r *record) error {
	fifo, err := sinkBucket(tx, bucketFifo, r.d.Sink, true)
	if err != nil {
		return err
	}
	if err := putLive(tx, r); err != nil {
		return err
	}
	busy, _ := headOf(fifo, r)
	if err := fifo.Put(r.fifoKey(), r.dueValue()); err != nil {
		return fmt.Errorf("queue delivery %q: %w", r.d.ID, err)
	}
	due, err := sinkBucket(tx, bucketDue, r.d.Sink, true)
	if err != nil {
		return err
	}
	if busy == nil {
		if err := due.Put(r.key(), r.dueValue()); err != nil {
			return fmt.Errorf("queue delivery %q: %w", r.d.ID, err)
		}
	}
	return nil
}

// putLive gives a live record its entry in live/<sink>, at its Due.
func putLive(tx *bolt.Tx, r *record) error {
	live, err := sinkBucket(tx, bucketLive, r.d.Sink, true)
	if err != nil {
		return err
	}
	if err := live.Put(r.liveKey(), []byte(r.d.ID)); err != nil {
		return fmt.Errorf("list delivery %q: %w", r.d.ID, err)
	}
	return nil
}

// dropLive removes a record's entry from live/<sink>, found by its Due as
// stored; call it before changing the Due.
func dropLive(tx *bolt.Tx, r *record) error {
	live, err := sinkBucket(tx, bucketLive, r.d.Sink, false)
	if err != nil || live == nil {
		return err
	}
	if err := live.Delete(r.liveKey()); err != nil {
		return fmt.Errorf("unlist delivery %q: %w", r.d.ID, err)
	}
	return nil
}

// headOf returns the first fifo entry of r's item (its head): key and
// value, copied; nil when the item has none.
func headOf(fifo *bolt.Bucket, r *record) (key, value []byte) {
	prefix := fifoPrefix(r.d.Source, r.d.Key)
	k, v := fifo.Cursor().Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, nil
	}
	return bytes.Clone(k), bytes.Clone(v)
}

// isHead reports whether a live record is the head of its item, that is,
// has an entry in due/<sink> (where r.at says).
func isHead(tx *bolt.Tx, r *record) (bool, error) {
	due, err := sinkBucket(tx, bucketDue, r.d.Sink, false)
	if err != nil || due == nil {
		return false, err
	}
	return due.Get(r.key()) != nil, nil
}

// Dead lists the dead letters of sink, or of every sink when sink is "", in
// the order they died.
func (s *Store) Dead(ctx context.Context, sink string) ([]store.Delivery, error) {
	var out []store.Delivery
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = nil
		keys, err := deadKeys(tx, sink)
		if err != nil {
			return err
		}
		ob := outbox(tx)
		for _, k := range keys {
			r, err := indexedRecord(ob, k.id)
			if err != nil {
				return err
			}
			out = append(out, r.d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Replay moves dead letters back into the outbox, due now, with Attempts 0
// (LastError is kept for the record). ids selects them by delivery ID, and
// then sink, if not "", must be theirs; nil ids selects every dead letter of
// sink ("" = every sink). Replay is all or nothing: an id that is not a dead
// letter fails it with store.ErrNotFound and moves none.
//
// The replayed deliveries join the outbox in their original commit order,
// with fresh sequence numbers: each one queues behind the outstanding
// deliveries of its item, or becomes its head when there are none.
func (s *Store) Replay(ctx context.Context, sink string, ids []string) (int, error) {
	now := time.Now()
	n := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		ob := outbox(tx)
		var recs []*record
		if ids == nil {
			keys, err := deadKeys(tx, sink)
			if err != nil {
				return err
			}
			for _, k := range keys {
				r, err := indexedRecord(ob, k.id)
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
		} else {
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] {
					continue
				}
				seen[id] = true
				r, err := getRecord(ob, []byte(id))
				if err == nil && (!r.dead() || (sink != "" && r.d.Sink != sink)) {
					err = store.ErrNotFound
				}
				if err != nil {
					return fmt.Errorf("dead letter %q: %w", id, err)
				}
				recs = append(recs, r)
			}
		}
		slices.SortFunc(recs, func(a, b *record) int { return cmp.Compare(a.seq, b.seq) })
		for _, r := range recs {
			dead, err := sinkBucket(tx, bucketDead, r.d.Sink, false)
			if err != nil {
				return err
			}
			if dead != nil {
				if err := dead.Delete(r.key()); err != nil {
					return err
				}
			}
			seq, err := ob.NextSequence()
			if err != nil {
				return err
			}
			r.seq = seq
			r.d.Attempts, r.d.Dead, r.d.Due = 0, time.Time{}, now
			r.at = nanos(now)
			if err := enqueue(tx, r); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	return n, nil
}

// Stats counts the outbox per sink. Every sink that ever had a delivery is
// listed, with zero counts when it has none now. Deliveries waiting behind
// an older one of their item count as Pending (or Retrying, if they failed
// before). now is not used: counts do not depend on due times.
func (s *Store) Stats(ctx context.Context, now time.Time) (map[string]store.SinkStats, error) {
	out := map[string]store.SinkStats{}
	count := func(b *bolt.Bucket, st *store.SinkStats) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			if len(v) > 0 && v[0] == flagRetrying {
				st.Retrying++
			} else {
				st.Pending++
			}
			return nil
		})
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		// Every live delivery has a fifo entry; a version 1 file (read-only)
		// has no fifo bucket and every live delivery in due.
		fifo := tx.Bucket([]byte(bucketFifo))
		if due := tx.Bucket([]byte(bucketDue)); due != nil {
			err := due.ForEachBucket(func(sink []byte) error {
				st := out[string(sink)]
				b := due.Bucket(sink)
				if fifo != nil {
					b = fifo.Bucket(sink)
				}
				err := count(b, &st)
				out[string(sink)] = st
				return err
			})
			if err != nil {
				return err
			}
		}
		if dead := tx.Bucket([]byte(bucketDead)); dead != nil {
			return dead.ForEachBucket(func(sink []byte) error {
				st := out[string(sink)]
				st.Dead = dead.Bucket(sink).Stats().KeyN
				out[string(sink)] = st
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return out, nil
}

// Live lists the live deliveries of sink ("" = every sink) in order of
// Due, commit order among equals, at most limit (store.DefaultLiveLimit
// when limit <= 0). It walks live/<sink> from the start (every sink's
// bucket side by side when sink is ""), so it reads the deliveries it
// returns and no others. A file of an older layout opened read-only has no
// live bucket: Live then reads the whole outbox.
func (s *Store) Live(ctx context.Context, sink string, limit int) ([]store.Delivery, error) {
	if limit <= 0 {
		limit = store.DefaultLiveLimit
	}
	var out []store.Delivery
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = nil
		live := tx.Bucket([]byte(bucketLive))
		if live == nil {
			var err error
			out, err = scanLive(tx, sink, limit)
			return err
		}
		var cursors []*liveCursor
		add := func(b *bolt.Bucket) {
			c := &liveCursor{c: b.Cursor()}
			if c.k, c.v = c.c.First(); c.k != nil {
				cursors = append(cursors, c)
			}
		}
		if sink != "" {
			if b := live.Bucket([]byte(sink)); b != nil {
				add(b)
			}
		} else if err := live.ForEachBucket(func(name []byte) error { add(live.Bucket(name)); return nil }); err != nil {
			return err
		}
		ob := outbox(tx)
		for len(out) < limit && len(cursors) > 0 {
			if len(out)%256 == 255 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			// Keys are Due then the outbox's global seq: the smallest one
			// across sinks is next.
			i := 0
			for j := 1; j < len(cursors); j++ {
				if bytes.Compare(cursors[j].k, cursors[i].k) < 0 {
					i = j
				}
			}
			c := cursors[i]
			r, err := indexedRecord(ob, c.v)
			if err != nil {
				return err
			}
			out = append(out, r.d)
			if c.k, c.v = c.c.Next(); c.k == nil {
				cursors = slices.Delete(cursors, i, i+1)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list live deliveries: %w", err)
	}
	return out, nil
}

// liveCursor walks one live/<sink> bucket; k and v are its current entry.
type liveCursor struct {
	c    *bolt.Cursor
	k, v []byte
}

// scanLive is Live for a file without the live bucket (an older layout,
// opened read-only): it reads every record of the outbox.
func scanLive(tx *bolt.Tx, sink string, limit int) ([]store.Delivery, error) {
	var recs []*record
	ob := outbox(tx)
	if ob == nil {
		return nil, nil
	}
	err := ob.ForEach(func(_, v []byte) error {
		r, err := decodeRecord(v)
		if err == nil && !r.dead() && (sink == "" || r.d.Sink == sink) {
			recs = append(recs, r)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b *record) int {
		return cmp.Or(a.d.Due.Compare(b.d.Due), cmp.Compare(a.seq, b.seq))
	})
	out := make([]store.Delivery, 0, min(limit, len(recs)))
	for _, r := range recs[:min(limit, len(recs))] {
		out = append(out, r.d)
	}
	return out, nil
}

// Ping reports whether the state file is open: it fails once the Store is
// closed.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.view(ctx, func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("ping state file %s: %w", s.path, err)
	}
	return nil
}

func outbox(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket([]byte(bucketOutbox)) }

// sinkBucket returns the per-sink sub-bucket of the due or dead bucket; nil
// when it does not exist and create is false.
func sinkBucket(tx *bolt.Tx, parent, sink string, create bool) (*bolt.Bucket, error) {
	p := tx.Bucket([]byte(parent))
	if p == nil || sink == "" {
		if create {
			return nil, fmt.Errorf("no %s bucket for sink %q", parent, sink)
		}
		return nil, nil
	}
	if !create {
		return p.Bucket([]byte(sink)), nil
	}
	b, err := p.CreateBucketIfNotExists([]byte(sink))
	if err != nil {
		return nil, fmt.Errorf("create %s bucket of sink %q: %w", parent, sink, err)
	}
	return b, nil
}

// getRecord reads the record of delivery id. For a claimed delivery, the
// time of its due entry comes from claimed/ (Claim does not rewrite the
// record); a claim made by schema 3 left it empty and the record right.
func getRecord(ob *bolt.Bucket, id []byte) (*record, error) {
	if ob == nil || len(id) == 0 {
		return nil, store.ErrNotFound
	}
	v := ob.Get(id)
	if v == nil {
		return nil, store.ErrNotFound
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, err
	}
	if claimed := ob.Tx().Bucket([]byte(bucketClaimed)); claimed != nil {
		if at := claimed.Get(id); len(at) == 8 {
			r.at = int64(binary.BigEndian.Uint64(at))
		}
	}
	return r, nil
}

// liveRecord returns the record of a delivery that is in the outbox and not
// dead, or store.ErrNotFound.
func liveRecord(tx *bolt.Tx, id string) (*record, error) {
	r, err := getRecord(outbox(tx), []byte(id))
	if err != nil {
		return nil, err
	}
	if r.dead() {
		return nil, fmt.Errorf("it is a dead letter: %w", store.ErrNotFound)
	}
	return r, nil
}

func putRecord(ob *bolt.Bucket, r *record) error {
	b, err := encodeRecord(r)
	if err != nil {
		return err
	}
	if err := ob.Put([]byte(r.d.ID), b); err != nil {
		return fmt.Errorf("write delivery %q: %w", r.d.ID, err)
	}
	return nil
}

// moveDue moves a live record's due entry to time at and saves the record.
func moveDue(tx *bolt.Tx, r *record, at int64) error {
	if err := moveDueIndex(tx, r, at); err != nil {
		return err
	}
	return putRecord(outbox(tx), r)
}

// moveDueIndex is moveDue without saving the record.
func moveDueIndex(tx *bolt.Tx, r *record, at int64) error {
	due, err := sinkBucket(tx, bucketDue, r.d.Sink, true)
	if err != nil {
		return err
	}
	if err := due.Delete(r.key()); err != nil {
		return fmt.Errorf("move delivery %q: %w", r.d.ID, err)
	}
	r.at = at
	if err := due.Put(r.key(), r.dueValue()); err != nil {
		return fmt.Errorf("move delivery %q: %w", r.d.ID, err)
	}
	return nil
}

type deadKey struct {
	key, id []byte
}

// deadKeys lists the dead index entries of sink ("" = all sinks) in the order
// the deliveries died.
func deadKeys(tx *bolt.Tx, sink string) ([]deadKey, error) {
	dead := tx.Bucket([]byte(bucketDead))
	if dead == nil {
		return nil, nil
	}
	var out []deadKey
	collect := func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			out = append(out, deadKey{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
	}
	if sink != "" {
		if b := dead.Bucket([]byte(sink)); b != nil {
			return out, collect(b)
		}
		return nil, nil
	}
	err := dead.ForEachBucket(func(name []byte) error { return collect(dead.Bucket(name)) })
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b deadKey) int { return bytes.Compare(a.key, b.key) })
	return out, nil
}

// indexedRecord returns the record that an index entry names; a missing one
// means the file is damaged, which is not the caller's ErrNotFound.
func indexedRecord(ob *bolt.Bucket, id []byte) (*record, error) {
	r, err := getRecord(ob, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("index names delivery %q, which is missing: state file is damaged", id)
	}
	return r, err
}
