package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store/redisstore/redistest"
)

func TestMain(m *testing.M) {
	// Test output stays readable while servers are killed on purpose;
	// TestRouteClientLogs checks the routing itself.
	RouteClientLogs(nil)
	code := m.Run()
	if shared.cluster != nil {
		shared.cluster.Close()
	}
	os.Exit(code)
}

// localURL is the Redis the developer runs (see redistest.LocalURL).
var localURL = redistest.LocalURL

// shared is the three-master Redis Cluster the package's tests share: the
// first test that needs it starts it, TestMain stops it.
var shared struct {
	once    sync.Once
	cluster *redistest.Cluster
	err     error
}

// clusterURL returns the URL of the shared test cluster, starting it on
// first use; t is skipped (failed under CI=true) without redis-server.
func clusterURL(t testing.TB) string {
	t.Helper()
	redistest.NeedBinaries(t)
	shared.once.Do(func() { shared.cluster, shared.err = redistest.NewCluster() })
	if shared.err != nil {
		t.Fatalf("start test cluster: %v", shared.err)
	}
	return shared.cluster.URL()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// openStore opens a Store on url with a fresh random prefix and, at
// cleanup, deletes every key under that prefix and closes it.
func openStore(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	opts.URL = url
	if opts.Prefix == "" {
		opts.Prefix = "pbtest:" + randomHex(6) + ":"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := deleteKeys(ctx, s.rdb, opts.Prefix); err != nil {
			t.Errorf("delete test keys: %v", err)
		}
		s.Close()
	})
	return s
}

// deleteKeys deletes every key starting with prefix, on every master.
func deleteKeys(ctx context.Context, c redis.UniversalClient, prefix string) error {
	del := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := node.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, del)
	}
	return del(ctx, c.(*redis.Client))
}

// countKeys counts the keys starting with prefix, on every master.
func countKeys(ctx context.Context, c redis.UniversalClient, prefix string) (int, error) {
	var mu sync.Mutex
	n := 0
	count := func(ctx context.Context, node *redis.Client) error {
		keys, err := node.Keys(ctx, prefix+"*").Result()
		mu.Lock()
		n += len(keys)
		mu.Unlock()
		return err
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, count)
		return n, err
	}
	err := count(ctx, c.(*redis.Client))
	return n, err
}

// errorsAsNet reports whether err wraps a network error.
func errorsAsNet(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// onSingleAndCluster runs test as two subtests: on the local Redis server
// and on the shared test cluster.
func onSingleAndCluster(t *testing.T, test func(t *testing.T, url string)) {
	for _, tc := range []struct {
		name string
		url  func(t testing.TB) string
	}{{"single", localURL}, {"cluster", clusterURL}} {
		t.Run(tc.name, func(t *testing.T) { test(t, tc.url(t)) })
	}
}
