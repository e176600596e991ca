package bridge

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Poll results, as the result label of pollbridge_polls_total and
// SourceStatus.LastResult give them.
const (
	PollOK          = "ok"
	PollNotModified = "not_modified"
	PollError       = "error"
)

// Delivery results, as the result label of pollbridge_deliveries_total
// gives them.
const (
	DeliveryDelivered = "delivered" // the receiver answered 2xx
	DeliveryRetry     = "retry"     // a retryable failure: scheduled again
	DeliveryDead      = "dead"      // moved to the dead letters
	DeliveryGone      = "gone"      // 410 Gone: the sink is disabled
)

// scrapeTimeout bounds the store call made when metrics are scraped.
const scrapeTimeout = 5 * time.Second

// Metrics holds pollbridge's Prometheus metrics in a registry of its own
// (never the global default). Pass it to New in Options.Metrics; the engine
// then counts polls, changes, deliveries and store errors, and a scrape
// reads the outbox counts and sink states at that moment. A nil *Metrics
// records nothing. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	polls        *prometheus.CounterVec
	pollDuration *prometheus.HistogramVec
	scheduleLag  prometheus.Histogram
	sourceItems  *prometheus.GaugeVec
	changes      *prometheus.CounterVec
	deliveries   *prometheus.CounterVec
	attempts     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	storeErrors  *prometheus.CounterVec
	replicas     prometheus.Gauge

	outboxDesc *prometheus.Desc
	sinkDesc   *prometheus.Desc

	engine atomic.Pointer[Engine] // read at scrape time; nil until New

	// The series of each source and sink, looked up once: a label lookup
	// hashes the values and takes a lock, several times per poll and per
	// delivery otherwise. Series are never deleted, so these stay valid.
	sources sync.Map // source name → *sourceSeries
	sinks   sync.Map // sink name → *sinkSeries
}

// sourceSeries are the per-poll series of one source.
type sourceSeries struct {
	ok, notModified, failed prometheus.Counter
	duration                prometheus.Observer
}

// sinkSeries are the per-delivery series of one sink.
type sinkSeries struct {
	attempts prometheus.Counter
	results  map[string]prometheus.Counter // by Delivery* result
	latency  prometheus.Observer
}

func (m *Metrics) sourceSeries(source string) *sourceSeries {
	if s, ok := m.sources.Load(source); ok {
		return s.(*sourceSeries)
	}
	s, _ := m.sources.LoadOrStore(source, &sourceSeries{
		ok:          m.polls.WithLabelValues(source, PollOK),
		notModified: m.polls.WithLabelValues(source, PollNotModified),
		failed:      m.polls.WithLabelValues(source, PollError),
		duration:    m.pollDuration.WithLabelValues(source),
	})
	return s.(*sourceSeries)
}

func (m *Metrics) sinkSeries(sink string) *sinkSeries {
	if s, ok := m.sinks.Load(sink); ok {
		return s.(*sinkSeries)
	}
	results := map[string]prometheus.Counter{}
	for _, r := range []string{DeliveryDelivered, DeliveryRetry, DeliveryDead, DeliveryGone} {
		results[r] = m.deliveries.WithLabelValues(sink, r)
	}
	s, _ := m.sinks.LoadOrStore(sink, &sinkSeries{
		attempts: m.attempts.WithLabelValues(sink),
		results:  results,
		latency:  m.latency.WithLabelValues(sink),
	})
	return s.(*sinkSeries)
}

// NewMetrics makes the metrics of one pollbridge process, with Go runtime
// and process metrics, and pollbridge_build_info for version.
func NewMetrics(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollbridge_polls_total",
			Help: "Polls of a source by result: ok, not_modified (304 or an unchanged body) or error.",
		}, []string{"source", "result"}),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pollbridge_poll_duration_seconds",
			Help:    "Duration of a poll (fetch of every page, diff and commit).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"source"}),
		scheduleLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pollbridge_schedule_lag_seconds",
			Help:    "How late scheduled polls start: from the tick's scheduled time to the start of the poll (lease jitter included).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		sourceItems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pollbridge_source_items",
			Help: "Items in the last complete answer of a source.",
		}, []string{"source"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollbridge_changes_total",
			Help: "Changes committed for delivery, by type: created, updated or deleted.",
		}, []string{"source", "type"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollbridge_deliveries_total",
			Help: "Outcomes of delivery attempts: delivered, retry, dead (dead-lettered) or gone (410, sink disabled).",
		}, []string{"sink", "result"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollbridge_delivery_attempts_total",
			Help: "Delivery attempts sent to a sink.",
		}, []string{"sink"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pollbridge_delivery_latency_seconds",
			Help:    "Time from the detection of a change to the 2xx answer of the sink, retries included.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}, []string{"sink"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pollbridge_store_errors_total",
			Help: "Failed store operations by op (load, commit, start_poll, claim, settle, dead, live, replay, stats, replicas, ping).",
		}, []string{"op"}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pollbridge_replicas",
			Help: "Replicas alive on this replica's store, as this replica last counted them (0: not known).",
		}),
		outboxDesc: prometheus.NewDesc("pollbridge_outbox_deliveries",
			"Deliveries in the outbox at scrape time, by state: pending, retrying or dead.",
			[]string{"sink", "state"}, nil),
		sinkDesc: prometheus.NewDesc("pollbridge_sink_state",
			"1 for the current state of a sink on this replica (active, open, probing, paused, disabled), 0 for the others.",
			[]string{"sink", "state"}, nil),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pollbridge_build_info",
		Help: "Always 1; the labels name the pollbridge version and the Go version that built it.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(
		m.polls, m.pollDuration, m.scheduleLag, m.sourceItems, m.changes,
		m.deliveries, m.attempts, m.latency, m.storeErrors, m.replicas,
		buildInfo, scrapeCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry that holds the metrics, for /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// bind makes scrapes read e's store and sinks.
func (m *Metrics) bind(e *Engine) {
	if m != nil {
		m.engine.Store(e)
		m.declare(e)
	}
}

// declare creates the series of every source and sink of e's configuration
// at zero, so that rates work from the first poll on.
func (m *Metrics) declare(e *Engine) {
	cfg := e.Config()
	for _, sc := range cfg.Sources {
		for _, r := range []string{PollOK, PollNotModified, PollError} {
			m.polls.WithLabelValues(sc.Name, r)
		}
		for _, t := range []string{"created", "updated", "deleted"} {
			m.changes.WithLabelValues(sc.Name, t)
		}
	}
	for _, sc := range cfg.Sinks {
		for _, r := range []string{DeliveryDelivered, DeliveryRetry, DeliveryDead, DeliveryGone} {
			m.deliveries.WithLabelValues(sc.Name, r)
		}
		m.attempts.WithLabelValues(sc.Name)
	}
}

// pollResult names the outcome of a poll.
func pollResult(res PollResult, err error) string {
	switch {
	case err != nil:
		return PollError
	case res.NotModified:
		return PollNotModified
	}
	return PollOK
}

// observePoll records a finished poll of source that took d. series is
// the source's, from sourceSeries: a poller keeps it, so that a poll does
// not look it up by name.
func (m *Metrics) observePoll(source string, series *sourceSeries, d time.Duration, res PollResult, err error) {
	if m == nil {
		return
	}
	series.duration.Observe(d.Seconds())
	switch pollResult(res, err) {
	case PollOK:
		series.ok.Inc()
		// Made by the first full answer: a source that only ever
		// answered "not modified" since start has no count to show.
		m.sourceItems.WithLabelValues(source).Set(float64(res.Items))
	case PollNotModified:
		series.notModified.Inc()
	default:
		series.failed.Inc()
	}
	for i := range res.Events {
		m.changes.WithLabelValues(source, strings.TrimPrefix(res.Events[i].Type, "item.")).Inc()
	}
}

// observeLag records that a scheduled poll started lag after its tick.
func (m *Metrics) observeLag(lag time.Duration) {
	if m != nil {
		m.scheduleLag.Observe(max(lag, 0).Seconds())
	}
}

// setReplicas records the number of live replicas (0: not known).
func (m *Metrics) setReplicas(n int) {
	if m != nil {
		m.replicas.Set(float64(n))
	}
}

// attempt counts a delivery attempt to sink.
func (m *Metrics) attempt(sink string) {
	if m != nil {
		m.sinkSeries(sink).attempts.Inc()
	}
}

// delivered records a delivery accepted by sink, of a change detected at
// detected.
func (m *Metrics) delivered(sink string, detected time.Time) {
	if m == nil {
		return
	}
	series := m.sinkSeries(sink)
	series.results[DeliveryDelivered].Inc()
	if !detected.IsZero() {
		series.latency.Observe(time.Since(detected).Seconds())
	}
}

// failed records a failed delivery attempt's outcome: DeliveryRetry,
// DeliveryDead or DeliveryGone.
func (m *Metrics) failed(sink, result string) {
	if m == nil {
		return
	}
	if c, ok := m.sinkSeries(sink).results[result]; ok {
		c.Inc()
	} else {
		m.deliveries.WithLabelValues(sink, result).Inc()
	}
}

// storeError counts a failed store operation. Expected answers (a
// generation conflict, an unknown delivery) and cancellations (shutdown) are
// not failures.
func (m *Metrics) storeError(op string, err error) {
	if m == nil || err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, context.Canceled) {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

// scrapeCollector reads the outbox counts and sink states at scrape time.
type scrapeCollector struct{ m *Metrics }

func (c scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.outboxDesc
	ch <- c.m.sinkDesc
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.m.engine.Load()
	if e == nil {
		return
	}
	c.m.declare(e) // a reload may have added sources or sinks
	now := time.Now()
	sinks := map[string]bool{}
	for _, sc := range e.Config().Sinks {
		sinks[sc.Name] = true
		st, ok := e.SinkStatus(sc.Name)
		if !ok {
			continue
		}
		for _, s := range []string{SinkActive, SinkOpen, SinkProbing, SinkPaused, SinkDisabled} {
			v := 0.0
			if s == st.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.m.sinkDesc, prometheus.GaugeValue, v, sc.Name, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	stats, err := e.store.Stats(ctx, now)
	if err != nil {
		// Counted by the instrumented store; the scrape goes on without
		// the outbox gauges rather than failing whole.
		return
	}
	for name := range sinks {
		if _, ok := stats[name]; !ok {
			stats[name] = store.SinkStats{}
		}
	}
	for name, s := range stats {
		ch <- prometheus.MustNewConstMetric(c.m.outboxDesc, prometheus.GaugeValue, float64(s.Pending), name, "pending")
		ch <- prometheus.MustNewConstMetric(c.m.outboxDesc, prometheus.GaugeValue, float64(s.Retrying), name, "retrying")
		ch <- prometheus.MustNewConstMetric(c.m.outboxDesc, prometheus.GaugeValue, float64(s.Dead), name, "dead")
	}
}

// instrumentStore wraps st so that its failures count in
// pollbridge_store_errors_total; Close passes through untouched. A nil
// *Metrics returns st as it is.
func (m *Metrics) instrumentStore(st store.Store) store.Store {
	if m == nil || st == nil {
		return st
	}
	if is, ok := st.(*instrumentedStore); ok && is.m == m {
		return st
	}
	return &instrumentedStore{Store: st, m: m}
}

// instrumentedStore counts the errors of the store it wraps.
type instrumentedStore struct {
	store.Store
	m *Metrics
}

func (s *instrumentedStore) Load(ctx context.Context, source string) (store.State, error) {
	st, err := s.Store.Load(ctx, source)
	s.m.storeError("load", err)
	return st, err
}

func (s *instrumentedStore) LoadMeta(ctx context.Context, source string) (store.State, error) {
	st, err := s.Store.LoadMeta(ctx, source)
	s.m.storeError("load", err)
	return st, err
}

func (s *instrumentedStore) Commit(ctx context.Context, c store.Commit) error {
	err := s.Store.Commit(ctx, c)
	s.m.storeError("commit", err)
	return err
}

func (s *instrumentedStore) Claim(ctx context.Context, sink string, now time.Time, n int, lease time.Duration) ([]store.Delivery, error) {
	ds, err := s.Store.Claim(ctx, sink, now, n, lease)
	s.m.storeError("claim", err)
	return ds, err
}

func (s *instrumentedStore) Settle(ctx context.Context, outcomes []store.Outcome) []error {
	errs := s.Store.Settle(ctx, outcomes)
	for _, err := range errs {
		s.m.storeError("settle", err)
	}
	return errs
}

func (s *instrumentedStore) Dead(ctx context.Context, sink string) ([]store.Delivery, error) {
	ds, err := s.Store.Dead(ctx, sink)
	s.m.storeError("dead", err)
	return ds, err
}

func (s *instrumentedStore) Live(ctx context.Context, sink string, limit int) ([]store.Delivery, error) {
	ds, err := s.Store.Live(ctx, sink, limit)
	s.m.storeError("live", err)
	return ds, err
}

func (s *instrumentedStore) Replay(ctx context.Context, sink string, ids []string) (int, error) {
	n, err := s.Store.Replay(ctx, sink, ids)
	s.m.storeError("replay", err)
	return n, err
}

func (s *instrumentedStore) Stats(ctx context.Context, now time.Time) (map[string]store.SinkStats, error) {
	st, err := s.Store.Stats(ctx, now)
	s.m.storeError("stats", err)
	return st, err
}

func (s *instrumentedStore) StartPolls(ctx context.Context, owner string, ttl time.Duration, ticks []store.PollTick) []store.PollStart {
	started := s.Store.StartPolls(ctx, owner, ttl, ticks)
	for _, r := range started {
		s.m.storeError("start_poll", r.Err)
	}
	return started
}

func (s *instrumentedStore) Replicas(ctx context.Context, owner string, ttl time.Duration) (int, error) {
	n, err := s.Store.Replicas(ctx, owner, ttl)
	s.m.storeError("replicas", err)
	return n, err
}

func (s *instrumentedStore) Ping(ctx context.Context) error {
	err := s.Store.Ping(ctx)
	s.m.storeError("ping", err)
	return err
}
