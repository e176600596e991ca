package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Admin configures the admin listener: health and readiness probes,
// Prometheus metrics, the JSON API and the status page (see
// docs/operations.md).
type Admin struct {
	// Listen is the host:port the admin listener binds, such as
	// 127.0.0.1:9090. Empty (the default) disables the listener.
	Listen string `yaml:"listen"`
	// Token, when set, must be sent as "Authorization: Bearer TOKEN" to
	// every admin endpoint except /healthz, /readyz and the status page
	// itself. Required when Listen is not a loopback address.
	Token string `yaml:"token"`
}

// admin validates the admin section.
func (d *decoder) admin(a *Admin) {
	if d.failed("admin.listen") || a.Listen == "" {
		return
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		d.errAt("admin.listen", "bad address %q: want host:port, such as 127.0.0.1:9090", d.orig("admin.listen"))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		d.errAt("admin.listen", "bad port in %q: want a number from 0 to 65535", d.orig("admin.listen"))
		return
	}
	if strings.ContainsAny(a.Token, " \t\r\n\x00") {
		d.errAt("admin.token", "must not contain white space or NUL (the value is not shown)")
	}
	if a.Token == "" && !d.failed("admin.token") && !IsLoopbackHost(host) {
		d.errAt("admin.listen", "%q is not a loopback address: set admin.token too (anyone who can reach it could otherwise replay, pause and poll)", d.orig("admin.listen"))
	}
}

// IsLoopbackHost reports whether host (the host part of a listen address)
// names only the local machine: "localhost" or a loopback IP. An empty host
// (all interfaces) is not loopback.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
