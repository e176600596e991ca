package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// DefaultPrefix starts every key when Options.Prefix is empty.
const DefaultPrefix = "pollbridge:"

// DefaultRepairInterval is how often, at most, the ready index is rebuilt
// when Options.RepairInterval is zero.
const DefaultRepairInterval = 10 * time.Second

// Client defaults, used unless the URL sets them as query parameters
// (dial_timeout, read_timeout, write_timeout, max_retries, dialer_retries).
const (
	defaultDialTimeout = 2 * time.Second
	defaultIOTimeout   = 2 * time.Second
)

// scanBatch is how many sources one round of a scan over all sources
// (repair, stats, dead letters, lookups by id) handles per pipeline.
const scanBatch = 256

// Options configures Open.
type Options struct {
	// URL is redis://[user:password@]host:port[/db] (rediss:// for TLS) for
	// one Redis server. One or more ?addr=host:port parameters make it a
	// Redis Cluster client seeded with host:port and every addr. The
	// go-redis query parameters (dial_timeout, read_timeout, pool_size, ...)
	// are honoured.
	URL string
	// Prefix starts every key; default DefaultPrefix. It must not contain
	// '{' or '}' (they would change the hash slots).
	Prefix string
	// RepairInterval is how often, at most, a Claim rebuilds the ready
	// index from the set of known sources (see the package doc); default
	// DefaultRepairInterval. The replicas sharing a Redis take turns, so
	// the whole fleet repairs about once per interval. A delivery whose
	// ready index update was lost (a replica died right after its commit)
	// is claimable again within about one interval.
	RepairInterval time.Duration
}

// Store is the Redis-backed store.Store. Its methods are safe for
// concurrent use, and any number of Stores (in any number of processes)
// may share one Redis and prefix.
type Store struct {
	rdb         redis.UniversalClient
	prefix      string
	owner       string // identifies this Store in the repair lease
	repairEvery time.Duration
	sc          *scripts

	// nextRepair is when (UnixNano) Claim next tries a repair pass.
	nextRepair atomic.Int64
	// repairs tracks the repair pass running in the background; life is
	// its context, which Close cancels (stop) before waiting for it.
	repairs sync.WaitGroup
	life    context.Context
	stop    context.CancelFunc
	// skipSync, a test hook, makes Commit leave the ready index alone, as
	// a replica that crashes right after the commit would.
	skipSync atomic.Bool
	// starts groups concurrent StartPolls calls into pipelines.
	starts pollStarts
	// tickKeys caches, per source name, the key names StartPolls sends for
	// every tick (a *tickKeys).
	tickKeys sync.Map
	// lagging holds the ready index entries of claims, not yet written:
	// a claim only moves its source's earliest due later, so until they
	// are written the index sends a claim to probe a source for nothing
	// at most. The next round trip that touches the index (a Claim's
	// first, a commit's or a settle's update) writes them too, and Close
	// does.
	laggingMu sync.Mutex
	lagging   map[[2]string]indexEntry // by source and sink
}

var _ store.Store = (*Store)(nil)

// Open connects to the Redis (or Redis Cluster) at opts.URL and checks that
// it answers within ctx. Errors never quote the URL (it may hold a
// password). The Store reconnects by itself after Redis restarts; without
// persistence (appendonly yes, appendfsync everysec) a restart loses every
// state, outbox entry and lease.
func Open(ctx context.Context, opts Options) (*Store, error) {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, errors.New("open redis store: prefix must not contain '{' or '}'")
	}
	rdb, err := newClient(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("open redis store: %w", err)
	}
	var id [8]byte
	rand.Read(id[:])
	s := &Store{
		rdb:         rdb,
		prefix:      prefix,
		owner:       hex.EncodeToString(id[:]),
		repairEvery: opts.RepairInterval,
		sc:          newScripts(),
	}
	s.life, s.stop = context.WithCancel(context.Background())
	if s.repairEvery <= 0 {
		s.repairEvery = DefaultRepairInterval
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		s.stop()
		rdb.Close()
		return nil, fmt.Errorf("open redis store: ping: %w", err)
	}
	return s, nil
}

// newClient builds a single-node or a cluster client from a URL.
func newClient(raw string) (redis.UniversalClient, error) {
	if raw == "" {
		return nil, errors.New("no redis url")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, password and all
		}
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	q := u.Query()
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if q.Has("addr") {
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, fmt.Errorf("parse redis cluster url: %w", err)
		}
		setDefaults(q, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries)
		o.ContextTimeoutEnabled = true
		o.MaintNotificationsConfig = noMaint
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	setDefaults(q, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries)
	o.ContextTimeoutEnabled = true
	o.MaintNotificationsConfig = noMaint
	return redis.NewClient(o), nil
}

// setDefaults applies the client defaults the URL does not override: 2s to
// dial, read and write, one dial attempt and no command retries (a command
// that failed is reported; the engine retries on its own schedule, and a
// blind retry of a claim would hide deliveries until their lease ends).
func setDefaults(q url.Values, dial, read, write *time.Duration, retries, dialRetries *int) {
	if !q.Has("dial_timeout") {
		*dial = defaultDialTimeout
	}
	if !q.Has("read_timeout") {
		*read = defaultIOTimeout
	}
	if !q.Has("write_timeout") {
		*write = defaultIOTimeout
	}
	if !q.Has("max_retries") {
		*retries = -1
	}
	if !q.Has("dialer_retries") {
		*dialRetries = 1
	}
}

// Ping sends Redis a PING (in a cluster, to one node) and reports whether
// it answered.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Close ends a running repair pass, waits for it and closes the
// connections to Redis.
func (s *Store) Close() error {
	s.stop()
	s.repairs.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = s.syncIndex(ctx, nil) // the lagging entries; else repaired later
	cancel()
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("close redis store: %w", err)
	}
	return nil
}

// Replicas implements store.Store with a sorted set of owners scored by
// the time each stays alive until, in one transaction: add owner, drop the
// expired, count. The set expires when every owner has stopped.
func (s *Store) Replicas(ctx context.Context, owner string, ttl time.Duration) (int, error) {
	if owner == "" || ttl <= 0 {
		return 0, errors.New("replicas: owner and a positive ttl are required")
	}
	now := time.Now()
	key := s.replicasKey()
	var card *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: owner})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
		card = p.ZCard(ctx, key)
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("replicas: %w", err)
	}
	return int(card.Val()), nil
}

// Key names; see the package doc.

// esc makes a name safe inside a hash tag: it escapes '%', '{' and '}', so
// that every key of one source or sink hashes to the same slot and distinct
// names give distinct keys.
func esc(name string) string {
	if !strings.ContainsAny(name, "%{}") {
		return name
	}
	r := strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")
	return r.Replace(name)
}

// srcKey names a key of source in the source's slot.
func (s *Store) srcKey(source, suffix string) string {
	return s.prefix + "{" + esc(source) + "}:" + suffix
}

func (s *Store) headKey(source string) string  { return s.srcKey(source, "head") }
func (s *Store) itemsKey(source string) string { return s.srcKey(source, "items") }
func (s *Store) metaKey(source string) string  { return s.srcKey(source, "meta") }
func (s *Store) outKey(source string) string   { return s.srcKey(source, "out") }
func (s *Store) dueKey(source, sink string) string {
	return s.srcKey(source, "due:"+esc(sink))
}
func (s *Store) deadKey(source, sink string) string {
	return s.srcKey(source, "dead:"+esc(sink))
}
func (s *Store) fifoKey(source, sink string) string {
	return s.srcKey(source, "fifo:"+esc(sink))
}
func (s *Store) liveKey(source, sink string) string {
	return s.srcKey(source, "live:"+esc(sink))
}

// sinkKey names a key of sink in the sink's slot.
func (s *Store) sinkKey(sink, suffix string) string {
	return s.prefix + "sink:{" + esc(sink) + "}:" + suffix
}

func (s *Store) readyKey(sink string) string    { return s.sinkKey(sink, "ready") }
func (s *Store) readyVerKey(sink string) string { return s.sinkKey(sink, "rver") }
func (s *Store) sourcesKey() string             { return s.prefix + "sources" }
func (s *Store) repairKey() string              { return s.prefix + "repair" }
func (s *Store) replicasKey() string            { return s.prefix + "replicas" }

// pipeScripts runs fill's commands in one pipeline. A script call that
// found the script missing from the server's cache (a restart, a failover,
// SCRIPT FLUSH) did not run: once every script is loaded, those calls, and
// only those, go again in a second pipeline. The others ran and are not
// repeated, so pipelines of scripts that are not idempotent (claims,
// settles) may use it too. fill runs once. The error is the first
// command's error left after the retry (a failed load is left in the
// calls that needed it); each command keeps its own.
func (s *Store) pipeScripts(ctx context.Context, fill func(p redis.Pipeliner)) ([]redis.Cmder, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fill(p)
		return nil
	})
	if err == nil {
		return cmds, nil
	}
	var again []redis.Cmder
	for _, c := range cmds {
		if isNoScript(c.Err()) {
			again = append(again, c)
		}
	}
	if len(again) == 0 {
		return cmds, err
	}
	if lerr := s.sc.load(ctx, s.rdb); lerr != nil {
		for _, c := range again {
			c.SetErr(lerr)
		}
	} else {
		// The same commands go again: the pointers fill handed out stay
		// valid, and each one's reply (or error) replaces the NOSCRIPT.
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range again {
				_ = p.Process(ctx, c)
			}
			return nil
		})
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil {
			return cmds, cerr
		}
	}
	return cmds, nil
}

// isNoScript reports whether err says the server does not have the script.
func isNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}
