// Package boltstore is the embedded store.Store of pollbridge: one bbolt file,
// no services, durable across restarts and kill -9 (every write transaction
// is fsynced before it returns).
//
// bbolt locks the file, so exactly one process (and one open Store) uses a
// state file at a time; a second Open fails with ErrInUse. Because of that
// lock, Open can assume that deliveries claimed but not finished by an
// earlier process were abandoned, and makes them claimable at once.
//
// Layout of the file (all integers big-endian):
//
//	pollbridge                   schema = 4
//	sources/<source>/gen         8-byte generation
//	sources/<source>/items/<key> uvarint len(fp) | fp | item JSON
//	sources/<source>/meta/<name> value
//	outbox/<delivery ID>         binary record: the Delivery, its seq and the
//	                             time of its current index entry
//	fifo/<sink>/<item|seq>       flag (0 pending, 1 retrying) | delivery ID
//	due/<sink>/<at|seq>          flag | delivery ID
//	dead/<sink>/<at|seq>         delivery ID
//	live/<sink>/<at|seq>         delivery ID; at is the delivery's Due
//	claimed/<delivery ID>        8-byte at of the delivery's due entry, which
//	                             is a lease (a claim does not rewrite the
//	                             record; schema 3 left it empty)
//
// at is a time as UnixNano with the sign bit flipped, so keys sort by time;
// seq is the outbox's sequence, assigned in commit order (and afresh when a
// dead letter is replayed); item is uvarint len(source) | source | uvarint
// len(key) | key, so no item's keys start with another item's.
//
// Every live delivery has an entry in fifo/<sink>, where the entries of one
// item sort in commit order. The first one of each item is its head: only
// heads have an entry in due/<sink>, so Claim, which scans due/<sink> from
// the start and stops at the first key due after now, hands out the head of
// each item and never looks at the deliveries waiting behind one. A claim
// moves the head's due entry to now+lease, a retry (Settle) to its new due
// time. An ack or a burial removes the head and gives the next entry of its
// item a due entry (at the later of now and its own due time); a burial
// adds dead/<sink>. Commit and Replay add a delivery at the end of its
// item's fifo, and to due/<sink> only when the item had no entry. Every
// method changes all of them in one transaction.
//
// live/<sink> lists every live delivery (claimed and waiting ones too) by
// its Due, so Live reads the deliveries it returns and no others; Commit,
// Replay, Settle (a retry, an ack, a burial) and a promotion keep it in step
// in the same transaction.
//
// Leases and the replicas' heartbeats live in memory (the file lock admits
// one process), and so does a cache of each source's generation and meta
// (metacache.go): LoadMeta and StartPolls, once per tick, read no
// transaction; Commit, the only writer of sources/, invalidates it.
//
// Version 1 had no fifo bucket and every live delivery in due/<sink>,
// version 2 no live bucket; Open upgrades such a file in place (a
// read-only Open reads it as it is, and Live then reads the whole outbox).
package boltstore
