// Package redisstore is the Redis store.Store of pollbridge: the shared
// state of a fleet of replicas, on one Redis server or a Redis Cluster
// (github.com/redis/go-redis/v9, redis.UniversalClient).
//
// # Keys
//
// P is Options.Prefix ("pollbridge:"). Names of sources and sinks appear in
// hash tags with '%', '{' and '}' escaped as %25, %7B and %7D, so every key
// of one source (or sink) lies in one hash slot whatever its name. Every Lua
// script and MULTI/EXEC touches the keys of one slot only.
//
//	key                       type    slot      holds
//	P{src}:head               hash    {src}     gen: generation; seq: last delivery
//	                                            sequence; v:<sink>: index version of
//	                                            the (src, sink) pair; r:<sink>: live
//	                                            deliveries with attempts > 0;
//	                                            w:<sink>: live deliveries waiting
//	                                            behind the head of their item
//	P{src}:items              hash    {src}     item key -> len(fp) ':' fp, item JSON
//	P{src}:meta               hash    {src}     Meta (ETag, body hash, ...)
//	P{src}:out                hash    {src}     delivery ID -> delivery record, live
//	                                            or dead
//	P{src}:due:<sink>         zset    {src}     the head of each item of src that
//	                                            has live deliveries for sink; score:
//	                                            due (or lease end) in Unix ms
//	P{src}:fifo:<sink>        zset    {src}     every live delivery of src for sink,
//	                                            score 0, member: len(key) ':' key,
//	                                            then its due member
//	P{src}:live:<sink>        zset    {src}     every live delivery of src for sink,
//	                                            claimed and waiting ones too; score:
//	                                            its Due (ms)
//	P{src}:dead:<sink>        zset    {src}     dead letters; score: when buried (ms)
//	Psink:{sink}:ready        zset    {sink}    ready index: member src, score: the
//	                                            lowest score in P{src}:due:<sink>
//	Psink:{sink}:rver         hash    {sink}    src -> index version last recorded
//	Psources                  set     own       every source ever committed
//	Prepair                   string  own       whose turn it is to repair (PX)
//	P{src}:lease:<tick>       string  {src}     StartPolls: a tick's lease: owner,
//	                                            expiring (PX); on one server, one
//	                                            script takes the ticks of calls
//	                                            made together
//	Preplicas                 zset    own       Replicas: member owner, score: alive
//	                                            until (ms); expires with the last one
//
// Members of the due, live and dead ZSETs are the delivery's sequence (20
// decimal digits) followed by its ID, so equal scores sort in commit order. The
// FIFO ZSET sorts by member (all scores are 0): the deliveries of one item
// key are adjacent, in commit order, and ZRANGEBYLEX finds an item's first
// one (its head) in O(log n). A
// delivery record is "1|" then twelve fields, each its decimal byte length,
// ':' and the bytes: seq, attempts, due, dead (UnixNano, "" = zero time),
// last error, sink, ID, event ID, source, key, created (UnixNano), payload
// (raw bytes, never re-encoded).
//
// # Atomicity
//
// Commit is one script on the source's slot: it checks the generation, then
// writes items, meta, the generation and every delivery (record and due
// entry) or, on a stale generation, nothing (store.ErrConflict). Claim,
// Settle (an ack, retry or burial) and Replay of a source's deliveries are
// single scripts on its slot too; Settle runs one per (source, sink) pair.
//
// # The ready index and its repair
//
// Claim(sink) must find due deliveries of every source without visiting the
// idle ones. Each sink has a ready ZSET of the sources that have deliveries
// for it, scored by their earliest due one; Claim reads the sources due now
// from it and runs the claim script on each. The index lives in the sink's
// slot, so it cannot be updated in the same script as the source: every
// script that changes a due ZSET bumps the pair's version (Redis TIME in
// microseconds, kept strictly increasing) and returns it with the new
// earliest score, and a second script records both in the sink's slot
// unless a newer version is recorded already. Concurrent updates therefore
// converge on the newest state in any order, and an index score that is too
// low (after an ack or burial that made no waiting delivery due, which skip
// the update) costs one wasted probe that corrects it. A claim, which only
// raises scores, does not wait for its update either: the Store keeps it
// and sends it with its next round trip that touches the index (the next
// Claim's read of it, a commit's or a settle's update) or at Close.
//
// A replica that dies between a commit (or retry, replay, claim, or an ack
// or burial that made a waiting delivery due) and its index update leaves the
// index behind. So at most every Options.RepairInterval (default 10s), a
// Claim first rebuilds the index of every sink from the set of known
// sources (Psources): one script per source reads each pair's version and
// earliest score, and whatever the index lacks is recorded. The replicas sharing a prefix take turns (Prepair, SET NX PX
// for 90% of the interval), so the fleet repairs about once per interval.
//
// Bound: a delivery whose index update was lost becomes claimable within
// RepairInterval of its commit or promotion (2×RepairInterval if the replica that
// repaired last dies too), plus the time until a replica next calls Claim
// for any sink (the engine's idle dispatchers call it every second) and the
// sink's next Claim after the repair. The repair reads every source, so its
// cost grows with the number of sources; Claim's own cost does not.
//
// # Outbox semantics
//
// Per item (sink, source, key) only the oldest live delivery, its head, is
// in the due ZSET; the younger ones wait in the FIFO ZSET, so Claim never
// reads them. Commit and Replay add a delivery to the end of its item's
// FIFO, and to the due ZSET only when the item had no live delivery. A
// claim moves the head's due entry to now+lease (a visibility timeout): a
// claimer that dies without settling it loses it to the next Claim after
// the lease. A retry moves the entry to its new due time and keeps the item
// blocked; an ack or a burial removes the head, moves the next delivery of
// the item into the due ZSET, due at the later of now and its own due time,
// and then updates the ready index (like a commit, so a replica that dies
// in between leaves that delivery to the repair pass). A burial moves the
// head to the dead ZSET; Replay moves dead letters back, due now, in their
// commit order and with fresh sequence numbers. Deliveries committed by a
// pollbridge without FIFOs are all in the due ZSET; they stay claimable and
// are simply not ordered against later ones.
//
// The live ZSET lists a pair's live deliveries by due time for Live:
// Commit and Replay add to it, a retry and a promotion move a member, an
// ack and a burial remove it, in the same scripts. Live reads a page of it
// per pair and merges them, so it reads the deliveries it returns, plus a
// page per (source, sink) pair. A live ZSET that does not hold as many
// members as the due ZSET and the waiting count (w:<sink>) together, as
// after a pollbridge without live ZSETs wrote the pair, or one ran beside
// newer replicas during a rolling upgrade, is rebuilt by Live's script
// first, at a cost of one read per live delivery of the pair.
//
// Dead letters stay in Redis until replayed. Stats, Dead and Replay read
// every known source; they are for operators, not the hot path. Settle
// looks for a delivery in the outbox of its Source first (where the engine
// commits it) and scans every source only when it is not there.
//
// # Durability and failures
//
// Redis must persist for at-least-once delivery to survive a Redis restart:
// production Redis needs AOF (appendonly yes, appendfsync everysec); without
// it a restart loses all state, outbox and leases (pollbridge then records a
// fresh baseline and sends nothing for changes it never saw).
//
// The client dials, reads and writes with 2s timeouts, honours ctx deadlines
// and does not retry commands, so every method fails promptly with an error
// wrapping the cause while Redis is unreachable; the same Store works again
// once Redis answers, without reopening. Scripts missing after a restart are
// reloaded on demand.
package redisstore
