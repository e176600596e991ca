// Command bench is pollbridge's load harness. It measures pollbridge
// running as a separate process against a synthetic REST API and webhook
// receiver, and compares it with "floor" loops that do only the work no
// implementation can avoid, reporting the ratios. The machine it runs on is
// usually shared and noisy: the ratios to the floors, measured on the same
// machine (the paced floors in the same window as pollbridge, beside it),
// are the headline figures, more than absolute CPU seconds.
//
// # Running it
//
//	go run ./bench                                   # every scenario, bolt and redis (about 3.5 minutes)
//	go run ./bench -quick                            # about 1/10 scale, a smoke run (under 3 minutes)
//	go run ./bench -scenario unchanged -backend bolt -quick
//	go run ./bench -scenario fleet,drain -json out.json
//	go run ./bench -profile /tmp/prof                # also CPU profiles of pollbridge (measured windows, the drain's first 10 s; adds a little overhead)
//	go test ./bench                                  # tiny end-to-end run, asserts correctness
//
// Other flags: -window (the measurement window of the scheduled
// scenarios), -redis URL (default $REDIS_URL, else redis://127.0.0.1:6379),
// -bin (measure a given pollbridge binary instead of building the
// repository), -keep (keep the temporary directory: generated configs,
// every process's log, state files and the load API's log as JSON).
// Results are printed as one markdown table per scenario and backend, with
// the machine (CPUs, CPU model, kernel, Go and Redis versions) and a
// summary of the targets missed. Progress goes to stderr.
//
// # Processes
//
// Everything listens on 127.0.0.1 only.
//
//   - pollbridge is built from the repository (go build -o TMP/pollbridge .)
//     and run as `pollbridge run -c FILE` with a generated configuration,
//     first checked with `pollbridge validate -c FILE`. Its admin listener
//     (no token: loopback) serves /metrics and the JSON API the harness
//     uses to pause and resume the sink and to poll sources on demand.
//   - The load API runs in a child process: the harness binary re-executed
//     with the hidden subcommand `__child api`, so that its CPU is not
//     mixed with the harness's and can be reported on its own. The harness
//     drives it through control endpoints under /_ctl/ (counters,
//     progress, the mutation and fetch logs, the mutator).
//   - Each floor is a child process too (`__child floor -mode M`), so its
//     CPU is read from /proc exactly like pollbridge's.
//   - The webhook receiver runs in the harness process.
//
// # The load API
//
// S sources of K items; GET /s/{i} answers {"data":[...]} with items of
// about 170 bytes, such as
//
//	{"id":"s12-i000042","status":"open","amount":1234,"currency":"EUR","customer":"cus_000042",
//	 "note":"synthetic load item","version":1,"updated_at":"2026-11-27T16:00:00.123Z"}
//
// Each item's JSON is rendered once per change and each source's body (or
// pages) once per generation, lazily on the first request after a
// mutation, so the API's own CPU stays small. With etag it sends a strong
// ETag (a hash of the body) and answers 304 to a matching If-None-Match.
// With a page size, ?page=N serves 1,000 items a page with a
// `Link: </s/i?page=N+1>; rel="next"` header on all but the last page;
// pollbridge is configured with pagination {type: link, max_pages: ...}.
// Requests are counted per client class by User-Agent (pollbridge's is
// "pollbridge"), and every first-page answer to pollbridge is logged with
// the generation of the data served.
//
// The mutator makes C mutations per second (fleet: 1% of every source's
// items per second), cycling through the sources in a shuffled order at
// evenly spread moments: 80% updates (version+1, a new amount and status,
// a new updated_at), 10% creates (a never-used key), 10% deletes, keeping
// each source within ±10% of its size. Every mutation is logged with its
// source, key, type, version, the source's new generation and its time.
//
// # Correctness
//
// pollbridge detects changes at poll granularity, so several mutations of
// an item between two polls collapse into one event and an item created
// and deleted between two polls into none. The checker therefore derives
// what pollbridge owes from what the API actually answered it: for each
// source, the fetch log (first pages, in order, each with the generation
// it served) splits the mutation log into intervals. The first fetch is the
// baseline: nothing is owed (with emit_initial, item.created for every item
// it showed). For each later fetch, every item touched in the interval owes
// at most one event, comparing the item in the previous answer and in this
// one: item.created (absent, then present), item.deleted (present, then
// absent; carrying the version last served), item.updated (present in
// both, another version); absent in both owes nothing and its mutations
// count as "collapsed". Webhooks are matched on (source, key, type,
// version), the version read from data.item (data.previous for
// deletions):
//
//   - missed: an owed change no webhook carried;
//   - spurious: a distinct webhook that matches no owed change;
//   - duplicates: receptions of a webhook-id beyond its first (at-least-once
//     redelivery); "duplicate changes": one change under several ids;
//   - latency of a mutation: arrival of the first webhook of the change
//     that covers it minus the mutation's time (so two updates between
//     polls both count, against the one event); "fetch→webhook" is the
//     same from the fetch that revealed the change: pollbridge's own part,
//     without the wait for the next tick;
//   - mutations never fetched: made after pollbridge's last fetch of the
//     source; the harness waits (with a deadline) until pollbridge fetched
//     every source at its latest generation and until every owed change
//     arrived, so this should be 0.
//
// This is the brief's "every logged mutation is covered by a later event
// with a version at least its own" rule made exact: it also says which
// mutations legitimately produce nothing. The receiver verifies every
// Standard Webhooks signature (HMAC-SHA256 of id.timestamp.body, keyed
// with the base64 part of whsec_...) and counts failures.
//
// # Measurements
//
//   - CPU of a process: utime+stime (fields 14 and 15 of /proc/PID/stat)
//     over the clock tick (getconf CLK_TCK, 100), sampled at the edges of
//     a window; startup and the baseline poll are outside it. Resolution
//     10 ms.
//   - Machine CPU busy: the delta of the first line of /proc/stat, to show
//     what else kept the shared machine busy. The kernel samples it at each
//     tick, so it undercounts bursty loads (many short polls), while the
//     per-process figures above are exact: read it as a noise indicator.
//   - Peak RSS: VmHWM of /proc/PID/status (over the process's life), read
//     just before pollbridge is stopped, or right after the baseline.
//   - Scheduled rate: first pages the API served to pollbridge in the
//     window, over the window, against S/interval. Windows start half-way
//     between two whole ticks, so a window of W seconds holds W ticks.
//   - Schedule lag at the API: arrival of a first-page request minus the
//     source's tick, i.e. the arrival truncated to the interval's grid
//     shifted by the source's offset (pollbridge spreads sources over the
//     interval; the offsets are read from next_poll in /api/sources). It
//     includes pollbridge's deliberate lease jitter, if any. When
//     pollbridge exports pollbridge_schedule_lag_seconds its p99 over the
//     window is reported too (from the histogram's buckets).
//   - Redis: in unchanged pollbridge talks to Redis through a counting
//     TCP proxy in the harness, which parses the
//     client's RESP stream: commands (a MULTI/EXEC pipeline counts each,
//     an EVALSHA one) and round trips (a client write after an answer,
//     per connection), with those touching a sink's keys (the idle
//     dispatcher's outbox checks, once a second) counted apart, not per
//     poll. The delta of INFO total_commands_processed is reported as
//     well, as information: it counts the whole shared server and every
//     command a Lua script runs. notmodified talks to Redis directly: the
//     proxy's hop lengthens every round trip, and with it pollbridge's
//     CPU per 304 poll by about 5% (0.985–1.017 × the floor through the
//     proxy, 0.909–0.986 without, the same binary in alternate runs),
//     which no deployment pays. Redis memory per tracked item is the
//     delta of INFO used_memory (whole server) and, exactly, the sum of
//     MEMORY USAGE over the run's keys.
//
// # Floors
//
//   - poll: one goroutine per source ticking on pollbridge's own grid
//     (the same per-source offsets), each tick a GET over a keep-alive
//     transport with a connection per source, the body read, one gjson
//     walk of "data" reading every key, and SHA-256 of each item's raw
//     bytes. No state. Compared per 1,000 polls. It runs beside
//     pollbridge, on the same sources, and is measured over the same
//     window: measured alone after pollbridge stopped, as before session 8,
//     the same loop cost 0.054–0.077 ms a 304 poll from one scenario to
//     the next, and the ratio of one binary moved from 0.97 to 1.30. The
//     API's CPU and its new connections are then reported for both
//     clients together.
//   - cond: the same with If-None-Match, answered 304 (no body).
//   - oneshot: the poll floor's work for every page of every source once
//     (bigsource).
//   - post: N workers (the sink's concurrency) each signing a pre-built
//     ~420-byte event (HMAC-SHA256, base64) and POSTing it to the same
//     receiver (which verifies and parses it exactly as a real webhook),
//     over a transport with MaxIdleConnsPerHost ≥ N. Compared in
//     deliveries per second.
//
// pollbridge itself runs with its HTTP client defaults as they are.
//
// # Scenarios
//
// Default scale (-quick: about 1/10):
//
//	unchanged    500 sources × 100 items @every 1s, no mutations, ETag off
//	             (a full 200 answer every poll), 20 s window; poll floor.
//	notmodified  the same with ETag: 304 answers; cond floor.
//	fleet        1,000 sources × 100 items @every 1s, 1% of the items
//	             changing every second (1,000 mutations/s), sink
//	             concurrency 64 (the default 4 cannot carry 1,000 changes
//	             a second), 30 s window, then every webhook checked.
//	drain        100 sources × 1,000 items with emit_initial behind a paused
//	             sink (concurrency 64): 100,000 item.created queued, then
//	             the sink resumed and the drain timed; post floor.
//	bigsource    one source of 100,000 items in 100 pages, polled through the
//	             admin API: the baseline, then a poll after 1% of the items
//	             changed (sink paused meanwhile), against the oneshot floor.
//	million      1,000 sources × 1,000 items polled once through the admin
//	             API: pollbridge's peak RSS, Redis bytes per tracked item,
//	             the bbolt file's bytes per item; and the same with
//	             keep_bodies: false (fingerprints only).
//
// Sources the harness polls itself have the schedule @every 8760h, whose
// first tick is a stable random moment of the coming year.
//
// # Redis hygiene
//
// The Redis server is shared: every run uses its own key prefix
// (pbbench:RUNID:SCENARIO:) and deletes its keys with SCAN and DEL when
// done, failed or interrupted; the harness never flushes anything.
package main
