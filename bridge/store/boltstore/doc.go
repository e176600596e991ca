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
//	pollbridge                   schema = 1
//	sources/<source>/gen         8-byte generation
//	sources/<source>/items/<key> uvarint len(fp) | fp | item JSON
//	sources/<source>/meta/<name> value
//	outbox/<delivery ID>         binary record: the Delivery, its seq and the
//	                             time of its current index entry
//	due/<sink>/<at|seq>          flag (0 pending, 1 retrying) | delivery ID
//	dead/<sink>/<at|seq>         delivery ID
//	claimed/<delivery ID>        empty; the delivery's due entry is a lease
//
// at is a time as UnixNano with the sign bit flipped, so keys sort by time;
// seq is the outbox's sequence, assigned in commit order. Claim scans
// due/<sink> from the start and stops at the first key due after now; a claim
// moves the entry to now+lease, Retry to its new due time, Bury to dead/<sink>.
// Every delivery lives in outbox and in exactly one of due/<sink> or
// dead/<sink>; every method changes them in one transaction.
package boltstore
