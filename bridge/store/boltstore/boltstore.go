package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// ErrInUse is returned (wrapped) by Open when another process, or another
// open Store of this process, holds the state file.
var ErrInUse = errors.New("it is in use by another pollbridge process")

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// schemaVersion is the layout version written to the pollbridge bucket.
// Version 1 had no fifo bucket (no per-item order), version 2 no live
// bucket; Open upgrades both, and a read-only Open reads them as they are.
// Version 3 kept a claim's due time in the record, version 4 keeps it in
// claimed/ (older claims, with an empty value, still read right); an older
// pollbridge refuses a version 4 file rather than misread its claims.
const schemaVersion = 4

// Bucket and key names; see the package doc for the layout.
const (
	bucketRoot    = "pollbridge"
	keySchema     = "schema"
	bucketSources = "sources"
	keyGen        = "gen"
	bucketItems   = "items"
	bucketMeta    = "meta"
	bucketOutbox  = "outbox"
	bucketDue     = "due"
	bucketDead    = "dead"
	bucketClaimed = "claimed"
	bucketFifo    = "fifo"
	bucketLive    = "live"
)

// Options configures Open.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another
	// process before it fails with ErrInUse. Zero or less means
	// DefaultTimeout.
	Timeout time.Duration
	// ReadOnly opens an existing file for reading (Load, Dead, Stats, Live) with a
	// shared lock; every method that writes fails. It still cannot open a
	// file that a running daemon holds.
	ReadOnly bool
}

// Store is the bbolt-backed store.Store. Its methods are safe for concurrent
// use; write methods are serialised by bbolt's single writer.
type Store struct {
	db   *bolt.DB
	path string

	// Leases live in memory: bbolt's file lock admits one process, so
	// they only ever coordinate goroutines of this one.
	leaseMu sync.Mutex
	leases  map[pollTick]lease
	swept   time.Time // when expired leases were last dropped
	// replicas: owner → alive until (see Replicas)
	replicas map[string]time.Time

	meta *metaCache // LoadMeta's (and StartPolls's) reads
}

// lease is one held lease.
// pollTick names a lease: one tick of one source.
type pollTick struct{ source, tick string }

type lease struct {
	owner string
	until time.Time
}

var _ store.Store = (*Store)(nil)

// Open opens, creating it and its directory if needed, the state file at
// path. It fails with an error wrapping ErrInUse when the file stays locked
// for opts.Timeout. Unless ReadOnly, it makes every delivery that an earlier
// process claimed but never finished claimable at once.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("open state file %s: %w", path, err)
		}
	}
	// The freelist is not written at each commit (less to fsync) but
	// rebuilt by a scan of the file at Open; the map freelist finds free
	// pages without a linear search.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: opts.ReadOnly, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open state file %s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	// Commits that arrive within 2 ms share a transaction (see batch):
	// long enough to gather the polls of one scheduler batch, short
	// enough not to matter to a lone commit.
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &Store{db: db, path: path, leases: map[pollTick]lease{}, replicas: map[string]time.Time{}, meta: newMetaCache()}
	if opts.ReadOnly {
		err = db.View(checkSchema)
	} else {
		err = db.Update(s.initialize)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	return s, nil
}

// leaseSweep is how often takeLease drops expired leases: each lease is one
// tick of one source, so sweeping at every call would cost O(sources).
const leaseSweep = time.Second

// takeLease takes the lease of tick for owner until ttl after now, unless
// another owner holds it; an owner that holds it extends it. It reports
// whether owner holds the lease now. Leases are kept in memory (see
// Store); the caller holds leaseMu.
func (s *Store) takeLease(tick pollTick, owner string, ttl time.Duration, now time.Time) bool {
	if l, ok := s.leases[tick]; ok && l.owner != owner && now.Before(l.until) {
		return false
	}
	if now.After(s.swept.Add(leaseSweep)) { // drop expired leases so the map stays small
		for t, l := range s.leases {
			if !now.Before(l.until) {
				delete(s.leases, t)
			}
		}
		s.swept = now
	}
	s.leases[tick] = lease{owner: owner, until: now.Add(ttl)}
	return true
}

// StartPolls implements store.Store: per tick, an in-memory lease named
// after the source and the tick, then LoadMeta (from its cache).
func (s *Store) StartPolls(ctx context.Context, owner string, ttl time.Duration, ticks []store.PollTick) []store.PollStart {
	out := make([]store.PollStart, len(ticks))
	if err := ctx.Err(); err != nil {
		for i, t := range ticks {
			out[i].Err = fmt.Errorf("start poll %s: %w", t.Source, err)
		}
		return out
	}
	held := make([]bool, len(ticks))
	s.leaseMu.Lock()
	now := time.Now()
	for i, t := range ticks {
		switch {
		case t.Source == "" || t.Tick == "" || owner == "" || ttl <= 0:
			out[i].Err = errors.New("start poll: source, tick, owner and a positive ttl are required")
		default:
			held[i] = s.takeLease(pollTick{t.Source, t.Tick}, owner, ttl, now)
		}
	}
	s.leaseMu.Unlock()
	for i, t := range ticks {
		if !held[i] {
			continue
		}
		st, err := s.LoadMeta(ctx, t.Source)
		if err != nil {
			out[i].Err = fmt.Errorf("start poll %s: %w", t.Source, err)
			continue
		}
		out[i].State, out[i].Held = st, true
	}
	return out
}

// Replicas implements store.Store. A bbolt file belongs to one process, so
// the replicas are the engines of this process that share the Store.
func (s *Store) Replicas(ctx context.Context, owner string, ttl time.Duration) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if owner == "" || ttl <= 0 {
		return 0, errors.New("replicas: owner and a positive ttl are required")
	}
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	now := time.Now()
	s.replicas[owner] = now.Add(ttl)
	for o, until := range s.replicas {
		if !now.Before(until) {
			delete(s.replicas, o)
		}
	}
	return len(s.replicas), nil
}

// Path returns the path of the state file.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock. It waits for running transactions.
func (s *Store) Close() error {
	s.meta.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state file %s: %w", s.path, err)
	}
	return nil
}

// checkSchema accepts a file that was never initialised and the layout
// versions this pollbridge reads (1 to schemaVersion).
func checkSchema(tx *bolt.Tx) error {
	_, err := schema(tx)
	return err
}

// schema returns the file's layout version; 0 for a file that was never
// initialised.
func schema(tx *bolt.Tx) (uint64, error) {
	root := tx.Bucket([]byte(bucketRoot))
	if root == nil {
		if tx.Bucket([]byte(bucketSources)) != nil {
			return 0, errors.New("check schema: not a pollbridge state file")
		}
		return 0, nil // a file that was never initialised reads as empty
	}
	v := root.Get([]byte(keySchema))
	if len(v) != 8 {
		return 0, errors.New("check schema: missing schema version")
	}
	n := binary.BigEndian.Uint64(v)
	if n < 1 || n > schemaVersion {
		return 0, fmt.Errorf("check schema: file has schema version %d, this pollbridge reads 1 to %d", n, schemaVersion)
	}
	return n, nil
}

// initialize creates the buckets, upgrades a version 1, 2 or 3 layout and
// releases abandoned claims.
func (s *Store) initialize(tx *bolt.Tx) error {
	if tx.Bucket([]byte(bucketRoot)) == nil && firstBucket(tx) != "" {
		return fmt.Errorf("check schema: not a pollbridge state file (has bucket %q)", firstBucket(tx))
	}
	root, err := tx.CreateBucketIfNotExists([]byte(bucketRoot))
	if err != nil {
		return fmt.Errorf("create buckets: %w", err)
	}
	if root.Get([]byte(keySchema)) == nil {
		if err := root.Put([]byte(keySchema), binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
			return fmt.Errorf("create buckets: %w", err)
		}
	}
	version, err := schema(tx)
	if err != nil {
		return err
	}
	for _, name := range []string{bucketSources, bucketOutbox, bucketDue, bucketDead, bucketClaimed, bucketFifo, bucketLive} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create buckets: %w", err)
		}
	}
	if version < schemaVersion {
		if version < 2 {
			if err := upgradeFifo(tx); err != nil {
				return fmt.Errorf("upgrade schema: %w", err)
			}
		}
		if version < 3 {
			if err := upgradeLive(tx); err != nil {
				return fmt.Errorf("upgrade schema: %w", err)
			}
		}
		// Version 3 to 4 changes nothing stored: getRecord reads both
		// kinds of claims.
		if err := root.Put([]byte(keySchema), binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
			return fmt.Errorf("upgrade schema: %w", err)
		}
	}
	return releaseClaims(tx)
}

// upgradeLive gives every live delivery of a version 1 or 2 outbox its
// entry in live/<sink>.
func upgradeLive(tx *bolt.Tx) error {
	return outbox(tx).ForEach(func(_, v []byte) error {
		r, err := decodeRecord(v)
		if err != nil || r.dead() {
			return err
		}
		return putLive(tx, r)
	})
}

// upgradeFifo turns a version 1 outbox, where every live delivery was in
// due/<sink>, into a version 2 one: every live delivery enters the fifo of
// its (sink, source, key) in commit order, and all but the oldest of each
// key leave due/<sink> to wait for it.
func upgradeFifo(tx *bolt.Tx) error {
	ob := outbox(tx)
	var live []*record
	err := ob.ForEach(func(_, v []byte) error {
		r, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if !r.dead() {
			live = append(live, r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(live, func(a, b *record) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range live {
		fifo, err := sinkBucket(tx, bucketFifo, r.d.Sink, true)
		if err != nil {
			return err
		}
		if head, _ := headOf(fifo, r); head != nil {
			// A younger one of a busy key: it waits now.
			due, err := sinkBucket(tx, bucketDue, r.d.Sink, true)
			if err != nil {
				return err
			}
			if err := due.Delete(r.key()); err != nil {
				return err
			}
		}
		if err := fifo.Put(r.fifoKey(), r.dueValue()); err != nil {
			return err
		}
	}
	return nil
}
func firstBucket(tx *bolt.Tx) string {
	k, _ := tx.Cursor().First()
	return string(k)
}

// releaseClaims makes every claimed delivery due at its due time again. Only
// Open calls it: the file lock proves that whoever claimed them is gone.
// Only the head of a key is ever claimed; a claimed delivery that waits
// behind another (left by an upgrade from version 1) stays waiting.
func releaseClaims(tx *bolt.Tx) error {
	claimed := tx.Bucket([]byte(bucketClaimed))
	var ids [][]byte
	if err := claimed.ForEach(func(k, _ []byte) error {
		ids = append(ids, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return fmt.Errorf("release claims: %w", err)
	}
	ob := outbox(tx)
	for _, id := range ids {
		r, err := getRecord(ob, id) // before the claim goes: it says where the due entry is
		if err := claimed.Delete(id); err != nil {
			return fmt.Errorf("release claims: %w", err)
		}
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return fmt.Errorf("release claims: %w", err)
		}
		if r.dead() {
			continue
		}
		fifo, err := sinkBucket(tx, bucketFifo, r.d.Sink, true)
		if err != nil {
			return fmt.Errorf("release claims: %w", err)
		}
		if head, _ := headOf(fifo, r); head != nil && !bytes.Equal(head, r.fifoKey()) {
			continue
		}
		if err := moveDue(tx, r, nanos(r.d.Due)); err != nil {
			return fmt.Errorf("release claims: %w", err)
		}
	}
	return nil
}

// update runs fn in a write transaction unless ctx is already done.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		// The write lock may have taken a while.
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(tx)
	})
}

// batch runs fn in a write transaction shared with the other batch calls
// made at about the same time (bolt.DB.Batch): the commits of many sources
// polled together cost one fsync. fn may run twice (alone, after another
// fn of its batch failed), so it must only act through tx.
func (s *Store) batch(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(tx)
	})
}

// view runs fn in a read transaction unless ctx is already done.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}
