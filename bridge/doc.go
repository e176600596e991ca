// Package bridge is the engine of pollbridge: it schedules polls, diffs each
// fresh snapshot against the stored state, commits the new state together
// with the events it implies, and dispatches those events to sinks.
//
// The data flow of one cron tick:
//
//	scheduler (robfig/cron, per-source offset on a shared grid)
//	  → ticker: source backoff, poll lease for the tick (Store.TryLease)
//	  → poller: Store.LoadMeta, Source.Fetch (304 / same body: stop here),
//	    Store.Load, Diff (fingerprints, watch/ignore, delete_after, mass-
//	    deletion guard), events and filter selection, per-sink routes
//	  → Store.Commit (new items + outbox deliveries, one atomic step)
//	  → dispatcher (one per sink): gate (circuit breaker, pause, 410), rate
//	    limit, Store.Claim, Sink.Send, Ack / Retry / Bury
//
// The seams are small interfaces: Source (sources/), Sink (sinks/) and
// store.Store (bridge/store/). main.go wires concrete ones into an Engine;
// Reload swaps in a new configuration while it runs, and the admin package
// (bridge/admin) serves its status, metrics and controls.
package bridge
