package sinks

import (
	"fmt"
	"net/http"
	"os"

	"github.com/pollbridge/pollbridge/bridge"
	"github.com/pollbridge/pollbridge/bridge/config"
)

// New returns the sink described by cfg: a Webhook for type "webhook" or ""
// (using client, nil for a default one), a Stdout writing to os.Stdout for
// "stdout". Errors never contain the secret, header values or the URL.
func New(cfg config.Sink, client *http.Client) (bridge.Sink, error) {
	switch cfg.Type {
	case "", "webhook":
		w, err := NewWebhook(cfg, client)
		if err != nil {
			return nil, err
		}
		return w, nil
	case "stdout":
		return NewStdout(os.Stdout), nil
	default:
		return nil, fmt.Errorf("unknown sink type %q (want webhook or stdout)", cfg.Type)
	}
}
