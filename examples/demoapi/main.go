// Command demoapi is a small in-memory "orders" REST API to point pollbridge
// at. It changes by itself every few seconds, so a poller has something to
// report, and it can simulate outages on request.
//
// Routes:
//
//	GET    /orders          {"data":[{"id":1,"customer":"ada","status":"new","total":12.5,"updated_at":"..."}]}
//	GET    /orders/{id}     one order
//	POST   /orders          create from {"customer":"ada","total":9.5} (201)
//	PUT    /orders/{id}     merge the given fields, bump updated_at (PATCH too)
//	DELETE /orders/{id}     204
//	GET    /healthz         {"status":"ok"}
//	POST   /_chaos          {"mode":"500"|"html"|"truncated"|"empty"|"ok","count":N}
//
// POST /_chaos makes the next N GET /orders answer badly (HTTP 500, an HTML
// page, truncated JSON, or an empty list), then the API recovers; "ok"
// recovers at once. GET /orders sends an ETag and honours If-None-Match.
//
// Usage:
//
//	demoapi [-addr 127.0.0.1:9000] [-mutate 4s]
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	mutate := flag.Duration("mutate", 4*time.Second, "make one random change this often (0 disables)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *mutate, log); err != nil {
		log.Error("demoapi stopped", "err", err)
		os.Exit(1)
	}
}

// run serves the API on addr until SIGINT or SIGTERM, mutating it every
// mutate (if > 0).
func run(addr string, mutate time.Duration, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	api := NewAPI(time.Now, uint64(time.Now().UnixNano()))
	srv := &http.Server{
		Addr:              addr,
		Handler:           api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		if mutate <= 0 {
			return
		}
		t := time.NewTicker(mutate)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				log.Info("mutated", "change", api.Mutate())
			}
		}
	}()

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("demoapi listening", "url", "http://"+addr+"/orders", "mutate", mutate)

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = srv.Shutdown(shutdown)
	}
	stop()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
