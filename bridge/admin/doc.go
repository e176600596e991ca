// Package admin is pollbridge's admin listener: liveness and readiness
// probes, Prometheus metrics, a JSON API over the running engine and its
// store, and a one-page status view that uses the API.
//
// A Server wraps a running *bridge.Engine. Requests flow straight to the
// engine (source status, poll now, pause and resume a sink) or to its store
// (outbox counts, deliveries by state, dead letters, replay); nothing is
// cached. When a token is configured every endpoint except /healthz,
// /readyz and the page itself wants "Authorization: Bearer TOKEN",
// compared in constant time. Without a token the listener must be on
// loopback (config validation enforces it) and only loopback Host names are
// answered, so a web page elsewhere cannot reach it through DNS rebinding;
// state-changing requests from other origins are refused either way.
//
// Client is the other side, used by the CLI (`pollbridge dlq`, `poll` and
// `health`) to work against a running daemon, whose embedded state file is
// locked. The endpoints are described in docs/operations.md.
package admin
