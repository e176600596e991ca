// Package bridge is the engine of pollbridge: it schedules polls, diffs each
// fresh snapshot against the stored state, commits the new state together
// with the events it implies, and dispatches those events to sinks.
//
// The data flow of one cron tick:
//
//	scheduler (robfig/cron, per-source offset)
//	  → poller: Store.Load, Source.Fetch, Diff
//	  → Store.Commit (new items + outbox deliveries, one atomic step)
//	  → dispatcher (one per sink): Store.Claim, Sink.Send, Ack / Retry / Bury
//
// The seams are small interfaces: Source (sources/), Sink (sinks/) and
// store.Store (bridge/store/). main.go wires concrete ones into an Engine.
package bridge
