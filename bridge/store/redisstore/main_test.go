package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// How to run the Redis tests; shown when they are skipped.
const howToRun = "start Redis (redis-server --port 6379 --save '' --appendonly no) and set REDIS_URL " +
	"(default redis://127.0.0.1:6379/0); the cluster and fault tests need redis-server and redis-cli on PATH. " +
	"With CI=true this is a failure, not a skip"

func TestMain(m *testing.M) {
	// Test output stays readable while servers are killed on purpose;
	// TestRouteClientLogs checks the routing itself.
	RouteClientLogs(nil)
	code := m.Run()
	testCluster.stop()
	os.Exit(code)
}

// unavailable skips t, or fails it when CI=true.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + ": " + howToRun
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// localURL returns the URL of the Redis the tests use, skipping (or, in CI,
// failing) t when it does not answer.
func localURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		u = "redis://127.0.0.1:6379/0"
	}
	o, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unavailable(t, "no Redis at REDIS_URL (%v)", err)
	}
	return u
}

// needBinaries returns the paths of redis-server and redis-cli.
func needBinaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server is not on PATH")
	}
	cli, err = exec.LookPath("redis-cli")
	if err != nil {
		unavailable(t, "redis-cli is not on PATH")
	}
	return server, cli
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

// freePort returns a loopback port that is free, and whose cluster bus port
// (port+10000) is free too.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		if bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatal("no free port pair found")
	return 0
}

// server is one redis-server process the tests started.
type server struct {
	cmd  *exec.Cmd
	port int
	done chan struct{}
}

// startServer starts redis-server on port without persistence, with extra
// arguments, and waits until it answers PING.
func startServer(bin, dir string, port int, extra ...string) (*server, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", dir, "--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &server{cmd: cmd, port: port, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	c := redis.NewClient(&redis.Options{Addr: s.addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		var rerr redis.Error
		if err == nil || errors.As(err, &rerr) { // NOAUTH answers too
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("redis-server on port %d exited at start (see %s)", port, dir)
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("redis-server on port %d does not answer: %w", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// kill kills the server by pid and waits for it to exit.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// cluster is a three-master Redis Cluster shared by the package's tests.
type cluster struct {
	once    sync.Once
	url     string
	err     error
	dir     string
	servers []*server
}

// testCluster is started by the first test that needs it and stopped by
// TestMain.
var testCluster cluster

// clusterURL returns the URL of the shared test cluster, starting it on
// first use; t is skipped (failed in CI) without redis-server.
func clusterURL(t testing.TB) string {
	t.Helper()
	server, cli := needBinaries(t)
	testCluster.once.Do(func() { testCluster.err = testCluster.start(t, server, cli) })
	if testCluster.err != nil {
		t.Fatalf("start test cluster: %v", testCluster.err)
	}
	return testCluster.url
}

func (c *cluster) start(t testing.TB, server, cli string) error {
	dir, err := os.MkdirTemp("", "redisstore-cluster-")
	if err != nil {
		return err
	}
	c.dir = dir
	var addrs []string
	for range 3 {
		port := freePort(t)
		s, err := startServer(server, dir, port, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)))
		if err != nil {
			return err
		}
		c.servers = append(c.servers, s)
		addrs = append(addrs, s.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.servers {
		n := redis.NewClient(&redis.Options{Addr: s.addr()})
		for {
			info, err := n.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") {
				break
			}
			if time.Now().After(deadline) {
				n.Close()
				return fmt.Errorf("cluster not ok within 30s: %q, %v", info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		n.Close()
	}
	c.url = "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	return nil
}

func (c *cluster) stop() {
	for _, s := range c.servers {
		s.kill()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// errorsAsNet reports whether err wraps a network error.
func errorsAsNet(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
