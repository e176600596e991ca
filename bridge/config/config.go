// Package config loads and checks pollbridge's YAML configuration.
//
// Load reads a file, expands ${VAR} references from the environment, decodes
// it strictly (unknown keys are errors), applies defaults and validates every
// field. All problems are reported at once, each as "FILE:LINE: field: what is
// wrong", so a user can fix a file in one pass.
//
// Decoding walks the yaml.Node tree against the struct's yaml tags instead
// of using yaml.v3's decoder, because yaml.v3 loses KnownFields below custom
// unmarshalers and reports no line for semantic errors. The walk records the
// line and the unexpanded text of every value, so messages point at the right
// line and quote what the user wrote, never a secret from the environment.
package config

import (
	"time"
)

// Config is a whole pollbridge configuration file.
type Config struct {
	// State chooses where source state and the outbox live.
	State State `yaml:"state"`
	// Log sets the log level and format.
	Log Log `yaml:"log"`
	// ShutdownTimeout bounds how long in-flight polls and deliveries may run
	// after SIGINT/SIGTERM. Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Sinks are the webhook receivers.
	Sinks []Sink `yaml:"sinks"`
	// Sources are the APIs to poll.
	Sources []Source `yaml:"sources"`
	// Hosts sets limits shared by every source that calls one host.
	Hosts []Host `yaml:"hosts"`
	// Admin configures the admin listener (probes, metrics, API, status
	// page). Disabled unless Admin.Listen is set.
	Admin Admin `yaml:"admin"`

	// Path is the file the configuration was loaded from.
	Path string `yaml:"-"`
}

// State configures the state backend: the embedded bbolt file (Path, the
// default) or Redis (Redis set).
type State struct {
	// Redis, when set, keeps state, outbox and leases in Redis so that
	// several replicas can share the work. The REDIS_URL environment
	// variable selects Redis too when the file names no backend.
	Redis *Redis `yaml:"redis"`
	// Path is the embedded bbolt file. Default ./pollbridge.db. A relative
	// path is relative to the process's working directory, not to the
	// config file's directory, like any path given on a command line: the
	// config can then be moved or mounted elsewhere (a ConfigMap) without
	// moving the state.
	Path string `yaml:"path"`
}

// Redis configures the Redis state backend.
type Redis struct {
	// URL is redis://[user:password@]host:port[/db] (rediss:// for TLS).
	// Extra addresses as ?addr=host:port query parameters make it a Redis
	// Cluster client.
	URL string `yaml:"url"`
	// Prefix starts every key pollbridge writes. Default "pollbridge:".
	Prefix string `yaml:"prefix"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// Sink is one receiver of events.
type Sink struct {
	// Name identifies the sink; sources refer to it.
	Name string `yaml:"name"`
	// Type is webhook (default) or stdout (prints events, for debugging).
	Type string `yaml:"type"`
	// URL is where webhooks are POSTed (required for webhook).
	URL string `yaml:"url"`
	// Secret is the Standard Webhooks signing secret, "whsec_" + base64.
	// Empty: requests are sent unsigned.
	Secret string `yaml:"secret"`
	// Headers are added to every request.
	Headers map[string]string `yaml:"headers"`
	// Format is the payload format of webhook requests: standard (default;
	// Standard Webhooks JSON), cloudevents (CloudEvents 1.0) or template
	// (a body written by Template). See docs/formats.md.
	Format string `yaml:"format"`
	// CloudEventsMode is structured (default; the whole event is a JSON
	// body of type application/cloudevents+json) or binary (attributes in
	// ce-* headers, the body is the event's data). Only for cloudevents.
	CloudEventsMode string `yaml:"cloudevents_mode"`
	// CloudEventsSource is the CloudEvents source attribute, a URI
	// reference in which {source} stands for the source name. Default
	// "pollbridge/{source}". Only for cloudevents.
	CloudEventsSource string `yaml:"cloudevents_source"`
	// Template is a Go text/template that writes the request body (required
	// for format template). The dot holds .Type, .ID, .Source, .Key, .Time,
	// .Item, .Previous and .Changes; {{json X}} writes X as JSON.
	Template string `yaml:"template"`
	// ContentType is the content-type of template bodies. Default
	// application/json, and then every body must be valid JSON. Only for
	// template.
	ContentType string `yaml:"content_type"`
	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many deliveries to this sink may be in flight at
	// once. Default 4.
	Concurrency int `yaml:"concurrency"`
	// Retry is the retry schedule for failed deliveries.
	Retry Retry `yaml:"retry"`
	// RateLimit caps the delivery attempts to this sink per second, per
	// replica (0: no limit). Bursts of up to Concurrency are allowed.
	RateLimit float64 `yaml:"rate_limit"`
	// CircuitBreaker pauses deliveries to a receiver that keeps failing.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker"`
	// Events lists the event types this sink receives (created, updated,
	// deleted), from every source that sends to it. Default all.
	Events []string `yaml:"events"`
	// Filter is an expression (same language and variables as a source's
	// filter) that an event must satisfy to be sent to this sink.
	Filter string `yaml:"filter"`

	filter compiledFilter // Filter as compiled by Parse
}

// CircuitBreaker pauses a sink after consecutive failed attempts, then
// probes it with one delivery at a time until one succeeds.
type CircuitBreaker struct {
	// Failures is how many consecutive retryable failures (network errors,
	// timeouts, 408, 429, 5xx) open the circuit. Default 5; 0 disables it.
	Failures int `yaml:"failures"`
	// Cooldown is how long an open circuit waits before it probes. Default 30s.
	Cooldown time.Duration `yaml:"cooldown"`
}

// Retry is an exponential retry schedule with jitter.
type Retry struct {
	// InitialBackoff is the wait after the first failure. Default 5s.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff caps the wait between attempts. Default 1h.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MaxAge is how long after detection an event is retried before it is
	// dead-lettered. Default 24h.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxAttempts, when > 0, dead-letters an event after that many failed
	// attempts even if MaxAge has not passed. Default 0 (only MaxAge).
	MaxAttempts int `yaml:"max_attempts"`
}

// Source is one polled API endpoint.
type Source struct {
	// Name identifies the source in state, events and logs.
	Name string `yaml:"name"`
	// Schedule is "@every <duration>" or a 5-field cron line (also
	// descriptors such as @hourly).
	Schedule string `yaml:"schedule"`
	// URL is the endpoint to GET.
	URL string `yaml:"url"`
	// Headers are sent with every request.
	Headers map[string]string `yaml:"headers"`
	// Method is GET or POST (for search APIs that take a body). Empty
	// means GET.
	Method string `yaml:"method"`
	// Query parameters are added to the URL's own (replacing those of the
	// same name) on the first page and on every page pollbridge builds.
	Query map[string]string `yaml:"query"`
	// Body is JSON text sent as the request body, with Content-Type
	// application/json unless Headers set one.
	Body string `yaml:"body"`
	// TLS sets the CA, client certificate and verification for https URLs.
	TLS *TLS `yaml:"tls"`
	// Auth adds credentials to every request of this source.
	Auth *Auth `yaml:"auth"`
	// Pagination says how to find the next page. Nil: one request.
	Pagination *Pagination `yaml:"pagination"`
	// RateLimit caps this source's requests per second (0: no limit).
	// Waits count against Timeout.
	RateLimit float64 `yaml:"rate_limit"`
	// RateBurst is how many requests may go at once under RateLimit.
	// Empty means 1.
	RateBurst int `yaml:"rate_burst"`
	// Timeout bounds one fetch. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBodySize limits the response body in bytes (accepts 10MiB, 512KB,
	// or a plain number of bytes). Default 10 MiB.
	MaxBodySize ByteSize `yaml:"max_body_size"`
	// Items is the gjson path to the array of items. Empty: a top-level
	// array's elements are the items, a top-level object is one item.
	Items string `yaml:"items"`
	// Key is the gjson path, relative to an item, of its unique key, or a
	// list of paths for a composite key (see KeyPaths). Required unless the
	// body is a single object (then the key is "").
	Key KeyPaths `yaml:"key"`
	// Ignore lists dot paths of fields left out of change detection.
	Ignore []string `yaml:"ignore"`
	// Sinks names the sinks that receive this source's events. Empty: all.
	Sinks []string `yaml:"sinks"`
	// EmitInitial, when true, sends item.created for every item of the
	// first poll instead of silently recording a baseline.
	EmitInitial bool `yaml:"emit_initial"`
	// MaxDeleteRatio holds back a poll that would delete more than this
	// share of the stored items until the next poll confirms it. Default
	// 0.5; 1 disables the guard.
	MaxDeleteRatio *float64 `yaml:"max_delete_ratio"`
	// Watch, when not empty, lists the only fields that count as a change
	// (dot paths like Ignore; Ignore still applies inside them). Events
	// still carry whole items. Default: every field counts.
	Watch []string `yaml:"watch"`
	// Events lists the event types sent: created, updated, deleted.
	// Default (empty): all three. Changes of other types still update the
	// stored state; they are just not sent.
	Events []string `yaml:"events"`
	// Filter is an expr-lang expression over each event (type, source,
	// key, item, previous, changes) that must be true for it to be sent,
	// such as `item.status == "paid" && previous.status != "paid"`.
	// Default: every event. See docs/changes.md.
	Filter string `yaml:"filter"`
	// DeleteAfter is how many consecutive complete polls an item must be
	// missing from before it counts as deleted. Default (0): 1.
	DeleteAfter int `yaml:"delete_after"`
	// Backoff spaces out the polls of a source that keeps failing.
	Backoff PollBackoff `yaml:"backoff"`
	// KeepBodies, when false, stores only each item's fingerprint, not its
	// JSON: far less state per item, but update events then carry no
	// previous item and no field changes, deletions carry only the key,
	// and a change of watch or ignore takes the items' new fingerprints
	// silently. Default (nil): true.
	KeepBodies *bool `yaml:"keep_bodies"`

	// filter is Filter compiled by validation.
	filter compiledFilter
}

// KeepsBodies reports whether the source stores its items' JSON (see
// KeepBodies).
func (s Source) KeepsBodies() bool { return s.KeepBodies == nil || *s.KeepBodies }

// PollBackoff pauses a failing source: after its n-th consecutive failed
// poll, scheduled ticks are skipped for min(Initial×2^(n-1), Max), counted
// from the start of that poll. A successful poll ends the pause.
type PollBackoff struct {
	// Initial is the pause after the first failure. Default (0): one
	// interval of the schedule, so a single failure skips no tick.
	Initial time.Duration `yaml:"initial"`
	// Max caps the pause. Default (0): 10m.
	Max time.Duration `yaml:"max"`
}

// ByteSize is a size in bytes that YAML may write as 10MiB, 512KB or 1048576.
type ByteSize int64

// Sink returns the sink called name, and whether there is one.
func (c *Config) Sink(name string) (Sink, bool) {
	for _, s := range c.Sinks {
		if s.Name == name {
			return s, true
		}
	}
	return Sink{}, false
}

// Source returns the source called name, and whether there is one.
func (c *Config) Source(name string) (Source, bool) {
	for _, s := range c.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}
