package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Defaults applied to settings the file leaves out.
const (
	DefaultStatePath       = "./pollbridge.db"
	DefaultRedisPrefix     = "pollbridge:"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultShutdownTimeout = 15 * time.Second
	DefaultSinkType        = SinkWebhook
	DefaultSinkTimeout     = 10 * time.Second
	DefaultConcurrency     = 4
	DefaultInitialBackoff  = 5 * time.Second
	DefaultMaxBackoff      = time.Hour
	DefaultMaxAge          = 24 * time.Hour
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 30 * time.Second
	DefaultSourceTimeout   = 30 * time.Second
	DefaultMaxBodySize     = 10 << 20
	DefaultMaxDeleteRatio  = 0.5
	// MaxConcurrency is the largest accepted Sink.Concurrency.
	MaxConcurrency = 256
)

// Sink types.
const (
	SinkWebhook = "webhook"
	SinkStdout  = "stdout"
)

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	// reservedSinkHeaders are set by the webhook sink itself for signing.
	reservedSinkHeaders = map[string]bool{"webhook-id": true, "webhook-timestamp": true, "webhook-signature": true}
)

// finish applies defaults to c and validates it, recording every problem.
func (d *decoder) finish(c *Config) {
	if c.State.Redis == nil && !d.isSet("state.path") && d.lookup != nil {
		// The file names no backend: REDIS_URL, when set, selects Redis.
		if u, ok := d.lookup("REDIS_URL"); ok && u != "" {
			if err := CheckRedisURL(u); err != nil {
				d.errAt("state", "environment variable REDIS_URL: %v (the value is not shown)", err)
			} else {
				c.State.Redis = &Redis{URL: u}
			}
		}
	}
	if r := c.State.Redis; r != nil {
		if d.isSet("state.path") {
			d.errAt("state.path", "set either state.path (embedded file) or state.redis, not both")
		}
		d.redisURL("state.redis.url", r.URL)
		if r.Prefix == "" {
			r.Prefix = DefaultRedisPrefix
		}
	} else if c.State.Path == "" {
		c.State.Path = DefaultStatePath
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		d.errAt("log.level", "bad level %q: want debug, info, warn or error", d.orig("log.level"))
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if !oneOf(c.Log.Format, "text", "json") {
		d.errAt("log.format", "bad format %q: want text or json", d.orig("log.format"))
	}
	d.duration("shutdown_timeout", &c.ShutdownTimeout, DefaultShutdownTimeout)

	sinkLines := map[string]int{}
	if len(c.Sinks) == 0 && !d.failed("sinks") {
		d.errAt("sinks", "at least one sink is required")
	}
	for i := range c.Sinks {
		d.sink(fmt.Sprintf("sinks[%d]", i), &c.Sinks[i], sinkLines)
	}
	sourceLines := map[string]int{}
	if len(c.Sources) == 0 && !d.failed("sources") {
		d.errAt("sources", "at least one source is required")
	}
	for i := range c.Sources {
		d.source(fmt.Sprintf("sources[%d]", i), &c.Sources[i], c.Sinks, sinkLines, sourceLines)
	}
	d.hosts(c.Hosts)
	d.admin(&c.Admin) // admin.go
}

// sink defaults and validates one sink. lines maps the names seen so far to
// their lines.
func (d *decoder) sink(p string, s *Sink, lines map[string]int) {
	d.name(p+".name", s.Name, "sink", lines)
	if s.Type == "" {
		s.Type = DefaultSinkType
	}
	switch s.Type {
	case SinkWebhook:
		d.url(p+".url", s.URL)
		if s.Secret != "" && !validSecret(s.Secret) {
			d.errAt(p+".secret", `must be "whsec_" followed by standard base64 (the value is not shown)`)
		}
		d.headers(p+".headers", s.Headers, true)
		d.sinkFormat(p, s)
	case SinkStdout:
		d.noFormat(p)
		for field, set := range map[string]bool{"url": s.URL != "", "secret": s.Secret != "", "headers": len(s.Headers) > 0} {
			if set {
				d.errAt(p+"."+field, "not used by stdout sinks; remove it")
			}
		}
	default:
		d.errAt(p+".type", "bad type %q: want webhook or stdout", d.orig(p+".type"))
	}
	d.duration(p+".timeout", &s.Timeout, DefaultSinkTimeout)
	if !d.isSet(p + ".concurrency") {
		s.Concurrency = DefaultConcurrency
	} else if s.Concurrency < 1 || s.Concurrency > MaxConcurrency {
		d.errAt(p+".concurrency", "must be between 1 and %d, got %d", MaxConcurrency, s.Concurrency)
	}
	r := &s.Retry
	ok := d.duration(p+".retry.initial_backoff", &r.InitialBackoff, DefaultInitialBackoff)
	ok = d.duration(p+".retry.max_backoff", &r.MaxBackoff, DefaultMaxBackoff) && ok
	if ok && r.InitialBackoff > r.MaxBackoff {
		d.errAt(p+".retry.initial_backoff", "must not exceed max_backoff (%s > %s)", r.InitialBackoff, r.MaxBackoff)
	}
	d.duration(p+".retry.max_age", &r.MaxAge, DefaultMaxAge)
	if r.MaxAttempts < 0 {
		d.errAt(p+".retry.max_attempts", "must be 0 (no limit) or more, got %d", r.MaxAttempts)
	}
	if s.RateLimit < 0 {
		d.errAt(p+".rate_limit", "must be 0 (no limit) or a positive number of deliveries per second")
	}
	cb := &s.CircuitBreaker
	if !d.isSet(p + ".circuit_breaker.failures") {
		cb.Failures = DefaultBreakerFailures
	} else if cb.Failures < 0 {
		d.errAt(p+".circuit_breaker.failures", "must be 0 (off) or more, got %d", cb.Failures)
	}
	d.duration(p+".circuit_breaker.cooldown", &cb.Cooldown, DefaultBreakerCooldown)
	d.eventTypes(p+".events", s.Events)
	s.filter = d.filterExpr(p+".filter", s.Filter)
}

// source defaults and validates one source.
func (d *decoder) source(p string, s *Source, sinks []Sink, sinkLines, lines map[string]int) {
	d.name(p+".name", s.Name, "source", lines)
	switch {
	case s.Schedule == "":
		if !d.failed(p + ".schedule") {
			d.errAt(p+".schedule", `required: "@every 30s", "@hourly" or a 5-field cron line`)
		}
	default:
		if msg := checkSchedule(s.Schedule, d.orig(p+".schedule"), d.fromEnv(p+".schedule")); msg != "" {
			d.errAt(p+".schedule", "%s", msg)
		}
	}
	d.url(p+".url", s.URL)
	d.headers(p+".headers", s.Headers, false)
	d.request(p, s) // request.go: method, query, body, tls, auth, pagination, rate
	d.duration(p+".timeout", &s.Timeout, DefaultSourceTimeout)
	if !d.isSet(p + ".max_body_size") {
		s.MaxBodySize = DefaultMaxBodySize
	} else if s.MaxBodySize <= 0 {
		d.errAt(p+".max_body_size", "must be more than 0")
	}
	if s.Items != "" {
		d.gjsonPath(p+".items", s.Items)
	}
	d.keyPaths(p+".key", &s.Key, s.Items != "")
	for i, path := range s.Ignore {
		d.gjsonPath(fmt.Sprintf("%s.ignore[%d]", p, i), path)
	}
	seen := map[string]bool{}
	for i, name := range s.Sinks {
		f := fmt.Sprintf("%s.sinks[%d]", p, i)
		switch {
		case d.failed(f):
		case seen[name]:
			d.errAt(f, "sink %q is listed twice", d.orig(f))
		case !hasKey(sinkLines, name):
			names := make([]string, len(sinks))
			for j, k := range sinks {
				names[j] = k.Name
			}
			hint := ""
			if c := closest(name, names); c != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", c)
			}
			d.errAt(f, "no sink named %q%s", d.orig(f), hint)
		}
		seen[name] = true
	}
	if len(s.Sinks) == 0 {
		for _, k := range sinks {
			s.Sinks = append(s.Sinks, k.Name)
		}
	}
	if s.MaxDeleteRatio == nil {
		r := DefaultMaxDeleteRatio
		s.MaxDeleteRatio = &r
	} else if r := *s.MaxDeleteRatio; r <= 0 || r > 1 {
		d.errAt(p+".max_delete_ratio", "must be more than 0 and at most 1 (1 disables the guard), got %s", strconv.FormatFloat(r, 'g', -1, 64))
	}
	d.changeSelection(p, s) // changes.go
}

// name checks a sink or source name and its uniqueness.
func (d *decoder) name(f, name, what string, lines map[string]int) {
	switch {
	case d.failed(f):
		return
	case name == "":
		d.errAt(f, "required: a unique %s name", what)
		return
	case !nameRE.MatchString(name):
		d.errAt(f, `bad name %q: use 1 to 64 letters, digits, "_", "." or "-", starting with a letter or digit`, d.orig(f))
	}
	if first, dup := lines[name]; dup {
		d.errAt(f, "duplicate %s name %q (first defined at line %d)", what, d.orig(f), first)
		return
	}
	lines[name] = d.loc(f).line
}

// url checks a required absolute http(s) URL. URLs may carry tokens, so
// messages never quote them.
func (d *decoder) url(f, raw string) {
	if d.failed(f) {
		return
	}
	if raw == "" {
		d.errAt(f, "required: an http:// or https:// URL")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		d.errAt(f, "not a valid URL (the value is not shown)")
	case u.Scheme != "http" && u.Scheme != "https":
		d.errAt(f, "must be an absolute http:// or https:// URL")
	case u.Hostname() == "":
		d.errAt(f, "URL has no host")
	}
}

// headers checks header names and values. Values may be secrets, so
// messages never quote them.
func (d *decoder) headers(p string, h map[string]string, sink bool) {
	canon := map[string]string{}
	for name, value := range h {
		f := join(p, name)
		switch {
		case !validToken(name):
			d.errAt(f, "bad header name: use letters, digits and !#$%%&'*+-.^_`|~")
			continue
		case strings.ContainsAny(value, "\r\n\x00"):
			d.errAt(f, "header value must not contain CR, LF or NUL (the value is not shown)")
		case sink && reservedSinkHeaders[strings.ToLower(name)]:
			d.errAt(f, "reserved: pollbridge sets this header when it signs the request")
		}
		lower := strings.ToLower(name)
		if other, dup := canon[lower]; dup {
			// Report on the later of the two, whatever the map order.
			first, second := other, name
			if d.loc(join(p, first)).line > d.loc(join(p, second)).line {
				first, second = second, first
			}
			d.errAt(join(p, second), "duplicate header: same name as %q on line %d (header names are case-insensitive)", first, d.loc(join(p, first)).line)
		}
		canon[lower] = name
	}
}

// duration applies def to an unset duration and checks a set one is
// positive. It reports whether the value is usable.
func (d *decoder) duration(f string, v *time.Duration, def time.Duration) bool {
	if !d.isSet(f) {
		if d.failed(f) {
			return false
		}
		*v = def
		return true
	}
	if *v <= 0 {
		d.errAt(f, "must be more than 0, got %q", d.orig(f))
		return false
	}
	return true
}

// gjsonPath checks a gjson path field.
func (d *decoder) gjsonPath(f, path string) {
	if d.failed(f) {
		return
	}
	if err := checkGJSONPath(path); err != nil {
		d.errAt(f, "bad gjson path %q: %v", d.orig(f), err)
	}
}

// checkSchedule returns what is wrong with a cron schedule, or "". orig is
// the text as written, used in the message; hideDetail leaves out the cron
// parser's message, which may repeat parts of the expanded value.
func checkSchedule(spec, orig string, hideDetail bool) string {
	detail := func(err error) string {
		if hideDetail {
			return "not a valid schedule (details hidden: the value comes from the environment)"
		}
		return err.Error()
	}
	rest := spec
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		i := strings.IndexByte(spec, ' ')
		if i < 0 {
			return fmt.Sprintf("bad schedule %q: a schedule must follow the time zone", orig)
		}
		rest = strings.TrimSpace(spec[i:])
	}
	if strings.HasPrefix(rest, "@") {
		if iv, ok := strings.CutPrefix(rest, "@every "); ok {
			dur, err := time.ParseDuration(iv)
			switch {
			case err != nil:
				return fmt.Sprintf("bad schedule %q: @every needs a Go duration such as 30s, 5m or 1h", orig)
			case dur < time.Second:
				return fmt.Sprintf("bad schedule %q: @every must be at least 1s", orig)
			case dur%time.Second != 0:
				return fmt.Sprintf("bad schedule %q: @every must be a whole number of seconds", orig)
			}
		}
		if _, err := cronParser.Parse(spec); err != nil {
			return fmt.Sprintf("bad schedule %q: %s", orig, detail(err))
		}
		return ""
	}
	if n := len(strings.Fields(rest)); n != 5 {
		return fmt.Sprintf("bad cron line %q: expected 5 fields, found %d", orig, n)
	}
	if _, err := cronParser.Parse(spec); err != nil {
		return fmt.Sprintf("bad cron line %q: %s", orig, detail(err))
	}
	return ""
}

// validSecret reports whether s is "whsec_" followed by non-empty standard
// base64.
func validSecret(s string) bool {
	rest, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	return err == nil && len(b) > 0
}

// validToken reports whether s is an HTTP token (RFC 9110), as header names
// must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// errAt records a problem with the field at path f, on the line of its
// node, or of its nearest recorded parent when the field is absent.
func (d *decoder) errAt(f, format string, args ...any) {
	in := d.loc(f)
	d.errs.add(d.file, in.line, in.col, f, format, args...)
}

// loc returns the info of path f or of its nearest recorded parent.
func (d *decoder) loc(f string) *info {
	for {
		if in, ok := d.at[f]; ok {
			return in
		}
		if f == "" {
			return &info{}
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			f = ""
		} else {
			f = f[:i]
		}
	}
}

// isSet reports whether field f was written with a value that decoded.
func (d *decoder) isSet(f string) bool {
	in, ok := d.at[f]
	return ok && !in.null && !in.bad
}

// failed reports whether decoding field f failed (already reported).
func (d *decoder) failed(f string) bool {
	in, ok := d.at[f]
	return ok && in.bad
}

// orig returns field f's scalar text as written, before expansion.
func (d *decoder) orig(f string) string {
	if in, ok := d.at[f]; ok {
		return in.orig
	}
	return ""
}

// fromEnv reports whether field f's value came, at least in part, from a
// non-empty environment variable; library messages that could repeat parts
// of such a value are then left out.
func (d *decoder) fromEnv(f string) bool {
	for _, r := range d.loc(f).refs {
		if r.value != "" {
			return true
		}
	}
	return false
}

// hideSecrets replaces, in every message, values substituted from the
// environment into secrets, URLs and headers by their ${NAME} reference: a
// last line of defence for messages that quote another field.
func (d *decoder) hideSecrets() {
	var refs []envRef
	for f, in := range d.at {
		if strings.HasSuffix(f, ".secret") || strings.HasSuffix(f, ".url") || f == "admin.token" || strings.Contains(f, ".headers.") ||
			strings.Contains(f, ".auth.") || strings.Contains(f, ".query.") || strings.HasSuffix(f, ".body") {
			for _, r := range in.refs {
				if len(r.value) >= 4 {
					refs = append(refs, r)
				}
			}
		}
	}
	for i := range d.errs {
		for _, r := range refs {
			d.errs[i].Msg = strings.ReplaceAll(d.errs[i].Msg, r.value, "${"+r.name+"}")
		}
	}
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

// redisURL checks a Redis URL; the message never quotes it (it may hold a
// password).
func (d *decoder) redisURL(p, raw string) {
	if raw == "" {
		if !d.failed(p) {
			d.errAt(p, "required: redis://host:port")
		}
		return
	}
	if err := CheckRedisURL(raw); err != nil {
		d.errAt(p, "%v (the value is not shown)", err)
	}
}

// CheckRedisURL reports what is wrong with a Redis URL, without quoting it.
func CheckRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("scheme must be redis or rediss")
	}
	if u.Host == "" {
		return fmt.Errorf("no host")
	}
	return nil
}
