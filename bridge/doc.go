// Package bridge is the engine of pollbridge: it schedules polls, diffs each
// fresh snapshot against the stored state, commits the new state together
// with the events it implies, and dispatches those events to sinks.
//
// The data flow of one cron tick:
//
//	scheduler (robfig/cron, per-source offset on a shared grid; sources
//	    with the same schedule and offset share one entry, a tickGroup)
//	  → startTicks: source backoff, then Store.StartPolls for the group
//	    (each tick's lease and its source's meta; one round trip on Redis).
//	    Only while Store.Replicas counts more than this replica, each
//	    source first waits a random lease jitter and asks alone.
//	  → poller, on a reused worker goroutine (workers.go), per held tick:
//	    Source.Fetch (304 / same body: stop here),
//	    Store.Load, Diff (fingerprints, watch/ignore, delete_after, mass-
//	    deletion guard), events and filter selection, per-sink routes
//	  → Store.Commit (new items + outbox deliveries, one atomic step)
//	  → dispatcher (one per sink): gate (circuit breaker, pause, 410), rate
//	    limit, Store.Claim (up to a batch ahead of the free slots), on a
//	    worker: decodeEvent (event.go), Sink.Send, then a recorder
//	    settles the outcomes (ack, retry, bury) that finished together in
//	    one Store.Settle
//
// The seams are small interfaces: Source (sources/), Sink (sinks/) and
// store.Store (bridge/store/). main.go wires concrete ones into an Engine;
// Reload swaps in a new configuration while it runs, and the admin package
// (bridge/admin) serves its status, metrics and controls.
package bridge
