// Command receiver is a webhook endpoint that verifies Standard Webhooks
// signatures on its own, with the standard library only, to show what a
// receiver of pollbridge's webhooks has to do:
//
//  1. recompute HMAC-SHA256(key, webhook-id + "." + webhook-timestamp + "." + body),
//     where key is the base64-decoded secret after "whsec_";
//  2. compare it in constant time with each "v1,<base64>" entry of the
//     webhook-signature header;
//  3. reject timestamps more than 5 minutes off, against replays;
//  4. de-duplicate on webhook-id: a retried or re-detected change keeps it.
//
// Each verified event is printed as one line, e.g.
//
//	verified msg_abc item.updated orders/2 changes: /status new→paid
//
// Usage:
//
//	receiver [-addr 127.0.0.1:8080] [-path /hooks] [-secret whsec_...] [-fail N] [-out events.jsonl]
//
// -secret defaults to $APP_WEBHOOK_SECRET. -fail N answers 503 to the first N
// requests, to watch pollbridge retry. -out appends every verified new event
// to a file as {"webhook_id":...,"type":...,"data":...}, one JSON per line.
// GET /healthz answers 200 once the receiver listens.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	path := flag.String("path", "/hooks", "URL path that receives webhooks")
	secret := flag.String("secret", os.Getenv("APP_WEBHOOK_SECRET"), "signing secret, whsec_<base64> (default $APP_WEBHOOK_SECRET)")
	fail := flag.Int("fail", 0, "answer 503 to the first N webhooks")
	out := flag.String("out", "", "append verified events to this file as JSON lines")
	flag.Parse()

	if err := run(*addr, *path, *secret, *fail, *out); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

// run serves the receiver until SIGINT or SIGTERM.
func run(addr, path, secret string, fail int, outPath string) error {
	if secret == "" {
		return errors.New("no secret: pass -secret or set APP_WEBHOOK_SECRET")
	}
	v, err := NewVerifier(secret)
	if err != nil {
		return err
	}
	var out io.Writer
	if outPath != "" {
		f, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}

	mux := http.NewServeMux()
	mux.Handle(path, NewReceiver(v, fail, os.Stdout, out))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Printf("receiver listening on http://%s%s\n", addr, path)

	select {
	case err = <-errc:
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = srv.Shutdown(shutdown)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
