// Package sources fetches snapshots of the APIs that pollbridge polls.
//
// A source turns one configured endpoint into a complete bridge.Snapshot:
//
//	NewRegistry(cfg) → Registry (per-host rate limiters, client, body
//	  buffers, fetch deadlines: shared)
//	Registry.New(config.Source) → HTTP (TLS, auth, paginator, source limiter)
//	HTTP.Fetch: one deadline (timeout) for the whole fetch, shared with
//	  fetches that start together (deadline.go); for each page (at most
//	  max_pages):
//	  rate limits (source, host) → request (method, query, body, headers,
//	  credentials; validators on the first page) → 401: new OAuth2 token,
//	  once → 429/503 + Retry-After: wait if it fits the timeout, once →
//	  status, size limit, JSON checks (checkJSON) → next page
//	  (pagination.go: Link header, next URL, cursor, page, offset)
//	→ hash of all bodies equal to the stored one? NotModified
//	→ Extract (gjson items path, key paths) → Snapshot{Items, Meta, Requests}
//
// A source never returns a partial snapshot: any failed request, bad status,
// bad body or page past the limit is an error and no items, so the engine
// cannot mistake a failure for deletions. Credentials never leave the
// source's origin, and no secret reaches an error or a RequestInfo.
// Scheduling, backoff between polls and metrics are the engine's.
package sources
