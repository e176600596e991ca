package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Load returns the stored state of source. An unknown source has Generation
// 0 and empty, non-nil maps. It fails if ctx is done before or during the read.
func (s *Store) Load(ctx context.Context, source string) (store.State, error) {
	return s.load(ctx, source, true)
}

// LoadMeta implements store.Store: Load without the items, from the meta
// cache when it holds the source.
func (s *Store) LoadMeta(ctx context.Context, source string) (store.State, error) {
	if err := ctx.Err(); err != nil {
		return store.State{}, fmt.Errorf("load state: %w", err)
	}
	if st, ok := s.meta.get(source); ok {
		return st, nil
	}
	version := s.meta.current()
	st, err := s.load(ctx, source, false)
	if err == nil {
		s.meta.put(source, version, st)
	}
	return st, err
}

func (s *Store) load(ctx context.Context, source string, withItems bool) (store.State, error) {
	st := store.State{Meta: map[string]string{}} // Items: sized below, or empty at the end
	err := s.view(ctx, func(tx *bolt.Tx) error {
		sb := sourceBucket(tx, source)
		if sb == nil {
			return nil
		}
		st.Generation = generation(sb)
		if ib := sb.Bucket([]byte(bucketItems)); ib != nil && withItems {
			c := ib.Cursor()
			// Counting first (the pages are mapped: no copies) sizes the
			// map and the decoder's memory once instead of growing them.
			var size itemsSize
			for k, v := c.First(); k != nil; k, v = c.Next() {
				size.count(k, v)
			}
			dec := newItemsDecoder(size)
			n := 0
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if n++; n%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				if err := dec.add(k, v); err != nil {
					return fmt.Errorf("item %q: %w", k, err)
				}
			}
			st.Items = make(map[string]store.Item, size.n)
			dec.fill(st.Items)
		}
		if mb := sb.Bucket([]byte(bucketMeta)); mb != nil {
			return mb.ForEach(func(k, v []byte) error {
				st.Meta[string(k)] = string(v)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return store.State{}, fmt.Errorf("load state: %w", err)
	}
	if st.Items == nil {
		st.Items = map[string]store.Item{}
	}
	return st, nil
}

// Commit applies c in one fsynced transaction, which commits made at about
// the same time share (see batch): items, meta, the generation and the
// deliveries are all written, or nothing is. It fails with an error
// wrapping store.ErrConflict unless c.Generation is the stored generation.
//
// Deliveries get Created and Due set to the commit time when zero (a non-zero
// Due is kept) and a fresh commit-order sequence. A delivery for an item that
// has an outstanding delivery to the same sink waits behind it (see
// store.Store). A delivery whose ID is
// already in the outbox or the dead letters is skipped, as is a repeat of an
// ID within c: the first one stays. Deletes are applied before upserts.
func (s *Store) Commit(ctx context.Context, c store.Commit) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	now := time.Now()
	defer s.meta.drop(c.Source) // after the transaction, whatever its outcome
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		sb, err := tx.Bucket([]byte(bucketSources)).CreateBucketIfNotExists([]byte(c.Source))
		if err != nil {
			return fmt.Errorf("create source bucket: %w", err)
		}
		if gen := generation(sb); gen != c.Generation {
			return fmt.Errorf("commit computed on generation %d, stored generation is %d: %w", c.Generation, gen, store.ErrConflict)
		}
		if err := writeItems(sb, c); err != nil {
			return err
		}
		if c.Meta != nil {
			if err := writeMeta(sb, c.Meta); err != nil {
				return err
			}
		}
		if err := sb.Put([]byte(keyGen), binary.BigEndian.AppendUint64(nil, c.Generation+1)); err != nil {
			return fmt.Errorf("write generation: %w", err)
		}
		return addDeliveries(tx, c.Deliveries, now)
	})
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func writeItems(sb *bolt.Bucket, c store.Commit) error {
	if len(c.Upsert) == 0 && len(c.Delete) == 0 {
		return nil
	}
	ib, err := sb.CreateBucketIfNotExists([]byte(bucketItems))
	if err != nil {
		return fmt.Errorf("create items bucket: %w", err)
	}
	for _, k := range c.Delete {
		if k == "" {
			continue
		}
		if err := ib.Delete([]byte(k)); err != nil {
			return fmt.Errorf("delete item %q: %w", k, err)
		}
	}
	// In key order: bbolt inserts in order cheaply, in random (map) order
	// at a cost that grows with the keys already written in the
	// transaction (a 100,000-item baseline took seconds).
	for _, k := range slices.Sorted(maps.Keys(c.Upsert)) {
		it := c.Upsert[k]
		if err := ib.Put([]byte(k), encodeItem(it)); err != nil {
			return fmt.Errorf("write item %q: %w", k, err)
		}
	}
	return nil
}

func writeMeta(sb *bolt.Bucket, meta map[string]string) error {
	if sb.Bucket([]byte(bucketMeta)) != nil {
		if err := sb.DeleteBucket([]byte(bucketMeta)); err != nil {
			return fmt.Errorf("clear meta: %w", err)
		}
	}
	mb, err := sb.CreateBucket([]byte(bucketMeta))
	if err != nil {
		return fmt.Errorf("create meta bucket: %w", err)
	}
	for k, v := range meta {
		if err := mb.Put([]byte(k), []byte(v)); err != nil {
			return fmt.Errorf("write meta %q: %w", k, err)
		}
	}
	return nil
}

func addDeliveries(tx *bolt.Tx, ds []store.Delivery, now time.Time) error {
	if len(ds) == 0 {
		return nil
	}
	ob := outbox(tx)
	// The records are saved in ID order after the loop: bbolt inserts in
	// key order cheaply, in random order (IDs are hashes) at a cost that
	// grows with the keys already written in the transaction.
	recs := make([]*record, 0, len(ds))
	added := make(map[string]bool, len(ds))
	for _, d := range ds {
		if added[d.ID] || ob.Get([]byte(d.ID)) != nil {
			continue
		}
		added[d.ID] = true
		seq, err := ob.NextSequence()
		if err != nil {
			return fmt.Errorf("add delivery %q: %w", d.ID, err)
		}
		if d.Created.IsZero() {
			d.Created = now
		}
		if d.Due.IsZero() {
			d.Due = now
		}
		d.Dead = time.Time{}
		r := &record{d: d, seq: seq, at: nanos(d.Due)}
		if err := enqueueIndexes(tx, r); err != nil {
			return fmt.Errorf("add delivery %q: %w", d.ID, err)
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b *record) int { return strings.Compare(a.d.ID, b.d.ID) })
	for _, r := range recs {
		if err := putRecord(ob, r); err != nil {
			return fmt.Errorf("add delivery %q: %w", r.d.ID, err)
		}
	}
	return nil
}

func sourceBucket(tx *bolt.Tx, source string) *bolt.Bucket {
	srcs := tx.Bucket([]byte(bucketSources))
	if srcs == nil || source == "" {
		return nil
	}
	return srcs.Bucket([]byte(source))
}

func generation(sb *bolt.Bucket) uint64 {
	v := sb.Get([]byte(keyGen))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
