// Package redistest starts and stops real redis-server processes for tests:
// single servers (with or without persistence) that a test can kill and
// restart on the same port, and three-master Redis Clusters.
//
// Tests that need Redis call LocalURL (a Redis the developer runs) or
// NeedBinaries (redis-server and redis-cli on PATH, for the servers this
// package starts). When what they need is missing they skip with a message
// saying how to run them, except under CI=true, where it is a failure.
//
// Every process is started on 127.0.0.1, on a port below the kernel's
// ephemeral range when possible (so that, while a test keeps a killed
// server's port for a restart, no outgoing connection takes it), and killed
// by pid when the test ends.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	"github.com/redis/go-redis/v9/maintnotifications"
)

// HowTo says how to run the tests that need Redis; it ends every skip
// message.
const HowTo = "start Redis (redis-server --port 6379 --save '' --appendonly no) and set REDIS_URL " +
	"(default redis://127.0.0.1:6379/0); the tests that start their own servers and clusters need " +
	"redis-server and redis-cli on PATH (apt-get install redis-server). " +
	"With CI=true this is a failure, not a skip"

// Unavailable skips t with the reason and HowTo, or fails it when the
// environment variable CI is "true".
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + ": " + HowTo
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// LocalURL returns the URL of the Redis the developer runs: REDIS_URL, or
// redis://127.0.0.1:6379/0. When it does not answer PING within 2s, t is
// skipped (failed under CI=true).
func LocalURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		u = "redis://127.0.0.1:6379/0"
	}
	o, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		Unavailable(t, "no Redis at REDIS_URL (%v)", err)
	}
	return u
}

// NeedBinaries returns the paths of redis-server and redis-cli, skipping t
// (failing it under CI=true) when either is not on PATH.
func NeedBinaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, cli, err := binaries()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	return server, cli
}

func binaries() (server, cli string, err error) {
	if server, err = exec.LookPath("redis-server"); err != nil {
		return "", "", errors.New("redis-server is not on PATH")
	}
	if cli, err = exec.LookPath("redis-cli"); err != nil {
		return "", "", errors.New("redis-cli is not on PATH")
	}
	return server, cli, nil
}

// FreePort returns a port that is free on 127.0.0.1 and whose cluster bus
// port (port+10000) is free too.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// freePort prefers ports whose bus port lies below the ephemeral range, so
// that no outgoing connection takes them while a killed server is down.
func freePort() (int, error) {
	lo, hi := 10000, 22768 // below the usual ephemeral range, 32768-60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if start, err := strconv.Atoi(f[0]); err == nil {
				hi = start - 10000
			}
		}
	}
	free := func(port int) bool {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	if hi > lo {
		for range 100 {
			if port := lo + rand.IntN(hi-lo); free(port) && free(port+10000) {
				return port, nil
			}
		}
	}
	for range 50 { // any port the kernel hands out
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 <= 65535 && free(port+10000) {
			return port, nil
		}
	}
	return 0, errors.New("no free port pair (port, port+10000) on 127.0.0.1")
}

// Server is one redis-server process. Its methods are safe for concurrent
// use.
type Server struct {
	t    testing.TB // nil for the servers of NewCluster
	bin  string
	dir  string
	port int
	args []string // the caller's arguments

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartServer starts redis-server on a free 127.0.0.1 port, by default
// without persistence (--save "" --appendonly no) and with its log file in
// a temporary directory that is also its --dir; args come after those and
// override them (for example "--appendonly", "yes", "--dir", dir). It
// returns once the server answers PING (an authentication error counts as
// an answer) and kills it by pid when the test ends. t is skipped (failed
// under CI=true) when redis-server is not on PATH.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, _ := NeedBinaries(t)
	dir := t.TempDir()
	var s *Server
	var err error
	for range 3 { // another process may take the port first
		port := FreePort(t)
		s = &Server{t: t, bin: bin, dir: dir, port: port, args: args}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("redis-server %s log (tail):\n%s", s.Addr(), s.LogTail(20))
		}
	})
	return s
}

// start launches the process and waits until it answers.
func (s *Server) start() error {
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", s.dir, "--logfile", s.LogPath()}, s.args...)
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		var rerr redis.Error
		if err == nil || errors.As(err, &rerr) { // NOAUTH answers too
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited at start: %s", s.Addr(), s.LogTail(5))
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %s does not answer: %w", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's port; Restart keeps it.
func (s *Server) Port() int { return s.port }

// URL is redis://127.0.0.1:port/0 (without a password, even when args set
// one).
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir is the temporary directory holding the log file (and, unless args
// name another --dir, the persistence files).
func (s *Server) Dir() string { return s.dir }

// LogPath is the server's log file.
func (s *Server) LogPath() string {
	return filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.port))
}

// LogTail returns the last n lines of the server's log file.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.LogPath())
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Pid is the process id of the running server (or of the last one, once
// killed).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Signal sends sig to the server process (SIGSTOP and SIGCONT simulate a
// hung server).
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Signal(sig)
}

// Running reports whether the process has not exited.
func (s *Server) Running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill kills the server with SIGKILL, by pid, and waits until it has
// exited. Killing a server that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart kills the server if it runs, then starts it again with the same
// port, arguments and directory (so a server with persistence comes back
// with its data), waiting until it answers. A port that is not free yet is
// retried for 10s. It fails the test that started the server; call it from
// that test's goroutine.
func (s *Server) Restart() {
	if s.t != nil {
		s.t.Helper()
	}
	s.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if s.t == nil {
				panic(err)
			}
			s.t.Fatalf("restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Cluster is a Redis Cluster of three masters without replicas.
type Cluster struct {
	Servers []*Server
	dir     string
	url     string
}

// StartCluster starts a three-master Redis Cluster on free 127.0.0.1 ports,
// without persistence, and returns once every node reports
// cluster_state:ok with all 16384 slots assigned. Its servers are killed
// when the test ends. t is skipped (failed under CI=true) without
// redis-server and redis-cli.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	NeedBinaries(t)
	c, err := NewCluster()
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range c.Servers {
				t.Logf("redis-server %s log (tail):\n%s", s.Addr(), s.LogTail(10))
			}
		}
		c.Close()
	})
	return c
}

// NewCluster is StartCluster for a cluster that outlives one test (shared
// by a package's tests, say): the caller must Close it.
func NewCluster() (*Cluster, error) {
	bin, cli, err := binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	if err := c.start(bin, cli); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(bin, cli string) error {
	var addrs []string
	for range 3 {
		var s *Server
		var err error
		for range 3 { // another process may take the port first
			port, perr := freePort()
			if perr != nil {
				return perr
			}
			s = &Server{bin: bin, dir: c.dir, port: port, args: []string{"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(c.dir, fmt.Sprintf("nodes-%d.conf", port))}}
			if err = s.start(); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		c.Servers = append(c.Servers, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Servers {
		n := redis.NewClient(&redis.Options{Addr: s.Addr(),
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
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

// URL is redis://host:port?addr=host:port&addr=host:port, naming every
// master, the form redisstore.Open (and redis.ParseClusterURL) accepts.
func (c *Cluster) URL() string { return c.url }

// Close kills every server by pid and removes the cluster's directory.
func (c *Cluster) Close() {
	for _, s := range c.Servers {
		s.Kill()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}
