package redisstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// RouteClientLogs sends the log lines of the go-redis client to l at debug
// level (key "component" = "go-redis"). go-redis logs through one
// process-wide logger, by default to stderr: without this, an unreachable
// Redis prints a line per failed dial (up to the pool size per outage)
// besides the errors every Store method returns. Call it once, from main,
// before Open. A nil l discards the lines.
func RouteClientLogs(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	redis.SetLogger(clientLog{l})
}

// clientLog adapts a slog.Logger to go-redis's logging interface.
type clientLog struct{ l *slog.Logger }

func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	c.l.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
