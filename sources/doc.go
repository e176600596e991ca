// Package sources fetches snapshots of the APIs that pollbridge polls.
//
// A source turns one configured endpoint into a complete bridge.Snapshot:
//
//	New(config.Source) → HTTP
//	HTTP.Fetch: GET (conditional, timeout, gzip, size limit)
//	  → check status and JSON → Extract (gjson items path, key path)
//	  → Snapshot{Items, Meta: validators for next time}
//
// A source never returns a partial snapshot: any failed request, bad status
// or bad body is an error and no items, so the engine cannot mistake a
// failure for deletions. Retries, metrics and scheduling are the engine's.
package sources
