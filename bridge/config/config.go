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
	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many deliveries to this sink may be in flight at
	// once. Default 4.
	Concurrency int `yaml:"concurrency"`
	// Retry is the retry schedule for failed deliveries.
	Retry Retry `yaml:"retry"`
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
	// Timeout bounds one fetch. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBodySize limits the response body in bytes (accepts 10MiB, 512KB,
	// or a plain number of bytes). Default 10 MiB.
	MaxBodySize ByteSize `yaml:"max_body_size"`
	// Items is the gjson path to the array of items. Empty: a top-level
	// array's elements are the items, a top-level object is one item.
	Items string `yaml:"items"`
	// Key is the gjson path, relative to an item, of its unique key.
	// Required unless the body is a single object (then the key is "").
	Key string `yaml:"key"`
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
