package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

// shutdownGrace bounds how long Close waits for requests in flight.
const shutdownGrace = 5 * time.Second

// Options configures a Server.
type Options struct {
	// Engine is the engine the server reports on and drives. Required.
	Engine *bridge.Engine
	// Metrics, when set, is served on /metrics; otherwise /metrics is 404.
	Metrics *bridge.Metrics
	// Token, when not empty, must be sent as "Authorization: Bearer TOKEN"
	// to every endpoint but /healthz, /readyz and the status page.
	Token string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Version is the pollbridge version that /api/info reports.
	Version string
	// Pprof serves the runtime profiles of net/http/pprof under
	// /debug/pprof/ (behind the token, like the API). Off by default:
	// profiles cost CPU while they are taken and reveal internals.
	Pprof bool
}

// Server is the admin listener's HTTP handler, and its listener once
// started. Its methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	handler http.Handler
	tokenH  [32]byte // SHA-256 of the token, compared in constant time
	started time.Time

	draining atomic.Bool

	// ctx bounds work that requests start (a poll now): it ends at Close.
	ctx    context.Context
	cancel context.CancelFunc

	srv    *http.Server
	ln     net.Listener
	served chan struct{} // closed when Serve returned
	watch  chan struct{} // closed when the drain watcher returned
}

// New makes a Server for opts; it listens nowhere until Start. Use Handler
// to mount it elsewhere (tests).
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		tokenH:  sha256.Sum256([]byte(opts.Token)),
		started: time.Now(),
		ctx:     ctx,
		cancel:  cancel,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics.Registry(), promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
			Timeout:       10 * time.Second,
		}))
	}
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /api/info", s.info)
	mux.HandleFunc("GET /api/sources", s.sources)
	mux.HandleFunc("GET /api/sources/{name}", s.source)
	mux.HandleFunc("POST /api/sources/{name}/poll", s.pollNow)
	mux.HandleFunc("POST /api/sources/{name}/dry-run", s.dryRun)
	mux.HandleFunc("GET /api/sinks", s.sinks)
	mux.HandleFunc("GET /api/sinks/{name}", s.sink)
	mux.HandleFunc("POST /api/sinks/{name}/pause", s.pause)
	mux.HandleFunc("POST /api/sinks/{name}/resume", s.resume)
	mux.HandleFunc("POST /api/sinks/{name}/replay", s.replaySink)
	mux.HandleFunc("GET /api/deliveries", s.deliveries)
	mux.HandleFunc("GET /api/dead", s.dead)
	mux.HandleFunc("POST /api/dead/replay", s.replayAll)
	mux.HandleFunc("POST /api/dead/{id}/replay", s.replayOne)
	if opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	// Refuse state-changing requests that a browser sends on behalf of a
	// page from another origin.
	s.handler = http.NewCrossOriginProtection().Handler(s.guard(mux))
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Drain makes /readyz answer 503 from now on: shutdown has begun. The
// other endpoints keep working until Close.
func (s *Server) Drain() { s.draining.Store(true) }

// Start listens on addr and serves until Close. When ctx ends, the server
// drains (/readyz answers 503) but keeps serving, so metrics and the API
// stay available while the engine finishes its work.
func Start(ctx context.Context, addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	s := New(opts)
	s.serve(ctx, ln)
	s.log.Info("admin listening", "addr", ln.Addr().String(), "token", opts.Token != "")
	return s, nil
}

// serve serves on ln in the background.
func (s *Server) serve(ctx context.Context, ln net.Listener) {
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	s.served = make(chan struct{})
	s.watch = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "err", err)
		}
	}()
	go func() {
		defer close(s.watch)
		select {
		case <-ctx.Done():
			s.Drain()
		case <-s.ctx.Done():
		}
	}()
}

// Addr returns the address the server listens on (nil before Start).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops the listener: work started by requests (a poll now) is
// cancelled, requests in flight get a few seconds to finish. It returns
// when the server's goroutines have ended.
func (s *Server) Close() error {
	s.Drain()
	s.cancel()
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.served
	<-s.watch
	if err != nil {
		return fmt.Errorf("close admin listener: %w", err)
	}
	return nil
}

// public reports whether path is served without a token: the probes, and
// the status page, which holds no data (its script asks for the token).
func public(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/"
}

// guard enforces the token, or, without one, loopback Host names.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		if s.opts.Token == "" {
			if !loopbackHost(r.Host) {
				writeError(w, http.StatusMisdirectedRequest, "without admin.token only loopback host names are served")
				return
			}
		} else if !public(r.URL.Path) && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pollbridge"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (admin.token)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks the request's bearer token in constant time (hashes of
// equal length are compared, so the token's length does not leak either).
func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.tokenH[:]) == 1
}

// loopbackHost reports whether a Host header names the local machine.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return config.IsLoopbackHost(host)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 while the engine runs on a reachable store, 503 when
// the store does not answer or once shutdown has begun.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case s.draining.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "shutting down")
		return
	case s.opts.Engine == nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "no configuration loaded")
		return
	}
	if err := s.opts.Engine.CheckStore(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "store unreachable: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ready")
}

// writeJSON writes v as the JSON answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
}

// writeError writes a JSON error answer.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg})
}
