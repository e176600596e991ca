package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestServerKillRestartKeepsAOFData starts a server with persistence, kills
// it by pid and restarts it on the same port: the data written before the
// kill is back.
func TestServerKillRestartKeepsAOFData(t *testing.T) {
	dir := t.TempDir()
	s := StartServer(t, "--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	ctx := t.Context()
	if got, err := c.ConfigGet(ctx, "appendonly").Result(); err != nil || got["appendonly"] != "yes" {
		t.Fatalf("CONFIG GET appendonly = %v, %v; the caller's arguments must override the defaults", got, err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pid, port := s.Pid(), s.Port()
	s.Kill()
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	if s.Pid() == pid || s.Port() != port || !s.Running() {
		t.Fatalf("after Restart: pid %d (was %d), port %d (was %d), running %v", s.Pid(), pid, s.Port(), port, s.Running())
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k after restart = %q, %v; want v (appendfsync always)", got, err)
	}
}

// TestClusterURLReachesEveryMaster checks the URL form and that keys land
// on all three masters.
func TestClusterURLReachesEveryMaster(t *testing.T) {
	cl := StartCluster(t)
	o, err := redis.ParseClusterURL(cl.URL())
	if err != nil || len(o.Addrs) != 3 {
		t.Fatalf("ParseClusterURL(%q) = %v, %v; want 3 addresses", cl.URL(), o, err)
	}
	c := redis.NewClusterClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 30 {
		if err := c.Set(ctx, fmt.Sprint("key", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range cl.Servers {
		n := redis.NewClient(&redis.Options{Addr: s.Addr()})
		size, err := n.DBSize(ctx).Result()
		n.Close()
		if err != nil || size == 0 {
			t.Errorf("master %s holds %d keys (%v); want some of the 30", s.Addr(), size, err)
		}
	}
}
