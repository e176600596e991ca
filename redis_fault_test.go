package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store/redisstore"
	"github.com/pollbridge/pollbridge/bridge/store/redisstore/redistest"
)

// The Redis fault tests run two pollbridge daemons on a redis-server of
// their own (with AOF, fsync on every write), kill that server by pid, keep
// changing the API while it is gone, and bring it back on the same port
// with the same data directory, without touching the daemons. The daemons
// must stay up, say what is wrong, and deliver every change made during the
// outage once Redis answers again, inventing nothing.

// TestDaemonsRideOutARedisOutage kills Redis while the outbox is empty.
func TestDaemonsRideOutARedisOutage(t *testing.T) {
	runRedisOutage(t, false)
}

// TestRedisKilledWithDeliveriesInFlight kills Redis while a slow receiver
// holds deliveries: their acks fail, so they are sent again after Redis
// returns (once their claim lease ends), with the same webhook-id.
func TestRedisKilledWithDeliveriesInFlight(t *testing.T) {
	runRedisOutage(t, true)
}

// set creates or updates src/key with a new version.
func (a *fleetAPI) set(src, key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.version++
	a.items[src][key] = a.version
}

// remove deletes src/key.
func (a *fleetAPI) remove(src, key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.items[src], key)
}

func (h *hookReceiver) setDelay(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delay = d
}

// inFlightTotal counts the requests the receiver is handling.
func (h *hookReceiver) inFlightTotal() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.inFlight {
		n += c
	}
	return n
}

func runRedisOutage(t *testing.T, inFlight bool) {
	redisDir := t.TempDir()
	srv := redistest.StartServer(t, "--appendonly", "yes", "--appendfsync", "always", "--dir", redisDir)
	sources := []string{"s0", "s1", "s2"}
	prefix := randomPrefix(t)
	api, recv := newFleetAPI(t, sources, 5), newHookReceiver(t)
	baseline := api.state()
	cfg := fleetConfig(t, srv.URL(), prefix, api.URL, recv.URL, sources)
	fleet := []*daemon{startDaemon(t, cfg, "REPLICA=r0"), startDaemon(t, cfg, "REPLICA=r1")}
	count := func(what string, from []int) int {
		n := 0
		for i, d := range fleet {
			n += strings.Count(d.stderr.String()[from[i]:], what)
		}
		return n
	}
	start := []int{0, 0}
	waitFor(t, "baselines of every source", 20*time.Second, func() bool {
		return count("baseline recorded", start) >= len(sources)
	})
	st, err := redisstore.Open(t.Context(), redisstore.Options{URL: srv.URL(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	outboxEmpty := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		stats, err := st.Stats(ctx, time.Now())
		return err == nil && stats["app"].Pending+stats["app"].Retrying+stats["app"].Dead == 0
	}
	delivered := func() bool { return sameState(replay(baseline, recv.got()), api.state()) }

	// Before the outage one change goes all the way through, acks included.
	api.set("s0", "k0")
	waitFor(t, "the change before the outage", 20*time.Second, func() bool { return delivered() && outboxEmpty() })

	inFlightAtKill := 0
	if inFlight {
		// Each answer takes 2s (the sink's timeout is 3s): a change per
		// source, and Redis dies once two deliveries are at the receiver.
		recv.setDelay(2 * time.Second)
		for _, s := range sources {
			api.set(s, "k1")
		}
		waitFor(t, "deliveries in flight at the slow receiver", 20*time.Second, func() bool { return recv.inFlightTotal() >= 2 })
	}

	// The outage.
	atKill := []int{len(fleet[0].stderr.String()), len(fleet[1].stderr.String())}
	hooksAtKill := len(recv.got())
	srv.Kill()
	killed := time.Now()
	inFlightAtKill = recv.inFlightTotal()
	t.Logf("killed redis-server (pid %d) with %d deliveries in flight", srv.Pid(), inFlightAtKill)
	if inFlight {
		recv.setDelay(0)
	}
	deleted := map[string]bool{"s2/k4": true}
	api.set("s1", "new1") // creations
	api.set("s2", "new2")
	api.set("s0", "k2") // updates, one of them twice
	api.set("s1", "k3")
	api.set("s2", "k3")
	api.set("s1", "k3")
	api.remove("s2", "k4") // one deletion

	for i, d := range fleet {
		waitFor(t, fmt.Sprintf("replica %d to report the outage", i), 15*time.Second, func() bool {
			log := d.stderr.String()[atKill[i]:]
			return strings.Contains(log, "cannot take the poll lease") && strings.Contains(log, "claim deliveries; dispatch paused")
		})
		log := d.stderr.String()[atKill[i]:]
		if !strings.Contains(log, srv.Addr()) || !strings.Contains(log, "connection refused") {
			t.Errorf("replica %d: the outage errors name neither Redis's address %s nor the refused connection:\n%s", i, srv.Addr(), log)
		}
	}
	// Let every source fail a few ticks on both replicas (3 ticks of 1s).
	waitFor(t, "ticks skipped during the outage", 20*time.Second, func() bool {
		return count("cannot take the poll lease", atKill)+count("tick skipped again", atKill) >= 3*len(fleet)*len(sources)
	})
	if inFlight {
		waitFor(t, "the in-flight deliveries to end", 10*time.Second, func() bool { return recv.inFlightTotal() == 0 })
	}
	// An attempt that ended during the outage could not be acked; it is
	// sent again once its claim lease ends, so it is a duplicate.
	lostAcks := count("could not record delivery outcome", atKill)
	if inFlight && lostAcks < inFlightAtKill {
		t.Errorf("%d lost acks reported, but %d deliveries were in flight when Redis died", lostAcks, inFlightAtKill)
	}
	outage := time.Since(killed)
	t.Logf("during %v of outage: %d lease errors logged at ERROR, %d claim errors, %d lost acks",
		outage.Round(time.Millisecond), count("level=ERROR msg=\"tick skipped: cannot take the poll lease", atKill),
		count("claim deliveries; dispatch paused", atKill)+count("claim failed again", atKill), lostAcks)
	for i, d := range fleet {
		select {
		case <-d.done:
			t.Fatalf("replica %d exited during the Redis outage:\n%s", i, d.stderr.String())
		default:
		}
		// Paused, not spinning: a few lines per source tick and per idle
		// dispatcher wake-up.
		lines := strings.Count(d.stderr.String()[atKill[i]:], "\n")
		if rate := float64(lines) / outage.Seconds(); rate > 50 {
			t.Errorf("replica %d logged %d lines in %v of outage (%.0f/s): retrying in a tight loop", i, lines, outage, rate)
		}
	}
	if !inFlight {
		if n := len(recv.got()) - hooksAtKill; n != 0 {
			t.Errorf("%d webhooks sent while Redis was down, with nothing in flight", n)
		}
	}

	// Redis returns with its data; the daemons carry on by themselves.
	atRestart := []int{len(fleet[0].stderr.String()), len(fleet[1].stderr.String())}
	srv.Restart()
	restarted := time.Now()
	t.Logf("Redis down for %v", restarted.Sub(killed).Round(time.Millisecond))
	waitFor(t, "polling to resume on both replicas", 20*time.Second, func() bool {
		for i, d := range fleet {
			if !strings.Contains(d.stderr.String()[atRestart[i]:], "store reachable again; polling resumes") {
				return false
			}
		}
		return true
	})
	resumed := time.Since(restarted)
	waitFor(t, "every change made during the outage delivered", 60*time.Second, delivered)
	converged := time.Since(restarted)
	waitFor(t, "an empty outbox", 30*time.Second, outboxEmpty)
	t.Logf("after Redis returned: polling resumed in %v, every change delivered in %v, outbox empty in %v",
		resumed.Round(time.Millisecond), converged.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))

	if n := count("baseline recorded", atRestart); n != 0 {
		t.Errorf("%d new baselines after the restart: Redis lost the state (AOF not used?)", n)
	}
	got := recv.got()
	checkOutageHooks(t, api, deleted, got)
	ids := map[string]int{}
	for _, h := range got {
		ids[h.ID]++
	}
	dups := len(got) - len(ids)
	t.Logf("%d webhooks, %d distinct, %d duplicates (%d in flight at the kill)", len(got), len(ids), dups, inFlightAtKill)
	if dups != lostAcks {
		t.Errorf("%d duplicate deliveries, want exactly the %d whose ack was lost while Redis was down", dups, lostAcks)
	}
	for i, d := range fleet {
		select {
		case <-d.done:
			t.Fatalf("replica %d exited:\n%s", i, d.stderr.String())
		default:
		}
		d.term(t)
	}
}

// checkOutageHooks asserts that no event was invented (every item version
// sent was served by the API), no deletion was false (every deleted key was
// deleted by the API), and a change sent twice kept its webhook-id.
func checkOutageHooks(t *testing.T, api *fleetAPI, deleted map[string]bool, got []hook) {
	t.Helper()
	idOf := map[string]string{}   // change → webhook-id
	change := map[string]string{} // webhook-id → change
	for _, h := range got {
		c := fmt.Sprintf("%s %s/%s", h.Type, h.Data.Source, h.Data.Key)
		switch h.Type {
		case "item.created", "item.updated":
			v := int(h.Data.Item["version"].(float64))
			c += fmt.Sprintf("@%d", v)
			api.mu.Lock()
			real := api.served[fmt.Sprintf("%s/%s@%d", h.Data.Source, h.Data.Key, v)]
			api.mu.Unlock()
			if !real {
				t.Errorf("invented event: %s was never served", c)
			}
		case "item.deleted":
			if !deleted[h.Data.Source+"/"+h.Data.Key] {
				t.Errorf("false deletion: %s/%s was never deleted", h.Data.Source, h.Data.Key)
			}
		default:
			t.Errorf("unknown event type %q", h.Type)
		}
		if id, ok := idOf[c]; ok && id != h.ID {
			t.Errorf("%s sent twice with different webhook-ids %s and %s", c, id, h.ID)
		}
		if prev, ok := change[h.ID]; ok && prev != c {
			t.Errorf("webhook-id %s names two changes: %s and %s", h.ID, prev, c)
		}
		idOf[c], change[h.ID] = h.ID, c
	}
}

// A daemon started before its Redis waits for it, logging, and starts
// working once Redis answers (a sidecar comes up with its pod).
func TestDaemonWaitsForRedisAtStart(t *testing.T) {
	srv := redistest.StartServer(t)
	srv.Kill() // the address is known, nothing answers there yet
	dir := t.TempDir()
	api, recv := newDemoAPI(t), newHookReceiver(t)
	api.put("a")
	cfg := writeFile(t, dir, "bridge.yaml", fmt.Sprintf(`
state: {redis: {url: "%s", prefix: "%s"}}
shutdown_timeout: 2s
sinks: [{name: app, url: "%s", secret: "%s"}]
sources: [{name: orders, schedule: "@every 1s", url: "%s", items: data, key: id}]
`, srv.URL(), randomPrefix(t), recv.URL, secret, api.URL))
	d := startDaemon(t, cfg)
	waitFor(t, "the wait for Redis to be logged", 10*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "waiting for Redis")
	})
	if strings.Contains(d.stderr.String(), "pollbridge running") {
		t.Fatal("the daemon ran without its store")
	}
	srv.Restart()
	waitFor(t, "the daemon to start once Redis answers", 20*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "baseline recorded")
	})
	api.put("b")
	waitFor(t, "a delivery", 10*time.Second, func() bool { return len(recv.got()) == 1 })
	d.term(t)
}
