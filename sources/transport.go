package sources

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/pollbridge/pollbridge/bridge/config"
)

// clientWithTLS returns client, or a copy of it whose transport applies t.
// The transport must be an *http.Transport (or nil: a clone of
// http.DefaultTransport, which takes its proxy from the environment). A
// disabled certificate verification is logged as a warning on log.
func clientWithTLS(client *http.Client, t *config.TLS, source string, log *slog.Logger) (*http.Client, error) {
	if t == nil {
		return client, nil
	}
	var base *http.Transport
	switch rt := client.Transport.(type) {
	case nil:
		base = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		base = rt.Clone()
	default:
		return nil, fmt.Errorf("tls: the HTTP client's transport is a %T, not an *http.Transport", rt)
	}
	if base.Proxy == nil {
		base.Proxy = http.ProxyFromEnvironment
	}
	tc := base.TLSClientConfig
	if tc == nil {
		tc = &tls.Config{}
	}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate found in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error may quote key material only as "bad PEM"; the
			// file names are the user's own.
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("tls: set both cert_file and key_file")
	}
	if t.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
		log.Warn("TLS certificate verification is OFF for this source (tls.insecure_skip_verify): "+
			"anyone on the network path can read its credentials and forge its answers; use tls.ca_file instead",
			"source", source)
	}
	base.TLSClientConfig = tc
	c := *client
	c.Transport = base
	return &c, nil
}
